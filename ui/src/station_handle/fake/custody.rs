//! Named operators, as the real station's custody checks them: logging in (each name and
//! passphrase, the unlock quorum's security officers), the role of each command, and the
//! security officers' approval of a bundle export (dual control). Wrong passphrases are
//! refused with the library's own errors, without counting or lock-out.

use super::{FakeControl, FakeState};
use crate::custody::Access;
use crate::messages::{BundleRequest, Command, Credential, CustodySummary, Event, LoginRequest, SignedIn};
use crate::problem::Problem;
use keyfill_station::custody::access::{AccessError, LoginError};
use keyfill_station::custody::enable::CustodyError;
use keyfill_station::custody::unlock::UnlockError;
use keyfill_station::custody::{Operation, OperatorName, Role};

#[derive(Debug, Clone)]
pub struct FakeOperator {
    pub name: String,
    pub role: Role,
    pub passphrase: String,
}

impl FakeOperator {
    pub fn new(name: &str, role: Role, passphrase: &str) -> Self {
        FakeOperator { name: name.to_owned(), role, passphrase: passphrase.to_owned() }
    }
}

#[derive(Debug, Clone)]
pub struct FakeCustody {
    pub policy: CustodySummary,
    pub operators: Vec<FakeOperator>,
}

impl FakeState {
    /// The station with named operators under `policy`: its summary says so, and it unlocks
    /// only from logins.
    pub fn with_named_operators(mut self, policy: CustodySummary, operators: Vec<FakeOperator>) -> Self {
        self.summary.custody = Some(policy);
        self.custody = Some(FakeCustody { policy, operators });
        self
    }

    fn check(&self, credential: &Credential) -> Result<SignedIn, Problem> {
        let custody = self.custody.as_ref().ok_or_else(Problem::locked)?;
        let name = OperatorName::parse(&credential.name)
            .map_err(|error| Problem::new(format!("{error}."), "Type the operator's name as it was given."))?;
        let Some(operator) = custody.operators.iter().find(|o| o.name == credential.name) else {
            return Err(Problem::login(&LoginError::Unknown(name)));
        };
        if operator.passphrase != credential.passphrase.expose() {
            return Err(Problem::login(&LoginError::WrongPassphrase { name, failed: 1, locked_for: 0 }));
        }
        Ok(SignedIn { name: operator.name.clone(), role: operator.role })
    }
}

fn operator_name(text: &str) -> OperatorName {
    OperatorName::parse(text).expect("a name checked at login")
}

impl FakeControl {
    /// Why the logged-in role may not give `command`, if it may not.
    pub(super) fn refusal(&self, command: &Command) -> Option<Problem> {
        let actor = self.with(|state| state.actor.clone())?;
        let operation = crate::custody::operation_of(command)?;
        let custody = self.with(|state| state.summary.custody)?;
        Access::of_actor(actor.clone(), custody).refusal(operation)?;
        let article = |role: &Role| {
            let word = role.as_str();
            if word.starts_with(['a', 'e', 'i', 'o', 'u']) { format!("an {word}") } else { format!("a {word}") }
        };
        let allowed: Vec<String> = operation.roles().iter().map(article).collect();
        Some(Problem::access(&AccessError::Forbidden {
            name: operator_name(&actor.name),
            role: actor.role,
            operation,
            allowed: allowed.join(" or "),
        }))
    }

    pub(super) fn login(&self, request: &LoginRequest) {
        let outcome = self.with(|state| -> Result<SignedIn, Problem> {
            let Some(custody) = state.custody.clone() else {
                return Err(Problem::new(
                    "This station has no named operators.",
                    "Unlock it with the master-key passphrase.",
                ));
            };
            let actor = state.check(&request.operator)?;
            let mut present = vec![actor.clone()];
            for approver in &request.approvers {
                present.push(state.check(approver)?);
            }
            let quorum = usize::from(custody.policy.unlock_quorum);
            if quorum >= 2 {
                let officers = present.iter().filter(|o| o.role == Role::SecurityOfficer).count();
                if officers < quorum {
                    let error = UnlockError::TooFewOfficers { need: quorum, have: officers };
                    return Err(Problem::custody(&CustodyError::Unlock(error)));
                }
            }
            state.actor = Some(actor.clone());
            for operator in &present {
                state.record(None, "login", format!("{} logged in as {}", operator.name, operator.role));
            }
            Ok(actor)
        });
        match outcome {
            Ok(actor) => {
                self.send(Event::LoggedIn(actor));
                self.send(Event::Unlocked);
            }
            Err(problem) => self.send(Event::UnlockFailed(problem)),
        }
    }

    /// At a station with named operators, whether the officers approve `request`; when they do
    /// not, the dialog is told why.
    pub(super) fn approved(&self, request: &BundleRequest) -> bool {
        let outcome = self.with(|state| -> Result<(), Problem> {
            let (Some(custody), Some(actor)) = (state.custody.clone(), state.actor.clone()) else { return Ok(()) };
            let mut approvals = Vec::new();
            if actor.role == Role::SecurityOfficer {
                approvals.push(actor.name.clone());
            }
            for approver in &request.approvers {
                let officer = state.check(approver)?;
                if officer.name == actor.name || approvals.contains(&officer.name) {
                    return Err(Problem::access(&AccessError::Twice(operator_name(&officer.name))));
                }
                if officer.role != Role::SecurityOfficer {
                    return Err(Problem::access(&AccessError::NotAnOfficer(operator_name(&officer.name))));
                }
                approvals.push(officer.name);
            }
            let need = usize::from(custody.policy.approvals);
            if approvals.len() < need {
                let operation = Operation::ExportBundle;
                return Err(Problem::access(&AccessError::DualControl { operation, need, have: approvals.len() }));
            }
            let detail =
                format!("{}: {}; approved by {}", Operation::ExportBundle, request.subject(), approvals.join(", "));
            state.record(None, "dual_control_approved", detail);
            Ok(())
        });
        match outcome {
            Ok(()) => true,
            Err(problem) => {
                self.send(Event::ApprovalRefused { command: "export_bundle", problem });
                false
            }
        }
    }
}
