//! `keyfill export c2`: device keys to C2 over its HTTPS gateway, with a per-device report.

use super::output::{parse_utc, rfc3339};
use super::print_json;
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keyfill_formats::printable;
use keyfill_station::export::{
    ALREADY_EXPORTED_MEANS, C2Api, DeviceFilter, ExportItem, ExportProgress, ExportSettings, ItemReport, Ledger,
    Outcome, run_export, summary,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which devices, shared by `export c2` and `export bundle`.
#[derive(Args)]
pub struct DeviceSelection {
    /// Only these devices (ids or names, comma-separated or repeated).
    #[arg(long, value_delimiter = ',', conflicts_with = "since")]
    devices: Vec<String>,
    /// Only devices whose current key was confirmed at or after this UTC time
    /// (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ).
    #[arg(long)]
    since: Option<String>,
}

impl DeviceSelection {
    pub fn filter(&self) -> Result<DeviceFilter> {
        match (&self.since, self.devices.is_empty()) {
            (Some(since), _) => Ok(DeviceFilter::ConfirmedSince(
                parse_utc(since)
                    .ok_or_else(|| anyhow!("--since {since:?}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"))?,
            )),
            (None, false) => Ok(DeviceFilter::Named(self.devices.clone())),
            (None, true) => Ok(DeviceFilter::All),
        }
    }
}

/// How to reach C2 and how hard to try, shared by `export c2` and `import bundle`.
#[derive(Args)]
pub struct C2Options {
    /// PEM file of the CA that signed C2's certificate (replaces the system roots).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Overwrite clients that C2 holds but this station (or journal) never exported to it.
    #[arg(long)]
    replace: bool,
    /// Requests to C2 in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Attempts per request before a transient failure (unreachable, 5xx) counts as failed.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// Seconds before one request to C2 times out.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl C2Options {
    pub fn api(&self, url: &str) -> Result<C2Api> {
        C2Api::new(url, self.ca.as_deref(), Duration::from_secs(self.timeout.max(1))).context("cannot reach C2")
    }

    fn settings(&self) -> ExportSettings {
        ExportSettings {
            concurrency: self.concurrency.max(1),
            max_attempts: self.max_attempts.max(1),
            replace_foreign: self.replace,
            ..ExportSettings::default()
        }
    }
}

#[derive(Args)]
pub struct ExportC2Args {
    /// C2's HTTPS gateway, e.g. https://c2.factory.example:8888
    #[arg(long)]
    url: String,
    #[command(flatten)]
    selection: DeviceSelection,
    #[command(flatten)]
    options: C2Options,
}

pub async fn export_c2(
    station: keyfill_station::provision::Station,
    args: ExportC2Args,
    interactive: bool,
) -> Result<bool> {
    let api = args.options.api(&args.url)?;
    let items: Vec<ExportItem> = keyfill_station::export::exportable_items(&station, &args.selection.filter()?)
        .await?
        .into_iter()
        .map(|(item, _)| item)
        .collect();
    if items.is_empty() {
        bail!(
            "no device to export: nothing is provisioned{}",
            if args.selection.since.is_some() { " in that period" } else { "" }
        );
    }
    let run_id = hex::encode(keyfill_station::seal::random_array::<8>()?);
    let ledger = Ledger::Inventory {
        inventory: station.inventory.clone(),
        actor: station.actor.clone(),
        run_id: run_id.clone(),
    };
    let target = api.target();
    let reports = run(&api, Arc::new(ledger), items, &args.options, interactive).await?;
    print_report(&target, &run_id, &reports, args.options.json, None)?;
    station.inventory.close().await;
    Ok(reports.iter().all(|r| r.outcome != Outcome::Failed))
}

/// Runs the export with a progress bar when a person is watching.
pub async fn run(
    api: &C2Api,
    ledger: Arc<Ledger>,
    items: Vec<ExportItem>,
    options: &C2Options,
    interactive: bool,
) -> Result<Vec<ItemReport>> {
    let bar = if interactive && !options.json { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} exported ({elapsed}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let progress_bar = bar.clone();
    let progress = move |event: ExportProgress| match event {
        ExportProgress::Started { total } => progress_bar.set_length(total as u64),
        ExportProgress::Finished(report) => {
            if report.outcome == Outcome::Failed {
                progress_bar.set_message("some failed");
            }
            progress_bar.inc(1);
        }
    };
    let started = Instant::now();
    let reports = run_export(api, ledger, items, options.settings(), progress).await;
    bar.finish_and_clear();
    let reports = reports.with_context(|| format!("export to {} stopped", api.target()))?;
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "export finished");
    Ok(reports)
}

/// The per-device report: a table for people, one JSON document for scripts (docs/cli.md).
pub fn print_report(
    target: &str,
    run_id: &str,
    reports: &[ItemReport],
    json: bool,
    bundle: Option<serde_json::Value>,
) -> Result<()> {
    if json {
        let count = |outcome| reports.iter().filter(|r| r.outcome == outcome).count();
        let mut value = serde_json::json!({
            "target": target,
            "run_id": run_id,
            "at": rfc3339(keyfill_station::db::now_millis()),
            "summary": {
                "created": count(Outcome::Created),
                "replaced": count(Outcome::Replaced),
                "already_exported": count(Outcome::AlreadyExported),
                "failed": count(Outcome::Failed),
            },
            "devices": reports,
        });
        if let Some(bundle) = bundle {
            value["bundle"] = bundle;
        }
        return print_json(&value);
    }
    println!("{:<32}  {:<24}  {:<16}  {:<32}  REASON", "ID", "NAME", "OUTCOME", "KEY");
    for r in reports {
        println!(
            "{:<32}  {:<24}  {:<16}  {:<32}  {}",
            printable(&r.device_id),
            printable(&r.name),
            r.outcome.label(),
            printable(r.key_id.as_deref().unwrap_or("-")),
            printable(r.reason.as_deref().unwrap_or(""))
        );
    }
    eprintln!("{target}: {}", summary(reports));
    if reports.iter().any(|r| r.outcome == Outcome::AlreadyExported) {
        eprintln!("note: {ALREADY_EXPORTED_MEANS}");
    }
    Ok(())
}
