//! The crash-consistency campaign: provisioning runs over pseudo-terminals in which the station or
//! the device dies at a chosen or a random point (inside a database commit, inside the keystore
//! write, between or just after any two messages), then everything restarts and the station
//! settles the device on the same link. After every crash and after every recovery the
//! invariants are checked against the database and the device's keystore:
//!
//! 1. every key the device holds is known to the station for that device, `pending` or `active`;
//! 2. a record is `provisioned` only with the key the device holds (the one it confirmed);
//! 3. no device has two `active` keys or two `pending` keys, and its current key is its own;
//! 4. the device's keystore always loads (never empty or torn), whatever the crash.
//!
//! `tests/tests/crash.rs` runs a reduced count in CI; `scripts/crash-campaign N` the full one.

use crate::relay::{Action, Relay};
use crate::{Agent, Database, Station};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator, so that a failing run is replayed from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Where the station can be made to die by name (`KEYFILL_CRASH_AT`): either side of each
/// inventory commit of a provisioning and of a reconciliation.
pub const STATION_POINTS: &[&str] = &[
    "commit:pending:before",
    "commit:pending:after",
    "commit:provisioned:before",
    "commit:provisioned:after",
    "commit:reconciled:before",
    "commit:reconciled:after",
    "commit:failed:before",
    "commit:failed:after",
    "commit:unconfirmed:before",
    "commit:unconfirmed:after",
];

/// Where the device can be made to die by name: inside the keystore's atomic write.
pub const AGENT_POINTS: &[&str] = &["write:temporary-written", "write:temporary-synced", "write:renamed"];

/// How one attempt is disturbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The station dies at a named point (a point the run never reaches leaves it alive).
    StationAt(&'static str),
    /// The device dies at a named point.
    AgentAt(&'static str),
    /// The station is killed (SIGKILL) `delay` after message `after` of the run passed the relay.
    KillStation { after: usize, delay: Duration },
    /// The device is killed `delay` after message `after` passed the relay.
    KillAgent { after: usize, delay: Duration },
    /// The link loses message `lost` (2: the handshake reply, so the key never leaves; 6: the
    /// confirmation, so it leaves unconfirmed), the station gives up after 2 s and dies at the
    /// named point as it records that.
    StationAtAfterLoss { point: &'static str, lost: usize },
}

impl Fault {
    pub fn random(rng: &mut Rng) -> Fault {
        let after = 1 + rng.below(6) as usize;
        // Up to 30 ms after a message: long enough to land in the commit or the keystore write
        // that follows it, short enough to land before the next message.
        let delay = Duration::from_micros(rng.below(30_000));
        match rng.below(5) {
            0 => Fault::StationAt(rng.pick(STATION_POINTS)),
            1 => Fault::AgentAt(rng.pick(AGENT_POINTS)),
            2 => Fault::KillStation { after, delay },
            3 => Fault::KillAgent { after, delay },
            _ => match rng.below(4) {
                0 => Fault::StationAtAfterLoss { point: "commit:failed:before", lost: 2 },
                1 => Fault::StationAtAfterLoss { point: "commit:failed:after", lost: 2 },
                2 => Fault::StationAtAfterLoss { point: "commit:unconfirmed:before", lost: 6 },
                _ => Fault::StationAtAfterLoss { point: "commit:unconfirmed:after", lost: 6 },
            },
        }
    }
}

/// What the database says of one device.
#[derive(Debug, Clone, Default)]
pub struct StationView {
    pub state: Option<String>,
    pub current_key: Option<String>,
    /// `(key id, state)` of every key of the device.
    pub keys: Vec<(String, String)>,
}

/// Totals of a campaign, for the report.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub runs: usize,
    pub station_died: usize,
    pub agent_died: usize,
    pub checks: usize,
    pub reconciled_held: usize,
    pub reconciled_not_held: usize,
}

fn kill(pid: u32) {
    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// One station, one relay, one device after another.
#[derive(Debug)]
pub struct ProvisioningCampaign {
    pub station: Station,
    pub relay: Relay,
    dir: std::path::PathBuf,
    db_path: std::path::PathBuf,
    runtime: tokio::runtime::Runtime,
    pub tally: Tally,
}

impl ProvisioningCampaign {
    pub fn new(dir: &Path) -> Result<Self> {
        let db = Database::sqlite(dir);
        let db_path = match &db {
            Database::Sqlite { path, .. } => path.clone(),
            Database::Postgres { .. } | Database::Shared { .. } => bail!("the campaign reads SQLite"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(ProvisioningCampaign {
            station: Station::init(dir, db)?,
            relay: Relay::new(dir)?,
            dir: dir.to_owned(),
            db_path,
            runtime,
            tally: Tally::default(),
        })
    }

    fn port(&self) -> String {
        self.relay.station_port().to_string_lossy().into_owned()
    }

    /// The station's record of `device_id`, read straight from the database.
    pub fn station_view(&self, device_id: &str) -> Result<StationView> {
        let url = format!("sqlite://{}?mode=ro", self.db_path.display());
        self.runtime.block_on(async {
            let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await?;
            let device: Option<(String, Option<String>)> =
                sqlx::query_as("SELECT state, current_key_id FROM devices WHERE id = ?")
                    .bind(device_id)
                    .fetch_optional(&pool)
                    .await?;
            let keys: Vec<(String, String)> =
                sqlx::query_as("SELECT key_id, state FROM device_keys WHERE device_id = ? ORDER BY created_at")
                    .bind(device_id)
                    .fetch_all(&pool)
                    .await?;
            pool.close().await;
            Ok(StationView { state: device.as_ref().map(|d| d.0.clone()), current_key: device.and_then(|d| d.1), keys })
        })
    }

    /// Checks invariants 1-4 for `agent`'s device; `settled` also requires it provisioned with
    /// the key the device holds.
    pub fn check(&mut self, agent: &Agent, device_id: &str, settled: bool, context: &str) -> Result<()> {
        self.tally.checks += 1;
        let status =
            agent.status().with_context(|| format!("{context}: the keystore does not load (torn or empty)"))?;
        let held = status["key_id"].as_str().map(str::to_owned);
        let view = self.station_view(device_id)?;
        let state_of = |key: &str| view.keys.iter().find(|(id, _)| id == key).map(|(_, state)| state.as_str());
        if let Some(held) = &held {
            match state_of(held) {
                Some("pending" | "active") => {}
                other => bail!("{context}: the device holds key {held}, which the station has as {other:?}: {view:?}"),
            }
        }
        if view.state.as_deref() == Some("provisioned") && view.current_key != held {
            bail!("{context}: provisioned with {:?} but the device holds {held:?}: {view:?}", view.current_key);
        }
        for state in ["active", "pending"] {
            if view.keys.iter().filter(|(_, s)| s == state).count() > 1 {
                bail!("{context}: two {state} keys: {view:?}");
            }
        }
        if let Some(current) = &view.current_key
            && state_of(current).is_none()
        {
            bail!("{context}: the current key {current} is not one of the device's keys: {view:?}");
        }
        if settled && (view.state.as_deref() != Some("provisioned") || held.is_none()) {
            bail!("{context}: not settled: the device holds {held:?}, the station says {view:?}");
        }
        Ok(())
    }

    /// Runs `keyfill provision` for `agent`'s label with `fault`; returns whether the station
    /// finished on its own (it may have succeeded or failed).
    fn disturbed_provision(&mut self, agent: &mut Agent, fault: &Fault) -> Result<bool> {
        let port = self.port();
        let args = ["provision", "--serial", port.as_str(), "--qr", agent.payload.as_str()];
        let mut command = self.station.command(&args);
        command.stdout(Stdio::null()).stderr(Stdio::null());
        match fault {
            Fault::StationAt(point) => {
                command.env("KEYFILL_CRASH_AT", point);
            }
            Fault::StationAtAfterLoss { point, .. } => {
                command
                    .env("KEYFILL_CRASH_AT", point)
                    .env("KEYFILL_REPLY_TIMEOUT", "2")
                    .env("KEYFILL_CONFIRM_TIMEOUT", "2");
            }
            _ => {}
        }
        let agent_pid = agent.pid();
        let mut station: Child = command.spawn()?;
        let station_pid = station.id();
        match fault {
            Fault::KillStation { after, delay } | Fault::KillAgent { after, delay } => {
                let (after, delay) = (*after, *delay);
                let victim = if matches!(fault, Fault::KillStation { .. }) { Some(station_pid) } else { agent_pid };
                let mut fired = false;
                self.relay.set_policy(move |seen| {
                    if !fired && seen.index == after {
                        fired = true;
                        if let Some(pid) = victim {
                            std::thread::spawn(move || {
                                std::thread::sleep(delay);
                                kill(pid);
                            });
                        }
                    }
                    Action::Forward
                });
            }
            Fault::StationAtAfterLoss { lost, .. } => {
                let lost = *lost;
                self.relay.set_policy(move |seen| if seen.index == lost { Action::Drop } else { Action::Forward });
            }
            _ => self.relay.set_policy(|_| Action::Forward),
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = station.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = station.kill();
                bail!("the station neither finished nor died");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.relay.set_policy(|_| Action::Forward);
        // Whatever the device answered into the dead station's port is left there, as in life.
        std::thread::sleep(Duration::from_millis(150));
        Ok(status.code().is_some())
    }

    /// One random run: a fresh device, one or two disturbed attempts, then the recovery.
    pub fn run(&mut self, index: usize, rng: &mut Rng) -> Result<String> {
        let mut faults = vec![Fault::random(rng)];
        if rng.below(3) == 0 {
            // A second crash while the first is being recovered (a reconciliation, say).
            faults.push(Fault::random(rng));
        }
        self.run_with(index, faults)
    }

    /// One run with the given faults, one attempt each, then the recovery on the same link,
    /// which must settle the device at its first attempt.
    pub fn run_with(&mut self, index: usize, faults: Vec<Fault>) -> Result<String> {
        let name = format!("crash-{index:04}");
        let mut agent = Agent::init(&self.dir, &name, &self.station.factory_root_file(), &[])?;
        let device_id = keyfill_formats::DeviceId::from_name(&name).to_hex();
        for (attempt, fault) in faults.iter().enumerate() {
            match fault {
                Fault::AgentAt(point) => {
                    agent.serve_env(self.relay.device_port(), &[], &[("KEYFILL_CRASH_AT", point)])?
                }
                _ => agent.serve(self.relay.device_port(), &[])?,
            }
            let finished = self.disturbed_provision(&mut agent, fault)?;
            if !finished {
                self.tally.station_died += 1;
            }
            if !agent.is_serving() {
                self.tally.agent_died += 1;
            }
            self.check(&agent, &device_id, false, &format!("{name} after {fault:?} (attempt {attempt})"))?;
        }
        agent.serve(self.relay.device_port(), &[])?;
        let port = self.port();
        let output = self.station.run(&["provision", "--serial", &port, "--qr", &agent.payload])?;
        // A station that died right after recording the confirmation has nothing left to do.
        let already = String::from_utf8_lossy(&output.stderr).contains("is already provisioned");
        if !output.status.success() && !already {
            bail!(
                "{name}: recovery after {faults:?} failed at its first attempt: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let said = String::from_utf8_lossy(&output.stdout);
        if said.contains("reconciled: the device already held its key") {
            self.tally.reconciled_held += 1;
        } else if self.station.history_kinds(&name)?.iter().any(|k| k == "reconciled") {
            self.tally.reconciled_not_held += 1;
        }
        self.check(&agent, &device_id, true, &format!("{name} recovered after {faults:?}"))?;
        agent.stop();
        self.tally.runs += 1;
        Ok(format!("{name}: {faults:?}"))
    }
}

/// Where the station can be made to die in a rotation: either side of each of its commits.
pub const ROTATION_POINTS: &[&str] = &[
    "commit:rotation-started:before",
    "commit:rotation-started:after",
    "commit:rotated:before",
    "commit:rotated:after",
    "commit:rotation-failed:before",
    "commit:rotation-failed:after",
];

/// How one rotation attempt is disturbed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationFault {
    StationAt(&'static str),
    /// The device's E4 client dies inside its keystore write (storing the next key, or erasing
    /// the old one).
    AgentAt(&'static str),
    KillStation {
        after: Duration,
    },
    KillAgent {
        after: Duration,
    },
}

impl RotationFault {
    /// A random fault; timed kills fall within `typical`, the length of an undisturbed run.
    pub fn random(rng: &mut Rng, typical: Duration) -> RotationFault {
        let after = Duration::from_micros(rng.below(typical.as_micros().max(1) as u64));
        match rng.below(4) {
            0 => RotationFault::StationAt(rng.pick(ROTATION_POINTS)),
            1 => RotationFault::AgentAt(rng.pick(AGENT_POINTS)),
            2 => RotationFault::KillStation { after },
            _ => RotationFault::KillAgent { after },
        }
    }
}

/// One provisioned device rotated again and again over Mosquitto, a fault in every rotation.
#[derive(Debug)]
pub struct RotationCampaign {
    provisioning: ProvisioningCampaign,
    agent: Agent,
    name: String,
    device_id: String,
    broker: String,
    /// How long an undisturbed `keyfill rotate` of the device takes here, start-up included:
    /// timed kills are drawn within it.
    typical: Duration,
    pub tally: Tally,
}

impl RotationCampaign {
    /// Provisions the campaign's device, whose name is unique to the run: retained messages
    /// outlive runs on the broker.
    pub fn new(dir: &Path, broker: &str) -> Result<Self> {
        let provisioning = ProvisioningCampaign::new(dir)?;
        let name = crate::unique_name("crash-rot");
        let mut agent = Agent::init(dir, &name, &provisioning.station.factory_root_file(), &[])?;
        agent.serve(provisioning.relay.device_port(), &[])?;
        let port = provisioning.port();
        let output = provisioning.station.run(&["provision", "--serial", &port, "--qr", &agent.payload])?;
        if !output.status.success() {
            bail!("provisioning the rotation device failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        agent.stop();
        let device_id = keyfill_formats::DeviceId::from_name(&name).to_hex();
        let mut campaign = RotationCampaign {
            provisioning,
            agent,
            name,
            device_id,
            broker: broker.to_owned(),
            typical: Duration::ZERO,
            tally: Tally::default(),
        };
        campaign.agent.mqtt(broker, &[])?;
        let started = Instant::now();
        let output = campaign.rotate(&[])?.wait_with_output()?;
        campaign.typical = started.elapsed();
        if !output.status.success() {
            bail!("an undisturbed rotation failed");
        }
        campaign.agent.stop();
        Ok(campaign)
    }

    /// The rotation invariants: the keystore loads; the key the device uses is one the station
    /// can still reach it with (`active` or `next`), or, once the station has retired it, the
    /// device holds the station's active key as its next; a next key on the device is the
    /// station's next or active key; `settled` also requires the rotation confirmed and both
    /// sides on the same key.
    fn check(&mut self, settled: bool, context: &str) -> Result<()> {
        self.tally.checks += 1;
        let status =
            self.agent.status().with_context(|| format!("{context}: the keystore does not load (torn or empty)"))?;
        let current = status["key_id"].as_str().map(str::to_owned);
        let next = status["next_key_id"].as_str().map(str::to_owned);
        let view = self.provisioning.station_view(&self.device_id)?;
        let state_of = |key: &str| view.keys.iter().find(|(id, _)| id == key).map(|(_, state)| state.clone());
        let station_active = view.keys.iter().find(|(_, s)| s == "active").map(|(id, _)| id.clone());
        let Some(current) = current else { bail!("{context}: the device lost its key: {status}") };
        match state_of(&current).as_deref() {
            Some("active" | "next") => {}
            Some("retired") if next.is_some() && next == station_active => {}
            other => bail!("{context}: the device uses {current}, which the station has as {other:?}: {view:?}"),
        }
        if let Some(next) = &next
            && !matches!(state_of(next).as_deref(), Some("next" | "active"))
        {
            bail!("{context}: the device's next key {next} is unknown to the station: {view:?}");
        }
        for state in ["active", "next"] {
            if view.keys.iter().filter(|(_, s)| s == state).count() > 1 {
                bail!("{context}: two {state} keys: {view:?}");
            }
        }
        if settled && (station_active.as_deref() != Some(current.as_str()) || next.is_some()) {
            bail!("{context}: not settled: the device uses {current} (next {next:?}), the station {view:?}");
        }
        Ok(())
    }

    fn rotate(&self, env: &[(&str, &str)]) -> Result<Child> {
        let mut command = self.provisioning.station.command(&[
            "rotate",
            &self.name,
            "--broker",
            &self.broker,
            "--first-wait",
            "0.5",
            "--max-attempts",
            "4",
        ]);
        command.envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::null());
        Ok(command.spawn()?)
    }

    /// One rotation with `fault`, then the recovery: the device's client running again and
    /// `keyfill rotate` once more, which must confirm a rotation at its first attempt.
    pub fn run_with(&mut self, index: usize, fault: RotationFault) -> Result<String> {
        match &fault {
            RotationFault::AgentAt(point) => self.agent.mqtt_env(&self.broker, &[], &[("KEYFILL_CRASH_AT", point)])?,
            // The station records a failed rotation only when the device stays silent.
            RotationFault::StationAt(point) if point.contains("rotation-failed") => self.agent.stop(),
            _ => self.agent.mqtt(&self.broker, &[])?,
        }
        let station_env: Vec<(&str, &str)> = match &fault {
            RotationFault::StationAt(point) => vec![("KEYFILL_CRASH_AT", point)],
            _ => Vec::new(),
        };
        let mut station = self.rotate(&station_env)?;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let mut killed = false;
        loop {
            if station.try_wait()?.is_some() {
                break;
            }
            match &fault {
                RotationFault::KillStation { after } if !killed && started.elapsed() >= *after => {
                    kill(station.id());
                    killed = true;
                }
                RotationFault::KillAgent { after } if !killed && started.elapsed() >= *after => {
                    if let Some(pid) = self.agent.pid() {
                        kill(pid);
                    }
                    killed = true;
                }
                _ => {}
            }
            if Instant::now() > deadline {
                let _ = station.kill();
                bail!("rotation {index}: the station neither finished nor died");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if station.wait()?.code().is_none() {
            self.tally.station_died += 1;
        }
        if !self.agent.is_serving() && self.agent.pid().is_some() {
            self.tally.agent_died += 1;
        }
        // The device's client may still be taking in what the station sent before it died.
        std::thread::sleep(Duration::from_millis(300));
        self.check(false, &format!("rotation {index} after {fault:?}"))?;

        self.agent.mqtt(&self.broker, &[])?;
        let output = self.rotate(&[])?.wait_with_output()?;
        if !output.status.success() {
            bail!("rotation {index}: the rotation after {fault:?} was not confirmed at its first attempt");
        }
        // The device erases its old key when the station's follow-up under the new key arrives.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.check(true, &format!("rotation {index} recovered after {fault:?}")) {
                Ok(()) => break,
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        self.agent.stop();
        self.tally.runs += 1;
        Ok(format!("rotation {index}: {fault:?}"))
    }

    pub fn run(&mut self, index: usize, rng: &mut Rng) -> Result<String> {
        let fault = RotationFault::random(rng, self.typical);
        self.run_with(index, fault)
    }
}
