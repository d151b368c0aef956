//! Device keys, always sealed under the master key with (device id, key id) as associated data.

use super::{DbError, now_millis};
use sqlx::{Any, AnyPool, FromRow, Transaction};

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

/// A new key as generated for provisioning (`pending`) or for a rotation (`next`).
async fn insert(
    tx: &mut Transaction<'_, Any>,
    state: &str,
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
    .bind(state)
    .bind(station_id)
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn insert_pending(
    tx: &mut Transaction<'_, Any>,
    key_id: &str,
    device_id: &str,
    kind: &str,
    sealed_key: &[u8],
    station_id: &str,
) -> Result<(), DbError> {
    insert(tx, "pending", key_id, device_id, kind, sealed_key, station_id).await
}

pub async fn get(pool: &AnyPool, key_id: &str) -> Result<Option<SealedKeyRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT key_id, device_id, kind, sealed_key, state, station_id, created_at, confirmed_at FROM device_keys WHERE key_id = $1",
    )
    .bind(key_id)
    .fetch_optional(pool)
    .await?)
}

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

/// Inserts a key sent in a rotation, not yet confirmed.
pub async fn insert_next(
    tx: &mut Transaction<'_, Any>,
    key_id: &str,
    device_id: &str,
    kind: &str,
    sealed_key: &[u8],
    station_id: &str,
) -> Result<(), DbError> {
    insert(tx, "next", key_id, device_id, kind, sealed_key, station_id).await
}

pub async fn set_state(tx: &mut Transaction<'_, Any>, key_id: &str, state: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE device_keys SET state = $1, confirmed_at = CASE WHEN $2 = 'active' THEN $3 ELSE confirmed_at END WHERE key_id = $4")
        .bind(state)
        .bind(state)
        .bind(now_millis())
        .bind(key_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
