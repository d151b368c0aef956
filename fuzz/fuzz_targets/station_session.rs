//! The station inside an authenticated session. The target plays the device of the vectors
//! (`formats/tests/vectors/sessions.json`): it answers the `StationSession`'s handshake with a
//! real Noise responder, then sends session plaintexts from the input encrypted under the
//! session (so they reach the station's `SessionMessage::decode` and its proof checks), raw wire
//! messages, clock steps, and correctly proved answers.
//!
//! Checked: the station sends its request only after the device said it is ready, and the
//! request is the one it was given; it reports a key confirmed or held only after a proof that
//! verifies was sent.
//!
//! Input: a mode byte (bit 0: setup-secret handshake; bit 1: a key status query instead of a
//! key delivery), then operations, each a byte (modulo 4): `0` a session plaintext (chunk),
//! sent encrypted; `1` a raw wire message (chunk); `2` advance the clock (`u16` ms) and handle
//! the timeout; `3` the correctly proved answer to the request (flag byte: bit 0 for a status
//! query, claim the key is not held).
#![no_main]

use keyfill_formats::SecretKey;
use keyfill_formats::message::{
    self, HandshakeMode, KeyDelivery, KeyKind, MAX_NOISE_MESSAGE, SessionId, SessionMessage, WireBody, WireMessage,
};
use keyfill_formats::proof::{self, ProofPurpose};
use keyfill_fuzz::{Input, vectors};
use keyfill_station::protocol::{Request, SessionOutcome, SessionTimeouts, StationCredentials, StationSession};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

const SESSION: SessionId = SessionId([0x5E; 8]);

struct Device {
    transport: snow::TransportState,
    handshake_hash: Vec<u8>,
}

impl Device {
    fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut ciphertext = vec![0u8; plaintext.len() + 16];
        let len = self.transport.write_message(plaintext, &mut ciphertext).expect("fits a Noise message");
        ciphertext.truncate(len);
        WireMessage::new(SESSION, WireBody::Transport { ciphertext }).encode().expect("fits a wire message")
    }

    fn open(&mut self, wire: &[u8]) -> SessionMessage {
        let WireBody::Transport { ciphertext } = WireMessage::decode(wire).expect("the station's messages decode").body
        else {
            panic!("after the handshake the station sends only transport messages");
        };
        let mut plaintext = vec![0u8; 2048];
        let len = self.transport.read_message(&ciphertext, &mut plaintext).expect("the station's messages decrypt");
        SessionMessage::decode(&plaintext[..len]).expect("the station's session messages decode")
    }
}

fn handshake(station: &mut StationSession, init: &[u8], mode: HandshakeMode, now: Instant) -> Device {
    let v = vectors::sessions();
    let params = mode.noise_pattern().parse().expect("a valid Noise pattern");
    let prologue = message::noise_prologue(mode, &v.device_id, &SESSION);
    let psk = proof::setup_psk(&v.setup_secret, &v.device_id);
    let builder = snow::Builder::new(params).prologue(&prologue).expect("a prologue");
    let builder = match mode {
        HandshakeMode::Identity => builder.local_private_key(&v.device_static_private),
        HandshakeMode::SetupSecret => builder.psk(3, &psk),
    };
    let mut noise = builder.and_then(|b| b.build_responder()).expect("a responder");
    let WireBody::HandshakeInit { noise: first, .. } = WireMessage::decode(init).expect("a wire message").body else {
        panic!("the station starts with a handshake init");
    };
    let mut buffer = vec![0u8; 2048];
    noise.read_message(&first, &mut buffer).expect("message 1 reads");
    let len = noise.write_message(&[], &mut buffer).expect("message 2");
    let reply = WireMessage::new(SESSION, WireBody::HandshakeReply { noise: buffer[..len].to_vec() });
    let step = station.handle_message(&reply.encode().expect("fits"), now).expect("the station takes the reply");
    let [finish] = &step.transmit[..] else { panic!("the station finishes the handshake") };
    let WireBody::HandshakeFinish { noise: third } = WireMessage::decode(finish).expect("a wire message").body else {
        panic!("the station sends handshake message 3");
    };
    let mut payload = vec![0u8; 2048];
    let len = noise.read_message(&third, &mut payload).expect("message 3 reads");
    assert_eq!(&payload[..len], &v.certificate[..], "the station presents its certificate");
    let handshake_hash = noise.get_handshake_hash().to_vec();
    Device { transport: noise.into_transport_mode().expect("handshake done"), handshake_hash }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let v = vectors::sessions();
    let flags = input.byte();
    let mode = if flags & 1 == 0 { HandshakeMode::Identity } else { HandshakeMode::SetupSecret };
    let key = SecretKey::from_bytes(v.delivered_key);
    let request = if flags & 2 == 0 {
        Request::Deliver(KeyDelivery {
            device_id: v.device_id,
            key_id: v.key_id,
            key: key.clone(),
            kind: KeyKind::E4SymmetricClientKey,
            issued_at: v.issued_at,
            station_id: v.station_id,
        })
    } else {
        Request::QueryKey { key_id: v.key_id, key: key.clone() }
    };
    let credentials =
        StationCredentials::in_memory(SecretKey::from_bytes(v.station_static_private), v.certificate.clone());
    let mut now = Instant::now();
    let (mut station, init) = StationSession::start(
        &credentials,
        &v.device_payload(mode),
        request.clone(),
        SESSION,
        SessionTimeouts::default(),
        now,
    )
    .expect("the vector session starts");
    let mut device = handshake(&mut station, &init, mode, now);
    let confirmation =
        proof::possession_proof(ProofPurpose::Confirmation, &key, &device.handshake_hash, &v.device_id, &v.key_id);
    let status = proof::possession_proof(ProofPurpose::Status, &key, &device.handshake_hash, &v.device_id, &v.key_id);
    let mut ready_sent = false;
    let mut proved = false;
    while !input.is_empty() {
        let result = match input.byte() % 4 {
            0 => {
                let plaintext = input.chunk();
                let plaintext = &plaintext[..plaintext.len().min(MAX_NOISE_MESSAGE - 16)];
                match SessionMessage::decode(plaintext) {
                    Ok(SessionMessage::DeviceReady { device_id }) if device_id == v.device_id => ready_sent = true,
                    Ok(SessionMessage::KeyConfirmation { proof, .. }) if proof == confirmation => proved = true,
                    Ok(SessionMessage::KeyStatusReply { proof: Some(proof), .. }) if proof == status => proved = true,
                    _ => {}
                }
                let wire = device.seal(plaintext);
                station.handle_message(&wire, now)
            }
            1 => station.handle_message(input.chunk(), now),
            2 => {
                now += Duration::from_millis(u64::from(input.u16()));
                station.handle_timeout(now).map(|()| Default::default())
            }
            _ => {
                let not_held = input.byte() & 1 != 0;
                let answer = match &request {
                    Request::Deliver(_) => SessionMessage::KeyConfirmation {
                        device_id: v.device_id,
                        key_id: v.key_id,
                        proof: confirmation,
                    },
                    Request::QueryKey { .. } => SessionMessage::KeyStatusReply {
                        device_id: v.device_id,
                        key_id: v.key_id,
                        proof: (!not_held).then_some(status),
                    },
                };
                // A confirmation always carries the valid proof; only a status reply can say
                // "not held".
                proved |= matches!(request, Request::Deliver(_)) || !not_held;
                let wire = device.seal(&answer.encode().expect("encodes"));
                station.handle_message(&wire, now)
            }
        };
        let Ok(step) = result else { continue };
        for wire in &step.transmit {
            let sent = device.open(wire);
            assert!(ready_sent, "the station sends its request only after the device is ready");
            match (&request, sent) {
                (Request::Deliver(delivery), SessionMessage::KeyDelivery(sent)) => assert_eq!(&sent, delivery),
                (Request::QueryKey { key_id, .. }, SessionMessage::KeyStatusQuery { key_id: asked, device_id }) => {
                    assert_eq!((asked, device_id), (*key_id, v.device_id));
                }
                (_, other) => panic!("the station sent {other:?} instead of its request"),
            }
        }
        match step.outcome {
            Some(SessionOutcome::Confirmed { .. } | SessionOutcome::KeyHeld { .. }) => {
                assert!(proved, "the station accepts a key only on a proof that verifies");
            }
            Some(SessionOutcome::KeyNotHeld { .. }) | None => {}
        }
    }
});
