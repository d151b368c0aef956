//! `keyfill.toml`: any text must give a file whose every value passed its setting's check, or a
//! typed error naming the line; never a panic, and nothing it quotes may reach a terminal raw.
#![no_main]

use keyfill_station::config::{ConfigFile, Scope, setting_of};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ConfigFile::parse(Path::new("/etc/keyfill/keyfill.toml"), Scope::System, text) {
        Ok(file) => {
            for entry in file.entries() {
                assert!(entry.line >= 1 && entry.line <= text.lines().count().max(1), "a line of the file");
                assert!(!entry.value.as_str().chars().any(char::is_control), "no control characters in a value");
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(!message.chars().any(char::is_control), "escaped: {message:?}");
            assert!(message.starts_with("/etc/keyfill/keyfill.toml:"), "names the file: {message}");
        }
    }
    let _ = setting_of(text);
});
