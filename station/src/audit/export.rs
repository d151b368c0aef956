//! `keyfill audit export`: the chains as JSON Lines or one JSON array, for a SIEM. Each entry
//! carries its id, hashes, signing key and signature, so that the receiver can check the chain
//! itself (docs/audit.md).

use crate::audit::entry_id;
use crate::db::DbError;
use crate::db::audit::{self, StoredEntry};
use serde::Serialize;
use sqlx::AnyPool;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    JsonLines,
    /// One JSON array.
    Json,
}

/// An exported entry: the stored entry and its id.
#[derive(Debug, Serialize)]
pub struct ExportedEntry<'a> {
    pub id: String,
    #[serde(flatten)]
    pub entry: &'a StoredEntry,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

const PAGE: u32 = 2_000;

/// Writes every entry of `station` (every station's, when `None`) to `out`, chain by chain in
/// number order, a page at a time. Returns the number of entries written.
pub async fn export(
    pool: &AnyPool,
    station: Option<&str>,
    format: ExportFormat,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    let stations = match station {
        Some(station) => vec![station.to_owned()],
        None => audit::stations(pool).await?,
    };
    let mut written = 0u64;
    if format == ExportFormat::Json {
        out.write_all(b"[")?;
    }
    for station in stations {
        let mut after = i64::MIN;
        loop {
            let page = audit::page(pool, &station, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for entry in &page {
                let exported = ExportedEntry { id: entry_id(&entry.station_id, entry.seq), entry };
                match format {
                    ExportFormat::JsonLines => {
                        serde_json::to_writer(&mut *out, &exported).map_err(std::io::Error::other)?;
                        out.write_all(b"\n")?;
                    }
                    ExportFormat::Json => {
                        out.write_all(if written == 0 { b"\n  " } else { b",\n  " })?;
                        serde_json::to_writer(&mut *out, &exported).map_err(std::io::Error::other)?;
                    }
                }
                written += 1;
            }
        }
    }
    if format == ExportFormat::Json {
        out.write_all(if written == 0 { b"]\n" } else { b"\n]\n" })?;
    }
    out.flush()?;
    Ok(written)
}
