//! Who may do what: the operators' names and roles, the operations of a station, and which role
//! does each and which need the approval of several security officers (dual control).

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// The most bytes of an operator's name.
pub const MAX_NAME_LEN: usize = 32;

/// An operator's name, checked once here: 1 to 32 ASCII letters, digits, `.`, `_` or `-`,
/// beginning with a letter or digit; so it is safe in a log line, a file and a prompt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct OperatorName(String);

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    #[error("an operator's name is empty")]
    Empty,
    #[error("an operator's name has at most {MAX_NAME_LEN} characters")]
    TooLong,
    #[error(
        "an operator's name is made of ASCII letters, digits, '.', '_' and '-', and begins with a letter or digit; \
         the character U+{code:04X} at position {at} is not"
    )]
    Invalid { at: usize, code: u32 },
}

impl OperatorName {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        if text.is_empty() {
            return Err(NameError::Empty);
        }
        if text.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        // The character is named by its code point, not quoted: the text may hold control characters.
        let allowed = |(at, c): &(usize, char)| c.is_ascii_alphanumeric() || (*at > 0 && matches!(c, '.' | '_' | '-'));
        if let Some((at, c)) = text.chars().enumerate().find(|pair| !allowed(pair)) {
            return Err(NameError::Invalid { at, code: u32::from(c) });
        }
        Ok(OperatorName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl<'de> Deserialize<'de> for OperatorName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OperatorName::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An operator's role. Roles do not include one another: each does its own operations, so that
/// the duties stay separate (a security officer does not key devices, an operator does not
/// export keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Keys devices on the line: provision, reconcile, print labels.
    Operator,
    /// Runs the line's work: rotation, export, work orders, abandoning devices, sync.
    Supervisor,
    /// Holds the keys' custody: station set-up, the factory root and token, operators, policy.
    SecurityOfficer,
    /// Reads: verifies and exports the audit log.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Operator, Role::Supervisor, Role::SecurityOfficer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::SecurityOfficer => "security-officer",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a station does on someone's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Provision,
    Reconcile,
    PrintLabels,
    Rotate,
    ExportToC2,
    ExportBundle,
    ManageOrders,
    Abandon,
    Sync,
    CheckKeys,
    /// Create a station, or take one to named operators.
    InitStation,
    /// The factory root and the token: share the master key, move it into a token, enrol a
    /// signing key.
    FactoryRootOrToken,
    ManageOperators,
    ChangePolicy,
    VerifyAudit,
    ExportAudit,
    /// Write a signed checkpoint of the audit log.
    CheckpointAudit,
    /// Read the inventory, orders, stations and operators.
    Inspect,
    /// Change one's own passphrase.
    ChangeOwnPassphrase,
}

impl Operation {
    pub const ALL: [Operation; 19] = [
        Operation::Provision,
        Operation::Reconcile,
        Operation::PrintLabels,
        Operation::Rotate,
        Operation::ExportToC2,
        Operation::ExportBundle,
        Operation::ManageOrders,
        Operation::Abandon,
        Operation::Sync,
        Operation::CheckKeys,
        Operation::InitStation,
        Operation::FactoryRootOrToken,
        Operation::ManageOperators,
        Operation::ChangePolicy,
        Operation::VerifyAudit,
        Operation::ExportAudit,
        Operation::CheckpointAudit,
        Operation::Inspect,
        Operation::ChangeOwnPassphrase,
    ];

    /// The roles that may ask for it.
    pub fn roles(self) -> &'static [Role] {
        use Operation::*;
        match self {
            Provision | Reconcile | PrintLabels => &[Role::Operator],
            Rotate | ExportToC2 | ExportBundle | ManageOrders | Abandon | Sync | CheckKeys => &[Role::Supervisor],
            InitStation | FactoryRootOrToken | ManageOperators | ChangePolicy => &[Role::SecurityOfficer],
            VerifyAudit | ExportAudit | CheckpointAudit => &[Role::Auditor],
            Inspect | ChangeOwnPassphrase => &Role::ALL,
        }
    }

    /// Whether the policy's number of security officers must approve it besides.
    pub fn needs_dual_control(self) -> bool {
        use Operation::*;
        matches!(self, InitStation | FactoryRootOrToken | ManageOperators | ChangePolicy | ExportBundle)
    }

    pub fn allowed_to(self, role: Role) -> bool {
        self.roles().contains(&role)
    }

    /// How the operation is named in approvals and messages.
    pub fn as_str(self) -> &'static str {
        use Operation::*;
        match self {
            Provision => "provision devices",
            Reconcile => "reconcile devices",
            PrintLabels => "print labels",
            Rotate => "rotate keys",
            ExportToC2 => "export keys to C2",
            ExportBundle => "export a key bundle",
            ManageOrders => "manage work orders",
            Abandon => "abandon devices",
            Sync => "sync to the factory database",
            CheckKeys => "check the keys",
            InitStation => "initialise the station's custody",
            FactoryRootOrToken => "use the factory root, master key or token",
            ManageOperators => "add or remove operators",
            ChangePolicy => "change the custody policy",
            VerifyAudit => "verify the audit log",
            ExportAudit => "export the audit log",
            CheckpointAudit => "checkpoint the audit log",
            Inspect => "inspect the station",
            ChangeOwnPassphrase => "change one's passphrase",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custody_names_are_checked_once() {
        for good in ["alice", "a", "Bob.Smith", "op_7-night", &"x".repeat(MAX_NAME_LEN)] {
            assert!(OperatorName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-alice", ".x", "al ice", "al/ice", "éve", "a\u{1b}[31m", &"x".repeat(MAX_NAME_LEN + 1)] {
            assert!(OperatorName::parse(bad).is_err(), "{bad:?}");
        }
        let error = OperatorName::parse("a\u{1b}b").unwrap_err().to_string();
        assert!(!error.contains('\u{1b}') && error.contains("U+001B at position 1"), "{error}");
        // Padded in tables, as a string is.
        assert_eq!(format!("{:<6}|{:<10}|", OperatorName::parse("ann").unwrap(), Role::Auditor), "ann   |auditor   |");
    }

    #[test]
    fn custody_each_role_has_its_own_operations() {
        let only = |role: Role| -> Vec<Operation> {
            Operation::ALL.into_iter().filter(|op| op.allowed_to(role) && *op != Operation::Inspect).collect()
        };
        use Operation::*;
        assert_eq!(only(Role::Operator), [Provision, Reconcile, PrintLabels, ChangeOwnPassphrase]);
        assert_eq!(
            only(Role::Supervisor),
            [Rotate, ExportToC2, ExportBundle, ManageOrders, Abandon, Sync, CheckKeys, ChangeOwnPassphrase]
        );
        assert_eq!(
            only(Role::SecurityOfficer),
            [InitStation, FactoryRootOrToken, ManageOperators, ChangePolicy, ChangeOwnPassphrase]
        );
        assert_eq!(only(Role::Auditor), [VerifyAudit, ExportAudit, CheckpointAudit, ChangeOwnPassphrase]);
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
