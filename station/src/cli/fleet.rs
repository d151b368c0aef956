//! Commands for stations that share a database: the master-key share, the fleet-wide key check,
//! the station registry.

use super::output::rfc3339;
use super::{print_json, read_bounded};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use keyfill_formats::printable;
use keyfill_station::check_values::{self, DuplicateScan, KeyRef};
use keyfill_station::db::{Inventory, meta};
use keyfill_station::fleet::{MAX_SHARE_BYTES, MasterKeyShare};
use keyfill_station::provision::Station;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum MasterCommand {
    /// Write this station's master key, sealed under a one-time transfer passphrase, for a new
    /// station of the same factory to join this database (`keyfill init --join-master FILE`).
    /// Carry the file and tell the passphrase separately; delete the file once the station
    /// joined.
    Share {
        /// Where to write the share (created, never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Read the transfer passphrase from this file (else KEYFILL_SHARE_PASSPHRASE, else a
        /// prompt).
        #[arg(long, value_name = "FILE")]
        share_passphrase_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Open every key of the inventory, recompute its check value, and report keys that are the
    /// same key (on any devices, from any station), stored check values that are not their
    /// key's, and keys that do not open. Exit status 1 when anything is found.
    CheckDuplicates {
        #[arg(long)]
        json: bool,
    },
}

/// The transfer passphrase of a master-key share.
pub fn transfer_passphrase(file: Option<&Path>, confirm: bool) -> Result<zeroize::Zeroizing<String>> {
    if let Some(path) = file {
        let text = read_text(path, 4096).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(zeroize::Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned()));
    }
    if let Ok(passphrase) = std::env::var("KEYFILL_SHARE_PASSPHRASE") {
        return Ok(zeroize::Zeroizing::new(passphrase));
    }
    let passphrase =
        zeroize::Zeroizing::new(rpassword::prompt_password("Transfer passphrase of the master-key share: ").context(
            "no transfer passphrase: set KEYFILL_SHARE_PASSPHRASE, pass --share-passphrase-file, or run in a terminal",
        )?);
    if confirm && *rpassword::prompt_password("Repeat it: ")? != *passphrase {
        bail!("the passphrases differ");
    }
    Ok(passphrase)
}

/// At most `limit` bytes of UTF-8 text from `path`.
fn read_text(path: &Path, limit: u64) -> Result<String> {
    String::from_utf8(read_bounded(path, limit)?).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Reads a master-key share file.
pub fn read_share(path: &Path) -> Result<MasterKeyShare> {
    let text = read_text(path, MAX_SHARE_BYTES)
        .with_context(|| format!("cannot read the master-key share {}", path.display()))?;
    MasterKeyShare::parse(&text).with_context(|| format!("{} is not a master-key share", path.display()))
}

pub fn master_command(station: &Station, command: MasterCommand) -> Result<()> {
    match command {
        MasterCommand::Share { out, share_passphrase_file } => {
            let passphrase = transfer_passphrase(share_passphrase_file.as_deref(), true)?;
            if passphrase.chars().count() < 12 {
                bail!(
                    "the transfer passphrase is shorter than 12 characters: it alone guards the master key in the file"
                );
            }
            let share = MasterKeyShare::new(&station.unlocked, &passphrase)?;
            let text = serde_json::to_string_pretty(&share)?;
            write_new_private(&out, text.as_bytes())?;
            println!(
                "master key {} shared in {}: on the joining station run `keyfill init --db URL --factory-root-key ROOT \
                 --join-master {}`, then delete the file",
                share.master_key_check,
                out.display(),
                out.display()
            );
            Ok(())
        }
    }
}

/// Creates `path` with mode 0600; refuses to replace an existing file.
fn write_new_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

pub async fn keys_command(station: &Station, command: KeysCommand, interactive: bool) -> Result<()> {
    match command {
        KeysCommand::CheckDuplicates { json } => {
            let bar = if interactive && !json {
                indicatif::ProgressBar::new_spinner()
            } else {
                indicatif::ProgressBar::hidden()
            };
            let scan = check_values::scan(&station.inventory, &station.unlocked.master_key, |keys| {
                bar.set_message(format!("{keys} keys checked"));
                bar.tick();
            })
            .await?;
            bar.finish_and_clear();
            station.inventory.close().await;
            if json {
                print_json(&scan)?;
            } else {
                print_scan(&scan);
            }
            if !scan.clean() {
                bail!("the inventory's keys are not all distinct and sound; see the report above");
            }
            Ok(())
        }
    }
}

fn describe(key: &KeyRef) -> String {
    format!(
        "key {} ({}) of device {} ({}), recorded by station {}",
        key.key_id,
        key.state,
        printable(key.device_name.as_deref().unwrap_or("?")),
        key.device_id,
        key.station_id
    )
}

fn print_scan(scan: &DuplicateScan) {
    println!("{} keys checked", scan.keys);
    for group in &scan.duplicates {
        println!("DUPLICATE: {} keys are one key (check value {}):", group.keys.len(), group.check_value);
        for key in &group.keys {
            println!("  {}", describe(key));
        }
    }
    for mismatch in &scan.mismatched {
        println!(
            "MISMATCH: {}: stored check value {}, its key's is {}",
            describe(&mismatch.key),
            printable(mismatch.stored.as_deref().unwrap_or("none")),
            mismatch.computed
        );
    }
    for unreadable in &scan.unreadable {
        println!("UNREADABLE: {}: {}", describe(&unreadable.key), unreadable.reason);
    }
    if scan.clean() {
        println!("no duplicate keys; every stored check value is its key's");
    } else {
        println!(
            "what to do: stop keying on the stations that recorded these keys; a duplicate means a failing random \
             source, a cloned station or a replayed bundle. Every device of a duplicate group needs a new key \
             (`keyfill rotate`) once the cause is found."
        );
    }
}

pub async fn print_stations(inventory: &Inventory, json: bool) -> Result<()> {
    let stations = meta::stations(inventory.pool()).await?;
    if json {
        let rows: Vec<_> = stations
            .iter()
            .map(|s| {
                serde_json::json!({
                    "station_id": s.station_id,
                    "name": s.name,
                    "first_seen": rfc3339(s.first_seen),
                    "last_seen": rfc3339(s.last_seen),
                })
            })
            .collect();
        return print_json(&rows);
    }
    for station in &stations {
        println!(
            "{}  {}  first seen {}  last seen {}",
            station.station_id,
            printable(&station.name),
            rfc3339(station.first_seen),
            rfc3339(station.last_seen)
        );
    }
    if stations.is_empty() {
        println!("no station has used this database yet");
    }
    Ok(())
}
