//! The agent core against transcripts computed by independent implementations
//! (tools/vectors/generate.py: noiseprotocol, cbor2, cryptography): given the station's
//! messages and the same fixed keys, the core must answer with exactly the recorded bytes.

use super::{AgentCore, AgentOutput};
use crate::identity::{DeviceCredential, DeviceIdentity, x25519_public_key};
use keyfill_formats::qr::{SetupSecret, TransportHints};
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

fn transmits(outputs: &[AgentOutput]) -> Vec<Vec<u8>> {
    outputs.iter().filter_map(|o| if let AgentOutput::Transmit(b) = o { Some(b.clone()) } else { None }).collect()
}

#[test]
fn agent_core_reproduces_independent_session_transcripts() {
    let document: Value = serde_json::from_str(VECTORS).expect("vector file");
    let inputs = &document["inputs"];
    let unix_now = inputs["unix_now"].as_u64().expect("unix_now");
    let sessions = document["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2);
    for session in sessions {
        let name = session["device_name"].as_str().expect("name");
        let credential = match session["mode"].as_u64() {
            Some(1) => {
                let private_key = SecretKey::from_bytes(array(&inputs["device_static_private"]));
                let public_key = x25519_public_key(&private_key);
                DeviceCredential::Identity { private_key, public_key }
            }
            _ => DeviceCredential::SetupSecret(SetupSecret(array(&inputs["setup_secret"]))),
        };
        let identity = DeviceIdentity {
            name: name.try_into().expect("the vectors' names are valid"),
            device_id: DeviceId::from_name(name),
            serial_number: "SN-VECTOR".into(),
            credential,
            factory_root: array(&session["factory_root_public"]),
            hints: TransportHints::default(),
        };
        assert_eq!(identity.device_id.to_hex(), session["device_id"].as_str().expect("id"));
        let mut core = AgentCore::new(identity, None);
        core.test_ephemeral = Some(array(&inputs["device_ephemeral_private"]));
        let wire: Vec<Vec<u8>> =
            session["messages"].as_array().expect("messages").iter().map(|m| bytes(&m["wire"])).collect();
        let now = Instant::now();

        let reply = core.handle_message(&wire[0], now, unix_now);
        assert_eq!(transmits(&reply), vec![wire[1].clone()], "handshake reply, mode {}", session["mode"]);
        let ready = core.handle_message(&wire[2], now, unix_now);
        assert_eq!(transmits(&ready), vec![wire[3].clone()], "device ready, mode {}", session["mode"]);
        let delivery = core.handle_message(&wire[4], now, unix_now);
        let stored = delivery
            .into_iter()
            .find_map(|o| if let AgentOutput::Persist(record) = o { Some(record) } else { None })
            .expect("the core asks to persist the delivered key");
        assert_eq!(stored.key, SecretKey::from_bytes(array(&inputs["delivered_key"])));
        assert_eq!(stored.key_id, array::<16>(&inputs["key_id"]));
        assert_eq!(stored.station_id, array::<16>(&inputs["station_id"]));
        let confirmation = core.persisted(Ok(stored));
        assert_eq!(transmits(&confirmation), vec![wire[5].clone()], "key confirmation, mode {}", session["mode"]);
    }
}
