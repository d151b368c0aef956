//! One provisioning: open the chosen link, run the session, report each step.

use crate::bridge::EventSender;
use crate::messages::{Event, ProvisionRequest, ProvisionUpdate};
use crate::problem::Problem;
use keyfill_station::db::devices;
use keyfill_station::provision::Station;
use std::sync::Arc;

pub async fn run(station: Arc<Station>, request: Box<ProvisionRequest>, events: EventSender) {
    let job = request.job;
    let update = |update: ProvisionUpdate| {
        events.send(Event::Provision { job, update });
    };
    update(ProvisionUpdate::Opening { link: request.link.describe() });
    let mut link = match request.link.open(request.card_wait, &request.payload).await {
        Ok(link) => link,
        Err(error) => {
            update(ProvisionUpdate::Failed(Problem::link(&error, &request.link)));
            return;
        }
    };
    let result = station.provision(&mut link, &request.payload, |step| update(ProvisionUpdate::Step(step))).await;
    drop(link);
    match result {
        Ok(report) => {
            events.send(Event::DeviceChanged(report.device.clone()));
            update(ProvisionUpdate::Provisioned { device: Box::new(report.device), reconciled: report.reconciled });
        }
        Err(error) => {
            // The record may have changed (now pending or failed): refresh its row.
            let id = request.payload.device_id.to_hex();
            if let Ok(Some(device)) = devices::get(station.inventory.pool(), &id).await {
                events.send(Event::DeviceChanged(device));
            }
            update(ProvisionUpdate::Failed(Problem::provision(&error)));
        }
    }
}
