//! Named operators in the GUI: who is logged in, and which of the screens' actions their role
//! may take. The station handle refuses a command the role may not give as well; this only
//! keeps the buttons honest (disabled, with a hover text naming the role that may).
//!
//! The app holds the [`Access`] and hands it to the screens each frame through the egui
//! context ([`Access::publish`], [`Access::of`]), so a panel asks `Access::of(ui)` instead of
//! having it passed down through every screen's `ui` function.

use crate::messages::{Command, CustodySummary, SignedIn};
use eframe::egui;
use keyfill_station::custody::{Operation, Role};

/// What the logged-in operator may do. The default (no operator) is a station without named
/// operators: everything is allowed, as before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub actor: Option<SignedIn>,
    /// The station's custody policy, when it has named operators.
    pub custody: Option<CustodySummary>,
}

fn access_id() -> egui::Id {
    egui::Id::unique("keyfill-access")
}

impl Access {
    pub fn of_actor(actor: SignedIn, custody: CustodySummary) -> Self {
        Access { actor: Some(actor), custody: Some(custody) }
    }

    /// `None` when the operation is allowed; otherwise why not, naming the role that may.
    pub fn refusal(&self, operation: Operation) -> Option<String> {
        let actor = self.actor.as_ref()?;
        if operation.allowed_to(actor.role) {
            return None;
        }
        Some(format!(
            "Only {} may {}; {} is {}.",
            roles_text(operation.roles()),
            operation.as_str(),
            actor.name,
            article(role_text(actor.role))
        ))
    }

    pub fn allows(&self, operation: Operation) -> bool {
        self.refusal(operation).is_none()
    }

    /// Whether `command` may be given; why not otherwise.
    pub fn refusal_of(&self, command: &Command) -> Option<String> {
        operation_of(command).and_then(|operation| self.refusal(operation))
    }

    /// Makes this the access the screens read this frame.
    pub fn publish(&self, context: &egui::Context) {
        context.data_mut(|data| data.insert_temp(access_id(), self.clone()));
    }

    /// The access the app published; everything allowed if none was.
    pub fn of(ui: &egui::Ui) -> Self {
        ui.ctx().data(|data| data.get_temp::<Access>(access_id())).unwrap_or_default()
    }
}

/// A role as the GUI names it.
pub fn role_text(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Supervisor => "supervisor",
        Role::SecurityOfficer => "security officer",
        Role::Auditor => "auditor",
    }
}

fn article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if vowel { "an" } else { "a" })
}

/// "a supervisor", "an operator or a supervisor".
fn roles_text(roles: &[Role]) -> String {
    let names: Vec<String> = roles.iter().map(|role| article(role_text(*role))).collect();
    names.join(" or ")
}

/// The operation a command asks for, if its role matters. Stopping a watch or cancelling a
/// provisioning is always allowed (locking does both), as are the links and labels saved to a
/// folder without the station's keys.
pub fn operation_of(command: &Command) -> Option<Operation> {
    Some(match command {
        Command::Provision(_) => Operation::Provision,
        Command::Reconcile(_) => Operation::Reconcile,
        Command::Rotate(_) | Command::WatchRotation(_) => Operation::Rotate,
        Command::ExportC2(_) => Operation::ExportToC2,
        Command::ExportBundle(_) => Operation::ExportBundle,
        Command::Abandon(_) => Operation::Abandon,
        Command::LoadDevices | Command::LoadDeviceDetail { .. } | Command::LoadHistory(_) | Command::LoadOrders => {
            Operation::Inspect
        }
        Command::Unlock(_)
        | Command::Login(_)
        | Command::Lock
        | Command::DetectLinks
        | Command::SaveLabel(_)
        | Command::StopWatch
        | Command::CancelProvision { .. } => return None,
    })
}

/// Adds `widget`, enabled when `enabled` and the role allows `operation`; when the role does
/// not, hovering it says which role may.
pub fn gated(ui: &mut egui::Ui, operation: Operation, enabled: bool, widget: impl egui::Widget) -> egui::Response {
    match Access::of(ui).refusal(operation) {
        None => ui.add_enabled(enabled, widget),
        Some(why) => ui.add_enabled(false, widget).on_disabled_hover_text(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_role(role: Role) -> Access {
        Access::of_actor(SignedIn { name: "olga".into(), role }, CustodySummary { unlock_quorum: 1, approvals: 2 })
    }

    #[test]
    fn custody_roles_gate_the_actions() {
        assert!(Access::default().allows(Operation::ExportBundle));
        assert!(Access::default().allows(Operation::Provision));
        let operator = as_role(Role::Operator);
        assert!(operator.allows(Operation::Provision));
        assert!(operator.allows(Operation::Reconcile));
        assert!(operator.allows(Operation::Inspect));
        assert_eq!(
            operator.refusal(Operation::Rotate).as_deref(),
            Some("Only a supervisor may rotate keys; olga is an operator.")
        );
        let supervisor = as_role(Role::Supervisor);
        assert!(supervisor.allows(Operation::ExportBundle) && supervisor.allows(Operation::Abandon));
        assert_eq!(
            supervisor.refusal(Operation::Provision).as_deref(),
            Some("Only an operator may provision devices; olga is a supervisor.")
        );
        let officer = as_role(Role::SecurityOfficer);
        assert!(officer.refusal(Operation::ExportBundle).is_some_and(|why| why.contains("a security officer")));
        assert!(as_role(Role::Auditor).refusal_of(&Command::LoadDevices).is_none());
        assert!(as_role(Role::Auditor).refusal_of(&Command::StopWatch).is_none());
        assert!(as_role(Role::Auditor).refusal_of(&Command::Lock).is_none());
    }
}
