//! First-use rotation over MQTT, as `keyfill rotate` runs it.

use crate::bridge::EventSender;
use crate::messages::{Event, RotationRequest, RotationRow, RotationTargets, RotationUpdate};
use crate::problem::Problem;
use keyfill_station::db::devices::{self, LookupError};
use keyfill_station::provision::Station;
use keyfill_station::rotation::{RotationError, RotationProgress, RotationReport, Rotator, rotatable_devices};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

async fn targets(station: &Station, targets: &RotationTargets) -> Result<Vec<String>, Problem> {
    let mut ids = match targets {
        RotationTargets::AllUnrotated => rotatable_devices(station).await.map_err(|e| Problem::rotation(&e))?,
        RotationTargets::Devices(wanted) => {
            let mut ids = Vec::new();
            for reference in wanted {
                match devices::resolve(station.inventory.pool(), reference).await {
                    Ok(device) => ids.push(device.id),
                    Err(LookupError::Db(error)) => return Err(Problem::database(&error)),
                    Err(error) => {
                        return Err(Problem::new(
                            format!("{error}."),
                            "Check the device names or ids; write id:ID or name:NAME where a name looks like an id.",
                        ));
                    }
                }
            }
            ids
        }
    };
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Err(Problem::new(
            "Nothing to rotate: every provisioned device has completed its rotation.",
            "Provision devices first, or name the devices to rotate.",
        ));
    }
    Ok(ids)
}

pub async fn run(station: Arc<Station>, request: RotationRequest, events: EventSender) {
    let update = |update: RotationUpdate| {
        events.send(Event::Rotation(update));
    };
    let ids = match targets(&station, &request.targets).await {
        Ok(ids) => ids,
        Err(problem) => return update(RotationUpdate::Failed(problem)),
    };
    // The table names the devices while the run goes on; the library reports ids.
    let names: HashMap<String, String> = match devices::list(station.inventory.pool(), None).await {
        Ok(all) => all.into_iter().filter(|d| ids.binary_search(&d.id).is_ok()).map(|d| (d.id, d.name)).collect(),
        Err(error) => return update(RotationUpdate::Failed(Problem::database(&error))),
    };
    let rotator = match Rotator::connect(station.clone(), &request.broker, request.settings).await {
        Ok(rotator) => Arc::new(rotator),
        Err(error) => return update(RotationUpdate::Failed(Problem::rotation(&error))),
    };
    update(RotationUpdate::Started { total: ids.len(), broker: request.broker.clone() });
    let progress_events = events.clone();
    let reports = rotator
        .rotate_all(ids, move |progress| {
            let device_id = progress_device(&progress).to_owned();
            let name = names.get(&device_id).cloned().unwrap_or_else(|| device_id.clone());
            progress_events.send(Event::Rotation(RotationUpdate::Progress { device_id, name, progress }));
        })
        .await;
    // Let the last commands reach the broker, then end the run's connection.
    rotator.flush(Duration::from_secs(10)).await;
    rotator.close().await;
    update(RotationUpdate::Finished(rows_by_name(reports)));
}

/// The device a progress event is about.
pub(super) fn progress_device(progress: &RotationProgress) -> &str {
    match progress {
        RotationProgress::Attempt { device, .. }
        | RotationProgress::Rotated { device }
        | RotationProgress::Failed { device, .. } => device,
    }
}

/// The report's rows for the results table, by name; an unconfirmed rotation reads
/// `rotation_failed: …` as in the CLI's JSON.
pub(super) fn rows_by_name(reports: Vec<RotationReport>) -> Vec<RotationRow> {
    let mut rows: Vec<RotationRow> = reports
        .into_iter()
        .map(|report| RotationRow {
            device_id: report.device_id,
            name: report.name,
            result: report.result.map_err(|error| match error {
                RotationError::Unconfirmed { .. } => format!("rotation_failed: {error}"),
                other => other.to_string(),
            }),
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}
