//! One export run: wait for C2's health check, check its crypto mode, read its whole client list
//! (page by page, checked against its count), then export every device with a
//! bounded number of requests in flight, retrying transient failures with backoff. Every
//! device's result is recorded in the ledger before the run moves on; a run interrupted at any
//! point is resumed by running it again.

use super::c2_api::{C2Api, C2Error, CryptoMode};
use super::ledger::{Delivery, Ledger};
use super::{ExportError, ExportItem, ItemReport, Outcome, Plan, Registration, plan};
use keyfill_formats::DeviceName;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Concurrency and retry schedule of a run.
#[derive(Debug, Clone, Copy)]
pub struct ExportSettings {
    /// Requests to C2 in flight at once.
    pub concurrency: usize,
    /// Attempts per request before a transient failure counts as a failure.
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each one, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Overwrite clients that C2 holds but this station never exported to it.
    pub replace_foreign: bool,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            concurrency: 8,
            max_attempts: 5,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            replace_foreign: false,
        }
    }
}

/// Progress of a run, as events (the CLI draws a bar, the GUI its own).
#[derive(Debug, Clone)]
pub enum ExportProgress {
    /// C2 answered and the run is about to export `total` devices.
    Started {
        total: usize,
    },
    Finished(ItemReport),
}

/// Runs `attempt` until it succeeds, fails permanently, or `max_attempts` are spent.
/// Returns the last result and the number of attempts made.
async fn with_retries<T, F, Fut>(settings: &ExportSettings, mut attempt: F) -> (Result<T, C2Error>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, C2Error>>,
{
    let mut wait = settings.first_backoff;
    let mut made = 0;
    loop {
        made += 1;
        match attempt().await {
            Err(error) if error.is_transient() && made < settings.max_attempts.max(1) => {
                debug!(%error, attempt = made, "transient C2 failure; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(settings.max_backoff);
            }
            result => return (result, made),
        }
    }
}

/// Exports `items` to C2 through `api`, recording every result in `ledger`.
pub async fn run_export(
    api: &C2Api,
    ledger: Arc<Ledger>,
    items: Vec<ExportItem>,
    settings: ExportSettings,
    progress: impl Fn(ExportProgress) + Send + Sync + 'static,
) -> Result<Vec<ItemReport>, ExportError> {
    let target = api.target();
    let (health, _) = with_retries(&settings, || api.health()).await;
    health.map_err(|source| ExportError::C2 { what: "whether it is up", source })?;
    let (mode, _) = with_retries(&settings, || api.crypto_mode()).await;
    match mode.map_err(|source| ExportError::C2 { what: "its crypto mode", source })? {
        CryptoMode::SymmetricKey => {}
        found => return Err(ExportError::CryptoModeMismatch { found }),
    }
    let (names, _) = with_retries(&settings, || api.client_names()).await;
    let in_c2: Arc<HashSet<String>> =
        Arc::new(names.map_err(|source| ExportError::C2 { what: "for its clients", source })?);
    let registrations: Arc<HashMap<String, Registration>> = Arc::new(ledger.registrations(&target).await?);
    info!(%target, devices = items.len(), clients_in_c2 = in_c2.len(), "exporting to C2");
    progress(ExportProgress::Started { total: items.len() });

    let progress = Arc::new(progress);
    let window = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        let (api, ledger, target) = (api.clone(), ledger.clone(), target.clone());
        let (in_c2, registrations, window, progress) =
            (in_c2.clone(), registrations.clone(), window.clone(), progress.clone());
        tasks.spawn(async move {
            let _permit = window.acquire_owned().await;
            let registration = registrations.get(&item.device_id);
            let present = in_c2.contains(&item.name);
            let report = export_one(&api, &ledger, &target, item, registration, present, &settings).await?;
            progress(ExportProgress::Finished(report.clone()));
            Ok::<_, ExportError>(report)
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(report)) => reports.push(report),
            // The ledger could not record a result: stop rather than export unrecorded.
            Ok(Err(error)) => {
                tasks.abort_all();
                return Err(error);
            }
            Err(join) => {
                tasks.abort_all();
                return Err(ExportError::Ledger(format!("an export task ended abnormally: {join}")));
            }
        }
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    ledger.summarise(&target, &summary(&reports)).await?;
    Ok(reports)
}

/// `2 created, 0 replaced, 1 already exported, 0 failed`.
pub fn summary(reports: &[ItemReport]) -> String {
    let count = |outcome| reports.iter().filter(|r| r.outcome == outcome).count();
    format!(
        "{} created, {} replaced, {} already exported, {} failed",
        count(Outcome::Created),
        count(Outcome::Replaced),
        count(Outcome::AlreadyExported),
        count(Outcome::Failed)
    )
}

async fn export_one(
    api: &C2Api,
    ledger: &Ledger,
    target: &str,
    item: ExportItem,
    registration: Option<&Registration>,
    in_c2: bool,
    settings: &ExportSettings,
) -> Result<ItemReport, ExportError> {
    let mut report = ItemReport {
        device_id: item.device_id,
        name: item.name,
        key_id: item.key_id,
        outcome: Outcome::Failed,
        reason: None,
        attempts: 0,
    };
    let (key, key_id) = match (item.key, report.key_id.clone()) {
        (Ok(key), Some(key_id)) => (key, key_id),
        (Err(reason), _) => {
            report.reason = Some(reason);
            ledger.finish(target, &report, Delivery::NotSent).await?;
            return Ok(report);
        }
        (Ok(_), None) => {
            report.reason = Some("the key has no id".into());
            ledger.finish(target, &report, Delivery::NotSent).await?;
            return Ok(report);
        }
    };
    // Names reach the inventory only as DeviceNames now, but an inventory written by an earlier
    // version may hold one C2 could not address, or that a URL would turn into another name.
    let name = match DeviceName::parse(&report.name) {
        Ok(name) => name,
        Err(error) => {
            report.reason =
                Some(format!("its name \"{}\" cannot be sent to C2: {error}; nothing was sent", report.name));
            ledger.finish(target, &report, Delivery::NotSent).await?;
            return Ok(report);
        }
    };
    let outcome = match plan(&key_id, registration, in_c2, settings.replace_foreign) {
        Plan::AlreadyExported => {
            report.outcome = Outcome::AlreadyExported;
            ledger.finish(target, &report, Delivery::NotSent).await?;
            return Ok(report);
        }
        Plan::Refuse { reason } => {
            report.reason = Some(reason);
            ledger.finish(target, &report, Delivery::NotSent).await?;
            return Ok(report);
        }
        Plan::Post { outcome } => outcome,
    };
    ledger.begin_sending(target, &report, &key_id, outcome).await?;
    let (result, attempts) = with_retries(settings, || api.put_client_key(&name, &key)).await;
    report.attempts = attempts;
    let delivery = match result {
        Ok(()) => {
            report.outcome = outcome;
            Delivery::Delivered
        }
        Err(error) => {
            warn!(device = %report.device_id, %error, attempts, "export to C2 failed");
            let transient = error.is_transient();
            report.reason = Some(if transient {
                format!("{error} (after {attempts} attempts; C2 may or may not hold the key: run the export again)")
            } else {
                error.to_string()
            });
            // Only an explicit 4xx proves C2 stored nothing.
            match error {
                C2Error::Status { status: 400..=499, .. } if !transient => Delivery::Refused,
                _ => Delivery::Unknown,
            }
        }
    };
    ledger.finish(target, &report, delivery).await?;
    Ok(report)
}
