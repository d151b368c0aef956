//! The audit log, tampered with as someone with write access to the database would: entries
//! edited, deleted, moved, added, and the chain's end cut, directly in SQLite and PostgreSQL.
//! `keyfill audit verify` must name the first broken entry and how it was broken, every time.

use anyhow::{Context, Result, bail};
use keyfill_e2e::farm::MemoryDevice;
use keyfill_e2e::{Database, Station, binary, runtime};
use keyfill_formats::audit::{EntryFields, entry_hash, entry_signing_input};
use keyfill_station::db::Inventory;
use std::path::Path;
use std::process::Command;

/// Entries in the fixture's chain: unlock and init (2), unlock (1), four devices keyed (8),
/// and the unlock of `audit checkpoint` (1).
const ENTRIES: i64 = 12;

struct Fixture {
    station: Station,
    station_id: String,
    checkpoint: std::path::PathBuf,
}

fn fixture(dir: &Path, db: Database) -> Result<Fixture> {
    let station = Station::init(dir, db)?;
    let station_id = runtime()?.block_on(async {
        let open = station.open_in_process("auditor-test").await?;
        let root = open.unlocked.info.factory_root;
        for index in 0..4 {
            let device = MemoryDevice::new(&format!("audit-device-{index}"), root)?;
            device.provision(&open).await?;
        }
        let id = hex::encode(open.unlocked.info.station_id);
        open.inventory.close().await;
        Ok::<_, anyhow::Error>(id)
    })?;
    let checkpoint = dir.join("kept-checkpoint.json");
    let output = station.run(&["audit", "checkpoint", "--out", checkpoint.to_str().context("path")?])?;
    if !output.status.success() {
        bail!("audit checkpoint failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(Fixture { station, station_id, checkpoint })
}

/// `keyfill audit verify --json` on `db`: the exit status and the report.
fn verify(fixture: &Fixture, db: &Database, extra: &[&str]) -> Result<(bool, serde_json::Value, String)> {
    verify_with(&fixture.station, db.url(), extra)
}

/// Runs `statements` on a copy of the fixture's database, each with the station id bound as $1.
async fn tampered(fixture: &Fixture, dir: &Path, statements: &[String]) -> Result<Database> {
    let copy = fixture.station.db.copy(dir)?;
    let inventory = Inventory::open(copy.url()).await?;
    for statement in statements {
        sqlx::query(statement)
            .bind(&fixture.station_id)
            .execute(inventory.pool())
            .await
            .with_context(|| format!("tampering: {statement}"))?;
    }
    inventory.close().await;
    Ok(copy)
}

fn first_break(report: &serde_json::Value) -> Option<(String, i64, String)> {
    let found = report.as_array()?.iter().find_map(|chain| chain["breaks"].as_array()?.first().cloned())?;
    Some((found["kind"].as_str()?.to_owned(), found["seq"].as_i64()?, found["detail"].as_str()?.to_owned()))
}

/// The hash an attacker computes for the entry `seq` with its detail replaced, and its hash.
async fn recomputed(db: &Database, station_id: &str, seq: i64, detail: &str) -> Result<String> {
    let inventory = Inventory::open(db.url()).await?;
    let (at, operator, kind, device_id, prev_hash): (i64, String, String, Option<String>, String) = sqlx::query_as(
        "SELECT at, operator, kind, device_id, prev_hash FROM audit_log WHERE station_id = $1 AND seq = $2",
    )
    .bind(station_id)
    .bind(seq)
    .fetch_one(inventory.pool())
    .await?;
    inventory.close().await;
    let previous: [u8; 32] = hex::decode(prev_hash)?.try_into().map_err(|_| anyhow::anyhow!("hash"))?;
    let fields =
        EntryFields { station_id, at, operator: &operator, kind: &kind, device_id: device_id.as_deref(), detail };
    Ok(hex::encode(entry_hash(&fields, &previous)))
}

fn shift_up_from(seq: i64) -> Vec<String> {
    vec![
        format!("UPDATE audit_log SET seq = -seq - 1 WHERE station_id = $1 AND seq >= {seq}"),
        "UPDATE audit_log SET seq = -seq WHERE station_id = $1 AND seq < 0".to_owned(),
        "UPDATE audit_heads SET seq = seq + 1 WHERE station_id = $1".to_owned(),
    ]
}

/// What was done, the statements that did it, verify's extra arguments, and the first break
/// expected: its kind, its entry and words of its detail.
type Case<'a> = (&'a str, Vec<String>, &'a [&'a str], (&'a str, i64, &'a str));

fn every_tampering_is_named(db: Database) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let fixture = fixture(dir, db)?;
    let runtime = runtime()?;
    let checkpoint = fixture.checkpoint.to_str().context("path")?.to_owned();

    let (intact, report, stderr) = verify(&fixture, &fixture.station.db, &["--from-checkpoint", &checkpoint])?;
    assert!(intact, "the untouched log verifies: {report} {stderr}");
    assert_eq!(report[0]["entries"], ENTRIES, "{report}");
    assert_eq!(report[0]["checkpoints_checked"], 2, "the database's checkpoint and the kept one: {report}");
    assert_eq!(report[0]["station_name"], "e2e-station");

    let forged_hash = runtime.block_on(recomputed(&fixture.station.db, &fixture.station_id, 5, "nothing happened"))?;
    let forged_signature = hex::encode([7u8; 64]);
    let mut inserted = shift_up_from(5);
    inserted.push(format!(
        "INSERT INTO audit_log (station_id, seq, at, operator, kind, device_id, detail, prev_hash, hash, signer, \
         signature) SELECT station_id, 5, at, operator, kind, device_id, 'nothing happened', prev_hash, '{forged_hash}', \
         signer, '{forged_signature}' FROM audit_log WHERE station_id = $1 AND seq = 6"
    ));
    let mut copied = vec![format!(
        "INSERT INTO audit_log (station_id, seq, at, operator, kind, device_id, detail, prev_hash, hash, signer, \
         signature) SELECT station_id, {next}, at, operator, kind, device_id, detail, prev_hash, hash, signer, \
         signature FROM audit_log WHERE station_id = $1 AND seq = 4",
        next = ENTRIES + 1
    )];
    copied.push(format!(
        "UPDATE audit_heads SET seq = {next}, hash = (SELECT hash FROM audit_log WHERE station_id = $1 AND seq = 4) \
         WHERE station_id = $1",
        next = ENTRIES + 1
    ));
    let careful_truncation = vec![
        "DELETE FROM audit_log WHERE station_id = $1 AND seq >= 10".to_owned(),
        "UPDATE audit_heads SET seq = 9, hash = (SELECT hash FROM audit_log WHERE station_id = $1 AND seq = 9) \
         WHERE station_id = $1"
            .to_owned(),
        "DELETE FROM audit_checkpoints WHERE station_id = $1 AND seq > 9".to_owned(),
    ];
    let kept = ["--from-checkpoint", checkpoint.as_str()];
    let cases: Vec<Case> = vec![
        (
            "a detail edited",
            vec!["UPDATE audit_log SET detail = detail || ' (edited)' WHERE station_id = $1 AND seq = 5".into()],
            &[],
            ("edited", 5, "no longer matches its hash"),
        ),
        (
            "a detail edited and its hash recomputed",
            vec![format!(
                "UPDATE audit_log SET detail = 'nothing happened', hash = '{forged_hash}' WHERE station_id = $1 AND seq = 5"
            )],
            &[],
            ("edited", 5, "recomputed"),
        ),
        (
            "an entry deleted",
            vec!["DELETE FROM audit_log WHERE station_id = $1 AND seq = 5".into()],
            &[],
            ("deleted", 5, "entry 5 missing"),
        ),
        (
            "an entry deleted and the rest renumbered",
            vec![
                "DELETE FROM audit_log WHERE station_id = $1 AND seq = 5".into(),
                "UPDATE audit_log SET seq = -(seq - 1) WHERE station_id = $1 AND seq > 5".into(),
                "UPDATE audit_log SET seq = -seq WHERE station_id = $1 AND seq < 0".into(),
                "UPDATE audit_heads SET seq = seq - 1 WHERE station_id = $1".into(),
            ],
            &[],
            ("deleted", 5, "not in the log"),
        ),
        (
            "two entries swapped",
            vec![
                "UPDATE audit_log SET seq = -5 WHERE station_id = $1 AND seq = 5".into(),
                "UPDATE audit_log SET seq = 5 WHERE station_id = $1 AND seq = 6".into(),
                "UPDATE audit_log SET seq = 6 WHERE station_id = $1 AND seq = -5".into(),
            ],
            &[],
            ("reordered", 5, "follows entry 6"),
        ),
        ("a forged entry inserted", inserted, &[], ("inserted", 5, "not appended by the station")),
        ("a copy of an entry appended", copied, &[], ("inserted", ENTRIES + 1, "copy of entry 4")),
        (
            "the last entries cut",
            vec!["DELETE FROM audit_log WHERE station_id = $1 AND seq >= 10".into()],
            &[],
            ("truncated", 10, "3 entries were removed"),
        ),
        (
            "the last entries cut, the head and checkpoints rewritten, against the kept checkpoint",
            careful_truncation.clone(),
            &kept,
            ("truncated", 10, "the kept checkpoint"),
        ),
    ];
    for (what, statements, extra, (kind, seq, says)) in cases {
        let copy = runtime.block_on(tampered(&fixture, dir, &statements))?;
        let (intact, report, stderr) = verify(&fixture, &copy, extra)?;
        assert!(!intact, "{what}: not detected: {report}");
        assert!(stderr.contains("not intact"), "{what}: {stderr}");
        let found = first_break(&report).with_context(|| format!("{what}: no break in {report}"))?;
        assert_eq!((found.0.as_str(), found.1), (kind, seq), "{what}: {}", found.2);
        assert!(found.2.contains(says), "{what}: {says:?} missing from {:?}", found.2);
    }

    // Cut carefully, the chain is consistent with itself: only a checkpoint kept elsewhere
    // shows what is missing.
    let copy = runtime.block_on(tampered(&fixture, dir, &careful_truncation))?;
    let (intact, report, _) = verify(&fixture, &copy, &[])?;
    assert!(intact, "without a kept checkpoint a careful cut cannot be seen: {report}");

    // As a person reads it.
    let copy = runtime.block_on(tampered(
        &fixture,
        dir,
        &["UPDATE audit_log SET detail = 'x' WHERE station_id = $1 AND seq = 7".to_owned()],
    ))?;
    let output = Command::new(binary("keyfill"))
        .arg("--home")
        .arg(&fixture.station.home)
        .arg("--db")
        .arg(copy.url())
        .args(["audit", "verify"])
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("(e2e-station): BROKEN at entry 7: edited: entry 7 (provisioned)"), "{text}");
    assert_eq!(output.status.code(), Some(1));
    Ok(())
}

#[test]
fn audit_tampering_in_sqlite_is_detected_and_named() -> Result<()> {
    every_tampering_is_named(Database::sqlite(tempfile::tempdir()?.keep().as_path()))
}

#[test]
fn audit_tampering_in_postgres_is_detected_and_named() -> Result<()> {
    every_tampering_is_named(Database::postgres()?)
}

#[test]
fn audit_entries_carry_signatures_an_independent_implementation_verifies() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = fixture(dir.path(), Database::sqlite(dir.path()))?;
    let output = fixture.station.run(&["audit", "export", "--jsonl"])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let export = dir.path().join("audit.jsonl");
    std::fs::write(&export, &output.stdout)?;
    let lines = output.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    assert_eq!(lines as i64, ENTRIES);
    // Python's hashlib for the chain, OpenSSL for the Ed25519 signatures.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_audit_export.py");
    let checked = Command::new("python3").arg(script).arg(&export).arg(dir.path()).output()?;
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains(&format!("{ENTRIES} entries, chain and signatures valid"))
    );
    // The signature input is the documented one.
    let first: serde_json::Value = serde_json::from_slice(output.stdout.split(|&b| b == b'\n').next().unwrap_or(&[]))?;
    let hash: [u8; 32] =
        hex::decode(first["hash"].as_str().unwrap_or(""))?.try_into().map_err(|_| anyhow::anyhow!("hash"))?;
    assert!(entry_signing_input(&hash).starts_with(b"keyfill audit entry signature v1\0"));
    Ok(())
}

#[test]
fn audit_two_stations_and_concurrent_sessions_keep_one_chain_each_in_postgres() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = Station::init(&dir.path().join("a"), Database::postgres()?)?;
    let runtime = runtime()?;
    runtime.block_on(async {
        // Two processes' worth of one station, keying at once: appends take turns on the head.
        let one = std::sync::Arc::new(first.open_in_process("op-one").await?);
        let two = std::sync::Arc::new(first.open_in_process("op-two").await?);
        let root = one.unlocked.info.factory_root;
        let mut jobs = tokio::task::JoinSet::new();
        for index in 0..12 {
            let station = if index % 2 == 0 { one.clone() } else { two.clone() };
            let device = MemoryDevice::new(&format!("concurrent-{index}"), root)?;
            jobs.spawn(async move { device.provision(&station).await.map(|_| ()) });
        }
        while let Some(result) = jobs.join_next().await {
            result??;
        }
        one.inventory.close().await;
        two.inventory.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    let (intact, report, stderr) = verify_with(&first, first.db.url(), &[])?;
    assert!(intact, "{report} {stderr}");
    // init (2) + two unlocks + 12 devices × 2.
    assert_eq!(report[0]["entries"], 2 + 2 + 24, "{report}");
    Ok(())
}

fn verify_with(station: &Station, url: &str, extra: &[&str]) -> Result<(bool, serde_json::Value, String)> {
    let output = Command::new(binary("keyfill"))
        .arg("--home")
        .arg(&station.home)
        .arg("--db")
        .arg(url)
        .args(["audit", "verify", "--json"])
        .args(extra)
        .output()?;
    let report = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("verify printed no report: {}", String::from_utf8_lossy(&output.stderr)))?;
    Ok((output.status.success(), report, String::from_utf8_lossy(&output.stderr).into_owned()))
}
