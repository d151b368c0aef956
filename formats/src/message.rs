//! Provisioning protocol messages.
//!
//! Two layers, both deterministic CBOR arrays headed by `[version, type, ...]`:
//! - [`WireMessage`]: what travels on the link: Noise handshake messages, Noise transport
//!   ciphertexts, and a plaintext abort (best effort, unauthenticated) when a side ends a session.
//! - [`SessionMessage`]: the plaintext inside a Noise transport message: key delivery, key
//!   confirmation, key status query/reply, abort.
//!
//! Each message type has a hard size bound, checked on encode and decode.

use crate::cbor::{self, CborError, Reader, Writer};
use crate::ids::DeviceId;
use crate::secret::SecretKey;
use thiserror::Error;

pub const PROTOCOL_VERSION: u64 = 1;
/// Largest encoded wire message; it always fits one serial frame.
pub const MAX_WIRE_MESSAGE: usize = 1536;
/// Largest Noise message carried (Noise's own limit is 65535).
pub const MAX_NOISE_MESSAGE: usize = 1400;
/// Largest encoded session message.
pub const MAX_SESSION_MESSAGE: usize = 256;

/// Which Noise pattern the session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeMode {
    /// `Noise_XK_25519_ChaChaPoly_SHA256`: the station knows the device's static key.
    Identity = 1,
    /// `Noise_XNpsk3_25519_ChaChaPoly_SHA256`: the label's setup secret is the PSK.
    SetupSecret = 2,
}

impl HandshakeMode {
    pub fn noise_pattern(self) -> &'static str {
        match self {
            HandshakeMode::Identity => "Noise_XK_25519_ChaChaPoly_SHA256",
            HandshakeMode::SetupSecret => "Noise_XNpsk3_25519_ChaChaPoly_SHA256",
        }
    }
}

/// Why a session was aborted. Unknown codes decode as [`AbortReason::Other`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    Unspecified,
    BadCertificate,
    CertificateExpired,
    WrongDevice,
    StorageFailed,
    ProtocolViolation,
    Timeout,
    Busy,
    UnsupportedVersion,
    HandshakeFailed,
    /// The device already holds a key and does not accept another initial key.
    AlreadyProvisioned,
    Other(u16),
}

impl AbortReason {
    pub fn code(self) -> u16 {
        match self {
            AbortReason::Unspecified => 0,
            AbortReason::BadCertificate => 1,
            AbortReason::CertificateExpired => 2,
            AbortReason::WrongDevice => 3,
            AbortReason::StorageFailed => 4,
            AbortReason::ProtocolViolation => 5,
            AbortReason::Timeout => 6,
            AbortReason::Busy => 7,
            AbortReason::UnsupportedVersion => 8,
            AbortReason::HandshakeFailed => 9,
            AbortReason::AlreadyProvisioned => 10,
            AbortReason::Other(code) => code,
        }
    }

    pub fn from_code(code: u16) -> Self {
        match code {
            0 => AbortReason::Unspecified,
            1 => AbortReason::BadCertificate,
            2 => AbortReason::CertificateExpired,
            3 => AbortReason::WrongDevice,
            4 => AbortReason::StorageFailed,
            5 => AbortReason::ProtocolViolation,
            6 => AbortReason::Timeout,
            7 => AbortReason::Busy,
            8 => AbortReason::UnsupportedVersion,
            9 => AbortReason::HandshakeFailed,
            10 => AbortReason::AlreadyProvisioned,
            other => AbortReason::Other(other),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum MessageError {
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u64),
    #[error("unknown message type {0}")]
    UnknownType(u64),
    #[error("message type {kind} has {len} fields, expected {expected}")]
    WrongFieldCount { kind: u64, len: u64, expected: u64 },
    #[error("invalid field {field}: {reason}")]
    InvalidField { field: &'static str, reason: &'static str },
    #[error(transparent)]
    Cbor(#[from] CborError),
}

/// A message on the link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireMessage {
    /// Station → device, Noise message 1.
    HandshakeInit { mode: HandshakeMode, noise: Vec<u8> },
    /// Device → station, Noise message 2.
    HandshakeReply { noise: Vec<u8> },
    /// Station → device, Noise message 3 (its payload is the station certificate).
    HandshakeFinish { noise: Vec<u8> },
    /// Either way, a Noise transport message carrying a [`SessionMessage`].
    Transport { ciphertext: Vec<u8> },
    /// Either way: a side ends the session. Unauthenticated, so only ever a hint.
    Abort { reason: AbortReason },
}

const WIRE_HANDSHAKE_INIT: u64 = 1;
const WIRE_HANDSHAKE_REPLY: u64 = 2;
const WIRE_HANDSHAKE_FINISH: u64 = 3;
const WIRE_TRANSPORT: u64 = 4;
const WIRE_ABORT: u64 = 5;

fn check_size(len: usize, max: usize) -> Result<(), MessageError> {
    if len > max { Err(MessageError::TooLarge { len, max }) } else { Ok(()) }
}

fn read_header(r: &mut Reader<'_>) -> Result<(u64, u64), MessageError> {
    let len = r.array("message")?;
    if len < 2 {
        return Err(CborError::UnexpectedShape { field: "message", expected: "[version, type, ...]" }.into());
    }
    let version = r.uint("version")?;
    if version != PROTOCOL_VERSION {
        return Err(MessageError::UnsupportedVersion(version));
    }
    let kind = r.uint("type")?;
    Ok((len - 2, kind))
}

fn expect_fields(kind: u64, len: u64, expected: u64) -> Result<(), MessageError> {
    if len == expected { Ok(()) } else { Err(MessageError::WrongFieldCount { kind, len, expected }) }
}

fn read_reason(r: &mut Reader<'_>) -> Result<AbortReason, MessageError> {
    let code = r.uint("reason")?;
    let code =
        u16::try_from(code).map_err(|_| MessageError::InvalidField { field: "reason", reason: "above 65535" })?;
    Ok(AbortReason::from_code(code))
}

impl WireMessage {
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let mut w = Writer::new();
        match self {
            WireMessage::HandshakeInit { mode, noise } => {
                check_size(noise.len(), MAX_NOISE_MESSAGE)?;
                w.array(4).uint(PROTOCOL_VERSION).uint(WIRE_HANDSHAKE_INIT).uint(*mode as u64).bytes(noise);
            }
            WireMessage::HandshakeReply { noise } => {
                check_size(noise.len(), MAX_NOISE_MESSAGE)?;
                w.array(3).uint(PROTOCOL_VERSION).uint(WIRE_HANDSHAKE_REPLY).bytes(noise);
            }
            WireMessage::HandshakeFinish { noise } => {
                check_size(noise.len(), MAX_NOISE_MESSAGE)?;
                w.array(3).uint(PROTOCOL_VERSION).uint(WIRE_HANDSHAKE_FINISH).bytes(noise);
            }
            WireMessage::Transport { ciphertext } => {
                check_size(ciphertext.len(), MAX_NOISE_MESSAGE)?;
                w.array(3).uint(PROTOCOL_VERSION).uint(WIRE_TRANSPORT).bytes(ciphertext);
            }
            WireMessage::Abort { reason } => {
                w.array(3).uint(PROTOCOL_VERSION).uint(WIRE_ABORT).uint(u64::from(reason.code()));
            }
        }
        let out = w.finish();
        check_size(out.len(), MAX_WIRE_MESSAGE)?;
        Ok(out)
    }

    pub fn decode(input: &[u8]) -> Result<Self, MessageError> {
        check_size(input.len(), MAX_WIRE_MESSAGE)?;
        let mut r = Reader::new(input);
        let (fields, kind) = read_header(&mut r)?;
        let message = match kind {
            WIRE_HANDSHAKE_INIT => {
                expect_fields(kind, fields, 2)?;
                let mode = match r.uint("mode")? {
                    1 => HandshakeMode::Identity,
                    2 => HandshakeMode::SetupSecret,
                    _ => {
                        return Err(MessageError::InvalidField { field: "mode", reason: "unknown handshake mode" });
                    }
                };
                WireMessage::HandshakeInit { mode, noise: r.bytes("noise", MAX_NOISE_MESSAGE)?.to_vec() }
            }
            WIRE_HANDSHAKE_REPLY => {
                expect_fields(kind, fields, 1)?;
                WireMessage::HandshakeReply { noise: r.bytes("noise", MAX_NOISE_MESSAGE)?.to_vec() }
            }
            WIRE_HANDSHAKE_FINISH => {
                expect_fields(kind, fields, 1)?;
                WireMessage::HandshakeFinish { noise: r.bytes("noise", MAX_NOISE_MESSAGE)?.to_vec() }
            }
            WIRE_TRANSPORT => {
                expect_fields(kind, fields, 1)?;
                WireMessage::Transport { ciphertext: r.bytes("ciphertext", MAX_NOISE_MESSAGE)?.to_vec() }
            }
            WIRE_ABORT => {
                expect_fields(kind, fields, 1)?;
                WireMessage::Abort { reason: read_reason(&mut r)? }
            }
            other => return Err(MessageError::UnknownType(other)),
        };
        r.finish()?;
        cbor::require_deterministic(input, &message.encode()?)?;
        Ok(message)
    }
}

/// What the delivered key is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// The device's E4 client key in symmetric-key mode.
    E4SymmetricClientKey = 1,
}

/// Station → device: the device's initial key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDelivery {
    pub device_id: DeviceId,
    pub key_id: [u8; 16],
    pub key: SecretKey,
    pub kind: KeyKind,
    /// Unix seconds.
    pub issued_at: u64,
    pub station_id: [u8; 16],
}

/// A message inside the Noise session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionMessage {
    KeyDelivery(KeyDelivery),
    /// Device → station: proof of possession of the delivered key, bound to the session.
    KeyConfirmation {
        device_id: DeviceId,
        key_id: [u8; 16],
        proof: [u8; 32],
    },
    /// Station → device: does the device hold the key `key_id`?
    KeyStatusQuery {
        device_id: DeviceId,
        key_id: [u8; 16],
    },
    /// Device → station: `proof` is present exactly when the device holds the key.
    KeyStatusReply {
        device_id: DeviceId,
        key_id: [u8; 16],
        proof: Option<[u8; 32]>,
    },
    Abort {
        reason: AbortReason,
    },
    /// Device → station: the station certificate is accepted; the device is ready for a request.
    DeviceReady {
        device_id: DeviceId,
    },
}

const SESSION_DEVICE_READY: u64 = 15;
const SESSION_KEY_DELIVERY: u64 = 10;
const SESSION_KEY_CONFIRMATION: u64 = 11;
const SESSION_KEY_STATUS_QUERY: u64 = 12;
const SESSION_KEY_STATUS_REPLY: u64 = 13;
const SESSION_ABORT: u64 = 14;

impl SessionMessage {
    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let mut w = Writer::new();
        match self {
            SessionMessage::KeyDelivery(d) => {
                if d.key.is_all_zero() {
                    return Err(MessageError::InvalidField { field: "key", reason: "all-zero key" });
                }
                w.array(8).uint(PROTOCOL_VERSION).uint(SESSION_KEY_DELIVERY);
                w.bytes(&d.device_id.0).bytes(&d.key_id).bytes(d.key.expose());
                w.uint(d.kind as u64).uint(d.issued_at).bytes(&d.station_id);
            }
            SessionMessage::KeyConfirmation { device_id, key_id, proof } => {
                w.array(5).uint(PROTOCOL_VERSION).uint(SESSION_KEY_CONFIRMATION);
                w.bytes(&device_id.0).bytes(key_id).bytes(proof);
            }
            SessionMessage::KeyStatusQuery { device_id, key_id } => {
                w.array(4).uint(PROTOCOL_VERSION).uint(SESSION_KEY_STATUS_QUERY);
                w.bytes(&device_id.0).bytes(key_id);
            }
            SessionMessage::KeyStatusReply { device_id, key_id, proof } => {
                w.array(if proof.is_some() { 5 } else { 4 });
                w.uint(PROTOCOL_VERSION).uint(SESSION_KEY_STATUS_REPLY);
                w.bytes(&device_id.0).bytes(key_id);
                if let Some(proof) = proof {
                    w.bytes(proof);
                }
            }
            SessionMessage::Abort { reason } => {
                w.array(3).uint(PROTOCOL_VERSION).uint(SESSION_ABORT).uint(u64::from(reason.code()));
            }
            SessionMessage::DeviceReady { device_id } => {
                w.array(3).uint(PROTOCOL_VERSION).uint(SESSION_DEVICE_READY).bytes(&device_id.0);
            }
        }
        let out = w.finish();
        check_size(out.len(), MAX_SESSION_MESSAGE)?;
        Ok(out)
    }

    pub fn decode(input: &[u8]) -> Result<Self, MessageError> {
        check_size(input.len(), MAX_SESSION_MESSAGE)?;
        let mut r = Reader::new(input);
        let (fields, kind) = read_header(&mut r)?;
        let message = match kind {
            SESSION_KEY_DELIVERY => {
                expect_fields(kind, fields, 6)?;
                let device_id = DeviceId(r.bytes_exact::<16>("device id")?);
                let key_id = r.bytes_exact::<16>("key id")?;
                let key = SecretKey::from_bytes(r.bytes_exact::<32>("key")?);
                let kind = match r.uint("key kind")? {
                    1 => KeyKind::E4SymmetricClientKey,
                    _ => {
                        return Err(MessageError::InvalidField { field: "key kind", reason: "unknown key kind" });
                    }
                };
                let issued_at = r.uint("issued at")?;
                let station_id = r.bytes_exact::<16>("station id")?;
                if key.is_all_zero() {
                    return Err(MessageError::InvalidField { field: "key", reason: "all-zero key" });
                }
                SessionMessage::KeyDelivery(KeyDelivery { device_id, key_id, key, kind, issued_at, station_id })
            }
            SESSION_KEY_CONFIRMATION => {
                expect_fields(kind, fields, 3)?;
                SessionMessage::KeyConfirmation {
                    device_id: DeviceId(r.bytes_exact::<16>("device id")?),
                    key_id: r.bytes_exact::<16>("key id")?,
                    proof: r.bytes_exact::<32>("proof")?,
                }
            }
            SESSION_KEY_STATUS_QUERY => {
                expect_fields(kind, fields, 2)?;
                SessionMessage::KeyStatusQuery {
                    device_id: DeviceId(r.bytes_exact::<16>("device id")?),
                    key_id: r.bytes_exact::<16>("key id")?,
                }
            }
            SESSION_KEY_STATUS_REPLY => {
                if fields != 2 && fields != 3 {
                    return Err(MessageError::WrongFieldCount { kind, len: fields, expected: 3 });
                }
                let device_id = DeviceId(r.bytes_exact::<16>("device id")?);
                let key_id = r.bytes_exact::<16>("key id")?;
                let proof = if fields == 3 { Some(r.bytes_exact::<32>("proof")?) } else { None };
                SessionMessage::KeyStatusReply { device_id, key_id, proof }
            }
            SESSION_ABORT => {
                expect_fields(kind, fields, 1)?;
                SessionMessage::Abort { reason: read_reason(&mut r)? }
            }
            SESSION_DEVICE_READY => {
                expect_fields(kind, fields, 1)?;
                SessionMessage::DeviceReady { device_id: DeviceId(r.bytes_exact::<16>("device id")?) }
            }
            other => return Err(MessageError::UnknownType(other)),
        };
        r.finish()?;
        let mut reencoded = message.encode()?;
        let verdict = cbor::require_deterministic(input, &reencoded);
        zeroize::Zeroize::zeroize(&mut reencoded);
        verdict?;
        Ok(message)
    }
}
