//! C2 export bundles through the station's public API: round trip, tampering, trust, the
//! independently built vector, secrets in Debug output and in key files, and the signer kept in
//! the station home.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use keyfill_formats::bundle::BundleError;
use keyfill_formats::{DeviceId, SecretKey};
use keyfill_station::bundle::{
    BundleEntry, BundleSigner, KeyFileError, OpenBundleError, RecipientPrivateKey, certify_bundle_signer,
    generate_recipient_key_files, load_recipient_private_key, open_bundle, public_key_path, read_factory_root_public,
    read_recipient_public_key, seal_bundle, signer_certificate_trusted, verify_bundle, write_recipient_key_files,
};
use keyfill_station::home::{HomeError, StationHome};
use ring::signature::Ed25519KeyPair;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../formats/tests/vectors");

fn now_ms() -> u64 {
    keyfill_station::home::unix_now() * 1000
}

fn entry(name: &str, key_byte: u8, provisioned_at_ms: u64, from_rotation: bool) -> BundleEntry {
    BundleEntry {
        name: name.try_into().expect("a valid name"),
        device_id: DeviceId::from_name(name),
        key_id: [key_byte ^ 0xFF; 16],
        key: SecretKey::from_bytes([key_byte; 32]),
        provisioned_at_ms,
        from_rotation,
    }
}

/// In device-id order, as a bundle holds them.
fn sample_entries() -> Vec<BundleEntry> {
    let mut entries = vec![
        entry("plant-7-sensor-0001", 0x11, 1_700_000_000_000, false),
        entry("plant-7-sensor-0002", 0x22, 1_700_000_500_000, true),
        entry("plant-7-gateway-é", 0x33, 1_699_999_000_000, false),
    ];
    entries.sort_by_key(|e| e.device_id.0);
    entries
}

/// A factory root and a signer it certifies for the hour around now.
struct Station {
    factory_root: [u8; 32],
    root: Ed25519KeyPair,
    signer: BundleSigner,
}

fn station() -> Result<Station, Box<dyn std::error::Error>> {
    let root_pkcs8 = BundleSigner::generate_pkcs8()?;
    let root = Ed25519KeyPair::from_pkcs8(&root_pkcs8).map_err(|_| "root")?;
    let factory_root = BundleSigner::public_key_of_pkcs8(&root_pkcs8)?;
    let signer = signer_for(&root, 3600)?;
    Ok(Station { factory_root, root, signer })
}

fn signer_for(root: &Ed25519KeyPair, half_life_secs: u64) -> Result<BundleSigner, Box<dyn std::error::Error>> {
    let pkcs8 = BundleSigner::generate_pkcs8()?;
    let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
    let now = now_ms() / 1000;
    let certificate =
        certify_bundle_signer(root, [0xAB; 16], "line-3", public, now - half_life_secs, now + half_life_secs)?;
    Ok(BundleSigner::new(&pkcs8, certificate)?)
}

#[test]
fn c2_export_bundle_round_trip() -> TestResult {
    let s = station()?;
    let recipient = RecipientPrivateKey::generate()?;
    let entries = sample_entries();
    let created = now_ms();
    let file = seal_bundle(&s.signer, &recipient.public_key(), &entries, created)?;

    let summary = verify_bundle(&file, &s.factory_root, now_ms())?;
    assert_eq!(summary.manifest.count, 3);
    assert_eq!(summary.manifest.created_at_ms, created);
    assert_eq!(summary.manifest.earliest_provisioned_at_ms, 1_699_999_000_000);
    assert_eq!(summary.manifest.latest_provisioned_at_ms, 1_700_000_500_000);
    assert_eq!(summary.manifest.station_name, "line-3");
    assert_eq!(&summary.manifest.recipient_public, recipient.public_key().as_bytes());

    let opened = open_bundle(&file, &recipient, &s.factory_root, now_ms())?;
    assert_eq!(opened.entries, entries);
    assert_eq!(opened.manifest, summary.manifest);
    assert_eq!(opened.signer, *s.signer.certificate());

    // Two bundles of the same entries differ (bundle id, ephemeral key) and both open.
    let again = seal_bundle(&s.signer, &recipient.public_key(), &entries, created)?;
    assert_ne!(again, file);
    assert_ne!(verify_bundle(&again, &s.factory_root, now_ms())?.manifest.bundle_id, summary.manifest.bundle_id);
    Ok(())
}

/// Errors that only a decrypted bundle can produce.
fn reached_decryption(error: &OpenBundleError) -> bool {
    match error {
        OpenBundleError::Decryption => true,
        OpenBundleError::Invalid { source } => matches!(
            source,
            BundleError::Malformed { part: "entries", .. }
                | BundleError::CountMismatch { .. }
                | BundleError::TimeRangeMismatch { .. }
                | BundleError::InvalidName { .. }
                | BundleError::DuplicateName { .. }
                | BundleError::DeviceIdMismatch { .. }
                | BundleError::ZeroKey { .. }
        ),
        _ => false,
    }
}

#[test]
fn c2_export_tampering_any_byte_is_refused() -> TestResult {
    let s = station()?;
    let recipient = RecipientPrivateKey::generate()?;
    let file = seal_bundle(&s.signer, &recipient.public_key(), &sample_entries()[..1], now_ms())?;
    for position in 0..file.len() {
        for flip in [0x01u8, 0x80] {
            let mut tampered = file.clone();
            tampered[position] ^= flip;
            match open_bundle(&tampered, &recipient, &s.factory_root, now_ms()) {
                Ok(_) => panic!("a bundle with byte {position} ^ {flip:#04x} was opened"),
                // The signature covers every byte the structure checks let through, so every
                // refusal comes before decryption.
                Err(error) if reached_decryption(&error) => {
                    panic!("byte {position} ^ {flip:#04x} reached decryption: {error}")
                }
                Err(_) => {}
            }
        }
    }
    for len in 0..file.len() {
        assert!(open_bundle(&file[..len], &recipient, &s.factory_root, now_ms()).is_err(), "prefix of {len} opened");
    }
    let mut extended = file.clone();
    extended.push(0);
    assert!(matches!(
        open_bundle(&extended, &recipient, &s.factory_root, now_ms()),
        Err(OpenBundleError::Invalid { source: BundleError::PartAfterLast { position: 1 } })
    ));
    Ok(())
}

#[test]
fn c2_export_wrong_recipient_is_refused() -> TestResult {
    let s = station()?;
    let recipient = RecipientPrivateKey::generate()?;
    let other = RecipientPrivateKey::generate()?;
    let file = seal_bundle(&s.signer, &recipient.public_key(), &sample_entries(), now_ms())?;
    let error = open_bundle(&file, &other, &s.factory_root, now_ms()).err().ok_or("opened")?;
    let OpenBundleError::WrongRecipient { addressed_to, ours } = &error else { panic!("{error:?}") };
    assert_eq!(addressed_to, &recipient.public_key().to_hex());
    assert_eq!(ours, &other.public_key().to_hex());

    // A low-order point (here all zero) cannot be encrypted to: its X25519 result is all zero.
    let low_order = keyfill_station::bundle::RecipientPublicKey::from_bytes([0; 32]);
    assert!(matches!(
        seal_bundle(&s.signer, &low_order, &sample_entries(), now_ms()),
        Err(keyfill_station::bundle::SealBundleError::InvalidRecipient)
    ));
    Ok(())
}

#[test]
fn c2_export_signer_certified_by_another_root_is_refused() -> TestResult {
    let s = station()?;
    let intruder = station()?;
    let recipient = RecipientPrivateKey::generate()?;
    let file = seal_bundle(&intruder.signer, &recipient.public_key(), &sample_entries(), now_ms())?;
    let error = open_bundle(&file, &recipient, &s.factory_root, now_ms()).err().ok_or("opened")?;
    assert!(matches!(error, OpenBundleError::SignerOtherRoot { .. }), "{error:?}");

    // Another root that claims the pinned root's key id: its signature does not verify.
    let pkcs8 = BundleSigner::generate_pkcs8()?;
    let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
    let now = now_ms() / 1000;
    let mut forged = certify_bundle_signer(&intruder.root, [0xAB; 16], "line-3", public, now - 60, now + 60)?;
    forged.body.root_key_id = keyfill_formats::cert::root_key_id(&s.factory_root);
    forged.tbs = forged.body.encode();
    assert!(!signer_certificate_trusted(&forged, &s.factory_root));
    let file = seal_bundle(&BundleSigner::new(&pkcs8, forged)?, &recipient.public_key(), &sample_entries(), now_ms())?;
    let error = open_bundle(&file, &recipient, &s.factory_root, now_ms()).err().ok_or("opened")?;
    assert!(matches!(error, OpenBundleError::SignerUntrusted), "{error:?}");
    Ok(())
}

#[test]
fn c2_export_signer_not_valid_at_creation_or_creation_in_the_future_is_refused() -> TestResult {
    let s = station()?;
    let recipient = RecipientPrivateKey::generate()?;
    // The signer's certificate covers now ± 1 h; a bundle dated 2 h ago cannot be made.
    let two_hours_ago = now_ms() - 2 * 3600 * 1000;
    let refused =
        seal_bundle(&s.signer, &recipient.public_key(), &sample_entries(), two_hours_ago).err().ok_or("sealed")?;
    assert!(matches!(refused, keyfill_station::bundle::SealBundleError::SignerNotValid { .. }), "{refused:?}");

    // A bundle made now, opened by an importer whose clock is two days behind.
    let long_lived = signer_for(&s.root, 10 * 24 * 3600)?;
    let file = seal_bundle(&long_lived, &recipient.public_key(), &sample_entries(), now_ms())?;
    let importer_clock = now_ms() - 2 * 24 * 3600 * 1000;
    let error = open_bundle(&file, &recipient, &s.factory_root, importer_clock).err().ok_or("opened")?;
    assert!(matches!(error, OpenBundleError::CreatedInFuture { .. }), "{error:?}");
    Ok(())
}

#[test]
fn c2_export_python_bundle_opens_to_the_expected_entries() -> TestResult {
    let vectors = Path::new(VECTORS);
    let description: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors.join("c2-bundle.json"))?)?;
    let inputs = &description["inputs"];
    let passphrase = inputs["recipient_passphrase"].as_str().ok_or("passphrase")?;
    let open_at_ms = inputs["open_at_ms"].as_u64().ok_or("open_at_ms")?;

    // Every file as the importer reads it, all written by the Python generator.
    let factory_root = read_factory_root_public(&vectors.join("c2-bundle-factory-root.pub"))?;
    let recipient = load_recipient_private_key(&vectors.join("c2-bundle-recipient.key.json"), passphrase)?;
    assert_eq!(read_recipient_public_key(&vectors.join("c2-bundle-recipient.pub"))?, recipient.public_key());
    let bundle = std::fs::read(vectors.join("c2-bundle.kfb"))?;
    let opened = open_bundle(&bundle, &recipient, &factory_root, open_at_ms)?;

    let expected = description["expected_entries"].as_array().ok_or("entries")?;
    assert_eq!(opened.entries.len(), expected.len());
    for (got, want) in opened.entries.iter().zip(expected) {
        assert_eq!(got.name, want["name"].as_str().ok_or("name")?);
        assert_eq!(got.device_id.to_hex(), want["device_id"].as_str().ok_or("device_id")?);
        assert_eq!(hex::encode(got.key_id), want["key_id"].as_str().ok_or("key_id")?);
        assert_eq!(hex::encode(got.key.expose()), want["key"].as_str().ok_or("key")?);
        assert_eq!(got.provisioned_at_ms, want["provisioned_at_ms"].as_u64().ok_or("provisioned_at_ms")?);
        assert_eq!(got.from_rotation, want["from_rotation"].as_bool().ok_or("from_rotation")?);
    }
    assert_eq!(opened.manifest.bundle_id_hex(), inputs["bundle_id"].as_str().ok_or("bundle_id")?);
    assert_eq!(opened.manifest.created_at_ms, inputs["created_at_ms"].as_u64().ok_or("created_at_ms")?);
    Ok(())
}

/// Every textual form a 32-byte secret could take in a file or a log line.
fn renderings(secret: &[u8]) -> Vec<String> {
    vec![
        hex::encode(secret),
        hex::encode_upper(secret),
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        format!("{secret:?}"),
        // A prefix is enough to leak: any run of 8 bytes in hex.
        hex::encode(&secret[..8]),
    ]
}

fn assert_hidden(text: &[u8], secret: &[u8], what: &str) {
    let lossy = String::from_utf8_lossy(text);
    for rendering in renderings(secret) {
        assert!(!lossy.contains(&rendering), "{what} shows the secret as {rendering}");
    }
    assert!(!text.windows(secret.len()).any(|w| w == secret), "{what} holds the raw secret");
}

#[test]
fn c2_export_debug_of_secret_holding_types_is_redacted() -> TestResult {
    let s = station()?;
    let recipient_secret = [0x6B; 32];
    let recipient = RecipientPrivateKey::from_secret(SecretKey::from_bytes(recipient_secret));
    let entries = sample_entries();
    let file = seal_bundle(&s.signer, &recipient.public_key(), &entries, now_ms())?;
    let opened = open_bundle(&file, &recipient, &s.factory_root, now_ms())?;

    assert_hidden(format!("{recipient:?}").as_bytes(), &recipient_secret, "RecipientPrivateKey Debug");
    for e in &entries {
        assert_hidden(format!("{e:?}").as_bytes(), e.key.expose(), "BundleEntry Debug");
        assert_hidden(format!("{opened:?}").as_bytes(), e.key.expose(), "OpenedBundle Debug");
        assert_hidden(format!("{opened:#?}").as_bytes(), e.key.expose(), "OpenedBundle pretty Debug");
    }
    // ring's PKCS#8 v2 document holds the 32-byte seed at offset 16.
    let pkcs8 = BundleSigner::generate_pkcs8()?;
    let signer = BundleSigner::new(&pkcs8, s.signer.certificate().clone());
    assert!(signer.is_err(), "a certificate for another key is refused");
    let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
    let now = now_ms() / 1000;
    let signer = BundleSigner::new(&pkcs8, certify_bundle_signer(&s.root, [1; 16], "n", public, now, now)?)?;
    let signer_debug = format!("{signer:?}");
    assert!(signer_debug.contains("<redacted>"), "{signer_debug}");
    assert_hidden(signer_debug.as_bytes(), &pkcs8[16..48], "BundleSigner Debug");
    assert_hidden(signer_debug.as_bytes(), &pkcs8, "BundleSigner Debug");

    // Errors name keys by their public halves only.
    let other = RecipientPrivateKey::from_secret(SecretKey::from_bytes([0x7C; 32]));
    let error = open_bundle(&file, &other, &s.factory_root, now_ms()).err().ok_or("opened")?;
    assert_hidden(error.to_string().as_bytes(), &[0x7C; 32], "WrongRecipient message");
    assert_hidden(format!("{error:?}").as_bytes(), &[0x7C; 32], "WrongRecipient Debug");
    Ok(())
}

#[test]
fn c2_export_sealed_recipient_key_file_hides_the_private_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let private_path = dir.path().join("c2-recipient.key");
    let public_path = public_key_path(&private_path);
    assert_eq!(public_path, dir.path().join("c2-recipient.key.pub"));
    let secret = [0x3D; 32];
    let key = RecipientPrivateKey::from_secret(SecretKey::from_bytes(secret));
    write_recipient_key_files(&key, &private_path, &public_path, "operator passphrase")?;

    let written = std::fs::read(&private_path)?;
    assert_hidden(&written, &secret, "the private key file");
    assert_eq!(std::fs::metadata(&private_path)?.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&public_path)?, format!("{}\n", key.public_key().to_hex()));
    assert_eq!(read_recipient_public_key(&public_path)?, key.public_key());

    let loaded = load_recipient_private_key(&private_path, "operator passphrase")?;
    assert_eq!(loaded.public_key(), key.public_key());
    assert!(matches!(
        load_recipient_private_key(&private_path, "wrong passphrase"),
        Err(KeyFileError::WrongPassphrase { .. })
    ));
    // An existing key is never replaced: bundles encrypted to it would become unreadable.
    assert!(matches!(
        write_recipient_key_files(&key, &private_path, &public_path, "other"),
        Err(KeyFileError::AlreadyExists { .. })
    ));

    // A public key swapped into the file is detected (it is the sealed key's associated data).
    let mut file: serde_json::Value = serde_json::from_slice(&written)?;
    file["public_key"] = serde_json::Value::String(RecipientPrivateKey::generate()?.public_key().to_hex());
    let swapped = dir.path().join("swapped.key");
    std::fs::write(&swapped, serde_json::to_vec(&file)?)?;
    assert!(matches!(load_recipient_private_key(&swapped, "operator passphrase"), Err(KeyFileError::Malformed { .. })));

    // The generating entry point writes both files and returns the public key.
    let generated = dir.path().join("generated.key");
    let public = generate_recipient_key_files(&generated, &public_key_path(&generated), "pass")?;
    assert_eq!(load_recipient_private_key(&generated, "pass")?.public_key(), public);
    Ok(())
}

fn strip_bundle_signer(home: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = home.join("station.json");
    let mut station: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    station.as_object_mut().ok_or("station.json")?.remove("bundle_signer").ok_or("no bundle_signer")?;
    std::fs::write(&path, serde_json::to_string_pretty(&station)?)?;
    Ok(path)
}

#[test]
fn c2_export_bundle_signer_on_an_old_style_home_is_created_and_persisted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let home = StationHome::new(dir.path().join("home"));
    let info = home.initialise("pass phrase", "old-station", None)?;
    assert!(home.bundle_signer_certificate()?.is_some(), "keyfill init certifies a bundle signer");
    let station_json = strip_bundle_signer(home.path())?;
    assert!(home.bundle_signer_certificate()?.is_none());

    // The old-style home still loads and unlocks.
    let unlocked = home.unlock("pass phrase")?;
    let signer = home.bundle_signer(&unlocked, None)?;
    assert!(std::fs::read_to_string(&station_json)?.contains("bundle_signer"));
    let certificate = home.bundle_signer_certificate()?.ok_or("not persisted")?;
    assert_eq!(&certificate, signer.certificate());
    assert!(signer_certificate_trusted(&certificate, &info.factory_root));
    assert_eq!(certificate.body.station_id, info.station_id);
    assert_eq!(certificate.body.station_name, "old-station");

    // The next call loads the same key rather than making another one.
    let again = home.bundle_signer(&home.unlock("pass phrase")?, None)?;
    assert_eq!(again.certificate(), signer.certificate());
    assert_eq!(home.info()?.certificate, info.certificate);

    // And it signs bundles an importer pinning factory-root.pub accepts.
    let factory_root = read_factory_root_public(&home.factory_root_public_path())?;
    let recipient = RecipientPrivateKey::generate()?;
    let file = seal_bundle(&again, &recipient.public_key(), &sample_entries(), now_ms())?;
    assert_eq!(open_bundle(&file, &recipient, &factory_root, now_ms())?.entries, sample_entries());
    Ok(())
}

#[test]
fn c2_export_bundle_signer_with_an_imported_root_needs_the_offline_root() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root_pkcs8 = BundleSigner::generate_pkcs8()?;
    let home = StationHome::new(dir.path().join("home"));
    home.initialise("pass phrase", "imported-root", Some(&root_pkcs8))?;
    strip_bundle_signer(home.path())?;
    let unlocked = home.unlock("pass phrase")?;

    assert!(matches!(home.bundle_signer(&unlocked, None), Err(HomeError::FactoryRootRequired)));
    let stranger = BundleSigner::generate_pkcs8()?;
    assert!(matches!(home.bundle_signer(&unlocked, Some(&stranger)), Err(HomeError::FactoryRootMismatch)));
    let signer = home.bundle_signer(&unlocked, Some(&root_pkcs8))?;
    // Persisted: no root needed any more.
    assert_eq!(home.bundle_signer(&unlocked, None)?.certificate(), signer.certificate());
    Ok(())
}
