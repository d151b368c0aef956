//! The station home's public files, read by every command without a passphrase:
//! `StationHome::info` (station.json with its certificate, factory-root.json) and
//! `StationHome::bundle_signer_certificate` (station.json's bundle signer).
//! (`unlock` adds the master key's PBKDF2, whose file is `station_key_files`' kind.)
//!
//! Input: station.json as a chunk, then factory-root.json.
#![no_main]

use keyfill_fuzz::{Input, scratch_directory};
use keyfill_station::home::StationHome;
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn home() -> &'static PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| scratch_directory("home"))
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let root = home();
    std::fs::write(root.join("station.json"), input.chunk()).expect("the scratch home is writable");
    std::fs::write(root.join("factory-root.json"), input.rest()).expect("the scratch home is writable");
    let home = StationHome::new(root.clone());
    if let Ok(info) = home.info() {
        assert_eq!(info.station_id, info.certificate.body.station_id);
    }
    let _ = home.bundle_signer_certificate();
});
