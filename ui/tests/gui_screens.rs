//! Every screen driven through the accessibility tree, as an operator (or a screen reader)
//! would: against the fake station, which answers at once, so no test waits on a clock.

use eframe::egui::accesskit::Role;
use eframe::egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_gui::KeyfillApp;
use keyfill_gui::app::LockState;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::problem::Problem;
use keyfill_gui::screens::Screen;
use keyfill_gui::settings::{self, LabelMode, Settings};
use keyfill_gui::station_handle::fake::{FakeControl, FakeState, demo_state};
use keyfill_station::db::devices::DeviceState;
use keyfill_station::protocol::SessionError;
use keyfill_station::provision::ProvisionError;

mod support;

use support::{PASSPHRASE, harness_for, many_devices, settings, show, unlock, unlocked};

fn payload(name: &str) -> String {
    let payload = OnboardingPayload::new(
        name.parse().expect("a valid name"),
        &format!("SN-{name}"),
        DeviceCredential::Identity { public_key: [7; 32] },
    );
    payload.encode().expect("a valid payload")
}

fn id_of(name: &str) -> String {
    keyfill_formats::DeviceId::from_name(name).to_hex()
}

/// Types `text` into the focused scan field and presses Enter, as a USB HID scanner does.
fn scan(harness: &mut Harness<'_, KeyfillApp>, text: &str) {
    harness.get_by_role_and_label(Role::TextInput, "Scan label").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Scan label").type_text(text);
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
}

#[test]
fn gui_unlock_rejects_a_wrong_passphrase_with_what_to_do_then_unlocks() {
    let control = FakeControl::new(FakeState::new(PASSPHRASE));
    let mut harness = harness_for(&control, settings());
    harness.run();
    harness.get_by_label("line-3-station");
    harness.get_by_label("5f0c 1e2d 3a4b 5c6d 7e8f 901a 2b3c 4d5e");
    unlock(&mut harness, "wrong");
    assert_eq!(harness.state().lock_state(), LockState::Locked);
    harness.get_by_label("Wrong passphrase.");
    harness.get_by_label_contains("Caps Lock");
    // The field was emptied when the passphrase was sent.
    let field = harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase");
    assert_eq!(field.value().unwrap_or_default(), "");
    unlock(&mut harness, PASSPHRASE);
    assert_eq!(harness.state().lock_state(), LockState::Unlocked);
    harness.get_by_label("Scan a label");
    assert_eq!(control.received()[..2], ["unlock", "unlock"]);
}

#[test]
fn gui_scanning_a_payload_fills_the_device_panel() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    harness.get_by_label("No device scanned");
    scan(&mut harness, &payload("sensor-0042"));
    harness.get_by_label("sensor-0042");
    harness.get_by_label("SN-sensor-0042");
    harness.get_by_label("identity key");
    harness.get_by_label("Ready");
    // The scan field is empty again and keeps the focus for the next label.
    let field = harness.get_by_role_and_label(Role::TextInput, "Scan label");
    assert_eq!(field.value().unwrap_or_default(), "");
    assert!(field.is_focused());
}

#[test]
fn gui_provision_runs_to_provisioned_with_events_and_a_label() {
    let (mut harness, control) = unlocked(FakeState::new(PASSPHRASE));
    scan(&mut harness, &payload("sensor-0042"));
    // Enter on the empty scan field provisions the device on deck.
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("Provisioned");
    harness.get_by_label_contains("confirmed by the device");
    harness.get_by_label(&format!("Label saved to /tmp/keyfill-labels/sensor-0042-{}.png", &id_of("sensor-0042")[..8]));
    // The session table has its row.
    harness.get_by_label("provisioned");
    harness.get_by_label("1 provisioned · 0 failed");
    let received = control.received();
    assert!(received.ends_with(&["provision", "save_label"]), "{received:?}");
    control.with(|state| {
        assert_eq!(state.devices.len(), 1);
        assert_eq!(state.devices[0].state, DeviceState::Provisioned);
        assert_eq!(state.history.last().map(|e| e.kind.as_str()), Some("provisioned"));
    });
    assert!(harness.get_by_role_and_label(Role::TextInput, "Scan label").is_focused());
}

#[test]
fn gui_provision_failure_is_shown_with_what_to_do() {
    let mut state = FakeState::new(PASSPHRASE);
    let silent = SessionError::Timeout { phase: "waiting for the handshake reply", seconds: 10 };
    state.provision_failure = Some(Problem::provision(&ProvisionError::Failed { source: silent.into() }));
    let (mut harness, _control) = unlocked(state);
    scan(&mut harness, &payload("sensor-0043"));
    harness.get_by_role_and_label(Role::Button, "Provision device").click();
    harness.run();
    harness.get_by_label("Not provisioned");
    harness.get_by_label_contains("What to do: Check that the device is powered");
    harness.get_by_label("0 provisioned · 1 failed");
    // A failed device can be provisioned again at once.
    harness.key_press_modifiers(Modifiers::CTRL, Key::Enter);
    harness.run();
    harness.get_by_label("Provisioned");
}

#[test]
fn gui_a_code_that_is_not_a_keyfill_label_is_refused() {
    let (mut harness, control) = unlocked(FakeState::new(PASSPHRASE));
    scan(&mut harness, "https://example.com/product/42");
    harness.get_by_label("That code is not a Keyfill label.");
    scan(&mut harness, "KF1:%%%");
    harness.get_by_label_contains("This Keyfill label cannot be read");
    harness.get_by_label("No device scanned");
    assert!(!control.received().contains(&"provision"));
}

#[test]
fn gui_auto_mode_provisions_as_soon_as_a_label_is_scanned() {
    let control = FakeControl::new(FakeState::new(PASSPHRASE));
    let mut auto = settings();
    auto.provision.auto_mode = true;
    auto.label.after_provisioning = LabelMode::Off;
    let mut harness = harness_for(&control, auto);
    unlock(&mut harness, PASSPHRASE);
    scan(&mut harness, &payload("sensor-0100"));
    harness.get_by_label("Provisioned");
    scan(&mut harness, &payload("sensor-0101"));
    harness.get_by_label("Provisioned");
    harness.get_by_label("2 provisioned · 0 failed");
    assert_eq!(control.received().iter().filter(|c| **c == "provision").count(), 2);
    assert!(!control.received().contains(&"save_label"));
}

#[test]
fn gui_provisioning_without_a_link_says_to_choose_one() {
    let mut state = FakeState::new(PASSPHRASE);
    state.links.serial = Ok(Vec::new());
    let control = FakeControl::new(state);
    let mut harness = harness_for(&control, Settings::default());
    unlock(&mut harness, PASSPHRASE);
    scan(&mut harness, &payload("sensor-0200"));
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("No link is chosen.");
    // Typing the port under Link fixes it.
    harness.get_by_role_and_label(Role::TextInput, "Port").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Port").type_text("/dev/ttyACM0");
    harness.run();
    harness.get_by_role_and_label(Role::Button, "Provision device").click();
    harness.run();
    harness.get_by_label("Provisioned");
    assert_eq!(harness.state().settings().link.serial_port, "/dev/ttyACM0");
}

#[test]
fn gui_devices_table_filters_by_search_and_state() {
    let (mut harness, _control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::Devices);
    harness.get_by_label("Showing 240 of 240 devices");
    harness.get_by_role_and_label(Role::TextInput, "Search").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Search").type_text("sensor-100");
    harness.run();
    harness.get_by_label("Showing 10 of 240 devices");
    harness.get_by_label("sensor-1005");
    assert!(harness.query_by_label("sensor-1010").is_none());
    harness.get_by_role_and_label(Role::Button, "Failed 11").click();
    harness.run();
    harness.get_by_label("Showing 1 of 240 devices");
    harness.get_by_label("sensor-1007");
    harness.get_by_role_and_label(Role::Button, "All 240").click();
    harness.run();
    harness.get_by_label("Showing 10 of 240 devices");
}

#[test]
fn gui_devices_detail_shows_the_device_history() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::Devices);
    harness.get_by_label("sensor-1239").click();
    harness.run();
    assert!(control.received().contains(&"load_device_detail"));
    harness.get_by_label("Device history");
    harness.get_by_label("key_generated");
    harness.get_by_label_contains("confirmed");
}

#[test]
fn gui_devices_table_gets_the_row_of_a_new_provisioning() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    show(&mut harness, Screen::Devices);
    harness.get_by_label("Showing 0 of 0 devices");
    show(&mut harness, Screen::Provision);
    scan(&mut harness, &payload("sensor-0300"));
    harness.key_press(Key::Enter);
    harness.run();
    show(&mut harness, Screen::Devices);
    harness.get_by_label("Showing 1 of 1 devices");
    harness.get_by_label("sensor-0300");
}

#[test]
fn gui_history_lists_and_filters_the_event_log() {
    let (mut harness, _control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::History);
    harness.get_by_label("480 event(s)");
    harness.get_by_role_and_label(Role::Button, "Failures").click();
    harness.run();
    // 11 failed and 10 unconfirmed in the demo inventory.
    harness.get_by_label("21 event(s)");
    harness.get_by_role_and_label(Role::TextInput, "Search").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Search").type_text("sensor-1007");
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("1 event(s)");
    harness.get_by_label("failed");
}

#[test]
fn gui_history_shows_a_provisioning_just_done() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    show(&mut harness, Screen::History);
    harness.get_by_label("No events match.");
    show(&mut harness, Screen::Provision);
    scan(&mut harness, &payload("sensor-0400"));
    harness.key_press(Key::Enter);
    harness.run();
    show(&mut harness, Screen::History);
    harness.get_by_label("1 event(s)");
    harness.get_by_label("provisioned");
}

#[test]
fn gui_rotation_and_export_show_progress_and_per_device_results() {
    let mut state = demo_state(PASSPHRASE);
    state.devices.truncate(5);
    let (mut harness, control) = unlocked(state);
    show(&mut harness, Screen::RotationExport);
    harness.get_by_role_and_label(Role::Button, "Start rotation").click();
    harness.run();
    harness.get_by_label("5 of 5 rotations confirmed");
    harness.get_by_label_contains("sensor-1000");
    harness.get_by_role_and_label(Role::Button, "Export to C2").click();
    harness.run();
    harness.get_by_label("No C2 address.");
    harness.get_by_role_and_label(Role::TextInput, "C2 address").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "C2 address").type_text("https://c2.factory.example:8888");
    harness.run();
    harness.get_by_role_and_label(Role::Button, "Export to C2").click();
    harness.run();
    harness.get_by_label("https://c2.factory.example:8888: 5 created, 0 replaced, 0 already exported, 0 failed");
    // The table lays out the rows in view; the line above counts them all.
    assert!(harness.get_all_by_label("created").count() >= 1);
    let received = control.received();
    assert!(received.contains(&"rotate") && received.contains(&"export_c2"), "{received:?}");
}

#[test]
fn gui_settings_are_saved_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gui-settings.json");
    let control = FakeControl::new(FakeState::new(PASSPHRASE));
    let app = KeyfillApp::new(Bridge::new(control.connect()), settings(), Some(path.clone()));
    let mut harness =
        Harness::builder().with_size([1280.0, 800.0]).build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app);
    unlock(&mut harness, PASSPHRASE);
    show(&mut harness, Screen::Settings);
    harness.get_by_role_and_label(Role::TextInput, "Printer queue").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Printer queue").type_text("zebra-line-3");
    harness.run();
    harness.get_by_role_and_label(Role::Button, "Save and print").click();
    harness.run();
    harness.get_by_label("Unsaved changes");
    harness.get_by_role_and_label(Role::Button, "Save").click();
    harness.run();
    harness.get_by_label("Saved");
    let reloaded = settings::load(&path).unwrap();
    assert_eq!(reloaded.label.printer_queue, "zebra-line-3");
    assert_eq!(reloaded.label.after_provisioning, LabelMode::SaveAndPrint);
    assert_eq!(&reloaded, harness.state().settings());
}

#[test]
fn gui_locking_waits_for_the_provisioning_in_progress() {
    let mut state = FakeState::new(PASSPHRASE);
    state.hold_provisioning = true;
    let (mut harness, control) = unlocked(state);
    scan(&mut harness, &payload("sensor-0500"));
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("Provisioning…");
    harness.key_press_modifiers(Modifiers::CTRL, Key::L);
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Locking { idle: false });
    harness.get_by_label("Locking: waiting for the provisioning of sensor-0500 to finish…");
    control.finish_provisioning();
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Locked);
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase");
    control.with(|state| assert_eq!(state.devices[0].state, DeviceState::Provisioned));
}

#[test]
fn gui_inactivity_locks_the_station() {
    let control = FakeControl::new(FakeState::new(PASSPHRASE));
    let mut short = settings();
    short.lock.after_idle_minutes = 1;
    let mut harness = harness_for(&control, short);
    unlock(&mut harness, PASSPHRASE);
    let now = harness.ctx.input(|i| i.time);
    harness.input_mut().time = Some(now + 30.0);
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Unlocked);
    harness.input_mut().time = Some(now + 61.0);
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Locked);
    harness.get_by_label("Locked after 1 minute(s) without input.");
}

#[test]
fn gui_keyboard_shortcuts_switch_screens() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    for (key, screen) in [
        (Key::Num2, Screen::Devices),
        (Key::Num3, Screen::RotationExport),
        (Key::Num4, Screen::History),
        (Key::Num5, Screen::Settings),
        (Key::Num1, Screen::Provision),
    ] {
        harness.key_press_modifiers(Modifiers::CTRL, key);
        harness.run();
        assert_eq!(harness.state().screen(), screen);
    }
    harness.key_press(Key::F2);
    harness.run();
    assert_eq!(harness.state().screen(), Screen::Devices);
    harness.key_press(Key::F1);
    harness.run();
    assert!(harness.get_by_role_and_label(Role::TextInput, "Scan label").is_focused());
}

#[test]
fn gui_link_detection_reports_what_was_found_and_why_not() {
    let (mut harness, control) = unlocked(FakeState::new(PASSPHRASE));
    assert!(control.received().contains(&"detect_links"));
    harness.get_by_label_contains("1 serial port · PC/SC: pcscd is not running · BLE: no Bluetooth adapter");
    harness.get_by_role_and_label(Role::Button, "Bluetooth LE").click();
    harness.run();
    harness.get_by_label_contains("Plug in a Bluetooth adapter");
}

#[test]
fn gui_camera_reads_a_label_and_fills_the_device_panel() {
    use keyfill_station::label::{LabelContent, LabelSpec, render_png};
    use keyfill_station::scan::source::ImageFiles;
    let dir = tempfile::tempdir().unwrap();
    let scanned = OnboardingPayload::parse(&payload("sensor-0600")).unwrap();
    let png = render_png(&LabelContent::from_scanned(&scanned).unwrap(), &LabelSpec::default()).unwrap();
    let path = dir.path().join("label.png");
    std::fs::write(&path, png).unwrap();

    let (mut harness, control) = unlocked(FakeState::new(PASSPHRASE));
    harness.state_mut().start_camera(Box::new(ImageFiles::new(vec![path; 3], std::time::Duration::from_millis(30))));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while harness.query_by_label("Keyfill label: sensor-0600").is_none() {
        assert!(std::time::Instant::now() < deadline, "the camera never read the label");
        std::thread::sleep(std::time::Duration::from_millis(20));
        harness.step();
    }
    harness.run();
    harness.get_by_label("sensor-0600");
    harness.get_by_label("camera");
    harness.get_by_label("Ready");
    assert!(!control.received().contains(&"provision"), "not in auto mode: the operator provisions");
}

/// The table lays out only the rows in view, so its cost does not grow with the inventory;
/// how long a frame takes is measured by `cargo bench -p keyfill-gui --bench devices_table`.
#[test]
fn gui_devices_table_virtualises_100k_rows() {
    let state = many_devices(100_000);
    let (mut harness, _control) = unlocked(state);
    show(&mut harness, Screen::Devices);
    harness.get_by_label("Showing 100000 of 100000 devices");
    let laid_out = harness.query_all_by_label_contains("unit-").count();
    assert!((1..200).contains(&laid_out), "{laid_out} rows laid out of 100,000");

    harness.get_by_role_and_label(Role::TextInput, "Search").focus();
    harness.run();
    for character in ["u", "n", "i", "t", "-", "0", "9", "9"] {
        harness.get_by_role_and_label(Role::TextInput, "Search").type_text(character);
        harness.step();
    }
    harness.run();
    harness.get_by_label("Showing 1000 of 100000 devices");
    let matching = harness.query_all_by_label_contains("unit-").collect::<Vec<_>>();
    assert!((1..200).contains(&matching.len()), "{} rows laid out of 1,000", matching.len());
    // A Label widget keeps its text in the node's value.
    let texts: Vec<String> = matching.iter().filter_map(|row| row.accesskit_node().value()).collect();
    assert_eq!(texts.len(), matching.len());
    assert!(texts.iter().all(|text| text.contains("unit-099")), "only matching devices are shown: {texts:?}");
}

#[test]
fn gui_label_again_and_show_in_devices_after_a_provisioning() {
    let (mut harness, control) = unlocked(FakeState::new(PASSPHRASE));
    scan(&mut harness, &payload("sensor-0700"));
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_role_and_label(Role::Button, "Label again").click();
    harness.run();
    assert_eq!(control.received().iter().filter(|c| **c == "save_label").count(), 2);
    harness.get_by_label(&format!("Label saved to /tmp/keyfill-labels/sensor-0700-{}.png", &id_of("sensor-0700")[..8]));
    harness.get_by_role_and_label(Role::Button, "Show in Devices").click();
    harness.run();
    assert_eq!(harness.state().screen(), Screen::Devices);
    harness.get_by_label("Device history");
    // The table row, the detail's state and its history all say so.
    assert!(harness.query_all_by_label("provisioned").count() >= 2);
}

#[test]
fn gui_a_missing_camera_is_said_clearly() {
    if !keyfill_station::scan::camera::list_cameras().is_empty() {
        return; // This machine has a camera: nothing to check.
    }
    let control = FakeControl::new(FakeState::new(PASSPHRASE));
    let mut with_camera = settings();
    with_camera.camera.source = settings::CameraSource::Camera;
    let mut harness = harness_for(&control, with_camera);
    unlock(&mut harness, PASSPHRASE);
    harness.get_by_label("No camera found");
    harness.get_by_label_contains("Connect a USB camera");
    // The handheld scanner still works.
    scan(&mut harness, &payload("sensor-0800"));
    harness.get_by_label("Ready");
}

#[test]
fn gui_link_detection_chooses_a_usb_serial_port_when_none_is_set() {
    let control = FakeControl::new(FakeState::new(PASSPHRASE));
    let mut harness = harness_for(&control, Settings::default());
    unlock(&mut harness, PASSPHRASE);
    let port = harness.get_by_role_and_label(Role::TextInput, "Port");
    assert_eq!(port.value().unwrap_or_default(), "/dev/ttyUSB0");
    assert_eq!(harness.state().settings().link.serial_port, "/dev/ttyUSB0");
}
