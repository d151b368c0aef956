//! Certificates from the factory root: `StationCertificate::decode` (the payload of Noise
//! message 3, read by every device) and `BundleSignerCertificate::decode` (inside every export
//! bundle). Both are deterministic CBOR: what decodes re-encodes to the input, and the body
//! re-encodes to the signed bytes. (Signatures are the callers' to check; `bundle_open` and
//! `agent_session` reach those checks with certificates that verify.)
#![no_main]

use keyfill_formats::cert::{BundleSignerCertificate, StationCertificate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = StationCertificate::decode(data) {
        assert_eq!(certificate.encode(), data, "a station certificate re-encodes to its bytes");
        assert_eq!(certificate.body.encode(), certificate.tbs, "the body re-encodes to the signed bytes");
        assert!(certificate.body.not_before <= certificate.body.not_after);
    }
    if let Ok(certificate) = BundleSignerCertificate::decode(data) {
        assert_eq!(certificate.encode(), data, "a signer certificate re-encodes to its bytes");
        assert_eq!(certificate.body.encode(), certificate.tbs, "the body re-encodes to the signed bytes");
    }
});
