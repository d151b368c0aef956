//! What the soak runs share (`tests/tests/soak*.rs`, docs/assurance.md): counts and seeds from
//! the environment, the agent's random restarts, and readings of a process's resident memory and
//! open descriptors from `/proc`, judged against the bounds.

use crate::crash::Rng;
use anyhow::{Context, Result, ensure};

/// Resident memory may grow by at most this much between the sample after warm-up and the last
/// (SQLite's page cache and allocator arenas settle during warm-up).
pub const STATION_RSS_GROWTH_KIB: u64 = 16 * 1024;
pub const AGENT_RSS_GROWTH_KIB: u64 = 2 * 1024;
/// The station's SQLite pool opens its connections (at most 4, two descriptors each: the
/// database and its write-ahead log) as it needs them, so its descriptor count may still rise
/// after warm-up by this much, on files already open; nothing else may be opened and kept.
pub const STATION_POOL_DESCRIPTORS: usize = 4 * 2;

/// A count from the environment, else `default`.
pub fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The seed of the restart points: `KEYFILL_SOAK_SEED`, else the clock.
pub fn seed() -> u64 {
    std::env::var("KEYFILL_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// Sessions between two agent restarts: a few hundred in a full run, fewer in a short one.
pub fn restart_interval(rng: &mut Rng, total: usize) -> usize {
    let (low, high) = if total >= 2000 { (100, 400) } else { (total / 8 + 1, total / 3 + 2) };
    low + (rng.next_u64() as usize) % (high - low + 1)
}

pub fn resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS number")
}

/// What each open descriptor of `pid` points at (a path, `socket:[…]`, `anon_inode:…`), sorted.
pub fn open_descriptors(pid: u32) -> Result<Vec<String>> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    targets.sort();
    Ok(targets)
}

/// One reading of a process.
#[derive(Debug, Clone)]
pub struct Reading {
    pub done: usize,
    pub rss_kib: u64,
    pub descriptors: Vec<String>,
}

impl Reading {
    pub fn of(pid: u32, done: usize) -> Result<Self> {
        Ok(Reading { done, rss_kib: resident_kib(pid)?, descriptors: open_descriptors(pid)? })
    }
}

/// Readings of one process over its life; the first ones are warm-up.
#[derive(Debug, Default)]
pub struct Series {
    pub readings: Vec<Reading>,
}

impl Series {
    /// RSS growth from the reading after warm-up to the last, the change in the number of open
    /// descriptors, and what the last reading has open that the one after warm-up had not (and
    /// the other way round).
    pub fn drift(&self) -> Option<(i64, i64, Vec<String>)> {
        let settled = self.readings.get(self.readings.len() / 4)?;
        let last = self.readings.last()?;
        let count = last.descriptors.len() as i64 - settled.descriptors.len() as i64;
        let mut changed: Vec<String> =
            last.descriptors.iter().filter(|d| !settled.descriptors.contains(d)).map(|d| format!("+{d}")).collect();
        changed.extend(settled.descriptors.iter().filter(|d| !last.descriptors.contains(d)).map(|d| format!("-{d}")));
        Some((last.rss_kib as i64 - settled.rss_kib as i64, count, changed))
    }

    pub fn print(&self, what: &str) {
        let line: Vec<String> =
            self.readings.iter().map(|r| format!("{}:{}K/{}fd", r.done, r.rss_kib, r.descriptors.len())).collect();
        println!("{what}: {}", line.join(" "));
    }
}

/// Prints every agent life's readings; each life long enough to judge stays within the bounds:
/// RSS, and exactly the same descriptors.
pub fn check_agent_lives(lives: &[Series]) -> Result<()> {
    for (life, series) in lives.iter().enumerate() {
        series.print(&format!("agent life {life}"));
    }
    for (life, series) in lives.iter().enumerate() {
        if series.readings.len() >= 4
            && let Some((rss, count, opened)) = series.drift()
        {
            ensure!(rss <= AGENT_RSS_GROWTH_KIB as i64, "agent life {life}: RSS grew {rss} KiB");
            ensure!(count == 0 && opened.is_empty(), "agent life {life}: descriptors {count:+} {opened:?}");
        }
    }
    Ok(())
}
