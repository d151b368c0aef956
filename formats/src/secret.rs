//! A 32-byte secret key that never shows itself and is wiped on drop.

use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// 32 bytes of key material. `Debug` prints a redaction; memory is zeroed on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub const LEN: usize = 32;

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// Copies from a slice of exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(SecretKey(array))
    }

    /// Borrow the key bytes for a cryptographic operation. Never log or format them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Compares two keys in time independent of where they differ.
    pub fn constant_time_eq(&self, other: &SecretKey) -> bool {
        self.0.iter().zip(other.0.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// An all-zero key is invalid in E4.
    pub fn is_all_zero(&self) -> bool {
        self.0.iter().all(|b| *b == 0)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}
