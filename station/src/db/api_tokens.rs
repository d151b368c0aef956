//! The API's tokens: a name, scopes and the hash of the secret; never the secret.

use super::DbError;
use crate::api::token::{Scope, TokenName};
use sqlx::{AnyPool, FromRow};

#[derive(FromRow)]
struct Row {
    id: String,
    name: String,
    scopes: String,
    secret_hash: String,
    created_at: i64,
    created_by: String,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

/// A token's row.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub id: String,
    pub name: TokenName,
    pub scopes: Vec<Scope>,
    pub secret_hash: String,
    pub created_at: i64,
    pub created_by: String,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl TryFrom<Row> for StoredToken {
    type Error = DbError;

    fn try_from(row: Row) -> Result<Self, DbError> {
        let name = TokenName::parse(&row.name)
            .map_err(|e| DbError::Inconsistent(format!("an API token's row has a bad name: {e}")))?;
        let scopes = Scope::split(&row.scopes)
            .ok_or_else(|| DbError::Inconsistent(format!("API token {name} has an unknown scope")))?;
        Ok(StoredToken {
            id: row.id,
            name,
            scopes,
            secret_hash: row.secret_hash,
            created_at: row.created_at,
            created_by: row.created_by,
            revoked_at: row.revoked_at,
            last_used_at: row.last_used_at,
        })
    }
}

const COLUMNS: &str = "id, name, scopes, secret_hash, created_at, created_by, revoked_at, last_used_at";

pub async fn insert(tx: &mut sqlx::Transaction<'_, sqlx::Any>, token: &StoredToken) -> Result<(), DbError> {
    sqlx::query(&format!("INSERT INTO api_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
        .bind(&token.id)
        .bind(token.name.as_str())
        .bind(Scope::join(&token.scopes))
        .bind(&token.secret_hash)
        .bind(token.created_at)
        .bind(&token.created_by)
        .bind(token.revoked_at)
        .bind(token.last_used_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn find(pool: &AnyPool, id: &str) -> Result<Option<StoredToken>, DbError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(StoredToken::try_from).transpose()
}

pub async fn find_by_name(pool: &AnyPool, name: &TokenName) -> Result<Option<StoredToken>, DbError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(StoredToken::try_from).transpose()
}

/// Every token, revoked ones included, by name.
pub async fn list(pool: &AnyPool) -> Result<Vec<StoredToken>, DbError> {
    let rows: Vec<Row> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY name")).fetch_all(pool).await?;
    rows.into_iter().map(StoredToken::try_from).collect()
}

/// Marks the token revoked; false when there is no such token or it was revoked already.
pub async fn revoke(tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &TokenName, at: i64) -> Result<bool, DbError> {
    let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
        .bind(at)
        .bind(name.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn touch(pool: &AnyPool, id: &str, at: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2").bind(at).bind(id).execute(pool).await?;
    Ok(())
}
