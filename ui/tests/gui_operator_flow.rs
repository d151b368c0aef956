//! What an operator on the line runs into: the step strip while a device is being provisioned,
//! cancelling a provisioning that waits for a device, a device that is already provisioned, the
//! camera and the scanner taking turns, a rotation's progress, the Settings' station facts, and
//! finding a device on the Devices screen. Against the fake station, through the
//! accessibility tree.

mod support;

use eframe::egui::accesskit::Role;
use eframe::egui::epaint::Shape;
use eframe::egui::{self, Key};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_gui::KeyfillApp;
use keyfill_gui::screens::Screen;
use keyfill_gui::station_handle::fake::{FakeState, demo_state};
use keyfill_gui::theme;
use keyfill_station::db::devices::DeviceState;

use support::{PASSPHRASE, show, type_into, unlocked};

fn payload(name: &str) -> String {
    let payload = OnboardingPayload::new(
        keyfill_formats::DeviceName::parse(name).expect("a valid name"),
        &format!("SN-{name}"),
        DeviceCredential::Identity { public_key: [7; 32] },
    );
    payload.encode().expect("a valid payload")
}

fn scan(harness: &mut Harness<'_, KeyfillApp>, text: &str) {
    type_into(harness, "Scan label", text);
    harness.key_press(Key::Enter);
    harness.run();
}

fn provision(harness: &mut Harness<'_, KeyfillApp>, name: &str) {
    scan(harness, &payload(name));
    harness.key_press(Key::Enter);
    harness.run();
}

/// The stage bar's progress, in percent, as a screen reader reads it.
fn stage_progress(harness: &Harness<'_, KeyfillApp>) -> f64 {
    harness.get_by_role(Role::ProgressIndicator).accesskit_node().numeric_value().unwrap_or(-1.0)
}

#[test]
fn gui_step_strip_shows_only_finished_steps_as_done() {
    let mut state = FakeState::new(PASSPHRASE);
    state.hold_at_handshake = true;
    let (mut harness, _control) = unlocked(state);
    provision(&mut harness, "sensor-0900");
    harness.get_by_label("Provisioning…");
    harness.get_by_label_contains("Authenticating the device");
    // Link and key are done; authenticating is under way, not done: 2 of 5.
    assert_eq!(stage_progress(&harness), 40.0);
}

#[test]
fn gui_cancel_while_waiting_for_a_device_before_the_key_left() {
    let mut state = FakeState::new(PASSPHRASE);
    state.hold_at_handshake = true;
    let (mut harness, control) = unlocked(state);
    provision(&mut harness, "sensor-0901");
    harness.get_by_label("Provisioning…");
    harness.get_by_role_and_label(Role::Button, "Cancel").click();
    harness.run();
    assert!(control.received().contains(&"cancel_provision"), "{:?}", control.received());
    harness.get_by_label("Cancelled");
    harness.get_by_label_contains("holds no key from this station");
    control.with(|state| assert_eq!(state.devices[0].state, DeviceState::Failed));
    // Retry at once: the device answers now.
    control.with(|state| state.hold_at_handshake = false);
    harness.key_press(Key::Enter);
    harness.run();
    harness.get_by_label("Provisioned");
}

#[test]
fn gui_cancel_after_the_key_left_leaves_the_record_pending() {
    let mut state = FakeState::new(PASSPHRASE);
    state.hold_provisioning = true;
    let (mut harness, control) = unlocked(state);
    provision(&mut harness, "sensor-0902");
    harness.get_by_label("Provisioning…");
    // Escape cancels as the button does.
    harness.key_press(Key::Escape);
    harness.run();
    harness.get_by_label("Cancelled");
    harness.get_by_label_contains("stays pending");
    control.with(|state| assert_eq!(state.devices[0].state, DeviceState::Pending));
}

#[test]
fn gui_already_provisioned_is_informational_not_a_failure() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    provision(&mut harness, "sensor-0903");
    harness.get_by_label("Provisioned");
    provision(&mut harness, "sensor-0903");
    assert!(harness.query_by_label("Not provisioned").is_none(), "not shown as a failure");
    harness.get_by_label("Already provisioned");
    harness.get_by_label_contains("nothing to do");
    harness.get_by_label_contains("1 provisioned · 0 failed");
    harness.get_by_label("already provisioned");
}

#[test]
fn gui_a_typed_label_replaces_the_camera_reading() {
    use keyfill_station::label::{LabelContent, LabelSpec, render_png};
    use keyfill_station::scan::source::ImageFiles;
    let dir = tempfile::tempdir().unwrap();
    let scanned = OnboardingPayload::parse(&payload("sensor-0904")).unwrap();
    let png = render_png(&LabelContent::from_scanned(&scanned).unwrap(), &LabelSpec::default()).unwrap();
    let path = dir.path().join("label.png");
    std::fs::write(&path, png).unwrap();
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    harness.state_mut().start_camera(Box::new(ImageFiles::new(vec![path], std::time::Duration::from_millis(30))));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while harness.query_by_label("Keyfill label: sensor-0904").is_none() {
        assert!(std::time::Instant::now() < deadline, "the camera never read the label");
        std::thread::sleep(std::time::Duration::from_millis(20));
        harness.step();
    }
    harness.run();
    scan(&mut harness, &payload("sensor-0905"));
    harness.get_by_label("sensor-0905");
    assert!(
        harness.query_by_label("Keyfill label: sensor-0904").is_none(),
        "the camera panel still shows the label read before the typed one"
    );
}

/// Every filled rectangle painted inside `area` this frame, by colour.
fn fills_inside(harness: &Harness<'_, KeyfillApp>, area: egui::Rect) -> Vec<egui::Color32> {
    fn walk(shape: &Shape, area: egui::Rect, out: &mut Vec<egui::Color32>) {
        match shape {
            Shape::Vec(shapes) => shapes.iter().for_each(|s| walk(s, area, out)),
            Shape::Rect(rect) if area.expand(1.0).contains_rect(rect.rect) && rect.rect.width() > 4.0 => {
                out.push(rect.fill)
            }
            _ => {}
        }
    }
    let mut fills = Vec::new();
    for clipped in &harness.output().shapes {
        walk(&clipped.shape, area, &mut fills);
    }
    fills
}

#[test]
fn gui_rotation_progress_names_devices_and_turns_red_when_every_device_failed() {
    let mut state = demo_state(PASSPHRASE);
    state.devices.truncate(3);
    let names: Vec<String> = state.devices.iter().map(|d| d.name.clone()).collect();
    let ids: Vec<String> = state.devices.iter().map(|d| d.id.clone()).collect();
    state.rotation_unconfirmed = names.clone();
    state.hold_rotation = true;
    let (mut harness, control) = unlocked(state);
    show(&mut harness, Screen::RotationExport);
    harness.get_by_role_and_label(Role::Button, "Start rotation").click();
    // The spinner keeps repainting while the run goes on.
    harness.run_steps(4);
    // While it runs, the table names the devices.
    for (name, id) in names.iter().zip(&ids) {
        harness.get_by_label(name);
        assert!(harness.query_by_label(id).is_none(), "a raw id in the table: {id}");
    }
    control.finish_rotation();
    harness.run();
    harness.get_by_label("0 of 3 rotations confirmed");
    let bar = harness.get_by_role(Role::ProgressIndicator).rect();
    let fills = fills_inside(&harness, bar);
    assert!(!fills.contains(&theme::OK_TINT), "a green bar for a run where every device failed: {fills:?}");
    assert!(fills.iter().any(|c| c.r() > c.g().saturating_add(40)), "no red in the bar: {fills:?}");
}

#[test]
fn gui_rotation_result_tooltips_add_the_detail_instead_of_repeating_the_cell() {
    let mut state = demo_state(PASSPHRASE);
    state.devices.truncate(2);
    let (mut harness, _control) = unlocked(state);
    harness.ctx.all_styles_mut(|style| style.interaction.tooltip_delay = 0.0);
    show(&mut harness, Screen::RotationExport);
    harness.get_by_role_and_label(Role::Button, "Start rotation").click();
    harness.run();
    harness.get_by_label("2 of 2 rotations confirmed");
    let cell = harness.get_all_by_label_contains("rotated").last().expect("a result cell").rect();
    let text = |harness: &Harness<'_, KeyfillApp>| -> Vec<String> {
        harness.query_all_by_label_contains("rotated").filter_map(|n| n.accesskit_node().value()).collect()
    };
    let before = text(&harness);
    harness.hover_at(cell.center());
    harness.run_steps(4);
    let after = text(&harness);
    assert_eq!(before.len(), after.len(), "the tooltip repeats the cell: {before:?} then {after:?}");
}

#[test]
fn gui_settings_show_the_station_in_use() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    show(&mut harness, Screen::Settings);
    harness.get_by_label("/var/lib/keyfill");
    harness.get_by_label("operator");
}

#[test]
fn gui_devices_enter_in_the_search_opens_the_first_match() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::Devices);
    type_into(&mut harness, "Search", "sensor-1005");
    harness.key_press(Key::Enter);
    harness.run();
    assert!(control.received().contains(&"load_device_detail"), "{:?}", control.received());
    harness.get_by_label("Device history");
}

#[test]
fn gui_show_in_devices_clears_an_old_search() {
    let (mut harness, _control) = unlocked(FakeState::new(PASSPHRASE));
    provision(&mut harness, "sensor-0906");
    show(&mut harness, Screen::Devices);
    type_into(&mut harness, "Search", "sensor-0999");
    harness.get_by_label("Showing 0 of 1 devices");
    show(&mut harness, Screen::Provision);
    provision(&mut harness, "sensor-0907");
    harness.get_by_role_and_label(Role::Button, "Show in Devices").click();
    harness.run();
    let search = harness.get_by_role_and_label(Role::TextInput, "Search");
    assert_eq!(search.value().unwrap_or_default(), "");
    harness.get_by_label("Showing 2 of 2 devices");
}
