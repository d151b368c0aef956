//! E4, byte for byte: client ids and topic hashes, protected messages (AES-CMAC-SIV with the
//! key used twice, the timestamp as the one associated-data component), the eight commands, and
//! the public-key mode's command key. Matches the deployed E4 implementations (Go and C
//! clients, C2), which win where E4's prose specification disagrees.

mod command;
pub mod keyfill;
mod protect;
mod pubkey;

pub use command::{Command, CommandError, KeyMode, SET_ID_KEY};
pub use protect::{E4Error, TAG_LEN, TIMESTAMP_LEN, TimestampPolicy, protect, protected_timestamp, unprotect};
pub use pubkey::{PubKeyError, command_key_for_c2, command_key_for_device};

use crate::ids::DeviceId;
use sha3::{Digest, Sha3_256};

/// Length of client ids and topic hashes.
pub const ID_LEN: usize = 16;
/// Longest topic in bytes.
pub const MAX_TOPIC_LEN: usize = 512;
/// Receivers reject protected messages older than this many seconds.
pub const MAX_AGE_SECS: u64 = 600;
/// How far ahead of its clock a Keyfill device accepts a command by default: the C client's
/// 10 minutes, so that a device whose clock lags the station's is still reachable.
pub const DEFAULT_FUTURE_SKEW_SECS: u64 = 600;
/// The largest future skew a device may be configured with. The station accepts device messages
/// stamped at most [`MAX_AGE_SECS`] in the past, so a device lagging further would apply a
/// rotation whose confirmation the station refuses.
pub const MAX_FUTURE_SKEW_SECS: u64 = MAX_AGE_SECS;
const _: () = assert!(DEFAULT_FUTURE_SKEW_SECS <= MAX_FUTURE_SKEW_SECS && MAX_FUTURE_SKEW_SECS <= MAX_AGE_SECS);

/// First 16 bytes of SHA3-256 of a topic.
pub fn topic_hash(topic: &str) -> [u8; ID_LEN] {
    let digest = Sha3_256::digest(topic.as_bytes());
    let mut hash = [0u8; ID_LEN];
    hash.copy_from_slice(&digest[..ID_LEN]);
    hash
}

/// A client's control topic: `e4/` + lowercase hex of its id.
pub fn control_topic(id: &DeviceId) -> String {
    id.control_topic()
}

/// Whether `topic` is a valid E4 topic (1..=512 bytes).
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN
}
