//! The event-log entries of an offline bundle, in one transaction: `c2_bundled` per device and
//! one `c2_bundle_written`, worded as `keyfill export bundle` records them.
//!
//! The entries are written by a task of their own while the bundle is made, so that the
//! database's work overlaps the reading and sealing, and committed only once the file was
//! written and verified ([`BundleEvents::commit`]); an export that stops before that leaves no
//! entry (the transaction is rolled back).

use super::DbError;
use super::Inventory;
use super::events::{self, Actor};
use std::path::Path;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A key put in a bundle: ids only.
#[derive(Debug, Clone)]
pub struct BundledKey {
    pub device_id: String,
    pub key_id: String,
}

/// Rows per INSERT: a million keys in a bundle are two thousand statements, not a million, and
/// 6 parameters a row stay far below SQLite's and PostgreSQL's limits.
const EVENTS_PER_STATEMENT: usize = 500;

/// Batches of keys waiting for the recording task: enough to keep it busy, few enough that a
/// slow database holds the export back rather than its memory growing.
const QUEUED_BATCHES: usize = 4;

type Recording = JoinHandle<Result<(sqlx::Transaction<'static, sqlx::Any>, usize), DbError>>;

/// The events of a bundle being made, recorded as keys are added and committed at the end.
#[derive(Debug)]
pub struct BundleEvents {
    keys: Option<mpsc::Sender<Vec<BundledKey>>>,
    recording: Option<Recording>,
    actor: Actor,
    bundle_id: String,
    recipient: String,
}

impl BundleEvents {
    /// Opens the transaction and starts recording for bundle `bundle_id` (hex) to `recipient`
    /// (hex). Must be called inside a Tokio runtime.
    pub fn start(inventory: &Inventory, actor: &Actor, bundle_id: &str, recipient: &str) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUED_BATCHES);
        let recording = tokio::spawn(record_keys(
            inventory.clone(),
            actor.clone(),
            format!("in bundle {bundle_id} for recipient {recipient}"),
            receiver,
        ));
        BundleEvents {
            keys: Some(sender),
            recording: Some(recording),
            actor: actor.clone(),
            bundle_id: bundle_id.to_owned(),
            recipient: recipient.to_owned(),
        }
    }

    /// Queues `keys` for recording; waits while the recording is behind.
    pub async fn add(&mut self, keys: Vec<BundledKey>) -> Result<(), DbError> {
        if keys.is_empty() {
            return Ok(());
        }
        let sent = match &self.keys {
            Some(sender) => sender.send(keys).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The task stopped: its error says why.
        self.keys = None;
        Err(self.stop().await.err().unwrap_or_else(|| DbError::Inconsistent("the event recording stopped".into())))
    }

    async fn stop(&mut self) -> Result<(sqlx::Transaction<'static, sqlx::Any>, usize), DbError> {
        self.keys = None;
        let recording =
            self.recording.take().ok_or_else(|| DbError::Inconsistent("the event recording ended twice".into()))?;
        recording.await.map_err(|error| DbError::Inconsistent(format!("the event recording stopped: {error}")))?
    }

    /// Records `c2_bundle_written` for `file` and commits every entry.
    pub async fn commit(mut self, file: &Path) -> Result<(), DbError> {
        let (mut tx, count) = self.stop().await?;
        let detail = format!("bundle {}: {count} key(s) to {} in {}", self.bundle_id, self.recipient, file.display());
        events::record(&mut tx, &self.actor, None, "c2_bundle_written", &detail).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The recording task: one transaction, a multi-row INSERT per [`EVENTS_PER_STATEMENT`] keys.
/// Ends when the sender is dropped, returning the open transaction and the number of keys.
async fn record_keys(
    inventory: Inventory,
    actor: Actor,
    bundle: String,
    mut keys: mpsc::Receiver<Vec<BundledKey>>,
) -> Result<(sqlx::Transaction<'static, sqlx::Any>, usize), DbError> {
    let mut tx = inventory.pool().begin().await?;
    let mut count = 0usize;
    while let Some(batch) = keys.recv().await {
        count += batch.len();
        for chunk in batch.chunks(EVENTS_PER_STATEMENT) {
            let details: Vec<String> = chunk.iter().map(|key| format!("key {} {bundle}", key.key_id)).collect();
            let rows: Vec<(&str, &str)> =
                chunk.iter().zip(&details).map(|(key, detail)| (key.device_id.as_str(), detail.as_str())).collect();
            events::record_for_devices(&mut tx, inventory.backend(), &actor, "c2_bundled", &rows).await?;
        }
    }
    Ok((tx, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn inventory() -> (tempfile::TempDir, Inventory) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("inventory.db").display());
        (dir, Inventory::open(&url).await.unwrap())
    }

    fn keys(range: std::ops::Range<usize>) -> Vec<BundledKey> {
        range.map(|n| BundledKey { device_id: format!("{n:032x}"), key_id: format!("{:032x}", n + 1000) }).collect()
    }

    async fn kinds(inventory: &Inventory) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")
            .fetch_all(inventory.pool())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn c2_export_bundle_events_are_all_committed_at_the_end_or_none() {
        let (_dir, inventory) = inventory().await;
        let audit = crate::audit::AuditKey::throwaway([5; 16]).unwrap();
        let actor = Actor { station_id: "st".into(), operator: "op".into(), audit };

        let mut abandoned = BundleEvents::start(&inventory, &actor, "b1", "r1");
        abandoned.add(keys(0..1200)).await.unwrap();
        drop(abandoned);
        // The abandoned recording ends on its own and rolls back; a new one waits for its lock.
        let mut events = BundleEvents::start(&inventory, &actor, "b2", "r2");
        events.add(keys(0..700)).await.unwrap();
        events.add(Vec::new()).await.unwrap();
        events.add(keys(700..1201)).await.unwrap();
        assert!(kinds(&inventory).await.is_empty(), "nothing is visible before the commit");
        events.commit(Path::new("/media/keys.kfb")).await.unwrap();

        assert_eq!(kinds(&inventory).await, [("c2_bundle_written".into(), 1), ("c2_bundled".into(), 1201)]);
        let (detail,): (String,) = sqlx::query_as("SELECT detail FROM events WHERE kind = 'c2_bundle_written'")
            .fetch_one(inventory.pool())
            .await
            .unwrap();
        assert_eq!(detail, "bundle b2: 1201 key(s) to r2 in /media/keys.kfb");
        let (detail,): (String,) =
            sqlx::query_as("SELECT detail FROM events WHERE kind = 'c2_bundled' ORDER BY id LIMIT 1")
                .fetch_one(inventory.pool())
                .await
                .unwrap();
        assert_eq!(detail, format!("key {:032x} in bundle b2 for recipient r2", 1000));
    }
}
