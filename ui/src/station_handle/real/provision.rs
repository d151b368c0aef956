//! One provisioning: open the chosen link, run the session, report each step; or stop where it
//! is when the operator cancels, and settle the record by whether the key had left.

use crate::bridge::EventSender;
use crate::messages::{Event, ProvisionRequest, ProvisionUpdate};
use crate::problem::Problem;
use keyfill_station::db::{DbError, devices, events, keys};
use keyfill_station::provision::{Progress, ProvisionError, Station};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::oneshot;

/// How far a provisioning came: what a cancel has to settle.
#[derive(Debug, Default)]
struct Reached {
    key_id: Option<String>,
    key_sent: bool,
}

pub async fn run(
    station: Arc<Station>,
    request: Box<ProvisionRequest>,
    cancel: oneshot::Receiver<()>,
    events: EventSender,
) {
    let job = request.job;
    let update = |update: ProvisionUpdate| {
        events.send(Event::Provision { job, update });
    };
    let reached = Mutex::new(Reached::default());
    let session = async {
        update(ProvisionUpdate::Opening { link: request.link.describe() });
        let mut link = match request.link.open(request.card_wait, &request.payload).await {
            Ok(link) => link,
            Err(error) => return Err(Problem::link(&error, &request.link)),
        };
        let result = station
            .provision(&mut link, &request.payload, |step| {
                {
                    let mut reached = reached.lock().unwrap_or_else(PoisonError::into_inner);
                    match &step {
                        Progress::KeyGenerated { key_id } => reached.key_id = Some(key_id.clone()),
                        Progress::KeySent => reached.key_sent = true,
                        _ => {}
                    }
                }
                update(ProvisionUpdate::Step(step));
            })
            .await;
        drop(link);
        Ok(result)
    };
    let id = request.payload.device_id.to_hex();
    let outcome = tokio::select! {
        outcome = session => outcome,
        // A dropped sender (the app closing) lets the provisioning finish.
        Ok(()) = cancel => {
            // The session future is dropped here: the link closes, and the device gives up
            // at its own timeout.
            let reached = std::mem::take(&mut *reached.lock().unwrap_or_else(PoisonError::into_inner));
            if let Err(error) = settle_cancelled(&station, &id, &reached).await {
                update(ProvisionUpdate::Failed(Problem::database(&error)));
                return;
            }
            if let Ok(Some(device)) = devices::get(station.inventory.pool(), &id).await {
                events.send(Event::DeviceChanged(device));
            }
            update(ProvisionUpdate::Cancelled { key_sent: reached.key_sent });
            return;
        }
    };
    match outcome {
        Err(problem) => update(ProvisionUpdate::Failed(problem)),
        Ok(Ok(report)) => {
            events.send(Event::DeviceChanged(report.device.clone()));
            update(ProvisionUpdate::Provisioned { device: Box::new(report.device), reconciled: report.reconciled });
        }
        Ok(Err(ProvisionError::AlreadyProvisioned { name, .. })) => {
            update(ProvisionUpdate::AlreadyProvisioned { name });
        }
        Ok(Err(error)) => {
            // The record may have changed (now pending or failed): refresh its row.
            if let Ok(Some(device)) = devices::get(station.inventory.pool(), &id).await {
                events.send(Event::DeviceChanged(device));
            }
            update(ProvisionUpdate::Failed(Problem::provision(&error)));
        }
    }
}

/// Records how a cancelled provisioning left the device, as a failed one is recorded: a key
/// that left may be on the device, so the record stays pending and the next provisioning asks
/// the device first; a key that never left is failed. Nothing to record before a key was made.
async fn settle_cancelled(station: &Station, id: &str, reached: &Reached) -> Result<(), DbError> {
    let Some(key_id) = &reached.key_id else { return Ok(()) };
    let pool = station.inventory.pool();
    if reached.key_sent {
        let note = "cancelled by the operator after the key was sent";
        devices::note_pending(pool, id, note).await?;
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        events::record(&mut tx, &station.actor, Some(id), "unconfirmed", note).await?;
        tx.commit().await.map_err(DbError::from)?;
        return Ok(());
    }
    let reason = "cancelled by the operator before the key was sent";
    let mut tx = pool.begin().await.map_err(DbError::from)?;
    keys::mark_failed(&mut tx, key_id).await?;
    devices::mark_failed(&mut tx, id, reason).await?;
    events::record(&mut tx, &station.actor, Some(id), "failed", reason).await?;
    tx.commit().await.map_err(DbError::from)
}
