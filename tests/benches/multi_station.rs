//! Devices per second with several stations on one PostgreSQL database: S `keyfill provision`
//! processes started at once on a fresh database, the farm's devices split between them
//! (`--disjoint`) or each offered to two stations at once, as the `multi_station` test does, so
//! that half the offers meet a device another station holds. Reports devices per second over the
//! sessions (the database's first event to its last confirmation), and over the run's wall time
//! with each station's start-up and unlock; then checks the run as the test does: every device
//! keyed exactly once.
//!
//! ```sh
//! cargo bench -p keyfill-e2e --bench multi_station                      # 4 stations, 1000 devices, 3 rounds
//! cargo bench -p keyfill-e2e --bench multi_station -- --stations 4 --devices 1000 --rounds 3 --disjoint
//! ```

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::farm::Farm;
use keyfill_e2e::shared_line::{SharedLine, check, overlapping_offers, read_report, report_path};
use std::process::ExitCode;
use std::time::Instant;

struct Options {
    stations: usize,
    devices: usize,
    rounds: usize,
    disjoint: bool,
}

fn options() -> Result<Options> {
    let mut options = Options { stations: 4, devices: 1000, rounds: 3, disjoint: false };
    let mut args = std::env::args().skip(1);
    let number = |name: &str, value: Option<String>| -> Result<usize> {
        let value: usize = value.with_context(|| format!("{name} needs a number"))?.parse()?;
        ensure!(value > 0, "{name} must be positive");
        Ok(value)
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--stations" => options.stations = number("--stations", args.next())?,
            "--devices" => options.devices = number("--devices", args.next())?,
            "--rounds" => options.rounds = number("--rounds", args.next())?,
            "--disjoint" => options.disjoint = true,
            other => bail!("unknown argument {other}"),
        }
    }
    ensure!(options.devices >= options.stations, "at least one device per station");
    Ok(options)
}

/// Devices per second over the sessions and over the wall time, for one round.
fn round(options: &Options) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let line = SharedLine::new(dir.path(), options.stations)?;
    let farm = Farm::start(dir.path(), "bench", options.devices, line.factory_root)?;
    let offers: Vec<Vec<usize>> = if options.disjoint {
        let group = |g: usize| (g * options.devices / options.stations)..((g + 1) * options.devices / options.stations);
        (0..options.stations).map(|g| group(g).collect()).collect()
    } else {
        overlapping_offers(options.devices, options.stations)
    };
    let started = Instant::now();
    let mut children = Vec::new();
    for (index, offered) in offers.iter().enumerate() {
        children.push(line.provision(index, &farm, offered, 30, &report_path(dir.path(), index, "bench"))?);
    }
    // A station exits 1 when a device it was offered was keyed by the other station first: each
    // report entry must say provisioned, here or there.
    for (index, mut child) in children.into_iter().enumerate() {
        child.wait()?;
        for entry in read_report(&report_path(dir.path(), index, "bench"))? {
            ensure!(entry["state"] == "provisioned", "station {index}: {entry}");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let outcome = check(&line, &farm, &offers)?;
    ensure!(outcome.clean() && outcome.provisioned == options.devices, "the run is not clean: {outcome:?}");
    let span_millis = sessions_span(&line)?;
    Ok((options.devices as f64 / (span_millis as f64 / 1000.0).max(1e-6), options.devices as f64 / wall))
}

/// Milliseconds from the database's first device event to its last confirmation.
fn sessions_span(line: &SharedLine) -> Result<i64> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let inventory = keyfill_station::db::Inventory::open(line.db.url()).await?;
        let (first, last): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT MIN(at), MAX(CASE WHEN kind = 'provisioned' THEN at END) FROM events WHERE device_id IS NOT NULL",
        )
        .fetch_one(inventory.pool())
        .await?;
        inventory.close().await;
        Ok((last.context("no confirmation")? - first.context("no event")?).max(1))
    })
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("multi_station: {error:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{} stations on one PostgreSQL, {} devices {}, {} round(s)",
        options.stations,
        options.devices,
        if options.disjoint { "split between them" } else { "each offered to two stations" },
        options.rounds
    );
    let (mut sessions, mut walls) = (Vec::new(), Vec::new());
    for number in 1..=options.rounds {
        match round(&options) {
            Ok((over_sessions, over_wall)) => {
                println!(
                    "round {number}: {over_sessions:.0} devices/s over the sessions, {over_wall:.0} over the wall time"
                );
                sessions.push(over_sessions);
                walls.push(over_wall);
            }
            Err(error) => {
                eprintln!("multi_station: round {number}: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    sessions.sort_by(f64::total_cmp);
    walls.sort_by(f64::total_cmp);
    println!(
        "median: {:.0} devices/s over the sessions ({:.0}–{:.0}), {:.0} devices/s over the wall time with start-up",
        sessions[sessions.len() / 2],
        sessions[0],
        sessions[sessions.len() - 1],
        walls[walls.len() / 2]
    );
    ExitCode::SUCCESS
}
