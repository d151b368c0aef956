//! `GET /v1/devices` (paged, filtered) and `GET /v1/devices/{device}`.

use super::Shared;
use super::auth::Caller;
use super::error::{ApiError, Path, Problem, Query};
use super::token::Scope;
use crate::custody::Operation;
use crate::db::devices::{self, DeviceState, LookupError, PageFilter};
use crate::view::{DeviceDetail, DeviceJson};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

/// Most devices in one page.
pub const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 100;

#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    Pending,
    Provisioned,
    Failed,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Only devices in this state.
    state: Option<StateFilter>,
    /// Only devices keyed under this work order.
    order: Option<String>,
    /// Devices per page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The `next` of the previous page.
    #[param(pattern = "^[0-9a-f]{32}$")]
    after: Option<String>,
}

/// One page of devices, in id order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DevicePage {
    pub devices: Vec<DeviceJson>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "devices",
    params(DeviceQuery),
    security(("bearer" = ["devices:read"])),
    responses(
        (status = 200, description = "A page of devices", body = DevicePage),
        (status = 400, description = "A bad filter", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks devices:read", body = Problem),
    )
)]
pub async fn list(
    caller: Caller,
    State(state): State<Shared>,
    Query(query): Query<DeviceQuery>,
) -> Result<Json<DevicePage>, ApiError> {
    caller.may(&state, Scope::DevicesRead, Operation::Inspect)?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit {limit} is outside 1..={MAX_PAGE}")));
    }
    if let Some(after) = &query.after
        && !is_device_id(after)
    {
        return Err(ApiError::bad_request("after: a device id (32 lowercase hex digits), the previous page's next"));
    }
    let filter = PageFilter {
        state: query.state.map(|state| match state {
            StateFilter::Pending => DeviceState::Pending,
            StateFilter::Provisioned => DeviceState::Provisioned,
            StateFilter::Failed => DeviceState::Failed,
        }),
        order: query.order,
        after: query.after,
    };
    let found = devices::page(state.station.inventory.pool(), &filter, limit).await?;
    let next = (found.len() == limit as usize).then(|| found.last().map(|d| d.id.clone())).flatten();
    Ok(Json(DevicePage { devices: found.iter().map(DeviceJson::from).collect(), next }))
}

#[utoipa::path(
    get,
    path = "/v1/devices/{device}",
    tag = "devices",
    params(("device" = String, Path, description = "The device's id (32 hex digits) or name; `id:` or `name:` chooses")),
    security(("bearer" = ["devices:read"])),
    responses(
        (status = 200, description = "The device, its history and its exports", body = DeviceDetail),
        (status = 400, description = "A name that matches two devices, or a bad id", body = Problem),
        (status = 401, description = "No valid token", body = Problem),
        (status = 403, description = "The token lacks devices:read", body = Problem),
        (status = 404, description = "No such device", body = Problem),
    )
)]
pub async fn show(
    caller: Caller,
    State(state): State<Shared>,
    Path(device): Path<String>,
) -> Result<Json<DeviceDetail>, ApiError> {
    caller.may(&state, Scope::DevicesRead, Operation::Inspect)?;
    let pool = state.station.inventory.pool();
    let found = resolve(pool, &device).await?;
    Ok(Json(DeviceDetail::read(pool, &found).await?))
}

/// The device an id or name means; 404 when none, 400 when the text is ambiguous or malformed.
async fn resolve(pool: &sqlx::AnyPool, text: &str) -> Result<devices::Device, ApiError> {
    devices::resolve(pool, text).await.map_err(|error| match error {
        LookupError::NotFound { .. } => ApiError::not_found(error.to_string()),
        LookupError::Db(error) => ApiError::from(error),
        other => ApiError::bad_request(other.to_string()),
    })
}

/// The id of the device an id or name means.
pub(super) async fn resolve_id(pool: &sqlx::AnyPool, text: &str) -> Result<String, ApiError> {
    resolve(pool, text).await.map(|device| device.id)
}

fn is_device_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
