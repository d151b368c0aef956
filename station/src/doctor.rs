//! `keyfill doctor`: what usually goes wrong on a new station, each found problem named with how
//! to fix it. Every check reads only: nothing is created, migrated or opened for writing.

use crate::db::{SchemaState, redact_url, schema_state};
use crate::home::{StationHome, unix_now};
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a network peer may take to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A certificate closer than this to its end fails the check, so that it is renewed in time.
const CERTIFICATE_MARGIN_DAYS: u64 = 30;

/// Every check, by name, in the order they run.
pub const CHECKS: [&str; 10] =
    ["home", "certificate", "clock", "database", "serial", "pcsc", "bluetooth", "broker", "c2", "printer"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not asked for (`--skip`), or nothing to check against (no broker given).
    Skip,
}

/// One check's finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Finding { check, status: Status::Pass, detail: detail.into(), fix: None }
    }

    fn fail(check: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { check, status: Status::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    fn skip(check: &'static str, detail: impl Into<String>) -> Self {
        Finding { check, status: Status::Skip, detail: detail.into(), fix: None }
    }
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Checkup {
    pub home: PathBuf,
    pub db_url: String,
    /// Serial ports to check by name; none: the ports found on the machine.
    pub serial: Vec<PathBuf>,
    pub broker: Option<String>,
    pub c2: Option<String>,
    /// Checks not to run.
    pub skip: Vec<String>,
}

/// Runs every check not skipped.
pub async fn run(checkup: &Checkup) -> Vec<Finding> {
    let mut findings = Vec::new();
    for check in CHECKS {
        if checkup.skip.iter().any(|skipped| skipped == check) {
            findings.push(Finding::skip(check, "skipped (--skip)"));
            continue;
        }
        findings.push(match check {
            "home" => home(&checkup.home),
            "certificate" => certificate(&checkup.home),
            "clock" => clock(&checkup.home),
            "database" => database(&checkup.db_url).await,
            "serial" => serial(&checkup.serial),
            "pcsc" => pcsc(),
            "bluetooth" => bluetooth(Path::new("/sys/class/bluetooth")),
            "broker" => reachable("broker", checkup.broker.as_deref(), 1883, "--broker URL").await,
            "c2" => reachable("c2", checkup.c2.as_deref(), 443, "--c2 URL").await,
            _ => printer(),
        });
    }
    findings
}

fn user_name() -> String {
    crate::operator::default_operator()
}

fn home(path: &Path) -> Finding {
    const CHECK: &str = "home";
    let shown = path.display();
    let home = StationHome::new(path);
    if !home.is_initialised() {
        return Finding::fail(CHECK, format!("{shown} is not a station home"), "run `keyfill init` (or pass --home)");
    }
    let Ok(metadata) = std::fs::metadata(path) else {
        return Finding::fail(CHECK, format!("cannot read {shown}"), "check the path and its permissions");
    };
    if metadata.uid() != nix::unistd::getuid().as_raw() {
        return Finding::fail(
            CHECK,
            format!("{shown} belongs to another user (uid {})", metadata.uid()),
            format!("run keyfill as its owner, or `sudo chown -R {} {shown}`", user_name()),
        );
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Finding::fail(
            CHECK,
            format!("{shown} is open to other users (mode {mode:o})"),
            format!("chmod 700 {shown}"),
        );
    }
    let exposed: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o077 != 0))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != crate::home::FACTORY_ROOT_PUBLIC_FILE)
        .collect();
    if !exposed.is_empty() {
        return Finding::fail(
            CHECK,
            format!("files of {shown} are readable by other users: {}", exposed.join(", ")),
            format!("chmod 600 {}", exposed.iter().map(|f| format!("{shown}/{f}")).collect::<Vec<_>>().join(" ")),
        );
    }
    Finding::pass(CHECK, format!("{shown}: a station home, private to {}", user_name()))
}

fn certificate(path: &Path) -> Finding {
    const CHECK: &str = "certificate";
    let Ok(info) = StationHome::new(path).info() else {
        return Finding::fail(CHECK, "no station certificate to read", "run `keyfill init` (or pass --home)");
    };
    let body = &info.certificate.body;
    let now = unix_now();
    if now > body.not_after {
        return Finding::fail(
            CHECK,
            "the station certificate has expired: devices refuse this station",
            "set up a new station home under the factory root (`keyfill init`), or check the clock",
        );
    }
    let days = (body.not_after - now) / 86_400;
    if days < CERTIFICATE_MARGIN_DAYS {
        return Finding::fail(
            CHECK,
            format!("the station certificate expires in {days} days"),
            "set up a new station home under the factory root before it does (`keyfill init`)",
        );
    }
    Finding::pass(CHECK, format!("valid for {days} more days"))
}

fn clock(path: &Path) -> Finding {
    const CHECK: &str = "clock";
    let now = unix_now();
    // 2025-01-01: a clock before it was never set.
    if now < 1_735_689_600 {
        return Finding::fail(CHECK, format!("the clock says {now} (Unix seconds), before 2025"), CLOCK_FIX);
    }
    if let Ok(info) = StationHome::new(path).info()
        && now < info.certificate.body.not_before
    {
        return Finding::fail(CHECK, "the clock is earlier than the station certificate's issue", CLOCK_FIX);
    }
    match std::process::Command::new("timedatectl").args(["show", "-p", "NTPSynchronized", "--value"]).output() {
        Ok(output) if output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "no" => {
            Finding::fail(CHECK, "the clock is not synchronised (NTP)", CLOCK_FIX)
        }
        _ => Finding::pass(CHECK, crate::time::rfc3339(now as i64 * 1000)),
    }
}

const CLOCK_FIX: &str = "turn time synchronisation on: `sudo timedatectl set-ntp true` (or the factory's NTP server)";

async fn database(url: &str) -> Finding {
    const CHECK: &str = "database";
    let shown = redact_url(url);
    match tokio::time::timeout(Duration::from_secs(10), schema_state(url)).await {
        Err(_) => Finding::fail(CHECK, format!("{shown} did not answer in 10 s"), "check the server and the network"),
        Ok(Err(error)) => Finding::fail(
            CHECK,
            format!("cannot reach {shown}: {error}"),
            "check the URL (--db, KEYFILL_DB), that the server runs and that this user may log in",
        ),
        Ok(Ok(SchemaState::NoFile)) => {
            Finding::fail(CHECK, format!("{shown} does not exist yet"), "run `keyfill init` (or pass --db)")
        }
        Ok(Ok(SchemaState::Migrations { applied, expected })) if applied < expected => Finding::fail(
            CHECK,
            format!("{shown} is at schema version {applied}, this keyfill's is {expected}"),
            "run any station command once (`keyfill info` does not; `keyfill devices list` does): it migrates the \
             database",
        ),
        Ok(Ok(SchemaState::Migrations { applied, expected })) if applied > expected => Finding::fail(
            CHECK,
            format!("{shown} is at schema version {applied}, newer than this keyfill's ({expected})"),
            "upgrade keyfill on this station to the version the other stations run",
        ),
        Ok(Ok(SchemaState::Migrations { applied, .. })) => {
            Finding::pass(CHECK, format!("{shown}: reachable, schema version {applied}"))
        }
    }
}

fn serial(named: &[PathBuf]) -> Finding {
    const CHECK: &str = "serial";
    let ports: Vec<PathBuf> = if named.is_empty() {
        match crate::detect::serial_ports() {
            Ok(found) => found.into_iter().map(|port| PathBuf::from(port.path)).collect(),
            Err(error) => return Finding::fail(CHECK, format!("cannot list serial ports: {error}"), "check udev"),
        }
    } else {
        named.to_vec()
    };
    if ports.is_empty() {
        return Finding::fail(
            CHECK,
            "no serial port found",
            "plug the USB serial adapter in (`dmesg | tail` shows it), or --skip serial on a station without one",
        );
    }
    let mut usable = Vec::new();
    for port in &ports {
        let shown = port.display();
        if !port.exists() {
            return Finding::fail(CHECK, format!("{shown} does not exist"), "plug the adapter in, or check the name");
        }
        let access = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK;
        if nix::unistd::access(port, access).is_err() {
            let user = user_name();
            return Finding::fail(
                CHECK,
                format!("{shown} cannot be opened for reading and writing by {user}"),
                format!("`sudo usermod -aG dialout {user}`, then log out and in again"),
            );
        }
        usable.push(shown.to_string());
    }
    Finding::pass(CHECK, format!("usable: {}", usable.join(", ")))
}

fn pcsc() -> Finding {
    const CHECK: &str = "pcsc";
    match crate::link::list_readers() {
        Err(error) => Finding::fail(
            CHECK,
            format!("pcscd does not answer: {error}"),
            "`sudo systemctl enable --now pcscd.socket` (Debian package pcscd)",
        ),
        Ok(readers) if readers.is_empty() => Finding::fail(
            CHECK,
            "pcscd runs but sees no reader",
            "plug the reader in; `pcsc_scan` (package pcsc-tools) shows what pcscd sees",
        ),
        Ok(readers) => Finding::pass(CHECK, format!("{} reader(s): {}", readers.len(), readers.join(", "))),
    }
}

fn bluetooth(class: &Path) -> Finding {
    const CHECK: &str = "bluetooth";
    let adapters: Vec<String> = std::fs::read_dir(class)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("hci"))
        .collect();
    if adapters.is_empty() {
        return Finding::fail(
            CHECK,
            "no Bluetooth adapter",
            "plug in a Bluetooth 4.0+ adapter; `rfkill list` shows a blocked one; `sudo systemctl start bluetooth`",
        );
    }
    Finding::pass(CHECK, format!("adapter(s): {}", adapters.join(", ")))
}

/// The host and port of a URL (`scheme://[user@]host[:port][/…]`).
fn host_port(url: &str, default_port: u16) -> Option<(String, u16)> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let default_port = match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("mqtts" | "ssl") => 8883,
        Some("https") => 443,
        Some("http") => 80,
        _ => default_port,
    };
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after.strip_prefix(':').map_or(Some(default_port), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None if !authority.is_empty() => Some((authority.to_owned(), default_port)),
        None => None,
    }
}

async fn reachable(check: &'static str, url: Option<&str>, default_port: u16, option: &str) -> Finding {
    let Some(url) = url else { return Finding::skip(check, format!("nothing to check: pass {option}")) };
    let shown = redact_url(url);
    let Some((host, port)) = host_port(url, default_port) else {
        return Finding::fail(check, format!("{shown} is not a URL"), format!("check {option}"));
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Finding::pass(check, format!("{host}:{port} accepts connections")),
        Ok(Err(error)) => Finding::fail(
            check,
            format!("cannot connect to {host}:{port}: {error}"),
            format!(
                "check the host name and port ({option}), that the server runs, and that a firewall lets this \
                 station through"
            ),
        ),
        Err(_) => Finding::fail(
            check,
            format!("{host}:{port} did not answer in {} s", CONNECT_TIMEOUT.as_secs()),
            format!("check the network path (a firewall dropping packets?) and {option}"),
        ),
    }
}

fn printer() -> Finding {
    const CHECK: &str = "printer";
    match std::process::Command::new("lpstat").arg("-a").output() {
        Err(_) => Finding::fail(
            CHECK,
            "no CUPS client (lpstat) to print labels with",
            "`sudo apt install cups-client` and set the printer up, or --skip printer when labels are saved as files",
        ),
        Ok(output) => {
            let queues: Vec<String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
                .collect();
            if queues.is_empty() {
                Finding::fail(
                    CHECK,
                    "CUPS has no printer queue",
                    "add the label printer in CUPS (`lpadmin`, or http://localhost:631)",
                )
            } else {
                Finding::pass(CHECK, format!("queue(s): {}", queues.join(", ")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_finds_host_and_port_in_urls() {
        assert_eq!(host_port("mqtt://127.0.0.1:1883", 1883), Some(("127.0.0.1".into(), 1883)));
        assert_eq!(host_port("mqtts://broker.local", 1883), Some(("broker.local".into(), 8883)));
        assert_eq!(host_port("https://user:pw@c2.example:8888/e4", 443), Some(("c2.example".into(), 8888)));
        assert_eq!(host_port("https://[::1]/", 443), Some(("::1".into(), 443)));
        assert_eq!(host_port("tcp://host:notaport", 1), None);
        assert_eq!(host_port("mqtt://", 1883), None);
    }

    #[test]
    fn doctor_bluetooth_looks_for_adapters() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(bluetooth(dir.path()).status, Status::Fail);
        std::fs::create_dir(dir.path().join("hci0")).unwrap();
        assert_eq!(bluetooth(dir.path()).status, Status::Pass);
    }
}
