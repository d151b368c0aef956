//! Rotation on first contact, as `keyfill rotate --watch` runs it: listen for devices' hellos
//! and late confirmations until told to stop, rotating each device never rotated and settling
//! unfinished rotations from what the device proves.

use crate::bridge::EventSender;
use crate::messages::{Event, WatchRequest, WatchUpdate};
use crate::problem::Problem;
use keyfill_station::db::devices;
use keyfill_station::provision::Station;
use keyfill_station::rotation::{RotationProgress, Rotator};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Watches until `stop` fires or its sender is dropped (the station locking), then lets the
/// rotations in flight end before reporting.
pub async fn run(station: Arc<Station>, request: WatchRequest, stop: oneshot::Receiver<()>, events: EventSender) {
    let update = |update: WatchUpdate| {
        events.send(Event::Watch(update));
    };
    let rotator = match Rotator::connect(station.clone(), &request.broker, request.settings).await {
        Ok(rotator) => Arc::new(rotator),
        Err(error) => return update(WatchUpdate::Failed(Problem::rotation(&error))),
    };
    update(WatchUpdate::Watching { broker: request.broker.clone() });
    // The library reports progress by device id from a synchronous callback; names come from
    // the inventory, looked up in order on a task of their own.
    let (progress_sender, mut progress) = mpsc::unbounded_channel::<RotationProgress>();
    let namer = {
        let station = station.clone();
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(step) = progress.recv().await {
                let device_id = super::rotation::progress_device(&step).to_owned();
                let name = match devices::get(station.inventory.pool(), &device_id).await {
                    Ok(Some(device)) => device.name,
                    _ => device_id.clone(),
                };
                events.send(Event::Watch(WatchUpdate::Progress { device_id, name, progress: step }));
            }
        })
    };
    let stopped = async {
        // A dropped sender (the station locking, the app closing) stops the watch as well.
        let _ = stop.await;
    };
    let watched = rotator
        .watch(stopped, move |step| {
            let _ = progress_sender.send(step);
        })
        .await;
    // The callback, and with it the sender, is gone once `watch` returned: the namer drains.
    let _ = namer.await;
    rotator.flush(Duration::from_secs(10)).await;
    rotator.close().await;
    match watched {
        Ok(reports) => update(WatchUpdate::Stopped(super::rotation::rows_by_name(reports))),
        Err(error) => update(WatchUpdate::Failed(Problem::rotation(&error))),
    }
}
