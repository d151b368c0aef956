//! The `keyfill` command line: argument parsing, passphrase handling, progress and output.
//! The work itself lives in the library.

mod audit;
mod bundle;
pub mod config;
mod custody;
mod export;
mod fleet;
mod label;
mod line;
mod links;
mod operators;
mod orders;
mod output;
mod rotate;
mod scan;
mod serve;
mod sync;

pub use scan::ScanFailure;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use keyfill_formats::qr::OnboardingPayload;
use keyfill_formats::{DeviceName, printable};
use keyfill_station::custody::Operation;
use keyfill_station::db::devices::{self, DeviceState};
use keyfill_station::db::events;
use keyfill_station::db::{Inventory, redact_url};
use keyfill_station::demo::SimulatedDevice;
use keyfill_station::home::{StationHome, unix_now};
use keyfill_station::link::list_readers;
use keyfill_station::protocol::{MAX_TIMEOUT, MIN_TIMEOUT, SessionTimeouts};
use keyfill_station::provision::{Progress, ReconcileVerdict, Station};
use links::LinkArgs;
pub use links::advice;
use output::DeviceJson;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "keyfill",
    version,
    about = "Keyfill station: provision IoT devices with E4 keys over authenticated links"
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
    /// The configuration files read, and what clap made of them with the command line.
    #[arg(skip)]
    loaded: Loaded,
}

#[derive(Default)]
struct Loaded {
    config: keyfill_station::config::Config,
    matches: clap::ArgMatches,
}

#[derive(Args)]
struct GlobalArgs {
    /// Station home directory (default: the user's data directory).
    #[arg(long, env = "KEYFILL_HOME", global = true)]
    home: Option<PathBuf>,
    /// Database URL: sqlite://FILE (default: keyfill.db in the home) or postgres://...
    #[arg(long, env = "KEYFILL_DB", global = true)]
    db: Option<String>,
    /// Read the master-key passphrase from this file (else KEYFILL_PASSPHRASE, else a prompt).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    /// For a station whose keys are in a PKCS#11 token: read the token's user PIN from this
    /// file (else KEYFILL_TOKEN_PIN, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    token_pin_file: Option<PathBuf>,
    /// Operator name recorded in the event log (default: the login name of the account), at a
    /// station without named operators.
    #[arg(long, env = "KEYFILL_OPERATOR", global = true)]
    operator: Option<String>,
    /// At a station with named operators: log in as this operator.
    #[arg(long = "as", env = "KEYFILL_AS", global = true, value_name = "NAME")]
    login_as: Option<String>,
    /// The passphrase of the operator of --as, from this file (else KEYFILL_OPERATOR_PASSPHRASE,
    /// else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    operator_passphrase_file: Option<PathBuf>,
    /// A security officer who approves the command (dual control) or helps unlock the station
    /// (an unlock quorum); repeat for several.
    #[arg(long, global = true, value_name = "NAME")]
    approver: Vec<String>,
    /// The passphrase of the i-th --approver, from this file (else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    approver_passphrase_file: Vec<PathBuf>,
    /// The PKCS#11 module through which operators' smart cards are read (OpenSC's, for PC/SC
    /// cards).
    #[arg(
        long,
        env = "KEYFILL_CARD_MODULE",
        global = true,
        value_name = "PATH",
        default_value = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
    )]
    card_module: PathBuf,
    /// For an operator of --as who logs in with a card: its PIN, from this file (else
    /// KEYFILL_CARD_PIN, else a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    card_pin_file: Option<PathBuf>,
    /// The card PIN of the i-th --approver who logs in with a card, from this file (else a
    /// prompt).
    #[arg(long, global = true, value_name = "FILE")]
    approver_card_pin_file: Vec<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Seconds a device may take to answer each handshake message (1-600).
    #[arg(long, env = "KEYFILL_REPLY_TIMEOUT", global = true, default_value_t = 10, value_name = "S")]
    reply_timeout: u64,
    /// Seconds a device may take to store its key and confirm it (1-600).
    #[arg(long, env = "KEYFILL_CONFIRM_TIMEOUT", global = true, default_value_t = 20, value_name = "S")]
    confirm_timeout: u64,
    /// Seconds a device's lease lasts unless this station renews it (3-3600): how long a station
    /// that stopped keeps other stations sharing its database away from the device it was on.
    #[arg(
        long,
        env = "KEYFILL_LEASE_SECS",
        global = true,
        default_value_t = keyfill_station::lease::DEFAULT_LEASE.as_secs(),
        value_name = "S",
        value_parser = clap::value_parser!(u64).range(
            keyfill_station::lease::MIN_LEASE.as_secs()..=keyfill_station::lease::MAX_LEASE.as_secs()
        )
    )]
    lease_secs: u64,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the station: master key, factory root, station identity and certificate, database.
    Init {
        /// Human-readable station name, recorded in its certificate.
        #[arg(long, default_value = "keyfill-station")]
        station_name: String,
        /// Import an existing factory root (Ed25519 PKCS#8 DER file) instead of creating one.
        #[arg(long)]
        factory_root_key: Option<PathBuf>,
        /// Join the stations of a shared database: use the master key they share, from the file
        /// `keyfill master share` wrote on one of them (needs their factory root:
        /// --factory-root-key).
        #[arg(long, value_name = "FILE", requires = "factory_root_key")]
        join_master: Option<PathBuf>,
        /// Read the share's transfer passphrase from this file (else KEYFILL_SHARE_PASSPHRASE,
        /// else a prompt).
        #[arg(long, value_name = "FILE", requires = "join_master")]
        share_passphrase_file: Option<PathBuf>,
        /// Keep the keys in a PKCS#11 token (an HSM, a smart card through OpenSC, SoftHSM2): the
        /// module's path. The token generates the master key, the factory root (unless
        /// --factory-root-key imports one) and the signing key, and never lets them out; the
        /// station is then unlocked with the token's user PIN (--token-pin-file, else
        /// KEYFILL_TOKEN_PIN, else a prompt).
        #[arg(long, value_name = "PATH", requires = "token", conflicts_with = "join_master")]
        pkcs11_module: Option<PathBuf>,
        /// The token's label (with --pkcs11-module).
        #[arg(long, value_name = "LABEL", requires = "pkcs11_module")]
        token: Option<String>,
        /// Start under named operators, with this first security officer; repeat for each (at
        /// least --approvals of them). Without, the station is unlocked by a shared passphrase
        /// until `keyfill custody enable`.
        #[arg(long, value_name = "NAME")]
        officer: Vec<String>,
        /// The passphrase of the i-th --officer, from this file (else a prompt, twice).
        #[arg(long, value_name = "FILE")]
        officer_passphrase_file: Vec<PathBuf>,
        #[command(flatten)]
        policy: custody::PolicyArgs,
    },
    /// Provision devices over serial, PC/SC (smart card, NFC) or BLE links.
    ///
    /// Several links provision concurrently, each session independent: give one label per link;
    /// the i-th label belongs to the i-th link: serial ports, then PC/SC readers, then BLE devices.
    Provision {
        #[command(flatten)]
        link: LinkArgs,
        /// The device's QR payload (KF1:...); repeat for several links.
        #[arg(long, conflicts_with = "qr_image", required_unless_present = "qr_image")]
        qr: Vec<String>,
        /// A photo or scan of the device's label; repeat for several links.
        #[arg(long)]
        qr_image: Vec<PathBuf>,
        /// Print the final record as JSON.
        #[arg(long)]
        json: bool,
        /// Key only the devices of this work order (and record them under it).
        #[arg(long, value_name = "ORDER")]
        order: Option<String>,
        /// Refuse a device that is on no open work order.
        #[arg(long, env = "KEYFILL_REQUIRE_ORDER")]
        require_order: bool,
    },
    /// Inspect and reconcile the device inventory.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// Provision a simulated device over a pseudo-terminal, end to end (no hardware needed).
    Demo {
        /// Name of the simulated device (default: a fresh random name); its files go to
        /// demo-devices/<device id> in the home.
        #[arg(long)]
        name: Option<String>,
    },
    /// Rotate devices' E4 client keys over MQTT, confirmed by each device under its new key.
    Rotate(rotate::RotateArgs),
    /// Export device keys to C2, online over HTTPS or as an offline bundle.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// On the C2 side: import an offline bundle into C2.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// The C2 operator's bundle key, and bundle inspection.
    Bundle {
        #[command(subcommand)]
        command: bundle::BundleCommand,
    },
    /// Print device labels (QR payload, name, id, date) as PNG, SVG or PDF for label printers.
    Label(label::LabelArgs),
    /// Decode QR codes in label photographs or scans: the raw text and, for Keyfill labels, the
    /// parsed payload.
    Scan(scan::ScanArgs),
    /// Show the station identity and where its state lives.
    Info,
    /// Share this station's master key with a station joining its database.
    Master {
        #[command(subcommand)]
        command: fleet::MasterCommand,
    },
    /// Work orders from the MES, and their signed reconciliation reports.
    Orders {
        #[command(subcommand)]
        command: orders::OrdersCommand,
    },
    /// Checks over every key of the inventory.
    Keys {
        #[command(subcommand)]
        command: fleet::KeysCommand,
    },
    /// Push this station's devices, sealed keys, rotations and event log to the factory's
    /// database (a field laptop back on the network). Keys travel sealed, as stored; a second run
    /// changes nothing; an interrupted one resumes; a device keyed in both places is reported,
    /// never resolved. Needs the factory's master key (`init --join-master`).
    Sync {
        /// The factory's database, postgres://…
        #[arg(long, value_name = "URL")]
        to: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a line: lanes, each a link pinned to a port and a label source (scanner, drop folder,
    /// camera), keying one work order continuously. Events go to stdout as JSON Lines; SIGTERM or
    /// Ctrl-C stops it once the sessions under way have finished (a second one stops at once).
    Line(line::LineArgs),
    /// Where the station's keys are kept: move the master key into a PKCS#11 token.
    Custody {
        #[command(subcommand)]
        command: custody::CustodyCommand,
    },
    /// The tamper-evident audit log: verify its chains, export them, keep checkpoints.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Named operators: add, remove, list; change your passphrase.
    Operators {
        #[command(subcommand)]
        command: operators::OperatorsCommand,
    },
    /// The stations that have used this database.
    Stations {
        #[arg(long)]
        json: bool,
    },
    /// Check what usually goes wrong on a new station (home, certificate, clock, database, serial
    /// ports, PC/SC, Bluetooth, broker, C2, label printer) and say how to fix each problem. Exit
    /// status 0 only when no check fails.
    Doctor {
        /// A serial port to check by name (repeat); without, the ports found on the machine.
        #[arg(long, value_name = "PATH")]
        serial: Vec<PathBuf>,
        /// The MQTT broker to try (mqtt://HOST:PORT).
        #[arg(long, env = "KEYFILL_BROKER", value_name = "URL")]
        broker: Option<String>,
        /// The C2 server to try (https://HOST:PORT).
        #[arg(long, env = "KEYFILL_C2_URL", value_name = "URL")]
        c2: Option<String>,
        /// Checks not to run, by name (comma-separated): home, certificate, clock, database,
        /// serial, pcsc, bluetooth, broker, c2, printer.
        #[arg(long, value_delimiter = ',', value_name = "CHECK", value_parser = clap::builder::PossibleValuesParser::new(keyfill_station::doctor::CHECKS))]
        skip: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Serve the local automation API (HTTP, or HTTPS with --tls-cert): devices, provisioning jobs
    /// on a line's lanes, orders, rotation and export runs, the event stream; bearer tokens from
    /// `keyfill api token create`. Ctrl-C or SIGTERM stops it once the sessions under way finish.
    Serve(serve::ServeArgs),
    /// The local API's tokens and its OpenAPI document.
    Api {
        #[command(subcommand)]
        command: serve::ApiCommand,
    },
    /// The configuration files (`$XDG_CONFIG_HOME/keyfill/keyfill.toml`, then
    /// `/etc/keyfill/keyfill.toml`): what is in force and where it comes from.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (keyfill.1 and one per command) into a folder.
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// List PC/SC readers (smart-card and NFC).
    Readers {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ExportCommand {
    /// Register each device's confirmed key with C2 (POST /e4/client/{name}), with a per-device
    /// report: created, replaced, unchanged or failed.
    C2(export::ExportC2Args),
    /// Write an offline bundle of confirmed keys, encrypted to the C2 operator and signed by
    /// this station, for `keyfill import bundle` on the C2 side.
    Bundle(bundle::ExportBundleArgs),
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Verify a bundle (signer certified by the factory root, signature), decrypt it, and
    /// export its keys to C2 with the same per-device report as `keyfill export c2`.
    Bundle(bundle::ImportBundleArgs),
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Give up on a pending device that can no longer be asked (it becomes failed).
    Abandon {
        /// Device id or name.
        device: String,
        /// Why, for the event log.
        #[arg(long)]
        reason: String,
        /// Confirm: if the device does hold the key, it refuses a new one until factory-reset.
        #[arg(long)]
        yes: bool,
    },
    /// List devices.
    List {
        #[arg(long)]
        json: bool,
        /// Only devices in this state.
        #[arg(long, value_enum)]
        state: Option<StateFilter>,
    },
    /// Show one device (by id or name) with its history.
    Show {
        device: String,
        #[arg(long)]
        json: bool,
    },
    /// Resolve a pending device by asking it whether it holds its key.
    Reconcile {
        #[command(flatten)]
        link: LinkArgs,
        /// Device id or name (default: the pending device last seen on that port or reader).
        device: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StateFilter {
    Pending,
    Provisioned,
    Failed,
}

impl From<StateFilter> for DeviceState {
    fn from(f: StateFilter) -> Self {
        match f {
            StateFilter::Pending => DeviceState::Pending,
            StateFilter::Provisioned => DeviceState::Provisioned,
            StateFilter::Failed => DeviceState::Failed,
        }
    }
}

impl Cli {
    /// Reads the configuration files, then the command line over them. `Err`: a file is broken
    /// (the error names it, its line and the key).
    pub fn parse_with_config() -> Result<Cli, keyfill_station::config::ConfigError> {
        use clap::FromArgMatches;
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let config = config::load(&args)?;
        let matches = config::command(Some(&config)).get_matches_from(args);
        let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
        cli.loaded = Loaded { config, matches };
        Ok(cli)
    }

    pub fn log_format(&self) -> LogFormat {
        self.global.log_format
    }
}

/// The home a command would use: the one given (flag, environment, file), else the default.
fn effective_home(matches: &clap::ArgMatches) -> Option<PathBuf> {
    matches.get_one::<PathBuf>("home").cloned().or_else(keyfill_station::home::default_home)
}

impl GlobalArgs {
    fn home(&self) -> Result<StationHome> {
        let path = match &self.home {
            Some(path) => path.clone(),
            None => keyfill_station::home::default_home().ok_or_else(|| {
                anyhow!("no home directory; pass --home, set KEYFILL_HOME or set home in keyfill.toml")
            })?,
        };
        Ok(StationHome::new(path))
    }

    fn db_url(&self, home: &StationHome) -> String {
        self.db.clone().unwrap_or_else(|| keyfill_station::home::default_db_url(home.path()))
    }

    fn passphrase(&self, confirm: bool) -> Result<String> {
        if let Some(path) = &self.passphrase_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
            return Ok(text.trim_end_matches(['\n', '\r']).to_owned());
        }
        if let Ok(passphrase) = std::env::var("KEYFILL_PASSPHRASE") {
            return Ok(passphrase);
        }
        let passphrase = rpassword::prompt_password("Master-key passphrase: ")
            .context("no passphrase: set KEYFILL_PASSPHRASE, pass --passphrase-file, or run in a terminal")?;
        if confirm && rpassword::prompt_password("Repeat passphrase: ")? != passphrase {
            bail!("the passphrases differ");
        }
        Ok(passphrase)
    }

    fn token_pin(&self) -> Result<zeroize::Zeroizing<String>> {
        if let Some(path) = &self.token_pin_file {
            let text = String::from_utf8(read_bounded(path, 1024)?)
                .with_context(|| format!("the token PIN file {} is not text", path.display()))?;
            return Ok(zeroize::Zeroizing::new(text.trim_end_matches(['\n', '\r']).to_owned()));
        }
        if let Ok(pin) = std::env::var("KEYFILL_TOKEN_PIN") {
            return Ok(zeroize::Zeroizing::new(pin));
        }
        rpassword::prompt_password("Token user PIN: ")
            .map(zeroize::Zeroizing::new)
            .context("no token PIN: set KEYFILL_TOKEN_PIN, pass --token-pin-file, or run in a terminal")
    }

    /// What unlocks the station in `home`: its token's PIN when a token holds its keys, else
    /// the master-key passphrase.
    fn unlock_secret(&self, home: &StationHome) -> Result<zeroize::Zeroizing<String>> {
        match home.token_file()? {
            Some(_) => self.token_pin(),
            None => self.passphrase(false).map(zeroize::Zeroizing::new),
        }
    }

    fn operator(&self) -> String {
        self.operator.clone().unwrap_or_else(keyfill_station::operator::default_operator)
    }

    async fn inventory(&self, home: &StationHome) -> Result<Inventory> {
        let url = self.db_url(home);
        Inventory::open(&url).await.with_context(|| format!("cannot open the database {}", redact_url(&url)))
    }

    async fn station(&self, home: &StationHome) -> Result<Station> {
        self.station_with(home, &self.unlock_secret(home)?).await
    }

    async fn station_with(&self, home: &StationHome, passphrase: &str) -> Result<Station> {
        let unlocked = home.unlock(passphrase).context("cannot unlock the station")?;
        let inventory = self.inventory(home).await?;
        let actor = home.actor(&unlocked, &self.operator()).context("cannot open the station's audit key")?;
        let mut station = Station::start(inventory, unlocked, actor).await?;
        station.timeouts = self.timeouts()?;
        station.lease_ttl = Duration::from_secs(self.lease_secs);
        Ok(station)
    }

    fn timeouts(&self) -> Result<SessionTimeouts> {
        let (reply, confirm) = (Duration::from_secs(self.reply_timeout), Duration::from_secs(self.confirm_timeout));
        SessionTimeouts::bounded(reply, confirm).ok_or_else(|| {
            anyhow!(
                "--reply-timeout and --confirm-timeout must be between {} and {} seconds",
                MIN_TIMEOUT.as_secs(),
                MAX_TIMEOUT.as_secs()
            )
        })
    }
}

fn describe(progress: &Progress) -> String {
    match progress {
        Progress::Reconciling => "a pending key exists: asking the device whether it holds it".into(),
        Progress::KeyGenerated { key_id } => {
            format!("key {key_id} generated and recorded sealed (pending)")
        }
        Progress::Handshake => "authenticating the device (Noise handshake)".into(),
        Progress::KeySent => "device authenticated and accepted the station; key sent".into(),
        Progress::Confirmed => "device confirmed the key".into(),
    }
}

fn read_payloads(qr: Vec<String>, qr_images: Vec<PathBuf>) -> Result<Vec<OnboardingPayload>> {
    let mut texts = qr;
    for path in qr_images {
        texts.push(
            keyfill_station::qr_image::decode_file(&path)?
                .into_iter()
                .find(|t| t.trim().starts_with(keyfill_formats::qr::PREFIX))
                .ok_or_else(|| anyhow!("a QR code was found in {} but it is not a Keyfill label", path.display()))?,
        );
    }
    texts.iter().map(|text| OnboardingPayload::parse(text).context("the label's QR payload is not valid")).collect()
}

/// Reads at most `limit` bytes of `path`; more is an error.
pub(super) fn read_bounded(path: &std::path::Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > limit {
        let most = if limit >= 1 << 20 { format!("{} MiB", limit >> 20) } else { format!("{limit} bytes") };
        bail!("{} is larger than {most}, the most such a file may be", path.display());
    }
    Ok(bytes)
}

/// The first of Ctrl-C and SIGTERM, named.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        // Without a SIGTERM handler, Ctrl-C still stops the work cleanly.
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "interrupted";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = terminate.recv() => "terminated",
    }
}

/// Pretty JSON on stdout, written as it is serialised: a report of a million devices is never
/// held as one string.
fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Writes `keyfill.1` and a page per command and subcommand (`keyfill-export-bundle.1`) into
/// `out`; returns how many pages the folder holds.
fn write_man_pages(out: &std::path::Path) -> Result<usize> {
    use clap::CommandFactory;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    clap_mangen::generate_to(Cli::command(), out).with_context(|| format!("cannot write into {}", out.display()))?;
    let pages = std::fs::read_dir(out)?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".1"))
        .count();
    Ok(pages)
}

pub async fn run(cli: Cli) -> Result<()> {
    // Neither needs a station.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut config::command(None), "keyfill", &mut std::io::stdout());
            return Ok(());
        }
        Command::Config { command: config::ConfigCommand::Show { json } } => {
            return config::show(&cli.loaded.config, &cli.loaded.matches, *json);
        }
        Command::Config { command: config::ConfigCommand::Paths } => {
            config::paths();
            return Ok(());
        }
        Command::Man { out } => {
            let written = write_man_pages(out)?;
            println!("{written} manual pages written to {}", out.display());
            return Ok(());
        }
        _ => {}
    }
    let global = &cli.global;
    let home = global.home()?;
    let interactive = global.log_format == LogFormat::Text;
    match cli.command {
        Command::Init {
            station_name,
            factory_root_key,
            join_master,
            share_passphrase_file,
            pkcs11_module,
            token,
            officer,
            officer_passphrase_file,
            policy,
        } => {
            let officers = operators::officers(&officer, &officer_passphrase_file)?;
            let policy = policy.policy()?;
            let imported = match &factory_root_key {
                Some(path) => Some(zeroize::Zeroizing::new(
                    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
                )),
                None => None,
            };
            let share = join_master.as_deref().map(fleet::read_share).transpose()?;
            let transfer = match &share {
                Some(_) => Some(fleet::transfer_passphrase(share_passphrase_file.as_deref(), false)?),
                None => None,
            };
            if home.is_initialised() {
                bail!(keyfill_station::home::HomeError::AlreadyInitialised(home.path().to_path_buf()));
            }
            // Before the home is made: a database other stations use takes only their master key.
            // (The default database lives in the home, so it is new.)
            let recorded = match &global.db {
                Some(url) if !keyfill_station::db::is_new_sqlite_file(url) => {
                    let inventory = global.inventory(&home).await?;
                    let recorded = keyfill_station::db::meta::master_key_check(inventory.pool()).await?;
                    inventory.close().await;
                    recorded
                }
                _ => None,
            };
            if let Some(recorded) = recorded
                && share.as_ref().is_none_or(|share| share.master_key_check != recorded)
            {
                bail!(
                    "the database {} is in use by stations of master key {recorded}: join them with --join-master FILE \
                     (the file from `keyfill master share` on one of them), or give this station a database of its own",
                    redact_url(&global.db_url(&home))
                );
            }
            let root = imported.as_deref().map(Vec::as_slice);
            let (info, passphrase) = match (&pkcs11_module, &token) {
                (Some(module), Some(label)) => {
                    let pin = global.token_pin()?;
                    let token = keyfill_station::hsm::Token::open(module, label, &pin)?;
                    let custody = keyfill_station::home::NewCustody::Token { token, module };
                    (home.initialise_with(custody, &station_name, root)?, pin)
                }
                _ => {
                    let passphrase = zeroize::Zeroizing::new(global.passphrase(true)?);
                    let join = share.as_ref().zip(transfer.as_deref().map(|t| t.as_str()));
                    (home.initialise_joining(&passphrase, &station_name, root, join)?, passphrase)
                }
            };
            // Opened as a station does: a joining station's master key must be the database's.
            let station = global.station_with(&home, &passphrase).await?;
            let joined = share.as_ref().map(|share| format!("; joined master key {}", share.master_key_check));
            let custody = match &token {
                Some(label) => format!("; keys in the PKCS#11 token {label:?}"),
                None => "; keys in the station home, sealed under its passphrase".to_owned(),
            };
            let detail = format!(
                "station {:?} initialised; factory root {} ({}){}",
                info.station_name,
                hex::encode(info.factory_root),
                if imported.is_some() { "imported" } else { "new" },
                joined.unwrap_or_default() + &custody
            );
            keyfill_station::db::audit::append_alone(
                station.inventory.pool(),
                &station.actor.recorder(),
                None,
                "station_initialised",
                &detail,
            )
            .await?;
            station.inventory.close().await;
            if let Some(share) = &share {
                println!(
                    "joined the stations of master key {} (shared by {})",
                    share.master_key_check,
                    printable(&share.shared_by)
                );
            }
            println!(
                "station {} ({}) initialised in {}",
                info.station_name,
                hex::encode(info.station_id),
                home.path().display()
            );
            println!(
                "factory root public key (pin it in device agents): {}",
                home.factory_root_public_path().display()
            );
            if !officers.is_empty() {
                operators::enable(global, &home, &passphrase, &officers, policy).await?;
            }
        }
        Command::Info => {
            let info = home.info()?;
            println!("home          {}", home.path().display());
            println!("database      {}", redact_url(&global.db_url(&home)));
            println!("station       {} ({})", info.station_name, hex::encode(info.station_id));
            println!("factory root  {}", hex::encode(info.factory_root));
            match home.token_file()? {
                Some(token) => println!(
                    "keys          in the PKCS#11 token {:?} ({})",
                    printable(&token.token),
                    token.module.display()
                ),
                None if home.has_named_operators() => {
                    println!("keys          in the home, sealed under the operators' unlock secret")
                }
                None => println!("keys          in the home, sealed under the master-key passphrase"),
            }
            match keyfill_station::custody::CustodyFile::read(home.path())? {
                Some(file) => println!(
                    "operators     named; dual control by {} security officers; unlocked by {}",
                    file.policy.approvals,
                    match file.policy.unlock_quorum {
                        0 | 1 => "any operator's login".to_owned(),
                        quorum => format!("{quorum} security officers' logins"),
                    }
                ),
                None => {
                    println!("operators     not named (the account's login name is recorded; `keyfill custody enable`)")
                }
            }
            println!(
                "certificate   valid {} .. {}",
                output::rfc3339(info.certificate.body.not_before as i64 * 1000),
                output::rfc3339(info.certificate.body.not_after as i64 * 1000)
            );
            match home.bundle_signer_certificate()? {
                Some(signer) => println!(
                    "bundle signer {} valid {} .. {}",
                    hex::encode(signer.body.signing_public),
                    output::rfc3339(signer.body.not_before as i64 * 1000),
                    output::rfc3339(signer.body.not_after as i64 * 1000)
                ),
                None => println!("bundle signer none yet (created by the first `keyfill export bundle`)"),
            }
        }
        Command::Provision { link, qr, qr_image, json, order, require_order } => {
            let specs = link.specs();
            let payloads = read_payloads(qr, qr_image)?;
            if payloads.len() != specs.len() {
                bail!(
                    "{} link(s) but {} label(s): give one label per link (serial ports, then PC/SC readers, then BLE devices)",
                    specs.len(),
                    payloads.len()
                );
            }
            let subject = payloads.iter().map(|p| p.device_id.to_hex()).collect::<Vec<_>>().join(", ");
            let mut station = global.station_for(&home, Operation::Provision, &subject).await?;
            station.order_policy = keyfill_station::orders::OrderPolicy {
                required: require_order,
                current: order
                    .as_deref()
                    .map(keyfill_station::orders::file::OrderId::parse)
                    .transpose()
                    .map_err(|reason| anyhow!("--order: {reason}"))?,
            };
            for payload in &payloads {
                warn_about_pending(&station, &payload.device_id.to_hex()).await?;
            }
            let jobs: Vec<_> = specs.into_iter().zip(payloads).collect();
            let ok = links::provision_all(station, jobs, &link, interactive && !json, json).await?;
            if !ok {
                bail!("not every device was provisioned; see the report above");
            }
        }
        Command::Devices { command } => devices_command(global, &home, command).await?,
        Command::Rotate(args) => {
            let station = global.station_for(&home, Operation::Rotate, "").await?;
            if !rotate::run(station, args, interactive).await? {
                bail!("not every rotation was confirmed; see the report above");
            }
        }
        Command::Export { command } => match command {
            ExportCommand::C2(args) => {
                let station = global.station_for(&home, Operation::ExportToC2, "").await?;
                if !export::export_c2(station, args, interactive).await? {
                    bail!("not every device was exported; see the report above");
                }
            }
            ExportCommand::Bundle(args) => {
                let subject = format!("bundle to {}", args.out_display());
                let station = global.station_for(&home, Operation::ExportBundle, &subject).await?;
                if !bundle::export_bundle(station, &home, args).await? {
                    bail!("not every selected device is in the bundle; see the reasons above");
                }
            }
        },
        Command::Import { command: ImportCommand::Bundle(args) } => {
            if !bundle::import_bundle(args, interactive).await? {
                bail!("not every key reached C2; see the report above");
            }
        }
        Command::Bundle { command } => bundle::bundle_command(command)?,
        Command::Scan(args) => scan::run(args).await?,
        Command::Label(args) => {
            global.authorise_read(&home, Operation::PrintLabels).await?;
            let inventory = global.inventory(&home).await?;
            label::run(args, &inventory).await?;
            inventory.close().await;
        }
        Command::Readers { json } => {
            let readers = list_readers()?;
            if json {
                print_json(&readers)?;
            } else if readers.is_empty() {
                println!("no PC/SC readers (is pcscd running?)");
            } else {
                readers.iter().for_each(|reader| println!("{reader}"));
            }
        }
        Command::Demo { name } => demo(global, &home, name).await?,
        Command::Master { command } => fleet::master_command(
            &global.station_for(&home, Operation::FactoryRootOrToken, "share the master key").await?,
            command,
        )?,
        Command::Keys { command } => {
            fleet::keys_command(&global.station_for(&home, Operation::CheckKeys, "").await?, command, interactive)
                .await?
        }
        Command::Orders { command } => match command {
            orders::OrdersCommand::Import { file, format } => {
                orders::import(&global.station_for(&home, Operation::ManageOrders, "import").await?, &file, format)
                    .await?
            }
            orders::OrdersCommand::List { all, json } => {
                global.authorise_read(&home, Operation::Inspect).await?;
                let inventory = global.inventory(&home).await?;
                orders::list(&inventory, all, json).await?;
                inventory.close().await;
            }
            orders::OrdersCommand::Show { order, json } => {
                global.authorise_read(&home, Operation::Inspect).await?;
                let inventory = global.inventory(&home).await?;
                orders::show(&inventory, &order, json).await?;
                inventory.close().await;
            }
            orders::OrdersCommand::Report { order, json, csv, signature } => {
                let station = global.station_for(&home, Operation::ManageOrders, "report").await?;
                orders::report(&station, &home, &order, json, csv, signature.as_deref()).await?;
            }
            orders::OrdersCommand::Close { order, force: _, reason } => {
                orders::close(
                    &global.station_for(&home, Operation::ManageOrders, "close").await?,
                    &order,
                    reason.as_deref(),
                )
                .await?
            }
            orders::OrdersCommand::VerifyReport { file, factory_root } => orders::verify_report(&file, &factory_root)?,
        },
        Command::Custody { command } => custody::run(global, &home, command).await?,
        Command::Audit { command } => audit::run(global, &home, command, interactive).await?,
        Command::Sync { to, json } => {
            sync::run(&global.station_for(&home, Operation::Sync, "").await?, &to, json, interactive).await?
        }
        Command::Operators { command } => operators::run(global, &home, command).await?,
        Command::Line(args) => line::run(global, &home, args).await?,
        Command::Serve(args) => serve::serve(global, &home, args).await?,
        Command::Api { command } => serve::api(global, &home, command).await?,
        Command::Completions { .. } | Command::Man { .. } | Command::Config { .. } => {}
        Command::Doctor { serial, broker, c2, skip, json } => {
            use keyfill_station::doctor::{self, Checkup, Status};
            let checkup =
                Checkup { home: home.path().to_path_buf(), db_url: global.db_url(&home), serial, broker, c2, skip };
            let findings = doctor::run(&checkup).await;
            if json {
                print_json(&findings)?;
            } else {
                for finding in &findings {
                    let mark = match finding.status {
                        Status::Pass => "ok  ",
                        Status::Fail => "FAIL",
                        Status::Skip => "skip",
                    };
                    println!("{mark}  {:<12} {}", finding.check, printable(&finding.detail));
                    if let Some(fix) = &finding.fix {
                        println!("      {:<12} fix: {}", "", printable(fix));
                    }
                }
            }
            let failed = findings.iter().filter(|f| f.status == Status::Fail).count();
            if failed > 0 {
                bail!("{failed} check(s) failed; each says how to fix it");
            }
        }
        Command::Stations { json } => {
            global.authorise_read(&home, Operation::Inspect).await?;
            let inventory = global.inventory(&home).await?;
            fleet::print_stations(&inventory, json).await?;
            inventory.close().await;
        }
    }
    Ok(())
}

/// Pending records are resolved only by asking their device; remind the operator of them.
async fn warn_about_pending(station: &Station, except_id: &str) -> Result<()> {
    let pending = devices::list(station.inventory.pool(), Some(DeviceState::Pending)).await?;
    let others: Vec<_> = pending.iter().filter(|d| d.id != except_id).map(|d| printable(&d.name)).collect();
    if !others.is_empty() {
        eprintln!(
            "note: {} device(s) await confirmation of a key that was sent ({}); connect each and run `keyfill devices reconcile`",
            others.len(),
            others.join(", ")
        );
    }
    Ok(())
}

async fn devices_command(global: &GlobalArgs, home: &StationHome, command: DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::List { json, state } => {
            global.authorise_read(home, Operation::Inspect).await?;
            let inventory = global.inventory(home).await?;
            let list = devices::list(inventory.pool(), state.map(Into::into)).await?;
            if json {
                print_json(&list.iter().map(DeviceJson::from).collect::<Vec<_>>())?;
            } else {
                output::print_device_table(&list);
            }
            inventory.close().await;
        }
        DevicesCommand::Show { device, json } => {
            global.authorise_read(home, Operation::Inspect).await?;
            let inventory = global.inventory(home).await?;
            let found = devices::resolve(inventory.pool(), &device).await?;
            let history = events::for_device(inventory.pool(), &found.id).await?;
            if json {
                print_json(&keyfill_station::view::DeviceDetail::read(inventory.pool(), &found).await?)?;
            } else {
                output::print_device_table(std::slice::from_ref(&found));
                println!("\nserial number: {}", printable(&found.serial_number));
                if let Some(model) = &found.model {
                    println!("model: {}", printable(model));
                }
                if let Some(failure) = &found.failure {
                    println!("\nlast problem: {}", printable(failure));
                }
                println!("\nhistory:");
                for event in &history {
                    println!(
                        "  {}  {:<14} {}  (by {})",
                        output::rfc3339(event.at),
                        printable(&event.kind),
                        printable(&event.detail),
                        printable(&event.operator)
                    );
                }
            }
            inventory.close().await;
        }
        DevicesCommand::Abandon { device, reason, yes } => {
            if !yes {
                bail!("abandoning forgets whether {device} holds its pending key; pass --yes to confirm");
            }
            let station = global.station_for(home, Operation::Abandon, &device).await?;
            let target = devices::resolve(station.inventory.pool(), &device).await?;
            station.abandon(&target, &reason).await?;
            println!("{} ({}) abandoned: now failed", printable(&target.name), target.id);
            station.inventory.close().await;
        }
        DevicesCommand::Reconcile { link, device } => {
            let station = global.station_for(home, Operation::Reconcile, device.as_deref().unwrap_or("")).await?;
            let pool = station.inventory.pool();
            let target = match device {
                Some(device) => devices::resolve(pool, &device).await?,
                None => {
                    let port = link.single()?.port_hint().ok_or_else(|| anyhow!("name the device to reconcile"))?;
                    let pending = devices::list(pool, Some(DeviceState::Pending)).await?;
                    // A reader may be named by a unique part of its name, as when connecting.
                    let mut on_port = pending
                        .into_iter()
                        .filter(|d| d.port.as_deref().is_some_and(|p| p == port || p.contains(&port)));
                    match (on_port.next(), on_port.next()) {
                        (Some(only), None) => only,
                        (None, _) => {
                            bail!("no pending device was last seen on {port}; name the device")
                        }
                        (Some(_), Some(_)) => {
                            bail!("several pending devices were last seen on {port}; name the device")
                        }
                    }
                }
            };
            let settings = link.settings();
            let mut link = link.single()?.target(settings).open_or(settings.card_wait, &target.name).await?;
            let verdict = station.reconcile(&mut link, &target).await?;
            match verdict {
                ReconcileVerdict::Provisioned => {
                    println!("{} ({}) holds its key: provisioned", printable(&target.name), target.id)
                }
                ReconcileVerdict::Failed => {
                    println!(
                        "{} ({}) does not hold its key: failed (provision it again)",
                        printable(&target.name),
                        target.id
                    )
                }
            }
            station.inventory.close().await;
        }
    }
    Ok(())
}

async fn demo(global: &GlobalArgs, home: &StationHome, name: Option<String>) -> Result<()> {
    // Checked before anything is created; parsed here rather than by clap, whose error would echo
    // the value, control characters included.
    let name = match name {
        Some(name) => DeviceName::parse(&name).context("--name is not a valid device name")?,
        None => DeviceName::parse(&format!("demo-device-{:08x}", unix_now() as u32 ^ std::process::id()))?,
    };
    let step = |text: &str| println!("==> {text}");
    if !home.is_initialised() {
        step(&format!("initialising a demo station in {}", home.path().display()));
        let passphrase = global.passphrase(true)?;
        home.initialise(&passphrase, "keyfill-demo-station", None)?;
    }
    let station = global.station_for(home, Operation::Provision, name.as_str()).await?;
    step(&format!(
        "station {} unlocked; database {}",
        station.unlocked.info.station_name,
        redact_url(&global.db_url(home))
    ));
    // The device's folder is named by its id, never by its name: a name is not a path.
    let device_dir = home.path().join("demo-devices").join(name.device_id().to_hex());
    let device = SimulatedDevice::start(name.clone(), "SN-DEMO-0001", station.unlocked.info.factory_root, &device_dir)?;
    step(&format!("simulated device {name} listening on pseudo-terminal {}", device.port().display()));
    let label = device.identity.onboarding_payload().encode()?;
    step(&format!("device label (QR payload): {label}"));
    let payload = OnboardingPayload::parse(&label)?;
    step(&format!("label parsed: id {} = SHA3-256(name)[..16], identity key mode", payload.device_id));
    let mut link = keyfill_station::link::open_serial(device.port(), 115_200)?;
    let report = station.provision(&mut link, &payload, |p| step(&describe(&p))).await?;
    drop(link);
    drop(device);
    step("final record:");
    print_json(&DeviceJson::from(&report.device))?;
    station.inventory.close().await;
    Ok(())
}
