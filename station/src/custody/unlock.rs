//! How a station under named operators is unlocked. Its master key (or its token's PIN) is
//! protected by an unlock secret of 32 random bytes that no person knows; the home's
//! `custody.json` holds that secret wrapped to operators' X25519 keys with HPKE (RFC 9180,
//! the bundle's suite), under the station's custody policy:
//! - `unlock_quorum` 1: one wrap of the whole secret per operator; any operator's login unlocks;
//! - `unlock_quorum` M ≥ 2: the secret split with Shamir's scheme ([`super::split`]) among the
//!   security officers, each share wrapped to one; M officers' logins unlock.
//!
//! Wrapping needs only the operators' public keys, so an unlocked station wraps its secret for
//! operators added anywhere; and when an operator who held a wrap is removed, the station
//! changes its secret (see [`super::enable`]). The policy, the secret's check value and the
//! generation are signed by the station's signing key: an edited file is refused.

use super::operators::{LoggedIn, OperatorRecord};
use super::roles::{OperatorName, Role};
use super::split;
use crate::audit::AuditKey;
use crate::audit::verify::SignerTrust;
use crate::bundle::hpke_suite;
use crate::seal::{self, KeyCheckValue, SealedMasterKey};
use keyfill_formats::SecretKey;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;
use zeroize::Zeroizing;

pub const CUSTODY_FILE: &str = "custody.json";
const CHECK_LABEL: &[u8] = b"keyfill unlock secret check v1";
const WRAP_INFO: &[u8] = b"keyfill unlock wrap v1";
const POLICY_LABEL: &[u8] = b"keyfill custody policy v1\0";
/// The most approvals a policy may ask for.
pub const MAX_APPROVALS: u8 = 8;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum UnlockError {
    #[error(
        "the custody policy needs {need} security officers to unlock this station after a restart; {have} logged \
         in: name the others with --approver (and --approver-passphrase-file)"
    )]
    TooFewOfficers { need: usize, have: usize },
    #[error(
        "{0} holds no unlock wrap at this station yet: an operator added at another station can unlock this one \
         once this one has been unlocked by someone else (it then wraps its secret for every operator)"
    )]
    NoWrap(OperatorName),
    #[error("the unlock secret rebuilt from the wraps is not this station's: {0}")]
    WrongSecret(&'static str),
    #[error("{path} is not signed by this station's certified signing key: it was edited; restore it from a backup")]
    Untrusted { path: String },
    #[error("{path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
    #[error("I/O on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "a custody policy needs {need} security officers, and the station has {have}: add officers before asking \
         for more"
    )]
    NotEnoughOfficers { need: usize, have: usize },
    #[error("a policy asks for 2 to {MAX_APPROVALS} approvals and an unlock quorum of 1 to {MAX_APPROVALS}")]
    BadPolicy,
    #[error("cannot wrap the unlock secret: {0}")]
    Wrap(String),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error(transparent)]
    Split(#[from] split::SplitError),
}

/// The station's custody policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Security officers who approve a dual-control operation (M of N).
    pub approvals: u8,
    /// Operators who must log in to unlock the station after a restart: 1 (any operator), or M
    /// security officers.
    pub unlock_quorum: u8,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { approvals: 2, unlock_quorum: 1 }
    }
}

impl Policy {
    /// The security officers a station under this policy keeps at least: enough to approve and
    /// to unlock.
    pub fn officers_needed(self) -> usize {
        usize::from(self.approvals.max(self.unlock_quorum))
    }

    pub fn checked(self) -> Result<Self, UnlockError> {
        if (2..=MAX_APPROVALS).contains(&self.approvals) && (1..=MAX_APPROVALS).contains(&self.unlock_quorum) {
            Ok(self)
        } else {
            Err(UnlockError::BadPolicy)
        }
    }
}

/// 32 random bytes; the station's master-key passphrase (software custody) or token PIN is their
/// hex.
pub struct UnlockSecret(SecretKey);

impl std::fmt::Debug for UnlockSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnlockSecret(..)")
    }
}

impl UnlockSecret {
    pub fn generate() -> Result<Self, UnlockError> {
        Ok(UnlockSecret(seal::random_key()?))
    }

    /// What unlocks the home: the secret's hex.
    pub fn passphrase(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.expose()))
    }

    fn check(&self) -> KeyCheckValue {
        seal::check_value_with_label(&self.0, CHECK_LABEL)
    }
}

/// One operator's wrap: of the whole secret (`x` 0), or of the share `x`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wrap {
    pub operator: OperatorName,
    pub x: u8,
    pub enc: String,
    pub ciphertext: String,
}

/// `custody.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyFile {
    pub version: u32,
    pub station_id: String,
    pub policy: Policy,
    /// Grows at every change of the policy or the secret.
    pub generation: u64,
    /// The unlock secret's check value.
    pub check: String,
    /// Names the split of the secret's shares (quorum ≥ 2), in their wraps' associated data.
    pub split_id: String,
    pub wraps: Vec<Wrap>,
    /// The master key sealed under the secret (its hex), unless a token holds it (then the
    /// secret's hex is the token's PIN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_master: Option<SealedMasterKey>,
    pub signer: String,
    pub signature: String,
}

fn wrap_aad(station_id: &str, split_id: &str, operator: &OperatorName, x: u8, quorum: u8) -> Vec<u8> {
    let mut aad = Vec::new();
    for field in [station_id, split_id, operator.as_str()] {
        aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
        aad.extend_from_slice(field.as_bytes());
    }
    aad.extend_from_slice(&[x, quorum]);
    aad
}

impl CustodyFile {
    /// A custody file for `secret` under `policy`, wrapped for the active `operators`, signed
    /// by `key`.
    pub fn new(
        station_id: &str,
        policy: Policy,
        generation: u64,
        secret: &UnlockSecret,
        sealed_master: Option<SealedMasterKey>,
        operators: &[OperatorRecord],
        key: &AuditKey,
    ) -> Result<Self, UnlockError> {
        let policy = policy.checked()?;
        let mut file = CustodyFile {
            version: 1,
            station_id: station_id.to_owned(),
            policy,
            generation,
            check: secret.check().to_hex(),
            split_id: String::new(),
            wraps: Vec::new(),
            sealed_master,
            signer: String::new(),
            signature: String::new(),
        };
        let active: Vec<&OperatorRecord> = operators.iter().filter(|r| r.active()).collect();
        if policy.unlock_quorum <= 1 {
            for record in active {
                file.wraps.push(file.wrap(record, 0, secret.0.expose())?);
            }
        } else {
            let officers: Vec<&OperatorRecord> =
                active.into_iter().filter(|r| r.role == Role::SecurityOfficer).collect();
            let quorum = usize::from(policy.unlock_quorum);
            if officers.len() < quorum {
                return Err(UnlockError::NotEnoughOfficers { need: quorum, have: officers.len() });
            }
            if officers.len() > split::MAX_HOLDERS {
                return Err(split::SplitError::TooManyHolders(officers.len()).into());
            }
            file.split_id = hex::encode(seal::random_array::<16>()?);
            let shares = split::shares_of(&secret.0, quorum, officers.len())?;
            for (record, share) in officers.into_iter().zip(&shares) {
                file.wraps.push(file.wrap(record, share[0], share)?);
            }
        }
        file.signer = key.public_hex().to_owned();
        file.signature = hex::encode(key.sign(&file.signing_input()).map_err(|e| UnlockError::Wrap(e.to_string()))?);
        Ok(file)
    }

    fn wrap(&self, record: &OperatorRecord, x: u8, plaintext: &[u8]) -> Result<Wrap, UnlockError> {
        let public = record
            .unlock_public_key()
            .ok_or_else(|| UnlockError::Wrap(format!("the unlock key of {} is malformed", record.name)))?;
        let ikm = seal::random_array::<{ hpke_suite::IKM_LEN }>()?;
        let aad = wrap_aad(&self.station_id, &self.split_id, &record.name, x, self.policy.unlock_quorum);
        let sealed = hpke_suite::seal(&public, &ikm, WRAP_INFO, &aad, plaintext)
            .map_err(|e| UnlockError::Wrap(e.to_string()))?;
        Ok(Wrap {
            operator: record.name.clone(),
            x,
            enc: hex::encode(sealed.encapsulated_key),
            ciphertext: hex::encode(sealed.ciphertext),
        })
    }

    fn signing_input(&self) -> Vec<u8> {
        let mut out = POLICY_LABEL.to_vec();
        for field in [&self.station_id, &self.check, &self.split_id] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&[self.policy.approvals, self.policy.unlock_quorum]);
        out.extend_from_slice(&self.generation.to_be_bytes());
        out
    }

    /// Whether a key certified for this station signed the file's policy and check value.
    pub fn trusted(&self, trust: &SignerTrust) -> bool {
        let Some(public) = trust.public_key(&self.signer) else { return false };
        let Ok(signature) = <[u8; 64]>::try_from(hex::decode(&self.signature).unwrap_or_default().as_slice()) else {
            return false;
        };
        trust.station_of(&self.signer) == Some(self.station_id.as_str())
            && crate::bundle::signature_valid(&public, &self.signing_input(), &signature)
    }

    /// Operators who hold a wrap here.
    pub fn holders(&self) -> impl Iterator<Item = &OperatorName> {
        self.wraps.iter().map(|wrap| &wrap.operator)
    }

    /// The unlock secret, from the wraps of the operators logged in.
    pub fn open(&self, present: &[&LoggedIn]) -> Result<UnlockSecret, UnlockError> {
        let quorum = self.policy.unlock_quorum;
        let mut opened = Vec::new();
        for operator in present {
            let Some(wrap) = self.wraps.iter().find(|wrap| &wrap.operator == operator.name()) else { continue };
            if opened.iter().any(|(x, _): &(u8, Zeroizing<Vec<u8>>)| *x == wrap.x) {
                continue;
            }
            let enc: [u8; 32] = hex::decode(&wrap.enc)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or(UnlockError::WrongSecret("a wrap is malformed"))?;
            let ciphertext =
                hex::decode(&wrap.ciphertext).map_err(|_| UnlockError::WrongSecret("a wrap is malformed"))?;
            let aad = wrap_aad(&self.station_id, &self.split_id, &wrap.operator, wrap.x, quorum);
            let plaintext = hpke_suite::open(operator.unlock_key(), &enc, WRAP_INFO, &aad, &ciphertext)
                .map_err(|_| UnlockError::WrongSecret("a wrap does not open with its operator's key"))?;
            opened.push((wrap.x, plaintext));
            if quorum <= 1 {
                break;
            }
        }
        let secret = if quorum <= 1 {
            let Some((_, plaintext)) = opened.first() else {
                return Err(match present.first() {
                    Some(operator) => UnlockError::NoWrap(operator.name().clone()),
                    None => UnlockError::TooFewOfficers { need: 1, have: 0 },
                });
            };
            SecretKey::from_slice(plaintext).ok_or(UnlockError::WrongSecret("a wrap holds no key"))?
        } else {
            if opened.len() < usize::from(quorum) {
                return Err(UnlockError::TooFewOfficers { need: usize::from(quorum), have: opened.len() });
            }
            let shares: Vec<Zeroizing<Vec<u8>>> = opened.into_iter().map(|(_, share)| share).collect();
            split::combine(&shares)?
        };
        let secret = UnlockSecret(secret);
        if Some(secret.check()) != KeyCheckValue::from_hex(&self.check) {
            return Err(UnlockError::WrongSecret("its check value differs"));
        }
        Ok(secret)
    }

    pub fn read(home: &Path) -> Result<Option<Self>, UnlockError> {
        let path = home.join(CUSTODY_FILE);
        let shown = path.display().to_string();
        let bytes = match read_bounded(&path, 1 << 20) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(UnlockError::Io { path: shown, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| UnlockError::Malformed { path: shown, reason: error.to_string() })
    }

    pub fn write(&self, home: &Path) -> Result<(), UnlockError> {
        let path = home.join(CUSTODY_FILE);
        let text = serde_json::to_string_pretty(self)
            .map_err(|error| UnlockError::Malformed { path: path.display().to_string(), reason: error.to_string() })?;
        keyfill_agent::keystore::write_atomically(&path, text.as_bytes())
            .map_err(|source| UnlockError::Io { path: path.display().to_string(), source })
    }
}

/// At most `limit` bytes of `path`; a longer file is an error.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::custody::operators::new_operator;

    fn operator(name: &str, role: Role) -> (OperatorRecord, LoggedIn) {
        let record = new_operator(&OperatorName::parse(name).unwrap(), role, "pw").unwrap();
        let logged = LoggedIn::open(&record, "pw").unwrap();
        (record, logged)
    }

    #[test]
    fn custody_unlock_by_any_operator_or_by_a_quorum_of_officers() {
        let (key, root) = AuditKey::throwaway_with_root([3; 16]).unwrap();
        let rows = vec![crate::db::audit::SignerRow {
            public_key: key.public_hex().to_owned(),
            station_id: hex::encode([3u8; 16]),
            certificate: hex::encode(key.certificate().encode()),
        }];
        let trust = SignerTrust::from_rows(&rows, &root);
        let station = hex::encode([3u8; 16]);
        let (op_rec, op) = operator("olga", Role::Operator);
        let (a_rec, a) = operator("anna", Role::SecurityOfficer);
        let (b_rec, b) = operator("ben", Role::SecurityOfficer);
        let (c_rec, c) = operator("cleo", Role::SecurityOfficer);
        let records = [op_rec, a_rec, b_rec, c_rec];
        let secret = UnlockSecret::generate().unwrap();

        let any = CustodyFile::new(&station, Policy::default(), 1, &secret, None, &records, &key).unwrap();
        assert!(any.trusted(&trust));
        assert_eq!(*any.open(&[&op]).unwrap().passphrase(), *secret.passphrase());

        let dual = Policy { approvals: 2, unlock_quorum: 2 };
        let split = CustodyFile::new(&station, dual, 2, &secret, None, &records, &key).unwrap();
        assert_eq!(split.holders().count(), 3, "officers only");
        assert!(matches!(split.open(&[&a]), Err(UnlockError::TooFewOfficers { need: 2, have: 1 })));
        assert!(matches!(split.open(&[&op, &a]), Err(UnlockError::TooFewOfficers { .. })));
        for pair in [[&a, &b], [&b, &c], [&c, &a]] {
            assert_eq!(*split.open(&pair).unwrap().passphrase(), *secret.passphrase());
        }
        let mut lowered = split.clone();
        lowered.policy.unlock_quorum = 1;
        assert!(!lowered.trusted(&trust));
        let too_many = Policy { approvals: 2, unlock_quorum: 4 };
        assert!(matches!(
            CustodyFile::new(&station, too_many, 3, &secret, None, &records, &key),
            Err(UnlockError::NotEnoughOfficers { need: 4, have: 3 })
        ));
    }
}
