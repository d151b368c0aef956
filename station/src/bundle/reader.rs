//! Reading a bundle file one part at a time: the memory held is one part (at most 64 MiB, about
//! 10 MiB for 100 000 keys), whatever the number of parts.

use super::verify::{self, VerifiedBundle};
use super::{BundleSummary, OpenBundleError, RecipientPrivateKey, hpke_suite};
use keyfill_formats::bundle::{
    BundleEntry, BundleFile, MAX_PART_PREFIX_LEN, Manifest, SeriesCheck, decode_entries, part_len, to_hex,
};
use keyfill_formats::cert::BundleSignerCertificate;
use std::io::{ErrorKind, Read};

/// One part, verified and decrypted. `Debug` redacts the keys.
#[derive(Debug)]
pub struct OpenedPart {
    pub manifest: Manifest,
    pub entries: Vec<BundleEntry>,
    /// SHA-256 of the part's bytes: lets a second reading prove it read the same part.
    pub digest: [u8; 32],
}

/// Verifies, and on request decrypts, the parts of one bundle file in file order. Call
/// [`SeriesReader::next_verified`] or [`SeriesReader::next_opened`] until `None`, then
/// [`SeriesReader::finish`], which fails unless the file held a whole, ordered sequence of parts.
pub struct SeriesReader<'r, R> {
    input: R,
    factory_root: &'r [u8; 32],
    now_ms: u64,
    check: SeriesCheck,
    signer: Option<BundleSignerCertificate>,
    part: Vec<u8>,
}

impl<R> std::fmt::Debug for SeriesReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesReader").field("parts_read", &self.check.parts()).finish_non_exhaustive()
    }
}

impl<'r, R: Read> SeriesReader<'r, R> {
    pub fn new(input: R, factory_root: &'r [u8; 32], now_ms: u64) -> Self {
        SeriesReader { input, factory_root, now_ms, check: SeriesCheck::new(), signer: None, part: Vec::new() }
    }

    /// The next part's manifest once its signature and place in the file hold; `None` at the
    /// end of the file. Decrypts nothing.
    pub fn next_verified(&mut self) -> Result<Option<Manifest>, OpenBundleError> {
        Ok(self.next_part()?.map(|verified| verified.file().manifest.clone()))
    }

    /// The next part verified as by [`Self::next_verified`], then decrypted with `recipient`
    /// and its entries checked against its manifest and the parts before it.
    pub fn next_opened(&mut self, recipient: &RecipientPrivateKey) -> Result<Option<OpenedPart>, OpenBundleError> {
        let Some(verified) = self.next_part()? else { return Ok(None) };
        let file = verified.file();
        let ours = recipient.public_key();
        if &file.manifest.recipient_public != ours.as_bytes() {
            return Err(OpenBundleError::WrongRecipient {
                addressed_to: to_hex(&file.manifest.recipient_public),
                ours: ours.to_hex(),
            });
        }
        let (info, _) = file.hpke_and_signing();
        let plaintext =
            hpke_suite::open(recipient.secret(), &file.encapsulated_key, info, file.manifest_bytes, file.ciphertext)?;
        let entries = decode_entries(&plaintext, &file.manifest)?;
        let manifest = file.manifest.clone();
        drop(plaintext);
        let digest = digest_of(&self.part);
        self.check.admit_entries(&entries)?;
        Ok(Some(OpenedPart { manifest, entries, digest }))
    }

    /// The end of the file: what the whole file holds.
    pub fn finish(self) -> Result<BundleSummary, OpenBundleError> {
        let manifest = self.check.finish()?;
        let signer = self.signer.ok_or(keyfill_formats::bundle::BundleError::NoPart)?;
        Ok(BundleSummary { manifest, signer })
    }

    /// SHA-256 of the part read last.
    pub fn last_digest(&self) -> [u8; 32] {
        digest_of(&self.part)
    }

    fn next_part(&mut self) -> Result<Option<VerifiedBundle<'_>>, OpenBundleError> {
        let index = self.check.parts();
        if !self.read_part(index)? {
            return Ok(None);
        }
        let verified = verify::verify(BundleFile::decode(&self.part)?, self.factory_root, self.now_ms)?;
        self.check.admit(&verified.file().manifest)?;
        if self.signer.is_none() {
            self.signer = Some(verified.file().signer_certificate.clone());
        }
        Ok(Some(verified))
    }

    /// Reads the next part into `self.part`; `false` at a clean end of the file.
    fn read_part(&mut self, index: u64) -> Result<bool, OpenBundleError> {
        self.part.clear();
        let mut prefix = [0u8; MAX_PART_PREFIX_LEN];
        let got = read_up_to(&mut self.input, &mut prefix)?;
        if got == 0 {
            return Ok(false);
        }
        if self.check.is_complete() {
            return Err(keyfill_formats::bundle::BundleError::PartAfterLast { position: index }.into());
        }
        // Never shorter than the prefix: a part's envelope and signature alone are longer.
        let len = part_len(&prefix[..got], index)?;
        self.part.reserve_exact(len);
        self.part.extend_from_slice(&prefix[..got]);
        let start = self.part.len();
        self.part.resize(len, 0);
        let rest = read_up_to(&mut self.input, &mut self.part[start..])?;
        if start + rest < len {
            return Err(
                keyfill_formats::bundle::BundleError::Truncated { index, len: start + rest, needed: len }.into()
            );
        }
        Ok(true)
    }
}

/// Fills `buffer` as far as the input goes; the count read.
fn read_up_to(input: &mut impl Read, buffer: &mut [u8]) -> Result<usize, OpenBundleError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(OpenBundleError::Read(e)),
        }
    }
    Ok(filled)
}

fn digest_of(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
