//! The rows `keyfill sync` copies from a field station's inventory to the factory's, as they are
//! (keys stay sealed), and the cursor that makes an interrupted sync resume.

use super::events::Event;
use super::keys::SealedKeyRow;
use super::rotations::Rotation;
use super::{DbError, now_millis};
use sqlx::{Any, AnyPool, FromRow, Transaction};

/// A device row, every column.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub name: String,
    pub serial_number: String,
    pub credential_mode: String,
    pub identity_public_key: Option<Vec<u8>>,
    pub sealed_setup_secret: Option<Vec<u8>>,
    pub model: Option<String>,
    pub state: String,
    pub transport: Option<String>,
    pub port: Option<String>,
    pub current_key_id: Option<String>,
    pub failure: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub provisioned_at: Option<i64>,
    pub order_id: Option<String>,
}

/// A key row, every column (the key sealed).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct KeyRow {
    #[sqlx(flatten)]
    pub key: SealedKeyRow,
    pub check_value: Option<String>,
}

impl KeyRow {
    /// The same key, in the same state.
    pub fn matches(&self, other: &KeyRow) -> bool {
        self.key.key_id == other.key.key_id && self.key.state == other.key.state
    }
}

/// An event row, every column: the event and where it was first recorded.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    #[sqlx(flatten)]
    pub event: Event,
    pub origin: Option<String>,
}

const DEVICE_COLUMNS: &str = "id, name, serial_number, credential_mode, identity_public_key, sealed_setup_secret, model, \
     state, transport, port, current_key_id, failure, created_at, updated_at, provisioned_at, order_id";
const KEY_COLUMNS: &str =
    "key_id, device_id, kind, sealed_key, state, station_id, created_at, confirmed_at, check_value";
const ROTATION_COLUMNS: &str =
    "device_id, old_key_id, new_key_id, state, attempts, command_timestamps, started_at, updated_at, failure";

/// Up to `limit` devices after `after`, in id order.
pub async fn devices_after(pool: &AnyPool, after: &str, limit: i64) -> Result<Vec<DeviceRow>, DbError> {
    Ok(sqlx::query_as(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id > $1 ORDER BY id LIMIT $2"))
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

pub async fn device(pool: &AnyPool, id: &str) -> Result<Option<DeviceRow>, DbError> {
    Ok(sqlx::query_as(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

pub async fn keys_of(pool: &AnyPool, device_id: &str) -> Result<Vec<KeyRow>, DbError> {
    Ok(sqlx::query_as(&format!("SELECT {KEY_COLUMNS} FROM device_keys WHERE device_id = $1 ORDER BY key_id"))
        .bind(device_id)
        .fetch_all(pool)
        .await?)
}

pub async fn rotation_of(pool: &AnyPool, device_id: &str) -> Result<Option<Rotation>, DbError> {
    Ok(sqlx::query_as(&format!("SELECT {ROTATION_COLUMNS} FROM rotations WHERE device_id = $1"))
        .bind(device_id)
        .fetch_optional(pool)
        .await?)
}

/// Which key of the target holds this check value, if any.
pub async fn key_with_check_value(
    tx: &mut Transaction<'_, Any>,
    check_value: &str,
) -> Result<Option<(String, String)>, DbError> {
    Ok(sqlx::query_as("SELECT key_id, device_id FROM device_keys WHERE check_value = $1")
        .bind(check_value)
        .fetch_optional(&mut **tx)
        .await?)
}

/// Writes the device row as it is, inserting it or replacing the target's.
pub async fn put_device(tx: &mut Transaction<'_, Any>, row: &DeviceRow) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, serial_number = excluded.serial_number, \
         credential_mode = excluded.credential_mode, identity_public_key = excluded.identity_public_key, \
         sealed_setup_secret = excluded.sealed_setup_secret, model = excluded.model, state = excluded.state, \
         transport = excluded.transport, port = excluded.port, current_key_id = excluded.current_key_id, \
         failure = excluded.failure, updated_at = excluded.updated_at, provisioned_at = excluded.provisioned_at, \
         order_id = excluded.order_id"
    ))
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.serial_number)
    .bind(&row.credential_mode)
    .bind(row.identity_public_key.clone())
    .bind(row.sealed_setup_secret.clone())
    .bind(row.model.clone())
    .bind(&row.state)
    .bind(row.transport.clone())
    .bind(row.port.clone())
    .bind(row.current_key_id.clone())
    .bind(row.failure.clone())
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.provisioned_at)
    .bind(row.order_id.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes a key row, or brings the target's row of the same key to this state.
pub async fn put_key(tx: &mut Transaction<'_, Any>, row: &KeyRow) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO device_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (key_id) DO UPDATE SET state = excluded.state, confirmed_at = excluded.confirmed_at"
    ))
    .bind(&row.key.key_id)
    .bind(&row.key.device_id)
    .bind(&row.key.kind)
    .bind(row.key.sealed_key.clone())
    .bind(&row.key.state)
    .bind(&row.key.station_id)
    .bind(row.key.created_at)
    .bind(row.key.confirmed_at)
    .bind(row.check_value.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn put_rotation(tx: &mut Transaction<'_, Any>, row: &Rotation) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO rotations ({ROTATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (device_id) DO UPDATE SET old_key_id = excluded.old_key_id, new_key_id = excluded.new_key_id, \
         state = excluded.state, attempts = excluded.attempts, command_timestamps = excluded.command_timestamps, \
         started_at = excluded.started_at, updated_at = excluded.updated_at, failure = excluded.failure"
    ))
    .bind(&row.device_id)
    .bind(&row.old_key_id)
    .bind(&row.new_key_id)
    .bind(&row.state)
    .bind(row.attempts)
    .bind(&row.command_timestamps)
    .bind(row.started_at)
    .bind(row.updated_at)
    .bind(row.failure.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Up to `limit` events after the event id `after`.
pub async fn events_after(pool: &AnyPool, after: i64, limit: i64) -> Result<Vec<EventRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, at, device_id, station_id, operator, kind, detail, origin FROM events WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Copies an event, once: a copy is known by its origin. Returns whether it was new.
pub async fn put_event(tx: &mut Transaction<'_, Any>, row: &EventRow, origin: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO events (at, device_id, station_id, operator, kind, detail, origin) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (origin) DO NOTHING",
    )
    .bind(row.event.at)
    .bind(row.event.device_id.clone())
    .bind(&row.event.station_id)
    .bind(&row.event.operator)
    .bind(&row.event.kind)
    .bind(&row.event.detail)
    .bind(origin)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The last source event already copied to `target` (0: none).
pub async fn cursor(pool: &AnyPool, target: &str) -> Result<i64, DbError> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT last_event FROM sync_progress WHERE target = $1")
        .bind(target)
        .fetch_optional(pool)
        .await?;
    Ok(row.map_or(0, |(last,)| last))
}

pub async fn set_cursor(pool: &AnyPool, target: &str, last_event: i64) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO sync_progress (target, last_event, synced_at) VALUES ($1, $2, $3) \
         ON CONFLICT (target) DO UPDATE SET last_event = excluded.last_event, synced_at = excluded.synced_at",
    )
    .bind(target)
    .bind(last_event)
    .bind(now_millis())
    .execute(pool)
    .await?;
    Ok(())
}
