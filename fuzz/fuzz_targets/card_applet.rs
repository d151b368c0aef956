//! The Keyfill card application, `CardApplet::process`, fed a sequence of command APDUs as a
//! PC/SC reader or an NFC controller delivers them, around the agent core of the vectors' device.
//! Structure-aware in part: besides raw APDUs, the input can carry whole wire messages that the
//! target splits into chained EXCHANGE commands with the real `exchange_commands`, and SELECT,
//! GET RESPONSE and POLL commands. Checked: every response is a well-formed short response APDU.
//!
//! Input: a mode byte (bit 0: setup-secret device), then operations, each a byte (modulo 6):
//! `0` a raw APDU (chunk); `1` a wire message (chunk) as chained EXCHANGE commands; `2` SELECT
//! the Keyfill application; `3` GET RESPONSE (Le byte); `4` POLL; `5` card reset.
#![no_main]

use keyfill_agent::AgentCore;
use keyfill_agent::card::CardApplet;
use keyfill_agent::driver::FaultInjection;
use keyfill_formats::apdu::{self, CommandApdu, MAX_RESPONSE_DATA, ResponseApdu};
use keyfill_formats::message::HandshakeMode;
use keyfill_fuzz::{Input, MemoryKeystore, vectors};
use libfuzzer_sys::fuzz_target;

fn process(applet: &mut CardApplet, keystore: &mut MemoryKeystore, command: &[u8]) {
    let response = applet.process(command, keystore, FaultInjection::None).expect("no fault is injected");
    let parsed = ResponseApdu::parse(&response).expect("every response is a short response APDU");
    assert!(parsed.data.len() <= MAX_RESPONSE_DATA);
}

fn encoded(command: CommandApdu) -> Vec<u8> {
    command.encode().expect("a short APDU")
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = vectors::sessions();
    let mode = if input.byte() & 1 == 0 { HandshakeMode::Identity } else { HandshakeMode::SetupSecret };
    let mut applet = CardApplet::new(AgentCore::new(v.device_identity(mode), None));
    let mut keystore = MemoryKeystore::default();
    while !input.is_empty() {
        match input.byte() % 6 {
            0 => process(&mut applet, &mut keystore, input.chunk()),
            1 => {
                for command in apdu::exchange_commands(input.chunk()) {
                    process(&mut applet, &mut keystore, &encoded(command));
                }
            }
            2 => process(&mut applet, &mut keystore, &encoded(apdu::select_keyfill())),
            3 => {
                let le = input.byte();
                process(&mut applet, &mut keystore, &encoded(apdu::get_response(0x6100 | u16::from(le))));
            }
            4 => process(&mut applet, &mut keystore, &encoded(apdu::poll())),
            _ => applet.reset(),
        }
    }
});
