//! Device leases: the row that lets one station process at a time work on a device, across every
//! station sharing the database.
//!
//! A lease is taken with one atomic upsert that succeeds only when the device has no lease, its
//! lease has expired, or the taker already holds it; PostgreSQL serialises takers on the primary
//! key, SQLite on its write lock. Times come from the database's clock, so stations whose clocks
//! disagree still agree on when a lease ends. Every state change of a leased device checks, in
//! its own transaction, that the lease is still held ([`fence`]): a station that lost its lease
//! (stalled past its expiry) cannot overwrite what the next holder did.

use super::{Backend, DbError};
use sqlx::{Any, AnyPool, FromRow, Transaction};

/// The database clock in Unix milliseconds, as SQL.
fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS BIGINT)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// A lease as stored, with the database's time when it was read.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LeaseRow {
    pub device_id: String,
    pub station_id: String,
    pub holder: String,
    pub purpose: String,
    pub acquired_at: i64,
    pub expires_at: i64,
    pub now: i64,
}

impl LeaseRow {
    pub fn expired(&self) -> bool {
        self.expires_at <= self.now
    }
}

/// Who asks for a lease, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub device_id: &'a str,
    pub station_id: &'a str,
    pub holder: &'a str,
    pub purpose: &'a str,
    pub ttl_millis: i64,
    /// A holder known to be dead ([`crate::lease::holder_is_dead`]) whose lease may be taken
    /// before it expires.
    pub replacing: Option<&'a str>,
}

/// How a request for a lease ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Taken; `previous` is the expired lease of another holder it replaced, if any.
    Yes { previous: Option<LeaseRow> },
    /// Another holder has it until it expires.
    HeldBy(LeaseRow),
}

/// Takes the device's lease, or says who holds it.
pub async fn take(pool: &AnyPool, backend: Backend, claim: Claim<'_>) -> Result<Taken, DbError> {
    let now = now_sql(backend);
    let before = get(pool, backend, claim.device_id).await?;
    let taken: Option<(String,)> = sqlx::query_as(&format!(
        "INSERT INTO device_leases (device_id, station_id, holder, purpose, acquired_at, expires_at) \
         VALUES ($1, $2, $3, $4, {now}, {now} + $5) \
         ON CONFLICT (device_id) DO UPDATE SET station_id = excluded.station_id, holder = excluded.holder, \
         purpose = excluded.purpose, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at \
         WHERE device_leases.expires_at <= excluded.acquired_at OR device_leases.holder = excluded.holder \
         OR device_leases.holder = $6 RETURNING holder"
    ))
    .bind(claim.device_id)
    .bind(claim.station_id)
    .bind(claim.holder)
    .bind(claim.purpose)
    .bind(claim.ttl_millis)
    .bind(claim.replacing.unwrap_or(""))
    .fetch_optional(pool)
    .await?;
    if taken.is_some() {
        let previous = before.filter(|row| row.holder != claim.holder);
        return Ok(Taken::Yes { previous });
    }
    match get(pool, backend, claim.device_id).await? {
        Some(row) => Ok(Taken::HeldBy(row)),
        // Released between the two statements: ask again.
        None => Box::pin(take(pool, backend, claim)).await,
    }
}

/// The device's lease, if it has one (expired or not).
pub async fn get(pool: &AnyPool, backend: Backend, device_id: &str) -> Result<Option<LeaseRow>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT device_id, station_id, holder, purpose, acquired_at, expires_at, {} AS now \
         FROM device_leases WHERE device_id = $1",
        now_sql(backend)
    ))
    .bind(device_id)
    .fetch_optional(pool)
    .await?)
}

/// Extends a held lease; false when `holder` no longer holds it. A lease past its end that no
/// one took is still its holder's: only a taker, which writes its own name, ends a hold, so a
/// station slowed past the end (a loaded machine, a pool that made it wait) keeps what no other
/// station wanted.
pub async fn renew(
    pool: &AnyPool,
    backend: Backend,
    device_id: &str,
    holder: &str,
    ttl_millis: i64,
) -> Result<bool, DbError> {
    extend(pool, backend, device_id, holder, ttl_millis).await
}

/// Inside a transaction that changes the device: extends the lease and checks that `holder`
/// still holds it. On PostgreSQL the row stays locked until the transaction ends, so no other
/// station can take the lease between this check and the commit.
pub async fn fence(
    tx: &mut Transaction<'_, Any>,
    backend: Backend,
    device_id: &str,
    holder: &str,
    ttl_millis: i64,
) -> Result<bool, DbError> {
    extend(&mut **tx, backend, device_id, holder, ttl_millis).await
}

async fn extend<'e>(
    executor: impl sqlx::Executor<'e, Database = Any>,
    backend: Backend,
    device_id: &str,
    holder: &str,
    ttl_millis: i64,
) -> Result<bool, DbError> {
    let now = now_sql(backend);
    let done =
        sqlx::query(&format!("UPDATE device_leases SET expires_at = {now} + $1 WHERE device_id = $2 AND holder = $3"))
            .bind(ttl_millis)
            .bind(device_id)
            .bind(holder)
            .execute(executor)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease up, if `holder` holds it.
pub async fn release<'e, E: sqlx::Executor<'e, Database = Any>>(
    executor: E,
    device_id: &str,
    holder: &str,
) -> Result<(), DbError> {
    sqlx::query("DELETE FROM device_leases WHERE device_id = $1 AND holder = $2")
        .bind(device_id)
        .bind(holder)
        .execute(executor)
        .await?;
    Ok(())
}
