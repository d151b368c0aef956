//! A bundle's decrypted plaintext, `decode_entries`, checked against a manifest. The manifest
//! announces the count the plaintext's array head states, and first any time range: the entries
//! are then decoded and checked in full, and the mismatch error tells the range they span; a
//! second pass with that range must accept them and re-encode to exactly the plaintext.
#![no_main]

use keyfill_formats::bundle::{BundleError, CryptoMode, Manifest, PartPosition, decode_entries, encode_entries};
use libfuzzer_sys::fuzz_target;

/// The length in a CBOR array head, if `data` starts with one.
fn array_len(data: &[u8]) -> Option<u64> {
    let (&head, rest) = data.split_first()?;
    if head >> 5 != 4 {
        return None;
    }
    let width = match head & 0x1F {
        short @ 0..=23 => return Some(u64::from(short)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    Some(bytes.iter().fold(0u64, |value, byte| value << 8 | u64::from(*byte)))
}

fuzz_target!(|data: &[u8]| {
    let Some(count) = array_len(data) else { return };
    let mut manifest = Manifest {
        bundle_id: [1; 16],
        part: Some(PartPosition { index: 0, last: true }),
        station_id: [2; 16],
        station_name: "fuzz-station".into(),
        created_at_ms: 1_800_000_000_000,
        count,
        earliest_provisioned_at_ms: 0,
        latest_provisioned_at_ms: u64::MAX,
        crypto_mode: CryptoMode::Symmetric,
        recipient_public: [3; 32],
    };
    let entries = match decode_entries(data, &manifest) {
        Err(BundleError::TimeRangeMismatch { actual_earliest, actual_latest, .. }) => {
            manifest.earliest_provisioned_at_ms = actual_earliest;
            manifest.latest_provisioned_at_ms = actual_latest;
            decode_entries(data, &manifest).expect("the entries' own time range is accepted")
        }
        Ok(entries) => entries,
        Err(_) => return,
    };
    assert_eq!(entries.len() as u64, count);
    assert_eq!(encode_entries(&entries).as_slice(), data, "the entries re-encode to the plaintext");
});
