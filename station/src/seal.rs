//! Sealing secrets at rest: AES-256-GCM (ring) under a master key, which is itself sealed under
//! a key derived from the operator passphrase with PBKDF2-HMAC-SHA256.

use keyfill_formats::{DeviceId, SecretKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{hmac, pbkdf2};
use serde::{Deserialize, Serialize};
use std::num::NonZeroU32;
use thiserror::Error;
use zeroize::Zeroizing;

/// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
pub const PBKDF2_ITERATIONS: u32 = 600_000;
const MASTER_KEY_AAD: &[u8] = b"keyfill master key v1";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("wrong passphrase, or the sealed master key was altered")]
    WrongPassphrase,
    #[error("sealed data failed authentication (altered, or sealed under another master key)")]
    Unauthentic,
    /// A device's sealed secret did not open: the row was altered, or it belongs to another
    /// station's master key. The name is the device's own text, escaped where it is printed.
    #[error(
        "the {secret} of device \"{name}\" (id {device_id}) failed authentication: its database row was \
         altered, or it was sealed under another station's master key (a database from another station, or a \
         station home that is not this database's); restore the database from a backup of this station, or use \
         it with the station home it belongs to"
    )]
    DeviceSecretUnauthentic { secret: SealedSecret, device_id: String, name: String },
    #[error("sealed data is malformed")]
    Malformed,
    #[error("the system random source failed")]
    Random,
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The token holding the master key failed (removed, logged out, out of sessions).
    #[error("the master key's token failed: {0}")]
    Token(String),
    #[error(
        "this station's master key is held by its token and never leaves it: it cannot be sealed under a passphrase \
         or shared as a file (stations sharing a database share the token, a network HSM)"
    )]
    InToken,
}

/// Fills an array from ring's system random source.
pub fn random_array<const N: usize>() -> Result<[u8; N], SealError> {
    let mut out = [0u8; N];
    SystemRandom::new().fill(&mut out).map_err(|_| SealError::Random)?;
    Ok(out)
}

/// A fresh random 32-byte key.
pub fn random_key() -> Result<SecretKey, SealError> {
    let bytes = Zeroizing::new(random_array::<32>()?);
    Ok(SecretKey::from_bytes(*bytes))
}

/// Where the station's new device keys come from. The station uses [`SystemKeys`]; a test may
/// put a source in its place that repeats itself, to show that a duplicate key is refused.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    fn new_key(&self) -> Result<SecretKey, SealError>;
}

/// Keys from the system random source ([`random_key`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemKeys;

impl KeySource for SystemKeys {
    fn new_key(&self) -> Result<SecretKey, SealError> {
        random_key()
    }
}

const KEY_CHECK_LABEL: &[u8] = b"keyfill key check value v1";
const MASTER_CHECK_LABEL: &[u8] = b"keyfill master key check v1";

/// A key check value: HMAC-SHA-256 (RFC 2104) keyed with the key over a fixed label, its first
/// 16 bytes. One-way: it tells whether two keys are equal, never what a key is. 128 bits make an
/// accidental collision between distinct keys negligible however large the fleet (a 5-byte KCV,
/// as payment terminals print, would collide among a million keys with even odds), so two
/// keys with one check value are one key twice: a failing random source, a cloned station, a
/// replayed bundle.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyCheckValue(pub [u8; 16]);

impl KeyCheckValue {
    pub fn of(key: &SecretKey) -> Self {
        Self::with_label(key, KEY_CHECK_LABEL)
    }

    fn with_label(key: &SecretKey, label: &[u8]) -> Self {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.expose()), label);
        let mut value = [0u8; 16];
        value.copy_from_slice(&tag.as_ref()[..16]);
        KeyCheckValue(value)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text).ok()?.try_into().ok().map(KeyCheckValue)
    }
}

impl std::fmt::Display for KeyCheckValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for KeyCheckValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyCheckValue({})", self.to_hex())
    }
}

fn aead_key(key: &SecretKey) -> Result<LessSafeKey, SealError> {
    UnboundKey::new(&AES_256_GCM, key.expose()).map(LessSafeKey::new).map_err(|_| SealError::Malformed)
}

/// `nonce ‖ ciphertext ‖ tag`, with a random 96-bit nonce.
fn seal_with(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let nonce_bytes = random_array::<NONCE_LEN>()?;
    let mut buffer = plaintext.to_vec();
    aead_key(key)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), Aad::from(aad), &mut buffer)
        .map_err(|_| SealError::Malformed)?;
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&buffer);
    Ok(out)
}

fn open_with(key: &SecretKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let plaintext_len =
        aead_key(key)?.open_in_place(nonce, Aad::from(aad), &mut buffer).map_err(|_| SealError::Unauthentic)?.len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

/// The key that seals every secret in the inventory. Never stored unsealed: either sealed
/// under a passphrase in the station home, or held by a PKCS#11 token that seals and opens with
/// it ([`crate::hsm`]) and never lets it out.
pub struct MasterKey(Custody);

enum Custody {
    Software(SecretKey),
    /// The token's key, and its check value as recorded when the key was made or moved there.
    Token {
        key: crate::hsm::TokenKey,
        check: KeyCheckValue,
    },
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Custody::Software(_) => f.write_str("MasterKey(<redacted>)"),
            Custody::Token { key, .. } => write!(f, "MasterKey({key:?})"),
        }
    }
}

/// Fewest PBKDF2 iterations a sealed key file may ask for: fewer would make a guessed passphrase
/// cheap to test.
const MIN_PBKDF2_ITERATIONS: u32 = 100_000;
/// Most PBKDF2 iterations a sealed key file may ask for (about 17 times what Keyfill writes, some
/// seconds of CPU): an edited file must not hold the station for hours at unlock.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// The master key sealed under the passphrase; stored as JSON in the station home.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedMasterKey {
    pub version: u32,
    pub kdf: String,
    pub iterations: u32,
    pub salt: String,
    pub sealed: String,
}

fn passphrase_key(passphrase: &str, salt: &[u8], iterations: u32) -> Result<SecretKey, SealError> {
    let iterations = NonZeroU32::new(iterations).ok_or(SealError::Malformed)?;
    let mut derived = Zeroizing::new([0u8; 32]);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, passphrase.as_bytes(), derived.as_mut());
    Ok(SecretKey::from_bytes(*derived))
}

impl MasterKey {
    pub fn generate() -> Result<Self, SealError> {
        Ok(MasterKey(Custody::Software(random_key()?)))
    }

    /// The master key held by a token, with the check value recorded for it.
    pub fn in_token(key: crate::hsm::TokenKey, check: KeyCheckValue) -> Self {
        MasterKey(Custody::Token { key, check })
    }

    /// The check value of a master key made in a token: AES-CMAC (NIST SP 800-38B) of the
    /// check label, computed by the token, 16 bytes. (A key moved into a token keeps the value
    /// it had.)
    pub fn token_check_value(key: &crate::hsm::TokenKey) -> Result<KeyCheckValue, SealError> {
        key.cmac(MASTER_CHECK_LABEL).map(KeyCheckValue).map_err(|e| SealError::Token(e.to_string()))
    }

    /// Moves this master key into `token` as a key that never leaves it, under `label`. The
    /// sealed secrets stay as they are: the token seals and opens them alike.
    pub fn move_into_token(
        &self,
        token: &std::sync::Arc<crate::hsm::Token>,
        label: &str,
    ) -> Result<MasterKey, SealError> {
        match &self.0 {
            Custody::Software(key) => {
                let moved = token.import_aes_key(label, key.expose()).map_err(|e| SealError::Token(e.to_string()))?;
                Ok(MasterKey::in_token(moved, self.check_value()))
            }
            Custody::Token { .. } => Err(SealError::InToken),
        }
    }

    /// Whether a token holds this key.
    pub fn token_key(&self) -> Option<&crate::hsm::TokenKey> {
        match &self.0 {
            Custody::Software(_) => None,
            Custody::Token { key, .. } => Some(key),
        }
    }

    fn software(&self) -> Result<&SecretKey, SealError> {
        match &self.0 {
            Custody::Software(key) => Ok(key),
            Custody::Token { .. } => Err(SealError::InToken),
        }
    }

    /// Names this master key without revealing it, so that a database can say which master key
    /// its secrets are sealed under (a [`KeyCheckValue`] with a label of its own).
    pub fn check_value(&self) -> KeyCheckValue {
        match &self.0 {
            Custody::Software(key) => KeyCheckValue::with_label(key, MASTER_CHECK_LABEL),
            Custody::Token { check, .. } => *check,
        }
    }

    /// Seals this master key under `passphrase`.
    pub fn seal_under_passphrase(&self, passphrase: &str) -> Result<SealedMasterKey, SealError> {
        self.seal_with_aad(passphrase, MASTER_KEY_AAD)
    }

    /// Seals this master key under a one-time transfer passphrase, for another station of the
    /// same factory root to join this one's inventory ([`MasterKey::open_share`]).
    pub fn share(&self, passphrase: &str, factory_root: &[u8; 32]) -> Result<SealedMasterKey, SealError> {
        self.seal_with_aad(passphrase, &share_aad(factory_root))
    }

    /// Opens a master key [`MasterKey::share`]d for stations of `factory_root`: a share made
    /// for another factory's stations does not open.
    pub fn open_share(sealed: &SealedMasterKey, passphrase: &str, factory_root: &[u8; 32]) -> Result<Self, SealError> {
        Self::unseal_with_aad(sealed, passphrase, &share_aad(factory_root))
    }

    fn seal_with_aad(&self, passphrase: &str, aad: &[u8]) -> Result<SealedMasterKey, SealError> {
        seal_secret_under_passphrase(self.software()?.expose(), passphrase, aad)
    }

    /// Unseals the master key with `passphrase`.
    pub fn unseal(sealed: &SealedMasterKey, passphrase: &str) -> Result<Self, SealError> {
        Self::unseal_with_aad(sealed, passphrase, MASTER_KEY_AAD)
    }

    fn unseal_with_aad(sealed: &SealedMasterKey, passphrase: &str, aad: &[u8]) -> Result<Self, SealError> {
        let plaintext = open_secret_under_passphrase(sealed, passphrase, aad)?;
        SecretKey::from_slice(&plaintext).map(|key| MasterKey(Custody::Software(key))).ok_or(SealError::Malformed)
    }

    /// Seals `secret` with `context` (e.g. device id ‖ key id) as associated data.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> Result<Vec<u8>, SealError> {
        match &self.0 {
            Custody::Software(key) => seal_with(key, context, secret),
            Custody::Token { key, .. } => {
                key.seal(&random_array::<NONCE_LEN>()?, context, secret).map_err(|e| SealError::Token(e.to_string()))
            }
        }
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        match &self.0 {
            Custody::Software(key) => open_with(key, context, sealed),
            Custody::Token { key, .. } => key.open(context, sealed).map_err(|error| match error {
                crate::hsm::OpenError::Unauthentic => SealError::Unauthentic,
                crate::hsm::OpenError::Token(error) => SealError::Token(error.to_string()),
            }),
        }
    }

    pub fn open_key(&self, context: &[u8], sealed: &[u8]) -> Result<SecretKey, SealError> {
        SecretKey::from_slice(&self.open(context, sealed)?).ok_or(SealError::Malformed)
    }

    /// Opens the sealed key `key_id` of the device `device` named `name`; an authentication
    /// failure names the device and the key.
    pub fn open_device_key(
        &self,
        device: &DeviceId,
        name: &str,
        key_id: &[u8; 16],
        sealed: &[u8],
    ) -> Result<SecretKey, SealError> {
        self.open_key(&device_key_context(device, key_id), sealed).map_err(|error| match error {
            SealError::Unauthentic => SealError::DeviceSecretUnauthentic {
                secret: SealedSecret::Key { key_id: hex::encode(key_id) },
                device_id: device.to_hex(),
                name: name.to_owned(),
            },
            other => other,
        })
    }

    /// Opens the sealed setup secret of the device `device` named `name`; an authentication
    /// failure names the device.
    pub fn open_setup_secret(
        &self,
        device: &DeviceId,
        name: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        self.open(&setup_secret_context(device), sealed).map_err(|error| match error {
            SealError::Unauthentic => SealError::DeviceSecretUnauthentic {
                secret: SealedSecret::SetupSecret,
                device_id: device.to_hex(),
                name: name.to_owned(),
            },
            other => other,
        })
    }
}

/// Which sealed secret of a device an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedSecret {
    Key { key_id: String },
    SetupSecret,
}

impl std::fmt::Display for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealedSecret::Key { key_id } => write!(f, "sealed key {key_id}"),
            SealedSecret::SetupSecret => f.write_str("sealed setup secret"),
        }
    }
}

/// `secret` sealed under `passphrase` (PBKDF2-HMAC-SHA256, 600 000 iterations, then AES-256-GCM)
/// with `aad` bound to it: the one passphrase construction of the code base, for secrets other
/// than the master key (an officer's key share).
pub fn seal_secret_under_passphrase(secret: &[u8], passphrase: &str, aad: &[u8]) -> Result<SealedMasterKey, SealError> {
    if passphrase.is_empty() {
        return Err(SealError::EmptyPassphrase);
    }
    let salt = random_array::<16>()?;
    let kek = passphrase_key(passphrase, &salt, PBKDF2_ITERATIONS)?;
    Ok(SealedMasterKey {
        version: 1,
        kdf: "pbkdf2-hmac-sha256".into(),
        iterations: PBKDF2_ITERATIONS,
        salt: hex::encode(salt),
        sealed: hex::encode(seal_with(&kek, aad, secret)?),
    })
}

/// Opens what [`seal_secret_under_passphrase`] sealed; a wrong passphrase or other `aad` is
/// [`SealError::WrongPassphrase`].
pub fn open_secret_under_passphrase(
    sealed: &SealedMasterKey,
    passphrase: &str,
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.version != 1
        || sealed.kdf != "pbkdf2-hmac-sha256"
        || !(MIN_PBKDF2_ITERATIONS..=MAX_PBKDF2_ITERATIONS).contains(&sealed.iterations)
    {
        return Err(SealError::Malformed);
    }
    let salt = hex::decode(&sealed.salt).map_err(|_| SealError::Malformed)?;
    let blob = hex::decode(&sealed.sealed).map_err(|_| SealError::Malformed)?;
    let kek = passphrase_key(passphrase, &salt, sealed.iterations)?;
    open_with(&kek, aad, &blob).map_err(|e| match e {
        SealError::Unauthentic => SealError::WrongPassphrase,
        other => other,
    })
}

/// A check value of any 32-byte key under a label of the caller's.
pub fn check_value_with_label(key: &SecretKey, label: &[u8]) -> KeyCheckValue {
    KeyCheckValue::with_label(key, label)
}

/// Associated data of a shared master key: only stations of this factory root open it.
fn share_aad(factory_root: &[u8; 32]) -> Vec<u8> {
    [&b"keyfill master key share v1\0"[..], factory_root].concat()
}

/// Associated data that binds a sealed device key to its device and key id.
pub fn device_key_context(device_id: &DeviceId, key_id: &[u8; 16]) -> Vec<u8> {
    [&b"keyfill device key v1\0"[..], &device_id.0, key_id].concat()
}

/// Associated data for a device's sealed setup secret.
pub fn setup_secret_context(device_id: &DeviceId) -> Vec<u8> {
    [&b"keyfill setup secret v1\0"[..], &device_id.0].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers computed independently, with OpenSSL:
    /// `printf 'keyfill key check value v1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:0001…1f`.
    #[test]
    fn kcv_matches_openssl_hmac_sha256_truncated_to_16_bytes() {
        let key = SecretKey::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(KeyCheckValue::of(&key).to_hex(), "30fbe252d17df6532e537e2a9e4b2c8a");
        assert_eq!(MasterKey(Custody::Software(key)).check_value().to_hex(), "41d58e3ee0a5639a440dc26d64b8a2aa");
        let again = KeyCheckValue::from_hex("30fbe252d17df6532e537e2a9e4b2c8a");
        assert_eq!(again, Some(KeyCheckValue::of(&SecretKey::from_bytes(std::array::from_fn(|i| i as u8)))));
        assert_eq!(KeyCheckValue::from_hex("30fb"), None);
    }

    #[test]
    fn master_key_round_trip_and_wrong_passphrase() -> Result<(), SealError> {
        let master = MasterKey::generate()?;
        let sealed = master.seal_under_passphrase("correct horse")?;
        let again = MasterKey::unseal(&sealed, "correct horse")?;
        let blob = master.seal(b"ctx", b"secret bytes")?;
        assert_eq!(again.open(b"ctx", &blob)?.as_slice(), b"secret bytes");
        assert!(matches!(again.open(b"other ctx", &blob), Err(SealError::Unauthentic)));
        assert!(matches!(MasterKey::unseal(&sealed, "wrong"), Err(SealError::WrongPassphrase)));
        Ok(())
    }

    #[test]
    fn multi_station_master_key_share_opens_only_for_its_factory_root_and_passphrase() -> Result<(), SealError> {
        let master = MasterKey::generate()?;
        let root = [7u8; 32];
        let share = master.share("transfer words", &root)?;
        let joined = MasterKey::open_share(&share, "transfer words", &root)?;
        assert_eq!(joined.check_value(), master.check_value());
        assert!(matches!(MasterKey::open_share(&share, "transfer words", &[8; 32]), Err(SealError::WrongPassphrase)));
        assert!(matches!(MasterKey::open_share(&share, "other", &root), Err(SealError::WrongPassphrase)));
        // A share is not a station's own sealed master key, nor the reverse.
        assert!(MasterKey::unseal(&share, "transfer words").is_err());
        let own = master.seal_under_passphrase("transfer words")?;
        assert!(MasterKey::open_share(&own, "transfer words", &root).is_err());
        Ok(())
    }

    #[test]
    fn hostile_a_key_file_asking_for_billions_of_iterations_is_refused_at_once() -> Result<(), SealError> {
        let sealed = MasterKey::generate()?.seal_under_passphrase("correct horse")?;
        for iterations in [u32::MAX, MAX_PBKDF2_ITERATIONS + 1, MIN_PBKDF2_ITERATIONS - 1, 0] {
            let edited = SealedMasterKey { iterations, ..sealed.clone() };
            // Refused before any derivation: u32::MAX iterations would take hours.
            assert!(matches!(MasterKey::unseal(&edited, "correct horse"), Err(SealError::Malformed)), "{iterations}");
        }
        Ok(())
    }

    #[test]
    fn hostile_a_sealed_key_that_does_not_open_names_its_device_and_key() -> Result<(), SealError> {
        let master = MasterKey::generate()?;
        let device = DeviceId::from_name("line-3\u{1b}[2J");
        let key_id = [0xab; 16];
        let mut sealed = master.seal(&device_key_context(&device, &key_id), &[7; 32])?;
        assert!(master.open_device_key(&device, "line-3\u{1b}[2J", &key_id, &sealed).is_ok());
        sealed[20] ^= 1;
        let error = master.open_device_key(&device, "line-3\u{1b}[2J", &key_id, &sealed).err();
        // As the station prints it: outside text escaped.
        let text = keyfill_formats::printable(&error.map(|e| e.to_string()).unwrap_or_default()).into_owned();
        for needed in [&device.to_hex(), &hex::encode(key_id), "\"line-3\\u{1b}[2J\"", "altered", "backup"] {
            assert!(text.contains(needed), "{needed} missing from {text}");
        }
        assert!(!text.contains('\u{1b}'), "the name is escaped: {text}");
        // Sealed by another station's master key.
        let other = MasterKey::generate()?.seal(&device_key_context(&device, &key_id), &[7; 32])?;
        assert!(matches!(
            master.open_device_key(&device, "d", &key_id, &other),
            Err(SealError::DeviceSecretUnauthentic { secret: SealedSecret::Key { .. }, .. })
        ));
        let secret = MasterKey::generate()?.seal(&setup_secret_context(&device), &[1; 16])?;
        assert!(matches!(
            master.open_setup_secret(&device, "d", &secret),
            Err(SealError::DeviceSecretUnauthentic { secret: SealedSecret::SetupSecret, .. })
        ));
        Ok(())
    }
}
