//! C2 export ledger: per C2 server and device, the key delivered and a POST whose answer never
//! came; and one row per device and export run.

use super::{DbError, now_millis};
use sqlx::{Any, AnyPool, FromRow, Transaction};

#[derive(Debug, Clone, FromRow)]
pub struct RegistrationRow {
    pub device_id: String,
    pub delivered_key_id: Option<String>,
    pub sending_key_id: Option<String>,
    pub sending_as: Option<String>,
}

/// Every registration this station holds for `target`.
pub async fn registrations(pool: &AnyPool, target: &str) -> Result<Vec<RegistrationRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT device_id, delivered_key_id, sending_key_id, sending_as FROM c2_registrations WHERE target = $1",
    )
    .bind(target)
    .fetch_all(pool)
    .await?)
}

/// Written before a POST: this key may reach C2 from now on.
pub async fn begin_sending(
    pool: &AnyPool,
    target: &str,
    device_id: &str,
    key_id: &str,
    sending_as: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO c2_registrations (target, device_id, delivered_key_id, delivered_at, sending_key_id, sending_as, updated_at) \
         VALUES ($1, $2, NULL, NULL, $3, $4, $5) \
         ON CONFLICT (target, device_id) DO UPDATE SET sending_key_id = excluded.sending_key_id, \
         sending_as = excluded.sending_as, updated_at = excluded.updated_at",
    )
    .bind(target)
    .bind(device_id)
    .bind(key_id)
    .bind(sending_as)
    .bind(now_millis())
    .execute(pool)
    .await?;
    Ok(())
}

/// C2 acknowledged `key_id`.
pub async fn mark_delivered(
    tx: &mut Transaction<'_, Any>,
    target: &str,
    device_id: &str,
    key_id: &str,
) -> Result<(), DbError> {
    let now = now_millis();
    sqlx::query(
        "INSERT INTO c2_registrations (target, device_id, delivered_key_id, delivered_at, sending_key_id, sending_as, updated_at) \
         VALUES ($1, $2, $3, $4, NULL, NULL, $5) \
         ON CONFLICT (target, device_id) DO UPDATE SET delivered_key_id = excluded.delivered_key_id, \
         delivered_at = excluded.delivered_at, sending_key_id = NULL, sending_as = NULL, updated_at = excluded.updated_at",
    )
    .bind(target)
    .bind(device_id)
    .bind(key_id)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// C2 refused the POST outright: it stored nothing.
pub async fn clear_sending(tx: &mut Transaction<'_, Any>, target: &str, device_id: &str) -> Result<(), DbError> {
    sqlx::query(
        "UPDATE c2_registrations SET sending_key_id = NULL, sending_as = NULL, updated_at = $1 \
         WHERE target = $2 AND device_id = $3",
    )
    .bind(now_millis())
    .bind(target)
    .bind(device_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One device's result in one export run.
#[derive(Debug, Clone)]
pub struct ExportRow<'a> {
    pub run_id: &'a str,
    pub target: &'a str,
    pub device_id: &'a str,
    pub key_id: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub attempts: u32,
    pub operator: &'a str,
}

pub async fn record(tx: &mut Transaction<'_, Any>, row: &ExportRow<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO c2_exports (run_id, target, device_id, key_id, outcome, reason, attempts, at, operator) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(row.run_id)
    .bind(row.target)
    .bind(row.device_id)
    .bind(row.key_id.map(str::to_owned))
    .bind(row.outcome)
    .bind(row.reason.map(str::to_owned))
    .bind(i64::from(row.attempts))
    .bind(now_millis())
    .bind(row.operator)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A stored export result, newest first in [`for_device`].
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct StoredExport {
    pub run_id: String,
    pub target: String,
    pub key_id: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub attempts: i64,
    pub at: i64,
}

pub async fn for_device(pool: &AnyPool, device_id: &str) -> Result<Vec<StoredExport>, DbError> {
    Ok(sqlx::query_as(
        "SELECT run_id, target, key_id, outcome, reason, attempts, at FROM c2_exports WHERE device_id = $1 ORDER BY id DESC",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await?)
}
