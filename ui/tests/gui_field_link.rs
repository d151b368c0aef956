//! The operator's view of a serial link that carries a late reply: the real station core, a
//! SQLite inventory, the real `keyfill-agent` on a pseudo-terminal, and the relay of the field
//! tests between them, which holds the device's first reply until the station gave up and then
//! delivers it into the station's port.

mod real_station;

use eframe::egui::Key;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_e2e::Agent;
use keyfill_e2e::relay::{Action, Relay};
use keyfill_gui::KeyfillApp;
use keyfill_gui::settings::Settings;
use real_station::{RealHome, settle, wait_until};
use std::time::Duration;

fn provision(harness: &mut Harness<'_, KeyfillApp>, label: &str) {
    harness.get_by_role_and_label(Role::TextInput, "Scan label").focus();
    settle(harness);
    harness.get_by_role_and_label(Role::TextInput, "Scan label").type_text(label);
    settle(harness);
    harness.key_press(Key::Enter);
    settle(harness);
    harness.key_press(Key::Enter);
}

fn finished(harness: &Harness<'_, KeyfillApp>) -> bool {
    harness.query_by_label("Provisioned").is_some() || harness.query_by_label("Not provisioned").is_some()
}

#[test]
fn gui_field_a_reply_after_the_station_gave_up_does_not_spoil_the_retry() {
    let home = RealHome::new();
    let dir = home.dir.path();
    let relay = Relay::new(dir).expect("the relay starts");
    let factory_root = home.home.join("factory-root.pub");
    let mut agent = Agent::init(dir, "gui-late-answer", &factory_root, &[]).expect("the agent initialises");
    agent.serve(relay.device_port(), &[]).expect("the agent serves");
    let mut settings = Settings::default();
    settings.link.serial_port = relay.station_port().display().to_string();
    let mut harness = home.open_unlocked(settings, [1280.0, 800.0]);

    // The device answers only after the station gave up (its 10 s handshake timeout).
    relay.set_policy(|seen| if seen.index == 2 { Action::Hold } else { Action::Forward });
    provision(&mut harness, &agent.payload);
    wait_until(&mut harness, "the first attempt", finished);
    harness.get_by_label("Not provisioned");
    assert!(harness.query_all_by_label_contains("no answer from the device").count() > 0);
    for blame in ["could not prove", "wrong device", "cloned", "aside"] {
        assert!(harness.query_by_label_contains(blame).is_none(), "a late answer is not the device's fault: {blame}");
    }

    // The late reply reaches the station's port; the operator retries at once.
    relay.set_policy(|_| Action::Forward);
    assert_eq!(relay.release_held().expect("released"), 1);
    std::thread::sleep(Duration::from_millis(200));
    harness.key_press(Key::Enter);
    settle(&mut harness);
    wait_until(&mut harness, "the retry", |h| {
        h.query_by_label("Provisioned").is_some()
            || h.query_by_label("Not provisioned").is_some() && h.query_by_label_contains("no answer").is_none()
    });
    assert!(harness.query_by_label("Provisioned").is_some(), "the retry must succeed first time");
    assert_eq!(agent.status().expect("status")["provisioned"], true);
}
