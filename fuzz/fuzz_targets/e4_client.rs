//! The device's E4 client, `E4Client::handle_control`, fed a sequence of control-topic
//! messages. Structure-aware: most are E4 commands protected with the real `protect` under the
//! device's current key, its pending next key or a stranger's key, stamped around the device's
//! clock; the rest are raw bytes, clock steps and application messages on topics.
//!
//! Checked after every step: no key the client holds is all zero, and every confirmation it
//! publishes opens under the key it confirms and names exactly that key.
//!
//! Input: the grace period (`u16` s), then operations, each a byte (modulo 5): `0`/`1`/`2` a
//! command under the current / next / a stranger's key: stamp offset (`i16` LE s), chunk;
//! `3` raw bytes (chunk); `4` advance the clock (`u16` s) and handle the timeout, then open a
//! message on a topic: topic chunk, protected chunk.
#![no_main]

use keyfill_agent::e4client::{E4Client, E4Output};
use keyfill_agent::keystore::{E4Keys, StoredKey};
use keyfill_formats::SecretKey;
use keyfill_formats::e4::keyfill::{CONFIRM_TOPIC_PREFIX, Confirmation};
use keyfill_formats::e4::{self, TimestampPolicy};
use keyfill_fuzz::{Input, vectors};
use libfuzzer_sys::fuzz_target;

const START: u64 = 1_800_000_000;
const STRANGER: [u8; 32] = [0xEE; 32];

fn check(client: &E4Client, outputs: &[E4Output]) {
    let state = client.state();
    assert!(!state.key.is_all_zero(), "the current key is never all zero");
    if let Some(next) = &state.e4.next {
        assert!(!next.key.is_all_zero(), "the next key is never all zero");
    }
    assert!(state.e4.topic_keys.values().all(|key| !key.is_all_zero()), "no topic key is all zero");
    for output in outputs {
        let E4Output::Publish { topic, payload } = output else { continue };
        if !topic.starts_with(CONFIRM_TOPIC_PREFIX) {
            continue;
        }
        let held = std::iter::once(&state.key).chain(state.e4.next.as_ref().map(|next| &next.key));
        let confirms = held.into_iter().any(|key| {
            e4::unprotect(key, payload, 0, TimestampPolicy::ANY)
                .ok()
                .and_then(|plaintext| Confirmation::decode(&plaintext).ok())
                .is_some_and(|confirmation| confirmation.names(key))
        });
        assert!(confirms, "a confirmation opens under, and names, a key the device holds");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let vectors = vectors::sessions();
    let stored = StoredKey {
        key_id: vectors.key_id,
        key: SecretKey::from_bytes(vectors.delivered_key),
        station_id: vectors.station_id,
        issued_at: vectors.issued_at,
        e4: E4Keys::default(),
    };
    let grace = u64::from(input.u16());
    let mut client = E4Client::new(vectors.device_id, stored, grace);
    let mut now = START;
    while !input.is_empty() {
        let outputs = match input.byte() % 5 {
            choice @ 0..=2 => {
                let offset = i64::from(input.u16() as i16);
                let plaintext = input.chunk();
                let key = match choice {
                    0 => client.state().key.clone(),
                    1 => client.state().e4.next.as_ref().map_or(SecretKey::from_bytes(STRANGER), |n| n.key.clone()),
                    _ => SecretKey::from_bytes(STRANGER),
                };
                let stamp = now.saturating_add_signed(offset);
                let protected = e4::protect(&key, stamp, plaintext).expect("a held key is never all zero");
                client.handle_control(&protected, now)
            }
            3 => client.handle_control(input.chunk(), now),
            _ => {
                now += u64::from(input.u16());
                let outputs = client.handle_timeout(now);
                let topic = String::from_utf8_lossy(input.chunk()).into_owned();
                let _ = client.unprotect_message(&topic, input.chunk(), now);
                outputs
            }
        };
        check(&client, &outputs);
    }
});
