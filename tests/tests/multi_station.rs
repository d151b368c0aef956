//! Four station processes on one PostgreSQL database, 500 simulated devices each, every device
//! offered to two stations at once: each device is provisioned exactly once, by one of the two,
//! with no duplicate and none lost; and the same when one station is killed (SIGKILL) mid-run
//! and started again, its devices taken over by the other stations once its leases expire.
//!
//! `KEYFILL_MULTI_STATION_DEVICES` sets the devices per station (default 500).

use anyhow::{Context, Result};
use keyfill_e2e::farm::Farm;
use keyfill_e2e::shared_line::{SharedLine, check, overlapping_offers, progress, read_report, report_path};
use std::time::{Duration, Instant};

const STATIONS: usize = 4;
/// A killed station's devices are free again at once for the stations of its machine (they see
/// its process is gone); the lifetime only bounds how long a loaded station may go unrenewed.
const LEASE_SECS: u64 = 10;

/// One farm at a time: two would take 4,000 of the machine's 4,096 pseudo-terminals.
static ONE_FARM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn devices_per_station() -> usize {
    std::env::var("KEYFILL_MULTI_STATION_DEVICES").ok().and_then(|n| n.parse().ok()).unwrap_or(500)
}

/// Every entry of every report says the device ended provisioned (here, or already by the other
/// station it was offered to); none says error.
fn assert_reports_settled(reports: &[Vec<serde_json::Value>]) {
    for (station, report) in reports.iter().enumerate() {
        for entry in report {
            assert_eq!(entry["state"], "provisioned", "station {station}: {entry}");
        }
    }
}

#[test]
fn multi_station_four_stations_on_one_postgres_provision_each_device_exactly_once() -> Result<()> {
    let _one_farm = ONE_FARM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir()?;
    let line = SharedLine::new(dir.path(), STATIONS)?;
    let per_station = devices_per_station();
    let total = per_station * STATIONS / 2;
    let farm = Farm::start(dir.path(), "multi", total, line.factory_root)?;
    let offers = overlapping_offers(total, STATIONS);
    let started = Instant::now();
    let mut runs = Vec::new();
    for (index, offered) in offers.iter().enumerate() {
        assert_eq!(offered.len(), per_station);
        let report = report_path(dir.path(), index, "only");
        runs.push((line.provision(index, &farm, offered, LEASE_SECS, &report)?, report));
    }
    let mut reports = Vec::new();
    for (mut child, report) in runs {
        child.wait()?;
        reports.push(read_report(&report)?);
    }
    eprintln!("{total} devices, {STATIONS} stations: {:.1} s", started.elapsed().as_secs_f64());
    assert_reports_settled(&reports);
    for report in &reports {
        assert_eq!(report.len(), per_station);
    }
    // Each device: once "provisioned" by one station, "already provisioned" at the other.
    let done_here = reports.iter().flatten().filter(|e| e.get("note").is_none()).count();
    assert_eq!(done_here, total, "each device provisioned by exactly one of its two stations");

    let outcome = check(&line, &farm, &offers)?;
    assert!(outcome.clean(), "{outcome:?}");
    assert_eq!(outcome.provisioned, total);

    // The fleet-wide scan agrees: every key distinct, every check value its key's.
    let scan = line.stations[1].run(&["keys", "check-duplicates", "--json"])?;
    assert!(scan.status.success(), "{}", String::from_utf8_lossy(&scan.stderr));
    let scan: serde_json::Value = serde_json::from_slice(&scan.stdout)?;
    assert_eq!(scan["keys"].as_u64(), Some(total as u64), "{scan}");
    Ok(())
}

#[test]
fn multi_station_a_station_killed_mid_run_is_taken_over_and_restarted_without_loss() -> Result<()> {
    let _one_farm = ONE_FARM.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir()?;
    let line = SharedLine::new(dir.path(), STATIONS)?;
    let per_station = devices_per_station();
    let total = per_station * STATIONS / 2;
    let farm = Farm::start(dir.path(), "killed", total, line.factory_root)?;
    let offers = overlapping_offers(total, STATIONS);
    let victim_id = hex::encode(keyfill_station::home::StationHome::new(&line.stations[0].home).info()?.station_id);
    let mut runs = Vec::new();
    for (index, offered) in offers.iter().enumerate() {
        let report = report_path(dir.path(), index, "first");
        runs.push((line.provision(index, &farm, offered, LEASE_SECS, &report)?, report));
    }
    // Killed while it holds leases, once the line is under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    let held_at_kill = loop {
        let (provisioned, held) = progress(&line, &victim_id)?;
        if provisioned >= (total / 10) as i64 && held > 0 {
            break held;
        }
        anyhow::ensure!(Instant::now() < deadline, "the line made no progress: {provisioned} provisioned");
        std::thread::sleep(Duration::from_millis(20));
    };
    runs[0].0.kill().context("SIGKILL")?;
    runs[0].0.wait()?;
    eprintln!("station line-0 killed holding {held_at_kill} leases");
    let restart = report_path(dir.path(), 0, "restart");
    let restarted = line.provision(0, &farm, &offers[0], LEASE_SECS, &restart)?;
    runs[0] = (restarted, restart);
    let mut reports = Vec::new();
    for (mut child, report) in runs {
        child.wait()?;
        reports.push(read_report(&report)?);
    }
    assert_reports_settled(&reports);

    let outcome = check(&line, &farm, &offers)?;
    assert!(outcome.clean(), "{outcome:?}");
    assert_eq!(outcome.provisioned, total);
    assert!(outcome.taken_over > 0, "the killed station's leases were taken over once expired: {outcome:?}");
    Ok(())
}
