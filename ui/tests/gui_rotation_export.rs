//! The Rotation & export screen's daily work beyond a batch: the watch for first contact (the
//! test plays the devices saying hello), and offline bundles for an air-gapped C2. Against the
//! fake station, through the accessibility tree.

mod support;

use eframe::egui::accesskit::Role;
use eframe::egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use keyfill_gui::app::LockState;
use keyfill_gui::screens::Screen;
use keyfill_gui::station_handle::fake::demo_state;
use support::{PASSPHRASE, click, is_enabled, replace_text, show, type_into, unlock, unlocked};

/// The C2 operator's public key, as `keyfill bundle new-key` writes it in KEY.pub.
const RECIPIENT: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

#[test]
fn gui_watch_rotates_devices_on_first_contact_until_stopped() {
    let mut state = demo_state(PASSPHRASE);
    state.rotation_unconfirmed = vec!["sensor-1131".into()];
    let (mut harness, control) = unlocked(state);
    show(&mut harness, Screen::RotationExport);
    click(&mut harness, Role::Button, "Watch for first contact");
    harness.get_by_label("Watching mqtt://127.0.0.1:1883 for devices' first contact");
    // One rotation at a time: the batch waits while the watch runs.
    assert!(!is_enabled(&harness, Role::Button, "Start rotation"));

    // Never rotated: rotated now. Never confirms: failed, both keys kept. Rotation unsettled
    // (sensor-1204): the hello settles it. Already rotated (sensor-1000): nothing to do.
    for device in ["sensor-1132", "sensor-1131", "sensor-1204", "sensor-1000"] {
        control.contact(device);
    }
    harness.run();
    harness.get_by_label("2 rotated · 1 failed · 0 in progress");
    assert_eq!(harness.get_all_by_label("rotated").count(), 2);
    harness.get_by_label_contains("failed: no confirmation after 6 attempts");
    assert!(harness.query_by_label("sensor-1000").is_none());

    click(&mut harness, Role::Button, "Stop watching");
    harness.get_by_label("Watch stopped: 2 of 3 rotations confirmed");
    harness.get_by_label_contains("rotation_failed: no confirmation");
    assert!(is_enabled(&harness, Role::Button, "Watch for first contact"));
    assert!(is_enabled(&harness, Role::Button, "Start rotation"));
    let received = control.received();
    assert!(received.ends_with(&["stop_watch", "load_devices"]), "{received:?}");
    assert!(received.contains(&"watch_rotation"), "{received:?}");
    control.with(|state| {
        let rotation = |name: &str| state.devices.iter().find(|d| d.name == name).and_then(|d| d.rotation.clone());
        assert_eq!(rotation("sensor-1132").as_deref(), Some("active"));
        assert_eq!(rotation("sensor-1131").as_deref(), Some("rotation_failed"));
        assert_eq!(rotation("sensor-1204").as_deref(), Some("active"));
    });
}

#[test]
fn gui_locking_stops_the_watch_and_keeps_its_results() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::RotationExport);
    click(&mut harness, Role::Button, "Watch for first contact");
    control.contact("sensor-1132");
    harness.run();
    harness.key_press_modifiers(Modifiers::CTRL, Key::L);
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Locked);
    assert!(control.received().contains(&"lock"));
    unlock(&mut harness, PASSPHRASE);
    show(&mut harness, Screen::RotationExport);
    harness.get_by_label("Watch stopped: 1 of 1 rotations confirmed");
    assert!(is_enabled(&harness, Role::Button, "Watch for first contact"));
}

#[test]
fn gui_bundle_export_shows_the_manifest_and_the_devices_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys-line-3.kfb");
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::RotationExport);
    click(&mut harness, Role::Button, "Offline bundle");
    type_into(&mut harness, "C2 operator's key", RECIPIENT);
    type_into(&mut harness, "Bundle file", &out.display().to_string());
    // Provisioned; pending; a rotation never settled.
    type_into(&mut harness, "Devices to export", "sensor-1205, sensor-1015, sensor-1204");
    click(&mut harness, Role::Button, "Write bundle");

    harness.get_by_label(&format!("Bundle written to {}: 1 key(s)", out.display()));
    harness.get_by_label_contains("from station line-3-station");
    harness.get_by_label_contains("1 key(s) confirmed");
    harness.get_by_label("2 device(s) left out");
    harness.get_by_label("left out: not provisioned (state pending)");
    harness.get_by_label_contains("left out: the last rotation is unsettled");
    harness.get_by_label("in the bundle");
    assert!(control.received().contains(&"export_bundle"));
    // The recipient is kept for the next bundle; the file name is not (a bundle is never replaced).
    assert_eq!(harness.state().settings().export.bundle_recipient, RECIPIENT);
    let file = harness.get_by_role_and_label(Role::TextInput, "Bundle file");
    assert_eq!(file.value().unwrap_or_default(), "");

    // The events are in History, under Export.
    show(&mut harness, Screen::History);
    click(&mut harness, Role::Button, "Export");
    harness.get_by_label("c2_bundled");
    harness.get_by_label("c2_bundle_written");
    harness.get_by_label("2 event(s)");
}

#[test]
fn gui_bundle_export_refusals_say_why() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::RotationExport);
    click(&mut harness, Role::Button, "Offline bundle");
    click(&mut harness, Role::Button, "Write bundle");
    harness.get_by_label("No C2 operator's key.");
    assert!(!control.received().contains(&"export_bundle"), "refused before asking the station");

    type_into(&mut harness, "C2 operator's key", "/nowhere/c2-operator.pub");
    type_into(&mut harness, "Bundle file", "/tmp/never-written.kfb");
    click(&mut harness, Role::Button, "Write bundle");
    harness.get_by_label_contains("Recipient \"/nowhere/c2-operator.pub\": not a key file nor 64 hex digits");
    harness.get_by_label_contains("What to do: Choose the .pub file");

    // Every device selected is held back: no bundle, and each reason shown.
    replace_text(&mut harness, "C2 operator's key", RECIPIENT);
    type_into(&mut harness, "Devices to export", "sensor-1015");
    click(&mut harness, Role::Button, "Write bundle");
    harness.get_by_label("No key to put in a bundle: every device selected was left out.");
    harness.get_by_label("left out: not provisioned (state pending)");
    control.with(|state| assert!(state.history.iter().all(|e| !e.kind.starts_with("c2_bundle"))));
}
