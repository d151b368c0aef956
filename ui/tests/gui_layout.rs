//! Every screen is usable from the smallest supported window up: at 1024×600 and at 1280×800,
//! every control in the accessibility tree (buttons, text fields, check boxes, drop-downs,
//! links, number fields, clickable rows) can be scrolled into view, then lies wholly inside the
//! window, and the pointer reaches all of it: at its centre and near each corner the control is
//! under the pointer and no other control is. A control clipped by its panel, covered by a
//! neighbour or left outside the window fails, and so does a control that exists at one size
//! and not the other. The check walks the tree, so new controls are covered without a change
//! here.

mod support;

use eframe::egui::accesskit::{Action, NodeId, Role};
use eframe::egui::{self, Key, Pos2, Rect};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_gui::KeyfillApp;
use keyfill_gui::screens::Screen;
use keyfill_gui::station_handle::fake::{FakeControl, FakeState, demo_state};
use std::collections::{BTreeMap, BTreeSet};

use support::{PASSPHRASE, harness_sized, settings, unlock};

const SMALL: [f32; 2] = [1024.0, 600.0];
const LARGE: [f32; 2] = [1280.0, 800.0];

/// The roles of the controls an operator uses.
const CONTROL_ROLES: [Role; 13] = [
    Role::Button,
    Role::DefaultButton,
    Role::TextInput,
    Role::PasswordInput,
    Role::MultilineTextInput,
    Role::SearchInput,
    Role::CheckBox,
    Role::RadioButton,
    Role::ComboBox,
    Role::Link,
    Role::SpinButton,
    Role::Slider,
    Role::Tab,
];

/// One control found in the tree.
#[derive(Debug, Clone)]
struct Control {
    node: NodeId,
    role: Role,
    name: String,
    /// A table row: rows scrolled out are not laid out, so their number depends on the size.
    row: bool,
}

impl Control {
    fn describe(&self) -> String {
        format!("{:?} {:?}", self.role, self.name)
    }
}

fn controls(harness: &Harness<'_, KeyfillApp>) -> Vec<Control> {
    harness
        .root()
        .children_recursive()
        .filter_map(|node| {
            let data = node.accesskit_node();
            if data.is_hidden() {
                return None;
            }
            let role = data.role();
            let control = CONTROL_ROLES.contains(&role);
            let clickable = data.data().supports_action(Action::Click) || data.data().supports_action(Action::Focus);
            (control || clickable).then(|| Control {
                node: data.locate().0,
                role,
                name: data.label().or_else(|| data.value()).unwrap_or_default(),
                row: !control,
            })
        })
        .collect()
}

fn rect_of(harness: &Harness<'_, KeyfillApp>, node: NodeId) -> Option<Rect> {
    harness
        .root()
        .children_recursive()
        .find(|n| n.accesskit_node().locate().0 == node)
        .and_then(|n| n.accesskit_node().bounding_box().map(|_| n.rect()))
}

fn scroll_into_view(harness: &mut Harness<'_, KeyfillApp>, node: NodeId) {
    if let Some(found) = harness.root().children_recursive().find(|n| n.accesskit_node().locate().0 == node) {
        found.scroll_to_me();
    }
    harness.run_steps(3);
}

/// The controls under the pointer at `point`, by accessibility node.
fn under_pointer(harness: &mut Harness<'_, KeyfillApp>, point: Pos2) -> BTreeSet<u64> {
    harness.hover_at(point);
    harness.step();
    harness
        .ctx
        .interaction_snapshot(|snapshot| snapshot.contains_pointer.iter().map(|id| id.accesskit_id().0).collect())
}

/// Checks every control of the screen `harness` shows; returns the controls by role and name.
fn check_every_control(harness: &mut Harness<'_, KeyfillApp>, size: [f32; 2], screen: &str) -> BTreeMap<String, usize> {
    harness.run_steps(3);
    let window = Rect::from_min_size(Pos2::ZERO, egui::vec2(size[0], size[1]));
    let found = controls(harness);
    assert!(!found.is_empty(), "{screen}: no control in the tree");
    let ids: BTreeSet<u64> = found.iter().map(|c| c.node.0).collect();
    let mut problems = Vec::new();
    for control in &found {
        scroll_into_view(harness, control.node);
        let rect = rect_of(harness, control.node).filter(|rect| !rect.any_nan());
        let Some(rect) = rect else {
            // Rows and containers outside a table's view are in the tree without a place.
            if !control.row {
                problems.push(format!("{} has no place on screen when scrolled to", control.describe()));
            }
            continue;
        };
        if !window.expand(0.5).contains_rect(rect) {
            problems.push(format!("{} at {rect:?} is not inside the {size:?} window", control.describe()));
            continue;
        }
        let inset = rect.shrink2(egui::vec2((rect.width() / 2.0 - 1.0).min(3.0), (rect.height() / 2.0 - 1.0).min(3.0)));
        for point in [inset.center(), inset.left_top(), inset.right_top(), inset.left_bottom(), inset.right_bottom()] {
            let hits = under_pointer(harness, point);
            if !hits.contains(&control.node.0) {
                problems.push(format!("{} is clipped or covered at {point:?}", control.describe()));
                break;
            }
            let others: Vec<String> = found
                .iter()
                .filter(|other| {
                    other.node != control.node && hits.contains(&other.node.0) && ids.contains(&other.node.0)
                })
                .map(Control::describe)
                .collect();
            if !others.is_empty() {
                problems.push(format!("{} overlaps {} at {point:?}", control.describe(), others.join(", ")));
                break;
            }
        }
    }
    assert!(problems.is_empty(), "{screen} at {size:?}:\n{}", problems.join("\n"));
    let mut names = BTreeMap::new();
    for control in found.iter().filter(|c| !c.row) {
        *names.entry(control.describe()).or_insert(0) += 1;
    }
    names
}

fn payload(name: &str) -> String {
    let mut payload = OnboardingPayload::new(
        keyfill_formats::DeviceName::parse(name).expect("a valid name"),
        &format!("SN-{name}"),
        DeviceCredential::Identity { public_key: [7; 32] },
    );
    payload.model = Some("TH-200".into());
    payload.encode().expect("a valid payload")
}

fn scan(harness: &mut Harness<'_, KeyfillApp>, text: &str) {
    harness.get_by_role_and_label(Role::TextInput, "Scan label").focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Scan label").type_text(text);
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
}

fn open(state: FakeState, size: [f32; 2], locked: bool) -> Harness<'static, KeyfillApp> {
    let control = FakeControl::new(state);
    let mut harness = harness_sized(&control, settings(), size);
    if !locked {
        unlock(&mut harness, PASSPHRASE);
    }
    harness
}

fn show(harness: &mut Harness<'_, KeyfillApp>, screen: Screen) {
    harness.key_press_modifiers(egui::Modifiers::CTRL, screen.key().0);
    harness.run();
    assert_eq!(harness.state().screen(), screen);
}

/// Sets `screen` up as an operator sees it at work, at `size`, and checks it.
fn screen_at(screen: &str, size: [f32; 2]) -> BTreeMap<String, usize> {
    let mut harness = match screen {
        "unlock" => open(FakeState::new(PASSPHRASE), size, true),
        "provision" => {
            let mut harness = open(FakeState::new(PASSPHRASE), size, false);
            // A device provisioned (the session table has rows, the label buttons show), then
            // the next one scanned and ready.
            for name in ["sensor-0001", "sensor-0002", "sensor-0003"] {
                scan(&mut harness, &payload(name));
                harness.key_press(Key::Enter);
                harness.run();
            }
            scan(&mut harness, &payload("sensor-0004"));
            harness
        }
        "devices" => {
            let mut harness = open(demo_state(PASSPHRASE), size, false);
            show(&mut harness, Screen::Devices);
            harness.get_by_label("sensor-1239").click();
            harness.run();
            harness.get_by_label("Device history");
            harness
        }
        "rotation-export" => {
            let mut state = demo_state(PASSPHRASE);
            state.devices.truncate(12);
            let mut harness = open(state, size, false);
            show(&mut harness, Screen::RotationExport);
            harness.get_by_role_and_label(Role::Button, "Start rotation").click();
            harness.run();
            harness.get_by_role_and_label(Role::TextInput, "C2 address").focus();
            harness.run();
            harness.get_by_role_and_label(Role::TextInput, "C2 address").type_text("https://c2.factory.example:8888");
            harness.run();
            harness.get_by_role_and_label(Role::Button, "Export to C2").click();
            harness.run();
            harness
        }
        "history" => {
            let mut harness = open(demo_state(PASSPHRASE), size, false);
            show(&mut harness, Screen::History);
            harness
        }
        "settings" => {
            let mut harness = open(FakeState::new(PASSPHRASE), size, false);
            show(&mut harness, Screen::Settings);
            harness
        }
        other => panic!("no screen {other}"),
    };
    check_every_control(&mut harness, size, screen)
}

/// The same controls at both sizes, each reachable at each.
fn check_screen(screen: &str) {
    let small = screen_at(screen, SMALL);
    let large = screen_at(screen, LARGE);
    let only_small: Vec<_> = small.keys().filter(|k| small.get(*k) != large.get(*k)).collect();
    let only_large: Vec<_> = large.keys().filter(|k| small.get(*k) != large.get(*k)).collect();
    assert!(
        only_small.is_empty() && only_large.is_empty(),
        "{screen}: controls differ between sizes: at 1024×600 {only_small:?}, at 1280×800 {only_large:?}"
    );
}

#[test]
fn gui_layout_unlock_is_usable_at_1024x600_and_1280x800() {
    check_screen("unlock");
}

#[test]
fn gui_layout_provision_is_usable_at_1024x600_and_1280x800() {
    check_screen("provision");
}

#[test]
fn gui_layout_devices_with_a_device_selected_is_usable_at_1024x600_and_1280x800() {
    check_screen("devices");
}

#[test]
fn gui_layout_rotation_export_is_usable_at_1024x600_and_1280x800() {
    check_screen("rotation-export");
}

#[test]
fn gui_layout_history_is_usable_at_1024x600_and_1280x800() {
    check_screen("history");
}

#[test]
fn gui_layout_settings_is_usable_at_1024x600_and_1280x800() {
    check_screen("settings");
}

/// Without a device open the table shows all its columns, and each fits the window: the last
/// one, when the device was last updated, was cut at the window's edge at 1024×600.
#[test]
fn gui_layout_devices_table_shows_every_column_in_the_window_at_1024x600_and_1280x800() {
    for size in [SMALL, LARGE] {
        let mut harness = open(demo_state(PASSPHRASE), size, false);
        show(&mut harness, Screen::Devices);
        harness.run_steps(3);
        let window = Rect::from_min_size(Pos2::ZERO, egui::vec2(size[0], size[1]));
        for title in ["Name", "State", "Id", "Serial number", "Link", "Updated (UTC)"] {
            let rect = harness.get_by_label(title).rect();
            assert!(window.contains_rect(rect), "the column {title:?} at {rect:?} is cut at {size:?}");
        }
        // The times themselves ("2026-12-05 08:20"), not only the title above them.
        let is_time = |text: &str| {
            text.len() == 16
                && text.char_indices().all(|(i, c)| match i {
                    4 | 7 => c == '-',
                    10 => c == ' ',
                    13 => c == ':',
                    _ => c.is_ascii_digit(),
                })
        };
        let times: Vec<Rect> = harness
            .root()
            .children_recursive()
            .filter(|node| {
                let data = node.accesskit_node();
                data.label().or_else(|| data.value()).is_some_and(|text| is_time(&text))
            })
            .map(|node| node.rect())
            .collect();
        assert!(!times.is_empty(), "no update time in view at {size:?}");
        for rect in times {
            assert!(window.contains_rect(rect), "an update time at {rect:?} is cut at {size:?}");
        }
    }
}
