//! Confirmed first-use key rotation end to end: the real `keyfill rotate` and the real
//! `keyfill-agent mqtt` over the Mosquitto broker on 127.0.0.1:1883.

use anyhow::Result;
use keyfill_e2e::{
    Agent, BROKER, Database, Station, contains_key, provisioned_device, publish_raw, read_tree, unique_name,
};
use std::time::{Duration, Instant};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn device(station: &Station, name: &str) -> Result<serde_json::Value> {
    let output = station.run(&["devices", "show", name, "--json"])?;
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// `keyfill rotate NAME`, by default with a 1 s first wait and 6 attempts.
fn rotate(station: &Station, name: &str, schedule: &[&str]) -> Result<std::process::Output> {
    let mut args = vec!["rotate", name, "--broker", BROKER];
    args.extend(if schedule.is_empty() { &["--first-wait", "1", "--max-attempts", "6"][..] } else { schedule });
    station.run(&args)
}

fn assert_rotated(station: &Station, agent: &Agent, name: &str, old_key_id: &serde_json::Value) -> Result<()> {
    let record = device(station, name)?;
    assert_eq!(record["rotation"], "active", "{record}");
    assert_ne!(record["key_id"], *old_key_id);
    let kinds: Vec<&str> =
        record["history"].as_array().expect("history").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"rotated"), "{kinds:?}");
    agent.wait_for_key(&record["key_id"])?;
    assert_eq!(agent.status()?["rotation_pending"], false);
    Ok(())
}

#[test]
fn rotation_confirmed_by_the_device_sqlite_and_postgres() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (label, db) in [("sqlite", Database::sqlite(dir.path())), ("postgres", Database::postgres()?)] {
        let dir = dir.path().join(label);
        std::fs::create_dir_all(&dir)?;
        let name = unique_name(&format!("rot-{label}"));
        let (station, mut agent) = provisioned_device(&dir, db, &name)?;
        let old_key_id = device(&station, &name)?["key_id"].clone();
        agent.mqtt(BROKER, &[])?;
        let output = rotate(&station, &name, &[])?;
        assert!(output.status.success(), "{label}: {}", stderr(&output));
        assert_rotated(&station, &agent, &name, &old_key_id)?;
        // The rotated key is nowhere in the clear: database, station home, station and agent logs.
        let key = agent.key_bytes()?.expect("the device holds its new key");
        assert!(!contains_key(&station.db.dump()?, &key), "{label}: database");
        assert!(!contains_key(&read_tree(&station.home), &key), "{label}: station home");
        assert!(!contains_key(&station.transcript.borrow(), &key), "{label}: station output and trace logs");
        assert!(!contains_key(&agent.log(), &key), "{label}: agent logs");
    }
    Ok(())
}

#[test]
fn rotation_reaches_a_device_that_was_offline_during_the_first_attempt() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-offline");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    let mut rotating =
        station.command(&["rotate", &name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "6"]).spawn()?;
    std::thread::sleep(Duration::from_millis(2500));
    agent.mqtt(BROKER, &[])?;
    let status = rotating.wait()?;
    assert!(status.success());
    assert!(
        device(&station, &name)?["rotation_attempts"].as_i64().unwrap_or(0) >= 2,
        "the first attempt went unanswered"
    );
    assert_rotated(&station, &agent, &name, &old_key_id)
}

#[test]
fn rotation_retry_after_a_lost_confirmation_is_idempotent() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-lost");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    agent.mqtt(BROKER, &["--fault", "drop-first-confirmation"])?;
    let output = rotate(&station, &name, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(device(&station, &name)?["rotation_attempts"], 2);
    let log = String::from_utf8_lossy(&agent.log()).into_owned();
    assert!(log.contains("SetIdKey repeated: confirming again"), "the retry found the key already stored");
    assert_rotated(&station, &agent, &name, &old_key_id)
}

#[test]
fn rotation_resumes_after_the_station_is_killed_mid_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-resume");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    let mut rotating = station.command(&["rotate", &name, "--broker", BROKER, "--first-wait", "30"]).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while device(&station, &name)?["rotation"] != "rotation_pending"
        || device(&station, &name)?["rotation_attempts"] != 1
    {
        anyhow::ensure!(Instant::now() < deadline, "the rotation never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    rotating.kill()?;
    rotating.wait()?;
    // The retained command under the old key was published; the device comes online later.
    let next_key_before = device(&station, &name)?;
    agent.mqtt(BROKER, &[])?;
    let output = rotate(&station, &name, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let after = device(&station, &name)?;
    assert_rotated(&station, &agent, &name, &old_key_id)?;
    let kinds: Vec<&str> =
        after["history"].as_array().expect("history").iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "rotation_started").count(), 1, "resumed, not restarted: {kinds:?}");
    assert_eq!(next_key_before["rotation"], "rotation_pending");
    Ok(())
}

#[test]
fn rotation_agent_killed_between_storing_next_and_confirming_can_still_be_reached() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-crash");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    agent.mqtt(BROKER, &["--fault", "exit-after-next-stored"])?;
    let mut rotating =
        station.command(&["rotate", &name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "6"]).spawn()?;
    assert_eq!(agent.wait_exit(Duration::from_secs(10))?, Some(75));
    let status = agent.status()?;
    assert_eq!(status["rotation_pending"], true, "the next key was stored before the crash");
    assert_eq!(status["key_id"], old_key_id, "and the old key is still there");
    agent.mqtt(BROKER, &[])?;
    assert!(rotating.wait()?.success());
    assert_rotated(&station, &agent, &name, &old_key_id)
}

/// Starts `keyfill rotate --watch` for `seconds`; returns once it listens, with its further
/// stderr lines.
fn watch(station: &Station, seconds: u64) -> Result<(std::process::Child, std::sync::mpsc::Receiver<String>)> {
    let seconds = seconds.to_string();
    let mut watcher = station
        .command(&["rotate", "--watch", "--watch-for", &seconds, "--broker", BROKER])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = watcher.stderr.take().expect("piped");
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    while !lines.recv_timeout(Duration::from_secs(20))?.starts_with("watching for devices' first contact") {}
    Ok((watcher, lines))
}

#[test]
fn rotation_without_any_answer_ends_rotation_failed_with_both_keys_kept() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-silent");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let output = rotate(&station, &name, &["--max-attempts", "2", "--first-wait", "0.5"])?;
    assert!(!output.status.success());
    let record = device(&station, &name)?;
    assert_eq!(record["rotation"], "rotation_failed");
    assert_eq!(record["state"], "provisioned", "the old key is still the current one");
    // The device's next contact settles it: it comes online, takes the retained command, and
    // its late confirmation (seen by the watcher) proves it holds the new key.
    let (mut watcher, _lines) = watch(&station, 8)?;
    agent.mqtt(BROKER, &["--hello"])?;
    assert!(watcher.wait()?.success());
    let record = device(&station, &name)?;
    assert_eq!(record["rotation"], "active", "{record}");
    Ok(())
}

#[test]
fn rotation_on_first_use_starts_at_the_devices_first_hello_and_ignores_forged_ones() -> Result<()> {
    use keyfill_formats::e4::{self, keyfill::HELLO_PLAINTEXT, keyfill::hello_topic};
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-first-use");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    assert_eq!(device(&station, &name)?["rotation"], serde_json::Value::Null, "never rotated");

    let (mut watcher, lines) = watch(&station, 12)?;
    let mut seen: Vec<String> = Vec::new();

    // A well-formed hello under a key the device does not hold proves nothing: no rotation.
    let id = keyfill_formats::DeviceId::from_name(&name);
    let forged_key = keyfill_formats::SecretKey::from_bytes([0x5a; 32]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    publish_raw(&hello_topic(&id), &e4::protect(&forged_key, now, HELLO_PLAINTEXT)?)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l| l.contains("hello that does not open under the device's key")) {
        anyhow::ensure!(Instant::now() < deadline, "the forged hello was not noticed: {seen:?}");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    assert_eq!(device(&station, &name)?["rotation"], serde_json::Value::Null, "a forged hello starts nothing");

    // The device's first real contact: its hello under the factory key starts the rotation.
    agent.mqtt(BROKER, &["--hello"])?;
    assert!(watcher.wait()?.success());
    assert_rotated(&station, &agent, &name, &old_key_id)?;
    Ok(())
}

/// The login name of this process's real user, as `id -un` reads it from the passwd database.
fn login_name() -> Result<String> {
    let output = std::process::Command::new("id").arg("-un").output()?;
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Each `keyfill rotate` run (a batch, then a watch) opens one MQTT connection under a client
/// id of its own, and closes it with a DISCONNECT when the run ends, before the process exits;
/// the proxy in front of Mosquitto sees every connection the station makes.
#[test]
fn gui_and_cli_rotate_open_one_connection_per_run_and_disconnect_at_the_end() -> Result<()> {
    use keyfill_e2e::mqtt_proxy::MqttProxy;
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-conn");
    let (station, _agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let proxy = MqttProxy::start()?;
    let broker = proxy.url();
    let output = station.run(&["rotate", &name, "--broker", &broker, "--first-wait", "0.2", "--max-attempts", "1"])?;
    assert!(!output.status.success(), "nobody answers: the rotation fails, {}", stderr(&output));
    let output = station.run(&["rotate", "--watch", "--watch-for", "1", "--broker", &broker])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let connections = proxy.wait_all_closed(Duration::from_secs(10));
    assert_eq!(connections.len(), 2, "one connection per run: {connections:?}");
    for connection in &connections {
        assert!(!connection.is_open(), "{connection:?}");
        assert!(connection.said_disconnect, "closed with a DISCONNECT: {connection:?}");
        assert!(!connection.closed_by_broker_first, "no takeover: {connection:?}");
        let id = connection.client_id.as_deref().unwrap_or_default();
        assert!(id.starts_with("keyfill-"), "{id}");
    }
    assert_ne!(connections[0].client_id, connections[1].client_id, "a client id per run");
    Ok(())
}

/// Without `$USER` (a service, `env -i`), the event log names the account's login name.
#[test]
fn gui_and_cli_operator_defaults_to_the_login_name_without_user() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-operator");
    let (station, _agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let output = station
        .command(&["rotate", &name, "--broker", BROKER, "--first-wait", "0.1", "--max-attempts", "1"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("KEYFILL_OPERATOR")
        .output()?;
    assert!(!output.status.success(), "nobody answers: the rotation fails");
    let record = device(&station, &name)?;
    let last = record["history"].as_array().and_then(|h| h.last()).cloned().unwrap_or_default();
    assert_eq!(last["kind"], "rotation_failed", "{record}");
    assert_eq!(last["operator"].as_str(), Some(login_name()?.as_str()), "{last}");
    Ok(())
}

#[test]
fn field_rotation_reaches_a_device_whose_clock_is_a_minute_behind() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-lagging");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    // Every command the station stamps is a minute ahead of this device's clock.
    agent.mqtt(BROKER, &["--clock-offset-secs", "-60"])?;
    let output = rotate(&station, &name, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_rotated(&station, &agent, &name, &old_key_id)
}

#[test]
fn field_rotation_to_a_device_11_minutes_behind_fails_naming_the_clock_and_keeps_its_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-far-behind");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let old_key_id = device(&station, &name)?["key_id"].clone();
    let rotating = station
        .command(&["rotate", &name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while device(&station, &name)?["rotation_attempts"].as_i64().unwrap_or(0) < 1 {
        anyhow::ensure!(Instant::now() < deadline, "the rotation never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The device comes online during the rotation, its clock 11 minutes behind; its hello on
    // connecting shows the station the difference.
    agent.mqtt(BROKER, &["--clock-offset-secs", "-660", "--hello"])?;
    let output = rotating.wait_with_output()?;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.contains("clock") && said.contains("behind the station's"), "{said}");

    let record = device(&station, &name)?;
    assert_eq!(record["rotation"], "rotation_failed", "{record}");
    assert_eq!(record["state"], "provisioned");
    assert_eq!(record["key_id"], old_key_id, "the station still uses the old key");
    let status = agent.status()?;
    assert_eq!(status["key_id"], old_key_id, "the device kept its key");
    assert_eq!(status["rotation_pending"], false, "and stored nothing: {status}");
    let log = String::from_utf8_lossy(&agent.log()).into_owned();
    assert!(log.contains("ahead of this device's clock"), "{log}");
    Ok(())
}

#[test]
fn field_watching_station_blames_the_clock_not_the_key_for_a_hello_11_minutes_old() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("rot-old-hello");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let (mut watcher, lines) = watch(&station, 8)?;
    agent.mqtt(BROKER, &["--clock-offset-secs", "-660", "--hello"])?;
    let mut seen: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|l| l.contains("s behind the station's clock, outside the 600 s window")) {
        anyhow::ensure!(Instant::now() < deadline, "the hello's clock was not named: {seen:?}");
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    assert!(!seen.iter().any(|l| l.contains("does not open under the device's key")), "{seen:?}");
    assert!(watcher.wait()?.success());
    assert_eq!(device(&station, &name)?["rotation"], serde_json::Value::Null, "nothing started");
    Ok(())
}
