//! The GUI over the real station core (a station home, a SQLite inventory) and the real
//! Mosquitto on 127.0.0.1:1883: what rotations and exports leave behind once they end.

#[path = "../../tests/src/mqtt_proxy.rs"]
mod mqtt_proxy;
mod real_station;

use eframe::egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use keyfill_gui::screens::Screen;
use keyfill_gui::settings::Settings;
use mqtt_proxy::MqttProxy;
use real_station::{RealHome, settle, wait_until};
use std::time::Duration;

const SIZE: [f32; 2] = [1280.0, 800.0];

/// Two rotations and a watch for first contact from the GUI: each run opens one MQTT connection
/// under a client id of its own and closes it with a DISCONNECT when it ends, so nothing of
/// Keyfill stays connected and no run takes over another's connection. Every connection the
/// station makes goes through a proxy in front of Mosquitto, which records each connection's
/// client id, whether it said DISCONNECT, and which side closed it first (a client-id takeover
/// is the broker closing the old connection).
#[test]
fn gui_rotations_and_watch_each_close_their_one_mqtt_connection() {
    let home = RealHome::new();
    let name = format!("gui-rot-{:08x}", std::process::id());
    home.provisioned(&name);
    let proxy = MqttProxy::start().expect("the proxy listens");
    let mut settings = Settings::default();
    settings.rotation.broker = proxy.url();
    settings.rotation.first_wait_secs = 0.2;
    settings.rotation.max_attempts = 1;
    let mut harness = home.open_unlocked(settings, SIZE);
    harness.get_by_role_and_label(Role::Button, Screen::RotationExport.title()).click();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::TextInput, "Devices to rotate").focus();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::TextInput, "Devices to rotate").type_text(&name);
    settle(&mut harness);
    for run in 1..=2 {
        harness.get_by_role_and_label(Role::Button, "Start rotation").click();
        settle(&mut harness);
        wait_until(&mut harness, "the rotation's end", |h| {
            h.query_by_label("0 of 1 rotations confirmed").is_some()
                || h.query_by_label_contains("What to do").is_some()
        });
        harness.get_by_label("0 of 1 rotations confirmed");
        assert_eq!(proxy.connections().len(), run, "one connection per run: {:?}", proxy.connections());
    }
    harness.get_by_role_and_label(Role::Button, "Watch for first contact").click();
    wait_until(&mut harness, "the watch", |h| h.query_by_label_contains("for devices' first contact").is_some());
    harness.get_by_role_and_label(Role::Button, "Stop watching").click();
    wait_until(&mut harness, "the watch's end", |h| h.query_by_label_contains("Watch stopped").is_some());

    let connections = proxy.wait_all_closed(Duration::from_secs(10));
    assert_eq!(connections.len(), 3, "one connection per run, no reconnection: {connections:?}");
    let station_id = home.station_id();
    for connection in &connections {
        assert!(!connection.is_open(), "still connected after the run ended: {connection:?}");
        assert!(connection.said_disconnect, "closed without a DISCONNECT: {connection:?}");
        assert!(!connection.closed_by_broker_first, "the broker closed it (a takeover): {connection:?}");
        let id = connection.client_id.as_deref().unwrap_or_default();
        assert!(id.starts_with(&format!("keyfill-{}-", &station_id[..8])), "{id}");
    }
    let mut ids: Vec<_> = connections.iter().map(|c| c.client_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "a client id per run: {connections:?}");
}

/// An export whose C2 cannot be reached says so in the operator's words, with what to do, and
/// the failed run is in the History.
#[test]
fn gui_failed_export_says_what_to_do_and_is_in_the_history() {
    let home = RealHome::new();
    home.provisioned("gui-export-0001");
    let mut harness = home.open_unlocked(Settings::default(), SIZE);
    harness.get_by_role_and_label(Role::Button, Screen::RotationExport.title()).click();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::TextInput, "C2 address").focus();
    settle(&mut harness);
    // Nothing listens on the discard port.
    harness.get_by_role_and_label(Role::TextInput, "C2 address").type_text("https://127.0.0.1:9");
    settle(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Export to C2").click();
    wait_until(&mut harness, "the export's end", |h| h.query_by_label_contains("What to do").is_some());
    let message = harness.get_by_label_contains("cannot be reached").accesskit_node().value().unwrap_or_default();
    for raw in ["os error", "tcp connect", "error sending request", "client error"] {
        assert!(!message.contains(raw), "library text shown to the operator: {message}");
    }
    assert!(message.contains("https://127.0.0.1:9"), "{message}");
    harness.get_by_label_contains("What to do: Check that C2 runs");

    harness.get_by_role_and_label(Role::Button, Screen::History.title()).click();
    wait_until(&mut harness, "the event log", |h| h.query_by_label_contains("event(s)").is_some());
    harness.get_by_role_and_label(Role::Button, "Failures").click();
    wait_until(&mut harness, "the failures", |h| h.query_by_label("c2_export_failed").is_some());
    harness.get_by_label_contains("https://127.0.0.1:9");
}

/// A run cancelled mid-way (the app closing drops the station's tasks) ends its connection
/// too: dropping the rotator ends the connection task, so nothing reconnects under its id.
#[test]
fn gui_cancelled_rotation_run_leaves_no_connection_behind() {
    use keyfill_station::db::Inventory;
    use keyfill_station::db::events::Actor;
    use keyfill_station::home::StationHome;
    use keyfill_station::provision::Station;
    use keyfill_station::rotation::{RotationSettings, Rotator};
    use std::sync::Arc;
    let home = RealHome::new();
    let id = home.provisioned("gui-rot-cancelled");
    let proxy = MqttProxy::start().expect("the proxy listens");
    home.runtime.block_on(async {
        let station_home = StationHome::new(&home.home);
        let unlocked = station_home.unlock(real_station::PASSPHRASE).expect("unlocks");
        let inventory = Inventory::open(&home.db_url).await.expect("opens");
        let actor: Actor = station_home.actor(&unlocked, "gui-operator").expect("a signing key");
        let station = Arc::new(Station::new(inventory, unlocked, actor));
        let settings = RotationSettings { first_wait: Duration::from_secs(30), ..RotationSettings::default() };
        let rotator = Arc::new(Rotator::connect(station, &proxy.url(), settings).await.expect("connects"));
        let run = tokio::spawn(async move { rotator.rotate_all(vec![id], |_| {}).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        run.abort();
        assert!(run.await.is_err(), "the run was cancelled while waiting for the device");
    });
    let connections = proxy.wait_all_closed(Duration::from_secs(10));
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert!(!connections[0].is_open(), "still connected after the run was cancelled: {connections:?}");
    assert!(!connections[0].closed_by_broker_first, "{connections:?}");
    // Nothing reconnects later under the run's client id.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(proxy.connections().len(), 1, "{:?}", proxy.connections());
}

/// Cancel while the station waits for a device that does not answer (a pseudo-terminal with
/// nobody on the other end): the session is dropped before the key left, so the record is
/// failed, with why, and the window says the device holds no key.
#[test]
fn gui_cancel_while_the_device_is_silent_leaves_the_record_failed() {
    use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
    use keyfill_station::db::Inventory;
    use keyfill_station::db::devices::{self, DeviceState};
    use nix::pty::{OpenptyResult, openpty};
    use nix::sys::termios::{self, SetArg};
    let home = RealHome::new();
    let OpenptyResult { master, slave } = openpty(None, None).expect("a pseudo-terminal");
    let mut attributes = termios::tcgetattr(&slave).expect("its attributes");
    termios::cfmakeraw(&mut attributes);
    termios::tcsetattr(&slave, SetArg::TCSANOW, &attributes).expect("raw mode");
    let port = nix::unistd::ttyname(&slave).expect("its path");
    let payload = OnboardingPayload::new(
        keyfill_formats::DeviceName::parse("gui-silent-0001").expect("a valid name"),
        "SN-SILENT",
        DeviceCredential::Identity { public_key: [7; 32] },
    );
    let mut settings = Settings::default();
    settings.link.serial_port = port.display().to_string();
    let mut harness = home.open_unlocked(settings, SIZE);
    harness.get_by_role_and_label(Role::TextInput, "Scan label").focus();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::TextInput, "Scan label").type_text(&payload.encode().expect("a payload"));
    settle(&mut harness);
    harness.key_press(eframe::egui::Key::Enter);
    settle(&mut harness);
    harness.key_press(eframe::egui::Key::Enter);
    wait_until(&mut harness, "the handshake", |h| h.query_by_label_contains("Authenticating the device").is_some());
    harness.get_by_role_and_label(Role::Button, "Cancel").click();
    wait_until(&mut harness, "the cancel", |h| h.query_by_label("Cancelled").is_some());
    harness.get_by_label_contains("holds no key from this station");

    let id = payload.device_id.to_hex();
    let stored = home.runtime.block_on(async {
        let inventory = Inventory::open(&home.db_url).await.expect("opens");
        let device = devices::get(inventory.pool(), &id).await.expect("reads");
        inventory.close().await;
        device
    });
    let stored = stored.expect("the device is in the inventory");
    assert_eq!(stored.state, DeviceState::Failed);
    assert_eq!(stored.failure.as_deref(), Some("cancelled by the operator before the key was sent"));
    drop((master, slave));
}
