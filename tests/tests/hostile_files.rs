//! The station's files against other users and against tampering, with the real binaries
//! (`cargo test hostile_` runs them): who may read the inventory, and what the station says when
//! a sealed key in it no longer opens.

use anyhow::{Context, Result};
use keyfill_e2e::{BROKER, Database, Station, provisioned_device, unique_name};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What the station told the operator: stderr without its trace log lines (the tests run with
/// `KEYFILL_LOG=trace`, whose lines are coloured).
fn told(output: &std::process::Output) -> String {
    stderr(output).lines().filter(|line| !line.contains('\u{1b}')).collect::<Vec<_>>().join("\n")
}

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::metadata(path).with_context(|| format!("{}", path.display()))?.permissions().mode() & 0o777)
}

#[test]
fn hostile_database_outside_the_home_and_its_wal_and_shm_are_private() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // `--db sqlite://DIR/x/inv.db`, beside the home rather than in it: the folder is 0755.
    let folder = dir.path().join("x");
    std::fs::create_dir_all(&folder)?;
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))?;
    let path = folder.join("inv.db");
    let db = Database::Sqlite { url: format!("sqlite://{}", path.display()), path: path.clone() };
    let name = unique_name("perm");
    let (station, _agent) = provisioned_device(dir.path(), db, &name)?;

    // A station that holds the database open, so that its -wal and -shm files exist.
    let mut watcher = station
        .command(&["rotate", "--watch", "--watch-for", "20", "--broker", BROKER])
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let companions = [folder.join("inv.db-wal"), folder.join("inv.db-shm")];
    let deadline = Instant::now() + Duration::from_secs(15);
    while !companions.iter().all(|p| p.exists()) {
        anyhow::ensure!(Instant::now() < deadline, "no -wal and -shm beside {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let modes: Vec<(String, u32)> = std::iter::once(&path)
        .chain(&companions)
        .map(|p| Ok((p.display().to_string(), mode(p)?)))
        .collect::<Result<_>>()?;
    watcher.kill()?;
    watcher.wait()?;
    let shown: Vec<String> = modes.iter().map(|(path, mode)| format!("{path} {mode:o}")).collect();
    assert!(modes.iter().all(|(_, mode)| *mode == 0o600), "{shown:?}");

    // The home: a private folder of private files.
    assert_eq!(mode(&station.home)?, 0o700);
    for entry in std::fs::read_dir(&station.home)? {
        let path = entry?.path();
        assert_eq!(mode(&path)?, if path.is_dir() { 0o700 } else { 0o600 }, "{}", path.display());
    }
    Ok(())
}

#[test]
fn hostile_database_created_earlier_with_open_permissions_is_made_private() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("inventory.db");
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    // As an earlier Keyfill left it.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    let output = station.run(&["devices", "list"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(mode(&path)?, 0o600);
    assert!(stderr(&output).contains("was readable by other users"), "{}", stderr(&output));
    Ok(())
}

/// Flips one bit of the sealed key `key_id` in the SQLite inventory at `path`, as an edit of the
/// file outside Keyfill would.
fn tamper_sealed_key(path: &Path, key_id: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        use sqlx::Connection;
        let mut connection = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await?;
        let (mut sealed,): (Vec<u8>,) = sqlx::query_as("SELECT sealed_key FROM device_keys WHERE key_id = ?")
            .bind(key_id)
            .fetch_one(&mut connection)
            .await?;
        let last = sealed.len() - 1;
        sealed[last] ^= 0x01;
        sqlx::query("UPDATE device_keys SET sealed_key = ? WHERE key_id = ?")
            .bind(sealed)
            .bind(key_id)
            .execute(&mut connection)
            .await?;
        connection.close().await?;
        Ok(())
    })
}

fn assert_names_the_sealed_key(said: &str, name: &str, id: &str, key_id: &str) {
    for needed in [name, id, key_id, "altered", "another station", "backup"] {
        assert!(said.contains(needed), "{needed:?} missing from: {said}");
    }
}

#[test]
fn hostile_tampered_sealed_key_names_the_device_and_key_on_export_and_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("tampered");
    let db_path = dir.path().join("inventory.db");
    let (station, _agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let output = station.run(&["devices", "show", &name, "--json"])?;
    let record: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let (id, key_id) = (record["id"].as_str().context("id")?, record["key_id"].as_str().context("key id")?);
    tamper_sealed_key(&db_path, key_id)?;

    // Export: the offline bundle reads every selected key.
    let operator_key = station.new_operator_key(dir.path())?;
    let output = station.export_bundle(&operator_key, &dir.path().join("keys.kfb"), &[])?;
    assert!(!output.status.success());
    assert_names_the_sealed_key(&told(&output), &name, id, key_id);

    // Rotation opens the current key before sending anything.
    let output = station.run(&["rotate", &name, "--broker", BROKER, "--first-wait", "0.5", "--max-attempts", "1"])?;
    assert!(!output.status.success());
    assert_names_the_sealed_key(&told(&output), &name, id, key_id);
    Ok(())
}
