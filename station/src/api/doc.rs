//! The OpenAPI 3.1 document, generated from the handlers' annotations and the types they take and
//! give; served at `/openapi.json` and committed as docs/openapi.json (a test compares them).

use super::Shared;
use super::error::{ApiError, Problem};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keyfill station API",
        description = "The local automation API of a Keyfill station (`keyfill serve`), for line controllers and MES: \
                       devices, provisioning jobs on the line's lanes, work orders, rotation and export runs, and the \
                       event stream. Every endpoint but /v1/health and /openapi.json needs a bearer token \
                       (`keyfill api token create`) with the scope it names. Errors are one JSON shape, Problem."
    ),
    paths(
        health,
        super::devices::list,
        super::devices::show,
        super::jobs::lanes,
        super::jobs::submit,
        super::jobs::list,
        super::jobs::show,
        super::orders::import,
        super::orders::list,
        super::orders::report,
        super::runs::start_rotation,
        super::runs::start_export,
        super::runs::show,
        super::events::stream,
    ),
    components(schemas(Problem, super::token::Scope, super::devices::StateFilter, super::orders::OrderEntry)),
    modifiers(&BearerAuth),
    tags(
        (name = "devices", description = "The inventory"),
        (name = "jobs", description = "Provisioning on the line's lanes"),
        (name = "orders", description = "Work orders from the MES"),
        (name = "runs", description = "Key rotation over MQTT and export to C2"),
        (name = "events", description = "The event stream"),
        (name = "station", description = "The server itself"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        }
    }
}

/// The document as served and committed: pretty JSON with a final newline. The version is the
/// API's, not the build's, so that a release does not change it.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = API_VERSION.to_owned();
    let mut text = doc.to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// The API's version: its paths are under /v1.
pub const API_VERSION: &str = "1.0.0";

pub async fn openapi_json() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document())
}

/// Whether the server runs, and as which station.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
    pub station: String,
    pub station_id: String,
    /// The build.
    pub version: String,
    pub lanes: usize,
}

#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "station",
    responses((status = 200, description = "The server runs", body = Health))
)]
pub async fn health(State(state): State<Shared>) -> Json<Health> {
    let info = &state.station.unlocked.info;
    Json(Health {
        status: "ok".into(),
        station: info.station_name.clone(),
        station_id: hex::encode(info.station_id),
        version: env!("CARGO_PKG_VERSION").into(),
        lanes: state.jobs.lane_count(),
    })
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint: /openapi.json lists them")
}
