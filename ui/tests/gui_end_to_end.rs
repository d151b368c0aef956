//! The whole factory flow in the GUI with the real station core: a station home initialised
//! with its passphrase, a real SQLite file, and a simulated device (the real agent core) on a
//! pseudo-terminal. The operator unlocks, types the label into the scan field, provisions,
//! finds the device in the Devices table (indexed by the station thread), prints its label again
//! from there, writes an offline bundle for an air-gapped C2, and finds it all in the History.

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
use std::path::Path;
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

/// The app over the real station in `home`, unlocked by the operator at the passphrase prompt.
fn open_unlocked(home: &Path, db_url: &str, settings: Settings) -> Harness<'static, KeyfillApp> {
    let config = StationConfig { home: home.to_owned(), db_url: db_url.to_owned(), operator: "e2e-operator".into() };
    let bridge =
        Bridge::try_new(|events| RealStation::spawn(config, events).map(|s| Box::new(s) as Box<dyn StationHandle>))
            .expect("the station thread starts");
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
    harness
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
        let name = "gui-e2e-0001".parse().unwrap();
        SimulatedDevice::start(name, "SN-GUI-0001", info.factory_root, &dir.path().join("device")).unwrap()
    };
    let label_text = device.identity.onboarding_payload().encode().unwrap();

    let mut settings = Settings::default();
    settings.link.serial_port = device.port().display().to_string();
    settings.label.after_provisioning = LabelMode::Save;
    settings.label.folder = dir.path().join("labels");
    let mut harness = open_unlocked(&home_path, &db_url, settings);

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
    assert_eq!(keyfill_gui::device_index::builds_on_this_thread(), 0, "the UI thread never indexes");

    // A label peeled off on the line: the same label again, from the device's record.
    let label_file = labels[0].as_ref().unwrap().path();
    std::fs::remove_file(&label_file).unwrap();
    harness.get_by_label("gui-e2e-0001").click();
    wait_until(&mut harness, "the device's record", |h| h.query_by_label("Device history").is_some());
    harness.get_by_role_and_label(Role::Button, "Save label").click();
    let saved = format!("Label saved to {}", label_file.display());
    wait_until(&mut harness, "the label again", |h| h.query_by_label(&saved).is_some());
    let png = std::fs::read(&label_file).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "the label file is a PNG again");

    // An offline bundle for the C2 operator, whose key pair the library makes here.
    let operator_key = dir.path().join("c2-operator.key");
    let operator_public = dir.path().join("c2-operator.key.pub");
    keyfill_station::bundle::generate_recipient_key_files(&operator_key, &operator_public, "c2 operator passphrase")
        .unwrap();
    let bundle_file = dir.path().join("keys-line-3.kfb");
    harness.get_by_role_and_label(Role::Button, Screen::RotationExport.title()).click();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Offline bundle").click();
    settle(&mut harness);
    for (field, text) in [
        ("C2 operator's key", operator_public.display().to_string()),
        ("Bundle file", bundle_file.display().to_string()),
    ] {
        harness.get_by_role_and_label(Role::TextInput, field).focus();
        settle(&mut harness);
        harness.get_by_role_and_label(Role::TextInput, field).type_text(&text);
        settle(&mut harness);
    }
    harness.get_by_role_and_label(Role::Button, "Write bundle").click();
    let written = format!("Bundle written to {}: 1 key(s)", bundle_file.display());
    wait_until(&mut harness, "the bundle", |h| {
        h.query_by_label(&written).is_some() || h.query_by_label_contains("What to do").is_some()
    });
    assert!(harness.query_by_label(&written).is_some(), "the bundle was not written");
    harness.get_by_label_contains("from station gui-e2e-station");
    let bytes = std::fs::read(&bundle_file).unwrap();
    let now = keyfill_station::db::now_millis() as u64;
    let summary = keyfill_station::bundle::verify_bundle(&bytes, &info.factory_root, now).unwrap();
    assert_eq!(summary.manifest.count, 1);

    harness.get_by_role_and_label(Role::Button, Screen::History.title()).click();
    wait_until(&mut harness, "the event log", |h| h.query_by_label("4 event(s)").is_some());
    harness.get_by_label("key_generated");
    harness.get_by_label("c2_bundled");
    harness.get_by_label("c2_bundle_written");
    assert!(harness.query_all_by_label("e2e-operator").count() >= 4);

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

/// A device whose key was sent but never confirmed, and that can no longer be asked: the
/// operator abandons it from the Devices screen, with a reason and the confirmation, and the
/// SQLite record and the event log say so.
#[test]
fn gui_end_to_end_abandons_a_pending_device_in_sqlite() {
    use keyfill_station::db::devices::NewDevice;
    use keyfill_station::db::{events, keys};
    let dir = tempfile::tempdir().unwrap();
    let home_path = dir.path().join("home");
    StationHome::new(&home_path).initialise(PASSPHRASE, "gui-e2e-station", None).unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("keyfill.db").display());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let id = keyfill_formats::DeviceId::from_name("gui-e2e-pending").to_hex();
    let key_id = "00112233445566778899aabbccddeeff";
    // As a provisioning leaves it when the link drops after the key left: pending, key pending.
    runtime.block_on(async {
        let inventory = Inventory::open(&db_url).await.unwrap();
        let mut tx = inventory.pool().begin().await.unwrap();
        let device = NewDevice {
            id: id.clone(),
            name: "gui-e2e-pending".into(),
            serial_number: "SN-GUI-PENDING".into(),
            credential_mode: "identity",
            identity_public_key: Some(vec![7; 32]),
            sealed_setup_secret: None,
            model: None,
        };
        devices::begin_provisioning(&mut tx, &device, key_id, "serial", "/dev/ttyUSB9").await.unwrap();
        // Sealed as the station seals keys: a database whose keys open under no master key is
        // another station's, and the app would refuse it.
        let unlocked = StationHome::new(&home_path).unlock(PASSPHRASE).unwrap();
        let secret = keyfill_formats::SecretKey::from_bytes([7; 32]);
        let key_id_bytes: [u8; 16] =
            std::array::from_fn(|i| u8::from_str_radix(&key_id[2 * i..2 * i + 2], 16).unwrap());
        let device_id = keyfill_formats::DeviceId::from_hex(&id).unwrap();
        let context = keyfill_station::seal::device_key_context(&device_id, &key_id_bytes);
        let sealed = unlocked.master_key.seal(&context, secret.expose()).unwrap();
        let key = keys::NewKey {
            state: keys::NewKeyState::Pending,
            key_id,
            device_id: &id,
            kind: "e4-symmetric-client-key",
            sealed_key: &sealed,
            check_value: keyfill_station::seal::KeyCheckValue::of(&secret),
            station_id: "station",
        };
        keys::insert(&mut tx, key).await.unwrap();
        tx.commit().await.unwrap();
        inventory.close().await;
    });

    let mut harness = open_unlocked(&home_path, &db_url, Settings::default());
    harness.get_by_role_and_label(Role::Button, Screen::Devices.title()).click();
    wait_until(&mut harness, "the device row", |h| h.query_by_label("Showing 1 of 1 devices").is_some());
    harness.get_by_label("gui-e2e-pending").click();
    wait_until(&mut harness, "the device's record", |h| h.query_by_label("Device history").is_some());
    harness.get_by_role_and_label(Role::Button, "Abandon…").click();
    settle(&mut harness);
    let reason = "Reason (kept in the event log)";
    harness.get_by_role_and_label(Role::TextInput, reason).focus();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::TextInput, reason).type_text("board scrapped");
    settle(&mut harness);
    harness
        .get_by_role_and_label(
            Role::CheckBox,
            "I understand: the device may refuse a new key until it is factory-reset",
        )
        .click();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Abandon device").click();
    wait_until(&mut harness, "the abandon", |h| {
        h.query_by_label("gui-e2e-pending abandoned: now failed.").is_some()
            || h.query_by_label_contains("What to do").is_some()
    });
    harness.get_by_label("gui-e2e-pending abandoned: now failed.");

    let (stored, history) = runtime.block_on(async {
        let inventory = Inventory::open(&db_url).await.unwrap();
        let device = devices::get(inventory.pool(), &id).await.unwrap();
        let history = events::for_device(inventory.pool(), &id).await.unwrap();
        inventory.close().await;
        (device, history)
    });
    let stored = stored.expect("the device is in the inventory");
    assert_eq!(stored.state, DeviceState::Failed);
    assert_eq!(stored.failure.as_deref(), Some("abandoned: board scrapped"));
    let last = history.last().expect("an event");
    assert_eq!(
        (last.kind.as_str(), last.detail.as_str(), last.operator.as_str()),
        ("abandoned", "board scrapped", "e2e-operator")
    );
}
