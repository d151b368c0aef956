//! What the inventory says about itself: the master key its secrets are sealed under, and the
//! stations that use it.

use super::{DbError, now_millis};
use crate::seal::KeyCheckValue;
use sqlx::{AnyPool, FromRow};

const MASTER_KEY_CHECK: &str = "master_key_check";
const INVENTORY_ID: &str = "inventory_id";

/// This inventory's own random id (made the first time it is asked for): names it as the source
/// or the target of a sync, whatever its URL.
pub async fn inventory_id(pool: &AnyPool) -> Result<String, DbError> {
    let fresh = crate::seal::random_array::<16>().map_err(|_| DbError::Inconsistent("no random source".into()))?;
    sqlx::query("INSERT INTO inventory_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(INVENTORY_ID)
        .bind(hex::encode(fresh))
        .execute(pool)
        .await?;
    let row: (String,) =
        sqlx::query_as("SELECT value FROM inventory_meta WHERE name = $1").bind(INVENTORY_ID).fetch_one(pool).await?;
    Ok(row.0)
}

/// The master key's check value the inventory was claimed with, if any.
pub async fn master_key_check(pool: &AnyPool) -> Result<Option<String>, DbError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT value FROM inventory_meta WHERE name = $1")
        .bind(MASTER_KEY_CHECK)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|(value,)| value))
}

/// Records `check` as the inventory's master key unless one is recorded already; returns the
/// one recorded (this one, or an earlier station's).
pub async fn claim_master_key(pool: &AnyPool, check: &KeyCheckValue) -> Result<String, DbError> {
    sqlx::query("INSERT INTO inventory_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(MASTER_KEY_CHECK)
        .bind(check.to_hex())
        .execute(pool)
        .await?;
    master_key_check(pool).await?.ok_or_else(|| DbError::Inconsistent("the master key check vanished".into()))
}

/// A station that has used this inventory.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct StationRow {
    pub station_id: String,
    pub name: String,
    pub certificate: Vec<u8>,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// Records (or refreshes) a station's identity and certificate.
pub async fn register_station(pool: &AnyPool, station_id: &str, name: &str, certificate: &[u8]) -> Result<(), DbError> {
    put_station(pool, station_id, name, certificate, true).await
}

pub async fn stations(pool: &AnyPool) -> Result<Vec<StationRow>, DbError> {
    Ok(sqlx::query_as(
        "SELECT station_id, name, certificate, first_seen, last_seen FROM stations ORDER BY first_seen, station_id",
    )
    .fetch_all(pool)
    .await?)
}

/// The name a station registered, or "unknown station" for one that never did (its records came
/// from elsewhere, or it predates the registry).
pub async fn station_name(pool: &AnyPool, station_id: &str) -> Result<String, DbError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT name FROM stations WHERE station_id = $1").bind(station_id).fetch_optional(pool).await?;
    Ok(row.map(|(name,)| name).unwrap_or_else(|| "unknown station".into()))
}

/// Records a station unless the inventory knows it already (a sync that finds nothing to copy
/// changes nothing).
pub async fn ensure_station(pool: &AnyPool, station_id: &str, name: &str, certificate: &[u8]) -> Result<(), DbError> {
    put_station(pool, station_id, name, certificate, false).await
}

async fn put_station(
    pool: &AnyPool,
    station_id: &str,
    name: &str,
    certificate: &[u8],
    refresh: bool,
) -> Result<(), DbError> {
    let on_conflict = if refresh {
        "DO UPDATE SET name = excluded.name, certificate = excluded.certificate, last_seen = excluded.last_seen"
    } else {
        "DO NOTHING"
    };
    let now = now_millis();
    sqlx::query(&format!(
        "INSERT INTO stations (station_id, name, certificate, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (station_id) {on_conflict}"
    ))
    .bind(station_id)
    .bind(name)
    .bind(certificate.to_vec())
    .bind(now)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}
