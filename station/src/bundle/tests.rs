//! Known-answer tests of the HPKE suite, byte-for-byte reproduction of the independently built
//! bundle, and bundles whose signed manifest contradicts their entries (which only a signer
//! could make, so they need the unchecked sealing path).

use super::*;
use keyfill_formats::DeviceId;
use keyfill_formats::SecretKey;
use keyfill_formats::bundle::encode_entries;
use ring::signature::Ed25519KeyPair;
use serde_json::Value;

const RFC_A21: &str = include_str!("../../../formats/tests/vectors/hpke-rfc9180-a21.json");
const PYTHON_VECTOR: &str = include_str!("../../../formats/tests/vectors/c2-bundle.json");
const PYTHON_BUNDLE: &[u8] = include_bytes!("../../../formats/tests/vectors/c2-bundle.kfb");
const PYTHON_BUNDLE_V2: &[u8] = include_bytes!("../../../formats/tests/vectors/c2-bundle-v2.kfb");

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value, String> {
    value.get(name).ok_or_else(|| format!("vector lacks {name}"))
}

fn hex_of(value: &Value, name: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    Ok(hex::decode(field(value, name)?.as_str().ok_or(format!("{name} is not a string"))?)?)
}

fn array_of<const N: usize>(value: &Value, name: &str) -> Result<[u8; N], Box<dyn std::error::Error>> {
    hex_of(value, name)?.try_into().map_err(|_| format!("{name} is not {N} bytes").into())
}

fn number_of(value: &Value, name: &str) -> Result<u64, Box<dyn std::error::Error>> {
    Ok(field(value, name)?.as_u64().ok_or(format!("{name} is not a number"))?)
}

#[test]
fn c2_export_hpke_suite_matches_rfc9180_a21() -> TestResult {
    let v: Value = serde_json::from_str(RFC_A21)?;
    assert_eq!((number_of(&v, "kem_id")?, number_of(&v, "kdf_id")?, number_of(&v, "aead_id")?), (0x20, 1, 3));
    let pk_r = array_of::<32>(&v, "pkRm")?;
    let ikm_e = array_of::<32>(&v, "ikmE")?;
    let info = hex_of(&v, "info")?;
    let encryptions = field(&v, "encryptions")?.as_array().ok_or("encryptions")?;
    let first = encryptions.first().ok_or("no encryption")?;

    // Exactly as Keyfill seals: the ephemeral derived from ikmE through the same RNG adapter.
    let sealed = hpke_suite::seal(&pk_r, &ikm_e, &info, &hex_of(first, "aad")?, &hex_of(first, "pt")?)?;
    assert_eq!(sealed.encapsulated_key.to_vec(), hex_of(&v, "enc")?);
    assert_eq!(sealed.ciphertext, hex_of(first, "ct")?);

    // The following sequence numbers, from one context.
    let messages = encryptions
        .iter()
        .map(|e| Ok((hex_of(e, "aad")?, hex_of(e, "pt")?)))
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let (enc, ciphertexts) = hpke_suite::seal_sequence(&pk_r, &ikm_e, &info, &messages).ok_or("seal failed")?;
    assert_eq!(enc.to_vec(), hex_of(&v, "enc")?);
    for (e, ct) in encryptions.iter().zip(&ciphertexts) {
        assert_eq!(ct, &hex_of(e, "ct")?);
    }

    // The receiver side and the public key derivation.
    let sk_r = SecretKey::from_bytes(array_of::<32>(&v, "skRm")?);
    assert_eq!(hpke_suite::public_key(&sk_r), pk_r);
    let opened = hpke_suite::open(&sk_r, &sealed.encapsulated_key, &info, &hex_of(first, "aad")?, &sealed.ciphertext)?;
    assert_eq!(opened.as_slice(), hex_of(first, "pt")?.as_slice());
    Ok(())
}

struct PythonVector {
    signer: BundleSigner,
    recipient: RecipientPrivateKey,
    factory_root: [u8; 32],
    entries: Vec<BundleEntry>,
    created_at_ms: u64,
    open_at_ms: u64,
    bundle_id: [u8; 16],
    ephemeral_ikm: [u8; 32],
}

fn python_vector() -> Result<PythonVector, Box<dyn std::error::Error>> {
    let v: Value = serde_json::from_str(PYTHON_VECTOR)?;
    let inputs = field(&v, "inputs")?;
    let certificate = BundleSignerCertificate::decode(&hex_of(&v, "signer_certificate")?)?;
    let mut entries = Vec::new();
    for e in field(&v, "expected_entries")?.as_array().ok_or("entries")? {
        let name = field(e, "name")?.as_str().ok_or("name")?.to_owned();
        entries.push(BundleEntry {
            device_id: DeviceId(array_of::<16>(e, "device_id")?),
            key_id: array_of::<16>(e, "key_id")?,
            key: SecretKey::from_bytes(array_of::<32>(e, "key")?),
            provisioned_at_ms: number_of(e, "provisioned_at_ms")?,
            from_rotation: field(e, "from_rotation")?.as_bool().ok_or("from_rotation")?,
            name: name.try_into()?,
        });
    }
    Ok(PythonVector {
        signer: BundleSigner::new(&hex_of(inputs, "signer_pkcs8")?, certificate)?,
        recipient: RecipientPrivateKey::from_secret(SecretKey::from_bytes(array_of::<32>(
            inputs,
            "recipient_private",
        )?)),
        factory_root: array_of::<32>(&v, "factory_root_public")?,
        entries,
        created_at_ms: number_of(inputs, "created_at_ms")?,
        open_at_ms: number_of(inputs, "open_at_ms")?,
        bundle_id: array_of::<16>(inputs, "bundle_id")?,
        ephemeral_ikm: array_of::<32>(inputs, "ephemeral_ikm")?,
    })
}

#[test]
fn c2_export_seal_reproduces_the_python_bundle_byte_for_byte() -> TestResult {
    let p = python_vector()?;
    let recipient = p.recipient.public_key();
    let ours = seal_v1_with(&p.signer, &recipient, &p.entries, p.created_at_ms, p.bundle_id, &p.ephemeral_ikm)?;
    assert_eq!(ours, PYTHON_BUNDLE);
    let opened = open_bundle(&ours, &p.recipient, &p.factory_root, p.open_at_ms)?;
    assert_eq!(opened.entries, p.entries);
    Ok(())
}

#[test]
fn c2_export_part_sealer_reproduces_the_python_two_part_bundle_byte_for_byte() -> TestResult {
    let p = python_vector()?;
    let v: Value = serde_json::from_str(PYTHON_VECTOR)?;
    let v2 = field(&v, "v2")?;
    let ikms = field(v2, "ephemeral_ikm")?.as_array().ok_or("ephemeral_ikm")?;
    let ikm = |index: usize| -> Result<[u8; 32], Box<dyn std::error::Error>> {
        let text = ikms.get(index).and_then(Value::as_str).ok_or("ikm")?;
        hex::decode(text)?.try_into().map_err(|_| "ikm is not 32 bytes".into())
    };
    let entries = sorted(p.entries.clone());
    let recipient = p.recipient.public_key();
    let mut sealer = PartSealer::with_id(&p.signer, &recipient, p.created_at_ms, array_of::<16>(v2, "bundle_id")?)?;
    let mut ours = sealer.seal_with(&entries[..2], false, &ikm(0)?)?;
    ours.extend(sealer.seal_with(&entries[2..], true, &ikm(1)?)?);
    assert_eq!(ours, PYTHON_BUNDLE_V2);
    let opened = open_bundle(&ours, &p.recipient, &p.factory_root, p.open_at_ms)?;
    assert_eq!(opened.entries, entries);
    assert_eq!((opened.manifest.parts, opened.manifest.count), (2, 3));
    Ok(())
}

/// A root, a signer it certifies, a recipient, and valid entries, for crafted bundles.
struct Fixture {
    factory_root: [u8; 32],
    signer: BundleSigner,
    recipient: RecipientPrivateKey,
    entries: Vec<BundleEntry>,
}

const NOW_MS: u64 = 1_800_000_000_000;

fn entry(name: &str, provisioned_at_ms: u64) -> BundleEntry {
    BundleEntry {
        name: name.try_into().expect("a valid name"),
        device_id: DeviceId::from_name(name),
        key_id: [7; 16],
        key: SecretKey::from_bytes([0x5A; 32]),
        provisioned_at_ms,
        from_rotation: false,
    }
}

fn fixture(not_before: u64, not_after: u64) -> Result<Fixture, Box<dyn std::error::Error>> {
    let root_pkcs8 = BundleSigner::generate_pkcs8()?;
    let root = Ed25519KeyPair::from_pkcs8(&root_pkcs8).map_err(|_| "root")?;
    let pkcs8 = BundleSigner::generate_pkcs8()?;
    let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
    let certificate = certify_bundle_signer(&root, [3; 16], "unit-station", public, not_before, not_after)?;
    Ok(Fixture {
        factory_root: BundleSigner::public_key_of_pkcs8(&root_pkcs8)?,
        signer: BundleSigner::new(&pkcs8, certificate)?,
        recipient: RecipientPrivateKey::generate()?,
        entries: sorted(vec![entry("unit-a", 1_000), entry("unit-b", 2_000)]),
    })
}

/// In device-id order, as a version 2 file holds them.
fn sorted(mut entries: Vec<BundleEntry>) -> Vec<BundleEntry> {
    entries.sort_by_key(|e| e.device_id.0);
    entries
}

fn valid_fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    fixture(NOW_MS / 1000 - 3600, NOW_MS / 1000 + 3600)
}

impl Fixture {
    fn manifest(&self) -> Result<Manifest, BundleError> {
        let recipient = *self.recipient.public_key().as_bytes();
        let part = Some(PartPosition { index: 0, last: true });
        Manifest::describe([9; 16], part, self.signer.certificate(), NOW_MS, recipient, &self.entries)
    }

    /// Seals `entries` under `manifest` without any check, and returns why opening it failed.
    fn refusal(
        &self,
        manifest: &Manifest,
        entries: &[BundleEntry],
    ) -> Result<OpenBundleError, Box<dyn std::error::Error>> {
        let file = seal_manifest(&self.signer, manifest, &encode_entries(entries), &[0x42; 32])?;
        match open_bundle(&file, &self.recipient, &self.factory_root, NOW_MS) {
            Ok(_) => Err("a crafted bundle was opened".into()),
            Err(error) => Ok(error),
        }
    }
}

#[test]
fn c2_export_manifest_count_mismatch_is_refused_after_decryption() -> TestResult {
    let f = valid_fixture()?;
    let manifest = Manifest { count: 3, ..f.manifest()? };
    let error = f.refusal(&manifest, &f.entries)?;
    assert!(
        matches!(error, OpenBundleError::Invalid { source: BundleError::CountMismatch { manifest: 3, actual: 2 } }),
        "{error:?}"
    );
    Ok(())
}

#[test]
fn c2_export_duplicate_names_are_refused() -> TestResult {
    let f = valid_fixture()?;
    let duplicated = vec![entry("unit-a", 1_000), entry("unit-a", 2_000)];
    // The sealing side refuses to make such a bundle at all...
    let refused = seal_bundle(&f.signer, &f.recipient.public_key(), &duplicated, NOW_MS).err().ok_or("sealed")?;
    assert!(matches!(refused, SealBundleError::Entries { source: BundleError::DuplicateName { .. } }), "{refused:?}");
    // ...and the opening side refuses one made anyway.
    let error = f.refusal(&f.manifest()?, &duplicated)?;
    assert!(matches!(error, OpenBundleError::Invalid { source: BundleError::DuplicateName { .. } }), "{error:?}");
    Ok(())
}

#[test]
fn c2_export_time_range_and_device_id_contradictions_are_refused() -> TestResult {
    let f = valid_fixture()?;
    let shifted = Manifest { latest_provisioned_at_ms: 2_001, ..f.manifest()? };
    let error = f.refusal(&shifted, &f.entries)?;
    assert!(matches!(error, OpenBundleError::Invalid { source: BundleError::TimeRangeMismatch { .. } }), "{error:?}");

    let mut wrong_id = f.entries.clone();
    wrong_id[1].device_id = DeviceId::from_name("someone-else");
    let error = f.refusal(&f.manifest()?, &wrong_id)?;
    assert!(matches!(error, OpenBundleError::Invalid { source: BundleError::DeviceIdMismatch { .. } }), "{error:?}");

    let mut zero = f.entries.clone();
    zero[0].key = SecretKey::from_bytes([0; 32]);
    let error = f.refusal(&f.manifest()?, &zero)?;
    assert!(matches!(error, OpenBundleError::Invalid { source: BundleError::ZeroKey { .. } }), "{error:?}");
    Ok(())
}

#[test]
fn c2_export_manifest_must_name_the_certified_station() -> TestResult {
    let f = valid_fixture()?;
    let other_station = Manifest { station_id: [4; 16], ..f.manifest()? };
    let error = f.refusal(&other_station, &f.entries)?;
    assert!(matches!(error, OpenBundleError::StationMismatch { .. }), "{error:?}");
    Ok(())
}

#[test]
fn c2_export_signer_certificate_must_be_valid_at_creation() -> TestResult {
    let created_s = NOW_MS / 1000;
    for (not_before, not_after) in [(created_s - 7200, created_s - 1), (created_s + 1, created_s + 7200)] {
        let f = fixture(not_before, not_after)?;
        let refused = seal_bundle(&f.signer, &f.recipient.public_key(), &f.entries, NOW_MS).err().ok_or("sealed")?;
        assert!(matches!(refused, SealBundleError::SignerNotValid { .. }), "{refused:?}");
        let error = f.refusal(&f.manifest()?, &f.entries)?;
        assert!(
            matches!(error, OpenBundleError::SignerNotValidAtCreation { created_at, .. } if created_at == created_s),
            "{error:?}"
        );
    }
    // Valid then, expired now: still importable (docs/formats.md §13.4).
    let f = fixture(created_s - 10, created_s + 10)?;
    let file = seal_bundle(&f.signer, &f.recipient.public_key(), &f.entries, NOW_MS)?;
    let much_later = NOW_MS + 400 * 24 * 3600 * 1000;
    assert_eq!(open_bundle(&file, &f.recipient, &f.factory_root, much_later)?.entries, f.entries);
    Ok(())
}

/// Writes a bundle sealed by Keyfill (random ephemeral and bundle id) for the vector's test
/// recipient, for the independent verifier:
/// `KEYFILL_RUST_BUNDLE=/tmp/rust.kfb cargo test -p keyfill-station --lib c2_export_write -- --ignored`,
/// then `python3 tools/vectors/c2_bundle.py verify /tmp/rust.kfb`.
#[test]
#[ignore = "writes a file for tools/vectors/c2_bundle.py verify"]
fn c2_export_write_a_rust_bundle_for_the_python_verifier() -> TestResult {
    let path = std::env::var("KEYFILL_RUST_BUNDLE")?;
    let p = python_vector()?;
    let entries = sorted(p.entries);
    let mut sealer = PartSealer::new(&p.signer, &p.recipient.public_key(), p.created_at_ms)?;
    // Two parts, so that the verifier sees a file of several.
    let mut file = sealer.seal(&entries[..1], false)?;
    file.extend(sealer.seal(&entries[1..], true)?);
    std::fs::write(path, file)?;
    Ok(())
}

/// The bytes of each part of a file, in order.
type Parts = Vec<Vec<u8>>;

/// A fixture of `n` devices and a file of parts of `per_part` of them, each part separately.
fn series(n: usize, per_part: usize) -> Result<(Fixture, Parts), Box<dyn std::error::Error>> {
    let mut f = valid_fixture()?;
    f.entries = sorted((0..n).map(|i| entry(&format!("series-{i:03}"), 1_000 + i as u64)).collect());
    let mut sealer = PartSealer::new(&f.signer, &f.recipient.public_key(), NOW_MS)?;
    let chunks: Vec<&[BundleEntry]> = f.entries.chunks(per_part).collect();
    let mut parts = Vec::new();
    for (index, chunk) in chunks.iter().enumerate() {
        parts.push(sealer.seal(chunk, index + 1 == chunks.len())?);
    }
    Ok((f, parts))
}

#[test]
fn c2_export_a_file_of_several_parts_opens_as_one_bundle() -> TestResult {
    let (f, parts) = series(7, 3)?;
    let file = parts.concat();
    let opened = open_bundle(&file, &f.recipient, &f.factory_root, NOW_MS)?;
    assert_eq!(opened.entries, f.entries);
    assert_eq!((opened.manifest.parts, opened.manifest.count, opened.manifest.version), (3, 7, 2));
    assert_eq!(
        (opened.manifest.earliest_provisioned_at_ms, opened.manifest.latest_provisioned_at_ms),
        (f.entries.iter().map(|e| e.provisioned_at_ms).min().ok_or("min")?, 1_006)
    );
    let summary = verify_bundle(&file, &f.factory_root, NOW_MS)?;
    assert_eq!(summary.manifest, opened.manifest);
    Ok(())
}

#[test]
fn adversarial_bundle_parts_dropped_repeated_reordered_or_appended_are_refused() -> TestResult {
    let (f, parts) = series(7, 3)?;
    let (_, other) = series(2, 1)?;
    let refused = |file: Vec<u8>| match open_bundle(&file, &f.recipient, &f.factory_root, NOW_MS) {
        Ok(_) => Err("opened"),
        Err(error) => Ok(error),
    };
    let invalid = |error: &OpenBundleError| match error {
        OpenBundleError::Invalid { source } => Some(source.clone()),
        _ => None,
    };
    // The last part dropped: the file ends without its final part.
    let error = refused([&parts[0][..], &parts[1]].concat())?;
    assert_eq!(invalid(&error), Some(BundleError::MissingLastPart { last_index: 1 }), "{error:?}");
    // A middle part dropped, repeated, or two swapped: a part out of place.
    for file in [
        [&parts[0][..], &parts[2]].concat(),
        [&parts[0][..], &parts[0], &parts[1], &parts[2]].concat(),
        [&parts[1][..], &parts[0], &parts[2]].concat(),
    ] {
        let error = refused(file)?;
        assert!(matches!(invalid(&error), Some(BundleError::PartOutOfOrder { .. })), "{error:?}");
    }
    // A part appended after the last one.
    let error = refused([&parts[0][..], &parts[1], &parts[2], &parts[2]].concat())?;
    assert_eq!(invalid(&error), Some(BundleError::PartAfterLast { position: 3 }), "{error:?}");
    // Part 1 of another bundle (another id, another signer) in place of this one's part 1.
    let error = refused([&parts[0][..], &other[1], &parts[2]].concat())?;
    assert!(matches!(error, OpenBundleError::SignerOtherRoot { .. } | OpenBundleError::Invalid { .. }), "{error:?}");
    // Cut anywhere inside a part: the part is incomplete.
    let whole = parts.concat();
    for cut in [1, 20, 25, parts[0].len() - 1, parts[0].len() + 30, whole.len() - 1] {
        let error = refused(whole[..cut].to_vec())?;
        assert!(matches!(invalid(&error), Some(BundleError::Truncated { .. })), "cut at {cut}: {error:?}");
    }
    // Garbage after the last part.
    let error = refused([&whole[..], b"\x00\x01"].concat())?;
    assert!(invalid(&error).is_some(), "{error:?}");
    Ok(())
}

#[test]
fn adversarial_bundle_device_in_two_parts_is_refused() -> TestResult {
    let f = valid_fixture()?;
    let mut sealer = PartSealer::new(&f.signer, &f.recipient.public_key(), NOW_MS)?;
    let first = sealer.seal(&f.entries, false)?;
    let second = sealer.seal(&f.entries[1..], true)?;
    let error = open_bundle(&[first, second].concat(), &f.recipient, &f.factory_root, NOW_MS).err().ok_or("opened")?;
    assert!(
        matches!(error, OpenBundleError::Invalid { source: BundleError::EntriesOutOfOrder { index: 1 } }),
        "{error:?}"
    );
    Ok(())
}

#[test]
fn c2_export_a_sealer_refuses_parts_after_the_last() -> TestResult {
    let f = valid_fixture()?;
    let mut sealer = PartSealer::new(&f.signer, &f.recipient.public_key(), NOW_MS)?;
    sealer.seal(&f.entries, true)?;
    assert!(matches!(sealer.seal(&f.entries, true), Err(SealBundleError::Finished)));
    Ok(())
}
