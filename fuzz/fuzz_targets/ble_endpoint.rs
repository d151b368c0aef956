//! BLE fragments and reassembly: one `BleEndpoint` fed a sequence of operations: raw fragments
//! (`receive`), the fragments of a real message from `ble::fragment` with losses and repeats
//! chosen by the input, messages to send, acknowledgement timeouts. Checked: nothing delivered
//! or sent exceeds its bound, and a message whose fragments all arrive in order is delivered
//! (unless it repeats the sequence number just delivered).
//!
//! Input: the MTU byte (mapped onto 23..=517), then operations, each a byte (modulo 4):
//! `0` raw fragment (chunk); `1` a message's fragments: sequence byte, MTU byte, loss-pattern
//! byte (0: lossless), chunk; `2` send a message (chunk); `3` advance the clock (`u16` ms) and
//! handle the timeout.
#![no_main]

use keyfill_formats::ble::{self, BleEndpoint, BleError, BleOutput, HEADER_LEN, MAX_MTU, MIN_MTU};
use keyfill_formats::message::MAX_WIRE_MESSAGE;
use keyfill_fuzz::Input;
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fn mtu_from(byte: u8) -> usize {
    MIN_MTU + usize::from(byte) * (MAX_MTU - MIN_MTU) / 255
}

fn check_fragments(fragments: &[Vec<u8>], mtu: usize) {
    for fragment in fragments {
        assert!(fragment.len() >= HEADER_LEN && fragment.len() <= mtu - 3, "a fragment fits the MTU");
    }
}

struct Receiver {
    endpoint: BleEndpoint,
    mtu: usize,
    /// Sequence number of the last message delivered, as seen from outside.
    last_delivered: Option<u8>,
}

impl Receiver {
    fn receive(&mut self, fragment: &[u8], now: Instant) -> Result<BleOutput, BleError> {
        let result = self.endpoint.receive(fragment, now);
        if let Ok(output) = &result {
            for message in &output.delivered {
                assert!(message.len() <= MAX_WIRE_MESSAGE, "a delivered message is within the limit");
            }
            if !output.delivered.is_empty() {
                self.last_delivered = fragment.get(1).copied();
            }
            check_fragments(&output.transmit, self.mtu);
        }
        result
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mtu = mtu_from(input.byte());
    let Ok(endpoint) = BleEndpoint::new(mtu) else { return };
    let mut receiver = Receiver { endpoint, mtu, last_delivered: None };
    let start = Instant::now();
    let mut now = start;
    while !input.is_empty() {
        match input.byte() % 4 {
            0 => {
                let _ = receiver.receive(input.chunk(), now);
            }
            1 => {
                let seq = input.byte();
                let sender_mtu = mtu_from(input.byte());
                let losses = input.byte();
                let message = input.chunk();
                let Ok(fragments) = ble::fragment(seq, message, sender_mtu) else { continue };
                let fresh = receiver.last_delivered != Some(seq);
                let mut delivered = Vec::new();
                for (index, fragment) in fragments.iter().enumerate() {
                    // Bit i of the pattern: drop (even i) or repeat (odd i) the i-th fragment.
                    let bit = losses & (1 << (index % 8)) != 0;
                    if bit && index % 2 == 0 {
                        continue;
                    }
                    let repeats = if bit { 2 } else { 1 };
                    for _ in 0..repeats {
                        if let Ok(output) = receiver.receive(fragment, now) {
                            delivered.extend(output.delivered);
                        }
                    }
                }
                if losses == 0 && fresh {
                    assert_eq!(delivered, vec![message.to_vec()], "a lossless message is delivered once");
                }
            }
            2 => {
                if let Ok(fragments) = receiver.endpoint.send(input.chunk().to_vec(), now) {
                    check_fragments(&fragments, mtu);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(input.u16()));
                if let Ok(fragments) = receiver.endpoint.handle_timeout(now) {
                    check_fragments(&fragments, mtu);
                }
            }
        }
    }
});
