//! The documented JSON shapes of what the station keeps, shared by the command line's `--json`
//! output and the local API: one definition, so the two never drift apart. Never key material.

use crate::db::devices::Device;
use crate::db::events::Event;
use crate::db::exports::StoredExport;
use crate::time::rfc3339;
use serde::Serialize;

/// The documented JSON shape of a device. Never contains key material.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceJson {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub credential_mode: String,
    pub model: Option<String>,
    pub state: String,
    pub transport: Option<String>,
    pub port: Option<String>,
    pub key_id: Option<String>,
    pub failure: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub provisioned_at: Option<String>,
    /// Key rotation: null, rotation_pending, active or rotation_failed.
    pub rotation: Option<String>,
    pub rotation_attempts: Option<i64>,
    /// The work order the device was keyed under, if any.
    pub order: Option<String>,
}

impl From<&Device> for DeviceJson {
    fn from(d: &Device) -> Self {
        DeviceJson {
            id: d.id.clone(),
            name: d.name.clone(),
            serial_number: d.serial_number.clone(),
            credential_mode: d.credential_mode.clone(),
            model: d.model.clone(),
            state: d.state.as_str().to_owned(),
            transport: d.transport.clone(),
            port: d.port.clone(),
            key_id: d.key_id.clone(),
            failure: d.failure.clone(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            provisioned_at: d.provisioned_at.map(rfc3339),
            rotation: d.rotation.clone(),
            rotation_attempts: d.rotation_attempts,
            order: d.order_id.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventJson {
    pub at: String,
    pub kind: String,
    pub detail: String,
    pub operator: String,
    pub station_id: String,
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> Self {
        EventJson {
            at: rfc3339(e.at),
            kind: e.kind.clone(),
            detail: e.detail.clone(),
            operator: e.operator.clone(),
            station_id: e.station_id.clone(),
        }
    }
}

/// One export of a device's key to a C2 server, newest first in `devices show --json`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ExportJson {
    pub at: String,
    pub target: String,
    pub run_id: String,
    pub key_id: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub attempts: i64,
}

impl From<&StoredExport> for ExportJson {
    fn from(e: &StoredExport) -> Self {
        ExportJson {
            at: rfc3339(e.at),
            target: e.target.clone(),
            run_id: e.run_id.clone(),
            key_id: e.key_id.clone(),
            outcome: e.outcome.clone(),
            reason: e.reason.clone(),
            attempts: e.attempts,
        }
    }
}

/// A device with its history and its exports to C2: `devices show --json`, `GET /v1/devices/{device}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: DeviceJson,
    /// Oldest first.
    pub history: Vec<EventJson>,
    /// Newest first.
    pub c2_exports: Vec<ExportJson>,
}

impl DeviceDetail {
    pub async fn read(pool: &sqlx::AnyPool, device: &Device) -> Result<DeviceDetail, crate::db::DbError> {
        let history = crate::db::events::for_device(pool, &device.id).await?;
        let exports = crate::db::exports::for_device(pool, &device.id).await?;
        Ok(DeviceDetail {
            device: DeviceJson::from(device),
            history: history.iter().map(EventJson::from).collect(),
            c2_exports: exports.iter().map(ExportJson::from).collect(),
        })
    }
}
