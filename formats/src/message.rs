//! Provisioning protocol messages.
//!
//! Two layers, both deterministic CBOR arrays headed by `[version, type, ...]`:
//! - [`WireMessage`]: what travels on the link, `[version, type, session id, ...]`: Noise
//!   handshake messages, Noise transport ciphertexts, and a plaintext abort (best effort,
//!   unauthenticated) when a side ends a session.
//! - [`SessionMessage`]: the plaintext inside a Noise transport message: key delivery, key
//!   confirmation, key status query/reply, abort.
//!
//! Each message type has a hard size bound, checked on encode and decode.

use crate::cbor::{self, CborError, Reader, Writer};
use crate::ids::DeviceId;
use crate::secret::SecretKey;
use thiserror::Error;

/// Version 2 added the session id to every wire message (and to the Noise prologue).
pub const PROTOCOL_VERSION: u64 = 2;
/// Largest encoded wire message; it always fits one serial frame.
pub const MAX_WIRE_MESSAGE: usize = 1536;
/// Largest Noise message carried (Noise's own limit is 65535).
pub const MAX_NOISE_MESSAGE: usize = 1400;
/// Largest encoded session message.
pub const MAX_SESSION_MESSAGE: usize = 256;

/// The Noise prologue of a session: protocol version, mode, device id and session id, so that
/// the handshake hash (and every proof made from it) names exactly this session with this device.
pub fn noise_prologue(mode: HandshakeMode, device_id: &DeviceId, session: &SessionId) -> Vec<u8> {
    let mut prologue = format!("keyfill/{PROTOCOL_VERSION}\0").into_bytes();
    prologue.push(mode as u8);
    prologue.extend_from_slice(&device_id.0);
    prologue.extend_from_slice(&session.0);
    prologue
}

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
    /// The message names a session the receiver does not have (it ended, or the receiver
    /// restarted since).
    UnknownSession,
    Other(u16),
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            AbortReason::Unspecified => "no reason given",
            AbortReason::BadCertificate => "the station certificate is not signed by the factory root it trusts",
            AbortReason::CertificateExpired => "the station certificate is expired or not yet valid by its clock",
            AbortReason::WrongDevice => "the request names another device or handshake mode",
            AbortReason::StorageFailed => "it could not store the key",
            AbortReason::ProtocolViolation => "protocol violation",
            AbortReason::Timeout => "timeout",
            AbortReason::Busy => "busy",
            AbortReason::UnsupportedVersion => "it speaks another protocol version",
            AbortReason::HandshakeFailed => "the handshake failed",
            AbortReason::AlreadyProvisioned => "it already holds a key; only a factory reset lets it take another",
            AbortReason::UnknownSession => "it does not know this session (it restarted or gave up on it)",
            AbortReason::Other(code) => return write!(f, "reason code {code}"),
        };
        // The code name too, for support and for searching logs.
        write!(f, "{text} ({self:?})")
    }
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
            AbortReason::UnknownSession => 11,
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
            11 => AbortReason::UnknownSession,
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

/// Length of a [`SessionId`].
pub const SESSION_ID_LEN: usize = 8;

/// Names one session on a link. The station draws a fresh random one for every session; both
/// sides put it in every wire message of that session and drop messages that carry another, so
/// bytes left on a link by an earlier session (a late reply, a station killed mid-session) can
/// never be taken for an answer. It is a label, not a secret: the Noise prologue binds it into
/// the handshake, so rewriting it on the link only breaks the session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; SESSION_ID_LEN]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A message on the link: the session it belongs to and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireMessage {
    pub session: SessionId,
    pub body: WireBody,
}

/// What a wire message says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireBody {
    /// Station → device, Noise message 1. Starts the session named by the message.
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

impl WireBody {
    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            WireBody::HandshakeInit { .. } => "handshake init",
            WireBody::HandshakeReply { .. } => "handshake reply",
            WireBody::HandshakeFinish { .. } => "handshake finish",
            WireBody::Transport { .. } => "transport message",
            WireBody::Abort { .. } => "abort",
        }
    }
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

/// The protocol version a message claims, read from its first array element only: lets a side
/// answer a peer that speaks another version instead of treating it as noise.
pub fn peek_version(input: &[u8]) -> Option<u64> {
    let mut r = Reader::new(&input[..input.len().min(MAX_WIRE_MESSAGE)]);
    if r.array("message").ok()? < 2 {
        return None;
    }
    r.uint("version").ok()
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
    pub fn new(session: SessionId, body: WireBody) -> Self {
        WireMessage { session, body }
    }

    pub fn encode(&self) -> Result<Vec<u8>, MessageError> {
        let mut w = Writer::new();
        let session = &self.session.0;
        match &self.body {
            WireBody::HandshakeInit { mode, noise } => {
                check_size(noise.len(), MAX_NOISE_MESSAGE)?;
                w.array(5).uint(PROTOCOL_VERSION).uint(WIRE_HANDSHAKE_INIT).bytes(session);
                w.uint(*mode as u64).bytes(noise);
            }
            WireBody::HandshakeReply { noise } => {
                check_size(noise.len(), MAX_NOISE_MESSAGE)?;
                w.array(4).uint(PROTOCOL_VERSION).uint(WIRE_HANDSHAKE_REPLY).bytes(session).bytes(noise);
            }
            WireBody::HandshakeFinish { noise } => {
                check_size(noise.len(), MAX_NOISE_MESSAGE)?;
                w.array(4).uint(PROTOCOL_VERSION).uint(WIRE_HANDSHAKE_FINISH).bytes(session).bytes(noise);
            }
            WireBody::Transport { ciphertext } => {
                check_size(ciphertext.len(), MAX_NOISE_MESSAGE)?;
                w.array(4).uint(PROTOCOL_VERSION).uint(WIRE_TRANSPORT).bytes(session).bytes(ciphertext);
            }
            WireBody::Abort { reason } => {
                w.array(4).uint(PROTOCOL_VERSION).uint(WIRE_ABORT).bytes(session);
                w.uint(u64::from(reason.code()));
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
        let expected = match kind {
            WIRE_HANDSHAKE_INIT => 3,
            WIRE_HANDSHAKE_REPLY | WIRE_HANDSHAKE_FINISH | WIRE_TRANSPORT | WIRE_ABORT => 2,
            other => return Err(MessageError::UnknownType(other)),
        };
        expect_fields(kind, fields, expected)?;
        let session = SessionId(r.bytes_exact::<SESSION_ID_LEN>("session id")?);
        let body = match kind {
            WIRE_HANDSHAKE_INIT => {
                let mode = match r.uint("mode")? {
                    1 => HandshakeMode::Identity,
                    2 => HandshakeMode::SetupSecret,
                    _ => {
                        return Err(MessageError::InvalidField { field: "mode", reason: "unknown handshake mode" });
                    }
                };
                WireBody::HandshakeInit { mode, noise: r.bytes("noise", MAX_NOISE_MESSAGE)?.to_vec() }
            }
            WIRE_HANDSHAKE_REPLY => WireBody::HandshakeReply { noise: r.bytes("noise", MAX_NOISE_MESSAGE)?.to_vec() },
            WIRE_HANDSHAKE_FINISH => WireBody::HandshakeFinish { noise: r.bytes("noise", MAX_NOISE_MESSAGE)?.to_vec() },
            WIRE_TRANSPORT => WireBody::Transport { ciphertext: r.bytes("ciphertext", MAX_NOISE_MESSAGE)?.to_vec() },
            _ => WireBody::Abort { reason: read_reason(&mut r)? },
        };
        r.finish()?;
        let message = WireMessage { session, body };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_abort_carries_its_session() {
        let abort = WireMessage::new(SessionId([9; 8]), WireBody::Abort { reason: AbortReason::Timeout });
        let bytes = abort.encode().expect("encodes");
        assert_eq!(hex::encode(&bytes), "84020548090909090909090906");
        // The serial frame of docs/formats.md §5.6.
        assert_eq!(hex::encode(crate::frame::encode(&bytes).expect("fits")), "1284020548090909090909090906e9cdb53900");
        assert_eq!(WireMessage::decode(&bytes), Ok(abort));
    }

    #[test]
    fn a_message_of_another_version_is_named_by_its_version() {
        // A version-1 plaintext abort, as a device or station of the first version sends it.
        let version_1 = [0x83, 0x01, 0x05, 0x06];
        assert_eq!(WireMessage::decode(&version_1), Err(MessageError::UnsupportedVersion(1)));
        assert_eq!(peek_version(&version_1), Some(1));
        assert_eq!(peek_version(&[0x01, 0x02]), None);
        assert_eq!(peek_version(&[]), None);
    }

    #[test]
    fn session_id_is_required_and_exact() {
        // [2, 5, h'0909', 6]: a two-byte session id.
        assert!(WireMessage::decode(&[0x84, 0x02, 0x05, 0x42, 0x09, 0x09, 0x06]).is_err());
        // [2, 5, 6]: no session id.
        assert!(matches!(
            WireMessage::decode(&[0x83, 0x02, 0x05, 0x06]),
            Err(MessageError::WrongFieldCount { kind: 5, len: 1, expected: 2 })
        ));
    }

    #[test]
    fn prologue_binds_version_mode_device_and_session() {
        let prologue = noise_prologue(HandshakeMode::Identity, &DeviceId([7; 16]), &SessionId([9; 8]));
        let mut expected = b"keyfill/2\0\x01".to_vec();
        expected.extend([7; 16]);
        expected.extend([9; 8]);
        assert_eq!(prologue, expected);
    }
}
