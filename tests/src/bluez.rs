//! A simulated BlueZ for BLE tests: a private dbus-daemon used as the system bus, and
//! python-dbusmock's `bluez5` template extended with the Keyfill GATT service
//! (`tests/ble/mock_bluez.py`), whose characteristics relay to a real `keyfill-agent serve
//! --ble-relay`. The station's btleplug talks to it over D-Bus exactly as to BlueZ.

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MOCK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/ble/mock_bluez.py");
/// Debian's interpreter: python3-dbusmock, python3-dbus and python3-gi are installed for it.
const PYTHON: &str = "/usr/bin/python3";

#[derive(Debug)]
pub struct SimulatedBluez {
    /// Value for DBUS_SYSTEM_BUS_ADDRESS.
    pub bus_address: String,
    /// Where `keyfill-agent serve --ble-relay` connects.
    pub relay_address: String,
    pub device_address: String,
    bus: Child,
    mock: Child,
    _socket: PathBuf,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl SimulatedBluez {
    /// Starts a bus and the mock with one device advertising `name` at `address`.
    pub fn start(dir: &Path, name: &str, address: &str) -> Result<Self> {
        let socket = dir.join("system-bus");
        let bus_address = format!("unix:path={}", socket.display());
        let bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", &format!("--address={bus_address}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start dbus-daemon (apt-get install dbus)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline {
                bail!("dbus-daemon did not create its socket");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let port = free_port()?;
        let mut mock = Command::new(PYTHON)
            .arg(MOCK)
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address)
            .env("MOCK_BLE_NAME", name)
            .env("MOCK_BLE_ADDR", address)
            .env("KEYFILL_BLE_RELAY_PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the simulated BlueZ (apt-get install python3-dbusmock)")?;
        let stdout = mock.stdout.take().context("mock stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("READY /") => break true,
                Some(Ok(_)) => continue,
                _ => break false,
            }
        };
        let mut simulated = SimulatedBluez {
            bus_address,
            relay_address: format!("127.0.0.1:{port}"),
            device_address: address.to_owned(),
            bus,
            mock,
            _socket: socket,
        };
        if !ready {
            simulated.stop();
            bail!("the simulated BlueZ did not come up");
        }
        Ok(simulated)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.mock.id().to_string()).status();
        let _ = self.mock.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

impl Drop for SimulatedBluez {
    fn drop(&mut self) {
        self.stop();
    }
}
