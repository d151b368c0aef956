//! Soak run of provisioning: many provisionings over one serial link, the device agent restarted
//! at random, resident memory and open descriptors of the station core and of every agent life
//! sampled throughout and held to the bounds in `keyfill_e2e::soak`; no session left hanging.
//!
//! The station core the GUI runs (`keyfill_station::provision::Station`, one serial link opened
//! once) runs in this process, alone in its test binary so that no other test's children show in
//! its descriptors; the real `keyfill-agent serve` is on the other side of one pseudo-terminal
//! pair as a test jig (`--jig-labels`: once a key is confirmed it becomes the next board, with a
//! fresh identity, and writes that board's label).
//!
//! CI runs a reduced count; `scripts/soak` the full one (10,000, docs/assurance.md). Count:
//! `KEYFILL_SOAK_PROVISIONINGS`; seed: `KEYFILL_SOAK_SEED`.

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::crash::Rng;
use keyfill_e2e::soak::{
    Reading, STATION_POOL_DESCRIPTORS, STATION_RSS_GROWTH_KIB, Series, check_agent_lives, count, restart_interval, seed,
};
use keyfill_e2e::{Agent, Database, PASSPHRASE, PtyPair, Station};
use keyfill_formats::qr::OnboardingPayload;
use keyfill_station::db::Inventory;
use keyfill_station::db::devices::DeviceState;
use keyfill_station::home::StationHome;
use keyfill_station::link::open_serial;
use keyfill_station::provision::Station as StationCore;
use std::path::Path;
use std::time::{Duration, Instant};

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
    let actor = home.actor(&unlocked, "soak")?;
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
