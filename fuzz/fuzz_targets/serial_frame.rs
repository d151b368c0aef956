//! One serial frame body (COBS, then payload ‖ CRC-32): `frame::decode` on arbitrary bytes,
//! and the same bytes as a payload through `frame::encode` and back. A structure-aware run of
//! the decoder behind the CRC is `serial_stream` (whose frames come from the real encoder).
#![no_main]

use keyfill_formats::frame::{self, DELIMITER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = frame::decode(data) {
        // COBS accepts a redundant final block, so compare what the frames carry, not bytes.
        let again = frame::encode(&payload).expect("a decoded payload is within the frame limit");
        assert_eq!(again.last(), Some(&DELIMITER));
        assert_eq!(frame::decode(&again[..again.len() - 1]), Ok(payload), "re-encoded frame decodes the same");
    }
    if let Ok(encoded) = frame::encode(data) {
        let (body, delimiter) = encoded.split_at(encoded.len() - 1);
        assert_eq!(delimiter, [DELIMITER]);
        assert!(!body.contains(&DELIMITER), "a frame body never holds the delimiter");
        assert_eq!(frame::decode(body).as_deref(), Ok(data), "frame round trip");
    }
});
