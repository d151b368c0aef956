//! `keyfill audit verify` judging a chain whose rows anyone with database access may have
//! written: any rows, head, signers and checkpoints give a report, never a panic, with its breaks
//! in entry order and bounded in number.
#![no_main]

use keyfill_station::audit::verify::{ChainCheck, MAX_BREAKS, Positions, SignerTrust};
use keyfill_station::db::audit::{Head, SignerRow, StoredCheckpoint, StoredEntry};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct Rows {
    station_id: String,
    #[serde(default)]
    signers: Vec<SignerRow>,
    entries: Vec<StoredEntry>,
    #[serde(default)]
    head: Option<Head>,
    #[serde(default)]
    checkpoints: Vec<StoredCheckpoint>,
}

/// The factory root the seeds' signer certificates name (any fixed key: most seeds' signatures
/// do not verify, which is one of the paths under test).
const FACTORY_ROOT: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let Ok(mut rows) = serde_json::from_slice::<Rows>(data) else { return };
    rows.entries.truncate(10_000);
    rows.entries.sort_by_key(|entry| entry.seq);
    let trust = SignerTrust::from_rows(&rows.signers, &FACTORY_ROOT);
    let positions = Positions::new(rows.entries.iter().map(|entry| (entry.seq, entry.hash.clone())));
    let mut check = ChainCheck::new(&rows.station_id, &trust, positions);
    for entry in &rows.entries {
        check.push(entry);
    }
    let checkpoints = rows.checkpoints.iter().map(|checkpoint| (checkpoint, "a checkpoint"));
    let report = check.finish(rows.head.as_ref(), checkpoints);
    assert_eq!(report.entries as usize, rows.entries.len());
    assert!(report.breaks.len() <= MAX_BREAKS);
    assert!(report.breaks.windows(2).all(|pair| pair[0].seq <= pair[1].seq), "breaks in entry order");
    assert_eq!(report.intact(), report.breaks.is_empty());
});
