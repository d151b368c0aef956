//! The whole factory flow in the GUI with the real station core: a station home initialised
//! with its passphrase, a real SQLite file, and a simulated device (the real agent core) on a
//! pseudo-terminal. The operator unlocks, types the label into the scan field, provisions, and
//! finds the device in the Devices table and the History.

use eframe::egui::Key;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_gui::KeyfillApp;
use keyfill_gui::app::LockState;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::screens::Screen;
use keyfill_gui::settings::{LabelMode, Settings};
use keyfill_gui::station_handle::StationHandle;
use keyfill_gui::station_handle::real::{RealStation, StationConfig};
use keyfill_station::db::Inventory;
use keyfill_station::db::devices::{self, DeviceState};
use keyfill_station::demo::SimulatedDevice;
use keyfill_station::home::StationHome;
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "gui end-to-end passphrase";

/// Steps the UI until `done` holds, as the real app does between station events.
fn wait_until(harness: &mut Harness<'_, KeyfillApp>, what: &str, done: impl Fn(&Harness<'_, KeyfillApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
    settle(harness);
}

/// A few frames: the link detection's spinner keeps the real app repainting, so `run` would
/// never see it idle.
fn settle(harness: &mut Harness<'_, KeyfillApp>) {
    harness.run_steps(4);
}

#[test]
fn gui_end_to_end_provisions_a_simulated_device_into_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let home_path = dir.path().join("home");
    let home = StationHome::new(&home_path);
    let info = home.initialise(PASSPHRASE, "gui-e2e-station", None).unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("keyfill.db").display());

    // The simulated device serves on this runtime's workers, like a device on a UART.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let device = {
        let _entered = runtime.enter();
        SimulatedDevice::start("gui-e2e-0001", "SN-GUI-0001", info.factory_root, &dir.path().join("device")).unwrap()
    };
    let label_text = device.identity.onboarding_payload().encode().unwrap();

    let mut settings = Settings::default();
    settings.link.serial_port = device.port().display().to_string();
    settings.label.after_provisioning = LabelMode::Save;
    settings.label.folder = dir.path().join("labels");
    let config = StationConfig { home: home_path.clone(), db_url: db_url.clone(), operator: "e2e-operator".into() };
    let bridge =
        Bridge::try_new(|events| RealStation::spawn(config, events).map(|s| Box::new(s) as Box<dyn StationHandle>))
            .unwrap();
    let app = KeyfillApp::new(bridge, settings, None);
    let mut harness =
        Harness::builder().with_size([1280.0, 800.0]).build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app);

    wait_until(&mut harness, "the station's identity", |h| h.query_by_label_contains("gui-e2e-station").is_some());
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase").focus();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase").type_text(PASSPHRASE);
    settle(&mut harness);
    harness.key_press(Key::Enter);
    wait_until(&mut harness, "the unlock", |h| h.state().lock_state() == LockState::Unlocked);

    // A handheld scanner types the label and Enter; Enter again provisions.
    harness.get_by_role_and_label(Role::TextInput, "Scan label").focus();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::TextInput, "Scan label").type_text(&label_text);
    settle(&mut harness);
    harness.key_press(Key::Enter);
    settle(&mut harness);
    harness.get_by_label("gui-e2e-0001");
    harness.key_press(Key::Enter);
    wait_until(&mut harness, "the provisioning", |h| {
        h.query_by_label("Provisioned").is_some() || h.query_by_label("Not provisioned").is_some()
    });
    assert!(harness.query_by_label("Provisioned").is_some(), "the provisioning failed");
    wait_until(&mut harness, "the label", |h| h.query_by_label_contains("Label saved to").is_some());
    let labels: Vec<_> = std::fs::read_dir(dir.path().join("labels")).unwrap().collect();
    assert_eq!(labels.len(), 1, "one label file");

    harness.get_by_role_and_label(Role::Button, Screen::Devices.title()).click();
    settle(&mut harness);
    wait_until(&mut harness, "the device row", |h| h.query_by_label("Showing 1 of 1 devices").is_some());
    harness.get_by_label("gui-e2e-0001");
    harness.get_by_label("provisioned");

    harness.get_by_role_and_label(Role::Button, Screen::History.title()).click();
    wait_until(&mut harness, "the event log", |h| h.query_by_label("2 event(s)").is_some());
    harness.get_by_label("key_generated");
    assert!(harness.query_all_by_label("e2e-operator").count() >= 2);

    // The record is in the SQLite file, provisioned, and so is the event log.
    let id = device.identity.onboarding_payload().device_id.to_hex();
    let stored = runtime.block_on(async {
        let inventory = Inventory::open(&db_url).await.unwrap();
        let device = devices::get(inventory.pool(), &id).await.unwrap();
        inventory.close().await;
        device
    });
    let stored = stored.expect("the device is in the inventory");
    assert_eq!(stored.state, DeviceState::Provisioned);
    assert_eq!(stored.transport.as_deref(), Some("serial"));

    // Locking drops the master key; the unlock prompt is back.
    harness.get_by_role_and_label(Role::Button, "Lock").click();
    wait_until(&mut harness, "the lock", |h| h.state().lock_state() == LockState::Locked);
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase");
    drop(device);
}

/// How long the Devices screen waits for 100,000 devices from SQLite (printed; run by hand with
/// `cargo test -p keyfill-gui --test gui_end_to_end -- --ignored --nocapture`).
#[test]
#[ignore = "a measurement, not a check: inserts 100,000 devices"]
fn gui_measure_loading_100k_devices_from_sqlite() {
    use keyfill_station::db::devices::NewDevice;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("big.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let inventory = Inventory::open(&url).await.unwrap();
        let mut tx = inventory.pool().begin().await.unwrap();
        for n in 0..100_000u32 {
            let device = NewDevice {
                id: format!("{n:032x}"),
                name: format!("unit-{n:06}"),
                serial_number: format!("SN-{n:06}"),
                credential_mode: "identity",
                identity_public_key: Some(vec![7; 32]),
                sealed_setup_secret: None,
                model: Some("TH-200".into()),
            };
            devices::begin_provisioning(&mut tx, &device, &format!("{n:032x}"), "serial", "/dev/ttyUSB0")
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let started = Instant::now();
        let all = devices::list(inventory.pool(), None).await.unwrap();
        eprintln!("devices::list of {} devices from SQLite: {:?}", all.len(), started.elapsed());
        inventory.close().await;
    });
}
