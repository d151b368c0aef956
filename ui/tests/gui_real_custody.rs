//! Named operators over the real station core: a home taken to named operators by the library
//! (two security officers and a supervisor), logged into from the GUI's form, the supervisor
//! as the actor of the audit log, and a bundle export approved by the two officers in the
//! approval dialog, their approvals signed into the audit log.

mod real_station;

use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_gui::KeyfillApp;
use keyfill_gui::app::LockState;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::settings::Settings;
use keyfill_gui::station_handle::StationHandle;
use keyfill_gui::station_handle::real::{RealStation, StationConfig};
use keyfill_station::custody::enable::{CustodySession, NewOperator, add_operator, enable};
use keyfill_station::custody::{OperatorName, Policy, Role as OperatorRole};
use keyfill_station::db::Inventory;
use keyfill_station::db::events::{EventFilter, recent};
use keyfill_station::home::StationHome;
use keyfill_station::provision::Station;
use real_station::{PASSPHRASE, RealHome, STATION_NAME, settle, wait_until};
use zeroize::Zeroizing;

const SIZE: [f32; 2] = [1280.0, 800.0];
const RECIPIENT: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

fn name(text: &str) -> OperatorName {
    OperatorName::parse(text).expect("a valid name")
}

/// anna and ben (security officers) and sam (supervisor), at a home with one provisioned device.
fn named_home() -> RealHome {
    let real = RealHome::new();
    real.provisioned("custody-0001");
    real.runtime.block_on(async {
        let home = StationHome::new(&real.home);
        let unlocked = home.unlock(PASSPHRASE).expect("unlocks");
        let actor = home.actor(&unlocked, "setup").expect("an actor");
        let inventory = Inventory::open(&real.db_url).await.expect("opens");
        let station = Station::start(inventory, unlocked, actor).await.expect("starts");
        let officers =
            [(name("anna"), Zeroizing::new("anna-pw".to_owned())), (name("ben"), Zeroizing::new("ben-pw".to_owned()))];
        enable(&station, &home, PASSPHRASE, &officers, Policy::default()).await.expect("named operators");
        station.inventory.close().await;

        let inventory = Inventory::open(&real.db_url).await.expect("opens");
        let approver = [(name("ben"), Zeroizing::new("ben-pw".to_owned()))];
        let mut session =
            CustodySession::login(&inventory, &home, (&name("anna"), "anna-pw"), &approver).await.expect("logs in");
        let (unlocked, secret) = session.unlock(&home).expect("unlocks from the logins");
        let actor = home.actor(&unlocked, "anna").expect("an actor");
        let station = Station::start(inventory, unlocked, actor).await.expect("starts");
        let sam = name("sam");
        let new = NewOperator { name: &sam, role: OperatorRole::Supervisor, passphrase: "sam-pw", card: None };
        add_operator(&station, &mut session, &home, &secret, new).await.expect("sam added");
        station.inventory.close().await;
    });
    real
}

fn open(real: &RealHome) -> Harness<'static, KeyfillApp> {
    let config =
        StationConfig { home: real.home.clone(), db_url: real.db_url.clone(), operator: "gui-operator".into() };
    let bridge =
        Bridge::try_new(|events| RealStation::spawn(config, events).map(|s| Box::new(s) as Box<dyn StationHandle>))
            .expect("the station thread starts");
    let app = KeyfillApp::new(bridge, Settings::default(), None);
    let mut harness = Harness::builder().with_size(SIZE).build_ui_state(|ui, app: &mut KeyfillApp| app.show(ui), app);
    wait_until(&mut harness, "the station's identity", |h| h.query_by_label_contains(STATION_NAME).is_some());
    harness
}

fn type_in(harness: &mut Harness<'_, KeyfillApp>, role: Role, label: &str, text: &str) {
    harness.get_by_role_and_label(role, label).focus();
    settle(harness);
    harness.get_by_role_and_label(role, label).type_text(text);
    settle(harness);
}

#[test]
fn custody_real_station_logs_in_and_exports_a_bundle_with_two_approvals() {
    let real = named_home();
    let mut harness = open(&real);
    assert!(harness.query_by_label("Master-key passphrase").is_none());
    type_in(&mut harness, Role::TextInput, "Operator name", "sam");
    type_in(&mut harness, Role::PasswordInput, "Passphrase", "wrong");
    harness.get_by_role_and_label(Role::Button, "Log in").click();
    wait_until(&mut harness, "the refusal", |h| {
        h.query_by_label_contains("Wrong passphrase for operator sam").is_some()
    });
    assert_eq!(harness.state().lock_state(), LockState::Locked);

    type_in(&mut harness, Role::PasswordInput, "Passphrase", "sam-pw");
    harness.get_by_role_and_label(Role::Button, "Log in").click();
    wait_until(&mut harness, "the unlock", |h| h.state().lock_state() == LockState::Unlocked);
    harness.get_by_label_contains("sam (supervisor)");

    // The bundle export: refused in the dialog with one wrong passphrase, then approved.
    let out = real.dir.path().join("keys.kfb");
    harness.get_by_role_and_label(Role::Button, "Rotation & export").click();
    settle(&mut harness);
    harness.get_by_role_and_label(Role::Button, "Offline bundle").click();
    settle(&mut harness);
    type_in(&mut harness, Role::TextInput, "C2 operator's key", RECIPIENT);
    type_in(&mut harness, Role::TextInput, "Bundle file", &out.display().to_string());
    harness.get_by_role_and_label(Role::Button, "Write bundle").click();
    settle(&mut harness);
    harness.get_by_label("Two-person approval");
    type_in(&mut harness, Role::TextInput, "Officer 1 name", "anna");
    type_in(&mut harness, Role::PasswordInput, "Officer 1 passphrase", "anna-pw");
    type_in(&mut harness, Role::TextInput, "Officer 2 name", "ben");
    type_in(&mut harness, Role::PasswordInput, "Officer 2 passphrase", "wrong");
    harness.get_by_role_and_label(Role::Button, "Approve and export").click();
    wait_until(&mut harness, "the refused approval", |h| {
        h.query_by_label_contains("Wrong passphrase for operator ben").is_some()
    });
    assert!(harness.state().approval_dialog().is_some(), "the dialog stays open");
    assert!(!out.exists());

    type_in(&mut harness, Role::PasswordInput, "Officer 1 passphrase", "anna-pw");
    type_in(&mut harness, Role::PasswordInput, "Officer 2 passphrase", "ben-pw");
    harness.get_by_role_and_label(Role::Button, "Approve and export").click();
    wait_until(&mut harness, "the bundle", |h| h.query_by_label_contains("Bundle written to").is_some());
    assert!(out.exists());

    let events = real.runtime.block_on(async {
        let inventory = Inventory::open(&real.db_url).await.expect("opens");
        let events = recent(inventory.pool(), 500, &EventFilter::default()).await.expect("the event log");
        inventory.close().await;
        events
    });
    let login = events.iter().find(|e| e.kind == "login" && e.detail.starts_with("sam ")).expect("sam's login");
    assert_eq!(login.operator, "sam");
    let approved = events
        .iter()
        .find(|e| e.kind == "dual_control_approved" && e.detail.starts_with("export a key bundle"))
        .expect("the approvals recorded");
    assert!(approved.detail.contains("approved by anna, ben"), "{}", approved.detail);
    assert_eq!(approved.operator, "sam", "the logged-in operator is the actor");
    let written = events.iter().find(|e| e.kind == "c2_bundle_written").expect("the bundle recorded");
    assert_eq!(written.operator, "sam");
}
