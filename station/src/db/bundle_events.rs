//! The event-log entries of an offline bundle just written, in one transaction: `c2_bundled`
//! per device and one `c2_bundle_written`, worded as `keyfill export bundle` records them.
//!
//! The CLI records them inline; this exists for callers that keep the database behind the
//! library's functions (the GUI opens no transaction of its own).

use super::DbError;
use super::Inventory;
use super::events::{self, Actor};
use std::path::Path;

/// A key put in a bundle: ids only.
#[derive(Debug, Clone)]
pub struct BundledKey {
    pub device_id: String,
    pub key_id: String,
}

/// Rows per INSERT: a million keys in a bundle are two thousand statements, not a million, and
/// 6 parameters a row stay far below SQLite's and PostgreSQL's limits.
const EVENTS_PER_STATEMENT: usize = 500;

/// Records that `keys` went into bundle `bundle_id` (hex) for `recipient` (hex), written to `file`.
/// The keys come as an iterator so that a million of them are never all held as strings.
pub async fn record_bundle_written<I>(
    inventory: &Inventory,
    actor: &Actor,
    bundle_id: &str,
    recipient: &str,
    keys: I,
    file: &Path,
) -> Result<(), DbError>
where
    I: IntoIterator<Item = BundledKey>,
{
    let mut keys = keys.into_iter();
    let mut count = 0usize;
    let mut tx = inventory.pool().begin().await?;
    loop {
        let chunk: Vec<BundledKey> = keys.by_ref().take(EVENTS_PER_STATEMENT).collect();
        if chunk.is_empty() {
            break;
        }
        count += chunk.len();
        let details: Vec<String> = chunk
            .iter()
            .map(|key| format!("key {} in bundle {bundle_id} for recipient {recipient}", key.key_id))
            .collect();
        let rows: Vec<(&str, &str)> =
            chunk.iter().zip(&details).map(|(key, detail)| (key.device_id.as_str(), detail.as_str())).collect();
        events::record_for_devices(&mut tx, inventory.backend(), actor, "c2_bundled", &rows).await?;
    }
    let detail = format!("bundle {bundle_id}: {count} key(s) to {recipient} in {}", file.display());
    events::record(&mut tx, actor, None, "c2_bundle_written", &detail).await?;
    tx.commit().await?;
    Ok(())
}
