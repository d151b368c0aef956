//! `keyfill-agent`: the device side of Keyfill provisioning.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use keyfill_agent::AgentCore;
use keyfill_agent::ble::serve_connection;
use keyfill_agent::ble_peripheral::serve_ble;
use keyfill_agent::ble_relay::RelayChannel;
use keyfill_agent::card::CardApplet;
use keyfill_agent::driver::FaultInjection;
use keyfill_agent::e4client::E4Client;
use keyfill_agent::identity::DeviceIdentity;
use keyfill_agent::keystore::{FileKeystore, Keystore, write_atomically};
use keyfill_agent::mqtt::{DeviceClock, E4Fault, run_mqtt};
use keyfill_agent::serial::{LinkError, serve_stream_as};
use keyfill_agent::vpcd::{VpcdError, serve_card};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Bound of the test-only clock offset: ten years either way.
const MAX_CLOCK_OFFSET_SECS: i64 = 10 * 366 * 24 * 3600;

#[derive(Parser)]
#[command(name = "keyfill-agent", version, about = "Keyfill device agent: answers provisioning on a device link")]
struct Cli {
    /// Directory holding the device identity and keystore.
    #[arg(long, env = "KEYFILL_AGENT_STATE", default_value = "/var/lib/keyfill-agent", global = true)]
    state: PathBuf,
    /// Log format: human-readable text or JSON lines.
    #[arg(long, env = "KEYFILL_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum MqttFault {
    DropFirstConfirmation,
    ExitAfterNextStored,
}

#[derive(Clone, Copy, ValueEnum)]
enum Fault {
    ExitAfterStore,
    PullCardOnDelivery,
    StrayBeforeReply,
}

#[derive(Subcommand)]
enum Command {
    /// Create the device identity and print its QR onboarding payload.
    Init {
        /// Device name (its E4 client name): 1..=255 bytes of UTF-8, no control character, no '/',
        /// neither "." nor "..".
        #[arg(long)]
        name: String,
        /// File with the factory root public key (64 hex characters), as written by `keyfill init`.
        #[arg(long)]
        factory_root: PathBuf,
        /// Serial number printed on the label.
        #[arg(long, default_value = "SN-UNSET")]
        serial_number: String,
        /// Use a setup secret instead of a static identity key.
        #[arg(long)]
        secret_mode: bool,
        /// Also write the label as a PNG QR code.
        #[arg(long)]
        label: Option<PathBuf>,
        /// Replace an existing identity (and erase its key).
        #[arg(long)]
        force: bool,
    },
    /// Answer provisioning sessions on a serial port, as a virtual smart card, or over BLE.
    #[command(group(clap::ArgGroup::new("link").required(true).args(["serial", "vpcd", "ble", "ble_relay"])))]
    Serve {
        /// Serial device path, e.g. /dev/ttyUSB0.
        #[arg(long)]
        serial: Option<PathBuf>,
        /// Act as a virtual smart card for pcscd's vpcd driver at HOST:PORT (e.g. 127.0.0.1:35963).
        #[arg(long)]
        vpcd: Option<String>,
        /// Advertise the Keyfill GATT service on the default Bluetooth adapter (BlueZ).
        #[arg(long)]
        ble: bool,
        /// Serve BLE through a GATT relay at HOST:PORT (a simulated BlueZ or a bench bridge).
        #[arg(long, value_name = "HOST:PORT")]
        ble_relay: Option<String>,
        /// ATT MTU of the relayed link.
        #[arg(long, default_value_t = 185)]
        ble_mtu: usize,
        #[arg(long, default_value_t = 115_200)]
        baud: u32,
        /// Inject a fault (tests only).
        #[arg(long, value_enum, hide = true)]
        fault: Option<Fault>,
        /// Test jig (soak runs, serial only): once a key is confirmed, become a new device
        /// (a fresh identity named after this one) and append its label to this file.
        #[arg(long, hide = true, value_name = "FILE")]
        jig_labels: Option<PathBuf>,
    },
    /// Run the E4 client: apply commands from the control topic, confirm key rotations.
    ///
    /// Each option can also come from the environment (the packaged service reads
    /// /etc/default/keyfill-agent).
    Mqtt {
        /// Broker URL, mqtt://HOST[:PORT].
        #[arg(long, env = "KEYFILL_AGENT_BROKER")]
        broker: String,
        /// Seconds the old client key stays valid after a SetIdKey unless the new key is used first.
        #[arg(long, env = "KEYFILL_AGENT_GRACE_SECS", default_value_t = keyfill_agent::e4client::DEFAULT_GRACE_SECS)]
        grace_secs: u64,
        /// Announce the device on keyfill/hello/<id> after connecting (first use).
        #[arg(long, env = "KEYFILL_AGENT_HELLO")]
        hello: bool,
        /// Seconds a command may be stamped ahead of this device's clock, so that a device whose
        /// clock lags the station's still takes its commands (0 refuses any future stamp, as E4's
        /// Go client does). At most 600: the station refuses confirmations stamped further back.
        #[arg(
            long,
            env = "KEYFILL_AGENT_MAX_FUTURE_SKEW_SECS",
            default_value_t = keyfill_formats::e4::DEFAULT_FUTURE_SKEW_SECS,
            value_parser = clap::value_parser!(u64).range(0..=keyfill_formats::e4::MAX_FUTURE_SKEW_SECS)
        )]
        max_future_skew_secs: u64,
        /// Inject a fault (tests only).
        #[arg(long, value_enum, hide = true)]
        fault: Option<MqttFault>,
        /// Shift this device's clock by this many seconds (negative: behind), to play a device
        /// whose clock disagrees with the station's. Tests and bench devices only.
        #[arg(
            long,
            hide = true,
            default_value_t = 0,
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(i64).range(-MAX_CLOCK_OFFSET_SECS..=MAX_CLOCK_OFFSET_SECS)
        )]
        clock_offset_secs: i64,
    },
    /// Show what the device holds (never the key itself).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the QR onboarding payload again.
    Payload,
    /// Factory reset: erase the provisioned key (the identity stays).
    Reset {
        /// Confirm the erase.
        #[arg(long)]
        yes: bool,
    },
}

fn identity_path(state: &Path) -> PathBuf {
    state.join("identity.json")
}

fn keystore(state: &Path) -> FileKeystore {
    FileKeystore::new(state.join("key.json"))
}

fn load_identity(state: &Path) -> Result<DeviceIdentity> {
    let path = identity_path(state);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no device identity at {}; run `keyfill-agent init` first", path.display()))?;
    Ok(DeviceIdentity::from_json(&text, &path)?)
}

fn read_factory_root(path: &Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read factory root {}", path.display()))?;
    let hex_text = text.split_whitespace().last().unwrap_or_default();
    let bytes = hex::decode(hex_text).context("factory root file must hold the key as 64 hex characters")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("factory root key must be 32 bytes"))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYFILL_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The causes in words, as the station prints them: never a backtrace for an operator.
            eprintln!("error: {}", keyfill_formats::printable(&error.to_string()));
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {}", keyfill_formats::printable(&cause.to_string()));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { name, factory_root, serial_number, secret_mode, label, force } => {
            // Parsed here rather than by clap, whose error would echo the value, control
            // characters included, onto the terminal.
            let name = keyfill_formats::DeviceName::parse(&name).context("--name is not a valid device name")?;
            let path = identity_path(&cli.state);
            if path.exists() && !force {
                bail!("{} already exists; pass --force to replace the identity", path.display());
            }
            std::fs::create_dir_all(&cli.state).with_context(|| format!("cannot create {}", cli.state.display()))?;
            let root = read_factory_root(&factory_root)?;
            let identity = DeviceIdentity::generate(name, &serial_number, root, secret_mode)?;
            // Validate everything before touching the old identity or key.
            let payload = identity.onboarding_payload().encode()?;
            erase_key(&cli.state)?;
            write_atomically(&path, identity.to_json()?.as_bytes()).context("cannot write identity")?;
            if let Some(label) = label {
                write_label(&payload, &label)?;
            }
            println!("{payload}");
        }
        Command::Serve { serial, vpcd, ble, ble_relay, ble_mtu, baud, fault, jig_labels } => {
            let identity = load_identity(&cli.state)?;
            let mut store = keystore(&cli.state);
            let stored = store.load()?;
            let fault = match fault {
                Some(Fault::ExitAfterStore) => FaultInjection::ExitAfterStore,
                Some(Fault::PullCardOnDelivery) => FaultInjection::DropLinkOnDelivery,
                Some(Fault::StrayBeforeReply) => FaultInjection::StrayBeforeReply,
                None => FaultInjection::None,
            };
            let local_name = identity.name.as_str().to_owned();
            let mut core = AgentCore::new(identity, stored);
            match (serial, vpcd) {
                (Some(serial), _) => {
                    let mut jig = jig_labels.map(|labels| Jig { state: cli.state.clone(), labels });
                    serve_serial(&serial, baud, core, &mut store, fault, jig.as_mut()).await?
                }
                (None, Some(address)) => serve_vpcd(&address, core, &mut store, fault).await?,
                (None, None) if ble => serve_ble(&local_name, &mut core, &mut store, fault).await?,
                (None, None) if ble_relay.is_some() => {
                    if !(keyfill_formats::ble::MIN_MTU..=keyfill_formats::ble::MAX_MTU).contains(&ble_mtu) {
                        bail!("--ble-mtu must be within 23..=517");
                    }
                    let address = ble_relay.unwrap_or_default();
                    serve_ble_relay(&address, ble_mtu, core, &mut store, fault).await?
                }
                (None, None) => bail!("give --serial PATH, --vpcd HOST:PORT, --ble or --ble-relay HOST:PORT"),
            }
        }
        Command::Mqtt { broker, grace_secs, hello, max_future_skew_secs, fault, clock_offset_secs } => {
            let identity = load_identity(&cli.state)?;
            let mut store = keystore(&cli.state);
            let state = store.load()?.context("the device holds no key: provision it first")?;
            let fault = match fault {
                Some(MqttFault::DropFirstConfirmation) => E4Fault::DropFirstConfirmation,
                Some(MqttFault::ExitAfterNextStored) => E4Fault::ExitAfterNextStored,
                None => E4Fault::None,
            };
            let client =
                E4Client::new(identity.device_id, state, grace_secs).with_max_future_skew(max_future_skew_secs);
            let clock = if clock_offset_secs == 0 {
                DeviceClock::system()
            } else {
                warn!(clock_offset_secs, "test clock: this device's clock is shifted from the system clock");
                DeviceClock::shifted(clock_offset_secs)
            };
            run_mqtt(&broker, client, &mut store, hello, fault, clock).await?;
        }
        Command::Status { json } => {
            let identity = load_identity(&cli.state)?;
            let stored = keystore(&cli.state).load()?;
            let mode = match identity.credential {
                keyfill_agent::identity::DeviceCredential::Identity { .. } => "identity",
                keyfill_agent::identity::DeviceCredential::SetupSecret(_) => "secret",
            };
            let status = serde_json::json!({
                "name": identity.name.as_str(),
                "id": identity.device_id.to_hex(),
                "serial_number": identity.serial_number,
                "mode": mode,
                "provisioned": stored.is_some(),
                "key_id": stored.as_ref().map(|k| hex::encode(k.key_id)),
                "station_id": stored.as_ref().map(|k| hex::encode(k.station_id)),
                "issued_at": stored.as_ref().map(|k| k.issued_at),
                "rotation_pending": stored.as_ref().is_some_and(|k| k.e4.next.is_some()),
                "next_key_id": stored.as_ref().and_then(|k| k.e4.next.as_ref()).map(|n| hex::encode(keyfill_formats::e4::keyfill::rotated_key_id(&n.key))),
                "topic_keys": stored.as_ref().map_or(0, |k| k.e4.topic_keys.len()),
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("device   {} ({})", identity.name, identity.device_id);
                println!("mode     {mode}");
                match stored {
                    Some(key) => {
                        println!("key      {} from station {}", hex::encode(key.key_id), hex::encode(key.station_id))
                    }
                    None => println!("key      none (not provisioned)"),
                }
            }
        }
        Command::Reset { yes } => {
            if !yes {
                bail!("this erases the device key (factory reset); pass --yes to confirm");
            }
            erase_key(&cli.state)?;
            println!("device key erased; restart `keyfill-agent serve` and the device can be provisioned again");
        }
        Command::Payload => {
            println!("{}", load_identity(&cli.state)?.onboarding_payload().encode()?);
        }
    }
    Ok(())
}

/// A test jig keying one board after another through the same link (`serve --jig-labels`).
struct Jig {
    state: PathBuf,
    labels: PathBuf,
}

impl Jig {
    /// Once `core` has stored and confirmed a key (the confirmation is on the link by now),
    /// the next board: a fresh identity named after this one, written to the state directory
    /// (key erased), its label appended to the file.
    fn next_device(&mut self, core: &AgentCore) -> Result<Option<AgentCore>> {
        if core.stored_key_id().is_none() {
            return Ok(None);
        }
        let current = load_identity(&self.state)?;
        let base = current.name.as_str().split("~").next().unwrap_or("board");
        let suffix: [u8; 4] = rand_suffix()?;
        let name = keyfill_formats::DeviceName::parse(&format!("{base}~{}", hex::encode(suffix)))
            .context("the jig's next device name")?;
        let secret_mode = matches!(current.credential, keyfill_agent::identity::DeviceCredential::SetupSecret(_));
        let next = DeviceIdentity::generate(name, &current.serial_number, current.factory_root, secret_mode)?;
        let payload = next.onboarding_payload().encode()?;
        erase_key(&self.state)?;
        write_atomically(&identity_path(&self.state), next.to_json()?.as_bytes()).context("cannot write identity")?;
        let mut labels = std::fs::OpenOptions::new().create(true).append(true).open(&self.labels)?;
        std::io::Write::write_all(&mut labels, format!("{payload}\n").as_bytes())?;
        info!(device = %next.device_id, "jig: the next board is on the link");
        Ok(Some(AgentCore::new(next, None)))
    }
}

fn rand_suffix() -> Result<[u8; 4]> {
    let mut bytes = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(bytes)
}

async fn serve_serial(
    serial: &Path,
    baud: u32,
    mut core: AgentCore,
    store: &mut FileKeystore,
    fault: FaultInjection,
    mut jig: Option<&mut Jig>,
) -> Result<()> {
    info!(device = %core.device_id(), port = %serial.display(), "serving provisioning on a serial port");
    loop {
        let builder = tokio_serial::new(serial.to_string_lossy(), baud);
        let mut port = tokio_serial::SerialStream::open(&builder)
            .with_context(|| format!("cannot open serial port {}", serial.display()))?;
        let mut next_device = |core: &AgentCore| match jig.as_deref_mut().map(|jig| jig.next_device(core)) {
            Some(Ok(next)) => next,
            Some(Err(error)) => {
                warn!(error = %format!("{error:#}"), "jig: cannot make the next board");
                None
            }
            None => None,
        };
        match serve_stream_as(&mut port, &mut core, store, fault, &mut next_device).await {
            Err(LinkError::Closed) => info!("link closed; reopening"),
            Err(error) => warn!(%error, "link error; reopening"),
            Ok(()) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Inserts the virtual card into the vpcd reader, and again after every removal.
async fn serve_vpcd(address: &str, core: AgentCore, store: &mut FileKeystore, mut fault: FaultInjection) -> Result<()> {
    info!(device = %core.device_id(), %address, "serving provisioning as a virtual smart card");
    let mut applet = CardApplet::new(core);
    loop {
        let mut stream = match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%error, "vpcd reader not reachable yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        info!("card inserted");
        let result = serve_card(&mut stream, &mut applet, store, fault).await;
        drop(stream);
        applet.reset();
        match result {
            Err(VpcdError::Pulled) => {
                // One-shot: the card comes back a moment later, healthy.
                fault = FaultInjection::None;
                info!("card pulled");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => {
                info!(%error, "card removed");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok(()) => {}
        }
    }
}

/// Connects to the GATT relay, and again after every disconnection.
async fn serve_ble_relay(
    address: &str,
    mtu: usize,
    mut core: AgentCore,
    store: &mut FileKeystore,
    fault: FaultInjection,
) -> Result<()> {
    info!(device = %core.device_id(), %address, mtu, "serving provisioning over a BLE relay");
    loop {
        let stream = match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => stream,
            Err(error) => {
                debug!(%error, "BLE relay not reachable yet");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        info!("central connected through the relay");
        let mut channel = RelayChannel::new(stream, mtu);
        if let Err(error) = serve_connection(&mut channel, &mut core, store, fault).await {
            info!(%error, "BLE relay session ended");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn erase_key(state: &Path) -> Result<()> {
    let path = keystore(state).path().to_path_buf();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.with_context(|| format!("cannot erase the key {}", path.display()))?,
    }
    // Make the erase durable, like every keystore write.
    std::fs::File::open(state).and_then(|dir| dir.sync_all()).context("cannot sync the state directory")
}

fn write_label(payload: &str, path: &Path) -> Result<()> {
    let code = qrcode::QrCode::new(payload.as_bytes()).context("payload does not fit a QR code")?;
    let image = code.render::<image::Luma<u8>>().min_dimensions(300, 300).build();
    image.save(path).with_context(|| format!("cannot write label {}", path.display()))?;
    Ok(())
}
