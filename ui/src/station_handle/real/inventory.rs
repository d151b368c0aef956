//! Reading the inventory and the event log.

use crate::bridge::EventSender;
use crate::device_index::DeviceIndex;
use crate::messages::{DeviceDetail, Event, HistoryQuery};
use crate::problem::Problem;
use keyfill_station::db::{DbError, devices, events, exports, orders};
use keyfill_station::provision::Station;
use std::sync::Arc;

fn failed(sender: &EventSender, command: &'static str, error: &DbError) {
    sender.send(Event::Problem { command, problem: Problem::database(error) });
}

/// The inventory, indexed for search here so that the UI thread only swaps it in.
pub async fn devices(station: Arc<Station>, sender: EventSender) {
    let list = match devices::list(station.inventory.pool(), None).await {
        Ok(list) => list,
        Err(error) => return failed(&sender, "load_devices", &error),
    };
    match tokio::task::spawn_blocking(move || DeviceIndex::build(list)).await {
        Ok(index) => {
            sender.send(Event::DeviceIndex(Box::new(index)));
        }
        Err(join) => {
            let problem = Problem::new(format!("Indexing the devices stopped: {join}."), "Refresh the list.");
            sender.send(Event::Problem { command: "load_devices", problem });
        }
    }
}

/// The open work orders with their progress.
pub async fn orders(station: Arc<Station>, sender: EventSender) {
    match orders::list(station.inventory.pool(), true).await {
        Ok(list) => {
            sender.send(Event::Orders(list));
        }
        Err(error) => failed(&sender, "load_orders", &error),
    }
}

pub async fn detail(station: Arc<Station>, id: String, sender: EventSender) {
    let pool = station.inventory.pool();
    let loaded = async {
        let Some(device) = devices::get(pool, &id).await? else { return Ok(None) };
        let history = events::for_device(pool, &id).await?;
        let exports = exports::for_device(pool, &id).await?;
        Ok::<_, DbError>(Some(DeviceDetail { device, history, exports }))
    };
    match loaded.await {
        Ok(Some(detail)) => {
            sender.send(Event::DeviceDetail(detail));
        }
        Ok(None) => {
            let problem = Problem::new(format!("No device {id}."), "It may have been removed: refresh the list.");
            sender.send(Event::Problem { command: "load_device_detail", problem });
        }
        Err(error) => failed(&sender, "load_device_detail", &error),
    }
}

pub async fn history(station: Arc<Station>, query: HistoryQuery, sender: EventSender) {
    match events::recent(station.inventory.pool(), query.limit, &query.filter).await {
        Ok(rows) => {
            sender.send(Event::History(rows));
        }
        Err(error) => failed(&sender, "load_history", &error),
    }
}
