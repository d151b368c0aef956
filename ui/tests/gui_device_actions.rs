//! What an operator does to one device from the Devices screen: reconcile or abandon a pending
//! device, print or save any device's label; and the device list indexed off the UI thread.
//! Against the fake station, through the accessibility tree.

mod support;

use eframe::egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use keyfill_gui::device_index;
use keyfill_gui::problem::Problem;
use keyfill_gui::screens::Screen;
use keyfill_gui::station_handle::fake::demo_state;
use keyfill_station::db::devices::DeviceState;
use keyfill_station::provision::ReconcileVerdict;
use support::{
    PASSPHRASE, click, is_enabled, many_devices, replace_text, settings, show, type_into, unlocked, unlocked_with,
};

fn id_of(name: &str) -> String {
    keyfill_formats::DeviceId::from_name(name).to_hex()
}

fn state_of(control: &keyfill_gui::station_handle::fake::FakeControl, name: &str) -> Option<DeviceState> {
    control.with(|state| state.devices.iter().find(|d| d.name == name).map(|d| d.state))
}

/// Opens `name`'s record on the Devices screen (searching for it first, so its row is on screen).
fn open_device(harness: &mut egui_kittest::Harness<'_, keyfill_gui::KeyfillApp>, name: &str) {
    show(harness, Screen::Devices);
    replace_text(harness, "Search", name);
    harness.get_by_label(name).click();
    harness.run();
    harness.get_by_label("Device history");
}

#[test]
fn gui_reconcile_asks_a_pending_device_over_its_link_and_shows_the_verdict() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    open_device(&mut harness, "sensor-1015");
    harness.get_by_label("Pending: its key was sent, never confirmed");
    click(&mut harness, Role::Button, "Reconcile…");
    harness.get_by_label("Reconcile sensor-1015");
    // The link it was last seen on.
    let port = harness.get_by_role_and_label(Role::TextInput, "Port");
    assert_eq!(port.value().unwrap_or_default(), "/dev/ttyUSB0");
    click(&mut harness, Role::Button, "Ask the device");
    harness.get_by_label("sensor-1015 holds its key: now provisioned.");
    assert_eq!(state_of(&control, "sensor-1015"), Some(DeviceState::Provisioned));
    click(&mut harness, Role::Button, "Done");
    // The record, the table and the history follow.
    assert!(harness.query_by_label("Pending: its key was sent, never confirmed").is_none());
    harness.get_by_label("reconciled");
    harness.get_by_label("device proved it holds the pending key");

    // A device on a PC/SC reader that does not hold its key becomes failed.
    control.with(|state| state.reconcile_answer = Some(Ok(ReconcileVerdict::Failed)));
    open_device(&mut harness, "sensor-1038");
    click(&mut harness, Role::Button, "Reconcile…");
    let reader = harness.get_by_role_and_label(Role::TextInput, "Reader");
    assert_eq!(reader.value().unwrap_or_default(), "ACS ACR1252 Dual Reader");
    click(&mut harness, Role::Button, "Ask the device");
    harness.get_by_label("sensor-1038 does not hold its key: now failed.");
    assert_eq!(state_of(&control, "sensor-1038"), Some(DeviceState::Failed));
}

#[test]
fn gui_reconcile_without_an_answer_keeps_the_record_pending_and_says_what_to_do() {
    let mut state = demo_state(PASSPHRASE);
    state.reconcile_answer = Some(Err(Problem::new(
        "The device could not be asked about its pending key: no answer from the device within 10 s.",
        "Check that the device runs its provisioning agent on the chosen link. The record stays pending: ask again \
         once the device is on the link.",
    )));
    let (mut harness, control) = unlocked(state);
    open_device(&mut harness, "sensor-1015");
    click(&mut harness, Role::Button, "Reconcile…");
    click(&mut harness, Role::Button, "Ask the device");
    harness.get_by_label_contains("could not be asked about its pending key");
    harness.get_by_label_contains("The record stays pending");
    assert_eq!(state_of(&control, "sensor-1015"), Some(DeviceState::Pending));
    assert!(control.received().contains(&"reconcile"));
}

#[test]
fn gui_abandon_needs_a_reason_and_an_explicit_confirmation() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    open_device(&mut harness, "sensor-1015");
    click(&mut harness, Role::Button, "Abandon…");
    harness.get_by_label("Abandon sensor-1015");
    harness.get_by_label_contains("it refuses any new key (AlreadyProvisioned) until it is factory-reset");
    harness.get_by_label("Give a reason to abandon the device.");
    assert!(!is_enabled(&harness, Role::Button, "Abandon device"));
    click(&mut harness, Role::Button, "Abandon device");
    assert!(!control.received().contains(&"abandon"), "refused without a reason");

    type_into(&mut harness, "Reason (kept in the event log)", "board scrapped after a failed flash");
    harness.get_by_label("Tick the confirmation above to abandon the device.");
    assert!(!is_enabled(&harness, Role::Button, "Abandon device"));
    click(&mut harness, Role::Button, "Abandon device");
    assert!(!control.received().contains(&"abandon"), "refused without the confirmation");

    let confirmation = "I understand: the device may refuse a new key until it is factory-reset";
    click(&mut harness, Role::CheckBox, confirmation);
    assert!(harness.get_by_role_and_label(Role::CheckBox, confirmation).accesskit_node().toggled().is_some());
    assert!(is_enabled(&harness, Role::Button, "Abandon device"));
    click(&mut harness, Role::Button, "Abandon device");
    harness.get_by_label("sensor-1015 abandoned: now failed.");
    assert_eq!(state_of(&control, "sensor-1015"), Some(DeviceState::Failed));
    control.with(|state| {
        let last = state.history.last().expect("an event");
        assert_eq!((last.kind.as_str(), last.detail.as_str()), ("abandoned", "board scrapped after a failed flash"));
    });
    click(&mut harness, Role::Button, "Done");
    harness.get_by_label("Last problem: abandoned: board scrapped after a failed flash");
}

#[test]
fn gui_devices_print_and_save_a_label_again() {
    let mut with_printer = settings();
    with_printer.label.printer_queue = "zebra-line-3".into();
    let (mut harness, control) = unlocked_with(demo_state(PASSPHRASE), with_printer);
    open_device(&mut harness, "sensor-1239");
    let file = format!("/tmp/keyfill-labels/sensor-1239-{}.png", &id_of("sensor-1239")[..8]);
    click(&mut harness, Role::Button, "Print label");
    harness.get_by_label(&format!("Label printed on zebra-line-3, saved to {file}"));
    click(&mut harness, Role::Button, "Save label");
    harness.get_by_label(&format!("Label saved to {file}"));
    assert_eq!(control.received().iter().filter(|c| **c == "save_label").count(), 2);
}

#[test]
fn gui_devices_save_the_label_of_a_pending_device_and_print_only_with_a_queue() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    open_device(&mut harness, "sensor-1015");
    assert!(!is_enabled(&harness, Role::Button, "Print label"));
    click(&mut harness, Role::Button, "Save label");
    harness.get_by_label(&format!("Label saved to /tmp/keyfill-labels/sensor-1015-{}.png", &id_of("sensor-1015")[..8]));
    assert!(control.received().contains(&"save_label"));
}

#[test]
fn gui_device_list_is_indexed_off_the_ui_thread_and_the_old_list_stays_meanwhile() {
    let state = many_devices(100_000);
    let template = state.devices[0].clone();
    let (mut harness, control) = unlocked(state);
    show(&mut harness, Screen::Devices);
    harness.get_by_label("Showing 100000 of 100000 devices");
    // This test's thread is the UI thread: it swapped the index in, it never built one.
    assert_eq!(device_index::builds_on_this_thread(), 0);

    // A reload on its way: the table keeps the list it has.
    control.with(|state| {
        state.hold_device_list = true;
        let mut newer = template.clone();
        newer.id = format!("{:032x}", 100_000);
        newer.name = "unit-100000".into();
        newer.created_at = 100_000;
        state.devices.push(newer);
    });
    // The spinner beside Refresh keeps repainting: a few frames, not `run`.
    harness.get_by_role_and_label(Role::Button, "Refresh").click();
    harness.run_steps(3);
    harness.get_by_label("Reloading…");
    harness.get_by_label("Showing 100000 of 100000 devices");
    harness.get_by_label("unit-099999");
    assert!(!is_enabled(&harness, Role::Button, "Refresh"));

    // The frame after the new list arrives swaps it in; it is not built here either.
    control.release_device_list();
    harness.step();
    harness.get_by_label("Showing 100001 of 100001 devices");
    harness.get_by_label("unit-100000");
    assert_eq!(device_index::builds_on_this_thread(), 0);
    assert!(is_enabled(&harness, Role::Button, "Refresh"));
}
