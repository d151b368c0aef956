//! What the Devices screen does to one pending device: ask it over a link whether it holds its
//! key (`keyfill devices reconcile`), or give up on it (`keyfill devices abandon`).

use crate::bridge::EventSender;
use crate::messages::{AbandonRequest, Event, ReconcileRequest};
use crate::problem::Problem;
use keyfill_station::db::devices::{self, Device};
use keyfill_station::detect::LinkTarget;
use keyfill_station::link::{AnyLink, LinkError};
use keyfill_station::provision::Station;
use std::sync::Arc;
use std::time::Duration;

/// The device's record, or why not.
async fn device(station: &Station, id: &str) -> Result<Device, Problem> {
    match devices::get(station.inventory.pool(), id).await {
        Ok(Some(device)) => Ok(device),
        Ok(None) => Err(Problem::new(format!("No device {id}."), "It may have been removed: refresh the list.")),
        Err(error) => Err(Problem::database(&error)),
    }
}

/// Where to look for `device` over BLE when the operator did not say: no label is read here,
/// so the address it was last seen at, else the name it advertises.
fn recorded_ble_target(device: &Device) -> String {
    match (device.transport.as_deref(), device.port.as_deref()) {
        (Some("ble"), Some(address)) => address.to_owned(),
        _ => device.name.clone(),
    }
}

async fn open(link: &LinkTarget, wait: Duration, device: &Device) -> Result<AnyLink, LinkError> {
    link.open_or(wait, &recorded_ble_target(device)).await
}

/// Sends the device's record as it is now, so the table and the detail follow.
async fn refresh(station: &Station, id: &str, events: &EventSender) {
    if let Ok(Some(device)) = devices::get(station.inventory.pool(), id).await {
        events.send(Event::DeviceChanged(device));
    }
}

pub async fn reconcile(station: Arc<Station>, request: Box<ReconcileRequest>, events: EventSender) {
    let device_id = request.device_id.clone();
    let outcome = async {
        let device = device(&station, &device_id).await?;
        let mut link = open(&request.link, request.card_wait, &device)
            .await
            .map_err(|error| Problem::link(&error, &request.link))?;
        let verdict = station.reconcile(&mut link, &device).await;
        drop(link);
        verdict.map_err(|error| Problem::reconcile(&error))
    }
    .await;
    refresh(&station, &device_id, &events).await;
    events.send(Event::Reconciled { device_id, outcome });
}

pub async fn abandon(station: Arc<Station>, request: AbandonRequest, events: EventSender) {
    let device_id = request.device_id.clone();
    let outcome = async {
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(Problem::new("No reason given.", "Say why the device is abandoned: the event log keeps it."));
        }
        let device = device(&station, &device_id).await?;
        station.abandon(&device, reason).await.map_err(|error| Problem::abandon(&error))
    }
    .await;
    refresh(&station, &device_id, &events).await;
    events.send(Event::Abandoned { device_id, outcome });
}
