//! The bundle-import journal (`keyfill import bundle --journal`), a JSON-lines file the
//! importer reopens after a crash: `JournalLedger::open` on a file holding the input, then
//! what it remembers per C2 server (`Ledger::registrations`).
#![no_main]

use keyfill_fuzz::{ready, scratch_file};
use keyfill_station::export::{JournalLedger, Ledger};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch_file("journal.jsonl", data);
    let Ok(journal) = JournalLedger::open(&path) else { return };
    let ledger = Ledger::Journal(journal);
    for target in ["https://c2:8888", ""] {
        let _ = ready(ledger.registrations(target));
    }
});
