//! Offline C2 export bundles: device keys for an air-gapped factory, encrypted to the C2
//! operator's X25519 key with HPKE (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305) and signed with the station's Ed25519 bundle-signing key, which the factory
//! root certifies. The byte format is `keyfill_formats::bundle`; docs/formats.md §13 specifies
//! both.
//!
//! - [`seal_bundle`]: entries → bundle file bytes.
//! - [`open_bundle`]: verifies (signer certificate against the pinned factory root, signature,
//!   manifest, recipient) and only then decrypts and checks the entries against the manifest.
//! - [`BundleSigner`], [`certify_bundle_signer`]: the signing key and its certificate
//!   (`StationHome::bundle_signer` keeps one in the station home).
//! - [`RecipientPrivateKey`] and the key-file functions: the C2 operator's key pair.

mod hpke_suite;
mod recipient;
mod signer;
#[cfg(test)]
mod tests;
mod verify;

pub use keyfill_formats::bundle::{BundleEntry, CryptoMode, Manifest};
pub use keyfill_formats::cert::BundleSignerCertificate;
pub use recipient::{
    KeyFileError, RECIPIENT_KEY_CONTEXT, RecipientPrivateKey, RecipientPublicKey, generate_recipient_key_files,
    load_recipient_private_key, public_key_path, read_factory_root_public, read_recipient_public_key,
    write_recipient_key_files,
};
pub use signer::{BundleSigner, SignerError, certify_bundle_signer, signer_certificate_trusted};
pub use verify::MAX_CREATION_SKEW_MS;

use crate::seal;
use keyfill_formats::bundle::{
    BundleError, BundleFile, HPKE_INFO, MAX_BUNDLE_LEN, decode_entries, encode_bundle, encode_entries,
    encode_signed_body, signing_input, to_hex,
};
use thiserror::Error;
use verify::VerifiedBundle;
use zeroize::Zeroizing;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealBundleError {
    #[error("cannot build the bundle: {source}")]
    Entries { source: BundleError },
    #[error(
        "the bundle-signer certificate (valid {not_before}..={not_after}) is not valid at the creation time \
         {created_at} (Unix seconds)"
    )]
    SignerNotValid { created_at: u64, not_before: u64, not_after: u64 },
    #[error("the recipient public key is not a usable X25519 key")]
    InvalidRecipient,
    #[error("HPKE encryption failed")]
    Encryption,
    #[error("the bundle would be {len} bytes, over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("cannot sign the bundle: {source}")]
    Signer { source: SignerError },
    #[error("the system random source failed")]
    Random,
}

impl From<BundleError> for SealBundleError {
    fn from(source: BundleError) -> Self {
        SealBundleError::Entries { source }
    }
}

/// Why a bundle was refused. None of these means that anything was decrypted, except
/// [`OpenBundleError::Invalid`] after decryption (the entries contradict the signed manifest),
/// in which case the plaintext was wiped and nothing is returned.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenBundleError {
    #[error("invalid bundle: {source}")]
    Invalid { source: BundleError },
    #[error(
        "the bundle's signer is certified by another factory root (root key id {found}; the pinned root's is {expected})"
    )]
    SignerOtherRoot { found: String, expected: String },
    #[error("the bundle's signer certificate is not signed by the pinned factory root")]
    SignerUntrusted,
    #[error("the bundle signature does not verify: the file was altered, or not signed by its certified signer")]
    BadSignature,
    #[error(
        "the manifest names station {manifest_station} but the signer is certified for station {certified_station}"
    )]
    StationMismatch { manifest_station: String, certified_station: String },
    #[error(
        "the signer certificate (valid {not_before}..={not_after}) was not valid when the bundle was created \
         ({created_at}, Unix seconds)"
    )]
    SignerNotValidAtCreation { created_at: u64, not_before: u64, not_after: u64 },
    #[error("the bundle claims to be created at {created_at_ms} (Unix ms), more than a day after now ({now_ms})")]
    CreatedInFuture { created_at_ms: u64, now_ms: u64 },
    #[error("the bundle is encrypted to recipient key {addressed_to}, not to this key ({ours})")]
    WrongRecipient { addressed_to: String, ours: String },
    #[error("decryption failed: the bundle was altered, or the key does not match")]
    Decryption,
}

impl From<BundleError> for OpenBundleError {
    fn from(source: BundleError) -> Self {
        OpenBundleError::Invalid { source }
    }
}

/// What a verified bundle says about itself, readable without the recipient's private key.
#[derive(Debug, Clone)]
pub struct BundleSummary {
    pub manifest: Manifest,
    pub signer: BundleSignerCertificate,
}

/// A verified, decrypted bundle. `Debug` redacts the keys.
#[derive(Debug)]
pub struct OpenedBundle {
    pub manifest: Manifest,
    pub signer: BundleSignerCertificate,
    pub entries: Vec<BundleEntry>,
}

/// Encrypts `entries` to `recipient` and signs the bundle. `created_at_ms` is Unix
/// milliseconds; the signer's certificate must be valid then. Refuses entries an importer would
/// refuse (see `keyfill_formats::bundle::check_entries`), and more than
/// `keyfill_formats::bundle::MAX_ENTRIES` of them: split larger exports into several bundles.
pub fn seal_bundle(
    signer: &BundleSigner,
    recipient: &RecipientPublicKey,
    entries: &[BundleEntry],
    created_at_ms: u64,
) -> Result<Vec<u8>, SealBundleError> {
    let bundle_id = seal::random_array::<16>().map_err(|_| SealBundleError::Random)?;
    let ephemeral_ikm =
        Zeroizing::new(seal::random_array::<{ hpke_suite::IKM_LEN }>().map_err(|_| SealBundleError::Random)?);
    seal_with(signer, recipient, entries, created_at_ms, bundle_id, &ephemeral_ikm)
}

/// [`seal_bundle`] with its two random inputs given (the vectors fix them).
fn seal_with(
    signer: &BundleSigner,
    recipient: &RecipientPublicKey,
    entries: &[BundleEntry],
    created_at_ms: u64,
    bundle_id: [u8; 16],
    ephemeral_ikm: &[u8; hpke_suite::IKM_LEN],
) -> Result<Vec<u8>, SealBundleError> {
    let body = &signer.certificate().body;
    let created_at = created_at_ms / 1000;
    if !body.valid_at(created_at) {
        return Err(SealBundleError::SignerNotValid {
            created_at,
            not_before: body.not_before,
            not_after: body.not_after,
        });
    }
    let manifest = Manifest::describe(bundle_id, signer.certificate(), created_at_ms, *recipient.as_bytes(), entries)?;
    seal_manifest(signer, &manifest, &encode_entries(entries), ephemeral_ikm)
}

/// Encrypts `plaintext` under `manifest` and signs. Checks nothing about either: tests use it
/// to build bundles whose manifest contradicts their entries.
fn seal_manifest(
    signer: &BundleSigner,
    manifest: &Manifest,
    plaintext: &[u8],
    ephemeral_ikm: &[u8; hpke_suite::IKM_LEN],
) -> Result<Vec<u8>, SealBundleError> {
    let manifest_bytes = manifest.encode();
    let sealed = hpke_suite::seal(&manifest.recipient_public, ephemeral_ikm, HPKE_INFO, &manifest_bytes, plaintext)?;
    let certificate = signer.certificate().encode();
    let signed_body = encode_signed_body(&manifest_bytes, &certificate, &sealed.encapsulated_key, &sealed.ciphertext);
    // The ciphertext now lives in `signed_body`; free this copy before the signing input makes another.
    drop(sealed);
    let signature = signer.sign(&signing_input(&signed_body)).map_err(|source| SealBundleError::Signer { source })?;
    let file = encode_bundle(&signed_body, &signature);
    if file.len() > MAX_BUNDLE_LEN {
        return Err(SealBundleError::TooLarge { len: file.len(), max: MAX_BUNDLE_LEN });
    }
    Ok(file)
}

/// [`seal_manifest`] for the fuzz targets, which seal a manifest and a plaintext of their own
/// choosing so that the importer's checks behind the signature and the AEAD are reached
/// (`fuzz/fuzz_targets/bundle_open.rs`). Exists only in `cargo fuzz` builds (`--cfg fuzzing`).
#[cfg(fuzzing)]
pub fn seal_manifest_for_fuzzing(
    signer: &BundleSigner,
    manifest: &Manifest,
    plaintext: &[u8],
    ephemeral_ikm: &[u8; 32],
) -> Result<Vec<u8>, SealBundleError> {
    seal_manifest(signer, manifest, plaintext, ephemeral_ikm)
}

/// Parses and verifies a bundle without decrypting it: the signer certificate against the
/// pinned `factory_root` (Ed25519 public key), the signature, the manifest's station and
/// creation time. `now_ms` is the importer's clock, Unix milliseconds.
pub fn verify_bundle(bytes: &[u8], factory_root: &[u8; 32], now_ms: u64) -> Result<BundleSummary, OpenBundleError> {
    let verified = verify::verify(BundleFile::decode(bytes)?, factory_root, now_ms)?;
    let file = verified.file();
    Ok(BundleSummary { manifest: file.manifest.clone(), signer: file.signer_certificate.clone() })
}

/// Verifies a bundle as [`verify_bundle`] does, checks that it is addressed to `recipient`,
/// decrypts it, and checks the entries against the manifest (count, time range, unique names,
/// device ids, non-zero keys).
pub fn open_bundle(
    bytes: &[u8],
    recipient: &RecipientPrivateKey,
    factory_root: &[u8; 32],
    now_ms: u64,
) -> Result<OpenedBundle, OpenBundleError> {
    let verified = verify::verify(BundleFile::decode(bytes)?, factory_root, now_ms)?;
    decrypt(verified, recipient)
}

fn decrypt(verified: VerifiedBundle<'_>, recipient: &RecipientPrivateKey) -> Result<OpenedBundle, OpenBundleError> {
    let file = verified.file();
    let ours = recipient.public_key();
    if &file.manifest.recipient_public != ours.as_bytes() {
        return Err(OpenBundleError::WrongRecipient {
            addressed_to: to_hex(&file.manifest.recipient_public),
            ours: ours.to_hex(),
        });
    }
    let plaintext =
        hpke_suite::open(recipient.secret(), &file.encapsulated_key, HPKE_INFO, file.manifest_bytes, file.ciphertext)?;
    let entries = decode_entries(&plaintext, &file.manifest)?;
    Ok(OpenedBundle { manifest: file.manifest.clone(), signer: file.signer_certificate.clone(), entries })
}
