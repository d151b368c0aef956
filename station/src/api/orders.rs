//! Work orders: `POST /v1/orders` imports an MES file (CSV or JSON, as `keyfill orders import`),
//! `GET /v1/orders` lists them with their progress, `GET /v1/orders/{order}/report` gives the
//! signed reconciliation.

use super::Shared;
use super::auth::Caller;
use super::error::{ApiError, Path, Problem, RawBody};
use super::token::Scope;
use crate::custody::Operation;
use crate::orders::file::{self, Format};
use crate::orders::report::{self, OrderReport};
use crate::orders::{self as work_orders, Imported, OrderError};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};

/// An order as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderSummary {
    pub order: String,
    /// `open` or `closed`.
    pub state: String,
    pub imported_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    pub expected: i64,
    pub provisioned: i64,
    pub failed: i64,
    pub pending: i64,
    pub not_started: i64,
}

/// What an import did to each order of the file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportedOrder {
    pub order: String,
    /// `created`, or `unchanged` (imported before with the same devices).
    pub outcome: String,
    pub devices: usize,
}

/// One device of a work order, as the MES's JSON file lists it (the CSV file has the same
/// columns). Documentation only: the order file's reader checks every rule.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderEntry {
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    pub order_id: String,
    /// The device's name, as on its label.
    #[schema(min_length = 1, max_length = 255)]
    pub device_name: String,
    pub model: Option<String>,
    #[schema(min_length = 1)]
    pub serial_number: String,
    pub link: Option<String>,
    pub batch: Option<String>,
}

/// A report and its signature.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignedReport {
    pub report: OrderReport,
    /// JWS (compact, EdDSA) over the report as JSON, by the station's signing key.
    pub jws: String,
}

#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body(
        description = "The MES's order file: CSV with a header row (order_id, device_name, model, serial_number, \
                       optional link and batch) or a JSON array of objects with those fields",
        content((String = "text/csv"), (Vec<OrderEntry> = "application/json"))
    ),
    security(("bearer" = ["orders:write"])),
    responses(
        (status = 201, description = "Every order of the file imported (or unchanged)", body = [ImportedOrder]),
        (status = 400, description = "The file is not an order file; nothing was imported", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks orders:write, or the operator may not manage orders", body = Problem),
        (status = 409, description = "An order exists with other devices, or a device is on another open order", body = Problem),
        (status = 413, description = "Larger than the API takes", body = Problem),
    )
)]
pub async fn import(
    caller: Caller,
    State(state): State<Shared>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Vec<ImportedOrder>>), ApiError> {
    caller.may(&state, Scope::OrdersWrite, Operation::ManageOrders)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format = match content_type.split(';').next().map(str::trim) {
        Some("text/csv") => Format::Csv,
        Some("application/json") => Format::Json,
        _ => return Err(ApiError::bad_request("send the file as text/csv or application/json")),
    };
    let lines = file::parse(&body, format).map_err(|error| ApiError::bad_request(format!("not imported: {error}")))?;
    let source = format!("API token {}", caller.token);
    let imported = work_orders::import(&state.station, &source, lines).await.map_err(order_error)?;
    let rows = imported
        .into_iter()
        .map(|imported| match imported {
            Imported::Created { id, devices } => {
                ImportedOrder { order: id.to_string(), outcome: "created".into(), devices }
            }
            Imported::Unchanged { id, devices } => {
                ImportedOrder { order: id.to_string(), outcome: "unchanged".into(), devices }
            }
        })
        .collect();
    Ok((StatusCode::CREATED, Json(rows)))
}

#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    security(("bearer" = ["orders:read"])),
    responses(
        (status = 200, description = "Every order with its progress", body = [OrderSummary]),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks orders:read", body = Problem),
    )
)]
pub async fn list(caller: Caller, State(state): State<Shared>) -> Result<Json<Vec<OrderSummary>>, ApiError> {
    caller.may(&state, Scope::OrdersRead, Operation::Inspect)?;
    let orders = crate::db::orders::list(state.station.inventory.pool(), false).await?;
    Ok(Json(
        orders
            .into_iter()
            .map(|o| OrderSummary {
                order: o.id,
                state: o.state,
                imported_at: crate::time::rfc3339(o.imported_at),
                closed_at: o.closed_at.map(crate::time::rfc3339),
                expected: o.expected,
                provisioned: o.provisioned,
                failed: o.failed,
                pending: o.pending,
                not_started: o.not_started,
            })
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order}/report",
    tag = "orders",
    params(("order" = String, Path, description = "The order's id")),
    security(("bearer" = ["orders:read"])),
    responses(
        (status = 200, description = "The reconciliation, signed", body = SignedReport),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks orders:read", body = Problem),
        (status = 404, description = "No such order", body = Problem),
    )
)]
pub async fn report(
    caller: Caller,
    State(state): State<Shared>,
    Path(order): Path<String>,
) -> Result<Json<SignedReport>, ApiError> {
    caller.may(&state, Scope::OrdersRead, Operation::ManageOrders)?;
    let report = report::build(&state.station, &order).await.map_err(order_error)?;
    let signer = state
        .home
        .bundle_signer(&state.station.unlocked, None)
        .map_err(|error| ApiError::unavailable(format!("cannot load the station's signing key: {error}")))?;
    let payload = serde_json::to_vec_pretty(&report).map_err(|error| ApiError::unavailable(error.to_string()))?;
    let jws = report::sign(&payload, "json", &signer).map_err(|error| ApiError::unavailable(error.to_string()))?;
    Ok(Json(SignedReport { report, jws }))
}

fn order_error(error: OrderError) -> ApiError {
    match error {
        OrderError::NotFound(_) => ApiError::not_found(error.to_string()),
        OrderError::Exists { .. }
        | OrderError::OnAnotherOrder { .. }
        | OrderError::Closed(_)
        | OrderError::Outstanding { .. } => {
            ApiError::conflict(error.to_string(), "correct the order file, or the order, and send it again")
        }
        OrderError::ReasonRequired => ApiError::bad_request(error.to_string()),
        OrderError::Db(error) => ApiError::from(error),
    }
}
