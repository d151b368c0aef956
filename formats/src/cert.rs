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

impl CertificateBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array(7).uint(VERSION).bytes(&self.station_id).text(&self.station_name);
        w.bytes(&self.noise_static).uint(self.not_before).uint(self.not_after).bytes(&self.root_key_id);
        w.finish()
    }

    /// The exact bytes the factory root signs.
    pub fn signing_input(tbs: &[u8]) -> Vec<u8> {
        [SIGNING_CONTEXT, tbs].concat()
    }

    fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        let mut r = Reader::new(input);
        if r.array("certificate body")? != 7 {
            return Err(CborError::UnexpectedShape { field: "certificate body", expected: "7 fields" }.into());
        }
        let version = r.uint("version")?;
        if version != VERSION {
            return Err(CertificateError::UnsupportedVersion(version));
        }
        let body = CertificateBody {
            station_id: r.bytes_exact::<16>("station id")?,
            station_name: r.text("station name", MAX_STATION_NAME)?.to_owned(),
            noise_static: r.bytes_exact::<32>("noise static key")?,
            not_before: r.uint("not before")?,
            not_after: r.uint("not after")?,
            root_key_id: r.bytes_exact::<8>("root key id")?,
        };
        r.finish()?;
        cbor::require_deterministic(input, &body.encode())?;
        if body.not_after < body.not_before {
            return Err(CertificateError::EmptyValidity);
        }
        Ok(body)
    }
}

impl StationCertificate {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array(3).uint(VERSION).bytes(&self.tbs).bytes(&self.signature);
        w.finish()
    }

    /// Parses the structure; the caller must still verify the signature over
    /// [`CertificateBody::signing_input`] of `tbs` against its pinned root.
    pub fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        if input.len() > MAX_ENCODED {
            return Err(CertificateError::TooLarge { len: input.len() });
        }
        let mut r = Reader::new(input);
        if r.array("certificate")? != 3 {
            return Err(CborError::UnexpectedShape { field: "certificate", expected: "3 fields" }.into());
        }
        let version = r.uint("version")?;
        if version != VERSION {
            return Err(CertificateError::UnsupportedVersion(version));
        }
        let tbs = r.bytes("tbs", MAX_ENCODED)?.to_vec();
        let signature = r.bytes_exact::<64>("signature")?;
        r.finish()?;
        let body = CertificateBody::decode(&tbs)?;
        let cert = StationCertificate { body, tbs, signature };
        cbor::require_deterministic(input, &cert.encode())?;
        Ok(cert)
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
        let mut w = Writer::new();
        w.array(7).uint(VERSION).bytes(&self.station_id).text(&self.station_name);
        w.bytes(&self.signing_public).uint(self.not_before).uint(self.not_after).bytes(&self.root_key_id);
        w.finish()
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
        let mut r = Reader::new(input);
        if r.array("bundle signer certificate body")? != 7 {
            return Err(
                CborError::UnexpectedShape { field: "bundle signer certificate body", expected: "7 fields" }.into()
            );
        }
        let version = r.uint("version")?;
        if version != VERSION {
            return Err(CertificateError::UnsupportedVersion(version));
        }
        let body = BundleSignerBody {
            station_id: r.bytes_exact::<16>("station id")?,
            station_name: r.text("station name", MAX_STATION_NAME)?.to_owned(),
            signing_public: r.bytes_exact::<32>("signing public key")?,
            not_before: r.uint("not before")?,
            not_after: r.uint("not after")?,
            root_key_id: r.bytes_exact::<8>("root key id")?,
        };
        r.finish()?;
        cbor::require_deterministic(input, &body.encode())?;
        if body.not_after < body.not_before {
            return Err(CertificateError::EmptyValidity);
        }
        Ok(body)
    }
}

impl BundleSignerCertificate {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.array(3).uint(VERSION).bytes(&self.tbs).bytes(&self.signature);
        w.finish()
    }

    /// Parses the structure; the caller must still verify the signature over
    /// [`BundleSignerBody::signing_input`] of `tbs` against its pinned root.
    pub fn decode(input: &[u8]) -> Result<Self, CertificateError> {
        if input.len() > MAX_ENCODED {
            return Err(CertificateError::TooLarge { len: input.len() });
        }
        let mut r = Reader::new(input);
        if r.array("bundle signer certificate")? != 3 {
            return Err(CborError::UnexpectedShape { field: "bundle signer certificate", expected: "3 fields" }.into());
        }
        let version = r.uint("version")?;
        if version != VERSION {
            return Err(CertificateError::UnsupportedVersion(version));
        }
        let tbs = r.bytes("tbs", MAX_ENCODED)?.to_vec();
        let signature = r.bytes_exact::<64>("signature")?;
        r.finish()?;
        let body = BundleSignerBody::decode(&tbs)?;
        let cert = BundleSignerCertificate { body, tbs, signature };
        cbor::require_deterministic(input, &cert.encode())?;
        Ok(cert)
    }
}
