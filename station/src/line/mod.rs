//! The headless line mode (`keyfill line`): a long-running station for a line controller. Each
//! lane is a link pinned to a physical port and a label source; every label read is keyed under
//! the line's work order, one device at a time per lane, lanes concurrently. Progress and every
//! event go out as JSON Lines ([`event`]); a stop request ends the lanes once the sessions under
//! way have finished.

pub mod config;
pub mod event;
pub mod labels;
mod lane;
pub mod port;

use crate::orders::{OrderPolicy, file::OrderId};
use crate::provision::Station;
use config::LineConfig;
use event::{EventSink, LaneSummary, LineEvent};
pub use lane::Tally;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use thiserror::Error;
use tokio::sync::watch;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LineError {
    #[error("work order {0} is not in this station's database: import it first (`keyfill orders import`)")]
    NoSuchOrder(String),
    #[error("work order {0} is closed: a line keys an open order")]
    OrderClosed(String),
    #[error("lane {0} takes its labels from the API (api = true): run it with `keyfill serve --line`")]
    ApiLane(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Why the line is asked to stop, for the `stopping` event (`SIGTERM`, `SIGINT`).
pub type StopRequest = watch::Receiver<Option<String>>;

/// The API's way into each lane, by lane name: labels submitted as jobs.
pub type Inboxes = std::collections::HashMap<String, tokio::sync::mpsc::Receiver<labels::LabelInput>>;

/// Runs the line until a stop is requested, then waits for every lane to finish the device it is
/// on. Returns the lanes' totals.
pub async fn run(
    mut station: Station,
    config: LineConfig,
    sink: Arc<EventSink>,
    stop_request: StopRequest,
) -> Result<Tally, LineError> {
    if let Some(lane) = config.lanes.iter().find(|lane| lane.labels == config::LabelSource::Api) {
        return Err(LineError::ApiLane(lane.name.to_string()));
    }
    prepare(&mut station, &config).await?;
    let station = Arc::new(station);
    let total = run_shared(station.clone(), config, sink, stop_request, Inboxes::new()).await;
    if let Ok(station) = Arc::try_unwrap(station) {
        station.inventory.close().await;
    }
    Ok(total)
}

/// Checks the line's order and keys only its devices from now on.
pub async fn prepare(station: &mut Station, config: &LineConfig) -> Result<(), LineError> {
    let order = config.order.as_str().to_owned();
    match crate::db::orders::get(station.inventory.pool(), &order).await? {
        None => return Err(LineError::NoSuchOrder(order)),
        Some(row) if row.state != "open" => return Err(LineError::OrderClosed(order)),
        Some(_) => {}
    }
    station.order_policy = OrderPolicy { required: true, current: Some(OrderId::clone(&config.order)) };
    Ok(())
}

/// Runs the lanes of a [`prepare`]d station, each also taking the labels of its inbox.
pub async fn run_shared(
    station: Arc<Station>,
    config: LineConfig,
    sink: Arc<EventSink>,
    mut stop_request: StopRequest,
    mut inboxes: Inboxes,
) -> Tally {
    let order = config.order.as_str().to_owned();
    sink.emit(
        None,
        LineEvent::LineStarted {
            station: station.unlocked.info.station_name.clone(),
            station_id: hex::encode(station.unlocked.info.station_id),
            order: order.clone(),
            lanes: config
                .lanes
                .iter()
                .map(|lane| LaneSummary {
                    lane: lane.name.to_string(),
                    link: lane.port.to_string(),
                    labels: lane.labels.to_string(),
                })
                .collect(),
        },
    );
    let shared = Arc::new(lane::Shared {
        station,
        sink: sink.clone(),
        order,
        in_flight: AtomicUsize::new(0),
        order_complete_sent: AtomicBool::new(false),
    });
    let (stop_lanes, lanes_stop) = watch::channel(false);
    let mut lanes = tokio::task::JoinSet::new();
    for lane in config.lanes {
        let inbox = inboxes.remove(lane.name.as_str());
        lanes.spawn(lane::run(shared.clone(), lane, lanes_stop.clone(), inbox));
    }
    let mut total = Tally::default();
    let mut add = |tally: Tally| {
        total.provisioned += tally.provisioned;
        total.failed += tally.failed;
        total.rejected += tally.rejected;
    };
    let signal = tokio::select! {
        request = stop_request.wait_for(Option::is_some) => request.ok().and_then(|r| r.clone()),
        // Lanes end only when stopped; one ending by itself (a panic) stops the line.
        ended = lanes.join_next() => {
            if let Some(Ok(tally)) = ended {
                add(tally);
            }
            Some("a lane ended".to_owned())
        }
    };
    sink.emit(
        None,
        LineEvent::Stopping {
            signal: signal.unwrap_or_else(|| "stop".into()),
            in_flight: shared.in_flight.load(Ordering::SeqCst),
        },
    );
    let _ = stop_lanes.send(true);
    while let Some(ended) = lanes.join_next().await {
        match ended {
            Ok(tally) => add(tally),
            Err(error) => tracing::error!(%error, "a lane ended abnormally"),
        }
    }
    sink.emit(
        None,
        LineEvent::LineStopped { provisioned: total.provisioned, failed: total.failed, rejected: total.rejected },
    );
    total
}
