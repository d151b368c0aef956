//! Export to C2 over HTTPS: how many devices a second `keyfill export c2` registers with the C2
//! test server (HTTPS with its test CA, clients kept in PostgreSQL, C2's page cap and upsert
//! semantics) at the default concurrency, from the station's start to its report.
//!
//! ```sh
//! cargo bench -p keyfill-e2e --bench c2_export                      # 10,000 devices, 3 runs
//! cargo bench -p keyfill-e2e --bench c2_export -- --devices 2000 --runs 5
//! ```
//! Each run starts from a fresh station inventory (devices recorded straight into it, not timed)
//! and a fresh C2.

use anyhow::{Context, Result, ensure};
use keyfill_e2e::c2::{C2Server, CryptoMode};
use keyfill_e2e::{Database, Station, fleet::record_fleet, rand_u64};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn run(devices: usize) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let prefix = format!("c2-bench-{:08x}", rand_u64() as u32);
    runtime.block_on(record_fleet(&station, &prefix, devices, |_, _| {}))?;
    let c2 = C2Server::start(dir.path(), CryptoMode::SymKey)?;
    let url = c2.url();
    let ca = c2.ca_file();
    let started = Instant::now();
    let output = station.run_env(
        &["export", "c2", "--url", &url, "--ca", ca.to_str().context("CA path")?, "--json"],
        &[("KEYFILL_LOG", "warn")],
    )?;
    let elapsed = started.elapsed();
    ensure!(output.status.success(), "export failed: {}", String::from_utf8_lossy(&output.stderr));
    let registered = c2.clients()?.len();
    ensure!(registered == devices, "C2 holds {registered} clients of {devices}");
    Ok(elapsed)
}

fn main() -> ExitCode {
    let mut devices = 10_000;
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--devices" => devices = args.next().and_then(|n| n.parse().ok()).unwrap_or(devices),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            other => {
                eprintln!("c2_export: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    println!("exporting {devices} devices to the C2 test server over HTTPS, default concurrency, {runs} runs");
    let mut rates = Vec::new();
    for number in 1..=runs {
        match run(devices) {
            Ok(elapsed) => {
                let rate = devices as f64 / elapsed.as_secs_f64();
                println!("  run {number}: {:.2} s, {rate:.0} devices/s", elapsed.as_secs_f64());
                rates.push(rate);
            }
            Err(error) => {
                eprintln!("run {number}: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    rates.sort_by(f64::total_cmp);
    println!("median {:.0} devices/s", rates[rates.len() / 2]);
    ExitCode::SUCCESS
}
