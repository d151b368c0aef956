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
