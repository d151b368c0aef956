//! Provisioning over a serial link with the real binaries: a socat pseudo-terminal pair stands
//! in for the UART, the station and the agent each open one end with tokio-serial. Every test
//! runs on SQLite and on PostgreSQL.

use anyhow::Result;
use keyfill_e2e::{Agent, Database, PtyPair, Station, contains_key, read_tree};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn on_both_databases(test: impl Fn(&Path, Database) -> Result<()>) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir)?;
    test(&sqlite_dir, Database::sqlite(&sqlite_dir))?;
    let postgres_dir = dir.path().join("postgres");
    std::fs::create_dir_all(&postgres_dir)?;
    test(&postgres_dir, Database::postgres()?)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serial_provision_end_to_end_sqlite_and_postgres() -> Result<()> {
    on_both_databases(|dir, db| {
        let station = Station::init(dir, db)?;
        let mut agent = Agent::init(dir, "line-3 sensor 42", &station.factory_root_file(), &[])?;
        let pty = PtyPair::new(dir)?;
        agent.serve(&pty.device_side, &[])?;
        let output = station.run(&[
            "provision",
            "--serial",
            &pty.station_side.to_string_lossy(),
            "--qr",
            &agent.payload,
            "--json",
        ])?;
        assert!(output.status.success(), "provision failed: {}", stderr(&output));
        let record: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(record["state"], "provisioned");
        assert_eq!(record["id"], "42825de8990d634acd150dbe5da0672d", "the E4 id of the name");
        assert_eq!(record["transport"], "serial");
        let status = agent.status()?;
        assert_eq!(status["provisioned"], true);
        assert_eq!(status["key_id"], record["key_id"], "station and device agree on the key");
        assert_eq!(station.state_of("line-3 sensor 42")?.as_deref(), Some("provisioned"));

        // Provisioning the same device again is refused, not silently re-keyed.
        let again =
            station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
        assert!(!again.status.success());
        assert!(stderr(&again).contains("already provisioned"));
        Ok(())
    })
}

#[test]
fn serial_setup_secret_mode_from_a_label_image() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let label = dir.path().join("label.png");
    let label_arg = label.to_string_lossy().into_owned();
    let extra = ["--secret-mode", "--label", label_arg.as_str()];
    let mut agent = Agent::init(dir.path(), "secret-mode-device", &station.factory_root_file(), &extra)?;
    let pty = PtyPair::new(dir.path())?;
    agent.serve(&pty.device_side, &[])?;
    let port = pty.station_side.to_string_lossy().into_owned();
    let output = station.run(&["provision", "--serial", &port, "--qr-image", &label_arg])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(station.state_of("secret-mode-device")?.as_deref(), Some("provisioned"));
    Ok(())
}

#[test]
fn serial_provisioned_device_refuses_a_new_initial_key_until_reset() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let mut agent = Agent::init(dir, "once-only", &station.factory_root_file(), &[])?;
    let pty = PtyPair::new(dir)?;
    agent.serve(&pty.device_side, &[])?;
    let port = pty.station_side.to_string_lossy().into_owned();
    assert!(station.run(&["provision", "--serial", &port, "--qr", &agent.payload])?.status.success());

    // The same station with its inventory lost (a fresh database) tries to key the device again.
    let restored_dir = dir.join("restored");
    std::fs::create_dir_all(&restored_dir)?;
    let restored = Station {
        home: station.home.clone(),
        db: Database::sqlite(&restored_dir),
        transcript: Default::default(),
        env: Vec::new(),
    };
    let refused = restored.run(&["provision", "--serial", &port, "--qr", &agent.payload])?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("AlreadyProvisioned"), "{}", stderr(&refused));
    assert_eq!(restored.state_of("once-only")?.as_deref(), Some("failed"));

    // After a factory reset of the device, it accepts a new initial key.
    agent.stop();
    let reset = std::process::Command::new(keyfill_e2e::binary("keyfill-agent"))
        .arg("--state")
        .arg(&agent.state)
        .args(["reset", "--yes"])
        .output()?;
    assert!(reset.status.success());
    agent.serve(&pty.device_side, &[])?;
    let output = restored.run(&["provision", "--serial", &port, "--qr", &agent.payload])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(restored.state_of("once-only")?.as_deref(), Some("provisioned"));
    Ok(())
}

#[test]
fn adversarial_serial_label_with_another_devices_key_is_aborted() -> Result<()> {
    on_both_databases(|dir, db| {
        let station = Station::init(dir, db)?;
        // Two devices with the same name: the label of one, the hardware of the other (a clone).
        let label_source = Agent::init(&dir.join("a"), "cloned-name", &station.factory_root_file(), &[])?;
        let mut actual = Agent::init(&dir.join("b"), "cloned-name", &station.factory_root_file(), &[])?;
        let pty = PtyPair::new(dir)?;
        actual.serve(&pty.device_side, &[])?;
        let output = station.run(&[
            "provision",
            "--serial",
            &pty.station_side.to_string_lossy(),
            "--qr",
            &label_source.payload,
        ])?;
        assert!(!output.status.success());
        assert!(stderr(&output).contains("could not prove"), "{}", stderr(&output));
        assert_eq!(station.state_of("cloned-name")?.as_deref(), Some("failed"));
        assert!(actual.key_bytes()?.is_none(), "the device received no key");
        Ok(())
    })
}

#[test]
fn adversarial_serial_station_with_foreign_root_is_refused() -> Result<()> {
    on_both_databases(|dir, db| {
        let genuine = Station::init(&dir.join("genuine"), Database::sqlite(&dir.join("genuine")))?;
        std::fs::create_dir_all(dir.join("rogue"))?;
        let rogue = Station::init(&dir.join("rogue"), db)?;
        let mut agent = Agent::init(dir, "pinned-device", &genuine.factory_root_file(), &[])?;
        let pty = PtyPair::new(dir)?;
        agent.serve(&pty.device_side, &[])?;
        let output =
            rogue.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
        assert!(!output.status.success());
        assert!(stderr(&output).contains("BadCertificate"), "{}", stderr(&output));
        assert!(agent.key_bytes()?.is_none(), "the agent stored nothing");
        assert_eq!(agent.status()?["provisioned"], false);
        assert_eq!(rogue.state_of("pinned-device")?.as_deref(), Some("failed"));
        Ok(())
    })
}

#[test]
fn serial_agent_killed_before_confirming_stays_pending_then_reconciles() -> Result<()> {
    on_both_databases(|dir, db| {
        let station = Station::init(dir, db)?;
        let mut agent = Agent::init(dir, "crashy", &station.factory_root_file(), &[])?;
        let pty = PtyPair::new(dir)?;
        agent.serve(&pty.device_side, &["--fault", "exit-after-store"])?;
        let output =
            station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
        assert!(!output.status.success());
        assert!(stderr(&output).contains("stays pending"), "{}", stderr(&output));
        assert_eq!(agent.wait_exit(Duration::from_secs(5))?, Some(75));
        assert!(agent.key_bytes()?.is_some(), "the device stored the key before dying");
        assert_eq!(station.state_of("crashy")?.as_deref(), Some("pending"));

        // The device comes back; reconciliation asks it, and it proves it holds the key.
        agent.serve(&pty.device_side, &[])?;
        let output = station.run(&["devices", "reconcile", "--serial", &pty.station_side.to_string_lossy()])?;
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(station.state_of("crashy")?.as_deref(), Some("provisioned"));
        let device = station.devices()?.into_iter().find(|d| d["name"] == "crashy").expect("listed");
        assert_eq!(agent.status()?["key_id"], device["key_id"]);
        Ok(())
    })
}

#[test]
fn serial_pending_device_without_the_key_reconciles_to_failed_and_reprovisions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let mut agent = Agent::init(dir, "lost-key", &station.factory_root_file(), &[])?;
    let pty = PtyPair::new(dir)?;
    agent.serve(&pty.device_side, &["--fault", "exit-after-store"])?;
    let _ = station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
    agent.wait_exit(Duration::from_secs(5))?;
    // The device lost its storage (factory reset): it no longer holds the pending key.
    std::fs::remove_file(agent.state.join("key.json"))?;
    agent.serve(&pty.device_side, &[])?;
    // `provision` first reconciles the pending record, finds the key missing, then provisions anew.
    let output =
        station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(station.state_of("lost-key")?.as_deref(), Some("provisioned"));
    let kinds = station.history_kinds("lost-key")?;
    assert_eq!(kinds, ["key_generated", "unconfirmed", "reconciled", "key_generated", "provisioned"]);
    Ok(())
}

#[test]
fn adversarial_serial_line_noise_and_oversized_frames_do_not_disturb_provisioning() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let mut agent = Agent::init(dir, "noisy-line", &station.factory_root_file(), &[])?;
    let pty = PtyPair::new(dir)?;
    agent.serve(&pty.device_side, &[])?;
    {
        let mut line = std::fs::OpenOptions::new().write(true).open(&pty.station_side)?;
        // Random noise, a corrupted frame, and a 64 KiB run with no delimiter.
        line.write_all(&[0x13, 0x00, 0xFF, 0x42, 0x00])?;
        let mut corrupted = keyfill_formats::frame::encode(b"\x83\x01\x05\x00")?;
        corrupted[2] ^= 0x40;
        line.write_all(&corrupted)?;
        line.write_all(&vec![0x55; 64 * 1024])?;
        line.write_all(&[0x00])?;
        line.flush()?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let output =
        station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let log = String::from_utf8_lossy(&agent.log()).into_owned();
    assert!(log.contains("dropped a bad frame"), "the agent reported the bad frames: {log}");
    Ok(())
}

#[test]
fn serial_no_key_material_in_databases_files_or_logs() -> Result<()> {
    on_both_databases(|dir, db| {
        let station = Station::init(dir, db)?;
        let mut agent = Agent::init(dir, "leak-check", &station.factory_root_file(), &[])?;
        let pty = PtyPair::new(dir)?;
        agent.serve(&pty.device_side, &[])?;
        let output =
            station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
        assert!(output.status.success(), "{}", stderr(&output));
        let _ = station.run(&["devices", "show", "leak-check", "--json"])?;
        let _ = station.run(&["devices", "list"])?;
        let key = agent.key_bytes()?.expect("the device holds its key");
        assert_eq!(key.len(), 32);

        let database = station.db.dump()?;
        assert!(!database.is_empty());
        assert!(!contains_key(&database, &key), "database rows contain the key");
        assert!(!contains_key(&read_tree(&station.home), &key), "the station home contains the key");
        assert!(!contains_key(&station.transcript.borrow(), &key), "station output or trace logs contain the key");
        assert!(!contains_key(&agent.log(), &key), "agent trace logs contain the key");
        let status = serde_json::to_vec(&agent.status()?)?;
        assert!(!contains_key(&status, &key), "agent status shows the key");
        Ok(())
    })
}

#[test]
fn serial_demo_provisions_a_simulated_device() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("demo-home");
    let db = format!("sqlite://{}/k.db", home.display());
    let output = std::process::Command::new(keyfill_e2e::binary("keyfill"))
        .args(["--home", &home.to_string_lossy(), "--db", &db, "demo"])
        .env("KEYFILL_PASSPHRASE", keyfill_e2e::PASSPHRASE)
        .output()?;
    assert!(output.status.success(), "{}", stderr(&output));
    let list = std::process::Command::new(keyfill_e2e::binary("keyfill"))
        .args(["--home", &home.to_string_lossy(), "--db", &db, "devices", "list", "--json"])
        .output()?;
    let devices: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout)?;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["state"], "provisioned");
    Ok(())
}

#[test]
fn serial_pending_device_that_cannot_be_asked_can_be_abandoned() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let mut agent = Agent::init(dir, "gone-for-good", &station.factory_root_file(), &[])?;
    let pty = PtyPair::new(dir)?;
    agent.serve(&pty.device_side, &["--fault", "exit-after-store"])?;
    let _ = station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
    agent.wait_exit(Duration::from_secs(5))?;
    assert_eq!(station.state_of("gone-for-good")?.as_deref(), Some("pending"));
    let unconfirmed = station.run(&["devices", "abandon", "gone-for-good", "--reason", "device scrapped"])?;
    assert!(!unconfirmed.status.success(), "abandoning needs --yes");
    let output = station.run(&["devices", "abandon", "gone-for-good", "--reason", "device scrapped", "--yes"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(station.state_of("gone-for-good")?.as_deref(), Some("failed"));
    assert_eq!(station.history_kinds("gone-for-good")?.last().map(String::as_str), Some("abandoned"));
    let again = station.run(&["devices", "abandon", "gone-for-good", "--reason", "twice", "--yes"])?;
    assert!(!again.status.success(), "only pending records can be abandoned");
    Ok(())
}
