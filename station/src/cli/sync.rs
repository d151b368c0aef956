//! `keyfill sync`: this station's records pushed to the factory's database.

use super::print_json;
use anyhow::{Context, Result, bail};
use keyfill_formats::printable;
use keyfill_station::db::{Inventory, redact_url};
use keyfill_station::provision::Station;
use keyfill_station::sync::{self, SyncError, SyncReport};

pub async fn run(station: &Station, to: &str, json: bool, interactive: bool) -> Result<()> {
    let target =
        Inventory::open_existing(to).await.with_context(|| format!("cannot open the database {}", redact_url(to)))?;
    let bar =
        if interactive && !json { indicatif::ProgressBar::new_spinner() } else { indicatif::ProgressBar::hidden() };
    let report = sync::sync(station, &target, |done| {
        bar.set_message(format!("{done} device(s) compared"));
        bar.tick();
    })
    .await
    .map_err(|error| {
        let resumable = matches!(error, SyncError::Db(_));
        let context = if resumable {
            format!("sync to {} stopped; run it again to resume", redact_url(to))
        } else {
            format!("cannot sync to {}", redact_url(to))
        };
        anyhow::Error::new(error).context(context)
    })?;
    bar.finish_and_clear();
    target.close().await;
    station.inventory.close().await;
    if json {
        print_json(&report)?;
    } else {
        print_report(&report, to);
    }
    if !report.conflicts.is_empty() {
        bail!(
            "{} device(s) were keyed both here and in the factory database; see the report above",
            report.conflicts.len()
        );
    }
    Ok(())
}

fn print_report(report: &SyncReport, to: &str) {
    println!(
        "synced to {}: {} device(s) pushed ({} key(s)), {} unchanged, {} event(s) pushed",
        redact_url(to),
        report.devices_pushed,
        report.keys_pushed,
        report.devices_unchanged,
        report.events_pushed
    );
    for conflict in &report.conflicts {
        println!("CONFLICT {} ({}): {}", printable(&conflict.name), conflict.device_id, printable(&conflict.reason));
    }
}
