//! What an importer does with a bundle file: `verify_bundle` and `open_bundle` (signer
//! certificate against the pinned factory root, signature, manifest, recipient, HPKE, entries).
//!
//! Raw bytes stop at the signature, so most inputs are structure-aware: the target seals a
//! manifest and a plaintext taken from the input with the test signer of the vectors
//! (`formats/tests/vectors/c2-bundle.json`), so that every check behind the signature and the
//! AEAD runs on fuzzed data. An opened bundle must hold exactly what its manifest announced.
//!
//! Input: a selector byte. Even: the rest is a bundle file. Odd: flags byte (bit 0: the
//! manifest names its own station, from the input; bit 1: it is addressed to another recipient;
//! bit 2: a version 1 manifest; bit 3: not the last part), bundle id (16), part index (`u64`), created-at offset (`u64`, XORed into the vectors' creation time), count,
//! earliest, latest (`u64` each), station name chunk and station id (16) when bit 0, recipient
//! public key (32) when bit 1, then the plaintext.
#![no_main]

use keyfill_formats::SecretKey;
use keyfill_formats::bundle::{CryptoMode, Manifest, PartPosition, encode_entries};
use keyfill_fuzz::{Input, vectors};
use keyfill_station::bundle::{
    BundleSigner, BundleSignerCertificate, OpenedBundle, RecipientPrivateKey, open_bundle, seal_manifest_for_fuzzing,
    verify_bundle,
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Keys {
    signer: BundleSigner,
    recipient: RecipientPrivateKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let v = vectors::bundles();
        let certificate =
            BundleSignerCertificate::decode(&v.signer_certificate).expect("the vectors' signer certificate decodes");
        Keys {
            signer: BundleSigner::new(&v.signer_pkcs8, certificate).expect("the vectors' signer key matches"),
            recipient: RecipientPrivateKey::from_secret(SecretKey::from_bytes(v.recipient_private)),
        }
    })
}

fn open(file: &[u8]) -> Option<OpenedBundle> {
    let v = vectors::bundles();
    let verified = verify_bundle(file, &v.factory_root_public, v.open_at_ms);
    let opened = open_bundle(file, &keys().recipient, &v.factory_root_public, v.open_at_ms);
    let opened = opened.ok()?;
    let summary = verified.expect("a bundle that opens also verifies");
    assert_eq!(summary.manifest, opened.manifest);
    assert_eq!(opened.entries.len() as u64, opened.manifest.count, "a bundle holds what it announces");
    Some(opened)
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    if input.byte().is_multiple_of(2) {
        open(input.rest());
        return;
    }
    let v = vectors::bundles();
    let flags = input.byte();
    let bundle_id = input.array();
    let part = PartPosition { index: input.u64(), last: flags & 8 == 0 };
    let mut manifest = Manifest {
        bundle_id,
        part: (flags & 4 == 0).then_some(part),
        station_id: v.station_id,
        station_name: v.station_name.clone(),
        created_at_ms: v.created_at_ms ^ input.u64(),
        count: input.u64(),
        earliest_provisioned_at_ms: input.u64(),
        latest_provisioned_at_ms: input.u64(),
        crypto_mode: CryptoMode::Symmetric,
        recipient_public: v.recipient_public,
    };
    if flags & 1 != 0 {
        manifest.station_name = String::from_utf8_lossy(input.chunk()).into_owned();
        manifest.station_id = input.array();
    }
    if flags & 2 != 0 {
        manifest.recipient_public = input.array();
    }
    let plaintext = input.rest();
    let Ok(file) = seal_manifest_for_fuzzing(&keys().signer, &manifest, plaintext, &v.ephemeral_ikm) else { return };
    if let Some(opened) = open(&file) {
        let read = &opened.manifest;
        assert!(manifest.part.is_none_or(|p| p.index == 0 && p.last), "a lone part is the whole file");
        assert_eq!(
            (read.bundle_id, read.station_id, &read.station_name, read.created_at_ms, read.count),
            (manifest.bundle_id, manifest.station_id, &manifest.station_name, manifest.created_at_ms, manifest.count),
            "the manifest read is the manifest sealed"
        );
        assert_eq!(
            (read.earliest_provisioned_at_ms, read.latest_provisioned_at_ms, read.recipient_public, read.parts),
            (manifest.earliest_provisioned_at_ms, manifest.latest_provisioned_at_ms, manifest.recipient_public, 1),
        );
        assert_eq!(encode_entries(&opened.entries).as_slice(), plaintext, "the entries are exactly the plaintext");
    }
});
