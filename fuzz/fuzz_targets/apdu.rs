//! ISO 7816-4 short APDUs: `CommandApdu::parse` (what a card application receives) and
//! `ResponseApdu::parse` (what the station's PC/SC link receives), with round trips.
#![no_main]

use keyfill_formats::apdu::{CommandApdu, MAX_COMMAND_DATA, ResponseApdu};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = CommandApdu::parse(data) {
        assert!(command.data.len() <= MAX_COMMAND_DATA);
        let encoded = command.encode().expect("a parsed command is a short APDU");
        assert_eq!(CommandApdu::parse(&encoded), Ok(command), "command APDU round trip");
    }
    if let Ok(response) = ResponseApdu::parse(data) {
        assert_eq!(response.encode(), data, "a response APDU re-encodes to its bytes");
    }
});
