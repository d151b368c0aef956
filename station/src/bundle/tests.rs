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
    let ours = seal_with(&p.signer, &recipient, &p.entries, p.created_at_ms, p.bundle_id, &p.ephemeral_ikm)?;
    assert_eq!(ours, PYTHON_BUNDLE);
    let opened = open_bundle(&ours, &p.recipient, &p.factory_root, p.open_at_ms)?;
    assert_eq!(opened.entries, p.entries);
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
        entries: vec![entry("unit-a", 1_000), entry("unit-b", 2_000)],
    })
}

fn valid_fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    fixture(NOW_MS / 1000 - 3600, NOW_MS / 1000 + 3600)
}

impl Fixture {
    fn manifest(&self) -> Result<Manifest, BundleError> {
        let recipient = *self.recipient.public_key().as_bytes();
        Manifest::describe([9; 16], self.signer.certificate(), NOW_MS, recipient, &self.entries)
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
    let file = seal_bundle(&p.signer, &p.recipient.public_key(), &p.entries, p.created_at_ms)?;
    std::fs::write(path, file)?;
    Ok(())
}
