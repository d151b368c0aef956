//! `keyfill audit`: verify the audit log, export it for a SIEM, keep checkpoints, and give a
//! station whose factory root is offline its audit key.

use super::{GlobalArgs, read_bounded};
use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use keyfill_formats::printable;
use keyfill_station::audit::checkpoint::CheckpointFile;
use keyfill_station::audit::export::{ExportFormat, export};
use keyfill_station::audit::verify::{ChainReport, verify_database};
use keyfill_station::custody::Operation;
use keyfill_station::db::audit as rows;
use keyfill_station::home::StationHome;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check every station's chain in the database: each entry's hash, signature (by a key the
    /// factory root certified for that station) and link, the numbering, and the checkpoints.
    /// Names the first broken entry of each chain and how it was broken (edited, deleted,
    /// reordered, inserted, truncated). Exit status 0 only when every chain is intact. Needs no
    /// passphrase.
    Verify(VerifyArgs),
    /// Write every entry, with its hashes and signature, as JSON Lines or one JSON array.
    Export(ExportArgs),
    /// Sign a checkpoint at the end of this station's chain now, and write the latest checkpoint
    /// of every chain to FILE, to be kept away from the database (`verify --from-checkpoint`).
    Checkpoint {
        /// The file to write (replaced if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Give this station a signing key for its audit log, certified by the factory root, when
    /// its home predates the audit log and its factory root is kept offline.
    Enrol {
        /// The factory root key (Ed25519 PKCS#8 DER file).
        #[arg(long, value_name = "FILE")]
        factory_root_key: PathBuf,
    },
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A checkpoint file kept from `keyfill audit checkpoint`: a chain shorter than it was cut.
    #[arg(long, value_name = "FILE")]
    from_checkpoint: Option<PathBuf>,
    /// The factory root's public key (the station home's factory-root.pub: 64 hex digits), for
    /// an auditor without a station home (default: the home's).
    #[arg(long, value_name = "FILE")]
    factory_root: Option<PathBuf>,
    /// The report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[group(id = "shape", required = true, multiple = false)]
pub struct ExportArgs {
    /// One JSON object per line.
    #[arg(long, group = "shape")]
    jsonl: bool,
    /// One JSON array.
    #[arg(long, group = "shape")]
    json: bool,
    /// Only this station's chain (its id, 32 hex digits).
    #[arg(long, value_name = "ID")]
    station: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// A factory-root.pub file holds 64 hex digits and a newline.
const MAX_ROOT_FILE_BYTES: u64 = 1024;

fn read_factory_root(path: &Path) -> Result<[u8; 32]> {
    let text = String::from_utf8(read_bounded(path, MAX_ROOT_FILE_BYTES)?)
        .with_context(|| format!("{} is not text", path.display()))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| anyhow!("{} does not hold a factory root public key (64 hex digits)", path.display()))
}

pub async fn run(global: &GlobalArgs, home: &StationHome, command: AuditCommand, interactive: bool) -> Result<()> {
    match command {
        AuditCommand::Verify(args) => {
            global.authorise_read(home, Operation::VerifyAudit).await?;
            verify(global, home, args, interactive).await
        }
        AuditCommand::Export(args) => {
            global.authorise_read(home, Operation::ExportAudit).await?;
            let inventory = global.inventory(home).await?;
            let format = if args.jsonl { ExportFormat::JsonLines } else { ExportFormat::Json };
            let station = args.station.as_deref().map(station_id).transpose()?;
            let written = match &args.out {
                Some(path) => {
                    let file =
                        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
                    let mut out = std::io::BufWriter::new(file);
                    export(inventory.pool(), station.as_deref(), format, &mut out).await?
                }
                None => {
                    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                    export(inventory.pool(), station.as_deref(), format, &mut out).await?
                }
            };
            if let Some(path) = &args.out {
                eprintln!("{written} audit entries written to {}", path.display());
            }
            Ok(())
        }
        AuditCommand::Checkpoint { out } => {
            let station = global.station_for(home, Operation::CheckpointAudit, "").await?;
            let pool = station.inventory.pool();
            let checkpoint = rows::checkpoint_now(pool, &station.actor.recorder()).await?;
            let file = CheckpointFile::new(rows::latest_checkpoints(pool).await?, &rows::signers(pool).await?);
            file.write(&out)?;
            match checkpoint {
                Some(checkpoint) => println!(
                    "checkpoint of station {} at entry {} written to {} with {} chain(s): keep it away from the database",
                    checkpoint.station_id,
                    checkpoint.seq,
                    out.display(),
                    file.checkpoints.len()
                ),
                None => {
                    println!("this station's chain is empty; {} holds the other chains' checkpoints", out.display())
                }
            }
            Ok(())
        }
        AuditCommand::Enrol { factory_root_key } => {
            let root = zeroize::Zeroizing::new(
                read_bounded(&factory_root_key, 64 << 10)
                    .with_context(|| format!("cannot read the factory root key {}", factory_root_key.display()))?,
            );
            let signer = if home.has_named_operators() {
                let station = global.station_for(home, Operation::FactoryRootOrToken, "enrol a signing key").await?;
                let signer = home.bundle_signer(&station.unlocked, Some(&root))?;
                station.inventory.close().await;
                signer
            } else {
                let unlocked = home.unlock(&global.unlock_secret(home)?).context("cannot unlock the station")?;
                home.bundle_signer(&unlocked, Some(&root))?
            };
            println!(
                "this station's signing key {} is certified until {}; its audit log can be signed",
                hex::encode(signer.certificate().body.signing_public),
                super::output::rfc3339(signer.certificate().body.not_after as i64 * 1000)
            );
            Ok(())
        }
    }
}

/// A station id as given on the command line: 32 hex digits, lowercased.
fn station_id(text: &str) -> Result<String> {
    let id = text.trim().to_ascii_lowercase();
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("--station takes a station id, 32 hex digits (`keyfill stations` lists them), not {:?}", printable(text));
    }
    Ok(id)
}

async fn verify(global: &GlobalArgs, home: &StationHome, args: VerifyArgs, interactive: bool) -> Result<()> {
    let factory_root = match &args.factory_root {
        Some(path) => read_factory_root(path)?,
        None => {
            home.info()
                .context("no factory root to verify against: pass --factory-root FILE (a factory-root.pub)")?
                .factory_root
        }
    };
    let kept = args.from_checkpoint.as_deref().map(CheckpointFile::read).transpose()?;
    let inventory = global.inventory(home).await?;
    let bar = if interactive && !args.json {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let reports = verify_database(inventory.pool(), &factory_root, kept.as_ref(), |station, checked| {
        bar.set_message(format!("station {station}: {checked} entries checked"));
        bar.tick();
    })
    .await?;
    bar.finish_and_clear();
    let broken = reports.iter().filter(|report| !report.intact()).count();
    if args.json {
        super::print_json(&reports)?;
    } else {
        print_reports(&reports);
    }
    if broken > 0 {
        bail!(
            "the audit log is not intact: {broken} of {} chain(s) broken; keep the database as it is for the \
             investigation, and compare it with its backups",
            reports.len()
        );
    }
    Ok(())
}

fn print_reports(reports: &[ChainReport]) {
    if reports.is_empty() {
        println!("the audit log is empty");
    }
    for report in reports {
        let name = report.station_name.as_deref().map(|name| format!(" ({})", printable(name))).unwrap_or_default();
        match report.first_break() {
            None => println!(
                "station {}{name}: intact, {} entries, {} checkpoint(s) checked",
                report.station_id, report.entries, report.checkpoints_checked
            ),
            Some(first) => {
                println!(
                    "station {}{name}: BROKEN at entry {}: {}: {}",
                    report.station_id,
                    first.seq,
                    first.kind,
                    printable(&first.detail)
                );
                let more = report.breaks.len() as u64 - 1 + report.more_breaks;
                if more > 0 {
                    println!("  and {more} more problem(s) after it (--json lists them)");
                }
            }
        }
    }
}
