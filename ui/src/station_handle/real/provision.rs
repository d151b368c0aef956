//! One provisioning: open the chosen link, run the session, report each step; or stop where it
//! is when the operator cancels, and settle the record by whether the key had left.

use crate::bridge::EventSender;
use crate::messages::{Event, ProvisionRequest, ProvisionUpdate};
use crate::problem::Problem;
use keyfill_station::db::devices;
use keyfill_station::lease::Purpose;
use keyfill_station::orders::file::OrderId;
use keyfill_station::orders::{AdmitError, OrderPolicy};
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
    let id = request.payload.device_id.to_hex();
    // The operator keys one work order: a device that is not on it is refused before anything.
    if let Some(order) = &request.order {
        let policy = match OrderId::parse(order) {
            Ok(order) => OrderPolicy { required: true, current: Some(order) },
            Err(reason) => {
                return update(ProvisionUpdate::Failed(Problem::new(
                    format!("The work order {order:?} is not a valid order id: {reason}."),
                    "Choose the work order again.",
                )));
            }
        };
        match policy.admit(station.inventory.pool(), &request.payload).await {
            Ok(_) => {}
            Err(AdmitError::NotAdmitted(refused)) => {
                return update(ProvisionUpdate::Failed(Problem::provision(&ProvisionError::NotAdmitted(refused))));
            }
            Err(AdmitError::Db(error)) => return update(ProvisionUpdate::Failed(Problem::database(&error))),
        }
    }
    // Taken before the link is opened: another station may be working on this device.
    let lease = match station.lease(&id, Purpose::Provision).await {
        Ok(lease) => lease,
        Err(error) => return update(ProvisionUpdate::Failed(Problem::provision(&error))),
    };
    let reached = Mutex::new(Reached::default());
    let session = async {
        update(ProvisionUpdate::Opening { link: request.link.describe() });
        let mut link = match request.link.open(request.card_wait, &request.payload).await {
            Ok(link) => link,
            Err(error) => return Err(Problem::link(&error, &request.link)),
        };
        let result = station
            .provision_leased(&lease, &mut link, &request.payload, |step| {
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
    let outcome = tokio::select! {
        outcome = session => Some(outcome),
        // A dropped sender (the app closing) lets the provisioning finish.
        Ok(()) = cancel => None,
    };
    let Some(outcome) = outcome else {
        // The session future is dropped: the link closes, and the device gives up at its own
        // timeout.
        let reached = std::mem::take(&mut *reached.lock().unwrap_or_else(PoisonError::into_inner));
        let settled = match &reached.key_id {
            Some(key_id) => station.settle_cancelled(&lease, &id, key_id, reached.key_sent).await,
            None => Ok(()),
        };
        lease.release().await;
        if let Err(error) = settled {
            update(ProvisionUpdate::Failed(Problem::provision(&error)));
            return;
        }
        if let Ok(Some(device)) = devices::get(station.inventory.pool(), &id).await {
            events.send(Event::DeviceChanged(device));
        }
        update(ProvisionUpdate::Cancelled { key_sent: reached.key_sent });
        return;
    };
    lease.release().await;
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
