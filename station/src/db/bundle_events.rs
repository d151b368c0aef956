//! The event-log entries of an offline bundle just written, in one transaction: `c2_bundled`
//! per device and one `c2_bundle_written`, worded as `keyfill export bundle` records them.
//!
//! The CLI records them inline; this exists for callers that keep the database behind the
//! library's functions (the GUI opens no transaction of its own).

use super::DbError;
use super::events::{self, Actor};
use sqlx::AnyPool;
use std::path::Path;

/// A key put in a bundle: ids only.
#[derive(Debug, Clone)]
pub struct BundledKey {
    pub device_id: String,
    pub key_id: String,
}

/// Records that `keys` went into bundle `bundle_id` (hex) for `recipient` (hex), written to `file`.
pub async fn record_bundle_written(
    pool: &AnyPool,
    actor: &Actor,
    bundle_id: &str,
    recipient: &str,
    keys: &[BundledKey],
    file: &Path,
) -> Result<(), DbError> {
    let mut tx = pool.begin().await?;
    for key in keys {
        let detail = format!("key {} in bundle {bundle_id} for recipient {recipient}", key.key_id);
        events::record(&mut tx, actor, Some(&key.device_id), "c2_bundled", &detail).await?;
    }
    let detail = format!("bundle {bundle_id}: {} key(s) to {recipient} in {}", keys.len(), file.display());
    events::record(&mut tx, actor, None, "c2_bundle_written", &detail).await?;
    tx.commit().await?;
    Ok(())
}
