//! The local automation API (`keyfill serve`): HTTP for line controllers and MES. Devices,
//! provisioning jobs on the line's lanes, work orders, rotation and export runs, and the event
//! stream, each behind a bearer token's scope ([`token`]); the OpenAPI 3.1 document ([`doc`]) is
//! generated from these handlers and served at `/openapi.json`.
//!
//! Handlers are thin: each checks the caller's scope and the serving operator's role, then calls
//! the same library functions as the command line.

pub mod auth;
pub mod board;
pub mod devices;
pub mod doc;
pub mod error;
pub mod events;
pub mod jobs;
pub mod orders;
pub mod runs;
pub mod serve;
pub mod token;

use crate::custody::Operation;
use crate::home::StationHome;
use crate::provision::Station;
use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Whether the operator serving the API may do an operation: `Err` says why not.
pub type Authorise = Arc<dyn Fn(Operation) -> Result<(), String> + Send + Sync>;

/// How to reach C2 for export runs.
#[derive(Debug, Clone)]
pub struct C2Target {
    pub url: String,
    pub ca: Option<std::path::PathBuf>,
    pub timeout: std::time::Duration,
}

/// What every handler shares.
pub struct ApiState {
    pub station: Arc<Station>,
    pub home: StationHome,
    /// The operator the server runs as, named in its request log.
    pub operator: String,
    pub authorise: Authorise,
    pub jobs: Arc<jobs::JobBoard>,
    pub runs: Arc<runs::RunBoard>,
    /// Every event as its JSON line, for the event stream.
    pub events: broadcast::Sender<Arc<events::StreamedEvent>>,
    /// The line's event sink, for the events of runs.
    pub sink: Arc<crate::line::event::EventSink>,
    pub broker: Option<String>,
    pub c2: Option<C2Target>,
    /// Turns `Some` when the server is asked to stop: event streams end then, so that a
    /// graceful stop does not wait for clients that never hang up.
    pub stopping: tokio::sync::watch::Receiver<Option<String>>,
    pub rotation: crate::rotation::RotationSettings,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").field("operator", &self.operator).finish_non_exhaustive()
    }
}

pub type Shared = Arc<ApiState>;

/// Every route.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/openapi.json", get(doc::openapi_json))
        .route("/v1/health", get(doc::health))
        .route("/v1/devices", get(devices::list))
        .route("/v1/devices/{device}", get(devices::show))
        .route("/v1/lanes", get(jobs::lanes))
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{job}", get(jobs::show))
        .route("/v1/orders", post(orders::import).get(orders::list))
        .route("/v1/orders/{order}/report", get(orders::report))
        .route("/v1/runs/rotation", post(runs::start_rotation))
        .route("/v1/runs/export", post(runs::start_export))
        .route("/v1/runs/{run}", get(runs::show))
        .route("/v1/events", get(events::stream))
        .fallback(doc::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::log_request))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The largest request body: an order file of 100 000 devices fits in a few.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
