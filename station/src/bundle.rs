//! Offline C2 export bundles: device keys for an air-gapped factory, encrypted to the C2
//! operator's X25519 key with HPKE (RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305) and signed with the station's Ed25519 bundle-signing key, which the factory
//! root certifies. The byte format is `keyfill_formats::bundle`; docs/formats.md §13 specifies
//! both.
//!
//! - [`PartSealer`]: entries → the parts of one bundle file, one part at a time, so that a
//!   million keys never sit in memory together; [`seal_bundle`] for a one-part file.
//! - [`SeriesReader`]: reads a file part by part, verifies each (signer certificate against the
//!   pinned factory root, signature, manifest, place in the file, recipient) and only then
//!   decrypts and checks its entries; [`open_bundle`] and [`verify_bundle`] for a file in memory.
//! - [`BundleSigner`], [`certify_bundle_signer`]: the signing key and its certificate
//!   (`StationHome::bundle_signer` keeps one in the station home).
//! - [`RecipientPrivateKey`] and the key-file functions: the C2 operator's key pair.

pub(crate) mod hpke_suite;
mod reader;
mod recipient;
mod signer;
#[cfg(test)]
mod tests;
mod verify;

pub use keyfill_formats::bundle::{BundleEntry, CryptoMode, Manifest, PartPosition, SeriesManifest};
pub use keyfill_formats::cert::BundleSignerCertificate;
pub use reader::{OpenedPart, SeriesReader};
pub use recipient::{
    KeyFileError, RECIPIENT_KEY_CONTEXT, RecipientPrivateKey, RecipientPublicKey, generate_recipient_key_files,
    load_recipient_private_key, public_key_path, read_factory_root_public, read_recipient_public_key,
    write_recipient_key_files,
};
pub(crate) use signer::signature_valid;
pub use signer::{
    BundleSigner, Ed25519Signer, SignerError, TokenSigner, certify_bundle_signer, signer_certificate_trusted,
};
pub use verify::MAX_CREATION_SKEW_MS;

use crate::seal;
use keyfill_formats::bundle::{
    BundleError, MAX_BUNDLE_LEN, MAX_SERIES_PARTS, encode_bundle, encode_entries, encode_signed_body, hpke_info,
    signing_input,
};
use thiserror::Error;
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
    #[error("the bundle's last part is sealed: nothing can follow it")]
    Finished,
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
    #[error("cannot read the bundle: {0}")]
    Read(#[source] std::io::Error),
    #[error("part {index} of the bundle changed since it was checked: the file was modified while in use")]
    Changed { index: u64 },
    #[error(
        "the bundle gives one key to two devices, {first} and {second} (key check value {check_value}): a key \
         twice means a failing random source or a cloned station where the bundle was made, and one device would \
         hold another's key; the whole bundle is refused"
    )]
    DuplicateKey { check_value: String, first: String, second: String },
}

impl From<BundleError> for OpenBundleError {
    fn from(source: BundleError) -> Self {
        OpenBundleError::Invalid { source }
    }
}

/// What a verified bundle says about itself, readable without the recipient's private key.
#[derive(Debug, Clone)]
pub struct BundleSummary {
    pub manifest: SeriesManifest,
    /// The signer certificate of the first part.
    pub signer: BundleSignerCertificate,
}

/// A verified, decrypted bundle. `Debug` redacts the keys.
#[derive(Debug)]
pub struct OpenedBundle {
    pub manifest: SeriesManifest,
    pub signer: BundleSignerCertificate,
    pub entries: Vec<BundleEntry>,
}

/// Seals the parts of one bundle file in order: the same bundle id and creation time in each,
/// the index counted here, the last flagged. The caller writes each part as it comes.
#[derive(Debug)]
pub struct PartSealer<'a> {
    signer: &'a BundleSigner,
    recipient: RecipientPublicKey,
    bundle_id: [u8; 16],
    created_at_ms: u64,
    next_index: u64,
    finished: bool,
}

impl<'a> PartSealer<'a> {
    /// A new bundle created at `created_at_ms` (Unix milliseconds), when the signer's
    /// certificate must be valid.
    pub fn new(
        signer: &'a BundleSigner,
        recipient: &RecipientPublicKey,
        created_at_ms: u64,
    ) -> Result<Self, SealBundleError> {
        let bundle_id = seal::random_array::<16>().map_err(|_| SealBundleError::Random)?;
        Self::with_id(signer, recipient, created_at_ms, bundle_id)
    }

    fn with_id(
        signer: &'a BundleSigner,
        recipient: &RecipientPublicKey,
        created_at_ms: u64,
        bundle_id: [u8; 16],
    ) -> Result<Self, SealBundleError> {
        let body = &signer.certificate().body;
        let created_at = created_at_ms / 1000;
        if !body.valid_at(created_at) {
            return Err(SealBundleError::SignerNotValid {
                created_at,
                not_before: body.not_before,
                not_after: body.not_after,
            });
        }
        Ok(PartSealer { signer, recipient: *recipient, bundle_id, created_at_ms, next_index: 0, finished: false })
    }

    pub fn bundle_id(&self) -> [u8; 16] {
        self.bundle_id
    }

    /// The next part, holding `entries` (1..=`MAX_ENTRIES`, checked as an importer will; the
    /// caller keeps device ids rising across parts); `last` for the final one.
    pub fn seal(&mut self, entries: &[BundleEntry], last: bool) -> Result<Vec<u8>, SealBundleError> {
        let ephemeral_ikm =
            Zeroizing::new(seal::random_array::<{ hpke_suite::IKM_LEN }>().map_err(|_| SealBundleError::Random)?);
        self.seal_with(entries, last, &ephemeral_ikm)
    }

    fn seal_with(
        &mut self,
        entries: &[BundleEntry],
        last: bool,
        ephemeral_ikm: &[u8; hpke_suite::IKM_LEN],
    ) -> Result<Vec<u8>, SealBundleError> {
        if self.finished {
            return Err(SealBundleError::Finished);
        }
        if self.next_index >= MAX_SERIES_PARTS {
            return Err(BundleError::TooManyParts { max: MAX_SERIES_PARTS }.into());
        }
        let part = PartPosition { index: self.next_index, last };
        let signer = self.signer.certificate();
        let recipient = *self.recipient.as_bytes();
        let manifest = Manifest::describe(self.bundle_id, Some(part), signer, self.created_at_ms, recipient, entries)?;
        let sealed = seal_manifest(self.signer, &manifest, &encode_entries(entries), ephemeral_ikm)?;
        self.next_index += 1;
        self.finished = last;
        Ok(sealed)
    }
}

/// A one-part bundle file holding `entries`. `created_at_ms` is Unix milliseconds; the signer's
/// certificate must be valid then. Refuses entries an importer would refuse (see
/// `keyfill_formats::bundle::check_entries`), more than `keyfill_formats::bundle::MAX_ENTRIES`
/// of them ([`PartSealer`] makes files of several parts), and entries not in increasing
/// device-id order, which an importer of a version 2 file requires.
pub fn seal_bundle(
    signer: &BundleSigner,
    recipient: &RecipientPublicKey,
    entries: &[BundleEntry],
    created_at_ms: u64,
) -> Result<Vec<u8>, SealBundleError> {
    if entries.windows(2).any(|pair| pair[0].device_id.0 > pair[1].device_id.0) {
        return Err(BundleError::EntriesOutOfOrder { index: 0 }.into());
    }
    PartSealer::new(signer, recipient, created_at_ms)?.seal(entries, true)
}

/// A version 1 bundle with its two random inputs given: the format before parts, which the
/// vectors still reproduce byte for byte.
#[cfg(test)]
fn seal_v1_with(
    signer: &BundleSigner,
    recipient: &RecipientPublicKey,
    entries: &[BundleEntry],
    created_at_ms: u64,
    bundle_id: [u8; 16],
    ephemeral_ikm: &[u8; hpke_suite::IKM_LEN],
) -> Result<Vec<u8>, SealBundleError> {
    PartSealer::with_id(signer, recipient, created_at_ms, bundle_id)?;
    let manifest =
        Manifest::describe(bundle_id, None, signer.certificate(), created_at_ms, *recipient.as_bytes(), entries)?;
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
    let version = manifest.version();
    let info = hpke_info(version).ok_or(BundleError::UnsupportedVersion { version })?;
    let manifest_bytes = manifest.encode();
    let sealed = hpke_suite::seal(&manifest.recipient_public, ephemeral_ikm, info, &manifest_bytes, plaintext)?;
    let certificate = signer.certificate().encode();
    let signed_body =
        encode_signed_body(version, &manifest_bytes, &certificate, &sealed.encapsulated_key, &sealed.ciphertext);
    // The ciphertext now lives in `signed_body`; free this copy before the signing input makes another.
    drop(sealed);
    let message = signing_input(version, &signed_body).ok_or(BundleError::UnsupportedVersion { version })?;
    let signature = signer.sign(&message).map_err(|source| SealBundleError::Signer { source })?;
    drop(message);
    let file = encode_bundle(version, &signed_body, &signature);
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

/// Parses and verifies a bundle file held in memory without decrypting it: every part's signer
/// certificate against the pinned `factory_root` (Ed25519 public key), signature, station and
/// creation time, and the parts' sequence. `now_ms` is the importer's clock, Unix milliseconds.
pub fn verify_bundle(bytes: &[u8], factory_root: &[u8; 32], now_ms: u64) -> Result<BundleSummary, OpenBundleError> {
    let mut reader = SeriesReader::new(bytes, factory_root, now_ms);
    while reader.next_verified()?.is_some() {}
    reader.finish()
}

/// Verifies a bundle file held in memory as [`verify_bundle`] does, checks that it is addressed
/// to `recipient`, decrypts every part, and checks the entries against the manifests (count,
/// time range, unique names, device ids, non-zero keys, device ids rising across parts).
pub fn open_bundle(
    bytes: &[u8],
    recipient: &RecipientPrivateKey,
    factory_root: &[u8; 32],
    now_ms: u64,
) -> Result<OpenedBundle, OpenBundleError> {
    let mut reader = SeriesReader::new(bytes, factory_root, now_ms);
    let mut entries = Vec::new();
    while let Some(part) = reader.next_opened(recipient)? {
        entries.extend(part.entries);
    }
    let summary = reader.finish()?;
    Ok(OpenedBundle { manifest: summary.manifest, signer: summary.signer, entries })
}
