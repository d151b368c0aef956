//! Rotations: one record per device, from `rotation_pending` to `active` (confirmed under the new
//! key) or `rotation_failed` (both keys kept; the device's next contact tells which it uses).

use super::{DbError, now_millis};
use serde::Serialize;
use sqlx::{Any, AnyPool, FromRow, Transaction};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Rotation {
    pub device_id: String,
    pub old_key_id: String,
    pub new_key_id: String,
    pub state: String,
    pub attempts: i64,
    /// Comma-separated Unix seconds of every SetIdKey sent for this rotation.
    pub command_timestamps: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub failure: Option<String>,
}

impl Rotation {
    pub fn sent_timestamps(&self) -> Vec<u64> {
        self.command_timestamps.split(',').filter_map(|t| t.parse().ok()).collect()
    }
}

const SELECT: &str = "SELECT device_id, old_key_id, new_key_id, state, attempts, command_timestamps, started_at, updated_at, failure FROM rotations";

pub async fn get(pool: &AnyPool, device_id: &str) -> Result<Option<Rotation>, DbError> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE device_id = $1")).bind(device_id).fetch_optional(pool).await?)
}

pub async fn list_in_state(pool: &AnyPool, state: &str) -> Result<Vec<Rotation>, DbError> {
    Ok(sqlx::query_as(&format!("{SELECT} WHERE state = $1 ORDER BY started_at")).bind(state).fetch_all(pool).await?)
}

/// Starts (or restarts after a failure or a completed rotation) the device's rotation record.
pub async fn start(
    tx: &mut Transaction<'_, Any>,
    device_id: &str,
    old_key_id: &str,
    new_key_id: &str,
) -> Result<(), DbError> {
    let now = now_millis();
    sqlx::query("DELETE FROM rotations WHERE device_id = $1").bind(device_id).execute(&mut **tx).await?;
    sqlx::query(
        "INSERT INTO rotations (device_id, old_key_id, new_key_id, state, attempts, command_timestamps, started_at, updated_at, failure) \
         VALUES ($1, $2, $3, 'rotation_pending', 0, '', $4, $5, NULL)",
    )
    .bind(device_id)
    .bind(old_key_id)
    .bind(new_key_id)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a sent SetIdKey; written before it is published.
pub async fn record_attempt(pool: &AnyPool, device_id: &str, timestamps: &[u64]) -> Result<(), DbError> {
    let joined = timestamps.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    sqlx::query("UPDATE rotations SET attempts = $1, command_timestamps = $2, updated_at = $3 WHERE device_id = $4")
        .bind(timestamps.len() as i64)
        .bind(joined)
        .bind(now_millis())
        .bind(device_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn set_state(
    tx: &mut Transaction<'_, Any>,
    device_id: &str,
    state: &str,
    failure: Option<&str>,
) -> Result<(), DbError> {
    sqlx::query("UPDATE rotations SET state = $1, failure = $2, updated_at = $3 WHERE device_id = $4")
        .bind(state)
        .bind(failure.map(str::to_owned))
        .bind(now_millis())
        .bind(device_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
