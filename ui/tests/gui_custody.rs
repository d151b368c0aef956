//! Named operators in the GUI, against the fake station: the login form under an unlock quorum
//! of one and of two, the logged-in operator in the top bar and as the actor of the events, the
//! actions their role may not take disabled (and refused by the station all the same), and the
//! two-person approval of a bundle export.

mod support;

use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use keyfill_gui::KeyfillApp;
use keyfill_gui::app::LockState;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::messages::{
    AbandonRequest, Command, Credential, CustodySummary, Event, LoginRequest, Passphrase, SignedIn,
};
use keyfill_gui::screens::Screen;
use keyfill_gui::station_handle::fake::{FakeControl, FakeOperator, FakeState, demo_state};
use keyfill_station::custody::Role as OperatorRole;
use support::{PASSPHRASE, click, harness_for, is_enabled, settings, show, type_into};

const RECIPIENT: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";

fn roster() -> Vec<FakeOperator> {
    vec![
        FakeOperator::new("anna", OperatorRole::SecurityOfficer, "anna-pw"),
        FakeOperator::new("ben", OperatorRole::SecurityOfficer, "ben-pw"),
        FakeOperator::new("olga", OperatorRole::Operator, "olga-pw"),
        FakeOperator::new("sam", OperatorRole::Supervisor, "sam-pw"),
    ]
}

fn named(quorum: u8) -> FakeState {
    demo_state(PASSPHRASE).with_named_operators(CustodySummary { unlock_quorum: quorum, approvals: 2 }, roster())
}

fn type_password(harness: &mut Harness<'_, KeyfillApp>, label: &str, text: &str) {
    harness.get_by_role_and_label(Role::PasswordInput, label).focus();
    harness.run();
    harness.get_by_role_and_label(Role::PasswordInput, label).type_text(text);
    harness.run();
}

/// Logs `name` in with `passphrase` on the quorum-one form.
fn log_in(harness: &mut Harness<'_, KeyfillApp>, name: &str, passphrase: &str) {
    harness.run();
    type_into(harness, "Operator name", name);
    type_password(harness, "Passphrase", passphrase);
    click(harness, Role::Button, "Log in");
}

fn logged_in(name: &str, passphrase: &str) -> (Harness<'static, KeyfillApp>, FakeControl) {
    let control = FakeControl::new(named(1));
    let mut harness = harness_for(&control, settings());
    log_in(&mut harness, name, passphrase);
    assert_eq!(harness.state().lock_state(), LockState::Unlocked);
    (harness, control)
}

#[test]
fn custody_login_form_under_quorum_one_asks_for_name_and_passphrase() {
    let control = FakeControl::new(named(1));
    let mut harness = harness_for(&control, settings());
    harness.run();
    assert!(harness.query_by_label("Master-key passphrase").is_none(), "no shared passphrase");
    harness.get_by_label_contains("log in with your name and passphrase");
    assert!(harness.query_by_label("Officer 2 name").is_none());
    assert!(!is_enabled(&harness, Role::Button, "Log in"), "nothing typed yet");

    log_in(&mut harness, "olga", "wrong");
    assert_eq!(harness.state().lock_state(), LockState::Locked);
    harness.get_by_label_contains("Wrong passphrase for operator olga");
    let field = harness.get_by_role_and_label(Role::PasswordInput, "Passphrase");
    assert_eq!(field.value().unwrap_or_default(), "", "the passphrase was wiped when sent");

    type_password(&mut harness, "Passphrase", "olga-pw");
    click(&mut harness, Role::Button, "Log in");
    assert_eq!(harness.state().lock_state(), LockState::Unlocked);
    harness.get_by_label_contains("olga (operator)");
    let actor = harness.state().access().actor.clone();
    assert_eq!(actor, Some(SignedIn { name: "olga".into(), role: OperatorRole::Operator }));
    control.with(|state| {
        let login = state.history.iter().rev().find(|e| e.kind == "login").expect("the login is recorded");
        assert_eq!(login.operator, "olga", "the logged-in operator is the actor, not the configured one");
    });
    assert_eq!(control.received()[..2], ["login", "login"]);
}

#[test]
fn custody_login_form_under_quorum_two_asks_for_the_other_officer() {
    let control = FakeControl::new(named(2));
    let mut harness = harness_for(&control, settings());
    harness.run();
    harness.get_by_label_contains("2 security officers must unlock this station together");
    for label in ["Operator name", "Officer 1 name", "Officer 2 name"] {
        harness.get_by_role_and_label(Role::TextInput, label);
    }
    for label in ["Officer 1 passphrase", "Officer 2 passphrase"] {
        harness.get_by_role_and_label(Role::PasswordInput, label);
    }
    // An officer works here: they and one other officer unlock.
    type_into(&mut harness, "Operator name", "anna");
    type_password(&mut harness, "Passphrase", "anna-pw");
    assert!(!is_enabled(&harness, Role::Button, "Log in and unlock"), "the second officer is missing");
    // An operator is not a security officer: the quorum is not met.
    type_into(&mut harness, "Officer 1 name", "olga");
    type_password(&mut harness, "Officer 1 passphrase", "olga-pw");
    assert!(is_enabled(&harness, Role::Button, "Log in and unlock"), "the operator and one officer row are filled");
    // Enter in a passphrase field logs in (the button is under the fold of the form's scroll).
    harness.key_press(eframe::egui::Key::Enter);
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Locked);
    harness.get_by_label_contains("needs 2 security officers to unlock");

    harness.get_by_role_and_label(Role::TextInput, "Officer 1 name").focus();
    harness.run();
    harness.key_press_modifiers(eframe::egui::Modifiers::COMMAND, eframe::egui::Key::A);
    harness.run();
    harness.get_by_role_and_label(Role::TextInput, "Officer 1 name").type_text("ben");
    harness.run();
    type_password(&mut harness, "Passphrase", "anna-pw");
    type_password(&mut harness, "Officer 1 passphrase", "ben-pw");
    harness.key_press(eframe::egui::Key::Enter);
    harness.run();
    assert_eq!(harness.state().lock_state(), LockState::Unlocked);
    harness.get_by_label_contains("anna (security officer)");
}

#[test]
fn custody_actions_the_role_may_not_take_are_disabled() {
    let (mut harness, _control) = logged_in("olga", "olga-pw");
    show(&mut harness, Screen::RotationExport);
    assert!(!is_enabled(&harness, Role::Button, "Start rotation"), "an operator does not rotate");
    assert!(!is_enabled(&harness, Role::Button, "Watch for first contact"));
    assert!(!is_enabled(&harness, Role::Button, "Export to C2"));
    click(&mut harness, Role::Button, "Offline bundle");
    assert!(!is_enabled(&harness, Role::Button, "Write bundle"));

    let (mut harness, _control) = logged_in("sam", "sam-pw");
    harness.get_by_label_contains("sam (supervisor)");
    show(&mut harness, Screen::RotationExport);
    assert!(is_enabled(&harness, Role::Button, "Start rotation"), "a supervisor rotates");
    assert!(is_enabled(&harness, Role::Button, "Export to C2"));
    show(&mut harness, Screen::Provision);
    assert!(!is_enabled(&harness, Role::Button, "Provision device"));
    let access = harness.state().access().clone();
    let why = access.refusal(keyfill_station::custody::Operation::Provision).expect("refused");
    assert_eq!(why, "Only an operator may provision devices; sam is a supervisor.");
}

#[test]
fn custody_the_station_refuses_a_command_the_role_may_not_give() {
    let control = FakeControl::new(named(1));
    let mut bridge = Bridge::new(control.connect());
    let credential = |name: &str, passphrase: &str| Credential {
        name: name.into(),
        passphrase: Passphrase::take_from(&mut passphrase.to_owned()),
    };
    bridge.send(Command::Login(Box::new(LoginRequest {
        operator: credential("olga", "olga-pw"),
        approvers: Vec::new(),
    })));
    let events = bridge.drain();
    assert!(events.iter().any(|e| matches!(e, Event::Unlocked)));
    // The button is disabled for an operator; the station refuses it all the same.
    let device = control.with(|state| state.devices[0].id.clone());
    bridge.send(Command::Abandon(AbandonRequest { device_id: device, reason: "scrapped".into() }));
    let refused = bridge.drain().into_iter().find_map(|event| match event {
        Event::Problem { command: "abandon", problem } => Some(problem),
        _ => None,
    });
    let problem = refused.expect("refused");
    assert!(problem.message.contains("olga is an operator: to abandon devices takes a supervisor"), "{problem}");
    control.with(|state| assert!(state.history.iter().all(|e| e.kind != "abandoned")));
}

#[test]
fn custody_bundle_export_needs_two_security_officers() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let out = dir.path().join("keys-line-3.kfb");
    let (mut harness, control) = logged_in("sam", "sam-pw");
    show(&mut harness, Screen::RotationExport);
    click(&mut harness, Role::Button, "Offline bundle");
    type_into(&mut harness, "C2 operator's key", RECIPIENT);
    type_into(&mut harness, "Bundle file", &out.display().to_string());
    type_into(&mut harness, "Devices to export", "sensor-1205");
    click(&mut harness, Role::Button, "Write bundle");

    // The dialog: the operation, its subject, two officers' rows; nothing asked of the station yet.
    harness.get_by_label("Two-person approval");
    harness.get_by_label("export a key bundle");
    harness.get_by_label_contains("for recipient 8520f009");
    assert_eq!(harness.state().approval_dialog().map(|d| d.rows()), Some(2));
    assert!(!control.received().contains(&"export_bundle"));
    assert!(!is_enabled(&harness, Role::Button, "Approve and export"));

    type_into(&mut harness, "Officer 1 name", "anna");
    type_password(&mut harness, "Officer 1 passphrase", "anna-pw");
    type_into(&mut harness, "Officer 2 name", "ben");
    type_password(&mut harness, "Officer 2 passphrase", "wrong");
    click(&mut harness, Role::Button, "Approve and export");
    // Refused: shown in the dialog, which stays open with the passphrases wiped.
    harness.get_by_label_contains("Wrong passphrase for operator ben");
    assert!(harness.state().approval_dialog().is_some_and(|d| !d.is_waiting()));
    let field = harness.get_by_role_and_label(Role::PasswordInput, "Officer 2 passphrase");
    assert_eq!(field.value().unwrap_or_default(), "");
    control.with(|state| assert!(state.history.iter().all(|e| !e.kind.starts_with("c2_bundle"))));

    type_password(&mut harness, "Officer 1 passphrase", "anna-pw");
    type_password(&mut harness, "Officer 2 passphrase", "ben-pw");
    click(&mut harness, Role::Button, "Approve and export");
    assert!(harness.state().approval_dialog().is_none(), "the dialog closed");
    harness.get_by_label(&format!("Bundle written to {}: 1 key(s)", out.display()));
    control.with(|state| {
        let approved = state.history.iter().find(|e| e.kind == "dual_control_approved").expect("approval recorded");
        assert!(approved.detail.contains("approved by anna, ben"), "{}", approved.detail);
        assert_eq!(approved.operator, "sam");
        let written = state.history.iter().find(|e| e.kind == "c2_bundle_written").expect("bundle recorded");
        assert_eq!(written.operator, "sam");
    });
}

#[test]
fn custody_approval_dialog_cancel_sends_nothing() {
    let (mut harness, control) = logged_in("sam", "sam-pw");
    show(&mut harness, Screen::RotationExport);
    click(&mut harness, Role::Button, "Offline bundle");
    type_into(&mut harness, "C2 operator's key", RECIPIENT);
    type_into(&mut harness, "Bundle file", "/tmp/never-written.kfb");
    click(&mut harness, Role::Button, "Write bundle");
    harness.get_by_label("Two-person approval");
    click(&mut harness, Role::Button, "Cancel");
    assert!(harness.state().approval_dialog().is_none());
    assert!(!control.received().contains(&"export_bundle"));
}
