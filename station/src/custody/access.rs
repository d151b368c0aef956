//! Logging operators in (with guessing slowed down) and deciding whether they may do an
//! operation: their role, and for dual-control operations the approvals of the policy's number of
//! security officers, each an Ed25519 signature of the same statement.

use super::card::{CardAccess, CardError};
use super::operators::{Approval, CredentialError, LoggedIn, Statement};
use super::roles::{Operation, OperatorName, Role};
use super::unlock::Policy;
use crate::audit::pending;
use crate::audit::verify::SignerTrust;
use crate::db::{DbError, operators};
use sqlx::AnyPool;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Wrong passphrases in a row before logins are refused for a while.
pub const FREE_ATTEMPTS: i64 = 3;
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// How long logins are refused after `failed` wrong passphrases in a row: nothing for the first
/// few, then 30 s doubling up to 15 minutes.
pub fn backoff_after(failed: i64) -> Duration {
    if failed < FREE_ATTEMPTS {
        return Duration::ZERO;
    }
    let doublings = (failed - FREE_ATTEMPTS).min(10) as u32;
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoginError {
    #[error("there is no operator {0}: `keyfill operators list` shows who can log in")]
    Unknown(OperatorName),
    #[error("operator {0} was removed and can no longer log in")]
    Removed(OperatorName),
    #[error(
        "too many wrong passphrases for operator {name}: logins are refused for {seconds} more seconds (a security \
         officer can see the attempts in the audit log)"
    )]
    LockedOut { name: OperatorName, seconds: u64 },
    #[error(
        "wrong passphrase for operator {name} ({failed} in a row{})",
        if *locked_for > 0 { format!("; logins are refused for the next {locked_for} seconds") } else { String::new() }
    )]
    WrongPassphrase { name: OperatorName, failed: i64, locked_for: u64 },
    #[error(
        "operator {name} logs in with their card {token:?} too: insert it and give its PIN (--card-pin-file, \
         KEYFILL_CARD_PIN or a prompt; the app does not read cards yet)"
    )]
    CardRequired { name: OperatorName, token: String },
    #[error(
        "the card of operator {name} refused its PIN ({failed} failed logins in a row{})",
        if *locked_for > 0 { format!("; logins are refused for the next {locked_for} seconds") } else { String::new() }
    )]
    WrongCardPin { name: OperatorName, failed: i64, locked_for: u64 },
    #[error("the card of operator {name}: {source}")]
    Card { name: OperatorName, source: CardError },
    #[error(transparent)]
    Credential(CredentialError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Logs `name` in with `passphrase`: the record must be signed by a certified station and not
/// removed, logins must not be refused just now, and the passphrase must open the credential.
/// Failures are counted in the database and noted in the station home for the audit log.
pub async fn login(
    pool: &AnyPool,
    home: &Path,
    trust: &SignerTrust,
    name: &OperatorName,
    passphrase: &str,
) -> Result<LoggedIn, LoginError> {
    login_with_card(pool, home, trust, name, passphrase, None).await
}

/// As [`login`], with the operator's card when their record names one: the card must then sign
/// a fresh challenge with its PIN; a PIN it refuses counts as a wrong passphrase does.
pub async fn login_with_card(
    pool: &AnyPool,
    home: &Path,
    trust: &SignerTrust,
    name: &OperatorName,
    passphrase: &str,
    card: Option<&CardAccess>,
) -> Result<LoggedIn, LoginError> {
    let refuse = |reason: &str, error: LoginError| {
        pending::note_login(home, "login_failed", name.as_str(), reason);
        Err(error)
    };
    let Some(stored) = operators::find(pool, name).await? else {
        return refuse("no such operator", LoginError::Unknown(name.clone()));
    };
    if !stored.record.trusted(trust) {
        return refuse(
            "the operator's record is not signed by a station",
            LoginError::Credential(CredentialError::Untrusted(name.clone())),
        );
    }
    if !stored.record.active() {
        return refuse("the operator was removed", LoginError::Removed(name.clone()));
    }
    let now = crate::db::now_millis();
    if stored.locked_until > now {
        let seconds = ((stored.locked_until - now) as u64).div_ceil(1000);
        pending::note_login(home, "login_refused", name.as_str(), "too many wrong passphrases: refused untried");
        return Err(LoginError::LockedOut { name: name.clone(), seconds });
    }
    match LoggedIn::open(&stored.record, passphrase) {
        Ok(logged) => {
            if let Some(binding) = &stored.record.card {
                let Some(access) = card else {
                    let error = LoginError::CardRequired { name: name.clone(), token: binding.token.clone() };
                    return refuse("the operator's card was not presented", error);
                };
                match super::card::prove(name, binding, access) {
                    Ok(()) => {}
                    Err(error) if error.wrong_pin() => {
                        let (failed, until) = operators::note_failure(pool, name, now).await?;
                        let locked_for = ((until - now).max(0) as u64).div_ceil(1000);
                        let error = LoginError::WrongCardPin { name: name.clone(), failed, locked_for };
                        return refuse("the card refused its PIN", error);
                    }
                    Err(source) => {
                        return refuse(
                            "the card did not prove its key",
                            LoginError::Card { name: name.clone(), source },
                        );
                    }
                }
            }
            if stored.failed_logins > 0 {
                operators::clear_failures(pool, name).await?;
            }
            Ok(logged)
        }
        Err(CredentialError::WrongPassphrase(_)) => {
            let (failed, until) = operators::note_failure(pool, name, now).await?;
            let locked_for = ((until - now).max(0) as u64).div_ceil(1000);
            refuse("wrong passphrase", LoginError::WrongPassphrase { name: name.clone(), failed, locked_for })
        }
        Err(other) => refuse("the credential did not open", LoginError::Credential(other)),
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessError {
    #[error("{name} is {}: to {operation} takes {allowed}", article(role.as_str()))]
    Forbidden { name: OperatorName, role: Role, operation: Operation, allowed: String },
    #[error("{0} is not a security officer: only security officers approve dual-control operations")]
    NotAnOfficer(OperatorName),
    #[error("{0} was named twice: each approval is a different security officer's")]
    Twice(OperatorName),
    #[error(
        "to {operation} takes the approval of {need} security officers (dual control); {have} approved: name \
         another officer with --approver NAME (and --approver-passphrase-file)"
    )]
    DualControl { operation: Operation, need: usize, have: usize },
}

fn article(word: &str) -> String {
    let vowel = word.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {word}", if vowel { "an" } else { "a" })
}

/// What was decided: the approvals of a dual-control operation (none otherwise).
#[derive(Debug, Clone)]
pub struct Authorised {
    pub statement: Statement,
    pub approvals: Vec<Approval>,
}

impl Authorised {
    /// The audit entry's detail: the statement, who approved, and their signatures.
    pub fn detail(&self) -> String {
        let names: Vec<&str> = self.approvals.iter().map(|a| a.approver.as_str()).collect();
        let signatures: Vec<String> =
            self.approvals.iter().map(|a| format!("{}={}", a.approver, a.signature)).collect();
        format!(
            "{}: {}; approved by {} at {}; signatures {}",
            self.statement.operation,
            self.statement.subject,
            names.join(", "),
            self.statement.at,
            signatures.join(" ")
        )
    }
}

/// Whether `actor` may do `operation` on `subject`, with `approvers` besides for dual control.
/// The actor's own approval counts when the actor is a security officer.
pub fn authorise(
    operation: Operation,
    subject: &str,
    station_id: &str,
    actor: &LoggedIn,
    approvers: &[LoggedIn],
    policy: &Policy,
) -> Result<Authorised, AccessError> {
    if !operation.allowed_to(actor.role()) {
        let allowed: Vec<String> = operation.roles().iter().map(|role| article(role.as_str())).collect();
        return Err(AccessError::Forbidden {
            name: actor.name().clone(),
            role: actor.role(),
            operation,
            allowed: allowed.join(" or "),
        });
    }
    let statement = Statement {
        station_id: station_id.to_owned(),
        operation: operation.as_str().to_owned(),
        subject: subject.to_owned(),
        at: crate::db::now_millis(),
    };
    let mut seen = vec![actor.name()];
    for approver in approvers {
        if seen.contains(&approver.name()) {
            return Err(AccessError::Twice(approver.name().clone()));
        }
        seen.push(approver.name());
    }
    if !operation.needs_dual_control() {
        return Ok(Authorised { statement, approvals: Vec::new() });
    }
    let mut approvals = Vec::new();
    if actor.role() == Role::SecurityOfficer {
        approvals.push(actor.approve(&statement));
    }
    for approver in approvers {
        if approver.role() != Role::SecurityOfficer {
            return Err(AccessError::NotAnOfficer(approver.name().clone()));
        }
        approvals.push(approver.approve(&statement));
    }
    let need = usize::from(policy.approvals);
    if approvals.len() < need {
        return Err(AccessError::DualControl { operation, need, have: approvals.len() });
    }
    Ok(Authorised { statement, approvals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custody::operators::new_operator;

    fn logged(name: &str, role: Role) -> (crate::custody::OperatorRecord, LoggedIn) {
        let record = new_operator(&OperatorName::parse(name).unwrap(), role, "pw").unwrap();
        let logged = LoggedIn::open(&record, "pw").unwrap();
        (record, logged)
    }

    #[test]
    fn custody_dual_control_needs_the_policys_officers() {
        let policy = Policy::default();
        let (a_rec, a) = logged("anna", Role::SecurityOfficer);
        let (_, b) = logged("ben", Role::SecurityOfficer);
        let (_, s) = logged("sam", Role::Supervisor);
        let (_, o) = logged("olga", Role::Operator);
        let one = authorise(Operation::ManageOperators, "add x", "st", &a, &[], &policy);
        assert_eq!(
            one.unwrap_err(),
            AccessError::DualControl { operation: Operation::ManageOperators, need: 2, have: 1 }
        );
        let two = authorise(Operation::ManageOperators, "add x", "st", &a, std::slice::from_ref(&b), &policy).unwrap();
        assert_eq!(two.approvals.len(), 2);
        assert!(two.approvals[0].valid_for(&two.statement, &a_rec));
        assert!(two.detail().contains("approved by anna, ben"));
        // A supervisor exports a bundle with two officers' approval, not with one and their own.
        let export = authorise(Operation::ExportBundle, "b", "st", &s, std::slice::from_ref(&a), &policy);
        assert!(matches!(export, Err(AccessError::DualControl { have: 1, .. })));
        assert!(
            authorise(Operation::ExportBundle, "b", "st", &s, &[logged("anna", Role::SecurityOfficer).1, b], &policy)
                .is_ok()
        );
        assert!(matches!(
            authorise(Operation::ManageOperators, "x", "st", &a, std::slice::from_ref(&o), &policy),
            Err(AccessError::NotAnOfficer(_))
        ));
        let twice =
            authorise(Operation::ManageOperators, "x", "st", &a, &[logged("anna", Role::SecurityOfficer).1], &policy);
        assert!(matches!(twice, Err(AccessError::Twice(_))));
        let refused = authorise(Operation::Provision, "d", "st", &a, &[], &policy).unwrap_err();
        assert_eq!(refused.to_string(), "anna is a security-officer: to provision devices takes an operator");
    }

    #[test]
    fn custody_backoff_grows_and_is_bounded() {
        assert_eq!(backoff_after(1), Duration::ZERO);
        assert_eq!(backoff_after(2), Duration::ZERO);
        assert_eq!(backoff_after(3), Duration::from_secs(30));
        assert_eq!(backoff_after(4), Duration::from_secs(60));
        assert_eq!(backoff_after(1000), MAX_BACKOFF);
    }
}
