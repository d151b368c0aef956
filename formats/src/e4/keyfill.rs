//! Keyfill's additions on top of E4 for confirmed rotation: the device's confirmation of a
//! SetIdKey and its hello, both ordinary E4 protected messages on Keyfill's own topics.

use crate::ids::DeviceId;
use crate::secret::SecretKey;
use sha3::{Digest, Sha3_256};
use thiserror::Error;

/// Confirmations of SetIdKey, protected under the **new** key: `keyfill/confirm/<hex id>`.
pub const CONFIRM_TOPIC_PREFIX: &str = "keyfill/confirm/";
/// A device announcing itself on first use, protected under its current key.
pub const HELLO_TOPIC_PREFIX: &str = "keyfill/hello/";
/// Plaintext of a hello.
pub const HELLO_PLAINTEXT: &[u8] = b"keyfill hello v1";
/// Length of a confirmation plaintext: SHA3-256(new key) ‖ command timestamp (u64 LE).
pub const CONFIRMATION_LEN: usize = 40;

pub fn confirm_topic(id: &DeviceId) -> String {
    format!("{CONFIRM_TOPIC_PREFIX}{}", id.to_hex())
}

pub fn hello_topic(id: &DeviceId) -> String {
    format!("{HELLO_TOPIC_PREFIX}{}", id.to_hex())
}

/// SHA3-256 of a key: what a confirmation carries to name the key without revealing it.
pub fn key_digest(key: &SecretKey) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha3_256::digest(key.expose()));
    out
}

/// The key id of a rotated key, computable by both sides from the key alone.
pub fn rotated_key_id(key: &SecretKey) -> [u8; 16] {
    let mut hasher = Sha3_256::new();
    hasher.update(b"keyfill rotated key id v1\0");
    hasher.update(key.expose());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hasher.finalize()[..16]);
    id
}

/// A parsed confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    pub key_digest: [u8; 32],
    pub command_timestamp: u64,
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum ConfirmationError {
    #[error("confirmation of {0} bytes, expected {CONFIRMATION_LEN}")]
    WrongLength(usize),
}

impl Confirmation {
    pub fn for_key(key: &SecretKey, command_timestamp: u64) -> Self {
        Confirmation { key_digest: key_digest(key), command_timestamp }
    }

    pub fn encode(&self) -> [u8; CONFIRMATION_LEN] {
        let mut out = [0u8; CONFIRMATION_LEN];
        out[..32].copy_from_slice(&self.key_digest);
        out[32..].copy_from_slice(&self.command_timestamp.to_le_bytes());
        out
    }

    pub fn decode(plaintext: &[u8]) -> Result<Self, ConfirmationError> {
        let bytes: [u8; CONFIRMATION_LEN] =
            plaintext.try_into().map_err(|_| ConfirmationError::WrongLength(plaintext.len()))?;
        let mut key_digest = [0u8; 32];
        key_digest.copy_from_slice(&bytes[..32]);
        let mut stamp = [0u8; 8];
        stamp.copy_from_slice(&bytes[32..]);
        Ok(Confirmation { key_digest, command_timestamp: u64::from_le_bytes(stamp) })
    }

    /// Whether this confirms exactly `key`.
    pub fn names(&self, key: &SecretKey) -> bool {
        let digest = key_digest(key);
        digest.iter().zip(self.key_digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}
