//! The audit log's rows: appending an entry to a station's chain inside the transaction that
//! makes the change it records, and reading chains back for verification and export.

use super::{DbError, now_millis};
use crate::audit::{AuditKey, entry_id};
use keyfill_formats::audit::{self as format, CheckpointFields, EntryFields, GENESIS};
use serde::Serialize;
use sqlx::{Any, AnyPool, FromRow, Transaction};

/// A checkpoint is written into the database after every so many entries of a chain.
pub const CHECKPOINT_EVERY: i64 = 100;

/// Who recorded an entry: the station, its signing key and the operator.
#[derive(Debug, Clone)]
pub struct Recorder<'a> {
    pub station_id: &'a str,
    pub operator: &'a str,
    pub key: &'a AuditKey,
}

/// Appends an entry to the chain of `recorder`'s station, in `tx`: the entry is part of the
/// change it records, or of nothing. Appends of one station take turns on the chain's head row
/// until their transactions end. Returns the entry's id ([`entry_id`]).
pub async fn append(
    tx: &mut Transaction<'_, Any>,
    recorder: &Recorder<'_>,
    at: i64,
    device_id: Option<&str>,
    kind: &str,
    detail: &str,
) -> Result<String, DbError> {
    let (seq, previous, last_signer): (i64, String, String) = sqlx::query_as(
        "INSERT INTO audit_heads (station_id, seq, hash, signer) VALUES ($1, 1, $2, '') \
         ON CONFLICT (station_id) DO UPDATE SET seq = audit_heads.seq + 1 RETURNING seq, hash, signer",
    )
    .bind(recorder.station_id)
    .bind(hex::encode(GENESIS))
    .fetch_one(&mut **tx)
    .await?;
    let previous = decode_hash(&previous).ok_or_else(|| {
        DbError::Inconsistent(format!("the audit chain head of station {} is not a hash", recorder.station_id))
    })?;
    let fields =
        EntryFields { station_id: recorder.station_id, at, operator: recorder.operator, kind, device_id, detail };
    let hash = format::entry_hash(&fields, &previous);
    let signature = recorder.key.sign(&format::entry_signing_input(&hash)).map_err(signing_failed)?;
    if last_signer != recorder.key.public_hex() {
        register_signer(tx, recorder).await?;
    }
    let hash_hex = hex::encode(hash);
    sqlx::query(
        "INSERT INTO audit_log (station_id, seq, at, operator, kind, device_id, detail, prev_hash, hash, signer, \
         signature) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(recorder.station_id)
    .bind(seq)
    .bind(at)
    .bind(recorder.operator)
    .bind(kind)
    .bind(device_id.map(str::to_owned))
    .bind(detail)
    .bind(hex::encode(previous))
    .bind(&hash_hex)
    .bind(recorder.key.public_hex())
    .bind(hex::encode(signature))
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE audit_heads SET hash = $1, signer = $2 WHERE station_id = $3")
        .bind(&hash_hex)
        .bind(recorder.key.public_hex())
        .bind(recorder.station_id)
        .execute(&mut **tx)
        .await?;
    if seq % CHECKPOINT_EVERY == 0 {
        insert_checkpoint(tx, recorder, seq, &hash, at).await?;
    }
    let id = entry_id(recorder.station_id, seq);
    tracing::info!(target: "keyfill_audit", audit_id = %id, kind, device_id, operator = recorder.operator, "audit entry");
    Ok(id)
}

/// Appends an entry that records no other change, in a transaction of its own.
pub async fn append_alone(
    pool: &AnyPool,
    recorder: &Recorder<'_>,
    device_id: Option<&str>,
    kind: &str,
    detail: &str,
) -> Result<String, DbError> {
    let mut tx = pool.begin().await?;
    let id = append(&mut tx, recorder, now_millis(), device_id, kind, detail).await?;
    tx.commit().await?;
    Ok(id)
}

fn signing_failed(error: crate::bundle::SignerError) -> DbError {
    DbError::AuditSigning(error.to_string())
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

async fn register_signer(tx: &mut Transaction<'_, Any>, recorder: &Recorder<'_>) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO audit_signers (public_key, station_id, certificate) VALUES ($1, $2, $3) \
         ON CONFLICT (public_key) DO NOTHING",
    )
    .bind(recorder.key.public_hex())
    .bind(recorder.station_id)
    .bind(hex::encode(recorder.key.certificate().encode()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_checkpoint(
    tx: &mut Transaction<'_, Any>,
    recorder: &Recorder<'_>,
    seq: i64,
    hash: &[u8; 32],
    at: i64,
) -> Result<StoredCheckpoint, DbError> {
    let fields = CheckpointFields { station_id: recorder.station_id, seq: seq as u64, hash, at };
    let signature = recorder.key.sign(&format::checkpoint_signing_input(&fields)).map_err(signing_failed)?;
    let checkpoint = StoredCheckpoint {
        station_id: recorder.station_id.to_owned(),
        seq,
        hash: hex::encode(hash),
        at,
        signer: recorder.key.public_hex().to_owned(),
        signature: hex::encode(signature),
    };
    sqlx::query(
        "INSERT INTO audit_checkpoints (station_id, seq, hash, at, signer, signature) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&checkpoint.station_id)
    .bind(checkpoint.seq)
    .bind(&checkpoint.hash)
    .bind(checkpoint.at)
    .bind(&checkpoint.signer)
    .bind(&checkpoint.signature)
    .execute(&mut **tx)
    .await?;
    Ok(checkpoint)
}

/// Signs a checkpoint at the chain's current end now and stores it; `None` when the station
/// has recorded nothing yet. Waits for the appends under way.
pub async fn checkpoint_now(pool: &AnyPool, recorder: &Recorder<'_>) -> Result<Option<StoredCheckpoint>, DbError> {
    let mut tx = pool.begin().await?;
    // Locks the head row: no entry is appended between reading the head and signing it.
    let head: Option<(i64, String)> =
        sqlx::query_as("UPDATE audit_heads SET seq = seq WHERE station_id = $1 RETURNING seq, hash")
            .bind(recorder.station_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((seq, hash)) = head else { return Ok(None) };
    let hash = decode_hash(&hash).ok_or_else(|| {
        DbError::Inconsistent(format!("the audit chain head of station {} is not a hash", recorder.station_id))
    })?;
    let checkpoint = insert_checkpoint(&mut tx, recorder, seq, &hash, now_millis()).await?;
    tx.commit().await?;
    Ok(Some(checkpoint))
}

/// An entry as stored.
#[derive(Debug, Clone, Serialize, serde::Deserialize, FromRow, PartialEq, Eq)]
pub struct StoredEntry {
    pub station_id: String,
    pub seq: i64,
    pub at: i64,
    pub operator: String,
    pub kind: String,
    pub device_id: Option<String>,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
    pub signer: String,
    pub signature: String,
}

/// A checkpoint as stored (and as kept in a checkpoint file).
#[derive(Debug, Clone, Serialize, serde::Deserialize, FromRow, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub station_id: String,
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub signer: String,
    pub signature: String,
}

/// A chain's head row: what the station last appended, as the station itself keeps it.
#[derive(Debug, Clone, serde::Deserialize, FromRow)]
pub struct Head {
    pub station_id: String,
    pub seq: i64,
    pub hash: String,
}

/// A signing key's certificate, as registered with its first entry.
#[derive(Debug, Clone, serde::Deserialize, FromRow)]
pub struct SignerRow {
    pub public_key: String,
    pub station_id: String,
    pub certificate: String,
}

/// Every station that has a chain, a head, or a checkpoint.
pub async fn stations(pool: &AnyPool) -> Result<Vec<String>, DbError> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT station_id FROM audit_log UNION SELECT station_id FROM audit_heads \
         UNION SELECT station_id FROM audit_checkpoints ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(station,)| station).collect())
}

/// At most `limit` entries of `station_id`'s chain numbered above `after`, in number order.
pub async fn page(pool: &AnyPool, station_id: &str, after: i64, limit: u32) -> Result<Vec<StoredEntry>, DbError> {
    Ok(sqlx::query_as(&format!(
        "SELECT station_id, seq, at, operator, kind, device_id, detail, prev_hash, hash, signer, signature \
         FROM audit_log WHERE station_id = $1 AND seq > $2 ORDER BY seq LIMIT {limit}"
    ))
    .bind(station_id)
    .bind(after)
    .fetch_all(pool)
    .await?)
}

/// Every entry's number and stored hash for `station_id`, in number order: small enough to
/// hold for a chain of millions.
pub async fn positions(pool: &AnyPool, station_id: &str) -> Result<Vec<(i64, String)>, DbError> {
    Ok(sqlx::query_as("SELECT seq, hash FROM audit_log WHERE station_id = $1 ORDER BY seq")
        .bind(station_id)
        .fetch_all(pool)
        .await?)
}

pub async fn head(pool: &AnyPool, station_id: &str) -> Result<Option<Head>, DbError> {
    Ok(sqlx::query_as("SELECT station_id, seq, hash FROM audit_heads WHERE station_id = $1")
        .bind(station_id)
        .fetch_optional(pool)
        .await?)
}

pub async fn checkpoints(pool: &AnyPool, station_id: &str) -> Result<Vec<StoredCheckpoint>, DbError> {
    Ok(sqlx::query_as(
        "SELECT station_id, seq, hash, at, signer, signature FROM audit_checkpoints WHERE station_id = $1 ORDER BY seq",
    )
    .bind(station_id)
    .fetch_all(pool)
    .await?)
}

/// The latest checkpoint of every station.
pub async fn latest_checkpoints(pool: &AnyPool) -> Result<Vec<StoredCheckpoint>, DbError> {
    Ok(sqlx::query_as(
        "SELECT c.station_id, c.seq, c.hash, c.at, c.signer, c.signature FROM audit_checkpoints c \
         WHERE c.seq = (SELECT MAX(seq) FROM audit_checkpoints WHERE station_id = c.station_id) \
         ORDER BY c.station_id",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn signers(pool: &AnyPool) -> Result<Vec<SignerRow>, DbError> {
    Ok(sqlx::query_as("SELECT public_key, station_id, certificate FROM audit_signers ORDER BY public_key")
        .fetch_all(pool)
        .await?)
}
