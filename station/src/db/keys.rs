//! Device keys, always sealed under the master key with (device id, key id) as associated data.

use super::{Backend, DbError, Inventory, now_millis};
use sqlx::{Any, AnyPool, FromRow, Transaction};
use std::pin::Pin;
use tokio_stream::Stream;

#[derive(Debug, Clone, FromRow)]
pub struct SealedKeyRow {
    pub key_id: String,
    pub device_id: String,
    pub kind: String,
    pub sealed_key: Vec<u8>,
    pub state: String,
    pub station_id: String,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

/// The state a key is born in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKeyState {
    /// Generated for provisioning, about to be delivered.
    Pending,
    /// Generated for a rotation, sent but not yet confirmed.
    Next,
}

/// Records a newly generated key, sealed.
pub async fn insert(
    tx: &mut Transaction<'_, Any>,
    state: NewKeyState,
    key_id: &str,
    device_id: &str,
    kind: &str,
    sealed_key: &[u8],
    station_id: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO device_keys (key_id, device_id, kind, sealed_key, state, station_id, created_at, confirmed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
    )
    .bind(key_id)
    .bind(device_id)
    .bind(kind)
    .bind(sealed_key.to_vec())
    .bind(match state {
        NewKeyState::Pending => "pending",
        NewKeyState::Next => "next",
    })
    .bind(station_id)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(pool: &AnyPool, key_id: &str) -> Result<Option<SealedKeyRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT key_id, device_id, kind, sealed_key, state, station_id, created_at, confirmed_at FROM device_keys WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?)
}

/// The device proved it holds the key.
pub async fn mark_active(tx: &mut Transaction<'_, Any>, key_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE device_keys SET state = 'active', confirmed_at = $1 WHERE key_id = $2")
        .bind(now_millis())
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn mark_failed(tx: &mut Transaction<'_, Any>, key_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE device_keys SET state = 'failed' WHERE key_id = $1 AND state = 'pending'")
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A key replaced by a confirmed successor.
pub async fn retire(tx: &mut Transaction<'_, Any>, key_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE device_keys SET state = 'retired' WHERE key_id = $1").bind(key_id).execute(&mut **tx).await?;
    Ok(())
}

/// A provisioned device and its current key, as the exports read them a page at a time.
#[derive(Debug, PartialEq, Eq, FromRow)]
pub struct ProvisionedKeyRow {
    pub device_id: String,
    pub name: String,
    pub current_key_id: Option<String>,
    pub provisioned_at: Option<i64>,
    pub rotation_state: Option<String>,
    pub key_state: Option<String>,
    pub sealed_key: Option<Vec<u8>>,
    pub key_created_at: Option<i64>,
    pub confirmed_at: Option<i64>,
}

/// Every provisioned device with its current key and rotation state, in device-id order: one
/// query over indexes that hold what is read of each table in that order (`devices_for_export`,
/// `device_keys_for_export`, `rotations_for_export`), a merge of three sequential walks, its
/// rows read as they arrive. SQLite names the indexes: its planner prefers a unique index to a
/// covering one of the same selectivity.
pub const PROVISIONED_KEYS_SQLITE: &str = "SELECT d.id AS device_id, d.name, d.current_key_id, d.provisioned_at, \
     r.state AS rotation_state, k.state AS key_state, k.sealed_key, k.created_at AS key_created_at, k.confirmed_at \
     FROM devices d LEFT JOIN rotations r INDEXED BY rotations_for_export ON r.device_id = d.id \
     LEFT JOIN device_keys k INDEXED BY device_keys_for_export ON k.device_id = d.id AND k.key_id = d.current_key_id \
     WHERE d.state = 'provisioned' ORDER BY d.id";

/// [`PROVISIONED_KEYS_SQLITE`] for PostgreSQL, whose planner finds the merge by itself.
const PROVISIONED_KEYS_POSTGRES: &str = "SELECT d.id AS device_id, d.name, d.current_key_id, d.provisioned_at, \
     r.state AS rotation_state, k.state AS key_state, k.sealed_key, k.created_at AS key_created_at, k.confirmed_at \
     FROM devices d LEFT JOIN rotations r ON r.device_id = d.id \
     LEFT JOIN device_keys k ON k.device_id = d.id AND k.key_id = d.current_key_id \
     WHERE d.state = 'provisioned' ORDER BY d.id";

/// The rows of [`PROVISIONED_KEYS_SQLITE`] as a stream, read as they arrive: memory holds what
/// the caller keeps, whatever the count.
pub fn provisioned_rows(
    inventory: &Inventory,
) -> Pin<Box<dyn Stream<Item = Result<ProvisionedKeyRow, sqlx::Error>> + Send + '_>> {
    let query = match inventory.backend() {
        Backend::Sqlite => PROVISIONED_KEYS_SQLITE,
        Backend::Postgres => PROVISIONED_KEYS_POSTGRES,
    };
    sqlx::query_as(query).fetch(inventory.pool())
}
