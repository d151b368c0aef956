//! Structure-aware QR payload: the input is the payload's CBOR map *without* its checksum
//! entry; the target appends the checksum entry (key 15, the CRC-32 the label must carry),
//! base45-encodes and prefixes it, then parses. A plain byte target stalls at the checksum;
//! this one reaches every field check behind it.
#![no_main]

use keyfill_formats::base45;
use keyfill_formats::qr::{OnboardingPayload, PREFIX};
use libfuzzer_sys::fuzz_target;

/// Adds the checksum entry to a CBOR map of at most 22 entries (the head is one byte).
fn with_checksum(map: &[u8]) -> Option<Vec<u8>> {
    let (&head, body) = map.split_first()?;
    if !(0xA0..0xB7).contains(&head) {
        return None;
    }
    let checksum = crc32fast::hash(map);
    let mut out = Vec::with_capacity(map.len() + 6);
    out.push(head + 1);
    out.extend_from_slice(body);
    out.extend_from_slice(&[0x0F, 0x44]);
    out.extend_from_slice(&checksum.to_be_bytes());
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some(cbor) = with_checksum(data) else { return };
    let text = format!("{PREFIX}{}", base45::encode(&cbor));
    if let Ok(payload) = OnboardingPayload::parse(&text) {
        assert_eq!(payload.encode(), Ok(text), "a parsed payload re-encodes to its text");
    }
});
