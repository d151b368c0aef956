//! Provisioning protocol messages: `WireMessage::decode` (what arrives on every link),
//! `SessionMessage::decode` (what a Noise transport message carries) and `peek_version`, on
//! the same arbitrary bytes. Both decoders accept only deterministic CBOR, so whatever decodes
//! must encode back to exactly the input.
#![no_main]

use keyfill_formats::message::{self, MAX_WIRE_MESSAGE, PROTOCOL_VERSION, SessionMessage, WireMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let version = message::peek_version(data);
    if let Ok(wire) = WireMessage::decode(data) {
        assert_eq!(wire.encode().as_deref(), Ok(data), "a wire message re-encodes to its bytes");
        assert!(data.len() <= MAX_WIRE_MESSAGE);
        assert_eq!(version, Some(PROTOCOL_VERSION), "peek_version agrees with the decoder");
    }
    if let Ok(session) = SessionMessage::decode(data) {
        assert_eq!(session.encode().as_deref(), Ok(data), "a session message re-encodes to its bytes");
    }
});
