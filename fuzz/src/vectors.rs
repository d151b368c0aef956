//! The fixed keys and certificates of the repository's test vectors (published test keys), read
//! from the vector files themselves so that the targets and the known-answer tests never
//! disagree: `formats/tests/vectors/sessions.json` for the provisioning protocol and
//! `c2-bundle.json` for export bundles.

use keyfill_agent::identity::{DeviceCredential, DeviceIdentity, x25519_public_key};
use keyfill_formats::message::HandshakeMode;
use keyfill_formats::qr::{self, OnboardingPayload, SetupSecret, TransportHints};
use keyfill_formats::{DeviceId, DeviceName, SecretKey};
use serde_json::Value;
use std::sync::OnceLock;

const SESSIONS: &str = include_str!("../../formats/tests/vectors/sessions.json");
const C2_BUNDLE: &str = include_str!("../../formats/tests/vectors/c2-bundle.json");
/// The bundle of the vectors, for the targets' own checks.
pub const C2_BUNDLE_FILE: &[u8] = include_bytes!("../../formats/tests/vectors/c2-bundle.kfb");

fn hex_bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("a hex string in the vectors")).expect("valid hex in the vectors")
}

fn hex_array<const N: usize>(value: &Value) -> [u8; N] {
    hex_bytes(value).try_into().expect("the vector's length")
}

/// The provisioning session vectors: one device, one station, one factory root.
#[derive(Debug)]
pub struct Sessions {
    pub device_name: DeviceName,
    pub device_id: DeviceId,
    pub device_static_private: [u8; 32],
    pub device_static_public: [u8; 32],
    pub setup_secret: [u8; 16],
    pub station_static_private: [u8; 32],
    /// The station certificate, signed by the factory root, valid around `unix_now`.
    pub certificate: Vec<u8>,
    pub factory_root_public: [u8; 32],
    pub station_id: [u8; 16],
    pub key_id: [u8; 16],
    pub delivered_key: [u8; 32],
    pub issued_at: u64,
    pub unix_now: u64,
}

pub fn sessions() -> &'static Sessions {
    static SESSIONS_VECTORS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS_VECTORS.get_or_init(|| {
        let document: Value = serde_json::from_str(SESSIONS).expect("the session vectors are JSON");
        let inputs = &document["inputs"];
        let session = &document["sessions"][0];
        let name = session["device_name"].as_str().expect("a device name");
        let device_static_private = hex_array(&inputs["device_static_private"]);
        Sessions {
            device_name: DeviceName::parse(name).expect("the vectors' device name is valid"),
            device_id: DeviceId::from_name(name),
            device_static_public: x25519_public_key(&SecretKey::from_bytes(device_static_private)),
            device_static_private,
            setup_secret: hex_array(&inputs["setup_secret"]),
            station_static_private: hex_array(&inputs["station_static_private"]),
            certificate: hex_bytes(&session["certificate"]),
            factory_root_public: hex_array(&session["factory_root_public"]),
            station_id: hex_array(&inputs["station_id"]),
            key_id: hex_array(&inputs["key_id"]),
            delivered_key: hex_array(&inputs["delivered_key"]),
            issued_at: inputs["issued_at"].as_u64().expect("issued_at"),
            unix_now: inputs["unix_now"].as_u64().expect("unix_now"),
        }
    })
}

impl Sessions {
    /// The device of the vectors, authenticating in `mode`.
    pub fn device_identity(&self, mode: HandshakeMode) -> DeviceIdentity {
        let credential = match mode {
            HandshakeMode::Identity => DeviceCredential::Identity {
                private_key: SecretKey::from_bytes(self.device_static_private),
                public_key: self.device_static_public,
            },
            HandshakeMode::SetupSecret => DeviceCredential::SetupSecret(SetupSecret(self.setup_secret)),
        };
        DeviceIdentity {
            name: self.device_name.clone(),
            device_id: self.device_id,
            serial_number: "SN-FUZZ".into(),
            credential,
            factory_root: self.factory_root_public,
            hints: TransportHints::default(),
        }
    }

    /// The device's label, as the station reads it, for `mode`.
    pub fn device_payload(&self, mode: HandshakeMode) -> OnboardingPayload {
        let credential = match mode {
            HandshakeMode::Identity => qr::DeviceCredential::Identity { public_key: self.device_static_public },
            HandshakeMode::SetupSecret => qr::DeviceCredential::SetupSecret(SetupSecret(self.setup_secret)),
        };
        OnboardingPayload::new(self.device_name.clone(), "SN-FUZZ", credential)
    }
}

/// The export-bundle vectors: signer, recipient, factory root, and the importer's clock.
#[derive(Debug)]
pub struct Bundles {
    pub signer_pkcs8: Vec<u8>,
    pub signer_certificate: Vec<u8>,
    pub factory_root_public: [u8; 32],
    pub recipient_private: [u8; 32],
    pub recipient_public: [u8; 32],
    pub station_id: [u8; 16],
    pub station_name: String,
    pub created_at_ms: u64,
    pub open_at_ms: u64,
    pub ephemeral_ikm: [u8; 32],
}

pub fn bundles() -> &'static Bundles {
    static BUNDLE_VECTORS: OnceLock<Bundles> = OnceLock::new();
    BUNDLE_VECTORS.get_or_init(|| {
        let document: Value = serde_json::from_str(C2_BUNDLE).expect("the bundle vectors are JSON");
        let inputs = &document["inputs"];
        Bundles {
            signer_pkcs8: hex_bytes(&inputs["signer_pkcs8"]),
            signer_certificate: hex_bytes(&document["signer_certificate"]),
            factory_root_public: hex_array(&document["factory_root_public"]),
            recipient_private: hex_array(&inputs["recipient_private"]),
            recipient_public: hex_array(&inputs["recipient_public"]),
            station_id: hex_array(&inputs["station_id"]),
            station_name: inputs["station_name"].as_str().expect("a station name").to_owned(),
            created_at_ms: inputs["created_at_ms"].as_u64().expect("created_at_ms"),
            open_at_ms: inputs["open_at_ms"].as_u64().expect("open_at_ms"),
            ephemeral_ikm: hex_array(&inputs["ephemeral_ikm"]),
        }
    })
}
