//! `line.toml`: the work order a line keys, and its lanes, each a link pinned to a physical port and
//! a label source. Parsed and checked whole before anything starts; each mistake names its lane.
//!
//! ```toml
//! order = "WO-2026-0042"
//!
//! [[lane]]
//! name = "lane-1"
//! usb = "0403:6001:A50285BI"          # link: a USB serial adapter by VID:PID[:serial number]
//! scanner = "/dev/serial/by-id/usb-Zebra_Symbol_Bar_Code_Scanner-if00"
//!
//! [[lane]]
//! name = "nfc"
//! pcsc = "ACS ACR122U PICC Interface 00 00"
//! folder = "/var/spool/keyfill/nfc"
//! ```

use crate::orders::file::OrderId;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// The most lanes one line runs.
pub const MAX_LANES: usize = 64;
/// The largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;
const MAX_LANE_NAME: usize = 32;
const DEFAULT_BAUD: u32 = 115_200;
const BAUD_RANGE: std::ops::RangeInclusive<u32> = 1_200..=4_000_000;
const DEFAULT_CARD_WAIT: Duration = Duration::from_secs(30);
const CARD_WAIT_RANGE: std::ops::RangeInclusive<u64> = 1..=600;

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("the line configuration is not valid TOML: {0}")]
    Toml(String),
    #[error("order: {0}")]
    Order(String),
    #[error("the line configuration has no [[lane]]")]
    NoLanes,
    #[error("the line configuration has {0} lanes; at most {MAX_LANES}")]
    TooManyLanes(usize),
    #[error("lane {index}: {reason}")]
    Lane { index: usize, reason: String },
    #[error("lanes {first} and {second} both use {what}; each lane needs its own")]
    Shared { first: String, second: String, what: String },
}

/// A lane's name: what the line's events and the MES call it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LaneName(String);

impl LaneName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid_chars = text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if text.is_empty() || text.len() > MAX_LANE_NAME || !valid_chars || !text.starts_with(char::is_alphanumeric) {
            return Err(format!(
                "a lane name is 1 to {MAX_LANE_NAME} letters, digits, '.', '_' or '-', starting with a letter or digit"
            ));
        }
        Ok(LaneName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LaneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A USB serial adapter as udev knows it: vendor and product id, and its serial number when
/// several adapters of one kind are plugged in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsbSerialId {
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
}

impl UsbSerialId {
    /// `VID:PID` or `VID:PID:SERIAL`, ids in hexadecimal.
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || format!("a USB adapter is VID:PID or VID:PID:SERIAL (e.g. 0403:6001:A50285BI), not {text:?}");
        let mut parts = text.splitn(3, ':');
        let hex4 = |part: Option<&str>| {
            part.filter(|p| p.len() == 4).and_then(|p| u16::from_str_radix(p, 16).ok()).ok_or_else(usage)
        };
        let vid = hex4(parts.next())?;
        let pid = hex4(parts.next())?;
        let serial = match parts.next() {
            None => None,
            Some(serial)
                if !serial.is_empty() && serial.len() <= 64 && serial.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Some(serial.to_owned())
            }
            Some(_) => return Err(usage()),
        };
        Ok(UsbSerialId { vid, pid, serial })
    }
}

impl fmt::Display for UsbSerialId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "USB {:04x}:{:04x}", self.vid, self.pid)?;
        match &self.serial {
            Some(serial) => write!(f, " serial {serial}"),
            None => Ok(()),
        }
    }
}

/// The physical port a lane's devices are on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LanePort {
    /// A serial port by its path (`/dev/ttyS1`, `/dev/serial/by-path/…`).
    Serial(PathBuf),
    /// A USB serial adapter, found by udev wherever it is plugged in.
    Usb(UsbSerialId),
    /// A PC/SC reader by its name or a unique part of it.
    Pcsc(String),
    /// A Bluetooth adapter (`hci1`); each device by the address or name on its label.
    Ble { adapter: String },
}

impl fmt::Display for LanePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LanePort::Serial(path) => write!(f, "serial {}", path.display()),
            LanePort::Usb(id) => write!(f, "{id}"),
            LanePort::Pcsc(reader) => write!(f, "PC/SC reader {reader}"),
            LanePort::Ble { adapter } => write!(f, "BLE adapter {adapter}"),
        }
    }
}

/// Where a lane's labels come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LabelSource {
    /// A handheld scanner in serial (USB CDC) mode: one label per line.
    Scanner { path: PathBuf, baud: u32 },
    /// A folder the MES or a label printer drops files into: one label per file, as text or as a
    /// photograph or scan of the label.
    Folder(PathBuf),
    /// A camera (V4L2) looking at the fixture.
    Camera(PathBuf),
    /// Labels submitted through the local API (`keyfill serve --line`) only.
    Api,
}

impl fmt::Display for LabelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelSource::Scanner { path, .. } => write!(f, "scanner {}", path.display()),
            LabelSource::Folder(path) => write!(f, "folder {}", path.display()),
            LabelSource::Camera(path) => write!(f, "camera {}", path.display()),
            LabelSource::Api => f.write_str("API"),
        }
    }
}

/// One lane, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneConfig {
    pub name: LaneName,
    pub port: LanePort,
    pub labels: LabelSource,
    pub baud: u32,
    /// How long a card or a BLE advertisement is awaited.
    pub card_wait: Duration,
}

/// The whole line, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineConfig {
    pub order: OrderId,
    pub lanes: Vec<LaneConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    order: String,
    #[serde(default, rename = "lane")]
    lanes: Vec<RawLane>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLane {
    name: String,
    serial: Option<PathBuf>,
    usb: Option<String>,
    pcsc: Option<String>,
    ble_adapter: Option<String>,
    baud: Option<u32>,
    card_wait_secs: Option<u64>,
    scanner: Option<PathBuf>,
    scanner_baud: Option<u32>,
    folder: Option<PathBuf>,
    camera: Option<PathBuf>,
    /// Labels from the local API only.
    api: Option<bool>,
}

impl LineConfig {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawLine = toml::from_str(text).map_err(|error| {
            // The message may quote the file (an unknown key): escaped, with the line it is on.
            let message = keyfill_formats::printable(error.message()).into_owned();
            match error.span() {
                Some(span) => {
                    let line = text.get(..span.start).map_or(0, |before| before.matches('\n').count()) + 1;
                    ConfigError::Toml(format!("line {line}: {message}"))
                }
                None => ConfigError::Toml(message),
            }
        })?;
        let order = OrderId::parse(&raw.order).map_err(ConfigError::Order)?;
        if raw.lanes.is_empty() {
            return Err(ConfigError::NoLanes);
        }
        if raw.lanes.len() > MAX_LANES {
            return Err(ConfigError::TooManyLanes(raw.lanes.len()));
        }
        let lanes = raw
            .lanes
            .into_iter()
            .enumerate()
            .map(|(index, lane)| lane.check().map_err(|reason| ConfigError::Lane { index: index + 1, reason }))
            .collect::<Result<Vec<_>, _>>()?;
        check_distinct(&lanes)?;
        Ok(LineConfig { order, lanes })
    }
}

impl RawLane {
    fn check(self) -> Result<LaneConfig, String> {
        let name = LaneName::parse(&self.name)?;
        let within = |reason: String| format!("{name}: {reason}");
        let ports = [
            self.serial.map(LanePort::Serial),
            self.usb.as_deref().map(UsbSerialId::parse).transpose().map_err(within)?.map(LanePort::Usb),
            self.pcsc.map(LanePort::Pcsc),
            self.ble_adapter.map(|adapter| LanePort::Ble { adapter }),
        ];
        let port = exactly_one(ports).map_err(|count| {
            within(format!("give exactly one link of serial, usb, pcsc or ble_adapter (found {count})"))
        })?;
        let baud = self.baud.unwrap_or(DEFAULT_BAUD);
        let scanner_baud = self.scanner_baud.unwrap_or(DEFAULT_BAUD);
        for (key, value) in [("baud", baud), ("scanner_baud", scanner_baud)] {
            if !BAUD_RANGE.contains(&value) {
                return Err(within(format!("{key} {value} is outside {}..={}", BAUD_RANGE.start(), BAUD_RANGE.end())));
            }
        }
        let card_wait = match self.card_wait_secs {
            None => DEFAULT_CARD_WAIT,
            Some(secs) if CARD_WAIT_RANGE.contains(&secs) => Duration::from_secs(secs),
            Some(secs) => return Err(within(format!("card_wait_secs {secs} is outside 1..=600"))),
        };
        let sources = [
            self.scanner.map(|path| LabelSource::Scanner { path, baud: scanner_baud }),
            self.folder.map(LabelSource::Folder),
            self.camera.map(LabelSource::Camera),
            self.api.filter(|api| *api).map(|_| LabelSource::Api),
        ];
        let labels = exactly_one(sources).map_err(|count| {
            within(format!("give exactly one label source of scanner, folder, camera or api = true (found {count})"))
        })?;
        for path in [label_path(&labels), port_path(&port)].into_iter().flatten() {
            let shown = path.to_string_lossy();
            if shown.chars().any(char::is_control) {
                return Err(within(format!("the path {shown:?} holds a control character")));
            }
            if !path.is_absolute() {
                return Err(within(format!("{} is not an absolute path", path.display())));
            }
        }
        if let LanePort::Pcsc(reader) | LanePort::Ble { adapter: reader } = &port
            && (reader.is_empty() || reader.len() > 128 || reader.chars().any(char::is_control))
        {
            return Err(within(
                "a reader or adapter name is 1 to 128 characters, none of them control characters".into(),
            ));
        }
        Ok(LaneConfig { name, port, labels, baud, card_wait })
    }
}

fn label_path(source: &LabelSource) -> Option<&PathBuf> {
    match source {
        LabelSource::Scanner { path, .. } | LabelSource::Folder(path) | LabelSource::Camera(path) => Some(path),
        LabelSource::Api => None,
    }
}

fn port_path(port: &LanePort) -> Option<&PathBuf> {
    match port {
        LanePort::Serial(path) => Some(path),
        _ => None,
    }
}

/// The one `Some` of `options`, else how many there were.
fn exactly_one<T, const N: usize>(options: [Option<T>; N]) -> Result<T, usize> {
    let mut given: Vec<T> = options.into_iter().flatten().collect();
    match given.len() {
        1 => Ok(given.remove(0)),
        count => Err(count),
    }
}

/// No two lanes share a name, a port or a label source.
fn check_distinct(lanes: &[LaneConfig]) -> Result<(), ConfigError> {
    let mut seen: Vec<(String, &LaneName)> = Vec::new();
    let mut names = HashSet::new();
    for lane in lanes {
        if !names.insert(&lane.name) {
            return Err(ConfigError::Shared {
                first: lane.name.to_string(),
                second: lane.name.to_string(),
                what: "one name".into(),
            });
        }
        // Lanes fed by the API share no source: each has its own inbox.
        let labels = (lane.labels != LabelSource::Api).then(|| lane.labels.to_string());
        for what in std::iter::once(lane.port.to_string()).chain(labels) {
            if let Some((_, first)) = seen.iter().find(|(used, _)| *used == what) {
                return Err(ConfigError::Shared { first: first.to_string(), second: lane.name.to_string(), what });
            }
            seen.push((what, &lane.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR_LANES: &str = r#"
        order = "WO-1"
        [[lane]]
        name = "lane-1"
        usb = "0403:6001:A50285BI"
        scanner = "/dev/ttyACM0"
        [[lane]]
        name = "lane-2"
        serial = "/dev/ttyS1"
        baud = 57600
        folder = "/var/spool/keyfill/lane-2"
        [[lane]]
        name = "nfc"
        pcsc = "ACS ACR122U"
        card_wait_secs = 5
        camera = "/dev/video0"
        [[lane]]
        name = "ble"
        ble_adapter = "hci1"
        scanner = "/dev/ttyACM1"
        scanner_baud = 9600
    "#;

    #[test]
    fn line_config_reads_every_kind_of_lane() {
        let config = LineConfig::parse(FOUR_LANES).expect("valid");
        assert_eq!(config.order.as_str(), "WO-1");
        let ports: Vec<String> = config.lanes.iter().map(|l| l.port.to_string()).collect();
        assert_eq!(
            ports,
            ["USB 0403:6001 serial A50285BI", "serial /dev/ttyS1", "PC/SC reader ACS ACR122U", "BLE adapter hci1"]
        );
        assert_eq!(config.lanes[1].baud, 57_600);
        assert_eq!(config.lanes[2].card_wait, Duration::from_secs(5));
        assert_eq!(config.lanes[3].labels, LabelSource::Scanner { path: "/dev/ttyACM1".into(), baud: 9600 });
    }

    #[test]
    fn line_config_names_the_lane_and_the_mistake() {
        let cases = [
            ("order = \"WO-1\"\n", "no [[lane]]"),
            ("order = \"../x\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\nfolder=\"/f\"", "order:"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nfolder=\"/f\"", "lane 1: a: give exactly one link"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\npcsc=\"r\"\nfolder=\"/f\"", "(found 2)"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"", "exactly one label source"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a b\"\nserial=\"/dev/x\"\nfolder=\"/f\"", "lane 1: a lane name"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nusb=\"403:6001\"\nfolder=\"/f\"", "VID:PID"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"ttyS0\"\nfolder=\"/f\"", "not an absolute path"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\nfolder=\"/f\"\nbaud=0", "baud 0"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\nfolder=\"/f\"\nspeed=1", "unknown field"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\npcsc=\"r\\u0007\"\nfolder=\"/f\"", "control characters"),
            (
                "order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\\u001b[2J\"\nfolder=\"/f\"",
                "a control character",
            ),
            (
                "order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\nfolder=\"/f\"\n\
                 [[lane]]\nname=\"b\"\nserial=\"/dev/x\"\nfolder=\"/g\"",
                "lanes a and b both use serial /dev/x",
            ),
            (
                "order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\nfolder=\"/f\"\n\
                 [[lane]]\nname=\"a\"\nserial=\"/dev/y\"\nfolder=\"/g\"",
                "one name",
            ),
            ("order = [", "not valid TOML"),
            ("order = \"WO-1\"\n\n[[lane]]\nname=\"a\"\nbad\u{1b}key = 1\n", "line 5"),
            ("order = \"WO-1\"\n[[lane]]\nname=\"a\"\nserial=\"/dev/x\"\nfolder=\"/f\"\n\"sp\u{1b}eed\" = 1", "line 6"),
        ];
        for (text, expected) in cases {
            let error = LineConfig::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
            assert!(!error.chars().any(char::is_control), "{text:?}: {error:?}");
        }
    }

    #[test]
    fn line_config_reads_usb_ids_with_and_without_a_serial_number() {
        assert_eq!(UsbSerialId::parse("10c4:EA60"), Ok(UsbSerialId { vid: 0x10c4, pid: 0xea60, serial: None }));
        let with = UsbSerialId::parse("0403:6001:A5:02").expect("a serial number may hold ':'");
        assert_eq!(with.serial.as_deref(), Some("A5:02"));
        for bad in ["", "0403", "0403:60011", "0403:6001:", "0403:6001:a b", "zzzz:6001"] {
            assert!(UsbSerialId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn line_config_lanes_fed_by_the_api_share_no_source() {
        let config = LineConfig::parse(
            "order = \"WO-1\"\n[[lane]]\nname = \"a\"\nserial = \"/dev/ttyUSB0\"\napi = true\n\
             [[lane]]\nname = \"b\"\nserial = \"/dev/ttyUSB1\"\napi = true\n",
        )
        .expect("two API lanes");
        assert!(config.lanes.iter().all(|lane| lane.labels == LabelSource::Api));
        let error =
            LineConfig::parse("order = \"WO-1\"\n[[lane]]\nname = \"a\"\nserial = \"/dev/ttyUSB0\"\napi = false\n")
                .expect_err("no source");
        assert!(error.to_string().contains("api = true"), "{error}");
        let error = LineConfig::parse(
            "order = \"WO-1\"\n[[lane]]\nname = \"a\"\nserial = \"/dev/ttyUSB0\"\napi = true\nfolder = \"/srv/drop\"\n",
        )
        .expect_err("two sources");
        assert!(error.to_string().contains("exactly one label source"), "{error}");
    }

    #[test]
    fn line_config_refuses_more_lanes_than_it_runs() {
        let mut text = String::from("order = \"WO-1\"\n");
        for index in 0..=MAX_LANES {
            text.push_str(&format!("[[lane]]\nname=\"l{index}\"\nserial=\"/dev/s{index}\"\nfolder=\"/f{index}\"\n"));
        }
        assert_eq!(LineConfig::parse(&text), Err(ConfigError::TooManyLanes(MAX_LANES + 1)));
    }
}
