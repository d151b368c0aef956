//! Station certificate: binds a station's Noise static key to the factory root.
//!
//! `certificate = [1, tbs: bytes, signature: bytes(64)]` where `tbs` is the deterministic CBOR
//! array `[1, station_id(16), station_name(text ≤ 64), noise_static(32), not_before, not_after,
//! root_key_id(8)]`, and the Ed25519 signature by the factory root covers
//! [`SIGNING_CONTEXT`] ‖ `tbs`. Signing and verification live with the roles (ring), the format
//! here.
//!
//! A [`BundleSignerCertificate`] has the same layout but certifies the station's Ed25519
//! bundle-signing key, and the root signs it under [`BUNDLE_SIGNER_CONTEXT`]: the two contexts
//! differ, so neither certificate verifies as the other.

use crate::cbor::{self, CborError, Reader, Writer};
use sha3::{Digest, Sha3_256};
use thiserror::Error;

pub const VERSION: u64 = 1;
pub const MAX_STATION_NAME: usize = 64;
pub const MAX_ENCODED: usize = 512;
/// Domain separation for the root's signature.
pub const SIGNING_CONTEXT: &[u8] = b"keyfill station certificate v1\0";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateBody {
    pub station_id: [u8; 16],
    pub station_name: String,
    pub noise_static: [u8; 32],
    /// Unix seconds, inclusive.
    pub not_before: u64,
    /// Unix seconds, inclusive.
    pub not_after: u64,
    pub root_key_id: [u8; 8],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StationCertificate {
    pub body: CertificateBody,
    /// Exactly the bytes that were signed (after the context).
    pub tbs: Vec<u8>,
    pub signature: [u8; 64],
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum CertificateError {
    #[error("certificate of {len} bytes exceeds {MAX_ENCODED}")]
    TooLarge { len: usize },
    #[error("unsupported certificate version {0}")]
    UnsupportedVersion(u64),
    #[error("malformed certificate: {0}")]
    Cbor(#[from] CborError),
    #[error("certificate validity period is empty")]
    EmptyValidity,
}

/// First 8 bytes of SHA3-256 of an Ed25519 root public key.
pub fn root_key_id(root_public_key: &[u8]) -> [u8; 8] {
    let digest = Sha3_256::digest(root_public_key);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// What tells the two certificate types apart in error messages; the layout is the same.
struct Names {
    envelope: &'static str,
    body: &'static str,
    key: &'static str,
}

const STATION_NAMES: Names = Names { envelope: "certificate", body: "certificate body", key: "noise static key" };
const SIGNER_NAMES: Names =
    Names { envelope: "bundle signer certificate", body: "bundle signer certificate body", key: "signing public key" };

/// The fields both certificate bodies hold, in their order on the wire.
struct Fields {
    station_id: [u8; 16],
    station_name: String,
    key: [u8; 32],
    not_before: u64,
    not_after: u64,
    root_key_id: [u8; 8],
}

fn encode_fields(
    station_id: &[u8; 16],
    station_name: &str,
    key: &[u8; 32],
    validity: (u64, u64),
    root_key_id: &[u8; 8],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(7).uint(VERSION).bytes(station_id).text(station_name);
    w.bytes(key).uint(validity.0).uint(validity.1).bytes(root_key_id);
    w.finish()
}

fn decode_fields(input: &[u8], names: &Names) -> Result<Fields, CertificateError> {
    let mut r = Reader::new(input);
    if r.array(names.body)? != 7 {
        return Err(CborError::UnexpectedShape { field: names.body, expected: "7 fields" }.into());
    }
    let version = r.uint("version")?;
    if version != VERSION {
        return Err(CertificateError::UnsupportedVersion(version));
    }
    let fields = Fields {
        station_id: r.bytes_exact::<16>("station id")?,
        station_name: r.text("station name", MAX_STATION_NAME)?.to_owned(),
        key: r.bytes_exact::<32>(names.key)?,
        not_before: r.uint("not before")?,
        not_after: r.uint("not after")?,
        root_key_id: r.bytes_exact::<8>("root key id")?,
    };
    r.finish()?;
    let again = encode_fields(
        &fields.station_id,
        &fields.station_name,
        &fields.key,
        (fields.not_before, fields.not_after),
        &fields.root_key_id,
    );
    cbor::require_deterministic(input, &again)?;
    if fields.not_after < fields.not_before {
        return Err(CertificateError::EmptyValidity);
    }
    Ok(fields)
}

fn encode_envelope(tbs: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(3).uint(VERSION).bytes(tbs).bytes(signature);
    w.finish()
}

/// `tbs` and signature of `[1, tbs, signature]`, strictly and within [`MAX_ENCODED`].
fn decode_envelope(input: &[u8], names: &Names) -> Result<(Vec<u8>, [u8; 64]), CertificateError> {
    if input.len() > MAX_ENCODED {
        return Err(CertificateError::TooLarge { len: input.len() });
    }
    let mut r = Reader::new(input);
    if r.array(names.envelope)? != 3 {
        return Err(CborError::UnexpectedShape { field: names.envelope, expected: "3 fields" }.into());
    }
    let version = r.uint("version")?;
    if version != VERSION {
        return Err(CertificateError::UnsupportedVersion(version));
    }
    let tbs = r.bytes("tbs", MAX_ENCODED)?.to_vec();
    let signature = r.bytes_exact::<64>("signature")?;
    r.finish()?;
    cbor::require_deterministic(input, &encode_envelope(&tbs, &signature))?;
    Ok((tbs, signature))
}

impl CertificateBody {
    pub fn encode(&self) -> Vec<u8> {
        let validity = (self.not_before, self.not_after);
        encode_fields(&self.station_id, &self.station_name, &self.noise_static, validity, &self.root_key_id)
    }

    /// The exact bytes the factory root signs.
    pub fn signing_input(tbs: &[u8]) -> Vec<u8> {
        [SIGNING_CONTEXT, tbs].concat()
    }

    fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        let f = decode_fields(input, &STATION_NAMES)?;
        Ok(CertificateBody {
            station_id: f.station_id,
            station_name: f.station_name,
            noise_static: f.key,
            not_before: f.not_before,
            not_after: f.not_after,
            root_key_id: f.root_key_id,
        })
    }
}

impl StationCertificate {
    pub fn encode(&self) -> Vec<u8> {
        encode_envelope(&self.tbs, &self.signature)
    }

    /// Parses the structure; the caller must still verify the signature over
    /// [`CertificateBody::signing_input`] of `tbs` against its pinned root.
    pub fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        let (tbs, signature) = decode_envelope(input, &STATION_NAMES)?;
        let body = CertificateBody::decode(&tbs)?;
        Ok(StationCertificate { body, tbs, signature })
    }
}

/// Domain separation for the root's signature over a bundle-signer certificate.
pub const BUNDLE_SIGNER_CONTEXT: &[u8] = b"keyfill bundle signer certificate v1\0";

/// What the factory root vouches for in a bundle-signer certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSignerBody {
    pub station_id: [u8; 16],
    pub station_name: String,
    /// The Ed25519 public key that signs the station's C2 export bundles.
    pub signing_public: [u8; 32],
    /// Unix seconds, inclusive.
    pub not_before: u64,
    /// Unix seconds, inclusive.
    pub not_after: u64,
    pub root_key_id: [u8; 8],
}

/// Binds a station's bundle-signing key to the factory root:
/// `[1, tbs: bytes, signature: bytes(64)]`, `tbs` = `[1, station_id(16), station_name(text ≤ 64),
/// signing_public(32), not_before, not_after, root_key_id(8)]`, signed over
/// [`BUNDLE_SIGNER_CONTEXT`] ‖ `tbs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSignerCertificate {
    pub body: BundleSignerBody,
    /// Exactly the bytes that were signed (after the context).
    pub tbs: Vec<u8>,
    pub signature: [u8; 64],
}

impl BundleSignerBody {
    pub fn encode(&self) -> Vec<u8> {
        let validity = (self.not_before, self.not_after);
        encode_fields(&self.station_id, &self.station_name, &self.signing_public, validity, &self.root_key_id)
    }

    /// The exact bytes the factory root signs.
    pub fn signing_input(tbs: &[u8]) -> Vec<u8> {
        [BUNDLE_SIGNER_CONTEXT, tbs].concat()
    }

    /// Whether `unix_secs` lies in the validity period (both ends inclusive).
    pub fn valid_at(&self, unix_secs: u64) -> bool {
        self.not_before <= unix_secs && unix_secs <= self.not_after
    }

    fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        let f = decode_fields(input, &SIGNER_NAMES)?;
        Ok(BundleSignerBody {
            station_id: f.station_id,
            station_name: f.station_name,
            signing_public: f.key,
            not_before: f.not_before,
            not_after: f.not_after,
            root_key_id: f.root_key_id,
        })
    }
}

impl BundleSignerCertificate {
    pub fn encode(&self) -> Vec<u8> {
        encode_envelope(&self.tbs, &self.signature)
    }

    /// Parses the structure; the caller must still verify the signature over
    /// [`BundleSignerBody::signing_input`] of `tbs` against its pinned root.
    pub fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        let (tbs, signature) = decode_envelope(input, &SIGNER_NAMES)?;
        let body = BundleSignerBody::decode(&tbs)?;
        Ok(BundleSignerCertificate { body, tbs, signature })
    }
}
