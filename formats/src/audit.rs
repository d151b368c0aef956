//! The audit log's entries and checkpoints: what is hashed and what is signed.
//!
//! Each station keeps one chain. An entry's hash is SHA-256 over a fixed label and its fields,
//! the previous entry's hash among them, so an entry cannot be changed, removed or moved
//! without breaking every link after it. The station's signing key (Ed25519, certified by the
//! factory root) signs each entry's hash and, now and then, a checkpoint: the position and hash
//! of the chain's last entry, kept elsewhere so that a shortened chain is noticed.
//!
//! The encoding is length-prefixed, so no two different entries encode alike:
//!
//! ```text
//! entry hash = SHA-256( "keyfill audit entry v1\0"
//!                       ‖ text(station id) ‖ u64(at, ms since the epoch)
//!                       ‖ text(operator) ‖ text(kind) ‖ optional text(device id) ‖ text(detail)
//!                       ‖ previous entry's hash (32 bytes; zeros for the first) )
//! text(s)            = u32(byte length of s) ‖ UTF-8 bytes of s
//! optional text(s)   = 0x00 if absent, else 0x01 ‖ text(s)
//! u32, u64           = big-endian
//! entry signature    = Ed25519( "keyfill audit entry signature v1\0" ‖ entry hash )
//! checkpoint signature = Ed25519( "keyfill audit checkpoint v1\0" ‖ text(station id)
//!                                 ‖ u64(seq) ‖ entry hash at seq ‖ u64(at) )
//! ```
//!
//! An entry's number in its chain (`seq`, from 1) is not hashed: the links give the order, and
//! the number stored beside an entry is checked against them.

use sha2::{Digest, Sha256};

const ENTRY_LABEL: &[u8] = b"keyfill audit entry v1\0";
const ENTRY_SIGNATURE_LABEL: &[u8] = b"keyfill audit entry signature v1\0";
const CHECKPOINT_LABEL: &[u8] = b"keyfill audit checkpoint v1\0";

/// The hash before a chain's first entry.
pub const GENESIS: [u8; 32] = [0; 32];

/// What an entry says, as hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFields<'a> {
    pub station_id: &'a str,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub operator: &'a str,
    pub kind: &'a str,
    pub device_id: Option<&'a str>,
    pub detail: &'a str,
}

fn text(hasher: &mut Sha256, value: &str) {
    // A field longer than 4 GiB cannot be stored; its length saturates rather than wraps.
    let length = u32::try_from(value.len()).unwrap_or(u32::MAX);
    hasher.update(length.to_be_bytes());
    hasher.update(value.as_bytes());
}

/// The hash of the entry `fields` that follows the entry hashed `previous`.
pub fn entry_hash(fields: &EntryFields<'_>, previous: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(ENTRY_LABEL);
    text(&mut hasher, fields.station_id);
    hasher.update(fields.at.to_be_bytes());
    text(&mut hasher, fields.operator);
    text(&mut hasher, fields.kind);
    match fields.device_id {
        None => hasher.update([0]),
        Some(device_id) => {
            hasher.update([1]);
            text(&mut hasher, device_id);
        }
    }
    text(&mut hasher, fields.detail);
    hasher.update(previous);
    hasher.finalize().into()
}

/// What the station signs for an entry.
pub fn entry_signing_input(hash: &[u8; 32]) -> Vec<u8> {
    [ENTRY_SIGNATURE_LABEL, hash].concat()
}

/// A checkpoint: the chain of `station_id` had `hash` as its entry number `seq` at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointFields<'a> {
    pub station_id: &'a str,
    pub seq: u64,
    pub hash: &'a [u8; 32],
    pub at: i64,
}

/// What the station signs for a checkpoint.
pub fn checkpoint_signing_input(checkpoint: &CheckpointFields<'_>) -> Vec<u8> {
    let mut input = CHECKPOINT_LABEL.to_vec();
    let length = u32::try_from(checkpoint.station_id.len()).unwrap_or(u32::MAX);
    input.extend_from_slice(&length.to_be_bytes());
    input.extend_from_slice(checkpoint.station_id.as_bytes());
    input.extend_from_slice(&checkpoint.seq.to_be_bytes());
    input.extend_from_slice(checkpoint.hash);
    input.extend_from_slice(&checkpoint.at.to_be_bytes());
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Known answers computed with Python's hashlib from the layout in the module's comment
    /// (docs/audit.md gives the script), so that a SIEM can check a chain without Keyfill.
    #[test]
    fn audit_entry_hash_matches_the_documented_layout() {
        let first = EntryFields {
            station_id: "00112233445566778899aabbccddeeff",
            at: 1_765_000_000_000,
            operator: "alice",
            kind: "provisioned",
            device_id: Some("0123456789abcdef0123456789abcdef"),
            detail: "key 01 confirmed",
        };
        let first_hash = entry_hash(&first, &GENESIS);
        assert_eq!(hex(&first_hash), "067b42d153cab5aacc0b369ffb49f71fe2fff90423ebaaa933e006b64f3239a7");
        let second = EntryFields { device_id: None, kind: "c2_export", detail: "2 created", ..first };
        assert_eq!(
            hex(&entry_hash(&second, &first_hash)),
            "05e0abdcc2602d3841a208d98c024f0d2e3a5ad79a80e939ac4317b4f1902fcb"
        );
    }

    #[test]
    fn audit_entry_hash_separates_fields() {
        let base = EntryFields { station_id: "s", at: 1, operator: "ab", kind: "c", device_id: None, detail: "" };
        // Moving a byte from one field to the next changes the hash.
        let moved = EntryFields { operator: "a", kind: "bc", ..base };
        assert_ne!(entry_hash(&base, &GENESIS), entry_hash(&moved, &GENESIS));
        let empty_device = EntryFields { device_id: Some(""), ..base };
        assert_ne!(entry_hash(&base, &GENESIS), entry_hash(&empty_device, &GENESIS));
        assert_ne!(entry_hash(&base, &GENESIS), entry_hash(&base, &[1; 32]));
    }
}
