//! Work orders in the operator app: the Provision screen keys under the order the operator
//! chooses and shows its progress (done, failed, remaining); the Devices screen filters by order.
//! Against the fake station, through the accessibility tree.

mod support;

use eframe::egui::Key;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_gui::KeyfillApp;
use keyfill_gui::screens::Screen;
use keyfill_gui::station_handle::fake::demo_state;
use support::{PASSPHRASE, click, show, type_into, unlocked};

fn provision(harness: &mut Harness<'_, KeyfillApp>, name: &str) {
    let payload = OnboardingPayload::new(
        keyfill_formats::DeviceName::parse(name).expect("a valid name"),
        &format!("SN-{name}"),
        DeviceCredential::Identity { public_key: [7; 32] },
    );
    type_into(harness, "Scan label", &payload.encode().expect("a payload"));
    harness.key_press(Key::Enter);
    harness.run();
    harness.key_press(Key::Enter);
    harness.run();
}

#[test]
fn gui_orders_provision_under_the_chosen_order_and_its_progress_moves() {
    let (mut harness, control) = unlocked(demo_state(PASSPHRASE));
    harness.run();
    assert!(control.received().contains(&"load_orders"), "{:?}", control.received());
    // 80 of the 100 devices of the last order keyed, a few of them failed or pending.
    let before = control.with(|state| state.order_counts())[2].clone();
    assert_eq!(before.id, "WO-2026-103");
    click(&mut harness, Role::ComboBox, "Work order");
    harness.get_by_label(&format!("WO-2026-103 · {} to go", before.outstanding())).click();
    harness.run();
    harness.get_by_label_contains(&format!("{} done · {} failed", before.provisioned, before.failed));

    provision(&mut harness, "sensor-2001");
    harness.get_by_label("Provisioned");
    let device = control.with(|state| state.devices.iter().find(|d| d.name == "sensor-2001").cloned());
    assert_eq!(device.and_then(|d| d.order_id).as_deref(), Some("WO-2026-103"), "keyed under the chosen order");
    // The counts were asked for again and show the device.
    harness.run();
    harness.get_by_label_contains(&format!("{} done · {} failed", before.provisioned + 1, before.failed));
    harness.get_by_label_contains(&format!("{} remaining of 100", before.outstanding() - 1));

    // None: any device again.
    click(&mut harness, Role::ComboBox, "Work order");
    harness.get_by_label("None: any device").click();
    harness.run();
    assert!(harness.query_by_label_contains("remaining of 100").is_none());
}

#[test]
fn gui_orders_devices_screen_filters_by_work_order() {
    let (mut harness, _control) = unlocked(demo_state(PASSPHRASE));
    show(&mut harness, Screen::Devices);
    harness.get_by_label("Showing 240 of 240 devices");
    click(&mut harness, Role::ComboBox, "Work order filter");
    harness.get_by_label("WO-2026-102").click();
    harness.run();
    harness.get_by_label("Showing 80 of 240 devices");
    // Searching finds an order's devices too.
    click(&mut harness, Role::ComboBox, "Work order filter");
    harness.get_by_label("Any work order").click();
    harness.run();
    type_into(&mut harness, "Search", "wo-2026-103");
    harness.get_by_label("Showing 80 of 240 devices");
}
