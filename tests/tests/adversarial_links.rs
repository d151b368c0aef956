//! Attacks that need no man in the middle, on each real link adapter: serial over a
//! pseudo-terminal, PC/SC through pcscd and vpcd, BLE through btleplug and the simulated BlueZ.
//!
//! - A rogue station holding a certificate of the right factory root that expired, or is not
//!   valid yet (a decommissioned or stolen station), drives the station's own session state
//!   machine and link adapters (`keyfill-rogue-station`): the device refuses it with
//!   `CertificateExpired` and stores nothing; the genuine station then provisions it at once.
//! - The label of one device presented while another device is on the link: refused as a wrong
//!   device, the key never leaves, the record is `failed`; the right label then provisions the
//!   device on the link at once.
//!
//! A rogue station of another factory root, and a label cloned onto a second device of the
//! same name, are `adversarial_{serial,pcsc,ble}_…` tests beside each link's other tests.

use anyhow::{Context, Result, bail};
use keyfill_e2e::bluez::SimulatedBluez;
use keyfill_e2e::pcscd::{self, Lease};
use keyfill_e2e::{Agent, Database, PtyPair, Station};
use ring::signature::Ed25519KeyPair;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// One link of one kind, with a device that can be put on it.
enum Rig {
    Serial(PtyPair),
    Pcsc(Lease),
    Ble { bluez: SimulatedBluez },
}

const BLE_ADDRESS: &str = "AA:BB:CC:00:0A:01";

impl Rig {
    fn serial(dir: &Path) -> Result<Self> {
        Ok(Rig::Serial(PtyPair::new(dir)?))
    }

    fn pcsc() -> Result<Self> {
        Ok(Rig::Pcsc(pcscd::lease()?))
    }

    /// The simulated BlueZ advertises the device `name` (the one that will be on the link).
    fn ble(dir: &Path, name: &str) -> Result<Self> {
        Ok(Rig::Ble { bluez: SimulatedBluez::start(dir, name, BLE_ADDRESS)? })
    }

    fn put_on_link(&self, agent: &mut Agent) -> Result<()> {
        match self {
            Rig::Serial(pty) => agent.serve(&pty.device_side, &[]),
            Rig::Pcsc(lease) => agent.serve_vpcd(&lease.reader().vpcd_address(), &[]),
            Rig::Ble { bluez } => agent.serve_relay(&bluez.relay_address, &["--ble-mtu", "23"]),
        }
    }

    /// Arguments of `keyfill provision` that name this link.
    fn provision_args(&self) -> Vec<String> {
        match self {
            Rig::Serial(pty) => vec!["--serial".into(), pty.station_side.to_string_lossy().into_owned()],
            Rig::Pcsc(lease) => vec!["--pcsc".into(), lease.reader().name.clone(), "--card-wait".into(), "10".into()],
            Rig::Ble { .. } => vec!["--ble".into(), BLE_ADDRESS.into(), "--card-wait".into(), "15".into()],
        }
    }

    /// `--link` of the rogue station.
    fn rogue_link(&self) -> String {
        match self {
            Rig::Serial(pty) => format!("serial:{}", pty.station_side.display()),
            Rig::Pcsc(lease) => format!("pcsc:{}", lease.reader().name),
            Rig::Ble { .. } => format!("ble:{BLE_ADDRESS}"),
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Rig::Ble { bluez } => vec![("DBUS_SYSTEM_BUS_ADDRESS", bluez.bus_address.clone())],
            _ => Vec::new(),
        }
    }

    fn provision(&self, station: &Station, label: &str) -> Result<Output> {
        let mut args = vec!["provision".to_owned()];
        args.extend(self.provision_args());
        args.extend(["--qr".to_owned(), label.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        station.run_env(&args, &env)
    }
}

/// A factory root the test holds, imported into the genuine station, so that the rogue can
/// present certificates of the same root.
struct FactoryRoot {
    pkcs8: PathBuf,
}

impl FactoryRoot {
    fn generate(dir: &Path) -> Result<Self> {
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("cannot generate a factory root"))?;
        let pkcs8 = dir.join("factory-root.pk8");
        std::fs::write(&pkcs8, document.as_ref())?;
        Ok(FactoryRoot { pkcs8 })
    }

    fn genuine_station(&self, dir: &Path) -> Result<Station> {
        let station = Station {
            home: dir.join("station-home"),
            db: Database::sqlite(dir),
            transcript: Default::default(),
            env: Vec::new(),
        };
        let key = self.pkcs8.to_string_lossy().into_owned();
        let output = station.run(&["init", "--station-name", "genuine", "--factory-root-key", &key])?;
        if !output.status.success() {
            bail!("keyfill init failed: {}", stderr(&output));
        }
        Ok(station)
    }

    /// Runs the rogue station with a certificate valid `valid_from..=valid_until` (Unix seconds)
    /// and returns its report.
    fn rogue_attempt(&self, rig: &Rig, label: &str, valid_from: u64, valid_until: u64) -> Result<serde_json::Value> {
        let output = Command::new(env!("CARGO_BIN_EXE_keyfill-rogue-station"))
            .args(["--link", &rig.rogue_link(), "--qr", label, "--root-key"])
            .arg(&self.pkcs8)
            .args(["--valid-from", &valid_from.to_string(), "--valid-until", &valid_until.to_string()])
            .envs(rig.env())
            .output()?;
        if !output.status.success() {
            bail!("the rogue station could not run: {}", stderr(&output));
        }
        serde_json::from_slice(&output.stdout).with_context(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn now() -> u64 {
    keyfill_station::home::unix_now()
}

fn stale_and_early_certificates_are_refused(dir: &Path, rig: impl FnOnce(&Path) -> Result<Rig>) -> Result<()> {
    let root = FactoryRoot::generate(dir)?;
    let station = root.genuine_station(dir)?;
    let mut agent = Agent::init(dir, "cert-target", &station.factory_root_file(), &[])?;
    let rig = rig(dir)?;
    rig.put_on_link(&mut agent)?;
    let day = 86_400;
    for (case, valid_from, valid_until) in
        [("expired", now() - 30 * day, now() - day), ("not yet valid", now() + day, now() + 30 * day)]
    {
        let report = root.rogue_attempt(&rig, &agent.payload, valid_from, valid_until)?;
        assert_eq!(report["outcome"], "refused", "{case}: {report}");
        assert_eq!(report["abort_reason"], "CertificateExpired", "{case}: {report}");
        assert_eq!(report["request_sent"], false, "{case}: the key must not leave: {report}");
        assert!(agent.key_bytes()?.is_none(), "{case}: the device stored nothing");
        assert_eq!(agent.status()?["provisioned"], false, "{case}");
    }
    // The same root's genuine station, right after.
    let output = rig.provision(&station, &agent.payload)?;
    assert!(output.status.success(), "the genuine station: {}", stderr(&output));
    assert_eq!(station.state_of("cert-target")?.as_deref(), Some("provisioned"));
    let record = station.devices()?.into_iter().next().context("one device")?;
    assert_eq!(agent.status()?["key_id"], record["key_id"]);
    Ok(())
}

#[test]
fn adversarial_serial_expired_and_not_yet_valid_station_certificates_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    stale_and_early_certificates_are_refused(dir.path(), Rig::serial)
}

#[test]
fn adversarial_pcsc_expired_and_not_yet_valid_station_certificates_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    stale_and_early_certificates_are_refused(dir.path(), |_| Rig::pcsc())
}

#[test]
fn adversarial_ble_expired_and_not_yet_valid_station_certificates_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    stale_and_early_certificates_are_refused(dir.path(), |dir| Rig::ble(dir, "cert-target"))
}

fn label_of_another_device_is_refused(dir: &Path, rig: impl FnOnce(&Path) -> Result<Rig>) -> Result<()> {
    let station = Station::init(dir, Database::sqlite(dir))?;
    let absent = Agent::init(&dir.join("absent"), "labelled-device", &station.factory_root_file(), &[])?;
    let mut present = Agent::init(&dir.join("present"), "device-on-link", &station.factory_root_file(), &[])?;
    let rig = rig(dir)?;
    rig.put_on_link(&mut present)?;

    let output = rig.provision(&station, &absent.payload)?;
    assert!(!output.status.success(), "the wrong device must not be provisioned");
    let said = stderr(&output);
    assert!(said.contains("WrongDevice") || said.contains("could not prove"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert_eq!(station.state_of("labelled-device")?.as_deref(), Some("failed"), "the key never left");
    assert!(present.key_bytes()?.is_none(), "the device on the link stored nothing");

    let output = rig.provision(&station, &present.payload)?;
    assert!(output.status.success(), "the right label: {}", stderr(&output));
    assert_eq!(station.state_of("device-on-link")?.as_deref(), Some("provisioned"));
    Ok(())
}

#[test]
fn adversarial_serial_label_of_another_device_is_refused_as_a_wrong_device() -> Result<()> {
    let dir = tempfile::tempdir()?;
    label_of_another_device_is_refused(dir.path(), Rig::serial)
}

#[test]
fn adversarial_pcsc_label_of_another_device_is_refused_as_a_wrong_device() -> Result<()> {
    let dir = tempfile::tempdir()?;
    label_of_another_device_is_refused(dir.path(), |_| Rig::pcsc())
}

#[test]
fn adversarial_ble_label_of_another_device_is_refused_as_a_wrong_device() -> Result<()> {
    let dir = tempfile::tempdir()?;
    label_of_another_device_is_refused(dir.path(), |dir| Rig::ble(dir, "device-on-link"))
}
