//! Checking audit chains: every entry's hash, signature and link, the numbering, the station's
//! own record of its chain's end, and signed checkpoints. What is found broken is named by the
//! first entry it concerns and by how it was broken.
//!
//! [`ChainCheck`] is the judgement, fed entries in number order with no I/O; [`verify_database`]
//! reads the chains page by page and feeds it.

use super::checkpoint::CheckpointFile;
use crate::bundle::signer_certificate_trusted;
use crate::db::DbError;
use crate::db::audit::{self, Head, SignerRow, StoredCheckpoint, StoredEntry};
use keyfill_formats::audit::{self as format, CheckpointFields, EntryFields, GENESIS};
use keyfill_formats::cert::BundleSignerCertificate;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::Serialize;
use sqlx::AnyPool;
use std::collections::HashMap;
use std::fmt;

/// How a chain was found broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// An entry's content, hash or signature was changed.
    Edited,
    /// Entries are missing from inside the chain.
    Deleted,
    /// An entry is not where the chain's links put it.
    Reordered,
    /// An entry the station did not append: unsigned, signed by another key, or a copy.
    Inserted,
    /// Entries are missing from the chain's end.
    Truncated,
    /// A checkpoint the station did not sign.
    ForgedCheckpoint,
}

impl fmt::Display for BreakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakKind::Edited => "edited",
            BreakKind::Deleted => "deleted",
            BreakKind::Reordered => "reordered",
            BreakKind::Inserted => "inserted",
            BreakKind::Truncated => "truncated",
            BreakKind::ForgedCheckpoint => "forged checkpoint",
        })
    }
}

/// One thing found broken: its kind, the number of the first entry it concerns, and what was
/// seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub kind: BreakKind,
    pub seq: i64,
    pub detail: String,
}

/// The signing keys the factory root certified, by public key (hex).
#[derive(Debug, Default)]
pub struct SignerTrust {
    keys: HashMap<String, TrustedSigner>,
}

#[derive(Debug)]
struct TrustedSigner {
    station_id: String,
    station_name: String,
    public: [u8; 32],
}

/// Why a signature does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No certificate from the factory root for the key.
    UnknownKey,
    /// The key is certified for another station.
    OtherStation,
    /// The signature does not verify, or is not a signature.
    Invalid,
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureProblem::UnknownKey => "signed by a key the factory root did not certify",
            SignatureProblem::OtherStation => "signed by another station's key",
            SignatureProblem::Invalid => "its signature does not verify",
        })
    }
}

impl SignerTrust {
    /// The keys of `rows` whose certificates the factory root signed and that certify the key
    /// they are registered for; the others are left out, so their signatures do not count.
    pub fn from_rows(rows: &[SignerRow], factory_root: &[u8; 32]) -> Self {
        let mut keys = HashMap::new();
        for row in rows {
            let Some(certificate) =
                hex::decode(&row.certificate).ok().and_then(|bytes| BundleSignerCertificate::decode(&bytes).ok())
            else {
                continue;
            };
            let body = &certificate.body;
            if !signer_certificate_trusted(&certificate, factory_root)
                || hex::encode(body.signing_public) != row.public_key.to_ascii_lowercase()
            {
                continue;
            }
            keys.insert(
                hex::encode(body.signing_public),
                TrustedSigner {
                    station_id: hex::encode(body.station_id),
                    station_name: body.station_name.clone(),
                    public: body.signing_public,
                },
            );
        }
        SignerTrust { keys }
    }

    /// The key of `signer` (hex), if the factory root certified it.
    pub fn public_key(&self, signer: &str) -> Option<[u8; 32]> {
        self.keys.get(&signer.to_ascii_lowercase()).map(|key| key.public)
    }

    /// The station the factory root certified the key `signer` (hex) for.
    pub fn station_of(&self, signer: &str) -> Option<&str> {
        self.keys.get(&signer.to_ascii_lowercase()).map(|key| key.station_id.as_str())
    }

    /// The name the factory root certified for `station_id`, if it certified one of its keys.
    pub fn station_name(&self, station_id: &str) -> Option<&str> {
        self.keys.values().find(|key| key.station_id == station_id).map(|key| key.station_name.as_str())
    }

    fn check(&self, station_id: &str, signer: &str, message: &[u8], signature: &str) -> Result<(), SignatureProblem> {
        let key = self.keys.get(&signer.to_ascii_lowercase()).ok_or(SignatureProblem::UnknownKey)?;
        if key.station_id != station_id {
            return Err(SignatureProblem::OtherStation);
        }
        let signature = hex::decode(signature).map_err(|_| SignatureProblem::Invalid)?;
        UnparsedPublicKey::new(&ED25519, key.public).verify(message, &signature).map_err(|_| SignatureProblem::Invalid)
    }
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// An entry with what could be checked of it alone.
#[derive(Debug)]
struct Examined {
    seq: i64,
    kind: String,
    stored_hash: Option<[u8; 32]>,
    previous: Option<[u8; 32]>,
    content_matches: bool,
    signature: Result<(), SignatureProblem>,
}

impl Examined {
    fn valid(&self) -> bool {
        self.content_matches && self.signature.is_ok()
    }
}

/// Where each entry is, by stored hash; and the hashes stored twice.
#[derive(Debug, Default)]
pub struct Positions {
    by_hash: HashMap<[u8; 32], i64>,
    by_seq: Vec<(i64, [u8; 32])>,
    copies: HashMap<[u8; 32], Vec<i64>>,
}

impl Positions {
    /// From every `(seq, stored hash)` of a chain, in number order.
    pub fn new(rows: impl IntoIterator<Item = (i64, String)>) -> Self {
        let mut positions = Positions::default();
        for (seq, hash) in rows {
            let Some(hash) = decode_hash(&hash) else { continue };
            positions.by_seq.push((seq, hash));
            if let Some(&first) = positions.by_hash.get(&hash) {
                positions.copies.entry(hash).or_insert_with(|| vec![first]).push(seq);
            } else {
                positions.by_hash.insert(hash, seq);
            }
        }
        positions
    }

    fn hash_at(&self, seq: i64) -> Option<[u8; 32]> {
        let index = self.by_seq.binary_search_by_key(&seq, |(s, _)| *s).ok()?;
        Some(self.by_seq[index].1)
    }

    /// Another entry stored with `hash` than entry `seq`.
    fn copy_of(&self, hash: &[u8; 32], seq: i64) -> Option<i64> {
        self.copies.get(hash)?.iter().copied().find(|&other| other != seq)
    }
}

/// How one station's chain stands.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub station_id: String,
    /// The station's name, as the factory root certified it.
    pub station_name: Option<String>,
    pub entries: u64,
    pub last_seq: i64,
    pub checkpoints_checked: u32,
    /// What was found broken, the first entry concerned first; at most [`MAX_BREAKS`].
    pub breaks: Vec<Break>,
    /// How many more were found than are listed.
    pub more_breaks: u64,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.breaks.is_empty()
    }

    pub fn first_break(&self) -> Option<&Break> {
        self.breaks.first()
    }
}

/// Breaks listed per chain; more are only counted.
pub const MAX_BREAKS: usize = 100;

/// The judgement of one chain, fed its entries in number order ([`ChainCheck::push`]).
#[derive(Debug)]
pub struct ChainCheck<'a> {
    station_id: String,
    trust: &'a SignerTrust,
    positions: Positions,
    expected_previous: [u8; 32],
    expected_seq: i64,
    pending: Option<Examined>,
    entries: u64,
    last: Option<(i64, [u8; 32])>,
    breaks: Vec<Break>,
    more_breaks: u64,
    checkpoints_checked: u32,
}

impl<'a> ChainCheck<'a> {
    pub fn new(station_id: &str, trust: &'a SignerTrust, positions: Positions) -> Self {
        ChainCheck {
            station_id: station_id.to_owned(),
            trust,
            positions,
            expected_previous: GENESIS,
            expected_seq: 1,
            pending: None,
            entries: 0,
            last: None,
            breaks: Vec::new(),
            more_breaks: 0,
            checkpoints_checked: 0,
        }
    }

    fn found(&mut self, kind: BreakKind, seq: i64, detail: String) {
        if self.breaks.len() < MAX_BREAKS {
            self.breaks.push(Break { kind, seq, detail });
        } else {
            self.more_breaks += 1;
        }
    }

    /// The next entry in number order.
    pub fn push(&mut self, entry: &StoredEntry) {
        let stored_hash = decode_hash(&entry.hash);
        let previous = decode_hash(&entry.prev_hash);
        let fields = EntryFields {
            station_id: &entry.station_id,
            at: entry.at,
            operator: &entry.operator,
            kind: &entry.kind,
            device_id: entry.device_id.as_deref(),
            detail: &entry.detail,
        };
        let content_matches = match (stored_hash, previous) {
            (Some(stored), Some(previous)) => format::entry_hash(&fields, &previous) == stored,
            _ => false,
        };
        let signature = match stored_hash {
            Some(hash) => {
                self.trust.check(&self.station_id, &entry.signer, &format::entry_signing_input(&hash), &entry.signature)
            }
            None => Err(SignatureProblem::Invalid),
        };
        let examined =
            Examined { seq: entry.seq, kind: entry.kind.clone(), stored_hash, previous, content_matches, signature };
        if let Some(pending) = self.pending.take() {
            self.judge(pending, Some(&examined));
        }
        self.pending = Some(examined);
    }

    fn judge(&mut self, entry: Examined, next: Option<&Examined>) {
        self.entries += 1;
        let seq = entry.seq;
        if seq < self.expected_seq {
            let detail =
                format!("a second entry numbered {seq} ({}), after entry {}", entry.kind, self.expected_seq - 1);
            self.found(BreakKind::Inserted, seq, detail);
            return;
        }
        if !entry.valid() {
            let closes_over = match next {
                Some(next) => next.previous == Some(self.expected_previous),
                None => entry.previous == Some(self.expected_previous) && entry.content_matches,
            };
            if closes_over {
                let why = match entry.signature {
                    Err(problem) if entry.content_matches => problem.to_string(),
                    _ => "its content does not match its hash".to_owned(),
                };
                let detail = format!(
                    "entry {seq} ({}) was not appended by the station ({why}); the chain runs from entry {} to the \
                     entry after it as if it were not there",
                    entry.kind,
                    self.expected_seq - 1
                );
                self.found(BreakKind::Inserted, seq, detail);
                return;
            }
            let detail = if !entry.content_matches {
                format!("entry {seq} ({}): its content no longer matches its hash", entry.kind)
            } else {
                let problem = entry.signature.err().map(|p| p.to_string()).unwrap_or_default();
                format!("entry {seq} ({}): its hash was recomputed, and it is {problem}", entry.kind)
            };
            self.found(BreakKind::Edited, seq, detail);
            self.advance(&entry);
            return;
        }
        let hash = entry.stored_hash.unwrap_or(GENESIS);
        if entry.previous != Some(self.expected_previous) {
            if let Some(original) = self.positions.copy_of(&hash, seq) {
                let detail = format!("entry {seq} ({}) is a copy of entry {original}", entry.kind);
                self.found(BreakKind::Inserted, seq, detail);
                return;
            }
            let follows = entry.previous.and_then(|previous| self.positions.by_hash.get(&previous).copied());
            match follows {
                Some(predecessor) => {
                    let detail = format!(
                        "entry {seq} ({}) follows entry {predecessor} in the chain, not entry {}",
                        entry.kind,
                        self.expected_seq - 1
                    );
                    self.found(BreakKind::Reordered, seq, detail);
                }
                None => {
                    let detail = if seq > self.expected_seq {
                        let missing = if seq - 1 == self.expected_seq {
                            format!("entry {}", self.expected_seq)
                        } else {
                            format!("entries {} to {}", self.expected_seq, seq - 1)
                        };
                        format!(
                            "{missing} missing: entry {seq} ({}) follows an entry that is not in the log",
                            entry.kind
                        )
                    } else {
                        format!(
                            "entry {seq} ({}) follows an entry that is not in the log: entries before it were removed \
                             and the rest renumbered",
                            entry.kind
                        )
                    };
                    self.found(BreakKind::Deleted, self.expected_seq.min(seq), detail);
                }
            }
        } else if seq != self.expected_seq {
            let detail = format!(
                "entry {seq} ({}) is numbered {seq} but is entry {} of the chain: the numbers were edited",
                entry.kind, self.expected_seq
            );
            self.found(BreakKind::Edited, self.expected_seq, detail);
        }
        self.advance(&entry);
    }

    fn advance(&mut self, entry: &Examined) {
        if let Some(hash) = entry.stored_hash {
            self.expected_previous = hash;
            self.last = Some((entry.seq, hash));
        }
        self.expected_seq = entry.seq + 1;
    }

    /// Checks a signed checkpoint against the chain (call after the last [`ChainCheck::push`]).
    fn checkpoint(&mut self, checkpoint: &StoredCheckpoint, source: &str) {
        self.checkpoints_checked += 1;
        let Some(hash) = decode_hash(&checkpoint.hash).filter(|_| checkpoint.seq > 0) else {
            self.found(BreakKind::ForgedCheckpoint, checkpoint.seq, format!("{source} is malformed"));
            return;
        };
        let fields = CheckpointFields {
            station_id: &self.station_id,
            seq: checkpoint.seq as u64,
            hash: &hash,
            at: checkpoint.at,
        };
        let message = format::checkpoint_signing_input(&fields);
        if let Err(problem) = self.trust.check(&self.station_id, &checkpoint.signer, &message, &checkpoint.signature) {
            let detail = format!("{source} at entry {} is {problem}", checkpoint.seq);
            self.found(BreakKind::ForgedCheckpoint, checkpoint.seq, detail);
            return;
        }
        let last_seq = self.last.map_or(0, |(seq, _)| seq);
        if checkpoint.seq > last_seq {
            let detail = format!(
                "{source}, signed at {}, holds entry {}; the chain ends at entry {last_seq}: {} entries were removed \
                 from its end",
                crate::time::rfc3339(checkpoint.at),
                checkpoint.seq,
                checkpoint.seq - last_seq
            );
            self.found(BreakKind::Truncated, last_seq + 1, detail);
        } else if self.positions.hash_at(checkpoint.seq) != Some(hash) {
            let detail = format!(
                "entry {} is not the entry {source}, signed at {}, holds: the chain was rewritten up to it",
                checkpoint.seq,
                crate::time::rfc3339(checkpoint.at)
            );
            self.found(BreakKind::Edited, checkpoint.seq, detail);
        }
    }

    /// Judges the last entry, then the station's head record and the checkpoints, and reports.
    pub fn finish<'c>(
        mut self,
        head: Option<&Head>,
        checkpoints: impl IntoIterator<Item = (&'c StoredCheckpoint, &'c str)>,
    ) -> ChainReport {
        if let Some(pending) = self.pending.take() {
            self.judge(pending, None);
        }
        let (last_seq, last_hash) = self.last.unwrap_or((0, GENESIS));
        if let Some(head) = head {
            let head_hash = decode_hash(&head.hash);
            if head.seq > last_seq {
                let detail = format!(
                    "the station's own record says its chain ends at entry {}; the chain ends at entry {last_seq}: \
                     {} entries were removed from its end",
                    head.seq,
                    head.seq - last_seq
                );
                self.found(BreakKind::Truncated, last_seq + 1, detail);
            } else if head.seq < last_seq {
                let detail = format!(
                    "the chain runs on past entry {}, where the station's own record says it ends, to entry {last_seq}",
                    head.seq
                );
                self.found(BreakKind::Inserted, head.seq + 1, detail);
            } else if head_hash != Some(last_hash) {
                let detail = format!(
                    "entry {last_seq} is not the entry the station last appended: the chain's end was replaced"
                );
                self.found(BreakKind::Edited, last_seq, detail);
            }
        }
        for (checkpoint, source) in checkpoints {
            self.checkpoint(checkpoint, source);
        }
        self.breaks.sort_by_key(|found| found.seq);
        ChainReport {
            station_name: self.trust.station_name(&self.station_id).map(str::to_owned),
            station_id: self.station_id,
            entries: self.entries,
            last_seq,
            checkpoints_checked: self.checkpoints_checked,
            breaks: self.breaks,
            more_breaks: self.more_breaks,
        }
    }
}

/// Rows read per query.
const PAGE: u32 = 2_000;

/// Checks every station's chain in `pool` against `factory_root`, with the database's own
/// checkpoints and the `kept` ones (a checkpoint file, whose certificates count as the
/// database's do). `progress` is told each station's entries as they are checked.
pub async fn verify_database(
    pool: &AnyPool,
    factory_root: &[u8; 32],
    kept: Option<&CheckpointFile>,
    mut progress: impl FnMut(&str, u64),
) -> Result<Vec<ChainReport>, DbError> {
    let mut signers = audit::signers(pool).await?;
    let kept: &[StoredCheckpoint] = match kept {
        Some(file) => {
            signers.extend(file.signer_rows());
            &file.checkpoints
        }
        None => &[],
    };
    let trust = SignerTrust::from_rows(&signers, factory_root);
    let mut stations = audit::stations(pool).await?;
    for checkpoint in kept {
        if !stations.contains(&checkpoint.station_id) {
            stations.push(checkpoint.station_id.clone());
        }
    }
    let mut reports = Vec::with_capacity(stations.len());
    for station in stations {
        let positions = Positions::new(audit::positions(pool, &station).await?);
        let mut check = ChainCheck::new(&station, &trust, positions);
        let (mut after, mut checked) = (i64::MIN, 0u64);
        loop {
            let page = audit::page(pool, &station, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                check.push(entry);
            }
            checked += page.len() as u64;
            progress(&station, checked);
        }
        let head = audit::head(pool, &station).await?;
        let stored = audit::checkpoints(pool, &station).await?;
        let checkpoints = stored
            .iter()
            .map(|checkpoint| (checkpoint, "a checkpoint in the database"))
            .chain(kept.iter().filter(|c| c.station_id == station).map(|c| (c, "the kept checkpoint")));
        reports.push(check.finish(head.as_ref(), checkpoints));
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleSigner, certify_bundle_signer};
    use keyfill_formats::audit::entry_signing_input;
    use ring::signature::Ed25519KeyPair;

    const STATION: &str = "00112233445566778899aabbccddeeff";

    struct Fixture {
        root: [u8; 32],
        signer: BundleSigner,
        signer_row: SignerRow,
    }

    fn fixture() -> Fixture {
        let root_pkcs8 = BundleSigner::generate_pkcs8().unwrap();
        let root_pair = Ed25519KeyPair::from_pkcs8(&root_pkcs8).unwrap();
        let root: [u8; 32] = ring::signature::KeyPair::public_key(&root_pair).as_ref().try_into().unwrap();
        let pkcs8 = BundleSigner::generate_pkcs8().unwrap();
        let public = BundleSigner::public_key_of_pkcs8(&pkcs8).unwrap();
        let station: [u8; 16] = hex::decode(STATION).unwrap().try_into().unwrap();
        let certificate = certify_bundle_signer(&root_pair, station, "unit", public, 0, u64::MAX).unwrap();
        let signer_row = SignerRow {
            public_key: hex::encode(public),
            station_id: STATION.into(),
            certificate: hex::encode(certificate.encode()),
        };
        Fixture { root, signer: BundleSigner::new(&pkcs8, certificate).unwrap(), signer_row }
    }

    /// A signed chain of `count` entries.
    fn chain(fixture: &Fixture, count: i64) -> Vec<StoredEntry> {
        let mut previous = GENESIS;
        (1..=count)
            .map(|seq| {
                let detail = format!("event {seq}");
                let fields = EntryFields {
                    station_id: STATION,
                    at: 1_000 + seq,
                    operator: "op",
                    kind: "k",
                    device_id: None,
                    detail: &detail,
                };
                let hash = format::entry_hash(&fields, &previous);
                let signature = fixture.signer.sign(&entry_signing_input(&hash)).unwrap();
                let entry = StoredEntry {
                    station_id: STATION.into(),
                    seq,
                    at: 1_000 + seq,
                    operator: "op".into(),
                    kind: "k".into(),
                    device_id: None,
                    detail,
                    prev_hash: hex::encode(previous),
                    hash: hex::encode(hash),
                    signer: fixture.signer_row.public_key.clone(),
                    signature: hex::encode(signature),
                };
                previous = hash;
                entry
            })
            .collect()
    }

    fn judge(fixture: &Fixture, entries: &[StoredEntry], head: Option<&Head>) -> ChainReport {
        let trust = SignerTrust::from_rows(std::slice::from_ref(&fixture.signer_row), &fixture.root);
        let positions = Positions::new(entries.iter().map(|e| (e.seq, e.hash.clone())));
        let mut check = ChainCheck::new(STATION, &trust, positions);
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|e| e.seq);
        for entry in &sorted {
            check.push(entry);
        }
        check.finish(head, std::iter::empty())
    }

    fn first(report: &ChainReport) -> (BreakKind, i64) {
        let found = report.first_break().expect("a break");
        (found.kind, found.seq)
    }

    #[test]
    fn audit_an_intact_chain_and_its_head_verify() {
        let fixture = fixture();
        let entries = chain(&fixture, 6);
        let head = Head { station_id: STATION.into(), seq: 6, hash: entries[5].hash.clone() };
        let report = judge(&fixture, &entries, Some(&head));
        assert!(report.intact(), "{report:?}");
        assert_eq!((report.entries, report.last_seq), (6, 6));
        assert_eq!(report.station_name.as_deref(), Some("unit"));
    }

    #[test]
    fn audit_a_renumbered_chain_with_intact_links_is_named_edited_numbers() {
        let fixture = fixture();
        let mut entries = chain(&fixture, 5);
        for entry in &mut entries[2..] {
            entry.seq += 10;
        }
        let report = judge(&fixture, &entries, None);
        assert_eq!(first(&report), (BreakKind::Edited, 3));
        assert!(report.breaks[0].detail.contains("numbers were edited"), "{report:?}");
    }

    #[test]
    fn audit_a_second_entry_with_one_number_is_inserted() {
        let fixture = fixture();
        let mut entries = chain(&fixture, 4);
        let mut copy = entries[1].clone();
        copy.detail = "a second opinion".into();
        entries.push(copy);
        let report = judge(&fixture, &entries, None);
        assert!(report.breaks.iter().any(|b| b.kind == BreakKind::Inserted && b.seq == 2), "{report:?}");
    }

    #[test]
    fn audit_a_key_of_another_station_or_no_certificate_does_not_count() {
        let fixture = fixture();
        let other = super::tests::fixture();
        let mut entries = chain(&fixture, 3);
        // Signed by a key the root never certified: its signature does not count.
        let foreign = chain(&other, 3);
        entries[2].signer = foreign[2].signer.clone();
        entries[2].signature = foreign[2].signature.clone();
        let report = judge(&fixture, &entries, None);
        assert_eq!(first(&report), (BreakKind::Inserted, 3));
        assert!(report.breaks[0].detail.contains("did not certify"), "{report:?}");
    }

    #[test]
    fn audit_rows_that_are_not_hex_are_edited_entries_not_a_panic() {
        let fixture = fixture();
        let mut entries = chain(&fixture, 3);
        entries[1].hash = "not hex".into();
        entries[1].prev_hash = "zz".into();
        entries[1].signature = String::new();
        let report = judge(&fixture, &entries, None);
        assert!(!report.intact());
        assert_eq!(report.breaks[0].seq, 2, "{report:?}");
    }

    #[test]
    fn audit_a_head_behind_or_beside_the_chain_is_named() {
        let fixture = fixture();
        let entries = chain(&fixture, 4);
        let behind = Head { station_id: STATION.into(), seq: 2, hash: entries[1].hash.clone() };
        assert_eq!(first(&judge(&fixture, &entries, Some(&behind))), (BreakKind::Inserted, 3));
        let beside = Head { station_id: STATION.into(), seq: 4, hash: entries[0].hash.clone() };
        assert_eq!(first(&judge(&fixture, &entries, Some(&beside))), (BreakKind::Edited, 4));
    }
}
