//! Decrypted E4 payloads: `Command::decode` in both key modes (the eight commands a device
//! applies) and Keyfill's `Confirmation::decode` (what the station reads after a rotation).
//! Both are fixed layouts: what decodes must encode back to the input.
#![no_main]

use keyfill_formats::e4::keyfill::Confirmation;
use keyfill_formats::e4::{Command, KeyMode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for mode in [KeyMode::Symmetric, KeyMode::PublicKey] {
        if let Ok(command) = Command::decode(data, mode) {
            assert_eq!(command.encode(), data, "a command re-encodes to its bytes");
        }
    }
    if let Ok(confirmation) = Confirmation::decode(data) {
        assert_eq!(confirmation.encode(), data, "a confirmation re-encodes to its bytes");
    }
});
