//! The device agent inside an authenticated session. The target plays the station with the
//! keys and certificate of the vectors (`formats/tests/vectors/sessions.json`): it completes a
//! real Noise handshake with `AgentCore`, then sends session plaintexts from the input
//! encrypted under the session (so they reach `SessionMessage::decode` and the key-delivery
//! logic, which raw bytes never do), raw wire messages, clock steps and keystore failures.
//!
//! Checked: every transport message the device sends decrypts and decodes; a key the device
//! stores is one the station delivered to it; every proof it sends verifies against the key it
//! holds and this session's handshake hash.
//!
//! Input: a mode byte (bit 0: setup-secret handshake; bit 1: the device already holds the
//! vectors' key), then operations, each a byte (modulo 4): `0` a session plaintext (chunk), sent
//! encrypted; `1` a raw wire message (chunk); `2` advance the clock (`u16` ms); `3` the next
//! keystore write fails.
#![no_main]

use keyfill_agent::AgentCore;
use keyfill_agent::driver::{FaultInjection, settle};
use keyfill_agent::keystore::{E4Keys, StoredKey};
use keyfill_formats::message::{
    self, HandshakeMode, MAX_NOISE_MESSAGE, SessionId, SessionMessage, WireBody, WireMessage,
};
use keyfill_formats::proof::{self, ProofPurpose};
use keyfill_formats::{DeviceId, SecretKey};
use keyfill_fuzz::{Input, MemoryKeystore, vectors};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const SESSION: SessionId = SessionId([0x5E; 8]);

struct Station {
    transport: snow::TransportState,
    handshake_hash: Vec<u8>,
}

/// Runs the core's outputs through the driver and returns the wire messages it sends.
fn drive(
    core: &mut AgentCore,
    keystore: &mut MemoryKeystore,
    outputs: Vec<keyfill_agent::AgentOutput>,
) -> Vec<WireMessage> {
    settle(core, outputs, keystore, FaultInjection::None)
        .expect("no fault is injected")
        .iter()
        .map(|bytes| WireMessage::decode(bytes).expect("the device sends well-formed wire messages"))
        .collect()
}

fn handshake(core: &mut AgentCore, keystore: &mut MemoryKeystore, mode: HandshakeMode, now: Instant) -> Station {
    let v = vectors::sessions();
    let params = mode.noise_pattern().parse().expect("a valid Noise pattern");
    let prologue = message::noise_prologue(mode, &v.device_id, &SESSION);
    let psk = proof::setup_psk(&v.setup_secret, &v.device_id);
    let builder = snow::Builder::new(params)
        .prologue(&prologue)
        .and_then(|b| b.local_private_key(&v.station_static_private))
        .expect("valid station keys");
    let builder = match mode {
        HandshakeMode::Identity => builder.remote_public_key(&v.device_static_public),
        HandshakeMode::SetupSecret => builder.psk(3, &psk),
    };
    let mut noise = builder.and_then(|b| b.build_initiator()).expect("an initiator");
    let mut buffer = vec![0u8; 2048];
    let len = noise.write_message(&[], &mut buffer).expect("message 1");
    let init = WireMessage::new(SESSION, WireBody::HandshakeInit { mode, noise: buffer[..len].to_vec() });
    let outputs = core.handle_message(&init.encode().expect("fits"), now, v.unix_now);
    let sent = drive(core, keystore, outputs);
    let [WireMessage { body: WireBody::HandshakeReply { noise: reply }, .. }] = &sent[..] else {
        panic!("the device answers the vector handshake");
    };
    let mut payload = vec![0u8; 2048];
    noise.read_message(reply, &mut payload).expect("message 2 reads");
    let len = noise.write_message(&v.certificate, &mut buffer).expect("message 3");
    let finish = WireMessage::new(SESSION, WireBody::HandshakeFinish { noise: buffer[..len].to_vec() });
    let outputs = core.handle_message(&finish.encode().expect("fits"), now, v.unix_now);
    let handshake_hash = noise.get_handshake_hash().to_vec();
    let mut station = Station { transport: noise.into_transport_mode().expect("handshake done"), handshake_hash };
    let ready = station.receive(&drive(core, keystore, outputs));
    assert_eq!(
        ready,
        vec![SessionMessage::DeviceReady { device_id: v.device_id }],
        "the device accepts the vector station"
    );
    station
}

impl Station {
    /// Decrypts the device's transport messages (aborts in plaintext are skipped).
    fn receive(&mut self, messages: &[WireMessage]) -> Vec<SessionMessage> {
        let mut plaintext = vec![0u8; 2048];
        messages
            .iter()
            .filter_map(|message| match &message.body {
                WireBody::Transport { ciphertext } => Some(ciphertext),
                _ => None,
            })
            .map(|ciphertext| {
                let len =
                    self.transport.read_message(ciphertext, &mut plaintext).expect("the device's messages decrypt");
                SessionMessage::decode(&plaintext[..len]).expect("the device's session messages decode")
            })
            .collect()
    }

    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut ciphertext = vec![0u8; plaintext.len() + 16];
        let len = self.transport.write_message(plaintext, &mut ciphertext).expect("fits a Noise message");
        ciphertext.truncate(len);
        WireMessage::new(SESSION, WireBody::Transport { ciphertext }).encode().expect("fits a wire message")
    }
}

/// A proof from the device must verify against the key it stores for `key_id`.
fn check_proof(
    keystore: &MemoryKeystore,
    hash: &[u8],
    purpose: ProofPurpose,
    device: &DeviceId,
    key_id: &[u8; 16],
    proof: &[u8; 32],
) {
    let stored = keystore.key.as_ref().expect("a device proves only a key it holds");
    assert_eq!(&stored.key_id, key_id, "the proof names the key the device holds");
    assert!(
        proof::verify_possession_proof(purpose, &stored.key, hash, device, key_id, proof),
        "the device's proof verifies"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = vectors::sessions();
    let flags = input.byte();
    let mode = if flags & 1 == 0 { HandshakeMode::Identity } else { HandshakeMode::SetupSecret };
    let held = (flags & 2 != 0).then(|| StoredKey {
        key_id: v.key_id,
        key: SecretKey::from_bytes(v.delivered_key),
        station_id: v.station_id,
        issued_at: v.issued_at,
        e4: E4Keys::default(),
    });
    let mut keystore = MemoryKeystore { key: held.clone(), fail_next: false };
    let mut core = AgentCore::new(v.device_identity(mode), held);
    let mut now = Instant::now();
    let mut station = handshake(&mut core, &mut keystore, mode, now);
    let mut delivered: Vec<(SecretKey, [u8; 16])> = Vec::new();
    while !input.is_empty() {
        let outputs = match input.byte() % 4 {
            0 => {
                let plaintext = input.chunk();
                let plaintext = &plaintext[..plaintext.len().min(MAX_NOISE_MESSAGE - 16)];
                if let Ok(SessionMessage::KeyDelivery(delivery)) = SessionMessage::decode(plaintext)
                    && delivery.device_id == v.device_id
                    && delivery.station_id == v.station_id
                {
                    delivered.push((delivery.key.clone(), delivery.key_id));
                }
                let wire = station.seal(plaintext);
                core.handle_message(&wire, now, v.unix_now)
            }
            1 => core.handle_message(input.chunk(), now, v.unix_now),
            2 => {
                now += Duration::from_millis(u64::from(input.u16()));
                core.handle_timeout(now)
            }
            _ => {
                keystore.fail_next = true;
                Vec::new()
            }
        };
        let sent = drive(&mut core, &mut keystore, outputs);
        for reply in station.receive(&sent) {
            match reply {
                SessionMessage::KeyConfirmation { device_id, key_id, proof } => check_proof(
                    &keystore,
                    &station.handshake_hash,
                    ProofPurpose::Confirmation,
                    &device_id,
                    &key_id,
                    &proof,
                ),
                SessionMessage::KeyStatusReply { device_id, key_id, proof: Some(proof) } => {
                    check_proof(&keystore, &station.handshake_hash, ProofPurpose::Status, &device_id, &key_id, &proof)
                }
                _ => {}
            }
        }
        if let Some(stored) = &keystore.key {
            let known = (flags & 2 != 0 && stored.key_id == v.key_id)
                || delivered.iter().any(|(key, key_id)| key == &stored.key && key_id == &stored.key_id);
            assert!(known, "the device stores only a key the station delivered");
        }
    }
});
