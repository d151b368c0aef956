//! Several station processes on one PostgreSQL database, as a factory line runs them: one
//! factory root, one shared master key (the first station shares it, the others join with it),
//! and a farm of simulated devices each offered to two stations at once. The `multi_station`
//! tests check what the run leaves in the database; the `multi_station` benchmark times it.

use crate::farm::Farm;
use crate::{Database, Station};
use anyhow::{Context, Result, bail};
use keyfill_station::db::Inventory;
use ring::signature::KeyPair;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The transfer passphrase of the master-key share the stations join with.
const SHARE_PASSPHRASE: &str = "line transfer passphrase";

/// Stations sharing one database.
#[derive(Debug)]
pub struct SharedLine {
    pub stations: Vec<Station>,
    pub factory_root: [u8; 32],
    /// Owns the database; dropped last.
    pub db: Database,
}

impl SharedLine {
    /// `count` stations named `line-N` on a fresh PostgreSQL database.
    pub fn new(dir: &Path, count: usize) -> Result<Self> {
        let db = Database::postgres()?;
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("no factory root"))?;
        let root_file = dir.join("factory-root.pk8");
        std::fs::write(&root_file, pkcs8.as_ref())?;
        let pair =
            ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("factory root"))?;
        let factory_root: [u8; 32] = pair.public_key().as_ref().try_into()?;
        let root = root_file.to_str().context("path")?;
        let share = dir.join("master.share");
        let share_arg = share.to_str().context("path")?.to_owned();
        let mut stations = Vec::new();
        for index in 0..count {
            let station = Station {
                home: dir.join(format!("station-{index}")),
                db: db.shared(),
                transcript: Default::default(),
                env: Vec::new(),
            };
            let name = format!("line-{index}");
            let env = [("KEYFILL_SHARE_PASSPHRASE", SHARE_PASSPHRASE)];
            let mut args = vec!["init", "--station-name", &name, "--factory-root-key", root];
            if index > 0 {
                args.extend(["--join-master", &share_arg]);
            }
            let output = station.run_env(&args, &env)?;
            if !output.status.success() {
                bail!("keyfill init of {name} failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            if index == 0 {
                let output = station.run_env(&["master", "share", "--out", &share_arg], &env)?;
                if !output.status.success() {
                    bail!("keyfill master share failed: {}", String::from_utf8_lossy(&output.stderr));
                }
            }
            stations.push(station);
        }
        Ok(SharedLine { stations, factory_root, db })
    }

    /// Starts `keyfill provision` on station `index` for the farm's devices `offered`, each on
    /// its own pseudo-terminal, all at once; stdout (the JSON report) goes to `report`.
    pub fn provision(
        &self,
        index: usize,
        farm: &Farm,
        offered: &[usize],
        lease_secs: u64,
        report: &Path,
    ) -> Result<Child> {
        let mut command = self.stations[index].command(&["provision", "--json"]);
        for &device in offered {
            command.arg("--serial").arg(&farm.devices[device].port);
        }
        for &device in offered {
            command.arg("--qr").arg(&farm.devices[device].payload);
        }
        command
            .env("KEYFILL_LEASE_SECS", lease_secs.to_string())
            .env("KEYFILL_LOG", "warn")
            .stdout(std::fs::File::create(report)?)
            .stderr(std::fs::File::create(report.with_extension("stderr"))?);
        Ok(command.spawn()?)
    }
}

/// Which farm devices each station is offered: `devices` split into `stations` groups, station
/// i offered groups i and i + 1, so every device is offered to exactly two stations.
pub fn overlapping_offers(devices: usize, stations: usize) -> Vec<Vec<usize>> {
    let group = |g: usize| (g * devices / stations)..((g + 1) * devices / stations);
    (0..stations).map(|i| group(i).chain(group((i + 1) % stations)).collect()).collect()
}

/// What the database holds after a run, checked against the farm.
#[derive(Debug, Default)]
pub struct LineOutcome {
    pub provisioned: usize,
    /// Devices with no provisioned record, or whose record's key is not the one the device holds.
    pub lost: Vec<String>,
    /// Devices recorded as provisioned more than once (more than one confirmed key, or more than
    /// one provisioned or reconciled-as-held event).
    pub duplicates: Vec<String>,
    /// Devices provisioned by a station they were not offered to.
    pub misplaced: Vec<String>,
    /// Keys whose check value is missing or shared.
    pub bad_check_values: usize,
    /// Devices whose lease another station took over after it expired.
    pub taken_over: usize,
    /// Device records the farm does not know.
    pub unknown: usize,
}

impl LineOutcome {
    pub fn clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicates.is_empty()
            && self.misplaced.is_empty()
            && self.bad_check_values == 0
            && self.unknown == 0
    }
}

/// Reads the shared database and checks every device of the farm.
pub fn check(line: &SharedLine, farm: &Farm, offers: &[Vec<usize>]) -> Result<LineOutcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let inventory = Inventory::open(line.db.url()).await?;
        let pool = inventory.pool();
        let devices: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, state, current_key_id FROM devices").fetch_all(pool).await?;
        let active: Vec<(String, String)> =
            sqlx::query_as("SELECT device_id, station_id FROM device_keys WHERE state = 'active'")
                .fetch_all(pool)
                .await?;
        let confirmations: Vec<(String,)> = sqlx::query_as(
            "SELECT device_id FROM events WHERE kind = 'provisioned' \
             OR (kind = 'reconciled' AND detail = 'device proved it holds the pending key')",
        )
        .fetch_all(pool)
        .await?;
        let (keys, distinct): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT check_value) FROM device_keys").fetch_one(pool).await?;
        let (taken_over,): (i64,) =
            sqlx::query_as("SELECT COUNT(DISTINCT device_id) FROM events WHERE kind = 'lease_taken_over'")
                .fetch_one(pool)
                .await?;
        let stations: Vec<(String,)> =
            sqlx::query_as("SELECT station_id FROM stations ORDER BY first_seen").fetch_all(pool).await?;
        inventory.close().await;

        let station_ids: Vec<String> = line
            .stations
            .iter()
            .map(|s| keyfill_station::home::StationHome::new(&s.home).info().map(|info| hex::encode(info.station_id)))
            .collect::<Result<_, _>>()?;
        if stations.len() != station_ids.len() {
            bail!("{} stations registered, {} expected", stations.len(), station_ids.len());
        }
        let mut offered_to: HashMap<usize, HashSet<&str>> = HashMap::new();
        for (station, devices) in offers.iter().enumerate() {
            for &device in devices {
                offered_to.entry(device).or_default().insert(&station_ids[station]);
            }
        }
        let by_id: HashMap<&str, (&str, Option<&str>)> =
            devices.iter().map(|(id, state, key)| (id.as_str(), (state.as_str(), key.as_deref()))).collect();
        let count = |rows: &[(String,)]| {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for (id,) in rows {
                *counts.entry(id.clone()).or_default() += 1;
            }
            counts
        };
        let confirmed = count(&confirmations);
        let mut active_count: HashMap<&str, Vec<&str>> = HashMap::new();
        for (device, station) in &active {
            active_count.entry(device).or_default().push(station);
        }
        let mut outcome = LineOutcome {
            bad_check_values: usize::try_from(keys - distinct)?,
            taken_over: usize::try_from(taken_over)?,
            ..LineOutcome::default()
        };
        let known: HashSet<&str> = farm.devices.iter().map(|d| d.id.as_str()).collect();
        outcome.unknown = devices.iter().filter(|(id, _, _)| !known.contains(id.as_str())).count();
        for (index, device) in farm.devices.iter().enumerate() {
            let Some(offered) = offered_to.get(&index) else { continue };
            let held = device.keystore.key_id();
            match by_id.get(device.id.as_str()) {
                Some(("provisioned", key)) if key.is_some() && *key == held.as_deref() => outcome.provisioned += 1,
                _ => {
                    outcome.lost.push(device.name.clone());
                    continue;
                }
            }
            let stations = active_count.get(device.id.as_str()).cloned().unwrap_or_default();
            if stations.len() != 1 || confirmed.get(&device.id).copied().unwrap_or(0) != 1 {
                outcome.duplicates.push(device.name.clone());
            }
            if stations.iter().any(|s| !offered.contains(s)) {
                outcome.misplaced.push(device.name.clone());
            }
        }
        Ok(outcome)
    })
}

/// The report a `keyfill provision --json` run printed: one entry per device.
pub fn read_report(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read(path)?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("the report {} is not JSON: {}", path.display(), String::from_utf8_lossy(&text)))?;
    Ok(match value {
        serde_json::Value::Array(entries) => entries,
        other => vec![other],
    })
}

/// Where a station's report goes.
pub fn report_path(dir: &Path, station: usize, run: &str) -> PathBuf {
    dir.join(format!("report-{station}-{run}.json"))
}

/// Devices the database shows provisioned, and leases held by `station_id`, now.
pub fn progress(line: &SharedLine, station_id: &str) -> Result<(i64, i64)> {
    let query = format!(
        "SELECT (SELECT COUNT(*) FROM devices WHERE state = 'provisioned') || ' ' || \
         (SELECT COUNT(*) FROM device_leases WHERE station_id = '{station_id}')"
    );
    let output = Command::new("psql").args([line.db.url(), "-At", "-c", &query]).stderr(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.split_whitespace().map(|n| n.parse::<i64>().unwrap_or(0));
    Ok((numbers.next().unwrap_or(0), numbers.next().unwrap_or(0)))
}
