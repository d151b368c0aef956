//! The C2 export bundle format: encodings, strict decoding, entry checks, and decoders that
//! never panic on arbitrary bytes.

use keyfill_formats::bundle::{
    self, BundleEntry, BundleError, BundleFile, CryptoMode, EntrySummary, Manifest, PartPosition, VERSION, VERSION_1,
    check_entries, decode_entries, encode_bundle, encode_entries, encode_signed_body, part_len,
};
use keyfill_formats::cert::{BundleSignerBody, BundleSignerCertificate, CertificateError};
use keyfill_formats::{DeviceId, DeviceName, SecretKey};
use proptest::prelude::*;

/// Built by tools/vectors/c2_bundle.py with pyhpke, cbor2 and cryptography (see the README).
const PYTHON_BUNDLE: &[u8] = include_bytes!("vectors/c2-bundle.kfb");

fn entry(name: &str, provisioned_at_ms: u64) -> BundleEntry {
    BundleEntry {
        name: DeviceName::parse(name).expect("a valid name"),
        device_id: DeviceId::from_name(name),
        key_id: [1; 16],
        key: SecretKey::from_bytes([2; 32]),
        provisioned_at_ms,
        from_rotation: true,
    }
}

fn signer_certificate() -> BundleSignerCertificate {
    let body = BundleSignerBody {
        station_id: [5; 16],
        station_name: "format-station".into(),
        signing_public: [6; 32],
        not_before: 10,
        not_after: 20,
        root_key_id: [7; 8],
    };
    BundleSignerCertificate { tbs: body.encode(), body, signature: [8; 64] }
}

fn manifest(entries: &[BundleEntry]) -> Manifest {
    let part = Some(PartPosition { index: 0, last: true });
    Manifest::describe([4; 16], part, &signer_certificate(), 15_000, [9; 32], entries).expect("valid entries")
}

fn sample_bundle() -> Vec<u8> {
    let entries = [entry("a", 1), entry("b", 2)];
    let body = encode_signed_body(
        VERSION,
        &manifest(&entries).encode(),
        &signer_certificate().encode(),
        &[3; 32],
        &encode_entries(&entries), // stands in for a ciphertext: the format does not look inside
    );
    encode_bundle(VERSION, &body, &[0xEE; 64])
}

#[test]
fn c2_export_python_bundle_parses_as_documented() {
    let file = BundleFile::decode(PYTHON_BUNDLE).expect("the Python bundle parses");
    let m = &file.manifest;
    assert_eq!(m.bundle_id_hex(), "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
    assert_eq!(m.station_name, "vector-station");
    assert_eq!(m.count, 3);
    assert_eq!((m.earliest_provisioned_at_ms, m.latest_provisioned_at_ms), (1_799_000_000_000, 1_799_999_999_999));
    assert_eq!(m.created_at_ms, 1_800_000_000_123);
    assert_eq!(m.crypto_mode, CryptoMode::Symmetric);
    assert_eq!(file.signer_certificate.body.station_id, m.station_id);
    assert_eq!((file.version, m.part), (VERSION_1, None), "the vector is a version 1 bundle");
    assert_eq!(file.signing_input(), [bundle::SIGNING_CONTEXT_V1, file.signed_body].concat());
    assert_eq!(file.manifest_bytes, m.encode().as_slice());
    // Re-encoding every part gives the Python bytes back.
    let body = encode_signed_body(
        VERSION_1,
        file.manifest_bytes,
        &file.signer_certificate.encode(),
        &file.encapsulated_key,
        file.ciphertext,
    );
    assert_eq!(encode_bundle(VERSION_1, &body, &file.signature), PYTHON_BUNDLE);
    assert_eq!(part_len(&PYTHON_BUNDLE[..bundle::MAX_PART_PREFIX_LEN], 0), Ok(PYTHON_BUNDLE.len()));
}

#[test]
fn c2_export_manifest_round_trip_and_limits() {
    let entries = [entry("x", 30), entry("y", 10), entry("z", 20)];
    let m = manifest(&entries);
    assert_eq!((m.count, m.earliest_provisioned_at_ms, m.latest_provisioned_at_ms), (3, 10, 30));
    assert_eq!(m.station_id, [5; 16]);
    assert_eq!(Manifest::decode(&m.encode()), Ok(m.clone()));

    let empty = Manifest { count: 0, ..m.clone() };
    assert_eq!(Manifest::decode(&empty.encode()), Err(BundleError::Empty));
    let huge = Manifest { count: bundle::MAX_ENTRIES + 1, ..m.clone() };
    assert!(matches!(Manifest::decode(&huge.encode()), Err(BundleError::TooManyEntries { .. })));
    let backwards = Manifest { earliest_provisioned_at_ms: 31, ..m.clone() };
    assert!(matches!(Manifest::decode(&backwards.encode()), Err(BundleError::InvalidTimeRange { .. })));

    // A crypto mode other than "symmetric", and a non-shortest integer head.
    let mut public_key_mode = m.encode();
    let at = public_key_mode.windows(9).position(|w| w == b"symmetric").expect("mode");
    public_key_mode[at..at + 9].copy_from_slice(b"publickey");
    assert!(matches!(Manifest::decode(&public_key_mode), Err(BundleError::UnsupportedCryptoMode { .. })));
    let mut long_head = m.encode();
    assert_eq!(long_head[1], 0x02);
    long_head.splice(1..2, [0x18, 0x02]);
    assert!(matches!(Manifest::decode(&long_head), Err(BundleError::Malformed { part: "manifest", .. })));
}

#[test]
fn c2_export_entries_round_trip_and_checks() {
    let entries = vec![entry("sensor-1", 5), entry("capteur-é", 7)];
    let m = manifest(&entries);
    let plaintext = encode_entries(&entries);
    assert_eq!(decode_entries(&plaintext, &m), Ok(entries.clone()));
    assert_eq!(
        check_entries(&entries),
        Ok(EntrySummary { count: 2, earliest_provisioned_at_ms: 5, latest_provisioned_at_ms: 7 })
    );

    assert_eq!(check_entries(&[]), Err(BundleError::Empty));
    let duplicate = [entry("same", 1), entry("same", 2)];
    assert_eq!(check_entries(&duplicate), Err(BundleError::DuplicateName { name: "same".into() }));
    let mut wrong_id = entry("one", 1);
    wrong_id.device_id = DeviceId::from_name("two");
    assert_eq!(check_entries(&[wrong_id]), Err(BundleError::DeviceIdMismatch { name: "one".into() }));
    let mut zero = entry("zero", 1);
    zero.key = SecretKey::from_bytes([0; 32]);
    assert_eq!(check_entries(&[zero]), Err(BundleError::ZeroKey { name: "zero".into() }));

    // The manifest must announce exactly what the plaintext holds.
    let wrong_count = Manifest { count: 3, ..m.clone() };
    assert_eq!(decode_entries(&plaintext, &wrong_count), Err(BundleError::CountMismatch { manifest: 3, actual: 2 }));
    let wrong_range = Manifest { earliest_provisioned_at_ms: 4, ..m.clone() };
    assert!(matches!(decode_entries(&plaintext, &wrong_range), Err(BundleError::TimeRangeMismatch { .. })));
    let mut trailing = plaintext.to_vec();
    trailing.push(0);
    assert!(matches!(decode_entries(&trailing, &m), Err(BundleError::Malformed { part: "entries", .. })));
}

#[test]
fn c2_export_worst_case_entry_size_is_as_documented() {
    let name = "n".repeat(255);
    let worst = BundleEntry { provisioned_at_ms: u64::MAX, ..entry(&name, 0) };
    let encoded = encode_entries(std::slice::from_ref(&worst));
    assert_eq!(encoded.len() - 1, bundle::MAX_ENCODED_ENTRY);
}

#[test]
fn c2_export_envelope_checks() {
    let file = sample_bundle();
    let parsed = BundleFile::decode(&file).expect("parses");
    assert_eq!(parsed.signature, [0xEE; 64]);
    assert_eq!(parsed.encapsulated_key, [3; 32]);

    assert_eq!(BundleFile::decode(b""), Err(BundleError::NotABundle));
    assert_eq!(BundleFile::decode(&signer_certificate().encode()), Err(BundleError::NotABundle));
    let mut other_version = file.clone();
    let at = 1 + 1 + bundle::FORMAT_TAG.len();
    assert_eq!(other_version[at], 0x02);
    other_version[at] = 0x03;
    assert_eq!(BundleFile::decode(&other_version), Err(BundleError::UnsupportedVersion { version: 3 }));
    assert_eq!(part_len(&other_version, 0), Err(BundleError::UnsupportedVersion { version: 3 }));
    // A version 2 envelope around a version 1 body, or the reverse: refused.
    let mut mixed = file.clone();
    mixed[at] = 0x01;
    assert!(BundleFile::decode(&mixed).is_err());
    let too_large = vec![0u8; bundle::MAX_BUNDLE_LEN + 1];
    assert!(matches!(BundleFile::decode(&too_large), Err(BundleError::TooLarge { .. })));

    // Another HPKE suite in the signed body.
    let body = BundleFile::decode(&file).expect("parses").signed_body.to_vec();
    let mut other_suite = body.clone();
    assert_eq!(&other_suite[1..5], &[0x02, 0x18, 0x20, 0x01]);
    other_suite[4] = 0x02; // KDF HKDF-SHA384
    assert!(matches!(
        BundleFile::decode(&encode_bundle(VERSION, &other_suite, &[0; 64])),
        Err(BundleError::UnsupportedSuite { kem: 0x20, kdf: 2, aead: 3 })
    ));
    let short = encode_signed_body(
        VERSION,
        &manifest(&[entry("a", 1)]).encode(),
        &signer_certificate().encode(),
        &[3; 32],
        &[0; 15],
    );
    assert_eq!(
        BundleFile::decode(&encode_bundle(VERSION, &short, &[0; 64])),
        Err(BundleError::CiphertextTooShort { len: 15 })
    );
}

#[test]
fn c2_export_part_length_is_read_from_the_first_bytes() {
    let file = sample_bundle();
    assert_eq!(part_len(&file[..bundle::MAX_PART_PREFIX_LEN], 0), Ok(file.len()));
    assert_eq!(part_len(&file, 0), Ok(file.len()), "bytes beyond the prefix are not looked at");
    for cut in [1, 10, 20, 21, 22] {
        assert!(
            matches!(part_len(&file[..cut], 4), Err(BundleError::Truncated { index: 4, .. })),
            "a prefix of {cut} bytes"
        );
    }
    assert_eq!(part_len(b"\x84\x71keyfill-c2-bundlf", 0), Err(BundleError::NotABundle));
    assert_eq!(part_len(b"{}", 0), Err(BundleError::NotABundle));
    let mut huge = file[..bundle::MAX_PART_PREFIX_LEN].to_vec();
    huge[20..25].copy_from_slice(&[0x5a, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(part_len(&huge, 0), Err(BundleError::TooLarge { .. })));
    huge[20] = 0x5f; // indefinite length: not deterministic CBOR
    assert!(matches!(part_len(&huge, 0), Err(BundleError::Malformed { .. })));
}

#[test]
fn c2_export_signer_certificate_round_trip_and_checks() {
    let cert = signer_certificate();
    assert_eq!(BundleSignerCertificate::decode(&cert.encode()), Ok(cert.clone()));
    assert_eq!(
        BundleSignerBody::signing_input(&cert.tbs),
        [&b"keyfill bundle signer certificate v1\0"[..], &cert.tbs].concat()
    );
    assert!(cert.body.valid_at(10) && cert.body.valid_at(20) && !cert.body.valid_at(9) && !cert.body.valid_at(21));
    let empty = BundleSignerBody { not_after: 9, ..cert.body.clone() };
    let empty = BundleSignerCertificate { tbs: empty.encode(), ..cert.clone() };
    assert_eq!(BundleSignerCertificate::decode(&empty.encode()), Err(CertificateError::EmptyValidity));
    // The two certificate kinds have the same layout but distinct signing contexts.
    assert_ne!(keyfill_formats::cert::BUNDLE_SIGNER_CONTEXT, keyfill_formats::cert::SIGNING_CONTEXT);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn c2_export_decoders_never_panic_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = BundleFile::decode(&input);
        let _ = Manifest::decode(&input);
        let _ = BundleSignerCertificate::decode(&input);
        let _ = decode_entries(&input, &manifest(&[entry("a", 1)]));
    }

    #[test]
    fn c2_export_decoders_never_panic_on_mutated_bundles(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut file = sample_bundle();
        for (position, value) in edits {
            let len = file.len();
            file[position % len] = value;
        }
        let _ = BundleFile::decode(&file);
        let _ = BundleFile::decode(&file[..cut % (file.len() + 1)]);
        let entries = [entry("a", 1), entry("b", 2)];
        let mut plaintext = encode_entries(&entries).to_vec();
        let len = plaintext.len();
        plaintext[cut % len] ^= 0x5A;
        let _ = decode_entries(&plaintext, &manifest(&entries));
    }
}

#[test]
fn c2_export_bundle_entries_refuse_hostile_names() {
    // Entries as a tampered or careless writer could produce them: each name is swapped, byte
    // for byte, into a valid encoding, with the id that goes with it.
    let hostile = [("victim\tdev", "victimXdev"), ("evil/name", "evilXname"), ("..", "xx"), ("esc\x1b", "escX")];
    for (name, stand_in) in hostile {
        let entries = [entry(stand_in, 1)];
        let mut plaintext = encode_entries(&entries).to_vec();
        let replace = |bytes: &mut Vec<u8>, from: &[u8], to: &[u8]| {
            let at = bytes.windows(from.len()).position(|w| w == from).expect("present");
            bytes[at..at + from.len()].copy_from_slice(to);
        };
        replace(&mut plaintext, stand_in.as_bytes(), name.as_bytes());
        replace(&mut plaintext, &DeviceId::from_name(stand_in).0, &DeviceId::from_name(name).0);
        let error = decode_entries(&plaintext, &manifest(&entries)).expect_err(name);
        assert!(matches!(error, BundleError::InvalidName { index: 0, .. }), "{name:?}: {error}");
        assert!(error.to_string().contains("device name"), "{name:?}: {error}");
    }
}
