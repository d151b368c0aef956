//! Device keys, always sealed under the master key with (device id, key id) as associated data.

use super::{Backend, DbError, Inventory, now_millis};
use crate::seal::KeyCheckValue;
use sqlx::{Any, AnyPool, FromRow, Transaction};
use std::pin::Pin;
use tokio_stream::Stream;

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
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

/// A key about to be recorded: sealed, with its check value.
#[derive(Debug, Clone, Copy)]
pub struct NewKey<'a> {
    pub state: NewKeyState,
    pub key_id: &'a str,
    pub device_id: &'a str,
    pub kind: &'a str,
    pub sealed_key: &'a [u8],
    pub check_value: KeyCheckValue,
    pub station_id: &'a str,
}

/// Records a newly generated key, sealed. A key whose check value the inventory already holds
/// is refused ([`DbError::DuplicateKey`]) by the unique index, whichever station recorded the
/// other.
pub async fn insert(tx: &mut Transaction<'_, Any>, key: NewKey<'_>) -> Result<(), DbError> {
    let NewKey { state, key_id, device_id, kind, sealed_key, check_value, station_id } = key;
    // No read first: in SQLite a transaction that reads before it writes cannot wait for the
    // write lock (it fails "database is locked" at once under contention).
    let result = sqlx::query(
        "INSERT INTO device_keys (key_id, device_id, kind, sealed_key, state, station_id, created_at, confirmed_at, \
         check_value) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)",
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
    .bind(check_value.to_hex())
    .execute(&mut **tx)
    .await;
    // A rotated key's id is derived from the key, so its id repeating is the key repeating.
    let derived_id = state == NewKeyState::Next;
    match result {
        Err(error) if is_check_value_conflict(&error) || (derived_id && is_key_id_conflict(&error)) => {
            Err(DbError::DuplicateKey { check_value: check_value.to_hex() })
        }
        other => other.map(drop).map_err(DbError::from),
    }
}

/// Whether `error` is the key-id primary key refusing a row.
fn is_key_id_conflict(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation()
        && (database.message().contains("key_id") || database.message().contains("device_keys_pkey")))
}

/// Whether `error` is the unique check-value index refusing a row (SQLite names the column,
/// PostgreSQL the index).
pub fn is_check_value_conflict(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database) if database.is_unique_violation() && database.message().contains("check_value"))
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

/// A key as the check-value scans read it.
#[derive(Debug, Clone, FromRow)]
pub struct CheckRow {
    pub key_id: String,
    pub device_id: String,
    pub state: String,
    pub station_id: String,
    pub sealed_key: Vec<u8>,
    pub check_value: Option<String>,
}

/// Up to `limit` keys after `after` in key-id order; `missing_only` keeps those without a check
/// value.
pub async fn check_page(pool: &AnyPool, after: &str, limit: i64, missing_only: bool) -> Result<Vec<CheckRow>, DbError> {
    let filter = if missing_only { "AND check_value IS NULL" } else { "" };
    Ok(sqlx::query_as(&format!(
        "SELECT key_id, device_id, state, station_id, sealed_key, check_value FROM device_keys \
         WHERE key_id > $1 {filter} ORDER BY key_id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// One key as [`check_page`] reads it.
pub async fn check_row(pool: &AnyPool, key_id: &str) -> Result<Option<CheckRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT key_id, device_id, state, station_id, sealed_key, check_value FROM device_keys WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?)
}

/// Stores a check value computed for a key recorded without one. False when another key holds
/// that value already (a duplicate: the row is left without one, for the scan to name).
pub async fn set_check_value(pool: &AnyPool, key_id: &str, check_value: &KeyCheckValue) -> Result<bool, DbError> {
    let result = sqlx::query("UPDATE device_keys SET check_value = $1 WHERE key_id = $2 AND check_value IS NULL")
        .bind(check_value.to_hex())
        .bind(key_id)
        .execute(pool)
        .await;
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_check_value_conflict(&error) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Whether any key lacks a check value.
pub async fn any_without_check_value(pool: &AnyPool) -> Result<bool, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT key_id FROM device_keys WHERE check_value IS NULL LIMIT 1").fetch_optional(pool).await?;
    Ok(row.is_some())
}

/// Any one key, to learn whether a master key opens this inventory's keys.
pub async fn any_one(pool: &AnyPool) -> Result<Option<CheckRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT key_id, device_id, state, station_id, sealed_key, check_value FROM device_keys ORDER BY key_id LIMIT 1",
    )
    .fetch_optional(pool)
    .await?)
}
