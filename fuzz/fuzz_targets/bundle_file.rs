//! The export bundle's outer layers, as an importer reads a file: `BundleFile::decode`
//! (envelope, signed body, suite, manifest, signer certificate; no signature yet),
//! `Manifest::decode` on the same bytes, and `part_len`, which finds where a part ends in a file
//! of several. All deterministic CBOR: what decodes re-encodes to the
//! input, layer by layer. The signature and decryption behind these are `bundle_open`'s.
#![no_main]

use keyfill_formats::bundle::{BundleFile, Manifest, encode_bundle, encode_signed_body, part_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let length = part_len(data, 0);
    if let Ok(file) = BundleFile::decode(data) {
        assert_eq!(length, Ok(data.len()), "a part's length is read from its first bytes");
        assert_eq!(encode_bundle(file.version, file.signed_body, &file.signature), data, "the envelope re-encodes");
        let certificate = file.signer_certificate.encode();
        let body = encode_signed_body(
            file.version,
            file.manifest_bytes,
            &certificate,
            &file.encapsulated_key,
            file.ciphertext,
        );
        assert_eq!(body, file.signed_body, "the signed body re-encodes");
        assert_eq!(file.manifest.encode(), file.manifest_bytes, "the manifest re-encodes");
    }
    if let Ok(manifest) = Manifest::decode(data) {
        assert_eq!(manifest.encode(), data, "a manifest re-encodes to its bytes");
    }
});
