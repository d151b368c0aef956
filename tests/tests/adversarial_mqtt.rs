//! Attacks by a peer on the MQTT broker against rotation, with the real `keyfill rotate` and
//! `keyfill-agent mqtt` over Mosquitto: anyone on the broker can record and publish.
//!
//! - A recorded SetIdKey replayed after the rotation it carried: ignored; the device keeps the
//!   key it holds and can still be rotated.
//! - A SetIdKey under the device's own key but dated an hour ahead (a station with a wrong clock,
//!   or a command prepared in advance to be released later): refused; the device keeps its key.
//! - A confirmation recorded from one device's rotation, published as another device's: the
//!   other device's rotation is not confirmed by it; it ends `rotation_failed` with both keys
//!   kept, the current key unchanged.

use anyhow::{Context, Result};
use keyfill_e2e::{Agent, BROKER, Database, Station, provisioned_device, publish_raw, unique_name};
use keyfill_formats::DeviceId;
use keyfill_formats::e4::{self, Command, keyfill::confirm_topic};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn record_of(station: &Station, name: &str) -> Result<serde_json::Value> {
    let output = station.run(&["devices", "show", name, "--json"])?;
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn rotate(station: &Station, name: &str, schedule: &[&str]) -> Result<std::process::Output> {
    let mut args = vec!["rotate", name, "--broker", BROKER];
    args.extend(schedule);
    station.run(&args)
}

/// A message seen on the broker: topic and payload.
type Seen = (String, Vec<u8>);

/// Everything published on some topics, as a peer subscribed to them sees it.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    client: Client,
}

impl Recorder {
    fn start(topics: &[String]) -> Result<Self> {
        let (host, port) = keyfill_station::rotation::parse_broker(BROKER)?;
        let mut options = MqttOptions::new(unique_name("keyfill-recorder"), host, port);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = Client::new(options, 64);
        for topic in topics {
            client.subscribe(topic, QoS::AtLeastOnce)?;
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recording = seen.clone();
        let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if let Ok(mut seen) = recording.lock() {
                            seen.push((publish.topic.clone(), publish.payload.to_vec()));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        for _ in topics {
            subscribed.recv_timeout(Duration::from_secs(10)).context("the broker did not acknowledge")?;
        }
        Ok(Recorder { seen, client })
    }

    fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        let seen = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        seen.into_iter().filter(|(t, _)| t == topic).map(|(_, p)| p).collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// Gives the agent time to receive and judge what was just published.
fn settle() {
    std::thread::sleep(Duration::from_secs(2));
}

#[test]
fn adversarial_mqtt_replayed_set_id_key_is_ignored_and_the_device_keeps_its_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("replayed-cmd");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    let control = e4::control_topic(&DeviceId::from_name(&name));
    let recorder = Recorder::start(std::slice::from_ref(&control))?;
    agent.mqtt(BROKER, &[])?;
    let output = rotate(&station, &name, &["--first-wait", "1", "--max-attempts", "6"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let rotated = record_of(&station, &name)?;
    agent.wait_for_key(&rotated["key_id"])?;
    let held = agent.key_bytes()?.context("the device holds its key")?;
    let recorded = recorder.on(&control);
    assert!(!recorded.is_empty(), "the rotation's commands were seen on the broker");

    for message in &recorded {
        publish_raw(&control, message)?;
    }
    settle();
    assert_eq!(agent.key_bytes()?.as_deref(), Some(&held[..]), "a replayed command changed nothing");
    assert_eq!(agent.status()?["rotation_pending"], false);
    assert_eq!(record_of(&station, &name)?["key_id"], rotated["key_id"]);

    // Nothing was lost: the next rotation goes through.
    let output = rotate(&station, &name, &["--first-wait", "1", "--max-attempts", "6"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let again = record_of(&station, &name)?;
    assert_ne!(again["key_id"], rotated["key_id"]);
    agent.wait_for_key(&again["key_id"])?;
    Ok(())
}

#[test]
fn adversarial_mqtt_future_dated_set_id_key_is_refused_and_the_device_keeps_its_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let name = unique_name("future-cmd");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    agent.mqtt(BROKER, &[])?;
    let held = agent.key_bytes()?.context("the device holds its key")?;
    let key = keyfill_formats::SecretKey::from_bytes(held.as_slice().try_into()?);
    let control = e4::control_topic(&DeviceId::from_name(&name));
    let new_key = keyfill_formats::SecretKey::from_bytes([0x6b; 32]);
    let command = Command::SetIdKey { key: new_key }.encode();
    let now = keyfill_station::home::unix_now();
    for (case, timestamp) in [("an hour ahead", now + 3600), ("an hour old", now - 3600)] {
        publish_raw(&control, &e4::protect(&key, timestamp, &command)?)?;
        settle();
        assert_eq!(agent.key_bytes()?.as_deref(), Some(&held[..]), "{case}: the device kept its key");
        assert_eq!(agent.status()?["rotation_pending"], false, "{case}");
    }
    let log = String::from_utf8_lossy(&agent.log()).into_owned();
    assert!(log.contains("ahead") || log.contains("future"), "the agent says why: {log}");
    assert_eq!(record_of(&station, &name)?["rotation"], serde_json::Value::Null, "the station knows of no rotation");
    Ok(())
}

#[test]
fn adversarial_mqtt_confirmation_for_another_device_does_not_confirm_a_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let confirmed_name = unique_name("confirming");
    let silent_name = unique_name("silent");
    let (station, mut confirming) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &confirmed_name)?;
    // A second device of the same station, offline throughout.
    let silent_dir = dir.path().join("silent");
    std::fs::create_dir_all(&silent_dir)?;
    let mut silent = Agent::init(&silent_dir, &silent_name, &station.factory_root_file(), &[])?;
    let pty = keyfill_e2e::PtyPair::new(&silent_dir)?;
    silent.serve(&pty.device_side, &[])?;
    let output =
        station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &silent.payload])?;
    assert!(output.status.success(), "{}", stderr(&output));
    silent.stop();

    let confirm_confirmed = confirm_topic(&DeviceId::from_name(&confirmed_name));
    let confirm_silent = confirm_topic(&DeviceId::from_name(&silent_name));
    let recorder = Recorder::start(std::slice::from_ref(&confirm_confirmed))?;
    confirming.mqtt(BROKER, &[])?;
    let output = rotate(&station, &confirmed_name, &["--first-wait", "1", "--max-attempts", "6"])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let confirmations = recorder.on(&confirm_confirmed);
    assert!(!confirmations.is_empty(), "the confirmation was seen on the broker");

    let before = record_of(&station, &silent_name)?;
    let mut rotating = station
        .command(&["rotate", &silent_name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "3"])
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    for confirmation in &confirmations {
        publish_raw(&confirm_silent, confirmation)?;
    }
    let status = rotating.wait()?;
    assert!(!status.success(), "another device's confirmation must not confirm this rotation");
    let after = record_of(&station, &silent_name)?;
    assert_eq!(after["rotation"], "rotation_failed", "{after}");
    assert_eq!(after["state"], "provisioned");
    assert_eq!(after["key_id"], before["key_id"], "the current key is unchanged");
    Ok(())
}
