//! Where an export remembers what each C2 server holds: the station's inventory for
//! `keyfill export c2`, or an append-only journal file for `keyfill import bundle` (the C2
//! operator's machine has no inventory). Both hold names and key ids only, never keys.

use super::{ExportError, ItemReport, Outcome, Registration};
use crate::db::events::{self, Actor};
use crate::db::{DbError, Inventory, exports};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a finished POST (or its absence) tells about C2's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing was sent.
    NotSent,
    /// C2 acknowledged the key.
    Delivered,
    /// C2 answered with a refusal: it stored nothing.
    Refused,
    /// No answer (unreachable, timeouts, 5xx): C2 may or may not hold the key.
    Unknown,
}

/// The ledger of one export run.
#[derive(Debug)]
pub enum Ledger {
    Inventory { inventory: Inventory, actor: Actor, run_id: String },
    Journal(JournalLedger),
}

impl Ledger {
    /// Every registration for `target`, by device id.
    pub async fn registrations(&self, target: &str) -> Result<HashMap<String, Registration>, ExportError> {
        match self {
            Ledger::Inventory { inventory, .. } => {
                let rows = exports::registrations(inventory.pool(), target).await?;
                Ok(rows
                    .into_iter()
                    .map(|row| {
                        let sending = match (row.sending_key_id, row.sending_as.as_deref().and_then(Outcome::parse)) {
                            (Some(key_id), Some(outcome)) => Some((key_id, outcome)),
                            _ => None,
                        };
                        (row.device_id, Registration { delivered_key_id: row.delivered_key_id, sending })
                    })
                    .collect())
            }
            Ledger::Journal(journal) => journal.registrations(target),
        }
    }

    /// Recorded durably before the POST of `key_id`.
    pub async fn begin_sending(
        &self,
        target: &str,
        report: &ItemReport,
        key_id: &str,
        outcome: Outcome,
    ) -> Result<(), ExportError> {
        match self {
            Ledger::Inventory { inventory, .. } => {
                exports::begin_sending(inventory.pool(), target, &report.device_id, key_id, outcome.as_str()).await?;
                Ok(())
            }
            Ledger::Journal(journal) => journal.append(&JournalLine {
                target: target.into(),
                device_id: report.device_id.clone(),
                name: report.name.clone(),
                key_id: Some(key_id.into()),
                event: JournalEvent::Sending { outcome },
            }),
        }
    }

    /// Records the device's result and what C2 now holds, in one transaction.
    pub async fn finish(&self, target: &str, report: &ItemReport, delivery: Delivery) -> Result<(), ExportError> {
        match self {
            Ledger::Inventory { inventory, actor, run_id } => {
                let mut tx = inventory.pool().begin().await.map_err(DbError::from)?;
                match (delivery, report.key_id.as_deref()) {
                    (Delivery::Delivered, Some(key_id)) => {
                        exports::mark_delivered(&mut tx, target, &report.device_id, key_id).await?
                    }
                    (Delivery::Refused, _) => exports::clear_sending(&mut tx, target, &report.device_id).await?,
                    _ => {}
                }
                let row = exports::ExportRow {
                    run_id,
                    target,
                    device_id: &report.device_id,
                    key_id: report.key_id.as_deref(),
                    outcome: report.outcome.as_str(),
                    reason: report.reason.as_deref(),
                    attempts: report.attempts,
                    operator: &actor.operator,
                };
                exports::record(&mut tx, &row).await?;
                let (kind, detail) = match &report.reason {
                    Some(reason) => ("c2_export_failed", format!("{target}: {reason}")),
                    None => (
                        "c2_exported",
                        format!(
                            "{} on {target} (key {})",
                            report.outcome.label(),
                            report.key_id.as_deref().unwrap_or("-")
                        ),
                    ),
                };
                events::record(&mut tx, actor, Some(&report.device_id), kind, &detail).await?;
                tx.commit().await.map_err(DbError::from)?;
                Ok(())
            }
            Ledger::Journal(journal) => {
                let event = match delivery {
                    Delivery::Delivered => JournalEvent::Delivered { outcome: report.outcome },
                    Delivery::Refused => JournalEvent::Refused { reason: report.reason.clone().unwrap_or_default() },
                    Delivery::NotSent | Delivery::Unknown => {
                        JournalEvent::Ended { outcome: report.outcome, reason: report.reason.clone() }
                    }
                };
                journal.append(&JournalLine {
                    target: target.into(),
                    device_id: report.device_id.clone(),
                    name: report.name.clone(),
                    key_id: report.key_id.clone(),
                    event,
                })
            }
        }
    }

    /// One event summarising the run (inventory only; the journal is its own summary).
    pub async fn summarise(&self, target: &str, summary: &str) -> Result<(), ExportError> {
        if let Ledger::Inventory { inventory, actor, run_id } = self {
            let mut tx = inventory.pool().begin().await.map_err(DbError::from)?;
            events::record(&mut tx, actor, None, "c2_export_run", &format!("run {run_id} to {target}: {summary}"))
                .await?;
            tx.commit().await.map_err(DbError::from)?;
        }
        Ok(())
    }
}

/// Longest journal line accepted: names are at most 255 bytes, the rest is small.
const MAX_JOURNAL_LINE: usize = 4096;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
enum JournalEvent {
    Sending { outcome: Outcome },
    Delivered { outcome: Outcome },
    Refused { reason: String },
    Ended { outcome: Outcome, reason: Option<String> },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct JournalLine {
    target: String,
    device_id: String,
    name: String,
    key_id: Option<String>,
    #[serde(flatten)]
    event: JournalEvent,
}

/// An append-only JSON-lines journal; each line is flushed to disk before the next step.
#[derive(Debug)]
pub struct JournalLedger {
    path: PathBuf,
    lines: Mutex<Vec<JournalLine>>,
    file: Mutex<std::fs::File>,
}

impl JournalLedger {
    /// Opens (or creates, mode 0600) the journal at `path`. A torn last line, left by a crash
    /// in the middle of a write, is cut off the file (what it recorded was not yet done); any other
    /// malformed line is an error. Each line is read within its 4 KiB limit.
    pub fn open(path: &Path) -> Result<Self, ExportError> {
        let bad = |reason: String| ExportError::Ledger(format!("{}: {reason}", path.display()));
        let mut lines = Vec::new();
        // Where a line cut short by a crash starts: removed below, so that it never ends up in
        // the middle of the journal once later records follow it.
        let mut torn_at: Option<u64> = None;
        let mut length = 0u64;
        // Whether the file read so far ends a line (an empty file does).
        let mut ends_a_line = true;
        if path.exists() {
            let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| bad(e.to_string()))?);
            // An unparsable line is forgiven only as the file's last (a write cut short).
            let mut unparsable: Option<String> = None;
            let mut text = Vec::new();
            for number in 1.. {
                text.clear();
                // Bounded before it is held: a hostile journal cannot make one line eat memory.
                let read = (&mut reader)
                    .take(MAX_JOURNAL_LINE as u64 + 1)
                    .read_until(b'\n', &mut text)
                    .map_err(|e| bad(e.to_string()))?;
                if read == 0 {
                    break;
                }
                let starts_at = length;
                length += read as u64;
                ends_a_line = text.last() == Some(&b'\n');
                if ends_a_line {
                    text.pop();
                } else if read > MAX_JOURNAL_LINE {
                    return Err(bad(format!("line {number} is longer than {MAX_JOURNAL_LINE} bytes")));
                }
                let line = String::from_utf8_lossy(&text);
                if line.trim().is_empty() {
                    continue;
                }
                if let Some(error) = unparsable.take() {
                    return Err(bad(error));
                }
                match serde_json::from_str::<JournalLine>(&line) {
                    Ok(line) => {
                        lines.push(line);
                        torn_at = None;
                    }
                    Err(e) => {
                        unparsable = Some(format!("line {number}: {e}"));
                        torn_at = Some(starts_at);
                    }
                }
            }
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| bad(e.to_string()))?;
        let healed = (|| {
            match torn_at {
                // The torn line started right after a newline (or at the start of the file).
                Some(offset) => file.set_len(offset)?,
                // A record whose newline was not written yet must not glue itself to the next one.
                None if !ends_a_line => file.write_all(b"\n")?,
                None => {}
            }
            file.sync_data()
        })();
        healed.map_err(|e| bad(e.to_string()))?;
        Ok(JournalLedger { path: path.to_path_buf(), lines: Mutex::new(lines), file: Mutex::new(file) })
    }

    fn registrations(&self, target: &str) -> Result<HashMap<String, Registration>, ExportError> {
        let lines = self.lines.lock().map_err(|_| ExportError::Ledger("journal lock poisoned".into()))?;
        let mut out: HashMap<String, Registration> = HashMap::new();
        for line in lines.iter().filter(|l| l.target == target) {
            let entry = out.entry(line.device_id.clone()).or_default();
            match (&line.event, &line.key_id) {
                (JournalEvent::Sending { outcome }, Some(key_id)) => entry.sending = Some((key_id.clone(), *outcome)),
                (JournalEvent::Delivered { .. }, Some(key_id)) => {
                    entry.delivered_key_id = Some(key_id.clone());
                    entry.sending = None;
                }
                (JournalEvent::Refused { .. }, _) => entry.sending = None,
                _ => {}
            }
        }
        Ok(out)
    }

    fn append(&self, line: &JournalLine) -> Result<(), ExportError> {
        let bad = |e: std::io::Error| ExportError::Ledger(format!("{}: {e}", self.path.display()));
        let mut text = serde_json::to_string(line).map_err(|e| ExportError::Ledger(e.to_string()))?;
        text.push('\n');
        // Appends are a few hundred bytes; holding the lock across the write keeps lines whole.
        let mut file = self.file.lock().map_err(|_| ExportError::Ledger("journal lock poisoned".into()))?;
        file.write_all(text.as_bytes()).map_err(bad)?;
        file.sync_data().map_err(bad)?;
        drop(file);
        self.lines.lock().map_err(|_| ExportError::Ledger("journal lock poisoned".into()))?.push(line.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome) -> ItemReport {
        ItemReport {
            device_id: "00aa".into(),
            name: "dev-1".into(),
            key_id: Some("k1".into()),
            outcome,
            reason: None,
            attempts: 1,
        }
    }

    #[tokio::test]
    async fn journal_remembers_deliveries_and_interrupted_posts_across_reopen() -> Result<(), ExportError> {
        let dir = tempfile::tempdir().map_err(|e| ExportError::Ledger(e.to_string()))?;
        let path = dir.path().join("journal");
        let target = "https://c2:8888";
        {
            let ledger = Ledger::Journal(JournalLedger::open(&path)?);
            ledger.begin_sending(target, &report(Outcome::Created), "k1", Outcome::Created).await?;
        }
        let ledger = Ledger::Journal(JournalLedger::open(&path)?);
        let interrupted = ledger.registrations(target).await?;
        assert_eq!(interrupted["00aa"].sending, Some(("k1".into(), Outcome::Created)));
        ledger.finish(target, &report(Outcome::Created), Delivery::Delivered).await?;
        // A torn last line from a crash is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"target\":\"https://c2"))
            .map_err(|e| ExportError::Ledger(e.to_string()))?;
        let reopened = Ledger::Journal(JournalLedger::open(&path)?);
        let registrations = reopened.registrations(target).await?;
        assert_eq!(registrations["00aa"], Registration { delivered_key_id: Some("k1".into()), sending: None });
        assert!(reopened.registrations("https://other:8888").await?.is_empty());
        // The torn line is gone for good: later records and later opens never find it in the
        // middle of the journal.
        reopened.begin_sending(target, &report(Outcome::Created), "k1", Outcome::Created).await?;
        drop(reopened);
        for _ in 0..3 {
            let again = Ledger::Journal(JournalLedger::open(&path)?);
            assert_eq!(again.registrations(target).await?["00aa"].sending, Some(("k1".into(), Outcome::Created)));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| ExportError::Ledger(e.to_string()))?;
        assert!(!text.contains("{\"target\":\"https://c2\n"), "{text}");
        assert!(text.ends_with('\n') && !text.contains("\n\n"), "{text:?}");
        Ok(())
    }

    #[test]
    fn c2_export_journals_from_before_the_rename_still_read() -> Result<(), ExportError> {
        let line = r#"{"target":"https://c2:8888","device_id":"00aa","name":"dev-1","key_id":"k1","event":"ended","outcome":"unchanged","reason":null}"#;
        let parsed: JournalLine = serde_json::from_str(line).map_err(|e| ExportError::Ledger(e.to_string()))?;
        assert_eq!(parsed.event, JournalEvent::Ended { outcome: Outcome::AlreadyExported, reason: None });
        let written = serde_json::to_string(&parsed).map_err(|e| ExportError::Ledger(e.to_string()))?;
        assert!(written.contains(r#""outcome":"already_exported""#), "{written}");
        Ok(())
    }

    #[test]
    fn a_corrupt_journal_line_in_the_middle_is_an_error() -> Result<(), std::io::Error> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("journal");
        std::fs::write(&path, "not json\n{}\n")?;
        assert!(matches!(JournalLedger::open(&path), Err(ExportError::Ledger(_))));
        Ok(())
    }
}
