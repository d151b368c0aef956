//! Fleet rotation benchmark: how long one `keyfill rotate --all-provisioned` run takes over
//! simulated devices (real agent E4 clients behind MQTT connections of 100 devices each to Mosquitto on
//! 127.0.0.1:1883), from the station's start to its report.
//!
//! ```sh
//! cargo bench -p keyfill-e2e --bench rotation_fleet                              # 1,000 devices, 3 runs
//! cargo bench -p keyfill-e2e --bench rotation_fleet -- --devices 5000 --window 512 --runs 5
//! cargo bench -p keyfill-e2e --bench rotation_fleet --profile dev               # the test build
//! cargo bench -p keyfill-e2e --bench rotation_fleet -- --mqtt-inflight 200       # beyond Mosquitto's limit
//! ```
//! `KEYFILL_FLEET_STDERR=FILE` keeps the station's log of the last run.
//! The binaries are built with the benchmark's profile (release under `cargo bench`). Each run
//! starts from a fresh station and fresh devices; the inventory and farm set-up are not timed.

use keyfill_e2e::fleet::rotate_fleet;
use std::process::ExitCode;

struct Options {
    devices: usize,
    window: usize,
    runs: usize,
    mqtt_inflight: Option<String>,
}

fn count(args: &mut impl Iterator<Item = String>, option: &str) -> Result<usize, String> {
    args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).ok_or(format!("{option} needs a positive count"))
}

fn options() -> Result<Options, String> {
    let mut options = Options { devices: 1000, window: 256, runs: 3, mqtt_inflight: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes --bench to harness-less benchmarks.
            "--bench" => {}
            "--devices" => options.devices = count(&mut args, "--devices")?,
            "--window" => options.window = count(&mut args, "--window")?,
            "--runs" => options.runs = count(&mut args, "--runs")?,
            "--mqtt-inflight" => options.mqtt_inflight = Some(count(&mut args, "--mqtt-inflight")?.to_string()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("rotation_fleet: {error}");
            return ExitCode::from(2);
        }
    };
    let extra: Vec<&str> = match &options.mqtt_inflight {
        Some(inflight) => vec!["--mqtt-inflight", inflight],
        None => Vec::new(),
    };
    println!(
        "rotating {} simulated devices, window {}, MQTT in flight {}, {} runs",
        options.devices,
        options.window,
        options.mqtt_inflight.as_deref().unwrap_or("20 (default)"),
        options.runs
    );
    let mut seconds = Vec::new();
    for run in 1..=options.runs {
        match rotate_fleet(options.devices, options.window, &extra) {
            Ok(done) if done.active == options.devices && done.behind == 0 => {
                let secs = done.elapsed.as_secs_f64();
                println!(
                    "run {run}: {secs:.2} s ({:.0} devices/s), {} devices needed a second command, {} station warnings",
                    options.devices as f64 / secs,
                    done.retried,
                    done.warnings.len()
                );
                seconds.push(secs);
            }
            Ok(done) => {
                eprintln!("run {run}: {} of {} active, {} behind", done.active, options.devices, done.behind);
                return ExitCode::FAILURE;
            }
            Err(error) => {
                eprintln!("run {run}: {error:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!("median {median:.2} s, min {:.2} s, max {:.2} s", seconds[0], seconds[seconds.len() - 1]);
    ExitCode::SUCCESS
}
