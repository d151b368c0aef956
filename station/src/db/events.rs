//! The station's event log: what was provisioned, failed or reconciled, when, by whom.

use super::{DbError, now_millis};
use serde::Serialize;
use sqlx::{Any, AnyPool, FromRow, Transaction};

#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub device_id: Option<String>,
    pub station_id: String,
    pub operator: String,
    pub kind: String,
    pub detail: String,
}

/// Who did it and where.
#[derive(Debug, Clone)]
pub struct Actor {
    pub station_id: String,
    pub operator: String,
}

pub async fn record(
    tx: &mut Transaction<'_, Any>,
    actor: &Actor,
    device_id: Option<&str>,
    kind: &str,
    detail: &str,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO events (at, device_id, station_id, operator, kind, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_millis())
    .bind(device_id.map(str::to_owned))
    .bind(&actor.station_id)
    .bind(&actor.operator)
    .bind(kind)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn for_device(pool: &AnyPool, device_id: &str) -> Result<Vec<Event>, DbError> {
    Ok(sqlx::query_as(
        "SELECT id, at, device_id, station_id, operator, kind, detail FROM events WHERE device_id = $1 ORDER BY id",
    )
    .bind(device_id)
    .fetch_all(pool)
    .await?)
}
