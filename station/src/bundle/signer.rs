//! The station's bundle-signing key (Ed25519, ring) and its certificate from the factory root.

use keyfill_formats::cert::{self, BundleSignerBody, BundleSignerCertificate};
use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignerError {
    #[error("the bundle-signing key is not a valid Ed25519 PKCS#8 document")]
    BadKey,
    #[error("the bundle-signer certificate certifies another key than the one supplied")]
    KeyMismatch,
    #[error("the system random source failed")]
    Random,
    #[error("the signing key's token failed: {0}")]
    Token(String),
}

/// An Ed25519 key that signs: ring's key pair in memory, or a token's key
/// ([`crate::hsm::TokenKey`]) that signs inside the token.
pub trait Ed25519Signer {
    fn public_key(&self) -> Result<[u8; 32], SignerError>;
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError>;
}

impl Ed25519Signer for Ed25519KeyPair {
    fn public_key(&self) -> Result<[u8; 32], SignerError> {
        public_key_of(self)
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        Ed25519KeyPair::sign(self, message).as_ref().try_into().map_err(|_| SignerError::BadKey)
    }
}

/// A token's Ed25519 key and its public key.
#[derive(Debug, Clone)]
pub struct TokenSigner {
    pub key: crate::hsm::TokenKey,
    pub public: [u8; 32],
}

impl Ed25519Signer for TokenSigner {
    fn public_key(&self) -> Result<[u8; 32], SignerError> {
        Ok(self.public)
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        self.key.sign_ed25519(message).map_err(|error| SignerError::Token(error.to_string()))
    }
}

/// Where the signing key is.
enum SigningKey {
    /// The PKCS#8 document, in a buffer wiped on drop; ring's key pair is built only for the
    /// duration of a signature (ring does not wipe its key pairs).
    Pkcs8(Zeroizing<Vec<u8>>),
    Token(TokenSigner),
}

/// The station's signing key: signs bundles, work-order reports and the audit log, each under
/// a label of its own.
pub struct BundleSigner {
    key: SigningKey,
    certificate: BundleSignerCertificate,
}

impl fmt::Debug for BundleSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleSigner")
            .field("station_id", &keyfill_formats::bundle::to_hex(&self.certificate.body.station_id))
            .field("station_name", &self.certificate.body.station_name)
            .field("not_after", &self.certificate.body.not_after)
            .field("key", &"<redacted>")
            .finish()
    }
}

fn key_pair(pkcs8: &[u8]) -> Result<Ed25519KeyPair, SignerError> {
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(|_| SignerError::BadKey)
}

fn public_key_of(pair: &Ed25519KeyPair) -> Result<[u8; 32], SignerError> {
    KeyPair::public_key(pair).as_ref().try_into().map_err(|_| SignerError::BadKey)
}

impl BundleSigner {
    /// A fresh Ed25519 key as a PKCS#8 v2 document.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, SignerError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SignerError::Random)?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// The Ed25519 public key of a PKCS#8 document (v1 or v2).
    pub fn public_key_of_pkcs8(pkcs8: &[u8]) -> Result<[u8; 32], SignerError> {
        public_key_of(&key_pair(pkcs8)?)
    }

    /// A signer from its private key and its certificate, which must certify that key. The
    /// certificate's trust (root, validity) is the importer's to check.
    pub fn new(pkcs8: &[u8], certificate: BundleSignerCertificate) -> Result<Self, SignerError> {
        if Self::public_key_of_pkcs8(pkcs8)? != certificate.body.signing_public {
            return Err(SignerError::KeyMismatch);
        }
        Ok(BundleSigner { key: SigningKey::Pkcs8(Zeroizing::new(pkcs8.to_vec())), certificate })
    }

    /// A signer whose key a token holds; the certificate must certify it.
    pub fn in_token(key: TokenSigner, certificate: BundleSignerCertificate) -> Result<Self, SignerError> {
        if key.public != certificate.body.signing_public {
            return Err(SignerError::KeyMismatch);
        }
        Ok(BundleSigner { key: SigningKey::Token(key), certificate })
    }

    pub fn certificate(&self) -> &BundleSignerCertificate {
        &self.certificate
    }

    /// Whether a token holds the key.
    pub fn in_a_token(&self) -> bool {
        matches!(self.key, SigningKey::Token(_))
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        match &self.key {
            SigningKey::Pkcs8(pkcs8) => Ed25519Signer::sign(&key_pair(pkcs8)?, message),
            SigningKey::Token(key) => key.sign(message),
        }
    }
}

/// The factory root's certificate for a bundle-signing key.
pub fn certify_bundle_signer(
    root: &dyn Ed25519Signer,
    station_id: [u8; 16],
    station_name: &str,
    signing_public: [u8; 32],
    not_before: u64,
    not_after: u64,
) -> Result<BundleSignerCertificate, SignerError> {
    let root_public = root.public_key()?;
    let body = BundleSignerBody {
        station_id,
        station_name: station_name.to_owned(),
        signing_public,
        not_before,
        not_after,
        root_key_id: cert::root_key_id(&root_public),
    };
    let tbs = body.encode();
    let signature = root.sign(&BundleSignerBody::signing_input(&tbs))?;
    Ok(BundleSignerCertificate { body, tbs, signature })
}

/// Why a signer certificate is not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Distrust {
    /// Its root key id names another root.
    OtherRoot,
    /// The root's signature does not verify.
    BadSignature,
}

/// Checks the root key id and the factory root's signature (not the validity period).
pub(crate) fn verify_certificate(
    certificate: &BundleSignerCertificate,
    factory_root: &[u8; 32],
) -> Result<(), Distrust> {
    if certificate.body.root_key_id != cert::root_key_id(factory_root) {
        return Err(Distrust::OtherRoot);
    }
    UnparsedPublicKey::new(&ED25519, factory_root)
        .verify(&BundleSignerBody::signing_input(&certificate.tbs), &certificate.signature)
        .map_err(|_| Distrust::BadSignature)
}

/// Verifies a bundle signature made by the certified key.
pub(crate) fn signature_valid(signing_public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    UnparsedPublicKey::new(&ED25519, signing_public).verify(message, signature).is_ok()
}

/// Whether `certificate` names `factory_root` and carries its valid signature (validity period
/// not checked).
pub fn signer_certificate_trusted(certificate: &BundleSignerCertificate, factory_root: &[u8; 32]) -> bool {
    verify_certificate(certificate, factory_root).is_ok()
}
