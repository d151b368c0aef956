//! The device agent's protocol core, `AgentCore::handle_message`, fed a sequence of arbitrary
//! wire messages (one frame's payload each) with clock steps between them, as on any link.
//! The device of the vectors answers (`formats/tests/vectors/sessions.json`), so a vector
//! `HandshakeInit` in the seeds starts a real handshake. Checked: everything the device sends
//! is a well-formed wire message.
//!
//! Input: a mode byte (bit 0: setup-secret device; bit 1: already holds a key), then
//! operations, each a byte (modulo 2): `0` a wire message (chunk); `1` advance the clock
//! (`u16` ms) and handle the timeout. `agent_session` fuzzes the messages inside a completed
//! handshake.
#![no_main]

use keyfill_agent::AgentCore;
use keyfill_agent::driver::{FaultInjection, settle};
use keyfill_agent::keystore::{E4Keys, StoredKey};
use keyfill_formats::SecretKey;
use keyfill_formats::message::{HandshakeMode, WireMessage};
use keyfill_fuzz::{Input, MemoryKeystore, vectors};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let vectors = vectors::sessions();
    let flags = input.byte();
    let mode = if flags & 1 == 0 { HandshakeMode::Identity } else { HandshakeMode::SetupSecret };
    let stored = (flags & 2 != 0).then(|| StoredKey {
        key_id: vectors.key_id,
        key: SecretKey::from_bytes(vectors.delivered_key),
        station_id: vectors.station_id,
        issued_at: vectors.issued_at,
        e4: E4Keys::default(),
    });
    let mut core = AgentCore::new(vectors.device_identity(mode), stored);
    let mut keystore = MemoryKeystore::default();
    let mut now = Instant::now();
    while !input.is_empty() {
        let outputs = match input.byte() % 2 {
            0 => core.handle_message(input.chunk(), now, vectors.unix_now),
            _ => {
                now += Duration::from_millis(u64::from(input.u16()));
                core.handle_timeout(now)
            }
        };
        let transmit = settle(&mut core, outputs, &mut keystore, FaultInjection::None).expect("no fault is injected");
        for message in transmit {
            assert!(WireMessage::decode(&message).is_ok(), "the device sends well-formed wire messages");
        }
    }
});
