//! The operators' rows, and the counters that slow down guessing of their passphrases.

use super::DbError;
use crate::custody::OperatorRecord;
use crate::custody::roles::{OperatorName, Role};
use sqlx::{Any, AnyPool, FromRow, Transaction};

#[derive(FromRow)]
struct Row {
    name: String,
    role: String,
    signing_public: String,
    unlock_public: String,
    credential: String,
    card: Option<String>,
    removed_at: Option<i64>,
    changed_at: i64,
    signer: String,
    signature: String,
    failed_logins: i64,
    locked_until: i64,
}

/// An operator's record and login counters.
#[derive(Debug, Clone)]
pub struct StoredOperator {
    pub record: OperatorRecord,
    pub failed_logins: i64,
    pub locked_until: i64,
}

const COLUMNS: &str = "name, role, signing_public, unlock_public, credential, card, removed_at, changed_at, signer, \
                       signature, failed_logins, locked_until";

impl TryFrom<Row> for StoredOperator {
    type Error = DbError;

    fn try_from(row: Row) -> Result<Self, DbError> {
        let name = OperatorName::parse(&row.name)
            .map_err(|e| DbError::Inconsistent(format!("an operator's row has a bad name: {e}")))?;
        let role = Role::parse(&row.role)
            .ok_or_else(|| DbError::Inconsistent(format!("operator {name} has an unknown role")))?;
        let card = match row.card.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                serde_json::from_str(text)
                    .map_err(|_| DbError::Inconsistent(format!("the card of operator {name} is malformed")))?,
            ),
        };
        Ok(StoredOperator {
            record: OperatorRecord {
                name,
                role,
                signing_public: row.signing_public,
                unlock_public: row.unlock_public,
                credential: row.credential,
                card,
                removed_at: row.removed_at,
                changed_at: row.changed_at,
                signer: row.signer,
                signature: row.signature,
            },
            failed_logins: row.failed_logins,
            locked_until: row.locked_until,
        })
    }
}

pub async fn find(pool: &AnyPool, name: &OperatorName) -> Result<Option<StoredOperator>, DbError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(StoredOperator::try_from).transpose()
}

/// Every operator, removed ones included, by name.
pub async fn list(pool: &AnyPool) -> Result<Vec<StoredOperator>, DbError> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM operators ORDER BY name")).fetch_all(pool).await?;
    rows.into_iter().map(StoredOperator::try_from).collect()
}

/// Binds a record's fields as $1..$10, in the order of its columns: name, role, signing_public,
/// unlock_public, credential, removed_at, changed_at, signer, signature, card.
fn bind_record<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    record: &'q OperatorRecord,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(record.name.as_str())
        .bind(record.role.as_str())
        .bind(record.signing_public.as_str())
        .bind(record.unlock_public.as_str())
        .bind(record.credential.as_str())
        .bind(record.removed_at)
        .bind(record.changed_at)
        .bind(record.signer.as_str())
        .bind(record.signature.as_str())
        .bind(record.card.as_ref().map(|_| record.card_json()))
}

/// Stores a new operator's signed record; an existing name is refused.
pub async fn insert(tx: &mut Transaction<'_, Any>, record: &OperatorRecord) -> Result<bool, DbError> {
    let done = bind_record(
        sqlx::query(
            "INSERT INTO operators (name, role, signing_public, unlock_public, credential, removed_at, changed_at, \
         signer, signature, card) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (name) DO NOTHING",
        ),
        record,
    )
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces an operator's signed record (removal, new passphrase), clearing their counters.
pub async fn update(tx: &mut Transaction<'_, Any>, record: &OperatorRecord) -> Result<(), DbError> {
    bind_record(
        sqlx::query(
            "UPDATE operators SET role = $2, signing_public = $3, unlock_public = $4, credential = $5, removed_at = $6, \
         changed_at = $7, signer = $8, signature = $9, card = $10, failed_logins = 0, locked_until = 0 WHERE name = $1",
        ),
        record,
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Counts a wrong passphrase; returns the failures in a row and until when logins are refused.
pub async fn note_failure(pool: &AnyPool, name: &OperatorName, now: i64) -> Result<(i64, i64), DbError> {
    let (failed,): (i64,) = sqlx::query_as(
        "UPDATE operators SET failed_logins = failed_logins + 1 WHERE name = $1 RETURNING failed_logins",
    )
    .bind(name.as_str())
    .fetch_one(pool)
    .await?;
    let until = now + crate::custody::access::backoff_after(failed).as_millis() as i64;
    sqlx::query("UPDATE operators SET locked_until = $2 WHERE name = $1")
        .bind(name.as_str())
        .bind(until)
        .execute(pool)
        .await?;
    Ok((failed, until))
}

pub async fn clear_failures(pool: &AnyPool, name: &OperatorName) -> Result<(), DbError> {
    sqlx::query("UPDATE operators SET failed_logins = 0, locked_until = 0 WHERE name = $1")
        .bind(name.as_str())
        .execute(pool)
        .await?;
    Ok(())
}
