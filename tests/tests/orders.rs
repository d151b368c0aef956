//! Work orders: import from the MES (CSV, JSON), a station that keys only devices on an open
//! order, the reconciliation report signed as a JWS (checked by `keyfill orders verify-report`
//! and, independently, by OpenSSL), and closing.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyfill_e2e::farm::MemoryDevice;
use keyfill_e2e::{Database, Station, runtime};
use keyfill_station::db::devices;
use keyfill_station::home::StationHome;
use keyfill_station::orders::file::OrderId;
use keyfill_station::orders::{NotAdmitted, OrderPolicy};
use keyfill_station::provision::ProvisionError;
use std::path::Path;
use std::process::Output;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn run_ok(station: &Station, args: &[&str]) -> Result<Output> {
    let output = station.run(args)?;
    if !output.status.success() {
        bail!("keyfill {args:?} failed: {}", stderr(&output));
    }
    Ok(output)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<String> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path.to_str().context("path")?.to_owned())
}

const ORDERS_CSV: &str = "order_id,device_name,model,serial_number,batch\n\
    WO-100,press-1,P1,SN-1,B7\n\
    WO-100,press-2,P1,SN-2,B7\n\
    WO-100,press-3,,SN-3,B8\n\
    WO-200,lathe-1,,SN-L1,\n";

#[test]
fn orders_import_list_show_and_a_repeated_import_changes_nothing() -> Result<()> {
    for db in [Database::sqlite(tempfile::tempdir()?.path()), Database::postgres()?] {
        let dir = tempfile::tempdir()?;
        let db = match db {
            Database::Sqlite { .. } => Database::sqlite(dir.path()),
            other => other,
        };
        let station = Station::init(dir.path(), db)?;
        let csv = write(dir.path(), "orders.csv", ORDERS_CSV)?;
        let imported = run_ok(&station, &["orders", "import", &csv])?;
        assert!(stdout(&imported).contains("order WO-100: 3 device(s) imported"), "{}", stdout(&imported));
        let again = run_ok(&station, &["orders", "import", &csv])?;
        assert!(stdout(&again).contains("unchanged"), "{}", stdout(&again));

        let list: serde_json::Value = serde_json::from_slice(&run_ok(&station, &["orders", "list", "--json"])?.stdout)?;
        assert_eq!(list[0]["order"], "WO-100");
        assert_eq!(list[0]["expected"], 3);
        assert_eq!(list[0]["not_started"], 3);
        assert_eq!(list[1]["order"], "WO-200");
        let show: serde_json::Value =
            serde_json::from_slice(&run_ok(&station, &["orders", "show", "WO-100", "--json"])?.stdout)?;
        assert_eq!(show["devices"][2]["name"], "press-3");
        assert_eq!(show["devices"][0]["batch"], "B7");

        // The same order with other devices: refused, nothing changes.
        let changed = write(
            dir.path(),
            "changed.json",
            r#"[{"order_id":"WO-100","device_name":"press-9","serial_number":"SN-9"}]"#,
        )?;
        let refused = station.run(&["orders", "import", &changed])?;
        assert!(!refused.status.success());
        assert!(stderr(&refused).contains("exists already"), "{}", stderr(&refused));
        // A device already on another open order: refused, with both orders named.
        let twice = write(
            dir.path(),
            "twice.json",
            r#"[{"order_id":"WO-300","device_name":"press-1","serial_number":"SN-1"}]"#,
        )?;
        let refused = station.run(&["orders", "import", &twice])?;
        assert!(stderr(&refused).contains("also on open order WO-100"), "{}", stderr(&refused));
        let list: serde_json::Value = serde_json::from_slice(&run_ok(&station, &["orders", "list", "--json"])?.stdout)?;
        assert_eq!(list.as_array().map(Vec::len), Some(2), "nothing was imported: {list}");
        // A hostile file names its line and field.
        let bad = write(
            dir.path(),
            "bad.csv",
            "order_id,device_name,model,serial_number\nWO-400,ok,,SN\nWO-400,bad\u{7}name,,SN\n",
        )?;
        let refused = station.run(&["orders", "import", &bad])?;
        assert!(stderr(&refused).contains("line 3, device_name"), "{}", stderr(&refused));
    }
    Ok(())
}

#[test]
fn orders_a_station_that_requires_orders_keys_only_devices_on_an_open_order() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let csv = write(
        dir.path(),
        "orders.csv",
        "order_id,device_name,model,serial_number\nWO-1,ordered-1,,SN-MEM\nWO-1,ordered-2,,SN-OTHER\n",
    )?;
    run_ok(&fixture, &["orders", "import", &csv])?;
    runtime()?.block_on(async {
        let mut station = fixture.open_in_process("orders-test").await?;
        station.order_policy = OrderPolicy { required: true, current: None };
        let root = station.unlocked.info.factory_root;
        let ordered = MemoryDevice::new("ordered-1", root)?;
        let report = ordered.provision(&station).await?;
        assert_eq!(report.device.order_id.as_deref(), Some("WO-1"));

        // Not on any open order: refused before anything is generated or sent.
        let stray = MemoryDevice::new("not-ordered", root)?;
        let refused = stray.provision(&station).await;
        assert!(matches!(refused, Err(ProvisionError::NotAdmitted(NotAdmitted::NoOrder { .. }))), "{refused:?}");
        assert_eq!(stray.keystore.key_id(), None);
        assert!(devices::get(station.inventory.pool(), &stray.identity.device_id.to_hex()).await?.is_none());

        // On the order, but its label's serial number is not the order's (MemoryDevice labels
        // say SN-MEM): refused, naming both.
        let mismatched = MemoryDevice::new("ordered-2", root)?;
        let refused = mismatched.provision(&station).await;
        let said = refused.as_ref().err().map(ToString::to_string).unwrap_or_default();
        assert!(said.contains("SN-MEM") && said.contains("SN-OTHER"), "{said}");
        assert_eq!(mismatched.keystore.key_id(), None);

        // Keying one order only: a device of another order is refused.
        station.order_policy =
            OrderPolicy { required: true, current: Some(OrderId::parse("WO-9").map_err(anyhow::Error::msg)?) };
        let refused = stray.provision(&station).await;
        assert!(matches!(refused, Err(ProvisionError::NotAdmitted(NotAdmitted::OrderNotOpen { .. }))), "{refused:?}");
        station.inventory.close().await;
        anyhow::Ok(())
    })?;
    // The CLI's flag does the same.
    let stray_label = runtime()?.block_on(async {
        let root = StationHome::new(&fixture.home).info()?.factory_root;
        let device = MemoryDevice::new("cli-stray", root)?;
        anyhow::Ok(device.identity.onboarding_payload().encode()?)
    })?;
    let refused = fixture.run(&["provision", "--require-order", "--serial", "/dev/null", "--qr", &stray_label])?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("is on no open work order"), "{}", stderr(&refused));
    Ok(())
}

/// An Ed25519 public key as a PEM SubjectPublicKeyInfo (RFC 8410), for OpenSSL.
fn ed25519_pem(public: &[u8]) -> String {
    let mut der = hex::decode("302a300506032b6570032100").unwrap_or_default();
    der.extend_from_slice(public);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

#[test]
fn orders_report_is_signed_and_verified_by_the_cli_and_by_openssl() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let csv = write(
        dir.path(),
        "run.csv",
        "order_id,device_name,model,serial_number\nWO-7,unit-1,,SN-MEM\nWO-7,unit-2,,SN-MEM\nWO-7,unit-3,,SN-MEM\n",
    )?;
    run_ok(&fixture, &["orders", "import", &csv])?;
    runtime()?.block_on(async {
        let station = fixture.open_in_process("orders-test").await?;
        let root = station.unlocked.info.factory_root;
        MemoryDevice::new("unit-1", root)?.provision(&station).await?;
        // A device that trusts another factory: the session fails before the key leaves.
        let failing = MemoryDevice::new("unit-2", [9; 32])?;
        assert!(matches!(failing.provision(&station).await, Err(ProvisionError::Failed { .. })));
        // Keyed under the order without being on it (as a record synchronised from elsewhere).
        MemoryDevice::new("stray-1", root)?.provision(&station).await?;
        sqlx::query("UPDATE devices SET order_id = 'WO-7' WHERE name = 'stray-1'")
            .execute(station.inventory.pool())
            .await?;
        station.inventory.close().await;
        anyhow::Ok(())
    })?;
    let jws_path = dir.path().join("WO-7.jws");
    let jws_arg = jws_path.to_str().context("path")?;
    let output = run_ok(&fixture, &["orders", "report", "WO-7", "--json", "--signature", jws_arg])?;
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let counts = &printed["report"]["counts"];
    assert_eq!(
        [
            &counts["expected"],
            &counts["provisioned"],
            &counts["failed"],
            &counts["pending"],
            &counts["not_started"],
            &counts["unexpected"]
        ],
        [3, 1, 1, 0, 1, 1].map(serde_json::Value::from).each_ref(),
        "{printed}"
    );
    assert_eq!(printed["report"]["unexpected"][0]["name"], "stray-1");
    let jws = std::fs::read_to_string(&jws_path)?;
    assert_eq!(jws.trim(), printed["jws"].as_str().context("jws")?);

    // The station's own check, against the factory root.
    let root = fixture.factory_root_file();
    let root = root.to_str().context("path")?;
    let verified = run_ok(&fixture, &["orders", "verify-report", jws_arg, "--factory-root", root])?;
    let payload: serde_json::Value = serde_json::from_slice(&verified.stdout)?;
    assert_eq!(payload, printed["report"]);
    // An altered report does not verify.
    let parts: Vec<&str> = jws.trim().split('.').collect();
    let mut report: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    report["counts"]["failed"] = 0.into();
    let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec_pretty(&report)?), parts[2]);
    let forged_path = write(dir.path(), "forged.jws", &forged)?;
    let refused = fixture.run(&["orders", "verify-report", &forged_path, "--factory-root", root])?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("does not verify"), "{}", stderr(&refused));

    // OpenSSL, an independent EdDSA implementation, checks the JWS with the key in its header.
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0])?)?;
    assert_eq!(header["alg"], "EdDSA");
    let public = URL_SAFE_NO_PAD.decode(header["jwk"]["x"].as_str().context("x")?)?;
    std::fs::write(dir.path().join("signer.pem"), ed25519_pem(&public))?;
    std::fs::write(dir.path().join("input.bin"), format!("{}.{}", parts[0], parts[1]))?;
    std::fs::write(dir.path().join("signature.bin"), URL_SAFE_NO_PAD.decode(parts[2])?)?;
    let openssl = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args([
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            "signer.pem",
            "-rawin",
            "-in",
            "input.bin",
            "-sigfile",
            "signature.bin",
        ])
        .output()
        .context("openssl")?;
    assert!(openssl.status.success(), "{}{}", stdout(&openssl), stderr(&openssl));
    assert!(stdout(&openssl).contains("Signature Verified Successfully"));

    // CSV: one row per device, signed the same way.
    let csv_jws = dir.path().join("WO-7.csv.jws");
    let output =
        run_ok(&fixture, &["orders", "report", "WO-7", "--csv", "--signature", csv_jws.to_str().context("path")?])?;
    let rows = stdout(&output);
    assert_eq!(rows.lines().count(), 1 + 3 + 1, "{rows}");
    assert!(rows.lines().any(|l| l.contains("unit-3") && l.contains("not_started")), "{rows}");
    let verified =
        run_ok(&fixture, &["orders", "verify-report", csv_jws.to_str().context("path")?, "--factory-root", root])?;
    assert_eq!(stdout(&verified), rows);
    Ok(())
}

#[test]
fn orders_close_refuses_while_devices_are_outstanding_unless_forced_with_a_reason() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Station::init(dir.path(), Database::postgres()?)?;
    let csv =
        write(dir.path(), "o.csv", "order_id,device_name,model,serial_number\nWO-C,c-1,,SN-MEM\nWO-C,c-2,,SN-MEM\n")?;
    run_ok(&fixture, &["orders", "import", &csv])?;
    runtime()?.block_on(async {
        let station = fixture.open_in_process("orders-test").await?;
        MemoryDevice::new("c-1", station.unlocked.info.factory_root)?.provision(&station).await?;
        station.inventory.close().await;
        anyhow::Ok(())
    })?;
    let refused = fixture.run(&["orders", "close", "WO-C"])?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("1 not yet keyed"), "{}", stderr(&refused));
    let no_reason = fixture.run(&["orders", "close", "WO-C", "--force"])?;
    assert!(!no_reason.status.success(), "--force needs --reason");
    run_ok(&fixture, &["orders", "close", "WO-C", "--force", "--reason", "c-2 scrapped at test"])?;
    let report = run_ok(&fixture, &["orders", "report", "WO-C", "--json"])?;
    let report: serde_json::Value = serde_json::from_slice(&report.stdout)?;
    assert_eq!(report["report"]["state"], "closed");
    assert_eq!(report["report"]["close_reason"], "c-2 scrapped at test");
    let again = fixture.run(&["orders", "close", "WO-C"])?;
    assert!(stderr(&again).contains("closed already"), "{}", stderr(&again));
    // A closed order admits no device.
    let history = run_ok(&fixture, &["orders", "list", "--json"])?;
    assert_eq!(stdout(&history).trim(), "[]", "only open orders are listed by default");
    Ok(())
}
