//! Keys in a PKCS#11 token: SoftHSM2 through the same code path a hardware HSM or a smart card
//! (OpenSC) takes. The master key, the factory root and the signing key are generated in the
//! token and never leave it; a station whose token is absent or refuses its PIN says so at start.

use anyhow::{Context, Result};
use keyfill_e2e::{
    Agent, BROKER, Database, OPERATOR_PASSPHRASE, PtyPair, SOFTHSM_MODULE, SoftHsm, Station, contains_key, read_tree,
    unique_name,
};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &std::process::Output) -> Result<serde_json::Value> {
    serde_json::from_slice(&output.stdout).with_context(|| format!("no JSON: {}", stderr(output)))
}

#[test]
fn hsm_every_key_in_softhsm2_provision_rotate_export_and_audit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let hsm = SoftHsm::new(dir)?;
    let station = Station::init_in_token(dir, Database::sqlite(dir), &hsm, &[])?;

    // The home holds no master key, no factory root and no signing key: the token does.
    assert!(!station.home.join("master-key.json").exists());
    let token_file: serde_json::Value = serde_json::from_slice(&std::fs::read(station.home.join("token.json"))?)?;
    assert_eq!(token_file["token"], hsm.label.as_str());
    let root_file: serde_json::Value = serde_json::from_slice(&std::fs::read(station.home.join("factory-root.json"))?)?;
    assert!(root_file.get("sealed_pkcs8").is_none(), "{root_file}");
    assert!(root_file["token_key"].as_str().is_some_and(|label| label.ends_with("factory root")));
    let station_file: serde_json::Value = serde_json::from_slice(&std::fs::read(station.home.join("station.json"))?)?;
    assert!(station_file["bundle_signer"].get("sealed_pkcs8").is_none(), "{station_file}");
    assert_eq!(station_file["sealed_noise_private"], "", "the Noise static key is the token's: {station_file}");
    assert!(station_file["noise_token_key"].as_str().is_some_and(|label| label.ends_with("noise static")));
    let info = station.run(&["info"])?;
    assert!(String::from_utf8_lossy(&info.stdout).contains(&format!("in the PKCS#11 token \"{}\"", hsm.label)));

    // As an independent PKCS#11 client sees them: private, sensitive, never extractable, made
    // in the token.
    let objects = hsm.objects()?;
    let secret: Vec<&String> =
        objects.iter().filter(|s| s.starts_with("Secret Key Object") || s.starts_with("Private Key Object")).collect();
    // The master key; the factory root, the signing key and the Noise static key.
    assert_eq!(secret.len(), 4, "{objects:#?}");
    for section in secret {
        for flag in ["sensitive", "never extractable", "local"] {
            assert!(section.contains(flag), "a key is not {flag}: {section}");
        }
    }

    // Provisioning over a serial link, keys sealed by the token.
    let name = unique_name("hsm-device");
    let mut agent = Agent::init(dir, &name, &station.factory_root_file(), &[])?;
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
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)?["state"], "provisioned");
    agent.stop();
    let first_key = agent.key_bytes()?.context("the device holds its key")?;

    // Rotation over Mosquitto: the new key sealed and the old opened by the token.
    agent.mqtt(BROKER, &[])?;
    let output = station.run(&["rotate", &name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "6"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = json(&station.run(&["devices", "show", &name, "--json"])?)?;
    assert_eq!(shown["rotation"], "active", "{shown}");
    agent.wait_for_key(&shown["key_id"])?;
    let second_key = agent.key_bytes()?.context("the device holds its new key")?;
    agent.stop();

    // An offline bundle, signed by the token's signing key and checked against the factory root.
    let operator_key = station.new_operator_key(dir)?;
    let bundle = dir.join("hsm.kfb");
    let output = station.export_bundle(&operator_key, &bundle, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let root = station.factory_root_file();
    let output = station.run_env(
        &[
            "bundle",
            "inspect",
            bundle.to_str().context("path")?,
            "--factory-root",
            root.to_str().context("path")?,
            "--key",
            operator_key.to_str().context("path")?,
        ],
        &[("KEYFILL_BUNDLE_KEY_PASSPHRASE", OPERATOR_PASSPHRASE)],
    )?;
    assert!(output.status.success(), "{}", stderr(&output));

    // The audit log is signed by the token's key and verifies against the factory root alone.
    let output = station.run(&["audit", "verify", "--json"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output)?;
    let kinds = station.run(&["audit", "export", "--jsonl"])?;
    let kinds = String::from_utf8_lossy(&kinds.stdout);
    for kind in ["station_initialised", "provisioned", "rotated", "c2_bundle_written"] {
        assert!(kinds.contains(&format!("\"kind\":\"{kind}\"")), "{kind} missing from the audit log");
    }
    assert!(report[0]["entries"].as_u64().is_some_and(|n| n >= 8), "{report}");

    // Device keys are nowhere at rest or in output in the clear.
    for key in [&first_key, &second_key] {
        assert!(!contains_key(&station.db.dump()?, key), "database");
        assert!(!contains_key(&read_tree(&station.home), key), "station home");
        assert!(!contains_key(&station.transcript.borrow(), key), "station output and trace logs");
    }
    Ok(())
}

#[test]
fn hsm_a_token_absent_refusing_its_pin_or_without_its_module_fails_clearly_at_start() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let hsm = SoftHsm::new(dir)?;
    let station = Station::init_in_token(dir, Database::sqlite(dir), &hsm, &[])?;
    let checkpoint = dir.join("checkpoint.json");
    let checkpoint = checkpoint.to_str().context("path")?;

    let wrong_pin = station.run_env(&["audit", "checkpoint", "--out", checkpoint], &[("KEYFILL_TOKEN_PIN", "0000")])?;
    assert!(!wrong_pin.status.success());
    let said = stderr(&wrong_pin);
    assert!(said.contains(&format!("the token \"{}\" refused the PIN", hsm.label)), "{said}");

    // Another token directory: the token is not there.
    let elsewhere = tempfile::tempdir()?;
    let empty = SoftHsm::new(elsewhere.path())?;
    let absent = station.run_env(
        &["audit", "checkpoint", "--out", checkpoint],
        &[("SOFTHSM2_CONF", empty.conf.to_str().context("path")?)],
    )?;
    assert!(!absent.status.success());
    let said = stderr(&absent);
    assert!(said.contains(&format!("no token labelled \"{}\"", hsm.label)), "{said}");
    assert!(said.contains(&empty.label), "the tokens present are named: {said}");

    // Every failure above is the station's side: nothing was recorded, and the next unlock
    // records the wrong PIN in the audit log.
    let ok = station.run(&["audit", "checkpoint", "--out", checkpoint])?;
    assert!(ok.status.success(), "{}", stderr(&ok));
    let entries = station.run(&["audit", "export", "--jsonl"])?;
    let entries = String::from_utf8_lossy(&entries.stdout);
    assert!(entries.contains("\"kind\":\"unlock_failed\"") && entries.contains("refused the PIN"), "{entries}");

    // The module gone (its package removed): named, with where to look.
    let token_json = station.home.join("token.json");
    let text = std::fs::read_to_string(&token_json)?;
    std::fs::write(&token_json, text.replace(SOFTHSM_MODULE, "/usr/lib/softhsm/libsofthsm2-removed.so"))?;
    let missing = station.run(&["audit", "checkpoint", "--out", checkpoint])?;
    assert!(!missing.status.success());
    let said = stderr(&missing);
    assert!(said.contains("the PKCS#11 module /usr/lib/softhsm/libsofthsm2-removed.so cannot be loaded"), "{said}");
    Ok(())
}

#[test]
fn hsm_a_station_with_file_keys_moves_its_master_key_into_a_token_and_keeps_every_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let name = unique_name("moved");
    let (mut station, agent) = keyfill_e2e::provisioned_device(dir, Database::sqlite(dir), &name)?;
    let key = agent.key_bytes()?.context("the device holds its key")?;
    let hsm = SoftHsm::new(dir)?;
    station.env = hsm.env();
    let output =
        station.run(&["custody", "move-to-token", "--pkcs11-module", SOFTHSM_MODULE, "--token", &hsm.label])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!station.home.join("master-key.json").exists(), "the passphrase's copy is gone");
    let objects = hsm.objects()?;
    let master = objects.iter().find(|s| s.starts_with("Secret Key Object; AES")).context("no AES key")?;
    // Imported, so never "never extractable" (it was known outside once); sensitive and not
    // extractable from now on.
    let access = master.lines().find(|line| line.contains("Access:")).context("no access line")?;
    assert!(access.contains("sensitive") && !access.contains("extractable"), "{master}");

    // Every key still opens, now through the token: the duplicate check opens them all, and a
    // bundle carries the device's key to the operator's key.
    let output = station.run(&["keys", "check-duplicates", "--json"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let operator_key = station.new_operator_key(dir)?;
    let bundle = dir.join("moved.kfb");
    let output = station.export_bundle(&operator_key, &bundle, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!contains_key(&read_tree(&station.home), &key), "station home");

    // The passphrase alone no longer unlocks the station; the token's PIN does.
    let output = station.run_env(&["audit", "checkpoint", "--out", "/dev/null"], &[("KEYFILL_TOKEN_PIN", "")])?;
    assert!(!output.status.success());
    let output = station.run(&["audit", "verify"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = station.run(&["audit", "export", "--jsonl"])?;
    assert!(String::from_utf8_lossy(&entries.stdout).contains("master_key_moved_to_token"));
    // Moved once: a second move is refused.
    let again = station.run(&["custody", "move-to-token", "--pkcs11-module", SOFTHSM_MODULE, "--token", &hsm.label])?;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("held by its token"), "{}", stderr(&again));
    Ok(())
}
