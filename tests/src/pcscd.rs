//! A private pcscd with vsmartcard's vpcd reader driver: one vpcd channel, whose two virtual
//! readers wait for virtual cards (`keyfill-agent serve --vpcd`) on two TCP ports.
//!
//! pcsc-lite serves one socket per machine, so the first test that needs it replaces any
//! running pcscd with this one (readers from /etc are not wanted in tests). vpcd drives one
//! channel reliably (several channel entries in one pcscd were seen to never report a card), so
//! tests take the readers in turn through [`lease`]; pcscd is started with `--auto-exit` and
//! leaves by itself after the run (or after a quiet minute: the next lease starts it again).

use anyhow::{Context, Result, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FIRST_PORT: u16 = 35963;
const CHANNELS: usize = 1;
const DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

/// One virtual reader: its PC/SC name and the port its card connects to.
#[derive(Debug, Clone)]
pub struct VirtualReader {
    pub name: String,
    pub port: u16,
}

impl VirtualReader {
    pub fn vpcd_address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

#[derive(Debug)]
struct Daemon {
    child: Mutex<Child>,
    _config: PathBuf,
}

impl Daemon {
    /// Whether this pcscd still runs (`--auto-exit` ends it after a minute without clients).
    fn running(&self) -> bool {
        self.child.lock().map(|mut child| matches!(child.try_wait(), Ok(None))).unwrap_or(false)
    }
}

fn start_daemon() -> Result<Daemon> {
    if !std::path::Path::new(DRIVER).exists() {
        bail!("{DRIVER} is missing: apt-get install pcscd vsmartcard-vpcd libpcsclite-dev");
    }
    let config = std::env::temp_dir().join(format!("keyfill-pcscd-{}", std::process::id()));
    std::fs::create_dir_all(&config)?;
    let mut text = String::new();
    for channel in 0..CHANNELS {
        let port = FIRST_PORT as usize + 2 * channel;
        text.push_str(&format!(
            "FRIENDLYNAME \"Keyfill vpcd {channel}\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {DRIVER}\nCHANNELID 0x{port:04X}\n\n"
        ));
    }
    std::fs::write(config.join("vpcd"), text)?;
    let _ = Command::new("pkill").args(["-x", "pcscd"]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new("/run/pcscd/pcscd.comm").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let child = Command::new("pcscd")
        .args(["--foreground", "--auto-exit", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start pcscd")?;
    // Ready once every vpcd port listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    for reader in 0..2 * CHANNELS {
        let port = FIRST_PORT + reader as u16;
        while !port_listens(port) {
            if Instant::now() > deadline {
                bail!("pcscd's vpcd driver does not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(Daemon { child: Mutex::new(child), _config: config })
}

fn port_listens(port: u16) -> bool {
    std::fs::read_to_string("/proc/net/tcp")
        .map(|table| table.lines().any(|line| line.contains(&format!(":{port:04X} 00000000:0000 0A"))))
        .unwrap_or(false)
}

/// Exclusive use of the private pcscd's readers for one test.
#[derive(Debug)]
pub struct Lease {
    pub readers: [VirtualReader; 2],
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl Lease {
    pub fn reader(&self) -> &VirtualReader {
        &self.readers[0]
    }
}

/// Starts the private pcscd if needed and waits for this test's turn.
pub fn lease() -> Result<Lease> {
    static DAEMON: Mutex<Option<Daemon>> = Mutex::new(None);
    static TURN: Mutex<()> = Mutex::new(());
    let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Build the binaries first: pcscd leaves by itself after a minute without clients, which a
    // first build can take.
    crate::binary("keyfill");
    let mut daemon = DAEMON.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if !daemon.as_ref().is_some_and(Daemon::running) {
        *daemon = Some(start_daemon()?);
    }
    let reader = |slot: u16| VirtualReader { name: format!("Keyfill vpcd 0 00 {slot:02}"), port: FIRST_PORT + slot };
    Ok(Lease { readers: [reader(0), reader(1)], _turn: turn })
}
