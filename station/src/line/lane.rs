//! One lane: labels from its source, one device at a time on its pinned port.

use super::config::LaneConfig;
use super::event::{DeviceRef, EventSink, LineEvent, OrderStanding};
use super::labels::{self, LabelInput, LabelRead};
use super::port;
use crate::db::devices::{self, DeviceState};
use crate::job::{JobError, JobStep, LEASE_PATIENCE, Prepared};
use crate::provision::{Progress, Station};
use keyfill_formats::printable;
use keyfill_formats::qr::OnboardingPayload;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// What the lanes share.
pub(super) struct Shared {
    pub station: Arc<Station>,
    pub sink: Arc<EventSink>,
    pub order: String,
    /// Sessions running now (key generated or being sent): what a stop waits for.
    pub in_flight: AtomicUsize,
    pub order_complete_sent: AtomicBool,
}

/// What a lane did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    pub provisioned: u64,
    pub failed: u64,
    pub rejected: u64,
}

/// Runs the lane until `stop` turns true; a session under way then finishes first.
pub(super) async fn run(
    shared: Arc<Shared>,
    lane: LaneConfig,
    mut stop: watch::Receiver<bool>,
    inbox: Option<mpsc::Receiver<LabelInput>>,
) -> Tally {
    let (to_lane, mut inputs) = mpsc::channel(1);
    let source = labels::start(&lane.labels, to_lane.clone());
    // The API's jobs wait in the inbox (bounded: a full one answers "busy"), one at a time here.
    let forward = inbox.map(|mut inbox| {
        tokio::spawn(async move {
            while let Some(input) = inbox.recv().await {
                if to_lane.send(input).await.is_err() {
                    break;
                }
            }
        })
    });
    let mut tally = Tally::default();
    let emit = |event| shared.sink.emit(Some(&lane.name), event);
    loop {
        let input = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            input = inputs.recv() => input,
        };
        match input {
            None => break,
            Some(LabelInput::Ready) => {
                emit(LineEvent::LaneReady { link: lane.port.to_string(), labels: lane.labels.to_string() })
            }
            Some(LabelInput::Problem { problem, advice }) => emit(LineEvent::LaneProblem { problem, advice }),
            Some(LabelInput::Rejected { reason, source, receipt }) => {
                tally.rejected += 1;
                settle(receipt, false);
                emit(LineEvent::LabelRejected { reason, source });
            }
            Some(LabelInput::Label(read)) => handle_label(&shared, &lane, read, &mut stop, &mut tally).await,
        }
    }
    source.abort();
    if let Some(forward) = forward {
        forward.abort();
    }
    emit(LineEvent::LaneStopped { provisioned: tally.provisioned, failed: tally.failed, rejected: tally.rejected });
    tally
}

async fn handle_label(
    shared: &Shared,
    lane: &LaneConfig,
    read: LabelRead,
    stop: &mut watch::Receiver<bool>,
    tally: &mut Tally,
) {
    let LabelRead { text, source, receipt, job } = read;
    let emit = |event| shared.sink.emit_for_job(Some(&lane.name), job.as_deref(), event);
    let payload = match OnboardingPayload::parse(&text) {
        Ok(payload) => payload,
        Err(error) => {
            tally.rejected += 1;
            settle(receipt, false);
            emit(LineEvent::LabelRejected { reason: format!("not a valid Keyfill label: {error}"), source });
            return;
        }
    };
    let device = DeviceRef {
        id: payload.device_id.to_hex(),
        name: payload.name.as_str().to_owned(),
        serial_number: payload.serial_number.clone(),
    };
    emit(LineEvent::LabelRead { device: device.clone(), source });
    let started = Instant::now();
    let millis = || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut on_step = |step: JobStep| match step {
        JobStep::WaitingFor { station } => emit(LineEvent::Waiting { device: device.clone(), station }),
        JobStep::Opening { .. } => emit(LineEvent::Step { device: device.clone(), step: "opening", key_id: None }),
        JobStep::Session(progress) => {
            let (step, key_id) = match progress {
                Progress::Reconciling => ("reconciling", None),
                Progress::KeyGenerated { key_id } => ("key_generated", Some(key_id)),
                Progress::Handshake => ("handshake", None),
                Progress::KeySent => ("key_sent", None),
                Progress::Confirmed => ("confirmed", None),
            };
            emit(LineEvent::Step { device: device.clone(), step, key_id })
        }
    };
    // Until a session starts nothing is recorded: a stop abandons the wait for a lease, a card
    // or an advertisement, and the label is read again at the next start.
    let prepared = tokio::select! {
        biased;
        _ = stop.wait_for(|stop| *stop) => None,
        prepared = prepare(shared, lane, &payload, &mut on_step) => Some(prepared),
    };
    let result = match prepared {
        None => {
            emit(LineEvent::NotStarted { device });
            return;
        }
        Some(Ok(Prepared::AlreadyProvisioned(record))) => {
            settle(receipt, true);
            emit(LineEvent::AlreadyProvisioned { device, key_id: record.key_id });
            return;
        }
        Some(Ok(Prepared::Ready(job))) => {
            shared.in_flight.fetch_add(1, Ordering::SeqCst);
            let result = shared.station.finish_job(job, &payload, &mut on_step).await;
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            result.map_err(LaneJobError::Job)
        }
        Some(Err(error)) => Err(error),
    };
    // The label file is moved before the outcome is told: whoever acts on the event finds it
    // settled.
    let outcome = match result {
        Ok(report) => {
            tally.provisioned += 1;
            settle(receipt, true);
            LineEvent::Provisioned {
                device,
                key_id: report.device.key_id.clone().unwrap_or_default(),
                reconciled: report.reconciled,
                millis: millis(),
            }
        }
        Err(error) => {
            tally.failed += 1;
            let state = match devices::get(shared.station.inventory.pool(), &device.id).await {
                Ok(Some(record)) if record.state != DeviceState::Provisioned => Some(record.state.as_str().to_owned()),
                _ => None,
            };
            settle(receipt, false);
            LineEvent::Failed {
                device,
                error: printable(&error_chain(&error)).into_owned(),
                advice: error.advice(),
                state,
                millis: millis(),
            }
        }
    };
    emit(outcome);
    report_order(shared, lane).await;
}

/// Moves a dropped label file into `done/` or `failed/`; other sources have nothing to move.
fn settle(receipt: Option<labels::Receipt>, handled: bool) {
    if let Some(receipt) = receipt {
        receipt.settle(handled);
    }
}

/// The lane's link for this device (a USB adapter looked up again), then the job's first half.
async fn prepare(
    shared: &Shared,
    lane: &LaneConfig,
    payload: &OnboardingPayload,
    on_step: &mut (dyn FnMut(JobStep) + Send),
) -> Result<Prepared, LaneJobError> {
    let target = port::resolve(&lane.port, lane.baud).await.map_err(LaneJobError::Port)?;
    shared
        .station
        .prepare_job(&target, lane.card_wait, payload, LEASE_PATIENCE, on_step)
        .await
        .map_err(LaneJobError::Job)
}

/// A job's failure, or the lane's port missing.
#[derive(Debug, thiserror::Error)]
pub enum LaneJobError {
    #[error(transparent)]
    Port(port::PortError),
    #[error(transparent)]
    Job(JobError),
}

impl From<JobError> for LaneJobError {
    fn from(error: JobError) -> Self {
        LaneJobError::Job(error)
    }
}

impl LaneJobError {
    fn advice(&self) -> Option<String> {
        match self {
            LaneJobError::Port(error) => Some(format!("{} Nothing was sent to the device.", error.advice())),
            LaneJobError::Job(error) => error.advice(),
        }
    }
}

/// The error and its causes, as one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

/// The order's standing after a device; `order_complete` once, when nothing is outstanding.
async fn report_order(shared: &Shared, lane: &LaneConfig) {
    let counts = match crate::db::orders::counts(shared.station.inventory.pool(), &shared.order).await {
        Ok(Some(counts)) => counts,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "cannot read the order's progress");
            return;
        }
    };
    let standing = OrderStanding {
        order: counts.id.clone(),
        expected: counts.expected,
        provisioned: counts.provisioned,
        failed: counts.failed,
        pending: counts.pending,
        remaining: counts.outstanding(),
    };
    let complete = standing.remaining == 0;
    shared.sink.emit(Some(&lane.name), LineEvent::OrderProgress(standing.clone()));
    if complete && !shared.order_complete_sent.swap(true, Ordering::SeqCst) {
        shared.sink.emit(None, LineEvent::OrderComplete(standing));
    }
}
