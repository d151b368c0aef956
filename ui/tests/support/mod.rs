//! What the GUI screen tests share: a harness over the app and the fake station, unlocking,
//! and moving between screens through the accessibility tree.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use eframe::egui::accesskit::Role;
use eframe::egui::{Key, Modifiers};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use keyfill_gui::KeyfillApp;
use keyfill_gui::app::LockState;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::screens::Screen;
use keyfill_gui::settings::Settings;
use keyfill_gui::station_handle::fake::{FakeControl, FakeState, demo_state};

pub const PASSPHRASE: &str = "correct horse battery staple";

pub fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.link.serial_port = "/dev/ttyUSB0".into();
    settings.label.folder = "/tmp/keyfill-labels".into();
    settings
}

/// A fake station holding `count` devices named `unit-000000`…, newest last.
pub fn many_devices(count: usize) -> FakeState {
    let mut state = FakeState::new(PASSPHRASE);
    let template = demo_state(PASSPHRASE).devices.remove(0);
    state.devices = (0..count)
        .map(|n| {
            let mut device = template.clone();
            device.id = format!("{n:032x}");
            device.name = format!("unit-{n:06}");
            device.created_at = n as i64;
            device
        })
        .collect();
    state
}

pub fn harness_for(control: &FakeControl, settings: Settings) -> Harness<'static, KeyfillApp> {
    let app = KeyfillApp::new(Bridge::new(control.connect()), settings, None);
    Harness::builder().with_size([1280.0, 800.0]).build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app)
}

pub fn unlocked(state: FakeState) -> (Harness<'static, KeyfillApp>, FakeControl) {
    unlocked_with(state, settings())
}

pub fn unlocked_with(state: FakeState, settings: Settings) -> (Harness<'static, KeyfillApp>, FakeControl) {
    let control = FakeControl::new(state);
    let mut harness = harness_for(&control, settings);
    unlock(&mut harness, PASSPHRASE);
    assert_eq!(harness.state().lock_state(), LockState::Unlocked);
    (harness, control)
}

pub fn unlock(harness: &mut Harness<'_, KeyfillApp>, passphrase: &str) {
    harness.run();
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase").focus();
    harness.run();
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase").type_text(passphrase);
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
}

pub fn show(harness: &mut Harness<'_, KeyfillApp>, screen: Screen) {
    harness.get_by_role_and_label(Role::Button, screen.title()).click();
    harness.run();
    assert_eq!(harness.state().screen(), screen);
}

/// Focuses the field labelled `label` and types `text` into it.
pub fn type_into(harness: &mut Harness<'_, KeyfillApp>, label: &str, text: &str) {
    harness.get_by_role_and_label(Role::TextInput, label).focus();
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, label).type_text(text);
    harness.run();
}

/// Focuses the field labelled `label`, selects what it holds and types `text` over it.
pub fn replace_text(harness: &mut Harness<'_, KeyfillApp>, label: &str, text: &str) {
    harness.get_by_role_and_label(Role::TextInput, label).focus();
    harness.run();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, label).type_text(text);
    harness.run();
}

pub fn click(harness: &mut Harness<'_, KeyfillApp>, role: Role, label: &str) {
    harness.get_by_role_and_label(role, label).click();
    harness.run();
}

pub fn is_enabled(harness: &Harness<'_, KeyfillApp>, role: Role, label: &str) -> bool {
    !harness.get_by_role_and_label(role, label).accesskit_node().is_disabled()
}

/// The app over the fake station in a window of `size` points.
pub fn harness_sized(control: &FakeControl, settings: Settings, size: [f32; 2]) -> Harness<'static, KeyfillApp> {
    let app = KeyfillApp::new(Bridge::new(control.connect()), settings, None);
    Harness::builder().with_size(size).build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app)
}
