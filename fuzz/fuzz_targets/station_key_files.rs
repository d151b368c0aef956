//! The key files an importer or exporter reads (`station/src/bundle/recipient.rs`): the C2
//! recipient's public key file and the factory root's `factory-root.pub` (64 hex digits), a
//! public key given as text, and the recipient's private key file (JSON, sealed under a
//! passphrase).
//!
//! Input: a selector byte (modulo 2): `0` the rest is a public key file and text; `1` the rest
//! is a private key file, opened with the vectors' passphrase.
//!
//! Note: a private key file that passes every structural check costs one PBKDF2 derivation of
//! at least 100 000 iterations (the file states the count), so those inputs run at tens per
//! second; everything before the derivation runs at full speed.
#![no_main]

use keyfill_fuzz::{Input, scratch_file};
use keyfill_station::bundle::{
    RecipientPublicKey, load_recipient_private_key, read_factory_root_public, read_recipient_public_key,
};
use libfuzzer_sys::fuzz_target;

const PASSPHRASE: &str = "vector passphrase (test only)";
/// The key-file size limit of `recipient.rs`.
const KEY_FILE_LIMIT: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.byte().is_multiple_of(2) {
        let contents = input.rest();
        let path = scratch_file("recipient.pub", contents);
        let from_file = read_recipient_public_key(&path).ok();
        let root = read_factory_root_public(&path).ok();
        assert_eq!(from_file.map(|key| *key.as_bytes()), root, "both public key readers agree");
        let from_text = std::str::from_utf8(contents).ok().and_then(|text| text.parse::<RecipientPublicKey>().ok());
        // Files over 16 KiB are refused unread; text has no such bound.
        if contents.len() <= KEY_FILE_LIMIT {
            assert_eq!(from_text, from_file, "a key file reads as its text does");
        }
        return;
    }
    let path = scratch_file("recipient.key.json", input.rest());
    if let Ok(key) = load_recipient_private_key(&path, PASSPHRASE) {
        assert_eq!(key.public_key().as_bytes().len(), 32);
    }
});
