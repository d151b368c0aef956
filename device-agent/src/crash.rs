//! Named points where a crash test can make the process die on the spot, as a kill or a power
//! cut would: `KEYFILL_CRASH_AT=NAME` aborts the process the first time it reaches the point
//! `NAME`. Nothing is flushed or unwound, so what is on disk is what a crash leaves.
//!
//! For crash-consistency tests and bench devices only (`tests/tests/crash.rs`,
//! `scripts/crash-campaign`); without the variable each point costs one comparison.

use std::sync::OnceLock;

/// The environment variable naming the point to die at.
pub const VARIABLE: &str = "KEYFILL_CRASH_AT";

/// Dies here if the crash test asked for this point.
pub fn point(name: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    if WANTED.get_or_init(|| std::env::var(VARIABLE).ok()).as_deref() == Some(name) {
        eprintln!("crash test: dying at {name}");
        std::process::abort();
    }
}
