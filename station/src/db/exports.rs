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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Inventory, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
    use sqlx::Row;
    use sqlx::migrate::Migrator;

    const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    /// A database left by a station whose last migration was 0003, holding one export that
    /// ended `unchanged`, as that version called an export with nothing to send.
    async fn ledger_before_0004(url: &str, full: &Migrator) -> Result<(), DbError> {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await?;
        let up_to_0003 = Migrator { migrations: full.migrations[..3].to_vec().into(), ..Migrator::DEFAULT };
        up_to_0003.run(&pool).await?;
        sqlx::query(
            "INSERT INTO devices (id, name, serial_number, credential_mode, state, created_at, updated_at) \
             VALUES ('aa', 'dev-1', 'SN-1', 'identity', 'provisioned', 1, 1)",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "INSERT INTO c2_exports (run_id, target, device_id, key_id, outcome, reason, attempts, at, operator) \
             VALUES ('r1', 'https://c2:8888', 'aa', 'k1', 'unchanged', NULL, 0, 1, 'alice')",
        )
        .execute(&pool)
        .await?;
        pool.close().await;
        Ok(())
    }

    async fn check_renamed(url: &str, full: &Migrator) -> Result<(), DbError> {
        ledger_before_0004(url, full).await?;
        let inventory = Inventory::open(url).await?;
        let pool = inventory.pool();
        let outcomes: Vec<String> = sqlx::query("SELECT outcome FROM c2_exports")
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        assert_eq!(outcomes, ["already_exported"], "{url}");
        let mut tx = pool.begin().await?;
        let row = |outcome| ExportRow {
            run_id: "r2",
            target: "https://c2:8888",
            device_id: "aa",
            key_id: Some("k1"),
            outcome,
            reason: None,
            attempts: 0,
            operator: "bob",
        };
        record(&mut tx, &row("already_exported")).await?;
        tx.commit().await?;
        let mut tx = pool.begin().await?;
        assert!(record(&mut tx, &row("unchanged")).await.is_err(), "{url}: the old word is gone");
        drop(tx);
        assert_eq!(for_device(pool, "aa").await?.len(), 2);
        inventory.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn c2_export_ledger_migration_renames_unchanged_to_already_exported() -> Result<(), DbError> {
        let dir = tempfile::tempdir().map_err(|e| DbError::Inconsistent(e.to_string()))?;
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("ledger.db").display());
        check_renamed(&sqlite, &SQLITE_MIGRATIONS).await?;

        sqlx::any::install_default_drivers();
        let admin = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(POSTGRES_ADMIN_URL).await?;
        let name = format!("keyfill_ledger_{}", hex::encode(crate::seal::random_array::<6>().unwrap_or_default()));
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin).await?;
        let result = check_renamed(&format!("postgres://postgres@127.0.0.1:5432/{name}"), &POSTGRES_MIGRATIONS).await;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&admin).await?;
        result
    }
}
