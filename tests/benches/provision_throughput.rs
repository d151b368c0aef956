//! Provisioning throughput: one `keyfill provision` run keying N simulated devices at once, each
//! on a pseudo-terminal of its own (agent cores in this process behind socat pairs), for N = 1, 4,
//! 16 and 64, on SQLite (synchronous FULL) or PostgreSQL. Reports devices per second over the
//! sessions (first job started to last device confirmed, from the station's JSON log), each
//! device's time from its job's start to its confirmation (p50, p99), the run's wall time with the
//! station's start-up and unlock, and the bytes each provisioning puts on the wire with the time
//! they take at 115200 baud.
//!
//! ```sh
//! cargo bench -p keyfill-e2e --bench provision_throughput                  # SQLite, 5 rounds per N
//! cargo bench -p keyfill-e2e --bench provision_throughput -- --postgres    # the local PostgreSQL
//! cargo bench -p keyfill-e2e --bench provision_throughput -- --hsm         # keys in SoftHSM2
//! cargo bench -p keyfill-e2e --bench provision_throughput -- --sizes 64 --rounds 20
//! cargo bench -p keyfill-e2e --bench provision_throughput -- --sizes 64 --keep-log station.log
//! ```

use anyhow::{Context, Result, bail};
use keyfill_e2e::farm::Farm;
use keyfill_e2e::{Database, SoftHsm, Station};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

struct Options {
    /// Where the last round's station log goes, for a look at where the time went.
    keep_log: Option<std::path::PathBuf>,
    postgres: bool,
    /// Every key in a SoftHSM2 token: device keys sealed by the token.
    hsm: bool,
    sizes: Vec<usize>,
    rounds: usize,
}

fn options() -> Result<Options> {
    let mut options = Options { keep_log: None, postgres: false, hsm: false, sizes: vec![1, 4, 16, 64], rounds: 5 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--postgres" => options.postgres = true,
            "--hsm" => options.hsm = true,
            "--keep-log" => options.keep_log = Some(args.next().context("--keep-log needs a file")?.into()),
            "--sizes" => {
                let list = args.next().context("--sizes needs N,N,…")?;
                options.sizes = list.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--rounds" => options.rounds = args.next().context("--rounds needs a count")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    if options.sizes.contains(&0) || options.rounds == 0 {
        bail!("sizes and rounds must be positive");
    }
    Ok(options)
}

/// Seconds of the day of a log line's RFC 3339 timestamp (`…THH:MM:SS.ffffffZ`).
fn seconds_of_day(timestamp: &str) -> Option<f64> {
    let time = timestamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    Some(hours * 3600.0 + minutes * 60.0 + seconds)
}

/// When each device's job started and when it was confirmed, from the station's JSON log.
fn timings(log: &[u8]) -> HashMap<String, (Option<f64>, Option<f64>)> {
    let mut devices: HashMap<String, (Option<f64>, Option<f64>)> = HashMap::new();
    for line in log.split(|&b| b == b'\n') {
        let Ok(entry) = serde_json::from_slice::<serde_json::Value>(line) else { continue };
        let (Some(at), Some(id)) =
            (entry["timestamp"].as_str().and_then(seconds_of_day), entry["fields"]["id"].as_str().map(str::to_owned))
        else {
            continue;
        };
        match entry["fields"]["message"].as_str() {
            Some("job started") => devices.entry(id).or_default().0 = Some(at),
            Some("provisioned") => devices.entry(id).or_default().1 = Some(at),
            _ => {}
        }
    }
    devices
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run_size(options: &Options, size: usize) -> Result<()> {
    let (postgres, rounds) = (options.postgres, options.rounds);
    let dir = tempfile::tempdir()?;
    let db = if postgres { Database::postgres()? } else { Database::sqlite(dir.path()) };
    let hsm = if options.hsm { Some(SoftHsm::new(dir.path())?) } else { None };
    let station = match &hsm {
        Some(hsm) => Station::init_in_token(dir.path(), db, hsm, &[])?,
        None => Station::init(dir.path(), db)?,
    };
    let root: [u8; 32] = hex::decode(std::fs::read_to_string(station.factory_root_file())?.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("factory root"))?;
    let farm = Farm::start(dir.path(), "bench", size * rounds, root)?;
    let (mut rates, mut latencies, mut walls) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let devices = &farm.devices[round * size..(round + 1) * size];
        let mut args = vec!["provision".to_owned(), "--json".into()];
        for device in devices {
            args.push("--serial".into());
            args.push(device.port.to_string_lossy().into_owned());
        }
        for device in devices {
            args.push("--qr".into());
            args.push(device.payload.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut command = station.command(&["--log-format", "json"]);
        command.args(&args).env(
            "KEYFILL_LOG",
            std::env::var("KEYFILL_BENCH_LOG").unwrap_or_else(|_| "warn,keyfill=debug,keyfill_station=info".into()),
        );
        let started = Instant::now();
        let output = command.output()?;
        walls.push(started.elapsed().as_secs_f64());
        if !output.status.success() {
            bail!("keyfill provision failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        if let Some(path) = &options.keep_log {
            std::fs::write(path, &output.stderr)?;
        }
        let times = timings(&output.stderr);
        let (mut first, mut last) = (f64::MAX, f64::MIN);
        for device in devices {
            let (Some(start), Some(end)) = times.get(&device.id).copied().unwrap_or_default() else {
                bail!("no timing for {} in the station's log", device.name);
            };
            first = first.min(start);
            last = last.max(end);
            latencies.push((end - start) * 1000.0);
        }
        rates.push(size as f64 / (last - first).max(1e-6));
    }
    latencies.sort_by(f64::total_cmp);
    rates.sort_by(f64::total_cmp);
    walls.sort_by(f64::total_cmp);
    let bytes: u64 = farm.devices.iter().map(|d| d.wire_bytes.load(Ordering::Relaxed)).sum();
    let per_device = bytes as f64 / farm.devices.len() as f64;
    println!(
        "N={size:<3} {:>8.0} devices/s (median of {rounds}; {:.0}–{:.0})  per device p50 {:>6.1} ms  p99 {:>6.1} ms  \
         run wall {:.2} s  wire {:.0} B/device = {:.0} ms at 115200 baud",
        percentile(&rates, 50.0),
        rates[0],
        rates[rates.len() - 1],
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&walls, 50.0),
        per_device,
        per_device * 10.0 / 115_200.0 * 1000.0
    );
    Ok(())
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("provision_throughput: {error:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "provisioning throughput on {}{}, {} round(s) per size",
        if options.postgres { "PostgreSQL" } else { "SQLite (synchronous FULL)" },
        if options.hsm { ", keys in SoftHSM2" } else { ", keys in files" },
        options.rounds
    );
    for &size in &options.sizes {
        if let Err(error) = run_size(&options, size) {
            eprintln!("provision_throughput: N={size}: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
