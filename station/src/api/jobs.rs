//! Provisioning jobs: a label submitted for one of the line's lanes (`POST /v1/jobs`), keyed by
//! that lane like a scanned one, and followed by its id (`GET /v1/jobs/{job}`) or on the event
//! stream, whose events about it carry `job`. A job's state follows the line's events.

use super::Shared;
use super::auth::Caller;
use super::board::{self, Entry, Recent};
use super::error::{ApiError, Body, Path, Problem};
use super::token::Scope;
use crate::custody::Operation;
use crate::line::event::{Emitted, LineEvent};
use crate::line::labels::{LabelInput, LabelRead};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keyfill_formats::qr::{MAX_TEXT_LEN, OnboardingPayload};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Jobs remembered; the oldest finished ones are forgotten first (the devices' records stay).
const MAX_JOBS: usize = 10_000;
/// Jobs waiting for one lane; more are refused as busy.
pub const LANE_QUEUE: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its lane.
    Queued,
    /// The lane is on it: `step` says where.
    Running,
    Provisioned,
    /// Provisioned before; not keyed again.
    AlreadyProvisioned,
    Failed,
    /// The lane stopped before starting it; submit it again.
    NotStarted,
}

impl JobState {
    fn finished(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

/// The device a job is for, as its label names it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct JobDevice {
    pub id: String,
    pub name: String,
    pub serial_number: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub lane: String,
    pub state: JobState,
    pub device: JobDevice,
    /// The session's last step: opening, handshake, key_generated, key_sent, confirmed…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// The device's record after a failure: pending (ask again), failed, or absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_state: Option<String>,
    /// The token that submitted it.
    pub submitted_by: String,
    pub submitted_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A lane as the API offers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lane {
    pub name: String,
    pub link: String,
    pub labels: String,
    /// Jobs waiting for it.
    pub queued: usize,
}

/// The jobs, and the lanes' inboxes.
pub struct JobBoard {
    jobs: Recent<Job>,
    lanes: Vec<(crate::line::config::LaneConfig, mpsc::Sender<LabelInput>)>,
}

impl Entry for Job {
    fn id(&self) -> &str {
        &self.id
    }

    fn finished(&self) -> bool {
        self.state.finished()
    }
}

impl std::fmt::Debug for JobBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobBoard").field("lanes", &self.lanes.len()).finish_non_exhaustive()
    }
}

impl JobBoard {
    /// A board for `lanes` (none: jobs are refused), and each lane's inbox for the line.
    pub fn new(lanes: &[crate::line::config::LaneConfig]) -> (JobBoard, crate::line::Inboxes) {
        let mut inboxes = crate::line::Inboxes::new();
        let mut senders = Vec::new();
        for lane in lanes {
            let (sender, receiver) = mpsc::channel(LANE_QUEUE);
            inboxes.insert(lane.name.as_str().to_owned(), receiver);
            senders.push((lane.clone(), sender));
        }
        (JobBoard { jobs: Recent::new(MAX_JOBS), lanes: senders }, inboxes)
    }

    pub fn lane_count(&self) -> usize {
        self.lanes.len()
    }

    /// Follows the line's events about jobs.
    pub fn observe(&self, emitted: &Emitted<'_>) {
        let Some(id) = emitted.job else { return };
        self.jobs.update(id, |job| follow(job, emitted.event));
    }
    fn queued(&self, lane: &str) -> usize {
        self.jobs.count(|job| job.lane == lane && job.state == JobState::Queued)
    }
}

/// A job after one of the line's events about it.
fn follow(job: &mut Job, event: &LineEvent) {
    let now = || Some(board::now());
    match event {
        LineEvent::LabelRead { .. } | LineEvent::Waiting { .. } => job.state = JobState::Running,
        LineEvent::Step { step, key_id, .. } => {
            job.state = JobState::Running;
            job.step = Some((*step).to_owned());
            if key_id.is_some() {
                job.key_id.clone_from(key_id);
            }
        }
        LineEvent::Provisioned { key_id, .. } => {
            job.state = JobState::Provisioned;
            job.key_id = Some(key_id.clone());
            job.finished_at = now();
        }
        LineEvent::AlreadyProvisioned { key_id, .. } => {
            job.state = JobState::AlreadyProvisioned;
            job.key_id.clone_from(key_id);
            job.finished_at = now();
        }
        LineEvent::Failed { error, advice, state, .. } => {
            job.state = JobState::Failed;
            job.error = Some(error.clone());
            job.advice.clone_from(advice);
            job.device_state.clone_from(state);
            job.finished_at = now();
        }
        LineEvent::LabelRejected { reason, .. } => {
            job.state = JobState::Failed;
            job.error = Some(reason.clone());
            job.finished_at = now();
        }
        LineEvent::NotStarted { .. } => {
            job.state = JobState::NotStarted;
            job.finished_at = now();
        }
        _ => {}
    }
}

/// A label for a lane.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    /// The lane's name (`GET /v1/lanes`).
    pub lane: String,
    /// The label's QR payload as scanned: `KF1:…`.
    pub label: String,
}

#[utoipa::path(
    get,
    path = "/v1/lanes",
    tag = "jobs",
    security(("bearer" = ["jobs:read"])),
    responses(
        (status = 200, description = "The line's lanes", body = [Lane]),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks jobs:read", body = Problem),
    )
)]
pub async fn lanes(caller: Caller, State(state): State<Shared>) -> Result<Json<Vec<Lane>>, ApiError> {
    caller.may(&state, Scope::JobsRead, Operation::Inspect)?;
    let board = &state.jobs;
    Ok(Json(
        board
            .lanes
            .iter()
            .map(|(lane, _)| Lane {
                name: lane.name.to_string(),
                link: lane.port.to_string(),
                labels: lane.labels.to_string(),
                queued: board.queued(lane.name.as_str()),
            })
            .collect(),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    request_body = NewJob,
    security(("bearer" = ["jobs:write"])),
    responses(
        (status = 202, description = "Queued for the lane; follow it by its id", body = Job),
        (status = 400, description = "Not a Keyfill label, or a bad body", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks jobs:write, or the operator may not provision", body = Problem),
        (status = 404, description = "No such lane", body = Problem),
        (status = 409, description = "The server runs no line", body = Problem),
        (status = 429, description = "The lane has too many jobs waiting", body = Problem),
        (status = 413, description = "Larger than the API takes", body = Problem),
    )
)]
pub async fn submit(
    caller: Caller,
    State(state): State<Shared>,
    Body(new): Body<NewJob>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    caller.may(&state, Scope::JobsWrite, Operation::Provision)?;
    let board = &state.jobs;
    if board.lanes.is_empty() {
        return Err(ApiError::conflict(
            "this server runs no line, so there is no lane to key on",
            "start the server with `keyfill serve --line line.toml`",
        ));
    }
    let Some((lane, inbox)) = board.lanes.iter().find(|(lane, _)| lane.name.as_str() == new.lane) else {
        let names: Vec<&str> = board.lanes.iter().map(|(lane, _)| lane.name.as_str()).collect();
        return Err(ApiError::not_found(format!("no lane \"{}\": the lanes are {}", new.lane, names.join(", "))));
    };
    if new.label.len() > MAX_TEXT_LEN {
        return Err(ApiError::bad_request(format!(
            "the label is {} bytes, more than a label's {MAX_TEXT_LEN}",
            new.label.len()
        )));
    }
    let payload = OnboardingPayload::parse(new.label.trim())
        .map_err(|error| ApiError::bad_request(format!("not a valid Keyfill label: {error}")))?;
    let id = board::new_id()?;
    let job = Job {
        id: id.clone(),
        lane: lane.name.to_string(),
        state: JobState::Queued,
        device: JobDevice {
            id: payload.device_id.to_hex(),
            name: payload.name.as_str().to_owned(),
            serial_number: payload.serial_number.clone(),
        },
        step: None,
        key_id: None,
        error: None,
        advice: None,
        device_state: None,
        submitted_by: caller.token.to_string(),
        submitted_at: board::now(),
        finished_at: None,
    };
    // Remembered before the lane can see it: its first event finds it.
    board.jobs.add(job.clone());
    let read = LabelRead {
        text: new.label.trim().to_owned(),
        source: format!("API token {}", caller.token),
        receipt: None,
        job: Some(id.clone()),
    };
    match inbox.try_send(LabelInput::Label(read)) {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(job))),
        Err(mpsc::error::TrySendError::Full(_)) => {
            board.jobs.remove(&id);
            Err(ApiError::busy(format!("lane {} has {LANE_QUEUE} jobs waiting", lane.name)))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            board.jobs.remove(&id);
            Err(ApiError::unavailable(format!("lane {} has stopped", lane.name)))
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    security(("bearer" = ["jobs:read"])),
    responses(
        (status = 200, description = "The jobs remembered, oldest first", body = [Job]),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks jobs:read", body = Problem),
    )
)]
pub async fn list(caller: Caller, State(state): State<Shared>) -> Result<Json<Vec<Job>>, ApiError> {
    caller.may(&state, Scope::JobsRead, Operation::Inspect)?;
    Ok(Json(state.jobs.jobs.all()))
}

#[utoipa::path(
    get,
    path = "/v1/jobs/{job}",
    tag = "jobs",
    params(("job" = String, Path, description = "The job's id")),
    security(("bearer" = ["jobs:read"])),
    responses(
        (status = 200, description = "The job", body = Job),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks jobs:read", body = Problem),
        (status = 404, description = "No such job (or forgotten: the device's record says how it ended)", body = Problem),
    )
)]
pub async fn show(caller: Caller, State(state): State<Shared>, Path(id): Path<String>) -> Result<Json<Job>, ApiError> {
    caller.may(&state, Scope::JobsRead, Operation::Inspect)?;
    state.jobs.jobs.get(&id).map(Json).ok_or_else(|| ApiError::not_found(format!("no job \"{id}\"")))
}
