//! Public-key mode: commands are protected with SHA3-256 of the X25519 shared secret between
//! C2's X25519 key and the device's Ed25519 key converted to Montgomery form (the standard
//! birational map; the private scalar is SHA-512(seed)[..32], clamped, as in RFC 8032).

use crate::secret::SecretKey;
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::montgomery::MontgomeryPoint;
use sha2::{Digest, Sha512};
use sha3::Sha3_256;
use thiserror::Error;
use zeroize::Zeroizing;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum PubKeyError {
    #[error("the Ed25519 public key is not a valid curve point")]
    InvalidEd25519Point,
    #[error("the shared secret is all zero (low-order point)")]
    LowOrder,
}

fn finish(shared: MontgomeryPoint) -> Result<SecretKey, PubKeyError> {
    let shared = Zeroizing::new(shared.to_bytes());
    if shared.iter().all(|b| *b == 0) {
        return Err(PubKeyError::LowOrder);
    }
    let digest = Sha3_256::digest(shared.as_ref());
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&digest);
    Ok(SecretKey::from_bytes(*key))
}

/// The device side: its Ed25519 seed and C2's X25519 public key.
pub fn command_key_for_device(device_seed: &[u8; 32], c2_public: &[u8; 32]) -> Result<SecretKey, PubKeyError> {
    let mut hashed = Zeroizing::new([0u8; 64]);
    hashed.copy_from_slice(&Sha512::digest(device_seed));
    let mut scalar = Zeroizing::new([0u8; 32]);
    scalar.copy_from_slice(&hashed[..32]);
    finish(MontgomeryPoint(*c2_public).mul_clamped(*scalar))
}

/// C2's side: its X25519 secret and the device's Ed25519 public key.
pub fn command_key_for_c2(c2_secret: &[u8; 32], device_public: &[u8; 32]) -> Result<SecretKey, PubKeyError> {
    let point = CompressedEdwardsY(*device_public).decompress().ok_or(PubKeyError::InvalidEd25519Point)?;
    finish(point.to_montgomery().mul_clamped(*c2_secret))
}
