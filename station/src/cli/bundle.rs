//! Offline export to C2: `keyfill export bundle` on the station, `keyfill import bundle` on the
//! C2 side, `keyfill bundle new-key` and `keyfill bundle inspect` for the C2 operator.

use super::export::{C2Options, DeviceSelection, print_report, run};
use super::output::rfc3339;
use super::print_json;
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use keyfill_formats::printable;
use keyfill_station::bundle::{
    self, OpenBundleError, RecipientPrivateKey, RecipientPublicKey, SeriesManifest, SeriesReader,
    load_recipient_private_key, public_key_path, read_factory_root_public,
};
use keyfill_station::db::now_millis;
use keyfill_station::export::offline::{
    BundleRequest, IncludedKey, PART_ENTRIES, describe_manifest, recipient_from_text, write_bundle,
};
use keyfill_station::export::{ExportItem, JournalLedger, Ledger, Outcome};
use keyfill_station::home::StationHome;
use keyfill_station::provision::Station;
use serde::ser::{Serialize, SerializeSeq, Serializer};
use std::fs::File;
use std::io::{BufReader, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable holding the C2 operator's bundle-key passphrase.
const KEY_PASSPHRASE_ENV: &str = "KEYFILL_BUNDLE_KEY_PASSPHRASE";

#[derive(Args)]
pub struct ExportBundleArgs {
    /// The C2 operator's public key: a file written by `keyfill bundle new-key`, or 64 hex digits.
    #[arg(long)]
    recipient: String,
    /// The bundle file to write (refused if it exists).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    selection: DeviceSelection,
    /// The factory root's PKCS#8 file, needed once if this home has no bundle-signing key and
    /// keeps its factory root offline.
    #[arg(long)]
    factory_root_key: Option<PathBuf>,
    /// Keys per part of the file (tests use small parts to make files of many).
    #[arg(long, hide = true, default_value_t = PART_ENTRIES)]
    keys_per_part: usize,
    #[arg(long)]
    json: bool,
}

impl ExportBundleArgs {
    /// Where the bundle goes, for the approval of its export.
    pub fn out_display(&self) -> String {
        self.out.display().to_string()
    }
}

#[derive(Args)]
pub struct ImportBundleArgs {
    /// The bundle file.
    file: PathBuf,
    /// C2's HTTPS gateway, e.g. https://c2.example:8888
    #[arg(long)]
    c2: String,
    /// The C2 operator's private key file (`keyfill bundle new-key`).
    #[arg(long)]
    key: PathBuf,
    /// The factory root public key the bundle's signer must be certified by (factory-root.pub).
    #[arg(long)]
    factory_root: PathBuf,
    /// Where the import remembers what C2 received (default: FILE.import.jsonl); rerun with the
    /// same journal to resume.
    #[arg(long)]
    journal: Option<PathBuf>,
    /// Read the private key's passphrase from this file (else KEYFILL_BUNDLE_KEY_PASSPHRASE, else a prompt).
    #[arg(long)]
    key_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    options: C2Options,
}

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Create the C2 operator's key pair: PATH (private, sealed under a passphrase) and PATH.pub.
    NewKey {
        #[arg(long)]
        out: PathBuf,
        /// Read the passphrase from this file (else KEYFILL_BUNDLE_KEY_PASSPHRASE, else a prompt).
        #[arg(long)]
        key_passphrase_file: Option<PathBuf>,
    },
    /// Verify a bundle's signatures and show its manifest (needs no private key); with --key,
    /// also decrypt and check every key, sending nothing anywhere.
    Inspect {
        file: PathBuf,
        /// The factory root public key (factory-root.pub).
        #[arg(long)]
        factory_root: PathBuf,
        /// The C2 operator's private key file: check that every part opens with it.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Read the private key's passphrase from this file (else KEYFILL_BUNDLE_KEY_PASSPHRASE, else a prompt).
        #[arg(long)]
        key_passphrase_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

fn key_passphrase(file: Option<&Path>, confirm: bool) -> Result<String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(passphrase) = std::env::var(KEY_PASSPHRASE_ENV) {
        return Ok(passphrase);
    }
    let passphrase = rpassword::prompt_password("Bundle-key passphrase: ").with_context(|| {
        format!("no passphrase: set {KEY_PASSPHRASE_ENV}, pass --key-passphrase-file, or run in a terminal")
    })?;
    if confirm && rpassword::prompt_password("Repeat passphrase: ")? != passphrase {
        bail!("the passphrases differ");
    }
    Ok(passphrase)
}

fn recipient(text: &str) -> Result<RecipientPublicKey> {
    recipient_from_text(text).with_context(|| format!("--recipient {text}: not a key file nor 64 hex digits"))
}

fn manifest_json(manifest: &SeriesManifest) -> serde_json::Value {
    serde_json::json!({
        "bundle_id": hex::encode(manifest.bundle_id),
        "parts": manifest.parts,
        "station_id": hex::encode(manifest.station_id),
        "station_name": manifest.station_name,
        "created_at": rfc3339(manifest.created_at_ms as i64),
        "count": manifest.count,
        "earliest_provisioned_at": rfc3339(manifest.earliest_provisioned_at_ms as i64),
        "latest_provisioned_at": rfc3339(manifest.latest_provisioned_at_ms as i64),
        "recipient": hex::encode(manifest.recipient_public),
    })
}

/// `keyfill export bundle`. Returns whether every selected device is in the bundle.
pub async fn export_bundle(station: Station, home: &StationHome, args: ExportBundleArgs) -> Result<bool> {
    let offline_root_pkcs8 = match &args.factory_root_key {
        Some(path) => Some(zeroize::Zeroizing::new(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )),
        None => None,
    };
    let request = BundleRequest {
        recipient: recipient(&args.recipient)?,
        out: args.out.clone(),
        filter: args.selection.filter()?,
        offline_root_pkcs8,
        keys_per_part: args.keys_per_part,
    };
    // Stopped by Ctrl-C or SIGTERM, the export is dropped where it stands: its temporary file is
    // removed and its events rolled back, as after any failure.
    let written = tokio::select! {
        written = write_bundle(&station, home, request) => written,
        signal = super::interrupted() => {
            station.inventory.close().await;
            anyhow::bail!("{signal}: the export stopped; no bundle was written to {} and nothing was recorded", args.out.display());
        }
    };
    let written = match written {
        Ok(written) => written,
        Err(error) => {
            for left in error.excluded() {
                eprintln!(
                    "{} ({}) NOT in the bundle: {}",
                    printable(&left.name),
                    left.device_id,
                    printable(&left.reason)
                );
            }
            return Err(error.into());
        }
    };
    if args.json {
        let excluded: Vec<_> = written
            .excluded
            .iter()
            .map(|l| serde_json::json!({"device_id": l.device_id, "name": l.name, "reason": l.reason}))
            .collect();
        print_json(&WrittenReport {
            file: args.out.display().to_string(),
            manifest: manifest_json(&written.manifest),
            included: IncludedList(&written.included),
            excluded,
        })?;
    } else {
        for left in &written.excluded {
            eprintln!("{} ({}) NOT in the bundle: {}", printable(&left.name), left.device_id, printable(&left.reason));
        }
        println!("{}", describe_manifest(&written.manifest));
        println!("written to {}", args.out.display());
    }
    station.inventory.close().await;
    Ok(written.excluded.is_empty())
}

/// `keyfill export bundle --json`, the included devices serialised one by one.
#[derive(serde::Serialize)]
struct WrittenReport<'a> {
    file: String,
    manifest: serde_json::Value,
    included: IncludedList<'a>,
    excluded: Vec<serde_json::Value>,
}

struct IncludedList<'a>(&'a [IncludedKey]);

impl Serialize for IncludedList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(self.0.len()))?;
        for key in self.0 {
            list.serialize_element(&serde_json::json!({
                "device_id": key.device_id.to_hex(),
                "name": key.name.as_str(),
                "key_id": hex::encode(key.key_id),
            }))?;
        }
        list.end()
    }
}

/// Opens the bundle file for reading part by part.
fn open_file(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads the whole file, verifying every part and, with `recipient`, decrypting and checking it;
/// keeps nothing but each part's digest. Nothing is sent anywhere.
fn check_file(
    file: &mut File,
    factory_root: &[u8; 32],
    recipient: Option<&RecipientPrivateKey>,
    now_ms: u64,
) -> Result<(SeriesManifest, Vec<[u8; 32]>), OpenBundleError> {
    file.rewind().map_err(OpenBundleError::Read)?;
    let mut reader = SeriesReader::new(BufReader::new(&mut *file), factory_root, now_ms);
    let mut digests = Vec::new();
    let mut distinct = keyfill_station::check_values::DistinctKeys::default();
    loop {
        let digest = match recipient {
            Some(key) => match reader.next_opened(key)? {
                Some(part) => {
                    for entry in &part.entries {
                        if let Err((first, check_value)) = distinct.insert(&entry.key, entry.device_id) {
                            return Err(OpenBundleError::DuplicateKey {
                                check_value: check_value.to_hex(),
                                first: format!("device {}", first.to_hex()),
                                second: format!(
                                    "device {} \"{}\"",
                                    entry.device_id.to_hex(),
                                    printable(entry.name.as_str())
                                ),
                            });
                        }
                    }
                    part.digest
                }
                None => break,
            },
            None => match reader.next_verified()? {
                Some(_) => reader.last_digest(),
                None => break,
            },
        };
        digests.push(digest);
    }
    Ok((reader.finish()?.manifest, digests))
}

/// `keyfill import bundle`. Returns whether every key reached C2.
///
/// Two passes over the file, one part in memory at a time: the first verifies, decrypts and
/// checks every part and keeps only its digest, so that a bad part anywhere sends nothing; the
/// second reads the same parts again (their digests must match) and sends each part's keys.
pub async fn import_bundle(args: ImportBundleArgs, interactive: bool) -> Result<bool> {
    let mut file = open_file(&args.file)?;
    let factory_root = read_factory_root_public(&args.factory_root)?;
    let passphrase = key_passphrase(args.key_passphrase_file.as_deref(), false)?;
    let key = load_recipient_private_key(&args.key, &passphrase)?;
    let now = now_millis() as u64;
    let refused = || format!("{} was refused; nothing was sent to C2", args.file.display());
    let (manifest, digests) = check_file(&mut file, &factory_root, Some(&key), now).with_context(refused)?;
    if !args.options.json {
        eprintln!("{}", describe_manifest(&manifest));
    }
    let api = args.options.api(&args.c2)?;
    let journal_path =
        args.journal.clone().unwrap_or_else(|| PathBuf::from(format!("{}.import.jsonl", args.file.display())));
    let ledger = Arc::new(Ledger::Journal(JournalLedger::open(&journal_path)?));
    let target = api.target();
    let run_id = hex::encode(manifest.bundle_id);
    file.rewind().with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut reader = SeriesReader::new(BufReader::new(&mut file), &factory_root, now);
    let mut reports = Vec::new();
    for (index, expected) in digests.iter().enumerate() {
        let changed = || OpenBundleError::Changed { index: index as u64 };
        let part = reader.next_opened(&key).and_then(|part| part.ok_or_else(changed));
        let part = part.with_context(|| format!("{} changed while it was imported", args.file.display()))?;
        if &part.digest != expected {
            return Err(changed()).with_context(|| format!("{}: import stopped", args.file.display()));
        }
        let items: Vec<ExportItem> = part
            .entries
            .into_iter()
            .map(|entry| ExportItem {
                device_id: entry.device_id.to_hex(),
                name: entry.name.as_str().to_owned(),
                key_id: Some(hex::encode(entry.key_id)),
                // Moved, not copied: one copy of each key, wiped when the export drops it.
                key: Ok(entry.key),
            })
            .collect();
        reports.extend(run(&api, ledger.clone(), items, &args.options, interactive).await?);
    }
    print_report(&target, &run_id, &reports, args.options.json, Some(manifest_json(&manifest)))?;
    Ok(reports.iter().all(|r| r.outcome != Outcome::Failed))
}

pub fn bundle_command(command: BundleCommand) -> Result<()> {
    match command {
        BundleCommand::NewKey { out, key_passphrase_file } => {
            let passphrase = key_passphrase(key_passphrase_file.as_deref(), true)?;
            if passphrase.is_empty() {
                bail!("the passphrase is empty");
            }
            let public_path = public_key_path(&out);
            let public = bundle::generate_recipient_key_files(&out, &public_path, &passphrase)?;
            println!("private key (sealed): {}", out.display());
            println!("public key: {} ({public})", public_path.display());
        }
        BundleCommand::Inspect { file: path, factory_root, key, key_passphrase_file, json } => {
            let mut file = open_file(&path)?;
            let root = read_factory_root_public(&factory_root)?;
            let key = match key {
                Some(key) => {
                    let passphrase = key_passphrase(key_passphrase_file.as_deref(), false)?;
                    Some(load_recipient_private_key(&key, &passphrase)?)
                }
                None => None,
            };
            let (manifest, _) = check_file(&mut file, &root, key.as_ref(), now_millis() as u64)
                .with_context(|| format!("{} does not verify", path.display()))?;
            let keys = if key.is_some() { "opened and checked" } else { "not decrypted (no --key)" };
            if json {
                print_json(&serde_json::json!({
                    "manifest": manifest_json(&manifest),
                    "signature": "valid",
                    "keys": if key.is_some() { "valid" } else { "unchecked" },
                }))?;
            } else {
                println!("{}", describe_manifest(&manifest));
                println!("signature valid: signer certified by factory root {}", hex::encode(root));
                println!("encrypted to {}; keys {keys}", hex::encode(manifest.recipient_public));
            }
        }
    }
    Ok(())
}
