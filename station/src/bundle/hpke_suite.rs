//! The one HPKE (RFC 9180) suite of the bundle, through the `hpke` crate: DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode, one message per context
//! (sequence number 0).

use super::{OpenBundleError, SealBundleError};
use hpke::aead::{AeadTag, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::{CryptoRng, RngCore};
use hpke::{Deserializable, HpkeError, OpModeR, OpModeS, Serializable};
use keyfill_formats::SecretKey;
use keyfill_formats::bundle::{AEAD_TAG_LEN, ENC_LEN, HPKE_AEAD_ID, HPKE_KDF_ID, HPKE_KEM_ID};
use zeroize::{Zeroize, Zeroizing};

type Kem = X25519HkdfSha256;
type Kdf = HkdfSha256;
type Aead = ChaCha20Poly1305;
type PublicKey = <Kem as hpke::Kem>::PublicKey;
type PrivateKey = <Kem as hpke::Kem>::PrivateKey;
type EncappedKey = <Kem as hpke::Kem>::EncappedKey;

// The ids written into every bundle are the ids of the types used here.
const _: () = assert!(
    <Kem as hpke::Kem>::KEM_ID == HPKE_KEM_ID
        && <Kdf as hpke::kdf::Kdf>::KDF_ID == HPKE_KDF_ID
        && <Aead as hpke::aead::Aead>::AEAD_ID == HPKE_AEAD_ID
);

/// Length of the ephemeral's input keying material (Nsk of X25519).
pub(crate) const IKM_LEN: usize = 32;

/// Hands hpke the ephemeral's input keying material, drawn beforehand.
///
/// hpke 0.13 takes a rand_core 0.9 RNG (not the 0.6 `OsRng` of the workspace) and its
/// `gen_keypair` reads exactly Nsk = 32 bytes from it, then runs RFC 9180 DeriveKeyPair on them.
/// Drawing those bytes ourselves from ring's system random source keeps the failure of the
/// random source a typed error (an `RngCore` cannot fail), and lets the RFC's `ikmE` go through
/// the very same path in the known-answer test. Should hpke ever ask for more, the extra bytes
/// are zeros and the caller discards the result.
struct IkmRng<'a> {
    ikm: &'a [u8; IKM_LEN],
    used: usize,
    overdrawn: bool,
}

impl RngCore for IkmRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let available = &self.ikm[self.used..];
        let n = dst.len().min(available.len());
        dst[..n].copy_from_slice(&available[..n]);
        self.used += n;
        if n < dst.len() {
            dst[n..].fill(0);
            self.overdrawn = true;
        }
    }
}

impl CryptoRng for IkmRng<'_> {}

/// The encapsulated key and the ciphertext (tag appended).
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) encapsulated_key: [u8; ENC_LEN],
    pub(crate) ciphertext: Vec<u8>,
}

/// SetupBaseS with the ephemeral derived from `ikm`, then one Seal.
pub(crate) fn seal(
    recipient_public: &[u8; 32],
    ikm: &[u8; IKM_LEN],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Sealed, SealBundleError> {
    let recipient = PublicKey::from_bytes(recipient_public).map_err(|_| SealBundleError::InvalidRecipient)?;
    let mut rng = IkmRng { ikm, used: 0, overdrawn: false };
    let (encapped, mut context) = hpke::setup_sender::<Aead, Kdf, Kem, _>(&OpModeS::Base, &recipient, info, &mut rng)
        .map_err(|e| match e {
        // The only encapsulation failure of X25519: a low-order point, whose DH is all zero.
        HpkeError::EncapError => SealBundleError::InvalidRecipient,
        _ => SealBundleError::Encryption,
    })?;
    if rng.overdrawn {
        return Err(SealBundleError::Random);
    }
    // Sized so that appending the tag never reallocates a buffer that held plaintext.
    let mut buffer = Vec::with_capacity(plaintext.len() + AEAD_TAG_LEN);
    buffer.extend_from_slice(plaintext);
    let tag = match context.seal_in_place_detached(&mut buffer, aad) {
        Ok(tag) => tag,
        Err(_) => {
            buffer.zeroize();
            return Err(SealBundleError::Encryption);
        }
    };
    buffer.extend_from_slice(&tag.to_bytes());
    let mut encapsulated_key = [0u8; ENC_LEN];
    encapsulated_key.copy_from_slice(&encapped.to_bytes());
    Ok(Sealed { encapsulated_key, ciphertext: buffer })
}

/// SetupBaseR, then one Open. Any failure is [`OpenBundleError::Decryption`]: which step failed
/// tells an attacker nothing useful and the operator nothing actionable.
pub(crate) fn open(
    recipient_private: &SecretKey,
    encapsulated_key: &[u8; ENC_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenBundleError> {
    let private = PrivateKey::from_bytes(recipient_private.expose()).map_err(|_| OpenBundleError::Decryption)?;
    let encapped = EncappedKey::from_bytes(encapsulated_key).map_err(|_| OpenBundleError::Decryption)?;
    let split = ciphertext.len().checked_sub(AEAD_TAG_LEN).ok_or(OpenBundleError::Decryption)?;
    let (body, tag) = ciphertext.split_at(split);
    let tag = AeadTag::<Aead>::from_bytes(tag).map_err(|_| OpenBundleError::Decryption)?;
    let mut context = hpke::setup_receiver::<Aead, Kdf, Kem>(&OpModeR::Base, &private, &encapped, info)
        .map_err(|_| OpenBundleError::Decryption)?;
    let mut buffer = Zeroizing::new(body.to_vec());
    context.open_in_place_detached(&mut buffer, aad, &tag).map_err(|_| OpenBundleError::Decryption)?;
    Ok(buffer)
}

/// The X25519 public key of a private key (RFC 9180 `pk(skR)`).
pub(crate) fn public_key(private: &SecretKey) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*private.expose());
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// Runs a whole RFC 9180 test-vector encryption sequence: SetupBaseS from `ikm_e`, then one
/// Seal per `(aad, plaintext)`. Keyfill itself seals once per context ([`seal`]).
#[cfg(test)]
pub(crate) fn seal_sequence(
    recipient_public: &[u8; 32],
    ikm_e: &[u8; IKM_LEN],
    info: &[u8],
    messages: &[(Vec<u8>, Vec<u8>)],
) -> Option<([u8; ENC_LEN], Vec<Vec<u8>>)> {
    let recipient = PublicKey::from_bytes(recipient_public).ok()?;
    let mut rng = IkmRng { ikm: ikm_e, used: 0, overdrawn: false };
    let (encapped, mut context) =
        hpke::setup_sender::<Aead, Kdf, Kem, _>(&OpModeS::Base, &recipient, info, &mut rng).ok()?;
    let ciphertexts = messages.iter().map(|(aad, pt)| context.seal(pt, aad).ok()).collect::<Option<Vec<_>>>()?;
    let mut enc = [0u8; ENC_LEN];
    enc.copy_from_slice(&encapped.to_bytes());
    (!rng.overdrawn).then_some((enc, ciphertexts))
}
