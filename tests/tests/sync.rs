//! `keyfill sync`: a field laptop (SQLite) keys devices offline, then pushes its records, events
//! and sealed keys to the factory's PostgreSQL; a second run changes nothing; an interrupted run
//! resumes; a device keyed in both places is reported, never resolved; a laptop of another
//! master key is refused.

use anyhow::{Context, Result};
use keyfill_e2e::farm::MemoryDevice;
use keyfill_e2e::shared_line::SharedLine;
use keyfill_e2e::{Database, Station, contains_key, runtime};
use keyfill_station::db::Inventory;
use std::path::Path;

/// The factory (one station on PostgreSQL) and a laptop that joined its master key, on SQLite.
fn factory_and_laptop(dir: &Path) -> Result<(SharedLine, Station)> {
    let factory = SharedLine::new(dir, 1)?;
    let laptop_dir = dir.join("laptop");
    std::fs::create_dir_all(&laptop_dir)?;
    let laptop = Station {
        home: laptop_dir.join("home"),
        db: Database::sqlite(&laptop_dir),
        transcript: Default::default(),
        env: Vec::new(),
    };
    let root = dir.join("factory-root.pk8");
    let share = dir.join("master.share");
    let args = [
        "init",
        "--station-name",
        "field-laptop-7",
        "--factory-root-key",
        root.to_str().context("path")?,
        "--join-master",
        share.to_str().context("path")?,
    ];
    let output = laptop.run_env(&args, &[("KEYFILL_SHARE_PASSPHRASE", "line transfer passphrase")])?;
    anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    Ok((factory, laptop))
}

/// Keys `names` on `station` in this process; returns the devices (they keep their keys).
fn key_devices(station: &Station, names: &[&str]) -> Result<Vec<MemoryDevice>> {
    runtime()?.block_on(async {
        let live = station.open_in_process("field-tech").await?;
        let root = live.unlocked.info.factory_root;
        let mut devices = Vec::new();
        for name in names {
            let device = MemoryDevice::new(name, root)?;
            device.provision(&live).await?;
            devices.push(device);
        }
        live.inventory.close().await;
        Ok(devices)
    })
}

fn sync(laptop: &Station, target: &str, env: &[(&str, &str)]) -> Result<(std::process::Output, serde_json::Value)> {
    let output = laptop.run_env(&["sync", "--to", target, "--json"], env)?;
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    Ok((output, report))
}

/// Rows of `sql` on a database, as text.
fn rows(url: &str, sql: &str) -> Result<Vec<String>> {
    runtime()?.block_on(async {
        let inventory = Inventory::open(url).await?;
        let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(inventory.pool()).await?;
        inventory.close().await;
        Ok(rows.into_iter().map(|(row,)| row).collect())
    })
}

const KEYS: &str = "SELECT key_id || ' ' || device_id || ' ' || state || ' ' || station_id || ' ' || check_value FROM device_keys ORDER BY key_id";

#[test]
fn sync_a_field_laptop_pushes_its_records_once_and_a_second_run_changes_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (factory, laptop) = factory_and_laptop(dir.path())?;
    let devices = key_devices(&laptop, &["field-1", "field-2", "field-3"])?;
    let target = factory.db.url().to_owned();
    let (output, report) = sync(&laptop, &target, &[])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report["devices_pushed"], 3, "{report}");
    assert_eq!(report["conflicts"].as_array().map(Vec::len), Some(0));
    // The keys arrived exactly as sealed on the laptop: never opened, never re-sealed.
    assert_eq!(rows(&target, KEYS)?, rows(laptop.db.url(), KEYS)?);
    let sealed = "SELECT encode(sealed_key, 'hex') FROM device_keys ORDER BY key_id";
    let laptop_sealed = "SELECT hex(sealed_key) FROM device_keys ORDER BY key_id";
    let lower = |v: Vec<String>| v.into_iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
    assert_eq!(rows(&target, sealed)?, lower(rows(laptop.db.url(), laptop_sealed)?));
    let provisioned = rows(&target, "SELECT name FROM devices WHERE state = 'provisioned' ORDER BY name")?;
    assert_eq!(provisioned, ["field-1", "field-2", "field-3"]);
    let laptop_events = rows(laptop.db.url(), "SELECT kind FROM events ORDER BY id")?;
    let copied = rows(&target, "SELECT kind FROM events WHERE origin IS NOT NULL ORDER BY id")?;
    assert_eq!(copied, laptop_events, "every event of the laptop, once, in order");
    let stations = rows(&target, "SELECT name FROM stations ORDER BY name")?;
    assert!(stations.contains(&"field-laptop-7".to_owned()), "{stations:?}");
    // No key in clear anywhere on the way.
    for device in &devices {
        let key = device.keystore.key_bytes().context("a key")?;
        assert!(!contains_key(&laptop.transcript.borrow(), &key), "a key in the sync's output");
        assert!(!contains_key(&factory.db.dump()?, &key), "a key in clear in the factory database");
    }

    let before = factory.db.dump()?;
    let (output, report) = sync(&laptop, &target, &[])?;
    assert!(output.status.success());
    assert_eq!(report["devices_pushed"], 0, "{report}");
    assert_eq!(report["devices_unchanged"], 3, "{report}");
    assert_eq!(report["events_pushed"], 0, "{report}");
    assert_eq!(factory.db.dump()?, before, "a second sync changes nothing");
    Ok(())
}

#[test]
fn sync_interrupted_midway_resumes_where_it_stopped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (factory, laptop) = factory_and_laptop(dir.path())?;
    key_devices(&laptop, &["resume-1", "resume-2", "resume-3"])?;
    let target = factory.db.url().to_owned();
    // Killed right after the first device's commit on the factory database.
    let (output, _) = sync(&laptop, &target, &[("KEYFILL_CRASH_AT", "commit:sync-device:after")])?;
    assert!(!output.status.success());
    assert_eq!(rows(&target, "SELECT name FROM devices")?.len(), 1);
    let (output, report) = sync(&laptop, &target, &[])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        (report["devices_pushed"].as_u64(), report["devices_unchanged"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    // Killed again between an event page's commit and the cursor: the page is copied once.
    key_devices(&laptop, &["resume-4"])?;
    let (output, _) = sync(&laptop, &target, &[("KEYFILL_CRASH_AT", "commit:sync-events:after")])?;
    assert!(!output.status.success());
    let (output, _) = sync(&laptop, &target, &[])?;
    assert!(output.status.success());
    let origins = rows(&target, "SELECT origin FROM events WHERE origin IS NOT NULL")?;
    let mut distinct = origins.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(origins.len(), distinct.len(), "no event copied twice");
    assert_eq!(origins.len(), rows(laptop.db.url(), "SELECT kind FROM events")?.len());
    Ok(())
}

#[test]
fn sync_the_same_device_keyed_in_the_field_and_at_the_factory_is_reported_not_resolved() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (factory, laptop) = factory_and_laptop(dir.path())?;
    key_devices(&factory.stations[0], &["twice-keyed"])?;
    key_devices(&laptop, &["twice-keyed", "only-field"])?;
    let target = factory.db.url().to_owned();
    let current = "SELECT current_key_id FROM devices WHERE name = 'twice-keyed'";
    let factory_key = rows(&target, current)?;
    let (output, report) = sync(&laptop, &target, &[])?;
    assert!(!output.status.success(), "a conflict fails the sync");
    let conflicts = report["conflicts"].as_array().context("conflicts")?;
    assert_eq!(conflicts.len(), 1, "{report}");
    assert_eq!(conflicts[0]["name"], "twice-keyed");
    assert!(conflicts[0]["reason"].as_str().is_some_and(|r| r.contains("keyed in both places")), "{report}");
    assert_eq!(rows(&target, current)?, factory_key, "the factory's record is left as it was");
    assert_eq!(report["devices_pushed"], 1, "the other device went through: {report}");
    let text = laptop.run(&["sync", "--to", &target])?;
    let said = String::from_utf8_lossy(&text.stdout).into_owned() + &String::from_utf8_lossy(&text.stderr);
    assert!(said.contains("CONFLICT") && said.contains("twice-keyed"), "{said}");
    Ok(())
}

#[test]
fn sync_a_station_of_another_master_key_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let factory = SharedLine::new(dir.path(), 1)?;
    let stranger_dir = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger_dir)?;
    let stranger = Station::init(&stranger_dir, Database::sqlite(&stranger_dir))?;
    let (output, _) = sync(&stranger, factory.db.url(), &[])?;
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("another master key") && said.contains("--join-master"), "{said}");
    // A database no station has used (a mistyped URL) is refused, and nothing is created in it.
    let empty = Database::postgres()?;
    let (output, _) = sync(&stranger, empty.url(), &[])?;
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && said.contains("holds no Keyfill inventory"), "{said}");
    let tables = std::process::Command::new("psql")
        .args([empty.url(), "-At", "-c", "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'"])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&tables.stdout).trim(), "0");
    Ok(())
}
