//! Device identity: a Keyfill device id is the E4 client id of the device's name.

use sha3::{Digest, Sha3_256};
use std::fmt;

pub use crate::name::MAX_NAME_LEN;

/// A 16-byte device id, equal to the first 16 bytes of SHA3-256(name) (the E4 client id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 16]);

impl DeviceId {
    /// The E4 client id of `name`: the first 16 bytes of SHA3-256 of its UTF-8 bytes. Any text
    /// has one; a name Keyfill accepts is a [`crate::DeviceName`].
    pub fn from_name(name: &str) -> Self {
        let digest = Sha3_256::digest(name.as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        DeviceId(id)
    }

    /// Lowercase hex, 32 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex characters (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            id[i] = (high * 16 + low) as u8;
        }
        Some(DeviceId(id))
    }

    /// The E4 control topic of this client: `e4/` + lowercase hex id.
    pub fn control_topic(&self) -> String {
        format!("e4/{}", self.to_hex())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.to_hex())
    }
}
