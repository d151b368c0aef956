//! Offline bundles at factory scale: `keyfill export bundle` of a million keys from a SQLite
//! inventory, then `keyfill bundle inspect --key`, which verifies, decrypts and checks every key
//! as `keyfill import bundle` does before it sends anything. Wall time and peak resident memory of
//! each process (its own `getrusage` high-water mark, through a wrapper that runs nothing else).
//! Target: each within 10 s and 256 MiB for 1,000,000 keys.
//!
//! ```sh
//! cargo bench -p keyfill-e2e --bench bundle_million                        # 1,000,000 keys, 3 runs
//! cargo bench -p keyfill-e2e --bench bundle_million -- --devices 100000 --runs 1
//! cargo bench -p keyfill-e2e --bench bundle_million -- --postgres    # the inventory in PostgreSQL
//! ```
//! The inventory is filled once, straight into the database (not timed); each run writes a new
//! bundle of every key and opens it. `--keep DIR` keeps the station there and reuses it when run
//! again with the same DIR and count (for profiling the export with `perf record keyfill …`).

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::{Database, Station, fleet::record_fleet, rand_u64};
use nix::sys::resource::{UsageWho, getrusage};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const PASSPHRASE: &str = "bundle bench operator";

/// What one measured process took.
struct Measured {
    elapsed: Duration,
    peak_kib: i64,
}

/// Runs `inner` as the only child of a copy of this binary (`--measure`), whose
/// `getrusage(RUSAGE_CHILDREN)` is then that process's own peak resident set.
fn measured(inner: &Command) -> Result<Measured> {
    let mut wrapper = Command::new(std::env::current_exe()?);
    wrapper.arg("--measure").arg(inner.get_program()).args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => wrapper.env(name, value),
            None => wrapper.env_remove(name),
        };
    }
    let started = Instant::now();
    let output = wrapper.stdin(Stdio::null()).output()?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "{} failed: {}",
        inner.get_program().display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let peak_kib = stdout
        .lines()
        .find_map(|line| line.strip_prefix("peak_kib "))
        .and_then(|kib| kib.trim().parse().ok())
        .context("the wrapper reported no peak")?;
    Ok(Measured { elapsed, peak_kib })
}

/// The `--measure` side: run the command, report its peak, exit with its status.
fn measure(mut args: impl Iterator<Item = String>) -> Result<ExitCode> {
    let program = args.next().context("--measure needs a command")?;
    let status = Command::new(program).args(args).stdout(Stdio::null()).status()?;
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    // Linux reports ru_maxrss in KiB.
    println!("peak_kib {}", usage.max_rss());
    if !status.success() {
        bail!("the command exited with {status}");
    }
    Ok(ExitCode::SUCCESS)
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("a path that is not UTF-8")
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--measure") {
        args.next();
        return measure(args).unwrap_or_else(|error| {
            eprintln!("{error:#}");
            ExitCode::FAILURE
        });
    }
    let mut devices = 1_000_000;
    let mut runs = 3;
    let mut keep = None;
    let mut postgres = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--devices" => devices = args.next().and_then(|n| n.parse().ok()).unwrap_or(devices),
            "--runs" => runs = args.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            "--keep" => keep = args.next().map(std::path::PathBuf::from),
            "--postgres" => postgres = true,
            other => {
                eprintln!("bundle_million: unknown argument {other}");
                return ExitCode::from(2);
            }
        }
    }
    match bench(devices, runs, keep.as_deref(), postgres) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bundle_million: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(devices: usize, runs: usize, keep: Option<&Path>, postgres: bool) -> Result<()> {
    let temporary = tempfile::tempdir()?;
    let dir = match keep {
        Some(dir) => dir.join(devices.to_string()),
        None => temporary.path().to_path_buf(),
    };
    let dir = dir.as_path();
    let key = dir.join("c2-operator.key");
    let passphrase = dir.join("passphrase");
    let station = if key.exists() {
        println!("reusing the station of {devices} devices in {}", dir.display());
        Station {
            home: dir.join("station-home"),
            db: Database::sqlite(dir),
            transcript: Default::default(),
            env: Vec::new(),
        }
    } else {
        std::fs::create_dir_all(dir)?;
        let database = if postgres { Database::postgres()? } else { Database::sqlite(dir) };
        println!("inventory: {}", if postgres { "PostgreSQL (local server)" } else { "SQLite" });
        let station = Station::init(dir, database)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let prefix = format!("bundle-bench-{:08x}", rand_u64() as u32);
        let started = Instant::now();
        runtime.block_on(record_fleet(&station, &prefix, devices, |_, _| {}))?;
        println!("{devices} devices recorded in {:.0} s (set-up, not measured)", started.elapsed().as_secs_f64());
        std::fs::write(&passphrase, PASSPHRASE)?;
        let output =
            station.run(&["bundle", "new-key", "--out", path(&key)?, "--key-passphrase-file", path(&passphrase)?])?;
        ensure!(output.status.success(), "new-key: {}", String::from_utf8_lossy(&output.stderr));
        station
    };
    let public = dir.join("c2-operator.key.pub");
    let root = station.factory_root_file();

    println!("bundle of {devices} keys: export, then open and check every key (the import's verification)");
    for number in 1..=runs {
        let bundle = dir.join(format!("keys-{number}.kfb"));
        let mut export = station.command(&["export", "bundle", "--recipient", path(&public)?, "--out", path(&bundle)?]);
        export.env("KEYFILL_LOG", "warn");
        let written = measured(&export)?;
        let size = std::fs::metadata(&bundle)?.len();
        let mut open = station.command(&[
            "bundle",
            "inspect",
            path(&bundle)?,
            "--factory-root",
            path(&root)?,
            "--key",
            path(&key)?,
            "--key-passphrase-file",
            path(&passphrase)?,
        ]);
        open.env("KEYFILL_LOG", "warn");
        let opened = measured(&open)?;
        println!(
            "  run {number}: export {:.2} s, peak {} MiB ({:.0} MiB file) | open {:.2} s, peak {} MiB",
            written.elapsed.as_secs_f64(),
            written.peak_kib / 1024,
            size as f64 / (1024.0 * 1024.0),
            opened.elapsed.as_secs_f64(),
            opened.peak_kib / 1024,
        );
        std::fs::remove_file(&bundle)?;
    }
    Ok(())
}
