//! Rotation and export runs: `POST /v1/runs/rotation` rotates devices' keys over MQTT (as
//! `keyfill rotate`), `POST /v1/runs/export` registers keys with C2 (as `keyfill export c2`); both
//! run in the background and are followed at `GET /v1/runs/{run}` and on the event stream.

use super::Shared;
use super::auth::Caller;
use super::board::{self, Entry, Recent};
use super::error::{ApiError, Body, Path, Problem};
use super::token::Scope;
use crate::custody::Operation;
use crate::export::{C2Api, DeviceFilter, ExportProgress, Ledger, run_export};
use crate::line::event::LineEvent;
use crate::rotation::{RotationError, Rotator, rotatable_devices};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Runs remembered; the oldest finished ones are forgotten first.
pub const MAX_RUNS: usize = 1_000;
/// Devices named in one request.
pub const MAX_DEVICES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    Rotation,
    Export,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// Done: each device's outcome is in `devices`.
    Finished,
    /// Stopped before its devices were tried: `error` says why.
    Failed,
}

/// One device's outcome in a run.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunDevice {
    pub id: String,
    pub name: String,
    /// Rotation: `active`, `rotation_failed` or `error`; export: `created`, `replaced`,
    /// `already_exported` or `failed`.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Run {
    pub id: String,
    pub kind: RunKind,
    pub state: RunState,
    /// The broker or C2 it talks to.
    pub target: String,
    pub started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Devices in the run, once known.
    pub total: usize,
    pub devices: Vec<RunDevice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_by: String,
}

/// The runs the API started.
pub type RunBoard = Recent<Run>;

impl Entry for Run {
    fn id(&self) -> &str {
        &self.id
    }

    fn finished(&self) -> bool {
        self.state != RunState::Running
    }
}

/// Which devices a run is for.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotationRequest {
    /// Devices by id or name.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Every provisioned device not yet rotated (and interrupted rotations).
    #[serde(default)]
    pub all_provisioned: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Devices by id or name; none: every provisioned device.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Only keys confirmed at or after this UTC time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ).
    pub since: Option<String>,
}

fn new_run(kind: RunKind, target: String, caller: &Caller) -> Result<Run, ApiError> {
    Ok(Run {
        id: board::new_id()?,
        kind,
        state: RunState::Running,
        target,
        started_at: board::now(),
        finished_at: None,
        total: 0,
        devices: Vec::new(),
        error: None,
        started_by: caller.token.to_string(),
    })
}

fn finish(state: &Shared, id: &str, error: Option<String>) {
    state.runs.update(id, |run| {
        run.state = if error.is_some() { RunState::Failed } else { RunState::Finished };
        run.error = error;
        run.finished_at = Some(board::now());
    });
    if let Some(run) = state.runs.get(id) {
        let failed =
            run.devices.iter().filter(|d| matches!(d.outcome.as_str(), "failed" | "error" | "rotation_failed")).count();
        state.sink.emit(
            None,
            LineEvent::RunFinished {
                run: run.id,
                kind: run.kind.as_str(),
                devices: run.devices.len(),
                failed,
                error: run.error,
            },
        );
    }
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Rotation => "rotation",
            RunKind::Export => "export",
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/runs/rotation",
    tag = "runs",
    request_body = RotationRequest,
    security(("bearer" = ["runs:write"])),
    responses(
        (status = 202, description = "The run started; follow it by its id", body = Run),
        (status = 400, description = "No device named, or a bad body", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks runs:write, or the operator may not rotate", body = Problem),
        (status = 404, description = "A named device does not exist", body = Problem),
        (status = 409, description = "The server has no broker", body = Problem),
        (status = 413, description = "Larger than the API takes", body = Problem),
    )
)]
pub async fn start_rotation(
    caller: Caller,
    State(state): State<Shared>,
    Body(request): Body<RotationRequest>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    caller.may(&state, Scope::RunsWrite, Operation::Rotate)?;
    let broker = state.broker.clone().ok_or_else(|| {
        ApiError::conflict("this server has no MQTT broker", "start it with --broker (or mqtt.broker in keyfill.toml)")
    })?;
    if request.devices.len() > MAX_DEVICES {
        return Err(ApiError::bad_request(format!("more than {MAX_DEVICES} devices in one run")));
    }
    let pool = state.station.inventory.pool();
    let mut targets = Vec::new();
    for wanted in &request.devices {
        targets.push(super::devices::resolve_id(pool, wanted).await?);
    }
    if request.all_provisioned {
        targets.extend(rotatable_devices(&state.station).await.map_err(|e| ApiError::unavailable(e.to_string()))?);
    }
    targets.sort();
    targets.dedup();
    if targets.is_empty() {
        return Err(ApiError::bad_request("nothing to rotate: name devices, or set all_provisioned"));
    }
    let mut run = new_run(RunKind::Rotation, broker.clone(), &caller)?;
    run.total = targets.len();
    let id = run.id.clone();
    state.runs.add(run.clone());
    state.sink.emit(None, LineEvent::RunStarted { run: id.clone(), kind: "rotation", devices: targets.len() });
    let shared = state.clone();
    tokio::spawn(async move {
        let rotator = match Rotator::connect(shared.station.clone(), &broker, shared.rotation).await {
            Ok(rotator) => Arc::new(rotator),
            Err(error) => return finish(&shared, &id, Some(format!("cannot reach the broker: {error}"))),
        };
        let reports = rotator.rotate_all(targets, |_| {}).await;
        rotator.flush(Duration::from_secs(10)).await;
        rotator.close().await;
        shared.runs.update(&id, |run| {
            run.devices = reports
                .into_iter()
                .map(|report| {
                    let (outcome, key_id, reason) = match report.result {
                        Ok(key_id) => ("active", Some(key_id), None),
                        Err(error) => {
                            let outcome = if matches!(error, RotationError::Unconfirmed { .. }) {
                                "rotation_failed"
                            } else {
                                "error"
                            };
                            (outcome, None, Some(error.to_string()))
                        }
                    };
                    RunDevice { id: report.device_id, name: report.name, outcome: outcome.into(), key_id, reason }
                })
                .collect();
        });
        finish(&shared, &id, None);
    });
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[utoipa::path(
    post,
    path = "/v1/runs/export",
    tag = "runs",
    request_body = ExportRequest,
    security(("bearer" = ["runs:write"])),
    responses(
        (status = 202, description = "The run started; follow it by its id", body = Run),
        (status = 400, description = "A bad time, or a bad body", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks runs:write, or the operator may not export", body = Problem),
        (status = 409, description = "The server has no C2, or nothing to export", body = Problem),
        (status = 413, description = "Larger than the API takes", body = Problem),
    )
)]
pub async fn start_export(
    caller: Caller,
    State(state): State<Shared>,
    Body(request): Body<ExportRequest>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    caller.may(&state, Scope::RunsWrite, Operation::ExportToC2)?;
    let c2 = state
        .c2
        .clone()
        .ok_or_else(|| ApiError::conflict("this server has no C2", "start it with --c2 (or c2.url in keyfill.toml)"))?;
    if request.devices.len() > MAX_DEVICES {
        return Err(ApiError::bad_request(format!("more than {MAX_DEVICES} devices in one run")));
    }
    let filter = match (&request.since, request.devices.is_empty()) {
        (Some(_), false) => return Err(ApiError::bad_request("give devices or since, not both")),
        (Some(since), true) => DeviceFilter::ConfirmedSince(crate::time::parse_utc(since).ok_or_else(|| {
            ApiError::bad_request(format!("since \"{since}\": expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"))
        })?),
        (None, false) => DeviceFilter::Named(request.devices.clone()),
        (None, true) => DeviceFilter::All,
    };
    let api = C2Api::new(&c2.url, c2.ca.as_deref(), c2.timeout)
        .map_err(|error| ApiError::conflict(format!("cannot use C2: {error}"), "correct --c2 and --c2-ca"))?;
    let items: Vec<_> = crate::export::exportable_items(&state.station, &filter)
        .await
        .map_err(|error| ApiError::bad_request(error.to_string()))?
        .into_iter()
        .map(|(item, _)| item)
        .collect();
    if items.is_empty() {
        return Err(ApiError::conflict("no device to export: nothing provisioned matches", "provision devices first"));
    }
    let mut run = new_run(RunKind::Export, api.target(), &caller)?;
    run.total = items.len();
    let id = run.id.clone();
    state.runs.add(run.clone());
    state.sink.emit(None, LineEvent::RunStarted { run: id.clone(), kind: "export", devices: items.len() });
    let shared = state.clone();
    tokio::spawn(async move {
        let ledger = Ledger::Inventory {
            inventory: shared.station.inventory.clone(),
            actor: shared.station.actor.clone(),
            run_id: id.clone(),
        };
        let runs = shared.runs.clone();
        let run_id = id.clone();
        let progress = move |event: ExportProgress| {
            if let ExportProgress::Finished(report) = event {
                runs.update(&run_id, |run| {
                    run.devices.push(RunDevice {
                        id: report.device_id,
                        name: report.name,
                        outcome: report.outcome.as_str().to_owned(),
                        key_id: report.key_id,
                        reason: report.reason,
                    })
                });
            }
        };
        let settings = crate::export::ExportSettings::default();
        match run_export(&api, Arc::new(ledger), items, settings, progress).await {
            Ok(_) => finish(&shared, &id, None),
            Err(error) => finish(&shared, &id, Some(format!("export to {} stopped: {error}", api.target()))),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[utoipa::path(
    get,
    path = "/v1/runs/{run}",
    tag = "runs",
    params(("run" = String, Path, description = "The run's id")),
    security(("bearer" = ["runs:read"])),
    responses(
        (status = 200, description = "The run", body = Run),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks runs:read", body = Problem),
        (status = 404, description = "No such run", body = Problem),
    )
)]
pub async fn show(caller: Caller, State(state): State<Shared>, Path(id): Path<String>) -> Result<Json<Run>, ApiError> {
    caller.may(&state, Scope::RunsRead, Operation::Inspect)?;
    state.runs.get(&id).map(Json).ok_or_else(|| ApiError::not_found(format!("no run \"{id}\"")))
}
