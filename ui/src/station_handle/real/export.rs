//! Export of confirmed keys to C2, as `keyfill export c2` runs it.

use crate::bridge::EventSender;
use crate::messages::{Event, ExportRequest, ExportUpdate};
use crate::problem::Problem;
use keyfill_station::db::{DbError, events};
use keyfill_station::export::{C2Api, ExportProgress, ExportSettings, Ledger, exportable_items, run_export};
use keyfill_station::provision::Station;
use std::sync::Arc;
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(station: Arc<Station>, request: ExportRequest, events: EventSender) {
    let update = |update: ExportUpdate| {
        events.send(Event::Export(update));
    };
    let api = match C2Api::new(&request.url, request.ca.as_deref(), REQUEST_TIMEOUT) {
        Ok(api) => api,
        Err(error) => return update(ExportUpdate::Failed(Problem::c2_at(&error, request.url.trim()))),
    };
    let target = api.target();
    update(ExportUpdate::Connecting { target: target.clone() });
    let items = match exportable_items(&station, &request.filter).await {
        Ok(items) => items.into_iter().map(|(item, _)| item).collect::<Vec<_>>(),
        Err(error) => return update(ExportUpdate::Failed(Problem::c2_export(&error, &target))),
    };
    if items.is_empty() {
        return update(ExportUpdate::Failed(Problem::new(
            "Nothing to export: no provisioned device matches.",
            "Provision devices first, or widen the selection.",
        )));
    }
    let run_id = match keyfill_station::seal::random_array::<8>() {
        Ok(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        Err(error) => {
            return update(ExportUpdate::Failed(Problem::new(format!("{error}."), "Try again.")));
        }
    };
    let ledger = Ledger::Inventory {
        inventory: station.inventory.clone(),
        actor: station.actor.clone(),
        run_id: run_id.clone(),
    };
    let settings = ExportSettings { replace_foreign: request.replace_foreign, ..ExportSettings::default() };
    let progress_events = events.clone();
    let progress = move |progress: ExportProgress| {
        let update = match progress {
            ExportProgress::Started { total } => ExportUpdate::Started { total },
            ExportProgress::Finished(report) => ExportUpdate::Item(report),
        };
        progress_events.send(Event::Export(update));
    };
    match run_export(&api, Arc::new(ledger), items, settings, progress).await {
        Ok(reports) => update(ExportUpdate::Finished { target, run_id, reports }),
        Err(error) => {
            let problem = Problem::c2_export(&error, &target);
            record_failed_run(&station, &target, &run_id, &problem).await;
            update(ExportUpdate::Failed(problem));
        }
    }
}

/// A run that stopped is in the event log (and so in the History) like each device's result:
/// the devices it did not reach have no event of their own.
async fn record_failed_run(station: &Station, target: &str, run_id: &str, problem: &Problem) {
    let detail = format!("run {run_id} to {target} stopped: {}", problem.message);
    let recorded = async {
        let mut tx = station.inventory.pool().begin().await.map_err(DbError::from)?;
        events::record(&mut tx, &station.actor, None, "c2_export_failed", &detail).await?;
        tx.commit().await.map_err(DbError::from)
    };
    if let Err(error) = recorded.await {
        tracing::warn!(%error, "the failed export run could not be recorded");
    }
}
