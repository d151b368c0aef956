//! Operators' records and credentials. An operator holds two keys of their own: an Ed25519 key
//! that signs their approvals, and an X25519 key to which stations wrap their unlock secret
//! ([`super::unlock`]). Both are generated at random and sealed together under the operator's
//! passphrase (the code base's one passphrase construction, bound to the name); logging in is
//! opening them. The record (name, role, public keys, sealed credential, removal) is signed by
//! the signing key of the station that wrote it, certified by the factory root, so that a row
//! written into the database by anyone else is refused.

use super::roles::{OperatorName, Role};
use crate::audit::AuditKey;
use crate::audit::verify::SignerTrust;
use crate::seal::{self, SealError, SealedMasterKey};
use keyfill_formats::SecretKey;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

const CREDENTIAL_AAD: &[u8] = b"keyfill operator credential v1\0";
const RECORD_LABEL: &[u8] = b"keyfill operator record v1\0";
const APPROVAL_LABEL: &[u8] = b"keyfill approval v1\0";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CredentialError {
    #[error("wrong passphrase for operator {0}")]
    WrongPassphrase(OperatorName),
    #[error("the credential of operator {0} is malformed")]
    Malformed(OperatorName),
    #[error(
        "the record of operator {0} is not signed by a station of this factory root: it was written or changed in \
         the database by something other than a station; a security officer must remove and add the operator again"
    )]
    Untrusted(OperatorName),
    #[error("the new passphrase is empty")]
    EmptyPassphrase,
    #[error(transparent)]
    Seal(SealError),
    #[error("cannot sign: {0}")]
    Signing(String),
}

/// An operator as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: OperatorName,
    pub role: Role,
    /// Ed25519, hex.
    pub signing_public: String,
    /// X25519, hex.
    pub unlock_public: String,
    /// The sealed credential, as JSON.
    pub credential: String,
    /// The smart card the operator also proves at login, if any.
    pub card: Option<super::card::CardBinding>,
    /// When the operator was removed (ms since the epoch); removed operators cannot log in.
    pub removed_at: Option<i64>,
    pub changed_at: i64,
    /// The key (hex) of the station that signed the record, and its signature (hex).
    pub signer: String,
    pub signature: String,
}

fn length_prefixed(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u32).to_be_bytes());
    out.extend_from_slice(field);
}

impl OperatorRecord {
    /// What the station signs: every field but the signature, length-prefixed.
    pub fn signing_input(&self) -> Vec<u8> {
        let mut out = RECORD_LABEL.to_vec();
        for field in [
            self.name.as_str(),
            self.role.as_str(),
            &self.signing_public,
            &self.unlock_public,
            &self.credential,
            &self.card_json(),
            &self.signer,
        ] {
            length_prefixed(&mut out, field.as_bytes());
        }
        out.extend_from_slice(&self.removed_at.unwrap_or(-1).to_be_bytes());
        out.extend_from_slice(&self.changed_at.to_be_bytes());
        out
    }

    /// Signs the record with the station's key (setting its signer).
    pub fn sign(&mut self, key: &AuditKey) -> Result<(), CredentialError> {
        self.signer = key.public_hex().to_owned();
        let signature = key.sign(&self.signing_input()).map_err(|e| CredentialError::Signing(e.to_string()))?;
        self.signature = hex::encode(signature);
        Ok(())
    }

    /// Whether a station's key certified by the factory root signed the record as it is.
    pub fn trusted(&self, trust: &SignerTrust) -> bool {
        let Some(public) = trust.public_key(&self.signer) else { return false };
        let Ok(signature) = <[u8; 64]>::try_from(hex::decode(&self.signature).unwrap_or_default().as_slice()) else {
            return false;
        };
        crate::bundle::signature_valid(&public, &self.signing_input(), &signature)
    }

    /// The card binding as stored (JSON), empty without a card.
    pub fn card_json(&self) -> String {
        self.card.as_ref().and_then(|card| serde_json::to_string(card).ok()).unwrap_or_default()
    }

    pub fn active(&self) -> bool {
        self.removed_at.is_none()
    }

    pub fn unlock_public_key(&self) -> Option<[u8; 32]> {
        hex::decode(&self.unlock_public).ok()?.try_into().ok()
    }

    pub fn signing_public_key(&self) -> Option<[u8; 32]> {
        hex::decode(&self.signing_public).ok()?.try_into().ok()
    }
}

/// A new operator's keys, sealed under their passphrase, and the record that names them
/// (unsigned: the station signs it when it stores it).
pub fn new_operator(name: &OperatorName, role: Role, passphrase: &str) -> Result<OperatorRecord, CredentialError> {
    let secrets = Zeroizing::new(seal::random_array::<64>().map_err(CredentialError::Seal)?);
    let (signing, unlock) = keys_of(name, &secrets)?;
    let sealed = seal_credential(name, &secrets, passphrase)?;
    Ok(OperatorRecord {
        name: name.clone(),
        role,
        signing_public: hex::encode(signing.public_key().as_ref()),
        unlock_public: hex::encode(crate::bundle::hpke_suite::public_key(&unlock)),
        credential: sealed,
        card: None,
        removed_at: None,
        changed_at: crate::db::now_millis(),
        signer: String::new(),
        signature: String::new(),
    })
}

fn seal_credential(name: &OperatorName, secrets: &[u8; 64], passphrase: &str) -> Result<String, CredentialError> {
    if passphrase.is_empty() {
        return Err(CredentialError::EmptyPassphrase);
    }
    let sealed = seal::seal_secret_under_passphrase(secrets, passphrase, &credential_aad(name))
        .map_err(CredentialError::Seal)?;
    serde_json::to_string(&sealed).map_err(|_| CredentialError::Malformed(name.clone()))
}

fn credential_aad(name: &OperatorName) -> Vec<u8> {
    let mut aad = CREDENTIAL_AAD.to_vec();
    aad.extend_from_slice(name.as_str().as_bytes());
    aad
}

fn keys_of(name: &OperatorName, secrets: &[u8; 64]) -> Result<(Ed25519KeyPair, SecretKey), CredentialError> {
    let signing =
        Ed25519KeyPair::from_seed_unchecked(&secrets[..32]).map_err(|_| CredentialError::Malformed(name.clone()))?;
    let unlock = SecretKey::from_slice(&secrets[32..]).ok_or_else(|| CredentialError::Malformed(name.clone()))?;
    Ok((signing, unlock))
}

/// An operator who proved their passphrase.
pub struct LoggedIn {
    pub record: OperatorRecord,
    signing: Ed25519KeyPair,
    unlock: SecretKey,
    secrets: Zeroizing<[u8; 64]>,
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn").field("name", &self.record.name).field("role", &self.record.role).finish()
    }
}

impl LoggedIn {
    /// Opens the operator's credential with `passphrase`, and checks that it holds the keys
    /// the record names.
    pub fn open(record: &OperatorRecord, passphrase: &str) -> Result<LoggedIn, CredentialError> {
        let name = &record.name;
        let sealed: SealedMasterKey =
            serde_json::from_str(&record.credential).map_err(|_| CredentialError::Malformed(name.clone()))?;
        let opened =
            seal::open_secret_under_passphrase(&sealed, passphrase, &credential_aad(name)).map_err(|e| match e {
                SealError::WrongPassphrase | SealError::EmptyPassphrase => {
                    CredentialError::WrongPassphrase(name.clone())
                }
                SealError::Malformed => CredentialError::Malformed(name.clone()),
                other => CredentialError::Seal(other),
            })?;
        let secrets: Zeroizing<[u8; 64]> =
            Zeroizing::new(opened.as_slice().try_into().map_err(|_| CredentialError::Malformed(name.clone()))?);
        let (signing, unlock) = keys_of(name, &secrets)?;
        if hex::encode(signing.public_key().as_ref()) != record.signing_public
            || hex::encode(crate::bundle::hpke_suite::public_key(&unlock)) != record.unlock_public
        {
            return Err(CredentialError::Malformed(name.clone()));
        }
        Ok(LoggedIn { record: record.clone(), signing, unlock, secrets })
    }

    pub fn name(&self) -> &OperatorName {
        &self.record.name
    }

    pub fn role(&self) -> Role {
        self.record.role
    }

    pub(crate) fn unlock_key(&self) -> &SecretKey {
        &self.unlock
    }

    /// The same keys sealed under a new passphrase: a record to sign and store.
    pub fn with_new_passphrase(&self, passphrase: &str) -> Result<OperatorRecord, CredentialError> {
        let mut record = self.record.clone();
        record.credential = seal_credential(&record.name, &self.secrets, passphrase)?;
        record.changed_at = crate::db::now_millis();
        Ok(record)
    }

    /// This operator's approval of `statement` ([`approval_message`]).
    pub fn approve(&self, statement: &Statement) -> Approval {
        let signature = self.signing.sign(&statement.message());
        Approval { approver: self.record.name.clone(), signature: hex::encode(signature.as_ref()) }
    }
}

/// What officers approve: an operation on a station at a time, with what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub station_id: String,
    pub operation: String,
    pub subject: String,
    pub at: i64,
}

impl Statement {
    /// What each approver signs with Ed25519: a label, then the fields length-prefixed.
    pub fn message(&self) -> Vec<u8> {
        let mut out = APPROVAL_LABEL.to_vec();
        for field in [&self.station_id, &self.operation, &self.subject] {
            length_prefixed(&mut out, field.as_bytes());
        }
        out.extend_from_slice(&self.at.to_be_bytes());
        out
    }
}

/// An approver's signature of a [`Statement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approver: OperatorName,
    pub signature: String,
}

impl Approval {
    /// Whether the approver of `record` signed `statement`.
    pub fn valid_for(&self, statement: &Statement, record: &OperatorRecord) -> bool {
        let (Some(public), Ok(signature)) = (
            record.signing_public_key(),
            <[u8; 64]>::try_from(hex::decode(&self.signature).unwrap_or_default().as_slice()),
        ) else {
            return false;
        };
        self.approver == record.name && crate::bundle::signature_valid(&public, &statement.message(), &signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> OperatorName {
        OperatorName::parse(text).expect("a name")
    }

    #[test]
    fn custody_credential_opens_with_its_passphrase_only() {
        let record = new_operator(&name("alice"), Role::Operator, "correct horse").expect("created");
        let alice = LoggedIn::open(&record, "correct horse").expect("opens");
        assert_eq!(alice.role(), Role::Operator);
        assert!(matches!(LoggedIn::open(&record, "wrong"), Err(CredentialError::WrongPassphrase(_))));
        // The credential is bound to its name: moved to another record it does not open.
        let mut moved = new_operator(&name("mallory"), Role::SecurityOfficer, "x").expect("created");
        moved.credential = record.credential.clone();
        moved.signing_public = record.signing_public.clone();
        moved.unlock_public = record.unlock_public.clone();
        assert!(LoggedIn::open(&moved, "correct horse").is_err());
        assert!(!format!("{alice:?}").contains(&hex::encode(&alice.secrets[..])));
        let renewed = alice.with_new_passphrase("battery staple").expect("resealed");
        assert!(LoggedIn::open(&renewed, "battery staple").is_ok());
        assert!(LoggedIn::open(&renewed, "correct horse").is_err());
    }

    #[test]
    fn custody_records_signed_by_a_certified_station_only() {
        let (key, root) = AuditKey::throwaway_with_root([7; 16]).expect("key");
        let mut record = new_operator(&name("bob"), Role::Supervisor, "pw").expect("created");
        record.sign(&key).expect("signed");
        let rows = vec![crate::db::audit::SignerRow {
            public_key: key.public_hex().to_owned(),
            station_id: hex::encode([7u8; 16]),
            certificate: hex::encode(key.certificate().encode()),
        }];
        let trust = SignerTrust::from_rows(&rows, &root);
        assert!(record.trusted(&trust));
        let mut promoted = record.clone();
        promoted.role = Role::SecurityOfficer;
        assert!(!promoted.trusted(&trust));
        let mut revived = record.clone();
        revived.removed_at = Some(1);
        assert!(!revived.trusted(&trust));
        assert!(!record.trusted(&SignerTrust::from_rows(&rows, &[9; 32])));
    }

    #[test]
    fn custody_approvals_are_signatures_of_the_statement() {
        let record = new_operator(&name("carol"), Role::SecurityOfficer, "pw").expect("created");
        let other = new_operator(&name("dave"), Role::SecurityOfficer, "pw").expect("created");
        let carol = LoggedIn::open(&record, "pw").expect("opens");
        let statement = Statement { station_id: "s".into(), operation: "add".into(), subject: "erin".into(), at: 5 };
        let approval = carol.approve(&statement);
        assert!(approval.valid_for(&statement, &record));
        assert!(!approval.valid_for(&Statement { subject: "mallory".into(), ..statement.clone() }, &record));
        assert!(!approval.valid_for(&statement, &other));
    }
}
