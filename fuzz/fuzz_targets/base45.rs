//! Base45 (RFC 9285), the text layer of the QR payload: `decode` on arbitrary text, and
//! `encode` then `decode` of arbitrary bytes. Decoding is canonical, so decoded text must
//! encode back to itself.
#![no_main]

use keyfill_formats::base45;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(bytes) = base45::decode(&text) {
        assert_eq!(base45::encode(&bytes), text, "base45 decoding is canonical");
    }
    assert_eq!(base45::decode(&base45::encode(data)).as_deref(), Ok(data), "base45 round trip");
});
