//! Offline export to C2: `keyfill export bundle` on the station, `keyfill import bundle` on the
//! C2 side, `keyfill bundle new-key` and `keyfill bundle inspect` for the C2 operator.

use super::export::{C2Options, DeviceSelection, print_report, run};
use super::output::rfc3339;
use super::print_json;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use keyfill_formats::DeviceId;
use keyfill_formats::bundle::MAX_ENTRIES;
use keyfill_station::bundle::{
    self, BundleEntry, Manifest, RecipientPublicKey, load_recipient_private_key, open_bundle, public_key_path,
    read_factory_root_public, read_recipient_public_key, seal_bundle, verify_bundle,
};
use keyfill_station::db::events;
use keyfill_station::db::now_millis;
use keyfill_station::export::{ExportItem, JournalLedger, Ledger, Outcome};
use keyfill_station::home::StationHome;
use keyfill_station::provision::Station;
use std::path::{Path, PathBuf};

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
    #[arg(long)]
    json: bool,
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
    /// Verify a bundle's signature and show its manifest (needs no private key).
    Inspect {
        file: PathBuf,
        /// The factory root public key (factory-root.pub).
        #[arg(long)]
        factory_root: PathBuf,
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
    if let Ok(key) = text.parse::<RecipientPublicKey>() {
        return Ok(key);
    }
    read_recipient_public_key(Path::new(text))
        .with_context(|| format!("--recipient {text}: not a key file nor 64 hex digits"))
}

fn manifest_json(manifest: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "bundle_id": hex::encode(manifest.bundle_id),
        "station_id": hex::encode(manifest.station_id),
        "station_name": manifest.station_name,
        "created_at": rfc3339(manifest.created_at_ms as i64),
        "count": manifest.count,
        "earliest_provisioned_at": rfc3339(manifest.earliest_provisioned_at_ms as i64),
        "latest_provisioned_at": rfc3339(manifest.latest_provisioned_at_ms as i64),
        "recipient": hex::encode(manifest.recipient_public),
    })
}

fn describe_manifest(manifest: &Manifest) -> String {
    format!(
        "bundle {} from station {} ({}), created {}: {} key(s) confirmed {} .. {}",
        hex::encode(manifest.bundle_id),
        manifest.station_name,
        hex::encode(manifest.station_id),
        rfc3339(manifest.created_at_ms as i64),
        manifest.count,
        rfc3339(manifest.earliest_provisioned_at_ms as i64),
        rfc3339(manifest.latest_provisioned_at_ms as i64)
    )
}

/// `keyfill export bundle`. Returns whether every selected device is in the bundle.
pub async fn export_bundle(station: Station, home: &StationHome, args: ExportBundleArgs) -> Result<bool> {
    let recipient = recipient(&args.recipient)?;
    if args.out.exists() {
        bail!("{} exists; choose another --out", args.out.display());
    }
    let root_pkcs8 = match &args.factory_root_key {
        Some(path) => Some(zeroize::Zeroizing::new(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )),
        None => None,
    };
    let signer = home
        .bundle_signer(&station.unlocked, root_pkcs8.as_deref().map(Vec::as_slice))
        .context("no bundle-signing key")?;
    let selected = keyfill_station::export::exportable_items(&station, &args.selection.filter()?).await?;
    let mut entries = Vec::new();
    let mut excluded = Vec::new();
    for (item, facts) in selected {
        match (item.key, facts, item.key_id.as_deref().and_then(|k| hex::decode(k).ok()?.try_into().ok())) {
            (Ok(key), Some(facts), Some(key_id)) => entries.push(BundleEntry {
                device_id: DeviceId::from_hex(&item.device_id)
                    .ok_or_else(|| anyhow!("bad device id {}", item.device_id))?,
                name: item.name,
                key_id,
                key,
                provisioned_at_ms: u64::try_from(facts.confirmed_at).unwrap_or(0),
                from_rotation: facts.rotated,
            }),
            (Err(reason), _, _) => excluded.push((item.device_id, item.name, reason)),
            _ => excluded.push((item.device_id, item.name, "its key has no usable id".into())),
        }
    }
    if entries.is_empty() {
        bail!(
            "no key to put in a bundle{}",
            if excluded.is_empty() { ": nothing is provisioned" } else { " (see the reasons above)" }
        );
    }
    if entries.len() as u64 > MAX_ENTRIES {
        bail!(
            "{} keys are more than a bundle holds ({MAX_ENTRIES}); split the export with --since or --devices",
            entries.len()
        );
    }
    let bytes = seal_bundle(&signer, &recipient, &entries, now_millis() as u64).context("cannot build the bundle")?;
    keyfill_agent::keystore::write_atomically(&args.out, &bytes)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let summary = verify_bundle(&bytes, &station.unlocked.info.factory_root, now_millis() as u64)
        .context("the bundle just written does not verify")?;
    let manifest = summary.manifest;
    let bundle_id = hex::encode(manifest.bundle_id);
    let mut tx = station.inventory.pool().begin().await?;
    for entry in &entries {
        let detail =
            format!("key {} in bundle {bundle_id} for recipient {}", hex::encode(entry.key_id), recipient.to_hex());
        events::record(&mut tx, &station.actor, Some(&entry.device_id.to_hex()), "c2_bundled", &detail).await?;
    }
    let detail =
        format!("bundle {bundle_id}: {} key(s) to {} in {}", entries.len(), recipient.to_hex(), args.out.display());
    events::record(&mut tx, &station.actor, None, "c2_bundle_written", &detail).await?;
    tx.commit().await?;
    if args.json {
        let excluded: Vec<_> = excluded
            .iter()
            .map(|(id, name, reason)| serde_json::json!({"device_id": id, "name": name, "reason": reason}))
            .collect();
        let included: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({"device_id": e.device_id.to_hex(), "name": e.name, "key_id": hex::encode(e.key_id)}))
            .collect();
        print_json(&serde_json::json!({
            "file": args.out.display().to_string(),
            "manifest": manifest_json(&manifest),
            "included": included,
            "excluded": excluded,
        }))?;
    } else {
        for (id, name, reason) in &excluded {
            eprintln!("{name} ({id}) NOT in the bundle: {reason}");
        }
        println!("{}", describe_manifest(&manifest));
        println!("written to {}", args.out.display());
    }
    station.inventory.close().await;
    Ok(excluded.is_empty())
}

/// `keyfill import bundle`. Returns whether every key reached C2.
pub async fn import_bundle(args: ImportBundleArgs, interactive: bool) -> Result<bool> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let factory_root = read_factory_root_public(&args.factory_root)?;
    let passphrase = key_passphrase(args.key_passphrase_file.as_deref(), false)?;
    let key = load_recipient_private_key(&args.key, &passphrase)?;
    let opened = open_bundle(&bytes, &key, &factory_root, now_millis() as u64)
        .with_context(|| format!("{} was refused; nothing was sent to C2", args.file.display()))?;
    if !args.options.json {
        eprintln!("{}", describe_manifest(&opened.manifest));
    }
    let api = args.options.api(&args.c2)?;
    let journal_path =
        args.journal.clone().unwrap_or_else(|| PathBuf::from(format!("{}.import.jsonl", args.file.display())));
    let ledger = Ledger::Journal(JournalLedger::open(&journal_path)?);
    let items: Vec<ExportItem> = opened
        .entries
        .into_iter()
        .map(|entry| ExportItem {
            device_id: entry.device_id.to_hex(),
            name: entry.name.clone(),
            key_id: Some(hex::encode(entry.key_id)),
            key: Ok(entry.key.clone()),
        })
        .collect();
    let target = api.target();
    let run_id = hex::encode(opened.manifest.bundle_id);
    let reports = run(&api, ledger, items, &args.options, interactive).await?;
    print_report(&target, &run_id, &reports, args.options.json, Some(manifest_json(&opened.manifest)))?;
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
        BundleCommand::Inspect { file, factory_root, json } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let root = read_factory_root_public(&factory_root)?;
            let summary = verify_bundle(&bytes, &root, now_millis() as u64)
                .with_context(|| format!("{} does not verify", file.display()))?;
            if json {
                print_json(&serde_json::json!({ "manifest": manifest_json(&summary.manifest), "signature": "valid" }))?;
            } else {
                println!("{}", describe_manifest(&summary.manifest));
                println!("signature valid: signer certified by factory root {}", hex::encode(root));
                println!("encrypted to {}", hex::encode(summary.manifest.recipient_public));
            }
        }
    }
    Ok(())
}
