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
    stop_other_pcscd()?;
    // A pcscd that cannot take the socket exits at once: started again, up to three times.
    let mut last_problem = String::new();
    for _ in 0..3 {
        let mut child = Command::new("pcscd")
            .args(["--foreground", "--auto-exit", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start pcscd")?;
        match wait_until_ready(&mut child) {
            Ok(()) => return Ok(Daemon { child: Mutex::new(child), _config: config }),
            Err(problem) => {
                let _ = child.kill();
                let _ = child.wait();
                last_problem = problem;
                stop_other_pcscd()?;
            }
        }
    }
    bail!("the tests' pcscd did not come up: {last_problem}")
}

/// Stops any other pcscd, this machine's or one an earlier test binary left (`--auto-exit` keeps
/// it for a minute): its vpcd ports are this one's, so while it lives the ports listen and the
/// socket is taken, and a new pcscd would look ready while clients still reach the old one.
fn stop_other_pcscd() -> Result<()> {
    let running =
        || Command::new("pgrep").args(["-x", "pcscd"]).stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    // Under systemd, its socket would start the machine's pcscd again for the next client.
    if std::path::Path::new("/run/systemd/system").exists() {
        let _ = Command::new("systemctl").args(["stop", "pcscd.socket", "pcscd.service"]).status();
    }
    let _ = Command::new("pkill").args(["-x", "pcscd"]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while running() {
        if Instant::now() > deadline - Duration::from_secs(5) {
            let _ = Command::new("pkill").args(["-KILL", "-x", "pcscd"]).status();
        }
        if Instant::now() > deadline {
            bail!("another pcscd does not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // A pcscd killed outright leaves its socket behind.
    let _ = std::fs::remove_file("/run/pcscd/pcscd.comm");
    let deadline = Instant::now() + Duration::from_secs(5);
    while (0..2 * CHANNELS).any(|reader| port_listens(FIRST_PORT + reader as u16)) {
        if Instant::now() > deadline {
            bail!("the vpcd ports are still taken after the other pcscd stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Ready once this pcscd runs, every vpcd port listens and a client sees its readers.
fn wait_until_ready(child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("pcscd exited at start ({status})"));
        }
        let listening = (0..2 * CHANNELS).all(|reader| port_listens(FIRST_PORT + reader as u16));
        if listening && readers_visible() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("after 10 s: vpcd ports listening: {listening}, readers visible to a client: false"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn readers_visible() -> bool {
    let Ok(context) = pcsc::Context::establish(pcsc::Scope::User) else { return false };
    let Ok(readers) = context.list_readers_owned() else { return false };
    readers.iter().any(|reader| reader.to_string_lossy().starts_with("Keyfill vpcd 0"))
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
