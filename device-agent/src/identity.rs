//! The device's identity: name, id, credential and the pinned factory root public key.

use keyfill_formats::qr::{self, OnboardingPayload, SetupSecret, TransportHints};
use keyfill_formats::{DeviceId, DeviceName, NameError, SecretKey};
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

/// How the device authenticates itself.
#[derive(Clone, Debug)]
pub enum DeviceCredential {
    /// Static X25519 key pair (Noise XK responder).
    Identity { private_key: SecretKey, public_key: [u8; 32] },
    /// Setup secret printed on the label (Noise XNpsk3 responder).
    SetupSecret(SetupSecret),
}

#[derive(Clone, Debug)]
pub struct DeviceIdentity {
    pub name: DeviceName,
    pub device_id: DeviceId,
    pub serial_number: String,
    pub credential: DeviceCredential,
    /// The factory root's Ed25519 public key, the only authority the agent accepts.
    pub factory_root: [u8; 32],
    pub hints: TransportHints,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("{0}")]
    InvalidName(#[from] NameError),
    #[error("cannot read identity file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("identity file {path} is malformed: {reason}")]
    Malformed { path: String, reason: String },
    #[error("cannot encode the identity: {0}")]
    Encode(String),
    #[error("cannot generate key: {0}")]
    KeyGeneration(String),
}

/// On-disk form of the identity (mode 0600 on the device).
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    version: u32,
    name: String,
    serial_number: String,
    mode: String,
    #[serde(default)]
    private_key: Option<String>,
    #[serde(default)]
    setup_secret: Option<String>,
    factory_root: String,
    #[serde(default)]
    serial_hint: bool,
}

fn random_bytes<const N: usize>() -> Result<[u8; N], IdentityError> {
    let mut out = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out)
        .map_err(|_| IdentityError::KeyGeneration("system random source failed".into()))?;
    Ok(out)
}

fn hex_array<const N: usize>(text: &str, path: &str, field: &str) -> Result<[u8; N], IdentityError> {
    let bytes = hex::decode(text)
        .map_err(|_| IdentityError::Malformed { path: path.into(), reason: format!("{field} is not hex") })?;
    bytes
        .try_into()
        .map_err(|_| IdentityError::Malformed { path: path.into(), reason: format!("{field} must be {N} bytes") })
}

impl DeviceIdentity {
    /// Creates a new identity with a fresh static key (`identity` mode) or setup secret.
    pub fn generate(
        name: DeviceName,
        serial_number: &str,
        factory_root: [u8; 32],
        secret_mode: bool,
    ) -> Result<Self, IdentityError> {
        let credential = if secret_mode {
            DeviceCredential::SetupSecret(SetupSecret(random_bytes::<16>()?))
        } else {
            let params = keyfill_formats::message::HandshakeMode::Identity
                .noise_pattern()
                .parse()
                .map_err(|e: snow::Error| IdentityError::KeyGeneration(e.to_string()))?;
            let keypair = snow::Builder::new(params)
                .generate_keypair()
                .map_err(|e| IdentityError::KeyGeneration(e.to_string()))?;
            let private_key = SecretKey::from_slice(&keypair.private)
                .ok_or_else(|| IdentityError::KeyGeneration("unexpected key length".into()))?;
            let public_key: [u8; 32] = keypair
                .public
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::KeyGeneration("unexpected key length".into()))?;
            DeviceCredential::Identity { private_key, public_key }
        };
        Ok(DeviceIdentity {
            device_id: name.device_id(),
            name,
            serial_number: serial_number.to_owned(),
            credential,
            factory_root,
            hints: TransportHints { serial: true, ..TransportHints::default() },
        })
    }

    /// The payload printed on this device's label.
    pub fn onboarding_payload(&self) -> OnboardingPayload {
        let credential = match &self.credential {
            DeviceCredential::Identity { public_key, .. } => qr::DeviceCredential::Identity { public_key: *public_key },
            DeviceCredential::SetupSecret(secret) => qr::DeviceCredential::SetupSecret(secret.clone()),
        };
        let mut payload = OnboardingPayload::new(self.name.clone(), &self.serial_number, credential);
        payload.hints = self.hints.clone();
        payload
    }

    pub fn to_json(&self) -> Result<String, IdentityError> {
        let (mode, private_key, setup_secret) = match &self.credential {
            DeviceCredential::Identity { private_key, .. } => {
                ("identity", Some(hex::encode(private_key.expose())), None)
            }
            DeviceCredential::SetupSecret(secret) => ("secret", None, Some(hex::encode(secret.0))),
        };
        let file = IdentityFile {
            version: 1,
            name: self.name.as_str().to_owned(),
            serial_number: self.serial_number.clone(),
            mode: mode.into(),
            private_key,
            setup_secret,
            factory_root: hex::encode(self.factory_root),
            serial_hint: self.hints.serial,
        };
        serde_json::to_string_pretty(&file).map_err(|e| IdentityError::Encode(e.to_string()))
    }

    pub fn from_json(text: &str, path: &Path) -> Result<Self, IdentityError> {
        let path_text = path.display().to_string();
        let malformed = |reason: String| IdentityError::Malformed { path: path_text.clone(), reason };
        let file: IdentityFile = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
        if file.version != 1 {
            return Err(malformed(format!("unsupported version {}", file.version)));
        }
        // An identity written before the name rules may hold a name C2 cannot address.
        let name = DeviceName::try_from(file.name).map_err(|error| {
            malformed(format!("{error}; initialise the device again (`keyfill-agent init --force`) with a valid name"))
        })?;
        let credential = match (file.mode.as_str(), &file.private_key, &file.setup_secret) {
            ("identity", Some(private_hex), None) => {
                let private_key = SecretKey::from_bytes(hex_array::<32>(private_hex, &path_text, "private_key")?);
                let public_key = x25519_public_key(&private_key);
                DeviceCredential::Identity { private_key, public_key }
            }
            ("secret", None, Some(secret_hex)) => {
                DeviceCredential::SetupSecret(SetupSecret(hex_array::<16>(secret_hex, &path_text, "setup_secret")?))
            }
            _ => {
                return Err(malformed("mode must be identity (with private_key) or secret (with setup_secret)".into()));
            }
        };
        Ok(DeviceIdentity {
            device_id: name.device_id(),
            name,
            serial_number: file.serial_number,
            credential,
            factory_root: hex_array::<32>(&file.factory_root, &path_text, "factory_root")?,
            hints: TransportHints { serial: file.serial_hint, ..TransportHints::default() },
        })
    }
}

/// The X25519 public key of a private key, computed with snow's own curve implementation so
/// the identity file need not store it.
pub fn x25519_public_key(private_key: &SecretKey) -> [u8; 32] {
    use snow::params::DHChoice;
    use snow::resolvers::{CryptoResolver, DefaultResolver};
    let mut public = [0u8; 32];
    if let Some(mut dh) = DefaultResolver.resolve_dh(&DHChoice::Curve25519) {
        dh.set(private_key.expose());
        public.copy_from_slice(dh.pubkey());
    }
    public
}
