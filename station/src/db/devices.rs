//! Devices: identity from the label, provisioning state, and which link was used.

use super::{DbError, now_millis};
use serde::Serialize;
use sqlx::{Any, AnyPool, FromRow, Transaction};

/// Provisioning state of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// A key was generated and may have reached the device; not yet confirmed.
    Pending,
    /// The device proved it holds its key.
    Provisioned,
    /// Provisioning failed and the device holds no key from this station.
    Failed,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Provisioned => "provisioned",
            DeviceState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self, DbError> {
        match text {
            "pending" => Ok(DeviceState::Pending),
            "provisioned" => Ok(DeviceState::Provisioned),
            "failed" => Ok(DeviceState::Failed),
            other => Err(DbError::Inconsistent(format!("unknown device state {other:?}"))),
        }
    }
}

#[derive(Debug, FromRow)]
struct DeviceRow {
    id: String,
    name: String,
    serial_number: String,
    credential_mode: String,
    identity_public_key: Option<Vec<u8>>,
    sealed_setup_secret: Option<Vec<u8>>,
    model: Option<String>,
    state: String,
    transport: Option<String>,
    port: Option<String>,
    current_key_id: Option<String>,
    failure: Option<String>,
    created_at: i64,
    updated_at: i64,
    provisioned_at: Option<i64>,
    rotation_state: Option<String>,
    rotation_attempts: Option<i64>,
}

/// A device as stored. `sealed_setup_secret` stays sealed and is never serialised.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub credential_mode: String,
    #[serde(skip)]
    pub identity_public_key: Option<Vec<u8>>,
    #[serde(skip)]
    pub sealed_setup_secret: Option<Vec<u8>>,
    pub model: Option<String>,
    pub state: DeviceState,
    pub transport: Option<String>,
    pub port: Option<String>,
    pub key_id: Option<String>,
    pub failure: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub provisioned_at: Option<i64>,
    /// Rotation state, if a rotation was ever started: rotation_pending, active, rotation_failed.
    pub rotation: Option<String>,
    pub rotation_attempts: Option<i64>,
}

impl TryFrom<DeviceRow> for Device {
    type Error = DbError;
    fn try_from(row: DeviceRow) -> Result<Self, DbError> {
        Ok(Device {
            state: DeviceState::parse(&row.state)?,
            id: row.id,
            name: row.name,
            serial_number: row.serial_number,
            credential_mode: row.credential_mode,
            identity_public_key: row.identity_public_key,
            sealed_setup_secret: row.sealed_setup_secret,
            model: row.model,
            transport: row.transport,
            port: row.port,
            key_id: row.current_key_id,
            failure: row.failure,
            created_at: row.created_at,
            updated_at: row.updated_at,
            provisioned_at: row.provisioned_at,
            rotation: row.rotation_state,
            rotation_attempts: row.rotation_attempts,
        })
    }
}

/// What the station knows of a device from its label, ready to store.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub credential_mode: &'static str,
    pub identity_public_key: Option<Vec<u8>>,
    pub sealed_setup_secret: Option<Vec<u8>>,
    pub model: Option<String>,
}

const SELECT: &str = "SELECT d.id, d.name, d.serial_number, d.credential_mode, d.identity_public_key, d.sealed_setup_secret, \
     d.model, d.state, d.transport, d.port, d.current_key_id, d.failure, d.created_at, d.updated_at, d.provisioned_at, \
     r.state AS rotation_state, r.attempts AS rotation_attempts \
     FROM devices d LEFT JOIN rotations r ON r.device_id = d.id";

pub async fn get(pool: &AnyPool, id: &str) -> Result<Option<Device>, DbError> {
    let row: Option<DeviceRow> =
        sqlx::query_as(&format!("{SELECT} WHERE d.id = $1")).bind(id).fetch_optional(pool).await?;
    row.map(Device::try_from).transpose()
}

/// Finds a device by id (hex) or by name.
pub async fn find(pool: &AnyPool, id_or_name: &str) -> Result<Option<Device>, DbError> {
    let row: Option<DeviceRow> = sqlx::query_as(&format!("{SELECT} WHERE d.id = $1 OR d.name = $2"))
        .bind(id_or_name.to_ascii_lowercase())
        .bind(id_or_name)
        .fetch_optional(pool)
        .await?;
    row.map(Device::try_from).transpose()
}

pub async fn list(pool: &AnyPool, state: Option<DeviceState>) -> Result<Vec<Device>, DbError> {
    let rows: Vec<DeviceRow> = match state {
        Some(state) => {
            sqlx::query_as(&format!("{SELECT} WHERE d.state = $1 ORDER BY d.created_at, d.id"))
                .bind(state.as_str())
                .fetch_all(pool)
                .await?
        }
        None => sqlx::query_as(&format!("{SELECT} ORDER BY d.created_at, d.id")).fetch_all(pool).await?,
    };
    rows.into_iter().map(Device::try_from).collect()
}

/// Inserts the device, or refreshes its label facts, and puts it in `pending` with `key_id`.
pub async fn begin_provisioning(
    tx: &mut Transaction<'_, Any>,
    device: &NewDevice,
    key_id: &str,
    transport: &str,
    port: &str,
) -> Result<(), DbError> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO devices (id, name, serial_number, credential_mode, identity_public_key, sealed_setup_secret, model, \
         state, transport, port, current_key_id, failure, created_at, updated_at, provisioned_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, NULL, $11, $12, NULL) \
         ON CONFLICT (id) DO UPDATE SET serial_number = excluded.serial_number, credential_mode = excluded.credential_mode, \
         identity_public_key = excluded.identity_public_key, sealed_setup_secret = excluded.sealed_setup_secret, \
         model = excluded.model, state = 'pending', transport = excluded.transport, port = excluded.port, \
         current_key_id = excluded.current_key_id, failure = NULL, updated_at = excluded.updated_at",
    )
    .bind(&device.id)
    .bind(&device.name)
    .bind(&device.serial_number)
    .bind(device.credential_mode)
    .bind(device.identity_public_key.clone())
    .bind(device.sealed_setup_secret.clone())
    .bind(device.model.clone())
    .bind(transport)
    .bind(port)
    .bind(key_id)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the device provisioned; its setup secret, no longer needed, is erased.
pub async fn mark_provisioned(
    tx: &mut Transaction<'_, Any>,
    id: &str,
    key_id: &str,
    transport: &str,
    port: &str,
) -> Result<(), DbError> {
    let now = now_millis();
    sqlx::query(
        "UPDATE devices SET state = 'provisioned', sealed_setup_secret = NULL, current_key_id = $1, transport = $2, port = $3, failure = NULL, \
         updated_at = $4, provisioned_at = $5 WHERE id = $6",
    )
    .bind(key_id)
    .bind(transport)
    .bind(port)
    .bind(now)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn mark_failed(tx: &mut Transaction<'_, Any>, id: &str, failure: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET state = 'failed', failure = $1, updated_at = $2 WHERE id = $3")
        .bind(failure)
        .bind(now_millis())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records why a pending device is still pending (e.g. confirmation lost), without changing state.
pub async fn note_pending(pool: &AnyPool, id: &str, note: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET failure = $1, updated_at = $2 WHERE id = $3 AND state = 'pending'")
        .bind(note)
        .bind(now_millis())
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Makes `key_id` the device's current key (after a confirmed rotation).
pub async fn set_current_key(tx: &mut Transaction<'_, Any>, id: &str, key_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE devices SET current_key_id = $1, updated_at = $2 WHERE id = $3")
        .bind(key_id)
        .bind(now_millis())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
