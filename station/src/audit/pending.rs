//! Failed unlocks, noted in the station home until the next unlock records them in the audit
//! log: a station that is not unlocked cannot sign an entry. The file is append-only JSON Lines
//! and bounded; attempts beyond the bound are counted, not kept.

use crate::operator::default_operator;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const FILE: &str = "audit-pending.jsonl";
/// About a thousand attempts; beyond, the file is not grown.
const MAX_BYTES: u64 = 256 << 10;

/// A failed unlock as noted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedUnlock {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The login name of the account that tried.
    pub account: String,
    pub reason: String,
    /// What happened, when not a failed unlock: `login_failed`, `login_refused`, or `login`
    /// for a login that unlocked nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

fn path(home: &Path) -> PathBuf {
    home.join(FILE)
}

/// Notes a failed unlock of the station in `home`. Best effort: the unlock has failed already,
/// and a home that cannot be written is reported by the next write that must succeed.
pub fn note_failed_unlock(home: &Path, reason: &str) {
    note(home, None, &default_operator(), reason)
}

/// Notes an operator's login event (`kind`) for the audit log, as [`note_failed_unlock`].
pub fn note_login(home: &Path, kind: &str, operator: &str, reason: &str) {
    note(home, Some(kind), operator, reason)
}

fn note(home: &Path, kind: Option<&str>, account: &str, reason: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let file = path(home);
    let oversized = std::fs::metadata(&file).is_ok_and(|m| m.len() >= MAX_BYTES);
    let attempt = FailedUnlock {
        at: crate::db::now_millis(),
        account: if oversized { String::new() } else { account.to_owned() },
        reason: if oversized { "overflow".into() } else { reason.to_owned() },
        kind: kind.map(str::to_owned),
    };
    if oversized {
        // Only a count is kept: a line of its own per attempt, whatever the last line was.
        let _ = std::fs::OpenOptions::new().append(true).open(&file).and_then(|mut f| f.write_all(b"\n+\n"));
        return;
    }
    let Ok(mut line) = serde_json::to_vec(&attempt) else { return };
    line.push(b'\n');
    let opened = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&file);
    if let Ok(mut out) = opened {
        let _ = out.write_all(&line);
    }
}

/// The failed unlocks noted in `home`, and how many more were only counted.
pub fn read(home: &Path) -> (Vec<FailedUnlock>, u64) {
    use std::io::Read;
    let mut bytes = Vec::new();
    let Ok(file) = std::fs::File::open(path(home)) else { return (Vec::new(), 0) };
    // Twice the bound: the counted attempts follow the kept ones.
    if file.take(2 * MAX_BYTES).read_to_end(&mut bytes).is_err() {
        return (Vec::new(), 0);
    }
    let mut attempts = Vec::new();
    let mut counted = 0;
    for line in bytes.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        if line == b"+" {
            counted += 1;
            continue;
        }
        match serde_json::from_slice::<FailedUnlock>(line) {
            Ok(attempt) => attempts.push(attempt),
            // A line cut short by a crash is still an attempt.
            Err(_) => counted += 1,
        }
    }
    (attempts, counted)
}

/// Forgets the noted attempts, once recorded.
pub fn clear(home: &Path) {
    let _ = std::fs::remove_file(path(home));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_failed_unlocks_are_noted_bounded_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        note_failed_unlock(dir.path(), "wrong passphrase");
        note_failed_unlock(dir.path(), "wrong passphrase\u{1b}[2J");
        let (attempts, counted) = read(dir.path());
        assert_eq!(attempts.len(), 2);
        assert_eq!(counted, 0);
        assert_eq!(attempts[1].reason, "wrong passphrase\u{1b}[2J");
        // Grown to its bound, the file keeps a count only.
        let filler = vec![b'x'; MAX_BYTES as usize];
        std::fs::OpenOptions::new().append(true).open(path(dir.path())).unwrap().write_all(&filler).unwrap();
        for _ in 0..3 {
            note_failed_unlock(dir.path(), "wrong passphrase");
        }
        let (attempts, counted) = read(dir.path());
        assert_eq!(attempts.len(), 2);
        assert_eq!(counted, 1 + 3, "the unreadable filler line and three counted attempts");
        clear(dir.path());
        assert_eq!(read(dir.path()), (Vec::new(), 0));
    }
}
