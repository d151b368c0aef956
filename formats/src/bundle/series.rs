//! A bundle file as a sequence of parts: where each part ends, read from its first bytes, and the
//! checks that make the sequence as trustworthy as one signed blob.
//!
//! Every part is signed on its own, so an attacker without the signing key can still drop,
//! repeat, reorder or append whole parts. The signed `bundle_id`, part index and last-part flag
//! catch each of these (the same idea as the STREAM construction's final-segment flag, Hoang,
//! Reyhanitabar, Rogaway and Vizár, CRYPTO 2015, used by age and Tink for the same purpose);
//! strictly increasing device ids across the parts let an importer refuse a device named twice
//! without remembering every device it has read.

use super::{BundleEntry, BundleError, CryptoMode, FORMAT_TAG, MAX_BUNDLE_LEN, Manifest, VERSION, VERSION_1, to_hex};
use crate::cbor::CborError;

/// Bytes of a part a reader must hold to know the part's length ([`part_len`]): the array head,
/// the format tag, the version and the longest byte-string head.
pub const MAX_PART_PREFIX_LEN: usize = ENVELOPE_HEAD_LEN + 9;

/// Most parts in one file (at 100 000 entries a part, 100 million keys).
pub const MAX_SERIES_PARTS: u64 = 1000;

/// `0x84` (array of 4), `0x71` (text of 17 bytes), the tag, then the one-byte version.
const ENVELOPE_HEAD_LEN: usize = 2 + FORMAT_TAG.len() + 1;
/// `0x58 0x40` and the 64-byte signature after the signed body.
const SIGNATURE_ITEM_LEN: usize = 2 + 64;

/// The length of the part that starts with `prefix` (its first [`MAX_PART_PREFIX_LEN`] bytes, or
/// fewer where the file ends), so that a reader can take exactly one part from a stream. Checks
/// the envelope's fixed bytes and the size bound only; the part's own decoder checks the rest.
/// `index` is the part's position in the file, for the error.
pub fn part_len(prefix: &[u8], index: u64) -> Result<usize, BundleError> {
    let truncated = |needed: usize| BundleError::Truncated { index, len: prefix.len(), needed };
    let mut expected = vec![0x84, 0x60 | FORMAT_TAG.len() as u8];
    expected.extend_from_slice(FORMAT_TAG.as_bytes());
    let seen = prefix.len().min(expected.len());
    if prefix[..seen] != expected[..seen] {
        return Err(BundleError::NotABundle);
    }
    let version = *prefix.get(expected.len()).ok_or_else(|| truncated(ENVELOPE_HEAD_LEN + 1))?;
    match u64::from(version) {
        VERSION_1 | VERSION => {}
        small @ 0..=23 => return Err(BundleError::UnsupportedVersion { version: small }),
        _ => {
            let source = CborError::UnexpectedShape { field: "version", expected: "1 or 2" };
            return Err(BundleError::Malformed { part: "bundle", source });
        }
    }
    let head = *prefix.get(ENVELOPE_HEAD_LEN).ok_or_else(|| truncated(ENVELOPE_HEAD_LEN + 1))?;
    if head >> 5 != 2 {
        let source = CborError::UnexpectedShape { field: "signed body", expected: "a byte string" };
        return Err(BundleError::Malformed { part: "bundle", source });
    }
    let width = match head & 0x1f {
        short @ 0..=23 => return finish(ENVELOPE_HEAD_LEN + 1, u64::from(short)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => {
            let source = CborError::UnexpectedShape { field: "signed body", expected: "a definite length" };
            return Err(BundleError::Malformed { part: "bundle", source });
        }
    };
    let start = ENVELOPE_HEAD_LEN + 1;
    let bytes = prefix.get(start..start + width).ok_or_else(|| truncated(start + width))?;
    let body_len = bytes.iter().fold(0u64, |len, byte| (len << 8) | u64::from(*byte));
    finish(start + width, body_len)
}

fn finish(head_len: usize, body_len: u64) -> Result<usize, BundleError> {
    let total = usize::try_from(body_len)
        .ok()
        .and_then(|body| body.checked_add(head_len + SIGNATURE_ITEM_LEN))
        .unwrap_or(usize::MAX);
    if total > MAX_BUNDLE_LEN {
        return Err(BundleError::TooLarge { len: total, max: MAX_BUNDLE_LEN });
    }
    Ok(total)
}

/// What a whole file holds, from the manifests of all its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesManifest {
    /// [`VERSION_1`] (one part) or [`VERSION`].
    pub version: u64,
    pub bundle_id: [u8; 16],
    pub station_id: [u8; 16],
    pub station_name: String,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// Entries in all parts.
    pub count: u64,
    /// Unix milliseconds, over all parts.
    pub earliest_provisioned_at_ms: u64,
    pub latest_provisioned_at_ms: u64,
    pub crypto_mode: CryptoMode,
    pub recipient_public: [u8; 32],
    pub parts: u64,
}

impl SeriesManifest {
    pub fn bundle_id_hex(&self) -> String {
        to_hex(&self.bundle_id)
    }
}

/// Checks the parts of one file in file order: [`SeriesCheck::admit`] each part's manifest once
/// its signature holds, [`SeriesCheck::admit_entries`] each part's entries once decrypted (when
/// they are), then [`SeriesCheck::finish`] at the end of the file.
#[derive(Debug, Default)]
pub struct SeriesCheck {
    summary: Option<SeriesManifest>,
    finished: bool,
    last_device_id: Option<[u8; 16]>,
}

impl SeriesCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parts admitted so far.
    pub fn parts(&self) -> u64 {
        self.summary.as_ref().map_or(0, |s| s.parts)
    }

    /// Whether the part marked last (or a version 1 part) was admitted: nothing may follow.
    pub fn is_complete(&self) -> bool {
        self.finished
    }

    /// The next part's manifest: refused if it does not continue the file's sequence.
    pub fn admit(&mut self, manifest: &Manifest) -> Result<(), BundleError> {
        let position = self.parts();
        if self.finished {
            return Err(BundleError::PartAfterLast { position });
        }
        if position >= MAX_SERIES_PARTS {
            return Err(BundleError::TooManyParts { max: MAX_SERIES_PARTS });
        }
        let claimed = manifest.part.map_or(0, |p| p.index);
        if claimed != position {
            return Err(BundleError::PartOutOfOrder { position, claimed });
        }
        match &mut self.summary {
            None => self.summary = Some(first_summary(manifest)),
            Some(summary) => {
                agree(summary, manifest, position)?;
                summary.count = summary.count.saturating_add(manifest.count);
                summary.earliest_provisioned_at_ms =
                    summary.earliest_provisioned_at_ms.min(manifest.earliest_provisioned_at_ms);
                summary.latest_provisioned_at_ms =
                    summary.latest_provisioned_at_ms.max(manifest.latest_provisioned_at_ms);
                summary.parts += 1;
            }
        }
        // A version 1 bundle is a single part.
        self.finished = manifest.part.is_none_or(|p| p.last);
        Ok(())
    }

    /// The decrypted entries of the part admitted last. In version 2 the device ids must rise
    /// strictly through the whole file, so no device is in two parts.
    pub fn admit_entries(&mut self, entries: &[BundleEntry]) -> Result<(), BundleError> {
        let Some(summary) = &self.summary else { return Ok(()) };
        if summary.version == VERSION_1 {
            return Ok(());
        }
        let index = summary.parts - 1;
        for entry in entries {
            let id = entry.device_id.0;
            if self.last_device_id.is_some_and(|last| last >= id) {
                return Err(BundleError::EntriesOutOfOrder { index });
            }
            self.last_device_id = Some(id);
        }
        Ok(())
    }

    /// The file ended: what it holds, if its last part was seen.
    pub fn finish(self) -> Result<SeriesManifest, BundleError> {
        let summary = self.summary.ok_or(BundleError::NoPart)?;
        if !self.finished {
            return Err(BundleError::MissingLastPart { last_index: summary.parts - 1 });
        }
        Ok(summary)
    }
}

fn first_summary(manifest: &Manifest) -> SeriesManifest {
    SeriesManifest {
        version: manifest.version(),
        bundle_id: manifest.bundle_id,
        station_id: manifest.station_id,
        station_name: manifest.station_name.clone(),
        created_at_ms: manifest.created_at_ms,
        count: manifest.count,
        earliest_provisioned_at_ms: manifest.earliest_provisioned_at_ms,
        latest_provisioned_at_ms: manifest.latest_provisioned_at_ms,
        crypto_mode: manifest.crypto_mode,
        recipient_public: manifest.recipient_public,
        parts: 1,
    }
}

/// Every part of a file states the same bundle, station, creation time, kind and recipient.
fn agree(summary: &SeriesManifest, manifest: &Manifest, index: u64) -> Result<(), BundleError> {
    let field = if manifest.version() != summary.version {
        "version"
    } else if manifest.bundle_id != summary.bundle_id {
        "bundle id"
    } else if manifest.station_id != summary.station_id || manifest.station_name != summary.station_name {
        "station"
    } else if manifest.created_at_ms != summary.created_at_ms {
        "creation time"
    } else if manifest.crypto_mode != summary.crypto_mode {
        "crypto mode"
    } else if manifest.recipient_public != summary.recipient_public {
        "recipient"
    } else {
        return Ok(());
    };
    Err(BundleError::PartsDisagree { index, field })
}
