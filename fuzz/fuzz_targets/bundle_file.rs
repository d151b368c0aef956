//! The export bundle's outer layers, as an importer reads a file: `BundleFile::decode`
//! (envelope, signed body, suite, manifest, signer certificate; no signature yet) and
//! `Manifest::decode` on the same bytes. All deterministic CBOR: what decodes re-encodes to the
//! input, layer by layer. The signature and decryption behind these are `bundle_open`'s.
#![no_main]

use keyfill_formats::bundle::{BundleFile, Manifest, encode_bundle, encode_signed_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = BundleFile::decode(data) {
        assert_eq!(encode_bundle(file.signed_body, &file.signature), data, "the envelope re-encodes");
        let certificate = file.signer_certificate.encode();
        let body = encode_signed_body(file.manifest_bytes, &certificate, &file.encapsulated_key, file.ciphertext);
        assert_eq!(body, file.signed_body, "the signed body re-encodes");
        assert_eq!(file.manifest.encode(), file.manifest_bytes, "the manifest re-encodes");
    }
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data, "a manifest re-encodes to its bytes");
    }
});
