//! Device names from outside: refused at every door when they break the name rules, escaped
//! wherever they are printed, never joined onto a path, and never mistaken for another device's
//! id when looked up.

use anyhow::{Context, Result};
use keyfill_e2e::labels::forged_label;
use keyfill_e2e::{Agent, Database, PtyPair, Station, provisioned_device, unique_name};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Names that break one rule each, with a piece of the message that names the rule.
fn hostile_names() -> Vec<(String, &'static str)> {
    vec![
        ("victim\tdev".into(), "control character"),
        ("carriage\rreturn".into(), "control character"),
        ("line\nfeed".into(), "control character"),
        ("escape\x1b[2Jsequence".into(), "control character"),
        ("delete\x7f".into(), "control character"),
        ("c1\u{85}control".into(), "control character"),
        ("line-3/sensor 42".into(), "'/'"),
        (".".into(), "\".\" or \"..\""),
        ("..".into(), "\".\" or \"..\""),
        (String::new(), "empty"),
        ("n".repeat(256), "255 bytes"),
    ]
}

/// Runs `keyfill-agent init` for `name` in a state directory of its own.
fn agent_init(dir: &Path, index: usize, name: &str, root: &Path) -> Result<Output> {
    Ok(std::process::Command::new(keyfill_e2e::binary("keyfill-agent"))
        .arg("--state")
        .arg(dir.join(format!("agent-{index}")))
        .args(["init", "--name", name, "--serial-number", "SN-1", "--factory-root"])
        .arg(root)
        .output()?)
}

#[test]
fn c2_export_hostile_names_are_refused_at_every_entry_point() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    for (index, (name, rule)) in hostile_names().iter().enumerate() {
        // keyfill-agent init --name
        let output = agent_init(dir.path(), index, name, &station.factory_root_file())?;
        assert!(!output.status.success(), "agent init took {name:?}");
        assert!(stderr(&output).contains(rule), "{name:?}: {}", stderr(&output));
        assert!(output.stdout.is_empty(), "{name:?}: no label is printed");

        // keyfill provision --qr: the label is refused before any link is opened.
        let label = forged_label(name, "SN-1", None, [9; 32]);
        let output = station.run(&["provision", "--serial", "/nonexistent/tty", "--qr", &label])?;
        assert!(!output.status.success(), "provision took {name:?}");
        let message = stderr(&output);
        assert!(message.contains("device name") && message.contains(rule), "{name:?}: {message}");
        assert!(!message.contains("/nonexistent/tty"), "{name:?}: refused before the link: {message}");

        // keyfill demo --name
        let output = station.run(&["demo", "--name", name])?;
        assert!(!output.status.success(), "demo took {name:?}");
        assert!(stderr(&output).contains(rule), "{name:?}: {}", stderr(&output));
    }
    assert!(station.devices()?.is_empty(), "no hostile name reached the inventory");
    Ok(())
}

#[test]
fn c2_export_terminal_output_escapes_outside_text() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let name = unique_name("escapes");
    let mut agent = Agent::init(dir, &name, &station.factory_root_file(), &[])?;
    let Ok(OnboardingPayload { credential: DeviceCredential::Identity { public_key }, .. }) =
        OnboardingPayload::parse(&agent.payload)
    else {
        anyhow::bail!("the agent's label is an identity-mode label");
    };
    // The label's serial number and model are outside text too: an escape sequence that would
    // retitle the terminal and clear the screen, and a line break.
    let label = forged_label(&name, "SN-1\x1b]0;owned\x07\x1b[2J", Some("model\nfake: line"), public_key);
    let pty = PtyPair::new(dir)?;
    agent.serve(&pty.device_side, &[])?;
    let output = station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &label])?;
    assert!(output.status.success(), "{}", stderr(&output));
    agent.stop();
    // A name an earlier version accepted from a label, with an escape sequence and a line break
    // (and the id that goes with it, so that the record stays consistent).
    let old_id = keyfill_formats::DeviceId::from_name(&name).to_hex();
    let legacy = "legacy\x1b[31m\nfake line";
    let id = keyfill_formats::DeviceId::from_name(legacy).to_hex();
    let Database::Sqlite { path, .. } = &station.db else { anyhow::bail!("SQLite") };
    let sql = format!(
        "PRAGMA foreign_keys = OFF; \
         UPDATE devices SET id = '{id}', name = 'legacy' || char(27) || '[31m' || char(10) || 'fake line', \
         failure = 'note' || char(27) || '[2J' WHERE id = '{old_id}'; \
         UPDATE device_keys SET device_id = '{id}' WHERE device_id = '{old_id}'; \
         UPDATE events SET device_id = '{id}' WHERE device_id = '{old_id}';"
    );
    let updated = std::process::Command::new("sqlite3").arg(path).arg(&sql).output()?;
    assert!(updated.status.success(), "{}", stderr(&updated));

    let out = dir.join("label.png");
    // A label must not carry a name that is no device name: refused, and the refusal escaped too.
    for (args, succeeds) in [
        (vec!["devices", "list"], true),
        (vec!["devices", "show", id.as_str()], true),
        (vec!["label", id.as_str(), "--out", out.to_str().context("path")?], false),
    ] {
        // Without the trace log, whose colours are escape sequences of its own.
        let output = station.run_env(&args, &[("KEYFILL_LOG", "off")])?;
        assert_eq!(output.status.success(), succeeds, "{args:?}: {}", stderr(&output));
        let all = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
        assert!(!all.iter().any(|b| *b == 0x1b || *b == 0x07), "{args:?} printed a raw control character: {all:?}");
        assert!(!stdout(&output).lines().any(|l| l.starts_with("fake")), "{args:?}: {}", stdout(&output));
    }
    let shown = station.run(&["devices", "show", &id])?;
    let shown = stdout(&shown);
    assert!(shown.contains("legacy\\u{1b}[31m\\nfake line"), "{shown}");
    assert!(shown.contains("SN-1\\u{1b}]0;owned\\u{7}\\u{1b}[2J"), "{shown}");
    assert!(shown.contains("model\\nfake: line"), "{shown}");
    assert!(shown.contains("note\\u{1b}[2J"), "{shown}");
    // JSON stays JSON, escaped by the JSON encoder.
    let json = station.run(&["devices", "show", &id, "--json"])?;
    let json: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(json["name"], legacy);
    Ok(())
}

/// Every path under `root`, relative to it.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut paths = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            paths.insert(path.strip_prefix(root).map(Path::to_path_buf).unwrap_or(path));
        }
    }
    paths
}

#[test]
fn hostile_demo_names_write_nothing_outside_the_demo_folder() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let outer = dir.path().join("outer");
    std::fs::create_dir_all(outer.join("inner"))?;
    let station = Station::init(&outer.join("inner"), Database::sqlite(&outer))?;
    let demo_folder = station.home.join("demo-devices");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere)?;

    // A valid demo first: its device's files go under the demo folder.
    let output = station.run(&["demo", "--name", "demo-ok"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::read_dir(&demo_folder)?.count() == 1, "one folder for the one device");

    let absolute = elsewhere.join("abs-device");
    let hostile = [
        absolute.to_str().context("path")?.to_owned(),
        "..".to_owned(),
        "../../escaped".to_owned(),
        "../..".to_owned(),
        "sub/../../x".to_owned(),
    ];
    let before = tree(dir.path());
    for name in &hostile {
        let output = station.run(&["demo", "--name", name])?;
        assert!(!output.status.success(), "demo took {name:?}");
        let message = stderr(&output);
        assert!(message.contains("device name") || message.contains("--name"), "{name:?}: {message}");
        assert!(message.contains("'/'") || message.contains("\"..\""), "{name:?}: {message}");
    }
    let after = tree(dir.path());
    let new: Vec<_> =
        after.difference(&before).filter(|p| !p.to_string_lossy().starts_with("outer/inventory.db")).collect();
    assert!(new.is_empty(), "written by a refused demo: {new:?}");
    assert_eq!(station.devices()?.len(), 1);
    Ok(())
}

#[test]
fn hostile_lookup_by_id_or_name_is_never_ambiguous() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let name = unique_name("lookup");
    std::fs::create_dir_all(dir.join("a"))?;
    let (station, _agent) = provisioned_device(&dir.join("a"), Database::sqlite(dir), &name)?;
    let first_id = station.devices()?[0]["id"].as_str().context("id")?.to_owned();
    // A second device named like the first one's id.
    let mut twin = Agent::init(dir, &first_id, &station.factory_root_file(), &[])?;
    let pty = PtyPair::new(dir)?;
    twin.serve(&pty.device_side, &[])?;
    let output = station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &twin.payload])?;
    assert!(output.status.success(), "{}", stderr(&output));
    twin.stop();
    let twin_id = keyfill_formats::DeviceId::from_name(&first_id).to_hex();

    let show = |reference: &str| -> Result<Result<String, String>> {
        let output = station.run(&["devices", "show", reference, "--json"])?;
        Ok(if output.status.success() {
            let device: serde_json::Value = serde_json::from_slice(&output.stdout)?;
            Ok(device["id"].as_str().unwrap_or_default().to_owned())
        } else {
            Err(stderr(&output))
        })
    };
    // Both an id and a name: an error naming both devices and how to choose.
    let ambiguous = show(&first_id)?.expect_err("ambiguous");
    for needed in [&first_id, &twin_id, &name, &format!("id:{first_id}"), &format!("name:{first_id}")] {
        assert!(ambiguous.contains(needed.as_str()), "{needed}: {ambiguous}");
    }
    assert_eq!(show(&format!("id:{first_id}"))?, Ok(first_id.clone()));
    assert_eq!(show(&format!("name:{first_id}"))?, Ok(twin_id.clone()));
    assert_eq!(show(&format!("id:{}", first_id.to_uppercase()))?, Ok(first_id.clone()));
    assert_eq!(show(&name)?, Ok(first_id.clone()));
    assert_eq!(show(&twin_id)?, Ok(twin_id.clone()));
    // An id wins only in its exact form: upper case is a name, and there is no such name.
    assert!(show(&first_id.to_uppercase())?.is_err_and(|e| e.contains("no device")));
    assert!(show("name:nobody")?.is_err_and(|e| e.contains("no device")));
    assert!(show("id:00ff")?.is_err_and(|e| e.contains("32")));

    // Every command that looks one device up resolves it the same way.
    let out = dir.join("label.png");
    let out = out.to_str().context("path")?;
    let ca = dir.join("some-ca.pem");
    std::fs::write(&ca, rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?.cert.pem())?;
    let ca = ca.to_str().context("path")?;
    for args in [
        vec!["label", first_id.as_str(), "--out", out],
        vec!["rotate", first_id.as_str(), "--broker", keyfill_e2e::BROKER],
        vec!["export", "c2", "--url", "https://127.0.0.1:9", "--ca", ca, "--devices", first_id.as_str()],
        vec!["export", "bundle", "--recipient", &"ab".repeat(32), "--out", out, "--devices", first_id.as_str()],
        vec!["devices", "abandon", first_id.as_str(), "--reason", "test", "--yes"],
        vec!["devices", "reconcile", "--serial", "/nonexistent/tty", first_id.as_str()],
    ] {
        let output = station.run(&args)?;
        assert!(!output.status.success(), "{args:?} picked one of two devices");
        let message = stderr(&output);
        assert!(message.contains("matches two devices") && message.contains("name:"), "{args:?}: {message}");
    }
    assert!(!Path::new(out).exists(), "no label was written");
    Ok(())
}
