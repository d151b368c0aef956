//! A simulated device for demonstrations and tests: the real agent core behind a
//! pseudo-terminal, so the station opens the other end exactly like a UART.

use keyfill_agent::AgentCore;
use keyfill_agent::driver::FaultInjection;
use keyfill_agent::identity::DeviceIdentity;
use keyfill_agent::keystore::{FileKeystore, Keystore};
use keyfill_agent::serial::serve_stream;
use keyfill_formats::DeviceName;
use nix::pty::{OpenptyResult, openpty};
use nix::sys::termios::{self, SetArg};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("cannot open a pseudo-terminal: {0}")]
    Pty(#[from] nix::Error),
    #[error("simulated device: {0}")]
    Device(String),
}

/// A simulated device running on its own task; the station side is [`SimulatedDevice::port`].
#[derive(Debug)]
pub struct SimulatedDevice {
    pub identity: DeviceIdentity,
    port: PathBuf,
    // Held open so the pseudo-terminal stays up until the station has opened it.
    _slave: OwnedFd,
    task: tokio::task::JoinHandle<()>,
}

impl SimulatedDevice {
    /// Creates a device identity pinned to `factory_root` with its keystore under `state_dir`,
    /// and starts serving on a fresh pseudo-terminal. `state_dir` is the caller's choice: a name
    /// is never a path.
    pub fn start(
        name: DeviceName,
        serial_number: &str,
        factory_root: [u8; 32],
        state_dir: &Path,
    ) -> Result<Self, DemoError> {
        let identity = DeviceIdentity::generate(name, serial_number, factory_root, false)
            .map_err(|e| DemoError::Device(e.to_string()))?;
        std::fs::create_dir_all(state_dir).map_err(|e| DemoError::Device(e.to_string()))?;
        let mut keystore = FileKeystore::new(state_dir.join("key.json"));
        let stored = keystore.load().map_err(|e| DemoError::Device(e.to_string()))?;
        let OpenptyResult { master, slave } = openpty(None, None)?;
        let mut attributes = termios::tcgetattr(&slave)?;
        termios::cfmakeraw(&mut attributes);
        termios::tcsetattr(&slave, SetArg::TCSANOW, &attributes)?;
        let port = nix::unistd::ttyname(&slave)?;
        let mut core = AgentCore::new(identity.clone(), stored);
        let mut stream = tokio::fs::File::from_std(std::fs::File::from(master));
        let task = tokio::spawn(async move {
            if let Err(error) = serve_stream(&mut stream, &mut core, &mut keystore, FaultInjection::None).await {
                tracing::debug!(%error, "simulated device link ended");
            }
        });
        Ok(SimulatedDevice { identity, port, _slave: slave, task })
    }

    /// The pseudo-terminal path the station opens as its serial port.
    pub fn port(&self) -> &Path {
        &self.port
    }
}

impl Drop for SimulatedDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}
