//! E4 protected messages (`timestamp ‖ SIV tag ‖ ciphertext`): `protected_timestamp` and
//! `unprotect` on arbitrary bytes, and, structure-aware, messages the real `protect` made from
//! the input's timestamp and plaintext (the SIV tag stops a plain byte target at once), opened
//! under the input's clock and window, then altered by one bit.
//!
//! Input: a selector byte. Even: the rest is a protected message, opened with the input's clock
//! (`u64` LE) under the C client's window. Odd: timestamp `u64`, clock `u64`, window byte,
//! alteration `u16` (bit index into the message), then the plaintext.
#![no_main]

use keyfill_formats::SecretKey;
use keyfill_formats::e4::{self, E4Error, TimestampPolicy};
use keyfill_fuzz::Input;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x5A; 32];
const OTHER_KEY: [u8; 32] = [0xA5; 32];

fn policy(byte: u8) -> TimestampPolicy {
    match byte % 4 {
        0 => TimestampPolicy::GO_CLIENT,
        1 => TimestampPolicy::C_CLIENT,
        2 => TimestampPolicy::device(u64::from(byte)),
        _ => TimestampPolicy::ANY,
    }
}

fn accepted(timestamp: u64, now: u64, policy: TimestampPolicy) -> bool {
    if timestamp > now { timestamp - now <= policy.future_skew } else { now - timestamp <= policy.max_age }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let key = SecretKey::from_bytes(KEY);
    if input.byte().is_multiple_of(2) {
        let now = input.u64();
        let protected = input.rest();
        let stamp = e4::protected_timestamp(protected);
        if let Ok(plaintext) = e4::unprotect(&key, protected, now, TimestampPolicy::C_CLIENT) {
            assert_eq!(stamp.ok().map(|t| accepted(t, now, TimestampPolicy::C_CLIENT)), Some(true));
            assert_eq!(plaintext.len() + e4::TIMESTAMP_LEN + e4::TAG_LEN, protected.len());
        }
        return;
    }
    let timestamp = input.u64();
    let now = input.u64();
    let policy = policy(input.byte());
    let alteration = usize::from(input.u16());
    let plaintext = input.rest();
    let protected = e4::protect(&key, timestamp, plaintext).expect("a non-zero key protects anything");
    assert_eq!(e4::protected_timestamp(&protected), Ok(timestamp));
    let opened = e4::unprotect(&key, &protected, now, policy);
    if accepted(timestamp, now, policy) {
        assert_eq!(opened.as_deref().map(Vec::as_slice), Ok(plaintext), "a fresh message opens to its plaintext");
        let other = e4::unprotect(&SecretKey::from_bytes(OTHER_KEY), &protected, now, policy);
        assert_eq!(other, Err(E4Error::Unauthentic), "another key does not open it");
        let mut altered = protected.clone();
        let bit = alteration % (altered.len() * 8);
        altered[bit / 8] ^= 1 << (bit % 8);
        let altered_stamp = e4::protected_timestamp(&altered).expect("long enough");
        if accepted(altered_stamp, now, policy) {
            assert_eq!(
                e4::unprotect(&key, &altered, now, policy),
                Err(E4Error::Unauthentic),
                "an altered bit is caught"
            );
        }
    } else {
        assert!(matches!(opened, Err(E4Error::TooOld { .. } | E4Error::InFuture { .. })), "the window is enforced");
    }
});
