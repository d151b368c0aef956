//! What the tests over the real station core share: a station home initialised with its
//! passphrase, a SQLite inventory, provisioned devices written the way the station writes them,
//! and the app unlocked at the passphrase prompt.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use eframe::egui::Key;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_formats::DeviceId;
use keyfill_gui::KeyfillApp;
use keyfill_gui::app::LockState;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::settings::Settings;
use keyfill_gui::station_handle::StationHandle;
use keyfill_gui::station_handle::real::{RealStation, StationConfig};
use keyfill_station::db::{Inventory, devices, keys};
use keyfill_station::home::StationHome;
use keyfill_station::seal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PASSPHRASE: &str = "gui real station passphrase";
pub const STATION_NAME: &str = "gui-real-station";

/// A fresh station home and SQLite inventory in a temporary folder.
pub struct RealHome {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub db_url: String,
    pub runtime: tokio::runtime::Runtime,
}

impl RealHome {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let home = dir.path().join("home");
        StationHome::new(&home).initialise(PASSPHRASE, STATION_NAME, None).expect("the home initialises");
        let db_url = format!("sqlite://{}", dir.path().join("keyfill.db").display());
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        RealHome { dir, home, db_url, runtime }
    }

    /// Records `name` as provisioned with a fresh key sealed under the master key, as a
    /// provisioning confirmed by the device leaves it; returns its id.
    pub fn provisioned(&self, name: &str) -> String {
        let unlocked = StationHome::new(&self.home).unlock(PASSPHRASE).expect("unlocks");
        let station_id: String = unlocked.info.station_id.iter().map(|b| format!("{b:02x}")).collect();
        let id = DeviceId::from_name(name);
        let key = seal::random_key().expect("a key");
        let key_id = seal::random_array::<16>().expect("a key id");
        let key_id_hex: String = key_id.iter().map(|b| format!("{b:02x}")).collect();
        let sealed = unlocked.master_key.seal(&seal::device_key_context(&id, &key_id), key.expose()).expect("sealed");
        let record = devices::NewDevice {
            id: id.to_hex(),
            name: name.to_owned(),
            serial_number: format!("SN-{name}"),
            credential_mode: "identity",
            identity_public_key: Some(vec![1; 32]),
            sealed_setup_secret: None,
            model: None,
        };
        self.runtime.block_on(async {
            let inventory = Inventory::open(&self.db_url).await.expect("opens");
            let mut tx = inventory.pool().begin().await.expect("a transaction");
            devices::begin_provisioning(&mut tx, &record, &key_id_hex, "serial", "/dev/ttyUSB0").await.expect("begun");
            let new_key = keys::NewKey {
                state: keys::NewKeyState::Pending,
                key_id: &key_id_hex,
                device_id: &id.to_hex(),
                kind: "e4-symmetric-client-key",
                sealed_key: &sealed,
                check_value: seal::KeyCheckValue::of(&key),
                station_id: &station_id,
            };
            keys::insert(&mut tx, new_key).await.expect("key recorded");
            keys::mark_active(&mut tx, &key_id_hex).await.expect("active");
            devices::mark_provisioned(&mut tx, &id.to_hex(), &key_id_hex, "serial", "/dev/ttyUSB0")
                .await
                .expect("provisioned");
            tx.commit().await.expect("committed");
            inventory.close().await;
        });
        id.to_hex()
    }

    /// The station id, in hex.
    pub fn station_id(&self) -> String {
        let info = StationHome::new(&self.home).info().expect("the station's public facts");
        info.station_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The app over this station in a window of `size`, unlocked at the passphrase prompt.
    pub fn open_unlocked(&self, settings: Settings, size: [f32; 2]) -> Harness<'static, KeyfillApp> {
        open_unlocked(&self.home, &self.db_url, settings, size)
    }
}

impl Default for RealHome {
    fn default() -> Self {
        Self::new()
    }
}

/// Steps the UI until `done` holds, as the real app does between station events.
pub fn wait_until(harness: &mut Harness<'_, KeyfillApp>, what: &str, done: impl Fn(&Harness<'_, KeyfillApp>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done(harness) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
        harness.step();
    }
    settle(harness);
}

/// A few frames: spinners keep the real app repainting, so `run` would never see it idle.
pub fn settle(harness: &mut Harness<'_, KeyfillApp>) {
    harness.run_steps(4);
}

pub fn open_unlocked(home: &Path, db_url: &str, settings: Settings, size: [f32; 2]) -> Harness<'static, KeyfillApp> {
    let config = StationConfig { home: home.to_owned(), db_url: db_url.to_owned(), operator: "gui-operator".into() };
    let bridge =
        Bridge::try_new(|events| RealStation::spawn(config, events).map(|s| Box::new(s) as Box<dyn StationHandle>))
            .expect("the station thread starts");
    let app = KeyfillApp::new(bridge, settings, None);
    let mut harness = Harness::builder().with_size(size).build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app);
    wait_until(&mut harness, "the station's identity", |h| h.query_by_label_contains(STATION_NAME).is_some());
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase").focus();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::PasswordInput, "Master-key passphrase").type_text(PASSPHRASE);
    settle(&mut harness);
    harness.key_press(Key::Enter);
    wait_until(&mut harness, "the unlock", |h| h.state().lock_state() == LockState::Unlocked);
    harness
}
