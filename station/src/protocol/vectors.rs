//! The station session against transcripts computed by independent implementations
//! (tools/vectors/generate.py: noiseprotocol, cbor2, cryptography): given the device's messages
//! and the same fixed keys, the session must send exactly the recorded bytes and accept the
//! recorded confirmation.

use super::{Request, SessionOutcome, SessionTimeouts, StationCredentials, StationSession};
use keyfill_formats::message::{KeyDelivery, KeyKind, SessionId};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload, SetupSecret, TransportHints};
use keyfill_formats::{DeviceId, SecretKey};
use serde_json::Value;
use std::time::Instant;

const VECTORS: &str = include_str!("../../../formats/tests/vectors/sessions.json");

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("hex string")).expect("valid hex")
}

fn array<const N: usize>(value: &Value) -> [u8; N] {
    bytes(value).try_into().expect("length")
}

#[test]
fn station_session_reproduces_independent_session_transcripts() {
    let document: Value = serde_json::from_str(VECTORS).expect("vector file");
    let inputs = &document["inputs"];
    for session in document["sessions"].as_array().expect("sessions") {
        let name = session["device_name"].as_str().expect("name");
        let device_id = DeviceId::from_name(name);
        let credential = match session["mode"].as_u64() {
            Some(1) => {
                let device_private = SecretKey::from_bytes(array(&inputs["device_static_private"]));
                DeviceCredential::Identity { public_key: keyfill_agent::identity::x25519_public_key(&device_private) }
            }
            _ => DeviceCredential::SetupSecret(SetupSecret(array(&inputs["setup_secret"]))),
        };
        let payload = OnboardingPayload {
            name: name.try_into().expect("the vectors' names are valid"),
            device_id,
            serial_number: "SN-VECTOR".into(),
            credential,
            hints: TransportHints::default(),
            model: None,
        };
        let credentials = StationCredentials::in_memory(
            SecretKey::from_bytes(array(&inputs["station_static_private"])),
            bytes(&session["certificate"]),
        );
        let delivery = KeyDelivery {
            device_id,
            key_id: array(&inputs["key_id"]),
            key: SecretKey::from_bytes(array(&inputs["delivered_key"])),
            kind: KeyKind::E4SymmetricClientKey,
            issued_at: inputs["issued_at"].as_u64().expect("issued_at"),
            station_id: array(&inputs["station_id"]),
        };
        let wire: Vec<Vec<u8>> =
            session["messages"].as_array().expect("messages").iter().map(|m| bytes(&m["wire"])).collect();
        let now = Instant::now();
        let ephemeral = array::<32>(&inputs["station_ephemeral_private"]);
        let session_id = SessionId(array(&inputs["session_id"]));
        let (mut station, first) = StationSession::start_with(
            &credentials,
            &payload,
            Request::Deliver(delivery),
            session_id,
            SessionTimeouts::default(),
            now,
            Some(&ephemeral),
        )
        .expect("start");
        assert_eq!(first, wire[0], "handshake init, mode {}", session["mode"]);
        let step = station.handle_message(&wire[1], now).expect("reply accepted");
        assert_eq!((step.transmit, step.outcome), (vec![wire[2].clone()], None), "finish, mode {}", session["mode"]);
        let step = station.handle_message(&wire[3], now).expect("ready accepted");
        assert_eq!((step.transmit, step.outcome), (vec![wire[4].clone()], None), "delivery, mode {}", session["mode"]);
        let step = station.handle_message(&wire[5], now).expect("confirmation accepted");
        assert!(step.transmit.is_empty() && step.dropped.is_none());
        assert_eq!(step.outcome, Some(SessionOutcome::Confirmed { key_id: array(&inputs["key_id"]) }));
    }
}
