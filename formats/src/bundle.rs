//! Offline C2 export bundle: a batch of device keys for an air-gapped factory, encrypted to the
//! C2 operator's X25519 key with HPKE and signed by the station's certified bundle-signing key.
//!
//! ```text
//! file        = part, part, …            (version 2: a CBOR sequence; version 1: one part)
//! part        = ["keyfill-c2-bundle", version, signed_body: bytes, signature: bytes(64)]
//! signed_body = [version, kem_id, kdf_id, aead_id, manifest: bytes, signer_certificate: bytes,
//!                enc: bytes(32), ciphertext: bytes]
//! manifest v2 = [2, bundle_id(16), part_index, last_part, station_id(16), station_name,
//!                created_at_ms, count, earliest_provisioned_at_ms, latest_provisioned_at_ms,
//!                crypto_mode, recipient_public(32)]
//! manifest v1 = the same without part_index and last_part
//! plaintext   = [entry, …]
//! entry       = [name, device_id(16), key_id(16), provisioned_at_ms, from_rotation, key(32)]
//! ```
//!
//! Each part is sealed and signed on its own, so that a reader holds one part at a time; the
//! signed part index and last-part flag make dropping, reordering, repeating or truncating parts
//! detectable ([`series`]). The signature covers the version's signing context ‖ `signed_body`;
//! the HPKE AEAD's associated data is the exact `manifest` bytes. This module is pure data: the
//! HPKE and Ed25519 calls live in the station (`keyfill_station::bundle`). docs/formats.md §13 is
//! the full specification.

mod series;

pub use series::{MAX_PART_PREFIX_LEN, MAX_SERIES_PARTS, SeriesCheck, SeriesManifest, part_len};

use crate::cbor::{self, CborError, Reader, Writer};
use crate::cert::{self, BundleSignerCertificate, CertificateError};
use crate::ids::{self, DeviceId};
use crate::name::{DeviceName, NameError};
use crate::secret::SecretKey;
use std::collections::HashSet;
use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

/// First element of every bundle, so that another CBOR file is refused by name.
pub const FORMAT_TAG: &str = "keyfill-c2-bundle";
/// The version written: a file of one or more parts.
pub const VERSION: u64 = 2;
/// The first version: a file of exactly one bundle, still read.
pub const VERSION_1: u64 = 1;
/// HPKE (RFC 9180) suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, base mode.
pub const HPKE_KEM_ID: u16 = 0x0020;
pub const HPKE_KDF_ID: u16 = 0x0001;
pub const HPKE_AEAD_ID: u16 = 0x0003;
/// HPKE `info` of version 1 and 2: binds the key schedule to this use and version.
pub const HPKE_INFO_V1: &[u8] = b"keyfill c2 bundle v1";
pub const HPKE_INFO_V2: &[u8] = b"keyfill c2 bundle v2";
/// Domain separation for the station's Ed25519 signature over `signed_body`, per version.
pub const SIGNING_CONTEXT_V1: &[u8] = b"keyfill c2 bundle signature v1\0";
pub const SIGNING_CONTEXT_V2: &[u8] = b"keyfill c2 bundle signature v2\0";
/// Length of the HPKE encapsulated key (an X25519 public key).
pub const ENC_LEN: usize = 32;
/// Length of the ChaCha20-Poly1305 tag at the end of the ciphertext.
pub const AEAD_TAG_LEN: usize = 16;
/// Largest part (a whole version 1 file) accepted or written.
pub const MAX_BUNDLE_LEN: usize = 64 * 1024 * 1024;
/// Most entries in one part. The largest entry (a 255-byte name) encodes to
/// [`MAX_ENCODED_ENTRY`] bytes, so this many always fit in [`MAX_BUNDLE_LEN`].
pub const MAX_ENTRIES: u64 = 150_000;
/// Encoded size of an entry with a 255-byte name and a 9-byte timestamp.
pub const MAX_ENCODED_ENTRY: usize = 336;
/// Smallest possible encoded entry (1-byte name, 1-byte timestamp); bounds pre-allocation.
const MIN_ENCODED_ENTRY: usize = 73;
pub const MAX_MANIFEST_LEN: usize = 512;
const MAX_CRYPTO_MODE_LEN: usize = 16;

const _: () = assert!(MAX_ENTRIES as usize * MAX_ENCODED_ENTRY + 4096 <= MAX_BUNDLE_LEN);

/// The HPKE `info` of a version, `None` for a version this module does not know.
pub fn hpke_info(version: u64) -> Option<&'static [u8]> {
    match version {
        VERSION_1 => Some(HPKE_INFO_V1),
        VERSION => Some(HPKE_INFO_V2),
        _ => None,
    }
}

/// The signing context of a version, `None` for a version this module does not know.
pub fn signing_context(version: u64) -> Option<&'static [u8]> {
    match version {
        VERSION_1 => Some(SIGNING_CONTEXT_V1),
        VERSION => Some(SIGNING_CONTEXT_V2),
        _ => None,
    }
}

fn known_version(version: u64) -> Result<u64, BundleError> {
    match version {
        VERSION_1 | VERSION => Ok(version),
        _ => Err(BundleError::UnsupportedVersion { version }),
    }
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum BundleError {
    #[error("bundle of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("not a Keyfill C2 bundle")]
    NotABundle,
    #[error("unsupported bundle version {version}")]
    UnsupportedVersion { version: u64 },
    #[error("unsupported HPKE suite (KEM {kem:#06x}, KDF {kdf:#06x}, AEAD {aead:#06x})")]
    UnsupportedSuite { kem: u64, kdf: u64, aead: u64 },
    #[error("unsupported crypto mode {mode:?}; only \"symmetric\" keys are exported")]
    UnsupportedCryptoMode { mode: String },
    #[error("malformed {part}: {source}")]
    Malformed { part: &'static str, source: CborError },
    #[error("malformed signer certificate: {source}")]
    SignerCertificate { source: CertificateError },
    #[error("ciphertext of {len} bytes is shorter than the {AEAD_TAG_LEN}-byte tag")]
    CiphertextTooShort { len: usize },
    #[error("a bundle must hold at least one key")]
    Empty,
    #[error("{count} entries exceed the limit of {max} per bundle")]
    TooManyEntries { count: u64, max: u64 },
    #[error("manifest time range is empty (earliest {earliest} > latest {latest})")]
    InvalidTimeRange { earliest: u64, latest: u64 },
    #[error("the manifest announces {manifest} entries but the bundle holds {actual}")]
    CountMismatch { manifest: u64, actual: u64 },
    #[error(
        "the manifest announces keys provisioned {manifest_earliest}..={manifest_latest} (Unix ms) but the entries \
         span {actual_earliest}..={actual_latest}"
    )]
    TimeRangeMismatch { manifest_earliest: u64, manifest_latest: u64, actual_earliest: u64, actual_latest: u64 },
    #[error("entry {index}: the device name is not valid: {reason}")]
    InvalidName { index: usize, reason: NameError },
    #[error("client {name:?} appears more than once")]
    DuplicateName { name: String },
    #[error("client {name:?}: device id is not SHA3-256(name)[..16]")]
    DeviceIdMismatch { name: String },
    #[error("client {name:?}: the key is all zero, which E4 forbids")]
    ZeroKey { name: String },
    #[error(
        "the file ends inside a part ({len} bytes of part {index} present, {needed} needed): it was cut short: copy the whole file again"
    )]
    Truncated { index: u64, len: usize, needed: usize },
    #[error("the file holds no part")]
    NoPart,
    #[error(
        "part {position} of the file says it is part {claimed}: parts were dropped, repeated or reordered; use the file as the station wrote it"
    )]
    PartOutOfOrder { position: u64, claimed: u64 },
    #[error("part {position} follows the part marked last: parts were appended")]
    PartAfterLast { position: u64 },
    #[error(
        "the file ends after part {last_index} without the part marked last: parts were removed; copy the whole file again"
    )]
    MissingLastPart { last_index: u64 },
    #[error("part {index} belongs to another bundle or disagrees with part 0 on its {field}")]
    PartsDisagree { index: u64, field: &'static str },
    #[error("more than {max} parts")]
    TooManyParts { max: u64 },
    #[error("part {index}: device ids are not in strictly increasing order across the parts")]
    EntriesOutOfOrder { index: u64 },
}

/// The kind of key a bundle carries, as C2 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoMode {
    /// 32-byte E4 symmetric client keys (C2 `CRYPTOMODE_SYMKEY`).
    Symmetric,
}

impl CryptoMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CryptoMode::Symmetric => "symmetric",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        (text == "symmetric").then_some(CryptoMode::Symmetric)
    }
}

/// Where a part stands in its file (version 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPosition {
    /// 0 for the first part.
    pub index: u64,
    /// Whether this is the file's final part.
    pub last: bool,
}

/// What one part holds, readable before decryption; signed, and the AEAD's associated data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Random, the same in every part of a file; lets an importer recognise a bundle it has
    /// already imported.
    pub bundle_id: [u8; 16],
    /// `None` in a version 1 bundle, which is a single part.
    pub part: Option<PartPosition>,
    pub station_id: [u8; 16],
    pub station_name: String,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Entries in this part.
    pub count: u64,
    /// Unix milliseconds: the smallest and largest `provisioned_at_ms` of the part's entries.
    pub earliest_provisioned_at_ms: u64,
    pub latest_provisioned_at_ms: u64,
    pub crypto_mode: CryptoMode,
    /// The C2 operator's X25519 public key the bundle is encrypted to.
    pub recipient_public: [u8; 32],
}

/// One device's key. `Debug` redacts the key ([`SecretKey`]); the key is wiped on drop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleEntry {
    /// The E4 client name, C2's handle for the client.
    pub name: DeviceName,
    pub device_id: DeviceId,
    pub key_id: [u8; 16],
    pub key: SecretKey,
    /// Unix milliseconds: when the key became the device's (provisioning or confirmed rotation).
    pub provisioned_at_ms: u64,
    /// Whether the key came from a confirmed rotation rather than from provisioning.
    pub from_rotation: bool,
}

/// Count and time range of a checked list of entries, as the manifest must state them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySummary {
    pub count: u64,
    pub earliest_provisioned_at_ms: u64,
    pub latest_provisioned_at_ms: u64,
}

/// A parsed bundle file, borrowing the large byte strings from the input. Nothing in it has
/// been verified: the caller checks the certificate, then the signature, then decrypts.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleFile<'a> {
    /// [`VERSION_1`] or [`VERSION`]: the same in the envelope, the signed body and the manifest.
    pub version: u64,
    /// Exactly the bytes signed after the version's signing context.
    pub signed_body: &'a [u8],
    pub signature: [u8; 64],
    /// Exactly the manifest bytes, the AEAD's associated data.
    pub manifest_bytes: &'a [u8],
    pub manifest: Manifest,
    pub signer_certificate: BundleSignerCertificate,
    pub encapsulated_key: [u8; ENC_LEN],
    /// HPKE ciphertext of the entries, tag included.
    pub ciphertext: &'a [u8],
}

impl fmt::Debug for BundleFile<'_> {
    // The byte strings can be 64 MiB: show their sizes, not their contents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleFile")
            .field("signed_body_len", &self.signed_body.len())
            .field("manifest", &self.manifest)
            .field("signer_certificate", &self.signer_certificate)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

fn malformed(part: &'static str) -> impl FnOnce(CborError) -> BundleError {
    move |source| BundleError::Malformed { part, source }
}

fn wrong_shape(field: &'static str, expected: &'static str) -> CborError {
    CborError::UnexpectedShape { field, expected }
}

/// Lowercase hex of `bytes`, for reports (ids and public keys only).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// The manifest of `entries`, after checking them as an importer will.
    pub fn describe(
        bundle_id: [u8; 16],
        part: Option<PartPosition>,
        signer: &BundleSignerCertificate,
        created_at_ms: u64,
        recipient_public: [u8; 32],
        entries: &[BundleEntry],
    ) -> Result<Self, BundleError> {
        let summary = check_entries(entries)?;
        Ok(Manifest {
            bundle_id,
            part,
            station_id: signer.body.station_id,
            station_name: signer.body.station_name.clone(),
            created_at_ms,
            count: summary.count,
            earliest_provisioned_at_ms: summary.earliest_provisioned_at_ms,
            latest_provisioned_at_ms: summary.latest_provisioned_at_ms,
            crypto_mode: CryptoMode::Symmetric,
            recipient_public,
        })
    }

    /// The format version this manifest belongs to.
    pub fn version(&self) -> u64 {
        if self.part.is_some() { VERSION } else { VERSION_1 }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self.part {
            Some(part) => w.array(12).uint(VERSION).bytes(&self.bundle_id).uint(part.index).bool(part.last),
            None => w.array(10).uint(VERSION_1).bytes(&self.bundle_id),
        };
        w.bytes(&self.station_id).text(&self.station_name);
        w.uint(self.created_at_ms).uint(self.count);
        w.uint(self.earliest_provisioned_at_ms).uint(self.latest_provisioned_at_ms);
        w.text(self.crypto_mode.as_str()).bytes(&self.recipient_public);
        w.finish()
    }

    pub fn decode(input: &[u8]) -> Result<Self, BundleError> {
        if input.len() > MAX_MANIFEST_LEN {
            return Err(BundleError::TooLarge { len: input.len(), max: MAX_MANIFEST_LEN });
        }
        // An unknown version is named as such, not as a shape the reader did not expect.
        let mut peek = Reader::new(input);
        if let (Ok(_), Ok(version)) = (peek.array("manifest"), peek.uint("version")) {
            known_version(version)?;
        }
        let (mode, manifest) = Self::read(input).map_err(malformed("manifest"))?;
        let Some(crypto_mode) = CryptoMode::parse(&mode) else {
            return Err(BundleError::UnsupportedCryptoMode { mode });
        };
        let manifest = Manifest { crypto_mode, ..manifest };
        cbor::require_deterministic(input, &manifest.encode()).map_err(malformed("manifest"))?;
        if manifest.count == 0 {
            return Err(BundleError::Empty);
        }
        if manifest.count > MAX_ENTRIES {
            return Err(BundleError::TooManyEntries { count: manifest.count, max: MAX_ENTRIES });
        }
        if manifest.earliest_provisioned_at_ms > manifest.latest_provisioned_at_ms {
            return Err(BundleError::InvalidTimeRange {
                earliest: manifest.earliest_provisioned_at_ms,
                latest: manifest.latest_provisioned_at_ms,
            });
        }
        Ok(manifest)
    }

    /// The structure alone: crypto mode as read, and the fields (mode provisional).
    fn read(input: &[u8]) -> Result<(String, Manifest), CborError> {
        let mut r = Reader::new(input);
        let fields = r.array("manifest")?;
        let version = r.uint("version")?;
        let expected = match version {
            VERSION_1 => 10,
            VERSION => 12,
            _ => return Err(wrong_shape("manifest version", "1 or 2")),
        };
        if fields != expected {
            return Err(wrong_shape("manifest", if version == VERSION { "12 fields" } else { "10 fields" }));
        }
        let bundle_id = r.bytes_exact::<16>("bundle id")?;
        let part = match version {
            VERSION => Some(PartPosition { index: r.uint("part index")?, last: r.bool("last part")? }),
            _ => None,
        };
        let station_id = r.bytes_exact::<16>("station id")?;
        let station_name = r.text("station name", cert::MAX_STATION_NAME)?.to_owned();
        let created_at_ms = r.uint("created at")?;
        let count = r.uint("count")?;
        let earliest_provisioned_at_ms = r.uint("earliest provisioned at")?;
        let latest_provisioned_at_ms = r.uint("latest provisioned at")?;
        let mode = r.text("crypto mode", MAX_CRYPTO_MODE_LEN)?.to_owned();
        let recipient_public = r.bytes_exact::<32>("recipient public key")?;
        r.finish()?;
        let manifest = Manifest {
            bundle_id,
            part,
            station_id,
            station_name,
            created_at_ms,
            count,
            earliest_provisioned_at_ms,
            latest_provisioned_at_ms,
            crypto_mode: CryptoMode::Symmetric,
            recipient_public,
        };
        Ok((mode, manifest))
    }

    /// Fails unless `summary` (of the decrypted entries) is what this manifest announced.
    pub fn check_summary(&self, summary: &EntrySummary) -> Result<(), BundleError> {
        if summary.count != self.count {
            return Err(BundleError::CountMismatch { manifest: self.count, actual: summary.count });
        }
        if summary.earliest_provisioned_at_ms != self.earliest_provisioned_at_ms
            || summary.latest_provisioned_at_ms != self.latest_provisioned_at_ms
        {
            return Err(BundleError::TimeRangeMismatch {
                manifest_earliest: self.earliest_provisioned_at_ms,
                manifest_latest: self.latest_provisioned_at_ms,
                actual_earliest: summary.earliest_provisioned_at_ms,
                actual_latest: summary.latest_provisioned_at_ms,
            });
        }
        Ok(())
    }

    pub fn bundle_id_hex(&self) -> String {
        to_hex(&self.bundle_id)
    }
}

/// Checks entries as C2 and the importer need them: 1..=[`MAX_ENTRIES`] of them, unique names
/// (valid by their type), device id = SHA3-256(name)[..16], no all-zero key.
pub fn check_entries(entries: &[BundleEntry]) -> Result<EntrySummary, BundleError> {
    let count = entries.len() as u64;
    if count == 0 {
        return Err(BundleError::Empty);
    }
    if count > MAX_ENTRIES {
        return Err(BundleError::TooManyEntries { count, max: MAX_ENTRIES });
    }
    let mut names = HashSet::with_capacity(entries.len());
    let (mut earliest, mut latest) = (u64::MAX, u64::MIN);
    for entry in entries {
        let name = || entry.name.as_str().to_owned();
        if !names.insert(entry.name.as_str()) {
            return Err(BundleError::DuplicateName { name: name() });
        }
        if entry.device_id != entry.name.device_id() {
            return Err(BundleError::DeviceIdMismatch { name: name() });
        }
        if entry.key.is_all_zero() {
            return Err(BundleError::ZeroKey { name: name() });
        }
        earliest = earliest.min(entry.provisioned_at_ms);
        latest = latest.max(entry.provisioned_at_ms);
    }
    Ok(EntrySummary { count, earliest_provisioned_at_ms: earliest, latest_provisioned_at_ms: latest })
}

/// One entry's encoding. The key is the last field so that it is written into the buffer's
/// final allocation: growing the buffer earlier never leaves a copy of it in freed memory.
fn encode_entry(entry: &BundleEntry) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::new();
    w.array(6).text(entry.name.as_str()).bytes(&entry.device_id.0).bytes(&entry.key_id);
    w.uint(entry.provisioned_at_ms).bool(entry.from_rotation).bytes(entry.key.expose());
    Zeroizing::new(w.finish())
}

/// The plaintext: deterministic CBOR of `entries`, in a buffer wiped on drop and sized up front
/// so that it never reallocates (a reallocation would leave key bytes behind). Does not check
/// the entries; see [`check_entries`].
pub fn encode_entries(entries: &[BundleEntry]) -> Zeroizing<Vec<u8>> {
    let mut header = Writer::new();
    header.array(entries.len() as u64);
    let header = header.finish();
    let total = header.len() + entries.iter().map(|e| encode_entry(e).len()).sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(total));
    out.extend_from_slice(&header);
    for entry in entries {
        out.extend_from_slice(&encode_entry(entry));
    }
    out
}

/// Decodes decrypted entries and checks them against `manifest`: count, time range, names,
/// device ids, keys.
pub fn decode_entries(plaintext: &[u8], manifest: &Manifest) -> Result<Vec<BundleEntry>, BundleError> {
    let mut r = Reader::new(plaintext);
    let declared = r.array("entries").map_err(malformed("entries"))?;
    // Checked before anything is allocated for them.
    if declared != manifest.count {
        return Err(BundleError::CountMismatch { manifest: manifest.count, actual: declared });
    }
    let mut entries = Vec::with_capacity((declared as usize).min(plaintext.len() / MIN_ENCODED_ENTRY));
    for index in 0..declared as usize {
        entries.push(read_entry(&mut r, index)?);
    }
    r.finish().map_err(malformed("entries"))?;
    require_deterministic_entries(plaintext, &entries).map_err(malformed("entries"))?;
    manifest.check_summary(&check_entries(&entries)?)?;
    Ok(entries)
}

fn read_entry(r: &mut Reader<'_>, index: usize) -> Result<BundleEntry, BundleError> {
    let cbor = |source| BundleError::Malformed { part: "entries", source };
    if r.array("entry").map_err(cbor)? != 6 {
        return Err(cbor(wrong_shape("entry", "6 fields")));
    }
    let name = r.text("client name", ids::MAX_NAME_LEN).map_err(cbor)?;
    let name = DeviceName::parse(name).map_err(|reason| BundleError::InvalidName { index, reason })?;
    let device_id = DeviceId(r.bytes_exact::<16>("device id").map_err(cbor)?);
    let key_id = r.bytes_exact::<16>("key id").map_err(cbor)?;
    let provisioned_at_ms = r.uint("provisioned at").map_err(cbor)?;
    let from_rotation = r.bool("from rotation").map_err(cbor)?;
    let key = SecretKey::from_bytes(r.bytes_exact::<32>("key").map_err(cbor)?);
    Ok(BundleEntry { name, device_id, key_id, key, provisioned_at_ms, from_rotation })
}

/// Compares the input with the re-encoding one entry at a time, so that no second copy of the
/// whole plaintext is made.
fn require_deterministic_entries(input: &[u8], entries: &[BundleEntry]) -> Result<(), CborError> {
    let mut header = Writer::new();
    header.array(entries.len() as u64);
    let mut offset = 0;
    let mut compare = |encoded: &[u8]| -> Result<(), CborError> {
        let end = offset + encoded.len();
        let piece = input.get(offset..end).ok_or(CborError::NotDeterministic)?;
        cbor::require_deterministic(piece, encoded)?;
        offset = end;
        Ok(())
    };
    compare(&header.finish())?;
    for entry in entries {
        compare(&encode_entry(entry))?;
    }
    if offset == input.len() { Ok(()) } else { Err(CborError::NotDeterministic) }
}

/// `signed_body`: everything the station signs.
pub fn encode_signed_body(
    version: u64,
    manifest_bytes: &[u8],
    signer_certificate: &[u8],
    encapsulated_key: &[u8; ENC_LEN],
    ciphertext: &[u8],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(8).uint(version);
    w.uint(HPKE_KEM_ID.into()).uint(HPKE_KDF_ID.into()).uint(HPKE_AEAD_ID.into());
    w.bytes(manifest_bytes).bytes(signer_certificate).bytes(encapsulated_key).bytes(ciphertext);
    w.finish()
}

/// The exact bytes the bundle-signing key signs; `None` for an unknown version.
pub fn signing_input(version: u64, signed_body: &[u8]) -> Option<Vec<u8>> {
    Some([signing_context(version)?, signed_body].concat())
}

/// One part: the whole file in version 1, one of a sequence in version 2.
pub fn encode_bundle(version: u64, signed_body: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut w = Writer::new();
    w.array(4).text(FORMAT_TAG).uint(version).bytes(signed_body).bytes(signature);
    w.finish()
}

/// The structure of `signed_body`, before semantic checks.
struct RawBody<'a> {
    version: u64,
    suite: (u64, u64, u64),
    manifest: &'a [u8],
    certificate: &'a [u8],
    encapsulated_key: [u8; ENC_LEN],
    ciphertext: &'a [u8],
}

/// The envelope: a bundle is recognised by its first two items, then read strictly.
fn read_envelope(input: &[u8]) -> Result<(u64, &[u8], [u8; 64]), BundleError> {
    let mut r = Reader::new(input);
    let tagged =
        matches!(r.array("bundle"), Ok(4)) && r.text("format tag", FORMAT_TAG.len()).is_ok_and(|t| t == FORMAT_TAG);
    if !tagged {
        return Err(BundleError::NotABundle);
    }
    let mut rest = || -> Result<_, CborError> {
        let version = r.uint("version")?;
        let signed_body = r.bytes("signed body", MAX_BUNDLE_LEN)?;
        let signature = r.bytes_exact::<64>("signature")?;
        r.finish()?;
        Ok((version, signed_body, signature))
    };
    rest().map_err(malformed("bundle"))
}

fn read_body(input: &[u8]) -> Result<RawBody<'_>, CborError> {
    let mut r = Reader::new(input);
    if r.array("signed body")? != 8 {
        return Err(wrong_shape("signed body", "8 fields"));
    }
    let body = RawBody {
        version: r.uint("version")?,
        suite: (r.uint("HPKE KEM id")?, r.uint("HPKE KDF id")?, r.uint("HPKE AEAD id")?),
        manifest: r.bytes("manifest", MAX_MANIFEST_LEN)?,
        certificate: r.bytes("signer certificate", cert::MAX_ENCODED)?,
        encapsulated_key: r.bytes_exact::<ENC_LEN>("encapsulated key")?,
        ciphertext: r.bytes("ciphertext", MAX_BUNDLE_LEN)?,
    };
    r.finish()?;
    Ok(body)
}

impl<'a> BundleFile<'a> {
    /// Parses a bundle file: size, structure, versions, suite, manifest and certificate
    /// structure, determinism. Verifies no signature.
    pub fn decode(input: &'a [u8]) -> Result<Self, BundleError> {
        if input.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge { len: input.len(), max: MAX_BUNDLE_LEN });
        }
        let (version, signed_body, signature) = read_envelope(input)?;
        let version = known_version(version)?;
        cbor::require_deterministic(input, &encode_bundle(version, signed_body, &signature))
            .map_err(malformed("bundle"))?;

        let body = read_body(signed_body).map_err(malformed("signed body"))?;
        if body.version != version {
            return Err(BundleError::UnsupportedVersion { version: body.version });
        }
        let (kem, kdf, aead) = body.suite;
        if (kem, kdf, aead) != (HPKE_KEM_ID.into(), HPKE_KDF_ID.into(), HPKE_AEAD_ID.into()) {
            return Err(BundleError::UnsupportedSuite { kem, kdf, aead });
        }
        let reencoded =
            encode_signed_body(version, body.manifest, body.certificate, &body.encapsulated_key, body.ciphertext);
        cbor::require_deterministic(signed_body, &reencoded).map_err(malformed("signed body"))?;
        drop(reencoded);
        if body.ciphertext.len() < AEAD_TAG_LEN {
            return Err(BundleError::CiphertextTooShort { len: body.ciphertext.len() });
        }
        let manifest = Manifest::decode(body.manifest)?;
        if manifest.version() != version {
            return Err(BundleError::UnsupportedVersion { version: manifest.version() });
        }
        let signer_certificate = BundleSignerCertificate::decode(body.certificate)
            .map_err(|source| BundleError::SignerCertificate { source })?;
        Ok(BundleFile {
            version,
            signed_body,
            signature,
            manifest_bytes: body.manifest,
            manifest,
            signer_certificate,
            encapsulated_key: body.encapsulated_key,
            ciphertext: body.ciphertext,
        })
    }

    /// The exact bytes the signature must verify over.
    pub fn signing_input(&self) -> Vec<u8> {
        [self.hpke_and_signing().1, self.signed_body].concat()
    }

    /// The HPKE `info` and the signing context of this part's version.
    pub fn hpke_and_signing(&self) -> (&'static [u8], &'static [u8]) {
        match self.version {
            VERSION_1 => (HPKE_INFO_V1, SIGNING_CONTEXT_V1),
            _ => (HPKE_INFO_V2, SIGNING_CONTEXT_V2),
        }
    }
}
