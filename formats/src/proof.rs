//! Proofs of key possession and certificate signatures, with ring's primitives.
//!
//! A proof is HMAC-SHA256 keyed with the delivered key over a label, the Noise handshake hash
//! of the session, the device id and the key id. Binding the handshake hash makes a proof
//! useless outside the session it was made in (no replay); keying with the delivered key proves
//! the device holds exactly that key.

use crate::cert::{CertificateBody, StationCertificate};
use crate::ids::DeviceId;
use crate::secret::SecretKey;
use ring::{hkdf, hmac, signature};

const CONFIRMATION_LABEL: &[u8] = b"keyfill key confirmation v1\0";
const STATUS_LABEL: &[u8] = b"keyfill key status v1\0";

/// Which statement a proof makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofPurpose {
    /// "I stored the key just delivered in this session."
    Confirmation,
    /// "I hold the key with this id" (answer to a status query).
    Status,
}

fn proof_message(purpose: ProofPurpose, handshake_hash: &[u8], device_id: &DeviceId, key_id: &[u8; 16]) -> Vec<u8> {
    let label = match purpose {
        ProofPurpose::Confirmation => CONFIRMATION_LABEL,
        ProofPurpose::Status => STATUS_LABEL,
    };
    let mut message = Vec::with_capacity(label.len() + 2 + handshake_hash.len() + 32);
    message.extend_from_slice(label);
    message.extend_from_slice(&(handshake_hash.len() as u16).to_be_bytes());
    message.extend_from_slice(handshake_hash);
    message.extend_from_slice(&device_id.0);
    message.extend_from_slice(key_id);
    message
}

/// Computes a possession proof.
pub fn possession_proof(
    purpose: ProofPurpose,
    key: &SecretKey,
    handshake_hash: &[u8],
    device_id: &DeviceId,
    key_id: &[u8; 16],
) -> [u8; 32] {
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    let tag = hmac::sign(&hmac_key, &proof_message(purpose, handshake_hash, device_id, key_id));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Verifies a possession proof in constant time.
pub fn verify_possession_proof(
    purpose: ProofPurpose,
    key: &SecretKey,
    handshake_hash: &[u8],
    device_id: &DeviceId,
    key_id: &[u8; 16],
    proof: &[u8; 32],
) -> bool {
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key.expose());
    hmac::verify(&hmac_key, &proof_message(purpose, handshake_hash, device_id, key_id), proof).is_ok()
}

/// The 32-byte Noise PSK of a device in setup-secret mode: HKDF-SHA256 of the label's 128-bit
/// secret, salted with a fixed label, with the device id as info.
pub fn setup_psk(setup_secret: &[u8; 16], device_id: &DeviceId) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"keyfill setup secret psk v1");
    let prk = salt.extract(setup_secret);
    let info = [&device_id.0[..]];
    let mut out = [0u8; 32];
    // Expanding 32 bytes from SHA-256 is always within HKDF's limit of 255 blocks.
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

/// Verifies the factory root's Ed25519 signature on a certificate.
pub fn certificate_signature_valid(certificate: &StationCertificate, root_public_key: &[u8; 32]) -> bool {
    let key = signature::UnparsedPublicKey::new(&signature::ED25519, root_public_key);
    key.verify(&CertificateBody::signing_input(&certificate.tbs), &certificate.signature).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_binds_every_input() {
        let key = SecretKey::from_bytes([7; 32]);
        let other_key = SecretKey::from_bytes([8; 32]);
        let id = DeviceId::from_name("x");
        let proof = possession_proof(ProofPurpose::Confirmation, &key, b"hash", &id, &[1; 16]);
        assert!(verify_possession_proof(ProofPurpose::Confirmation, &key, b"hash", &id, &[1; 16], &proof));
        assert!(!verify_possession_proof(ProofPurpose::Status, &key, b"hash", &id, &[1; 16], &proof));
        assert!(!verify_possession_proof(ProofPurpose::Confirmation, &other_key, b"hash", &id, &[1; 16], &proof));
        assert!(!verify_possession_proof(ProofPurpose::Confirmation, &key, b"hasH", &id, &[1; 16], &proof));
        assert!(!verify_possession_proof(ProofPurpose::Confirmation, &key, b"hash", &id, &[2; 16], &proof));
    }
}
