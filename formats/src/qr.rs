//! QR onboarding payload, version 1: `KF1:` + base45(deterministic CBOR map).
//!
//! Map keys (unsigned integers, ascending):
//! 0 version (=1), 1 device name, 2 device id, 3 serial number, 4 identity public key (X25519,
//! 32 B) or 5 setup secret (16 B), 6 transport hints, 7 model id, 15 checksum (CRC-32 of the
//! map's encoding without the checksum entry, big-endian). See docs/formats.md.

use crate::base45::{self, Base45Error};
use crate::cbor::{self, CborError, Reader, Writer};
use crate::ids::DeviceId;
use crate::name::{DeviceName, NameError};
use std::fmt;
use thiserror::Error;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub const PREFIX: &str = "KF1:";
pub const VERSION: u64 = 1;
/// Longest accepted payload text; a version-40 QR code holds 4296 alphanumeric characters.
pub const MAX_TEXT_LEN: usize = 2048;
pub const MAX_SERIAL_LEN: usize = 64;
pub const MAX_MODEL_LEN: usize = 64;
pub const MAX_BLE_NAME_LEN: usize = 29;
pub const MIN_AID_LEN: usize = 5;
pub const MAX_AID_LEN: usize = 16;

const KEY_VERSION: u64 = 0;
const KEY_NAME: u64 = 1;
const KEY_ID: u64 = 2;
const KEY_SERIAL: u64 = 3;
const KEY_IDENTITY: u64 = 4;
const KEY_SECRET: u64 = 5;
const KEY_HINTS: u64 = 6;
const KEY_MODEL: u64 = 7;
const KEY_CHECKSUM: u64 = 15;

const HINT_SERIAL: u64 = 0;
const HINT_BLE_ADDRESS: u64 = 1;
const HINT_BLE_NAME: u64 = 2;
const HINT_PCSC_AID: u64 = 3;

/// A 128-bit setup secret printed on the label of a device with no identity key.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SetupSecret(pub [u8; 16]);

impl fmt::Debug for SetupSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupSecret(<redacted>)")
    }
}

/// How the station authenticates the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceCredential {
    /// The device's static X25519 public key (Noise XK).
    Identity { public_key: [u8; 32] },
    /// A shared setup secret used as the Noise PSK.
    SetupSecret(SetupSecret),
}

/// Where the station can reach the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportHints {
    pub serial: bool,
    pub ble_address: Option<[u8; 6]>,
    pub ble_name: Option<String>,
    pub pcsc_aid: Option<Vec<u8>>,
}

impl TransportHints {
    fn is_empty(&self) -> bool {
        !self.serial && self.ble_address.is_none() && self.ble_name.is_none() && self.pcsc_aid.is_none()
    }
}

/// The parsed onboarding payload of one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnboardingPayload {
    pub name: DeviceName,
    pub device_id: DeviceId,
    pub serial_number: String,
    pub credential: DeviceCredential,
    pub hints: TransportHints,
    pub model: Option<String>,
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum QrError {
    #[error("not a Keyfill label: the payload does not start with {PREFIX:?}")]
    WrongPrefix,
    #[error("payload is {len} characters, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("bad base45: {0}")]
    BadBase45(#[from] Base45Error),
    #[error("bad CBOR: {0}")]
    BadCbor(#[from] CborError),
    #[error("unknown payload version {0}")]
    UnknownVersion(u64),
    #[error("missing field: {0}")]
    MissingField(&'static str),
    #[error("field {field} is {len} bytes, the limit is {max}")]
    FieldTooLong { field: &'static str, len: usize, max: usize },
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: &'static str },
    #[error("the label's device name is not valid: {0}")]
    InvalidName(#[from] NameError),
    #[error("checksum mismatch: the label is damaged or misread (the checksum detects errors, not forgery)")]
    BadChecksum,
    #[error("device id does not equal SHA3-256(name)[..16]; the label is not a valid E4 identity")]
    IdMismatch,
}

impl OnboardingPayload {
    /// Builds the payload of a device, deriving its id from its name.
    pub fn new(name: DeviceName, serial_number: &str, credential: DeviceCredential) -> Self {
        OnboardingPayload {
            device_id: name.device_id(),
            name,
            serial_number: serial_number.to_owned(),
            credential,
            hints: TransportHints::default(),
            model: None,
        }
    }

    fn validate(&self) -> Result<(), QrError> {
        if self.name.device_id() != self.device_id {
            return Err(QrError::IdMismatch);
        }
        if self.serial_number.is_empty() {
            return Err(QrError::MissingField("serial number"));
        }
        check_len("serial number", self.serial_number.len(), MAX_SERIAL_LEN)?;
        if let Some(model) = &self.model {
            check_len("model", model.len(), MAX_MODEL_LEN)?;
        }
        if let Some(name) = &self.hints.ble_name {
            check_len("BLE local name", name.len(), MAX_BLE_NAME_LEN)?;
        }
        if let Some(aid) = &self.hints.pcsc_aid {
            check_len("PC/SC AID", aid.len(), MAX_AID_LEN)?;
            if aid.len() < MIN_AID_LEN {
                return Err(QrError::InvalidField { field: "PC/SC AID", reason: "shorter than 5 bytes" });
            }
        }
        Ok(())
    }

    fn encode_map(&self, with_checksum: Option<u32>) -> Vec<u8> {
        let mut entries = 5u64; // version, name, id, serial, credential
        if !self.hints.is_empty() {
            entries += 1;
        }
        if self.model.is_some() {
            entries += 1;
        }
        if with_checksum.is_some() {
            entries += 1;
        }
        let mut w = Writer::new();
        w.map(entries);
        w.uint(KEY_VERSION).uint(VERSION);
        w.uint(KEY_NAME).text(self.name.as_str());
        w.uint(KEY_ID).bytes(&self.device_id.0);
        w.uint(KEY_SERIAL).text(&self.serial_number);
        match &self.credential {
            DeviceCredential::Identity { public_key } => w.uint(KEY_IDENTITY).bytes(public_key),
            DeviceCredential::SetupSecret(secret) => w.uint(KEY_SECRET).bytes(&secret.0),
        };
        if !self.hints.is_empty() {
            w.uint(KEY_HINTS);
            encode_hints(&mut w, &self.hints);
        }
        if let Some(model) = &self.model {
            w.uint(KEY_MODEL).text(model);
        }
        if let Some(checksum) = with_checksum {
            w.uint(KEY_CHECKSUM).bytes(&checksum.to_be_bytes());
        }
        w.finish()
    }

    /// Encodes the label text. Fails only if the payload itself is invalid.
    pub fn encode(&self) -> Result<String, QrError> {
        self.validate()?;
        let checksum = crc32fast::hash(&self.encode_map(None));
        let cbor = self.encode_map(Some(checksum));
        Ok(format!("{PREFIX}{}", base45::encode(&cbor)))
    }

    /// Parses label text. Surrounding whitespace (a scanner's trailing newline) is ignored.
    pub fn parse(text: &str) -> Result<Self, QrError> {
        let text = text.trim();
        if text.len() > MAX_TEXT_LEN {
            return Err(QrError::TooLong { len: text.len(), max: MAX_TEXT_LEN });
        }
        let body = text.strip_prefix(PREFIX).ok_or(QrError::WrongPrefix)?;
        let cbor = base45::decode(body)?;
        let (payload, checksum) = decode_map(&cbor)?;
        let without_checksum = payload.encode_map(None);
        if crc32fast::hash(&without_checksum) != checksum {
            return Err(QrError::BadChecksum);
        }
        cbor::require_deterministic(&cbor, &payload.encode_map(Some(checksum)))?;
        payload.validate()?;
        Ok(payload)
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), QrError> {
    if len > max { Err(QrError::FieldTooLong { field, len, max }) } else { Ok(()) }
}

fn encode_hints(w: &mut Writer, hints: &TransportHints) {
    let entries = u64::from(hints.serial)
        + u64::from(hints.ble_address.is_some())
        + u64::from(hints.ble_name.is_some())
        + u64::from(hints.pcsc_aid.is_some());
    w.map(entries);
    if hints.serial {
        w.uint(HINT_SERIAL).bool(true);
    }
    if let Some(address) = &hints.ble_address {
        w.uint(HINT_BLE_ADDRESS).bytes(address);
    }
    if let Some(name) = &hints.ble_name {
        w.uint(HINT_BLE_NAME).text(name);
    }
    if let Some(aid) = &hints.pcsc_aid {
        w.uint(HINT_PCSC_AID).bytes(aid);
    }
}

/// Map keys must ascend; returns the next key or an error.
fn next_key(r: &mut Reader<'_>, previous: &mut Option<u64>, context: &'static str) -> Result<u64, QrError> {
    let key = r.uint("map key")?;
    if previous.is_some_and(|p| key <= p) {
        return Err(CborError::KeyOrder { context }.into());
    }
    *previous = Some(key);
    Ok(key)
}

fn field_text(r: &mut Reader<'_>, field: &'static str, max: usize) -> Result<String, QrError> {
    // Read with a generous CBOR bound, then report the field limit precisely.
    let value = r.text(field, MAX_TEXT_LEN)?;
    check_len(field, value.len(), max)?;
    Ok(value.to_owned())
}

fn decode_hints(r: &mut Reader<'_>) -> Result<TransportHints, QrError> {
    let entries = r.map("transport hints")?;
    if entries > 4 {
        return Err(QrError::InvalidField { field: "transport hints", reason: "more than 4 entries" });
    }
    let mut hints = TransportHints::default();
    let mut previous = None;
    for _ in 0..entries {
        match next_key(r, &mut previous, "transport hints")? {
            HINT_SERIAL => hints.serial = r.bool("serial hint")?,
            HINT_BLE_ADDRESS => hints.ble_address = Some(r.bytes_exact::<6>("BLE address")?),
            HINT_BLE_NAME => hints.ble_name = Some(field_text(r, "BLE local name", MAX_BLE_NAME_LEN)?),
            HINT_PCSC_AID => {
                let aid = r.bytes("PC/SC AID", MAX_TEXT_LEN)?;
                check_len("PC/SC AID", aid.len(), MAX_AID_LEN)?;
                hints.pcsc_aid = Some(aid.to_vec());
            }
            key => {
                return Err(CborError::UnknownKey { context: "transport hints", key }.into());
            }
        }
    }
    Ok(hints)
}

fn decode_map(cbor: &[u8]) -> Result<(OnboardingPayload, u32), QrError> {
    let mut r = Reader::new(cbor);
    let entries = r.map("payload")?;
    if entries > 9 {
        return Err(QrError::InvalidField { field: "payload", reason: "more than 9 entries" });
    }
    let mut previous = None;
    let mut version = None;
    let mut name = None;
    let mut device_id = None;
    let mut serial = None;
    let mut credential = None;
    let mut hints = TransportHints::default();
    let mut model = None;
    let mut checksum = None;
    for _ in 0..entries {
        match next_key(&mut r, &mut previous, "payload")? {
            KEY_VERSION => {
                let v = r.uint("version")?;
                if v != VERSION {
                    return Err(QrError::UnknownVersion(v));
                }
                version = Some(v);
            }
            // Read within the CBOR bound; the name rules, length included, are DeviceName's.
            KEY_NAME => name = Some(DeviceName::try_from(field_text(&mut r, "name", MAX_TEXT_LEN)?)?),
            KEY_ID => device_id = Some(DeviceId(r.bytes_exact::<16>("device id")?)),
            KEY_SERIAL => serial = Some(field_text(&mut r, "serial number", MAX_SERIAL_LEN)?),
            KEY_IDENTITY => {
                credential = Some(DeviceCredential::Identity { public_key: r.bytes_exact::<32>("identity key")? })
            }
            KEY_SECRET => {
                if credential.is_some() {
                    return Err(QrError::InvalidField {
                        field: "credential",
                        reason: "both identity key and setup secret",
                    });
                }
                credential = Some(DeviceCredential::SetupSecret(SetupSecret(r.bytes_exact::<16>("setup secret")?)))
            }
            KEY_HINTS => hints = decode_hints(&mut r)?,
            KEY_MODEL => model = Some(field_text(&mut r, "model", MAX_MODEL_LEN)?),
            KEY_CHECKSUM => checksum = Some(u32::from_be_bytes(r.bytes_exact::<4>("checksum")?)),
            key => {
                return Err(CborError::UnknownKey { context: "payload", key }.into());
            }
        }
    }
    r.finish()?;
    version.ok_or(QrError::MissingField("version"))?;
    let payload = OnboardingPayload {
        name: name.ok_or(QrError::MissingField("name"))?,
        device_id: device_id.ok_or(QrError::MissingField("device id"))?,
        serial_number: serial.ok_or(QrError::MissingField("serial number"))?,
        credential: credential.ok_or(QrError::MissingField("identity key or setup secret"))?,
        hints,
        model,
    };
    Ok((payload, checksum.ok_or(QrError::MissingField("checksum"))?))
}
