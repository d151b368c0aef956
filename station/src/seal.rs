//! Sealing secrets at rest: AES-256-GCM (ring) under a master key, which is itself sealed under
//! a key derived from the operator passphrase with PBKDF2-HMAC-SHA256.

use keyfill_formats::SecretKey;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
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
    #[error("sealed data is malformed")]
    Malformed,
    #[error("the system random source failed")]
    Random,
    #[error("the passphrase is empty")]
    EmptyPassphrase,
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

/// The key that seals every secret in the inventory. Never stored unsealed.
pub struct MasterKey(SecretKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

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
        Ok(MasterKey(random_key()?))
    }

    /// Seals this master key under `passphrase`.
    pub fn seal_under_passphrase(&self, passphrase: &str) -> Result<SealedMasterKey, SealError> {
        if passphrase.is_empty() {
            return Err(SealError::EmptyPassphrase);
        }
        let salt = random_array::<16>()?;
        let kek = passphrase_key(passphrase, &salt, PBKDF2_ITERATIONS)?;
        let sealed = seal_with(&kek, MASTER_KEY_AAD, self.0.expose())?;
        Ok(SealedMasterKey {
            version: 1,
            kdf: "pbkdf2-hmac-sha256".into(),
            iterations: PBKDF2_ITERATIONS,
            salt: hex::encode(salt),
            sealed: hex::encode(sealed),
        })
    }

    /// Unseals the master key with `passphrase`.
    pub fn unseal(sealed: &SealedMasterKey, passphrase: &str) -> Result<Self, SealError> {
        if sealed.version != 1 || sealed.kdf != "pbkdf2-hmac-sha256" || sealed.iterations < 100_000 {
            return Err(SealError::Malformed);
        }
        let salt = hex::decode(&sealed.salt).map_err(|_| SealError::Malformed)?;
        let blob = hex::decode(&sealed.sealed).map_err(|_| SealError::Malformed)?;
        let kek = passphrase_key(passphrase, &salt, sealed.iterations)?;
        let plaintext = open_with(&kek, MASTER_KEY_AAD, &blob).map_err(|e| match e {
            SealError::Unauthentic => SealError::WrongPassphrase,
            other => other,
        })?;
        SecretKey::from_slice(&plaintext).map(MasterKey).ok_or(SealError::Malformed)
    }

    /// Seals `secret` with `context` (e.g. device id ‖ key id) as associated data.
    pub fn seal(&self, context: &[u8], secret: &[u8]) -> Result<Vec<u8>, SealError> {
        seal_with(&self.0, context, secret)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        open_with(&self.0, context, sealed)
    }

    pub fn open_key(&self, context: &[u8], sealed: &[u8]) -> Result<SecretKey, SealError> {
        SecretKey::from_slice(&self.open(context, sealed)?).ok_or(SealError::Malformed)
    }
}

/// Associated data that binds a sealed device key to its device and key id.
pub fn device_key_context(device_id: &keyfill_formats::DeviceId, key_id: &[u8; 16]) -> Vec<u8> {
    [&b"keyfill device key v1\0"[..], &device_id.0, key_id].concat()
}

/// Associated data for a device's sealed setup secret.
pub fn setup_secret_context(device_id: &keyfill_formats::DeviceId) -> Vec<u8> {
    [&b"keyfill setup secret v1\0"[..], &device_id.0].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
