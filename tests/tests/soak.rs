//! Soak runs: many provisionings over one serial link, many rotations of one device, with the
//! device agent restarted at random; resident memory and open file descriptors of the long-lived
//! processes sampled throughout and held to stated bounds; no session left hanging.
//!
//! - Provisioning: the station core the GUI runs (`keyfill_station::provision::Station`, one
//!   serial link opened once) in this process, the real `keyfill-agent serve` on the other side of
//!   one pseudo-terminal pair as a test jig (`--jig-labels`: once a key is confirmed it becomes the
//!   next board, with a fresh identity, and writes that board's label).
//! - Rotation: the real `keyfill rotate` once per rotation against one long-lived
//!   `keyfill-agent mqtt` over Mosquitto.
//!
//! CI runs a reduced count; `scripts/soak` the full one (10,000 and 1,000, docs/assurance.md).
//! Counts: `KEYFILL_SOAK_PROVISIONINGS`, `KEYFILL_SOAK_ROTATIONS`; seed: `KEYFILL_SOAK_SEED`.

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::crash::Rng;
use keyfill_e2e::{Agent, BROKER, Database, PASSPHRASE, PtyPair, Station, provisioned_device, unique_name};
use keyfill_formats::qr::OnboardingPayload;
use keyfill_station::db::Inventory;
use keyfill_station::db::devices::DeviceState;
use keyfill_station::db::events::Actor;
use keyfill_station::home::StationHome;
use keyfill_station::link::open_serial;
use keyfill_station::provision::Station as StationCore;
use std::path::Path;
use std::time::{Duration, Instant};

/// Resident memory may grow by at most this much between the sample after warm-up and the last
/// (SQLite's page cache and allocator arenas settle during warm-up).
const STATION_RSS_GROWTH_KIB: u64 = 16 * 1024;
const AGENT_RSS_GROWTH_KIB: u64 = 2 * 1024;
/// The station's SQLite pool opens its connections (at most 4, two descriptors each: the
/// database and its write-ahead log) as it needs them, so its descriptor count may still rise
/// after warm-up by this much, on files already open; nothing else may be opened and kept.
const STATION_POOL_DESCRIPTORS: usize = 4 * 2;

fn count(variable: &str, default: usize) -> usize {
    std::env::var(variable).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("KEYFILL_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// Sessions between two agent restarts: a few hundred in a full run, fewer in a short one.
fn restart_interval(rng: &mut Rng, total: usize) -> usize {
    let (low, high) = if total >= 2000 { (100, 400) } else { (total / 8 + 1, total / 3 + 2) };
    low + (rng.next_u64() as usize) % (high - low + 1)
}

fn resident_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS number")
}

/// What each open descriptor of `pid` points at (a path, `socket:[…]`, `anon_inode:…`), sorted.
fn open_descriptors(pid: u32) -> Result<Vec<String>> {
    let mut targets: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))?
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect();
    targets.sort();
    Ok(targets)
}

/// One reading of a process.
#[derive(Debug, Clone)]
struct Reading {
    done: usize,
    rss_kib: u64,
    descriptors: Vec<String>,
}

impl Reading {
    fn of(pid: u32, done: usize) -> Result<Self> {
        Ok(Reading { done, rss_kib: resident_kib(pid)?, descriptors: open_descriptors(pid)? })
    }
}

/// Readings of one process over its life; the first ones are warm-up.
#[derive(Debug, Default)]
struct Series {
    readings: Vec<Reading>,
}

impl Series {
    /// RSS growth from the reading after warm-up to the last, the change in the number of open
    /// descriptors, and what the last reading has open that the one after warm-up had not (and
    /// the other way round).
    fn drift(&self) -> Option<(i64, i64, Vec<String>)> {
        let settled = self.readings.get(self.readings.len() / 4)?;
        let last = self.readings.last()?;
        let count = last.descriptors.len() as i64 - settled.descriptors.len() as i64;
        let mut changed: Vec<String> =
            last.descriptors.iter().filter(|d| !settled.descriptors.contains(d)).map(|d| format!("+{d}")).collect();
        changed.extend(settled.descriptors.iter().filter(|d| !last.descriptors.contains(d)).map(|d| format!("-{d}")));
        Some((last.rss_kib as i64 - settled.rss_kib as i64, count, changed))
    }

    fn print(&self, what: &str) {
        let line: Vec<String> =
            self.readings.iter().map(|r| format!("{}:{}K/{}fd", r.done, r.rss_kib, r.descriptors.len())).collect();
        println!("{what}: {}", line.join(" "));
    }
}

/// The labels the jig appends to its file, read as they come.
struct JigLabels {
    file: std::fs::File,
    pending: Vec<u8>,
}

impl JigLabels {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new().create(true).append(true).read(true).open(path)?;
        Ok(JigLabels { file, pending: Vec::new() })
    }

    /// Waits for the next whole line (the jig may be halfway through appending it).
    fn next(&mut self) -> Result<String> {
        use std::io::Read;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(String::from_utf8(line)?.trim_end().to_owned());
            }
            let mut chunk = [0u8; 4096];
            let n = self.file.read(&mut chunk)?;
            self.pending.extend_from_slice(&chunk[..n]);
            if n == 0 {
                ensure!(Instant::now() < deadline, "the jig wrote no next label");
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// Prints every agent life's readings; each life long enough to judge stays within the bounds:
/// RSS, and exactly the same descriptors.
fn check_agent_lives(lives: &[Series]) -> Result<()> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_provisioning_over_one_serial_link_keeps_memory_and_descriptors_flat() -> Result<()> {
    let total = count("KEYFILL_SOAK_PROVISIONINGS", 150);
    let seed = seed();
    println!("soak seed {seed}: {total} provisionings");
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let cli = Station::init(dir, Database::sqlite(dir))?;
    let home = StationHome::new(&cli.home);
    let unlocked = home.unlock(PASSPHRASE)?;
    let inventory = Inventory::open(cli.db.url()).await?;
    let actor = Actor { station_id: hex::encode(unlocked.info.station_id), operator: "soak".into() };
    let station = StationCore::new(inventory, unlocked, actor);

    let pty = PtyPair::new(dir)?;
    let labels = dir.join("jig-labels.txt");
    let jig = ["--jig-labels".to_owned(), labels.to_string_lossy().into_owned()];
    let jig: Vec<&str> = jig.iter().map(String::as_str).collect();
    let mut next_label = JigLabels::open(&labels)?;
    let mut agent = Agent::init(dir, "soak-board", &cli.factory_root_file(), &[])?;
    agent.serve(&pty.device_side, &jig)?;
    let mut link = open_serial(&pty.station_side, 115_200)?;

    let me = std::process::id();
    // The station over the whole run; each agent life (100-400 sessions) often enough to judge.
    let sample_every = (total / 40).max(1);
    let sample_agent_every = (total / 400).max(1);
    let mut station_series = Series::default();
    let mut agent_lives: Vec<Series> = vec![Series::default()];
    let mut next_restart = restart_interval(&mut rng, total);
    let mut label = agent.payload.clone();
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    for done in 0..total {
        let payload =
            OnboardingPayload::parse(&label).with_context(|| format!("provisioning {done}: label {label:?}"))?;
        let began = Instant::now();
        let report = station.provision(&mut link, &payload, |_| {}).await;
        slowest = slowest.max(began.elapsed());
        match report {
            Ok(report) if report.device.state == DeviceState::Provisioned => {}
            Ok(report) => bail!("seed {seed}, provisioning {done}: ended {:?}", report.device.state),
            Err(error) => bail!("seed {seed}, provisioning {done}: {error}"),
        }
        label = next_label.next().with_context(|| format!("after provisioning {done}"))?;
        if (done + 1) % sample_every == 0 {
            station_series.readings.push(Reading::of(me, done + 1)?);
        }
        if (done + 1) % sample_agent_every == 0 {
            let pid = agent.pid().context("the agent serves")?;
            agent_lives.last_mut().context("a life")?.readings.push(Reading::of(pid, done + 1)?);
        }
        if done + 1 == next_restart && done + 1 < total {
            agent.serve(&pty.device_side, &jig)?;
            agent_lives.push(Series::default());
            next_restart += restart_interval(&mut rng, total);
        }
    }
    let took = started.elapsed();
    agent.stop();

    let devices = cli.devices()?;
    ensure!(devices.len() == total, "{} records for {total} provisionings", devices.len());
    ensure!(devices.iter().all(|d| d["state"] == "provisioned"), "a record is not provisioned");
    station_series.print("station (this process)");
    let (station_rss, station_count, station_opened) = station_series.drift().context("station readings")?;
    println!(
        "soak: {total} provisionings in {:.0} s ({:.1}/s), slowest {} ms, {} agent restarts; station RSS drift {station_rss} KiB, descriptors {station_count:+} {station_opened:?}",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        slowest.as_millis(),
        agent_lives.len() - 1
    );
    check_agent_lives(&agent_lives)?;
    ensure!(station_rss <= STATION_RSS_GROWTH_KIB as i64, "station RSS grew {station_rss} KiB");
    ensure!(station_opened.is_empty(), "station descriptors changed: {station_opened:?}");
    ensure!(station_count <= STATION_POOL_DESCRIPTORS as i64, "station descriptors grew by {station_count}");
    // The slowest session still ended within the station's own timeouts: nothing hung.
    ensure!(slowest < Duration::from_secs(30), "a provisioning took {slowest:?}");
    Ok(())
}

#[test]
fn soak_rotation_of_one_device_keeps_the_agent_flat() -> Result<()> {
    let total = count("KEYFILL_SOAK_ROTATIONS", 30);
    let seed = seed();
    println!("soak seed {seed}: {total} rotations");
    let mut rng = Rng::new(seed ^ 0x5eed);
    let dir = tempfile::tempdir()?;
    let name = unique_name("soak-rotation");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    agent.mqtt(BROKER, &[])?;
    let mut lives: Vec<Series> = vec![Series::default()];
    let sample_every = (total / 40).max(1);
    let mut next_restart = restart_interval(&mut rng, total);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut last_key = serde_json::Value::Null;
    for done in 0..total {
        let began = Instant::now();
        let output = station.run(&["rotate", &name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "6"])?;
        slowest = slowest.max(began.elapsed());
        ensure!(output.status.success(), "seed {seed}, rotation {done}: {}", String::from_utf8_lossy(&output.stderr));
        let record: serde_json::Value =
            serde_json::from_slice(&station.run(&["devices", "show", &name, "--json"])?.stdout)?;
        ensure!(record["rotation"] == "active" && record["key_id"] != last_key, "rotation {done}: {record}");
        last_key = record["key_id"].clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.status()?["key_id"] != last_key {
            ensure!(Instant::now() < deadline, "rotation {done}: the agent did not switch keys");
            std::thread::sleep(Duration::from_millis(20));
        }
        if (done + 1) % sample_every == 0 {
            let pid = agent.pid().context("the agent runs")?;
            lives.last_mut().context("a life")?.readings.push(Reading::of(pid, done + 1)?);
        }
        if done + 1 == next_restart && done + 1 < total {
            agent.mqtt(BROKER, &[])?;
            lives.push(Series::default());
            next_restart += restart_interval(&mut rng, total);
        }
    }
    let took = started.elapsed();
    agent.stop();
    println!(
        "soak: {total} rotations in {:.0} s ({:.2}/s), slowest {} ms, {} agent restarts",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        slowest.as_millis(),
        lives.len() - 1
    );
    check_agent_lives(&lives)?;
    ensure!(slowest < Duration::from_secs(30), "a rotation took {slowest:?}");
    Ok(())
}
