//! Export to C2 end to end: the real `keyfill export c2` against the C2 test server (HTTPS with
//! a test CA, PostgreSQL behind it), on devices provisioned by the real agent over
//! pseudo-terminals.

use anyhow::{Context, Result};
use keyfill_e2e::c2::{C2Server, CryptoMode};
use keyfill_e2e::{Agent, Database, OPERATOR_PASSPHRASE, PtyPair, Station, contains_key, unique_name};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A station with one provisioned device per name; the agents are stopped again.
fn provisioned(dir: &Path, db: Database, names: &[String]) -> Result<(Station, Vec<Agent>)> {
    let station = Station::init(dir, db)?;
    let mut agents = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let mut agent = Agent::init(dir, name, &station.factory_root_file(), &[])?;
        // By index: socat's address syntax does not take every character a name may hold.
        let pty_dir = dir.join(format!("pty-{index}"));
        std::fs::create_dir_all(&pty_dir)?;
        let pty = PtyPair::new(&pty_dir)?;
        agent.serve(&pty.device_side, &[])?;
        let output =
            station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
        anyhow::ensure!(output.status.success(), "provisioning {name}: {}", stderr(&output));
        agent.stop();
        agents.push(agent);
    }
    Ok((station, agents))
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    let base = unique_name(prefix);
    (0..count).map(|i| format!("{base}-{i}")).collect()
}

/// `keyfill export c2 --url URL --ca CA --json ARGS…`, parsed.
fn export(station: &Station, c2: &C2Server, args: &[&str]) -> Result<(Output, serde_json::Value)> {
    let url = c2.url();
    let ca = c2.ca_file();
    let mut all = vec!["export", "c2", "--url", url.as_str(), "--ca", ca.to_str().context("ca path")?, "--json"];
    all.extend_from_slice(args);
    let output = station.run(&all)?;
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    Ok((output, report))
}

/// Outcome per device name in a JSON report.
fn outcomes(report: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    report["devices"]
        .as_array()
        .map(|devices| {
            devices
                .iter()
                .map(|d| (d["name"].as_str().unwrap_or("").to_owned(), d["outcome"].as_str().unwrap_or("").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn device_posts(c2: &C2Server) -> usize {
    c2.requests().iter().filter(|(method, path, _)| method == "POST" && path.starts_with("/e4/client/")).count()
}

#[test]
fn c2_export_creates_then_reports_already_exported_sqlite_and_postgres() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (label, db) in [("sqlite", Database::sqlite(dir.path())), ("postgres", Database::postgres()?)] {
        let dir = dir.path().join(label);
        std::fs::create_dir_all(&dir)?;
        let names = names(&format!("c2-{label}"), 2);
        let (station, agents) = provisioned(&dir, db, &names)?;
        let c2 = C2Server::start(&dir, CryptoMode::SymKey)?;

        let (output, report) = export(&station, &c2, &[])?;
        assert!(output.status.success(), "{label}: {}", stderr(&output));
        assert!(outcomes(&report).values().all(|o| o == "created"), "{report}");
        assert_eq!(report["summary"]["created"], 2);
        let held = c2.clients()?;
        for (name, agent) in names.iter().zip(&agents) {
            let key = agent.key_bytes()?.context("the device holds its key")?;
            assert_eq!(held.get(name), Some(&key), "{label}: C2 holds the device's key for {name}");
        }

        let posts_before = device_posts(&c2);
        let (output, report) = export(&station, &c2, &[])?;
        assert!(output.status.success(), "{label}: {}", stderr(&output));
        assert!(outcomes(&report).values().all(|o| o == "already_exported"), "{report}");
        assert_eq!(report["summary"]["already_exported"], 2, "{report}");
        assert_eq!(report["summary"].get("unchanged"), None, "{report}");
        assert_eq!(device_posts(&c2), posts_before, "{label}: a key already exported is not sent again");
        // The text report says what Keyfill knows, and what it cannot know.
        let (url, ca) = (c2.url(), c2.ca_file());
        let output = station.run(&["export", "c2", "--url", &url, "--ca", ca.to_str().context("ca path")?])?;
        assert!(output.status.success(), "{label}: {}", stderr(&output));
        let table = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(table.lines().skip(1).all(|line| line.contains("already exported")), "{table}");
        assert!(!table.contains("unchanged") && !stderr(&output).contains("unchanged"), "{table}");
        assert!(stderr(&output).contains("0 created, 0 replaced, 2 already exported, 0 failed"), "{}", stderr(&output));
        assert!(stderr(&output).contains("C2 cannot show"), "{}", stderr(&output));
        let shown = station.run(&["devices", "show", &names[0], "--json"])?;
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
        assert_eq!(shown["c2_exports"][0]["outcome"], "already_exported", "{shown}");

        let history = station.history_kinds(&names[0])?;
        assert_eq!(history.iter().filter(|k| *k == "c2_exported").count(), 3, "{history:?}");
        // No key in the clear: station database, home, output and trace logs, C2's database.
        for agent in &agents {
            let key = agent.key_bytes()?.context("key")?;
            assert!(!contains_key(&station.db.dump()?, &key), "{label}: station database");
            assert!(!contains_key(&keyfill_e2e::read_tree(&station.home), &key), "{label}: station home");
            assert!(!contains_key(&station.transcript.borrow(), &key), "{label}: station output and logs");
            assert!(!contains_key(&c2.dump()?, &key), "{label}: C2's database");
        }
    }
    Ok(())
}

#[test]
fn c2_export_refuses_a_public_key_mode_c2_before_sending_anything() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names("c2-pub", 1))?;
    let c2 = C2Server::start(dir.path(), CryptoMode::PubKey)?;
    let (output, _) = export(&station, &c2, &[])?;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("CRYPTOMODE_PUBKEY"), "{}", stderr(&output));
    assert_eq!(device_posts(&c2), 0);
    assert!(c2.clients()?.is_empty());
    Ok(())
}

#[test]
fn c2_export_retries_server_errors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("c2-5xx", 1);
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    c2.fail_next_posts(2, 503);
    let (output, report) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(outcomes(&report)[&names[0]], "created");
    assert_eq!(report["devices"][0]["attempts"], 3, "{report}");
    assert!(c2.clients()?.contains_key(&names[0]));
    Ok(())
}

#[test]
fn c2_export_partial_failure_then_resume() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("c2-partial", 3);
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    c2.reject_client(&names[1], 400, "invalid client name for this deployment");
    let (output, report) = export(&station, &c2, &[])?;
    assert!(!output.status.success(), "a failed device fails the run");
    let first = outcomes(&report);
    assert_eq!((first[&names[0]].as_str(), first[&names[1]].as_str()), ("created", "failed"));
    assert_eq!(first[&names[2]], "created");
    let reason = report["devices"].as_array().context("devices")?.iter().find(|d| d["name"] == names[1].as_str());
    assert!(
        reason.and_then(|d| d["reason"].as_str()).is_some_and(|r| r.contains("invalid client name")),
        "C2's reason is reported: {report}"
    );
    assert_eq!(report["devices"][1]["attempts"], 1, "a 400 is not retried");
    // C2's message, the HTTP status and what to do, in words rather than library text.
    let reason = reason.and_then(|d| d["reason"].as_str()).unwrap_or_default();
    assert!(reason.contains("HTTP 400") && reason.contains("invalid argument"), "{reason}");
    assert!(!reason.contains("reqwest") && !reason.contains("{"), "{reason}");

    c2.clear_faults();
    let (output, report) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let second = outcomes(&report);
    assert_eq!(second[&names[1]], "created");
    assert_eq!((second[&names[0]].as_str(), second[&names[2]].as_str()), ("already_exported", "already_exported"));
    assert_eq!(c2.clients()?.len(), 3);
    Ok(())
}

#[test]
fn c2_export_resumes_after_the_station_is_killed_mid_export() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("c2-kill", 3);
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    // C2 stores a key before it waits: a key it holds is a POST the station still waits on.
    c2.set_post_delay(Duration::from_secs(30));
    let url = c2.url();
    let ca = c2.ca_file();
    let mut exporting = station
        .command(&["export", "c2", "--url", &url, "--ca", &ca.to_string_lossy(), "--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while c2.clients()?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the export never reached C2");
        std::thread::sleep(Duration::from_millis(20));
    }
    exporting.kill()?;
    exporting.wait()?;
    assert_eq!(c2.clients()?.len(), 1, "killed during the first POST");

    c2.set_post_delay(Duration::ZERO);
    let (output, report) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    // The interrupted POST is sent again and reported as what it was meant to do.
    assert!(outcomes(&report).values().all(|o| o == "created"), "every device lands exactly once: {report}");
    assert_eq!(c2.clients()?.len(), 3);
    Ok(())
}

#[test]
fn c2_export_never_overwrites_a_client_it_did_not_export_unless_told() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("c2-foreign", 1);
    let (station, agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let foreign = [0x5a; 32];
    c2.insert_client(&names[0], &foreign)?;
    let (output, report) = export(&station, &c2, &[])?;
    assert!(!output.status.success());
    assert_eq!(outcomes(&report)[&names[0]], "failed", "{report}");
    assert!(report["devices"][0]["reason"].as_str().is_some_and(|r| r.contains("--replace")), "{report}");
    assert_eq!(c2.clients()?[&names[0]], foreign.to_vec(), "C2's key is untouched");

    let (output, report) = export(&station, &c2, &["--replace"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(outcomes(&report)[&names[0]], "replaced");
    assert_eq!(Some(&c2.clients()?[&names[0]]), agents[0].key_bytes()?.as_ref());
    Ok(())
}

#[test]
fn c2_export_needs_the_ca_and_a_reachable_c2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names("c2-tls", 1))?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    // Without the test CA the server is not trusted: said in words, with what to do.
    let output = station.run(&["export", "c2", "--url", &c2.url()])?;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("certificate") && message.contains("not trusted"), "{message}");
    assert!(message.contains("--ca"), "{message}");
    assert_eq!(device_posts(&c2), 0);
    // A URL that is not C2's gateway: C2's plain-text 404, explained.
    let ca = c2.ca_file();
    let wrong = format!("{}/not-the-gateway", c2.url());
    let output = station.run(&["export", "c2", "--url", &wrong, "--ca", ca.to_str().context("ca path")?])?;
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("HTTP 404") && message.contains("--url"), "{message}");
    assert_eq!(device_posts(&c2), 0);
    // Unreachable: a clear error, and nothing is recorded as delivered.
    c2.pause();
    let (output, _) = export(&station, &c2, &["--max-attempts", "2"])?;
    assert!(!output.status.success());
    // The error lines, not the trace log around them.
    let message: String =
        stderr(&output).lines().filter(|l| l.starts_with("error:") || l.starts_with("  caused by:")).collect();
    assert!(message.contains("unreachable") && message.contains("connection refused"), "{message}");
    assert!(message.contains("is C2 running"), "{message}");
    assert!(!message.contains("os error") && !message.contains("tcp connect error"), "{message}");
    c2.resume();
    let (output, report) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(outcomes(&report).values().all(|o| o == "created"));
    Ok(())
}

/// `keyfill import bundle FILE … --json`, parsed.
fn import(
    station: &Station,
    c2: &C2Server,
    bundle: &Path,
    key: &Path,
    root: &Path,
) -> Result<(Output, serde_json::Value)> {
    let (url, ca_file) = (c2.url(), c2.ca_file());
    let extra = ["--c2", url.as_str(), "--ca", ca_file.to_str().context("path")?];
    run_with_operator_key(station, &["import", "bundle"], bundle, key, root, &extra)
}

/// `keyfill COMMAND… FILE --key KEY --factory-root ROOT EXTRA… --json` with the operator's
/// passphrase, and its JSON output parsed.
fn run_with_operator_key(
    station: &Station,
    command: &[&str],
    bundle: &Path,
    key: &Path,
    root: &Path,
    extra: &[&str],
) -> Result<(Output, serde_json::Value)> {
    let mut args = command.to_vec();
    let files = [bundle.to_str().context("path")?, "--key", key.to_str().context("path")?];
    args.extend(files);
    args.extend(["--factory-root", root.to_str().context("path")?]);
    args.extend(extra);
    args.push("--json");
    let output = station.run_env(&args, &[("KEYFILL_BUNDLE_KEY_PASSPHRASE", OPERATOR_PASSPHRASE)])?;
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    Ok((output, report))
}

#[test]
fn c2_export_bundle_carries_keys_across_the_air_gap_into_c2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("c2-bundle", 2);
    let (station, agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let operator_key = station.new_operator_key(dir.path())?;
    let bundle = dir.path().join("keys.kfb");
    let output = station.export_bundle(&operator_key, &bundle, &["--json"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let written: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(written["manifest"]["count"], 2, "{written}");
    assert_eq!(station.history_kinds(&names[0])?.last().map(String::as_str), Some("c2_bundled"));

    let root = station.factory_root_file();
    let output = station.run(&[
        "bundle",
        "inspect",
        bundle.to_str().context("path")?,
        "--factory-root",
        root.to_str().context("path")?,
        "--json",
    ])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let inspected: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(inspected["manifest"]["bundle_id"], written["manifest"]["bundle_id"]);

    // A tampered copy is refused before anything reaches C2.
    let mut bytes = std::fs::read(&bundle)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let tampered = dir.path().join("tampered.kfb");
    std::fs::write(&tampered, &bytes)?;
    let (output, _) = import(&station, &c2, &tampered, &operator_key, &root)?;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("nothing was sent to C2"), "{}", stderr(&output));
    // So is a bundle checked against another factory's root.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir)?;
    let other = Station::init(&other_dir, Database::sqlite(&other_dir))?;
    let (output, _) = import(&station, &c2, &bundle, &operator_key, &other.factory_root_file())?;
    assert!(!output.status.success());
    assert_eq!(device_posts(&c2), 0);

    let (output, report) = import(&station, &c2, &bundle, &operator_key, &root)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(outcomes(&report).values().all(|o| o == "created"), "{report}");
    assert_eq!(report["bundle"]["bundle_id"], written["manifest"]["bundle_id"]);
    let held = c2.clients()?;
    for (name, agent) in names.iter().zip(&agents) {
        assert_eq!(held.get(name), agent.key_bytes()?.as_ref(), "C2 holds {name}'s key");
    }
    // Importing the same bundle again resumes from its journal: nothing to send.
    let (output, report) = import(&station, &c2, &bundle, &operator_key, &root)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(outcomes(&report).values().all(|o| o == "already_exported"), "{report}");

    // The keys appear in the clear nowhere: bundle, journal, key files, station home, output, logs.
    let mut files = keyfill_e2e::read_tree(&station.home);
    let public = operator_key.with_extension("key.pub");
    for path in [&bundle, &operator_key, &public, &dir.path().join("keys.kfb.import.jsonl")] {
        files.extend(std::fs::read(path)?);
    }
    for agent in &agents {
        let key = agent.key_bytes()?.context("key")?;
        assert!(!contains_key(&files, &key), "bundle, journal, key files or station home");
        assert!(!contains_key(&station.transcript.borrow(), &key), "station output and logs");
    }
    Ok(())
}

/// `keyfill bundle inspect FILE --key KEY --factory-root ROOT --json`, parsed.
fn inspect_with_key(station: &Station, bundle: &Path, key: &Path) -> Result<(Output, serde_json::Value)> {
    run_with_operator_key(station, &["bundle", "inspect"], bundle, key, &station.factory_root_file(), &[])
}

#[test]
fn c2_export_bundle_of_several_parts_reaches_c2_only_when_every_part_holds() -> Result<()> {
    // SQLite's inventory is read through its bulk connection, PostgreSQL's a page per query.
    let dir = tempfile::tempdir()?;
    for (label, dir) in [("sqlite", dir.path().join("sqlite")), ("postgres", dir.path().join("postgres"))] {
        std::fs::create_dir_all(&dir)?;
        let db = if label == "sqlite" { Database::sqlite(&dir) } else { Database::postgres()? };
        several_parts_reach_c2_only_when_every_part_holds(&dir, db).with_context(|| label)?;
    }
    Ok(())
}

fn several_parts_reach_c2_only_when_every_part_holds(dir: &Path, db: Database) -> Result<()> {
    let station = Station::init(dir, db)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // In the order recorded: device `PREFIX-0000N` is the N-th.
    let mut keys = Vec::new();
    let prefix = unique_name("parts");
    runtime.block_on(keyfill_e2e::fleet::record_fleet(&station, &prefix, 7, |_, state| {
        keys.push(state.key.expose().to_vec());
    }))?;
    let c2 = C2Server::start(dir, CryptoMode::SymKey)?;
    let operator_key = station.new_operator_key(dir)?;
    let bundle = dir.join("parts.kfb");
    let output = station.export_bundle(&operator_key, &bundle, &["--keys-per-part", "3", "--json"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let written: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!((&written["manifest"]["count"], &written["manifest"]["parts"]), (&7.into(), &3.into()), "{written}");
    let ids: Vec<&str> =
        written["included"].as_array().context("included")?.iter().filter_map(|d| d["device_id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted, "the file holds the devices in id order");
    for index in [0, 6] {
        let kinds = station.history_kinds(&format!("{prefix}-{index:05}"))?;
        assert_eq!(kinds.last().map(String::as_str), Some("c2_bundled"), "{kinds:?}");
    }

    let (output, inspected) = inspect_with_key(&station, &bundle, &operator_key)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!((&inspected["keys"], &inspected["manifest"]["parts"]), (&"valid".into(), &3.into()), "{inspected}");

    // A flipped byte in the last part, or the file cut short: refused, nothing sent.
    let bytes = std::fs::read(&bundle)?;
    let mut last_part_altered = bytes.clone();
    let near_end = bytes.len() - 100;
    last_part_altered[near_end] ^= 0x01;
    for (name, damaged) in [("altered.kfb", last_part_altered), ("cut.kfb", bytes[..bytes.len() - 1].to_vec())] {
        let path = dir.join(name);
        std::fs::write(&path, &damaged)?;
        let (output, _) = import(&station, &c2, &path, &operator_key, &station.factory_root_file())?;
        assert!(!output.status.success(), "{name} was imported");
        assert!(stderr(&output).contains("nothing was sent to C2"), "{name}: {}", stderr(&output));
        let (output, _) = inspect_with_key(&station, &path, &operator_key)?;
        assert!(!output.status.success(), "{name} passed inspection");
    }
    assert_eq!(device_posts(&c2), 0);

    let (output, report) = import(&station, &c2, &bundle, &operator_key, &station.factory_root_file())?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(outcomes(&report).values().filter(|o| *o == "created").count(), 7, "{report}");
    let held = c2.clients()?;
    assert_eq!(held.len(), 7);
    for (index, key) in keys.iter().enumerate() {
        let name = format!("{prefix}-{index:05}");
        assert_eq!(held.get(&name), Some(key), "C2 holds {name}'s key");
    }
    Ok(())
}

#[test]
fn c2_export_after_a_confirmed_rotation_replaces_the_key_and_holds_back_unsettled_ones() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("c2-rotated", 2);
    let (station, mut agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let (output, _) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));

    // The first device rotates with its agent online; the second has no agent: its rotation fails.
    agents[0].mqtt(keyfill_e2e::BROKER, &[])?;
    let output = station.run(&["rotate", &names[0], "--broker", keyfill_e2e::BROKER, "--first-wait", "1"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let output = station.run(&[
        "rotate",
        &names[1],
        "--broker",
        keyfill_e2e::BROKER,
        "--first-wait",
        "0.3",
        "--max-attempts",
        "1",
    ])?;
    assert!(!output.status.success(), "no device answers the second rotation");
    let deadline = Instant::now() + Duration::from_secs(10);
    while agents[0].status()?["rotation_pending"] != false {
        anyhow::ensure!(Instant::now() < deadline, "the agent never switched keys");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (output, report) = export(&station, &c2, &[])?;
    assert!(!output.status.success(), "an unsettled rotation is reported as a failure");
    let result = outcomes(&report);
    assert_eq!(result[&names[0]], "replaced", "{report}");
    assert_eq!(result[&names[1]], "failed", "{report}");
    let unsettled = report["devices"].as_array().context("devices")?.iter().find(|d| d["name"] == names[1].as_str());
    assert!(unsettled.and_then(|d| d["reason"].as_str()).is_some_and(|r| r.contains("unsettled")), "{report}");
    let held = c2.clients()?;
    assert_eq!(held.get(&names[0]), agents[0].key_bytes()?.as_ref(), "C2 holds the rotated key");
    assert_eq!(held.get(&names[1]), agents[1].key_bytes()?.as_ref(), "C2 keeps the last confirmed key");
    Ok(())
}

/// Stores clients as another tool would have registered them: `fillers` names sorting before
/// every device name, then each of `foreign` with its own key.
fn registered_by_another_tool(c2: &C2Server, fillers: usize, foreign: &[(&str, [u8; 32])]) -> Result<()> {
    for index in 0..fillers {
        c2.insert_client(&format!("another-tool-{index:03}"), &[0x11; 32])?;
    }
    for (name, key) in foreign {
        c2.insert_client(name, key)?;
    }
    Ok(())
}

/// The `offset` of every `GET /e4/clients` C2 received, in order.
fn listing_offsets(c2: &C2Server) -> Vec<u64> {
    c2.request_lines()
        .iter()
        .filter_map(|line| line.strip_prefix("GET /e4/clients?"))
        .filter_map(|query| query.split('&').find_map(|pair| pair.strip_prefix("offset=")))
        .filter_map(|offset| offset.parse().ok())
        .collect()
}

#[test]
fn c2_export_pages_past_c2s_page_cap_and_never_overwrites_clients_it_did_not_export() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // "zz-" sorts after every other client: C2 lists these names only past its first page.
    let names = names("zz-paging", 3);
    let (station, agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let (foreign_0, foreign_1) = ([0x5a; 32], [0x6b; 32]);
    registered_by_another_tool(&c2, 248, &[(&names[0], foreign_0), (&names[1], foreign_1)])?;
    assert_eq!(c2.clients()?.len(), 250);

    let (output, report) = export(&station, &c2, &[])?;
    assert!(!output.status.success(), "two devices are refused: {}", stderr(&output));
    let result = outcomes(&report);
    assert_eq!((result[&names[0]].as_str(), result[&names[1]].as_str()), ("failed", "failed"), "{report}");
    assert_eq!(result[&names[2]], "created", "{report}");
    for device in report["devices"].as_array().context("devices")?.iter().take(2) {
        assert!(device["reason"].as_str().is_some_and(|r| r.contains("--replace")), "{report}");
    }
    let held = c2.clients()?;
    assert_eq!(held[&names[0]], foreign_0.to_vec(), "C2's key is untouched");
    assert_eq!(held[&names[1]], foreign_1.to_vec(), "C2's key is untouched");
    assert_eq!(Some(&held[&names[2]]), agents[2].key_bytes()?.as_ref());
    // Every page was read, whatever the page cap, up to an empty one; and the count was asked.
    assert_eq!(listing_offsets(&c2), [0, 100, 200, 250], "{:?}", c2.request_lines());
    assert!(c2.request_lines().iter().any(|line| line == "GET /e4/clients/count"), "{:?}", c2.request_lines());

    let (output, report) = export(&station, &c2, &["--replace"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let result = outcomes(&report);
    assert_eq!((result[&names[0]].as_str(), result[&names[1]].as_str()), ("replaced", "replaced"), "{report}");
    assert_eq!(result[&names[2]], "already_exported", "{report}");
    let held = c2.clients()?;
    for (name, agent) in names.iter().zip(&agents) {
        assert_eq!(held.get(name), agent.key_bytes()?.as_ref(), "C2 holds {name}'s key");
    }
    assert_eq!(held.len(), 251);
    Ok(())
}

#[test]
fn c2_export_refuses_to_judge_while_c2s_client_list_changes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let names = names("zz-moving", 1);
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &names)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    registered_by_another_tool(&c2, 150, &[])?;
    c2.add_a_client_during_each_listing();

    let (output, _) = export(&station, &c2, &["--max-attempts", "2"])?;
    assert!(!output.status.success(), "a moving list must not be trusted");
    let message = stderr(&output);
    assert!(message.contains("changed while"), "{message}");
    assert!(message.contains("nothing was exported"), "{message}");
    assert_eq!(device_posts(&c2), 0, "nothing is sent on a list that moved");

    c2.clear_faults();
    let (output, report) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(outcomes(&report)[&names[0]], "created");
    Ok(())
}

/// Percent-encodes every byte of `name` but the unreserved ones (RFC 3986).
fn strictly_encoded(name: &str) -> String {
    name.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(byte).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Runs `sql` on a station's SQLite inventory, as an earlier Keyfill version could have left it.
fn sqlite_exec(db: &Database, sql: &str) -> Result<()> {
    let Database::Sqlite { path, .. } = db else { anyhow::bail!("a SQLite inventory is needed") };
    let output = std::process::Command::new("sqlite3").arg(path).arg(sql).output()?;
    anyhow::ensure!(output.status.success(), "sqlite3: {}", String::from_utf8_lossy(&output.stderr));
    Ok(())
}

#[test]
fn c2_export_sends_exactly_the_name_or_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = unique_name("exact");
    let tricky = format!("{base} Zürich 🔑 100%?#&=+;,'()[]@!$*\\~");
    let victim = format!("{base}-victim");
    let (station, agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &[tricky.clone(), victim.clone()])?;
    // An inventory row from an earlier version, whose name holds a tab. The URL library drops
    // tabs from a path, so a POST would land on another tool's client "…victimdev".
    let hostile = format!("{victim}\tdev");
    let other_tools_client = format!("{victim}dev");
    sqlite_exec(
        &station.db,
        &format!("UPDATE devices SET name = '{victim}' || char(9) || 'dev' WHERE name = '{victim}'"),
    )?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let foreign = [0x77; 32];
    c2.insert_client(&other_tools_client, &foreign)?;

    let (output, report) = export(&station, &c2, &[])?;
    assert!(!output.status.success(), "the hostile name fails the run");
    let result = outcomes(&report);
    assert_eq!(result[&tricky], "created", "{report}");
    assert_eq!(result[&hostile], "failed", "{report}");
    let reason = report["devices"].as_array().context("devices")?.iter().find(|d| d["name"] == hostile.as_str());
    assert!(reason.and_then(|d| d["reason"].as_str()).is_some_and(|r| r.contains("control character")), "{report}");

    // The request line carries the name, every byte but the unreserved ones percent-encoded.
    let posts: Vec<String> = c2.request_lines().into_iter().filter(|line| line.starts_with("POST ")).collect();
    assert_eq!(posts, [format!("POST /e4/client/{}", strictly_encoded(&tricky))]);
    let held = c2.clients()?;
    assert_eq!(held.get(&tricky), agents[0].key_bytes()?.as_ref(), "C2 stored exactly the name");
    assert_eq!(held[&other_tools_client], foreign.to_vec(), "the other tool's client is untouched");
    assert_eq!(held.len(), 2);
    Ok(())
}

/// The error lines of a failed command, without the trace log around them.
fn error_lines(output: &Output) -> String {
    stderr(output)
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("  caused by:") || l.starts_with("what to do:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn adversarial_c2_slow_garbage_huge_or_foreign_certificate_answers_fail_cleanly_and_lose_nothing() -> Result<()> {
    use keyfill_e2e::c2::Misbehaviour;
    let dir = tempfile::tempdir()?;
    let devices = names("c2-hostile", 2);
    let (station, _agents) = provisioned(dir.path(), Database::sqlite(dir.path()), &devices)?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let impatient = ["--timeout", "2", "--max-attempts", "2"];
    let cases = [
        ("slow", Misbehaviour::Stall(Duration::from_secs(5)), "no answer in time"),
        ("garbage", Misbehaviour::Garbage, "not JSON"),
        ("huge body", Misbehaviour::HugeBody(64 << 20), "larger than"),
    ];
    for (case, misbehaviour, expected) in cases {
        c2.misbehave(misbehaviour);
        let started = Instant::now();
        let (output, _) = export(&station, &c2, &impatient)?;
        let took = started.elapsed();
        c2.clear_faults();
        assert!(!output.status.success(), "{case}: must fail");
        let said = error_lines(&output);
        assert!(said.contains(expected), "{case}: {said}");
        assert!(said.contains("--timeout") || said.contains("--url"), "{case}: says what to do: {said}");
        assert!(!stderr(&output).contains("panicked"), "{case}");
        // A liveness bound, not a performance figure: the station gives up and says so.
        assert!(took < Duration::from_secs(60), "{case}: took {took:?}");
        assert!(c2.clients()?.is_empty(), "{case}: nothing reached C2");
    }

    // A server whose certificate another CA signed: refused before any request is sent.
    let impostor_dir = dir.path().join("impostor");
    std::fs::create_dir_all(&impostor_dir)?;
    let impostor = C2Server::start(&impostor_dir, CryptoMode::SymKey)?;
    let url = impostor.url();
    let ca = c2.ca_file();
    let output = station.run(&["export", "c2", "--url", &url, "--ca", ca.to_str().context("ca path")?, "--json"])?;
    assert!(!output.status.success(), "another CA's certificate must not be trusted");
    let said = error_lines(&output);
    assert!(said.contains("certificate") && said.contains("not trusted"), "{said}");
    assert!(impostor.requests().is_empty(), "no request reached the impostor");

    // Nothing was recorded as exported: the real C2 gets every device on the next run.
    let (output, report) = export(&station, &c2, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let outcomes = outcomes(&report);
    assert_eq!(outcomes.len(), devices.len());
    assert!(outcomes.values().all(|o| o == "created"), "{outcomes:?}");
    Ok(())
}
