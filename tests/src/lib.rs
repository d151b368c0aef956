//! Fixtures for end-to-end tests that drive the real `keyfill` and `keyfill-agent` binaries
//! over pseudo-terminal pairs, against SQLite files and a real PostgreSQL server.

pub mod bluez;
pub mod c2;
pub mod crash;
pub mod farm;
pub mod fleet;
pub mod labels;
pub mod mqtt_proxy;
pub mod pcscd;
pub mod relay;
pub mod shared_line;
pub mod soak;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PASSPHRASE: &str = "e2e test passphrase";
/// The passphrase of the C2 operator keys [`Station::new_operator_key`] makes.
pub const OPERATOR_PASSPHRASE: &str = "c2 operator passphrase";
/// The PostgreSQL server the tests use (trust auth); each test gets a database of its own.
pub const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The profile directory (`target/debug`, `target/release`) of the running test or benchmark:
/// the binaries it drives are built with the same profile, so a benchmark measures optimised
/// binaries and a test the ones `cargo test` built.
fn profile_dir() -> PathBuf {
    let fallback = || {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target"))
            .join("debug")
    };
    // A test or bench executable lives in `<target>/<profile>/deps/`.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .filter(|dir| dir.join("deps").is_dir())
        .unwrap_or_else(fallback)
}

/// Path of a workspace binary, built once per run with the profile of the running executable.
/// `KEYFILL_E2E_BIN_DIR` points the tests at binaries built elsewhere instead (an installed
/// package, or an older release to compare against); nothing is built then.
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("KEYFILL_E2E_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let profile_dir = profile_dir();
    let built = BUILT.get_or_init(|| cargo_build(&profile_dir, &["keyfill-station", "keyfill-agent"]));
    if let Err(error) = built {
        panic!("cannot build the binaries: {error}");
    }
    profile_dir.join(name)
}

/// `cargo build` of the packages' binaries, in the profile and target directory of `profile_dir`.
fn cargo_build(profile_dir: &Path, packages: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--bins"]);
    for package in packages {
        build.args(["-p", package]);
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        build.env("CARGO_TARGET_DIR", target);
    }
    let status =
        build.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")).status().map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("cargo build of {} failed: {status}", packages.join(", "))) }
}

/// A linked pair of pseudo-terminals made by socat: what one side writes, the other reads,
/// with the same termios behaviour as a UART.
#[derive(Debug)]
pub struct PtyPair {
    pub station_side: PathBuf,
    pub device_side: PathBuf,
    child: Child,
}

impl PtyPair {
    pub fn new(dir: &Path) -> Result<Self> {
        Self::named(dir, "tty-station", "tty-device")
    }

    /// A pair whose ends are the links `dir/station` and `dir/device`.
    pub fn named(dir: &Path, station: &str, device: &str) -> Result<Self> {
        let station_side = dir.join(station);
        let device_side = dir.join(device);
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", station_side.display()))
            .arg(format!("pty,raw,echo=0,link={}", device_side.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run socat (apt-get install socat)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(station_side.exists() && device_side.exists()) {
            if Instant::now() > deadline {
                bail!("socat did not create the pseudo-terminals");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(PtyPair { station_side, device_side, child })
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SoftHSM2's PKCS#11 module, as Debian installs it.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of a test's SoftHSM2 token.
pub const TOKEN_PIN: &str = "31415926";

/// A SoftHSM2 token of a test's own: its configuration and token directory in the test's
/// folder, so that tests never share a token.
#[derive(Debug)]
pub struct SoftHsm {
    pub conf: PathBuf,
    pub label: String,
}

impl SoftHsm {
    pub fn new(dir: &Path) -> Result<Self> {
        let tokens = dir.join("softhsm-tokens");
        std::fs::create_dir_all(&tokens)?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
        )?;
        let label = format!("keyfill-{:08x}", rand_u64() as u32);
        let output = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label, "--pin", TOKEN_PIN, "--so-pin", "27182818"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .context("softhsm2-util (Debian package softhsm2, installed by scripts/setup)")?;
        if !output.status.success() {
            bail!("softhsm2-util --init-token: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(SoftHsm { conf, label })
    }

    /// The environment a `keyfill` using this token runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("SOFTHSM2_CONF".into(), self.conf.display().to_string()), ("KEYFILL_TOKEN_PIN".into(), TOKEN_PIN.into())]
    }

    /// The token's objects as `pkcs11-tool --list-objects` (OpenSC, an independent PKCS#11
    /// client) describes them: one text per object, its header line first.
    pub fn objects(&self) -> Result<Vec<String>> {
        let mut objects: Vec<String> = Vec::new();
        for line in self.list_objects()?.lines() {
            if line.is_empty() {
                continue;
            }
            match objects.last_mut() {
                Some(object) if line.starts_with(' ') => {
                    object.push('\n');
                    object.push_str(line);
                }
                _ => objects.push(line.to_owned()),
            }
        }
        Ok(objects)
    }

    /// `pkcs11-tool --list-objects` of the token.
    pub fn list_objects(&self) -> Result<String> {
        let output = Command::new("pkcs11-tool")
            .args(["--module", SOFTHSM_MODULE, "--token-label", &self.label, "--login", "--pin", TOKEN_PIN])
            .arg("--list-objects")
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .context("pkcs11-tool (Debian package opensc, installed by scripts/setup)")?;
        if !output.status.success() {
            bail!("pkcs11-tool --list-objects: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Which database a test runs against.
#[derive(Debug)]
pub enum Database {
    Sqlite {
        url: String,
        path: PathBuf,
    },
    Postgres {
        url: String,
        name: String,
    },
    /// A PostgreSQL database another fixture owns (several stations sharing one): never dropped
    /// by this value.
    Shared {
        url: String,
    },
}

impl Database {
    pub fn sqlite(dir: &Path) -> Self {
        let path = dir.join("inventory.db");
        Database::Sqlite { url: format!("sqlite://{}", path.display()), path }
    }

    /// This database, for another station to share.
    pub fn shared(&self) -> Self {
        Database::Shared { url: self.url().to_owned() }
    }

    /// A fresh database on the PostgreSQL server, dropped at the end of the test.
    pub fn postgres() -> Result<Self> {
        let name = format!("keyfill_e2e_{:016x}", rand_u64());
        psql_admin(&format!("CREATE DATABASE {name}"))?;
        Ok(Database::Postgres { url: format!("postgres://postgres@127.0.0.1:5432/{name}"), name })
    }

    /// A copy of this database as it is now (its connections closed), to be changed without
    /// changing this one: a SQLite file copied into `dir`, a PostgreSQL database made from it
    /// as a template.
    pub fn copy(&self, dir: &Path) -> Result<Self> {
        match self {
            Database::Sqlite { path, .. } => {
                let copy = dir.join(format!("copy-{:016x}.db", rand_u64()));
                for suffix in ["", "-wal"] {
                    let from = PathBuf::from(format!("{}{suffix}", path.display()));
                    if from.exists() {
                        std::fs::copy(&from, format!("{}{suffix}", copy.display()))?;
                    }
                }
                Ok(Database::Sqlite { url: format!("sqlite://{}", copy.display()), path: copy })
            }
            Database::Postgres { name, .. } => {
                let copy = format!("keyfill_e2e_{:016x}", rand_u64());
                psql_admin(&format!("CREATE DATABASE {copy} TEMPLATE {name}"))?;
                Ok(Database::Postgres { url: format!("postgres://postgres@127.0.0.1:5432/{copy}"), name: copy })
            }
            Database::Shared { .. } => bail!("a shared database is not this fixture's to copy"),
        }
    }

    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite { url, .. } | Database::Postgres { url, .. } | Database::Shared { url } => url,
        }
    }

    /// Every byte the database holds for Keyfill's tables, as the server returns them.
    pub fn dump(&self) -> Result<Vec<u8>> {
        match self {
            Database::Sqlite { path, .. } => {
                let mut all = Vec::new();
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    if file.exists() {
                        all.extend(std::fs::read(&file)?);
                    }
                }
                Ok(all)
            }
            Database::Postgres { url, .. } | Database::Shared { url } => {
                let mut all = Vec::new();
                for table in ["devices", "device_keys", "events"] {
                    let output = Command::new("psql")
                        .args([url.as_str(), "-At", "-c", &format!("SELECT row_to_json(t)::text FROM {table} t")])
                        .output()
                        .context("psql")?;
                    if !output.status.success() {
                        bail!("psql dump failed: {}", String::from_utf8_lossy(&output.stderr));
                    }
                    all.extend(output.stdout);
                }
                Ok(all)
            }
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Postgres { name, .. } = self {
            let _ = psql_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn psql_admin(sql: &str) -> Result<()> {
    let output =
        Command::new("psql").args([POSTGRES_ADMIN_URL, "-v", "ON_ERROR_STOP=1", "-c", sql]).output().context("psql")?;
    if !output.status.success() {
        bail!("psql {sql:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// A two-thread runtime for a test's in-process station and devices.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// A random value for unique test resource names.
pub fn rand_u64() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        let _ = urandom.read_exact(&mut bytes);
    }
    u64::from_le_bytes(bytes) ^ u64::from(std::process::id())
}

/// A station home with its database, driven through the `keyfill` binary. Every command's
/// stdout and stderr is kept for leak scans.
#[derive(Debug)]
pub struct Station {
    pub home: PathBuf,
    pub db: Database,
    pub transcript: std::cell::RefCell<Vec<u8>>,
    /// Set for every command: a token station's SoftHSM2 configuration and PIN.
    pub env: Vec<(String, String)>,
}

impl Station {
    /// `keyfill init` in a fresh home.
    pub fn init(dir: &Path, db: Database) -> Result<Self> {
        let station = Station { home: dir.join("station-home"), db, transcript: Default::default(), env: Vec::new() };
        let output = station.run(&["init", "--station-name", "e2e-station"])?;
        if !output.status.success() {
            bail!("keyfill init failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(station)
    }

    /// `keyfill init --pkcs11-module … --token …` in a fresh home: every key in `hsm`'s token.
    pub fn init_in_token(dir: &Path, db: Database, hsm: &SoftHsm, extra: &[&str]) -> Result<Self> {
        let station = Station { home: dir.join("station-home"), db, transcript: Default::default(), env: hsm.env() };
        let mut args = vec!["init", "--station-name", "hsm-station", "--pkcs11-module", SOFTHSM_MODULE];
        args.extend(["--token", &hsm.label]);
        args.extend(extra);
        let output = station.run(&args)?;
        if !output.status.success() {
            bail!("keyfill init in a token failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(station)
    }

    pub fn factory_root_file(&self) -> PathBuf {
        self.home.join("factory-root.pub")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary("keyfill"));
        command
            .arg("--home")
            .arg(&self.home)
            .arg("--db")
            .arg(self.db.url())
            .args(args)
            .env("KEYFILL_PASSPHRASE", PASSPHRASE)
            .env("KEYFILL_LOG", "trace")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null());
        command
    }

    /// Runs `keyfill ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        self.run_env(args, &[])
    }

    /// Runs `keyfill ARGS` with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut command = self.command(args);
        command.envs(env.iter().copied());
        let output = command.output().context("cannot run keyfill")?;
        let mut transcript = self.transcript.borrow_mut();
        transcript.extend_from_slice(&output.stdout);
        transcript.extend_from_slice(&output.stderr);
        Ok(output)
    }

    /// `keyfill bundle new-key --out DIR/c2-operator.key` under [`OPERATOR_PASSPHRASE`]: the C2
    /// operator's key pair for bundles. Returns the private key's path; the public key is beside
    /// it (`.pub`).
    pub fn new_operator_key(&self, dir: &Path) -> Result<PathBuf> {
        let key = dir.join("c2-operator.key");
        let passphrase = [("KEYFILL_BUNDLE_KEY_PASSPHRASE", OPERATOR_PASSPHRASE)];
        let output = self.run_env(&["bundle", "new-key", "--out", key.to_str().context("path")?], &passphrase)?;
        if !output.status.success() {
            bail!("bundle new-key failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(key)
    }

    /// `keyfill export bundle --recipient KEY.pub --out OUT EXTRA…` for the operator key at `key`.
    pub fn export_bundle(&self, key: &Path, out: &Path, extra: &[&str]) -> Result<Output> {
        let public = key.with_extension("key.pub");
        let mut args = vec!["export", "bundle", "--recipient", public.to_str().context("path")?];
        args.extend(["--out", out.to_str().context("path")?]);
        args.extend(extra);
        self.run(&args)
    }

    /// This station opened in the test's process, as the `keyfill` binary opens it (checks,
    /// back-fill and all), for tests that drive the library with in-memory devices.
    pub async fn open_in_process(&self, operator: &str) -> Result<keyfill_station::provision::Station> {
        let home = keyfill_station::home::StationHome::new(&self.home);
        let unlocked = home.unlock(PASSPHRASE)?;
        let inventory = keyfill_station::db::Inventory::open(self.db.url()).await?;
        let actor = home.actor(&unlocked, operator)?;
        Ok(keyfill_station::provision::Station::start(inventory, unlocked, actor).await?)
    }

    /// `keyfill devices list --json`, parsed.
    pub fn devices(&self) -> Result<Vec<serde_json::Value>> {
        let output = self.run(&["devices", "list", "--json"])?;
        if !output.status.success() {
            bail!("devices list failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// The kinds of the events in a device's history, oldest first.
    pub fn history_kinds(&self, name: &str) -> Result<Vec<String>> {
        let output = self.run(&["devices", "show", name, "--json"])?;
        let device: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        Ok(device["history"]
            .as_array()
            .context("history")?
            .iter()
            .filter_map(|e| e["kind"].as_str().map(str::to_owned))
            .collect())
    }

    /// The state of the device named `name`, if the station knows it.
    pub fn state_of(&self, name: &str) -> Result<Option<String>> {
        Ok(self.devices()?.into_iter().find(|d| d["name"] == name).and_then(|d| d["state"].as_str().map(str::to_owned)))
    }
}

/// A device: `keyfill-agent` with its own state directory.
#[derive(Debug)]
pub struct Agent {
    pub state: PathBuf,
    pub payload: String,
    serving: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// `keyfill-agent init`, pinned to `factory_root_file`.
    pub fn init(dir: &Path, name: &str, factory_root_file: &Path, extra: &[&str]) -> Result<Self> {
        let state = dir.join(format!("agent-{}", keyfill_formats::DeviceId::from_name(name)));
        let output = Command::new(binary("keyfill-agent"))
            .arg("--state")
            .arg(&state)
            .args(["init", "--name", name, "--serial-number", "SN-E2E"])
            .arg("--factory-root")
            .arg(factory_root_file)
            .args(extra)
            .output()?;
        if !output.status.success() {
            bail!("keyfill-agent init failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let payload = String::from_utf8(output.stdout)?.trim().to_owned();
        let log = state.join("serve.log");
        Ok(Agent { state, payload, serving: None, log })
    }

    /// Starts `keyfill-agent serve --serial PORT` in the background.
    pub fn serve(&mut self, port: &Path, extra: &[&str]) -> Result<()> {
        self.spawn_serve(&["--serial".as_ref(), port.as_os_str()], extra)
    }

    /// Starts `keyfill-agent serve --ble-relay ADDRESS`: the device behind a GATT relay.
    pub fn serve_relay(&mut self, address: &str, extra: &[&str]) -> Result<()> {
        self.spawn_serve(&["--ble-relay".as_ref(), address.as_ref()], extra)
    }

    /// Starts `keyfill-agent serve --vpcd ADDRESS`: the virtual card enters the reader.
    pub fn serve_vpcd(&mut self, address: &str, extra: &[&str]) -> Result<()> {
        self.spawn_serve(&["--vpcd".as_ref(), address.as_ref()], extra)
    }

    /// Starts `keyfill-agent serve --serial PORT` with extra environment variables (a crash
    /// point, for one).
    pub fn serve_env(&mut self, port: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<()> {
        self.spawn_serve_env(&["--serial".as_ref(), port.as_os_str()], extra, env)
    }

    /// The process id of the serving agent, if it serves.
    pub fn pid(&self) -> Option<u32> {
        self.serving.as_ref().map(Child::id)
    }

    /// Whether the serving agent is still running.
    pub fn is_serving(&mut self) -> bool {
        self.serving.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn spawn_serve(&mut self, link: &[&std::ffi::OsStr], extra: &[&str]) -> Result<()> {
        self.spawn_serve_env(link, extra, &[])
    }

    fn spawn_serve_env(&mut self, link: &[&std::ffi::OsStr], extra: &[&str], env: &[(&str, &str)]) -> Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(binary("keyfill-agent"))
            .arg("--state")
            .arg(&self.state)
            .arg("serve")
            .args(link)
            .args(extra)
            .envs(env.iter().copied())
            .env("KEYFILL_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.serving = Some(child);
        // Give the agent a moment to open its port; the station's handshake retries nothing.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    /// Starts `keyfill-agent mqtt --broker BROKER` (the E4 client) in the background.
    pub fn mqtt(&mut self, broker: &str, extra: &[&str]) -> Result<()> {
        self.mqtt_env(broker, extra, &[])
    }

    /// [`Agent::mqtt`] with extra environment variables (a crash point, for one).
    pub fn mqtt_env(&mut self, broker: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<()> {
        self.stop();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(binary("keyfill-agent"))
            .arg("--state")
            .arg(&self.state)
            .args(["mqtt", "--broker", broker])
            .args(extra)
            .envs(env.iter().copied())
            .env("KEYFILL_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.serving = Some(child);
        Ok(())
    }

    /// Waits for the serving agent to exit on its own (fault injection), returning its code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let Some(child) = self.serving.as_mut() else { bail!("agent is not serving") };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.serving = None;
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                bail!("agent did not exit");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.serving.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `keyfill-agent status --json`.
    pub fn status(&self) -> Result<serde_json::Value> {
        let output = Command::new(binary("keyfill-agent"))
            .arg("--state")
            .arg(&self.state)
            .args(["status", "--json"])
            .output()?;
        if !output.status.success() {
            bail!("status failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// The key the device holds, read straight from its keystore file (test only).
    pub fn key_bytes(&self) -> Result<Option<Vec<u8>>> {
        let path = self.state.join("key.json");
        if !path.exists() {
            return Ok(None);
        }
        let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let hex_key = value["key"].as_str().context("key field")?;
        Ok(Some(hex::decode(hex_key)?))
    }

    /// Waits until the agent reports it uses `key_id` (it erases the old key on the station's
    /// follow-up under the new key).
    pub fn wait_for_key(&self, key_id: &serde_json::Value) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.status()?["key_id"] != *key_id {
            anyhow::ensure!(Instant::now() < deadline, "the agent never switched to {key_id}: {}", self.status()?);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn log(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Mosquitto broker the tests use.
pub const BROKER: &str = "mqtt://127.0.0.1:1883";

/// Publishes `payload` on `topic` at QoS 1 from a client of its own, as anyone on the broker could.
pub fn publish_raw(topic: &str, payload: &[u8]) -> Result<()> {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let (host, port) = keyfill_station::rotation::parse_broker(BROKER)?;
    let mut options = MqttOptions::new(unique_name("keyfill-peer"), host, port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(options, 10);
    client.publish(topic, QoS::AtLeastOnce, false, payload.to_vec())?;
    for event in connection.iter() {
        if let Event::Incoming(Packet::PubAck(_)) = event? {
            client.disconnect()?;
            return Ok(());
        }
    }
    bail!("the broker closed the connection before acknowledging")
}

/// A device name unique to this run: retained messages outlive test runs on the broker.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u64() as u32)
}

/// A station with one device provisioned over a pseudo-terminal; the agent is stopped again.
pub fn provisioned_device(dir: &Path, db: Database, name: &str) -> Result<(Station, Agent)> {
    let station = Station::init(dir, db)?;
    let mut agent = Agent::init(dir, name, &station.factory_root_file(), &[])?;
    let pty = PtyPair::new(dir)?;
    agent.serve(&pty.device_side, &[])?;
    let output =
        station.run(&["provision", "--serial", &pty.station_side.to_string_lossy(), "--qr", &agent.payload])?;
    if !output.status.success() {
        bail!("provisioning failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    agent.stop();
    Ok((station, agent))
}

/// Every encoding of `key` a careless program might write: raw, hex (both cases), base64
/// (standard and URL-safe, padded or not).
pub fn key_encodings(key: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    vec![
        key.to_vec(),
        hex::encode(key).into_bytes(),
        hex::encode_upper(key).into_bytes(),
        STANDARD.encode(key).into_bytes(),
        STANDARD_NO_PAD.encode(key).into_bytes(),
        URL_SAFE.encode(key).into_bytes(),
        URL_SAFE_NO_PAD.encode(key).into_bytes(),
    ]
}

/// Whether `haystack` contains any encoding of `key`.
pub fn contains_key(haystack: &[u8], key: &[u8]) -> bool {
    key_encodings(key).iter().any(|needle| haystack.windows(needle.len()).any(|w| w == needle.as_slice()))
}

/// All bytes of all files under `dir`.
pub fn read_tree(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                all.extend(read_tree(&path));
            } else if let Ok(bytes) = std::fs::read(&path) {
                all.extend(bytes);
            }
        }
    }
    all
}

/// The directory holding all three binaries the Debian packages ship (`keyfill`,
/// `keyfill-agent` and `keyfill-gui`), for `scripts/package --bin-dir`. Built like [`binary`]:
/// the running profile and target directory; [`binary`] leaves out `keyfill-gui`, which only the
/// packaging tests need, so it is built here on top. With `KEYFILL_E2E_BIN_DIR` that directory is
/// returned and nothing is built.
pub fn packaged_binaries_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEYFILL_E2E_BIN_DIR") {
        return PathBuf::from(dir);
    }
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let keyfill = binary("keyfill");
    let profile_dir = keyfill.parent().map(Path::to_path_buf).unwrap_or_else(profile_dir);
    let built = BUILT.get_or_init(|| cargo_build(&profile_dir, &["keyfill-gui"]));
    if let Err(error) = built {
        panic!("cannot build keyfill-gui: {error}");
    }
    profile_dir
}
