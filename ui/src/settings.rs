//! What the operator sets once and keeps across restarts: a serde struct written as JSON to the
//! user's config directory, atomically. Runtime state (the current device, progress, the
//! inventory) lives in the screens, never here.

use keyfill_station::detect::LinkTarget;
use keyfill_station::label::{LabelFormat, LabelSpec};
use keyfill_station::rotation::RotationSettings;
use keyfill_station::scan::camera::CameraSettings;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

const FILE_NAME: &str = "gui-settings.json";

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SettingsError {
    #[error("cannot read the settings {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the settings {path} are not valid JSON: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot write the settings {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub station: StationSettings,
    pub link: LinkSettings,
    pub camera: CameraChoice,
    pub label: LabelSettings,
    pub lock: LockSettings,
    pub provision: ProvisionSettings,
    pub rotation: RotationDefaults,
    pub export: ExportDefaults,
}

/// Where the station's state lives. Command-line options and environment variables win; a
/// change here applies at the next start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StationSettings {
    pub home: Option<PathBuf>,
    pub database: Option<String>,
    /// Recorded in the event log; the account's login name when unset.
    pub operator: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    #[default]
    Serial,
    Pcsc,
    Ble,
}

impl LinkKind {
    pub const ALL: [LinkKind; 3] = [LinkKind::Serial, LinkKind::Pcsc, LinkKind::Ble];

    pub fn title(self) -> &'static str {
        match self {
            LinkKind::Serial => "Serial port",
            LinkKind::Pcsc => "PC/SC reader",
            LinkKind::Ble => "Bluetooth LE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkSettings {
    pub kind: LinkKind,
    pub serial_port: String,
    pub baud: u32,
    /// Empty: the first reader with a card.
    pub pcsc_reader: String,
    /// Empty: the address or name on the device's label.
    pub ble_target: String,
    /// How long to wait for a card or a BLE advertisement.
    pub card_wait_secs: u64,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            kind: LinkKind::Serial,
            serial_port: String::new(),
            baud: 115_200,
            pcsc_reader: String::new(),
            ble_target: String::new(),
            card_wait_secs: 30,
        }
    }
}

impl LinkSettings {
    /// The link to provision over; `None` while no serial port is chosen.
    pub fn target(&self) -> Option<LinkTarget> {
        let optional = |text: &str| (!text.trim().is_empty()).then(|| text.trim().to_owned());
        match self.kind {
            LinkKind::Serial => {
                optional(&self.serial_port).map(|path| LinkTarget::Serial { path: path.into(), baud: self.baud })
            }
            LinkKind::Pcsc => Some(LinkTarget::Pcsc { reader: optional(&self.pcsc_reader) }),
            LinkKind::Ble => Some(LinkTarget::Ble { target: optional(&self.ble_target), adapter: None }),
        }
    }

    pub fn card_wait(&self) -> Duration {
        Duration::from_secs(self.card_wait_secs.clamp(1, 600))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraSource {
    /// Handheld scanner (or typing) only.
    #[default]
    Off,
    /// A V4L2 camera.
    Camera,
    /// A folder where a phone app or a label printer drops photographs.
    Folder,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CameraChoice {
    pub source: CameraSource,
    pub camera: CameraSettings,
    pub folder: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelMode {
    Off,
    /// Save the label file only.
    #[default]
    Save,
    /// Save it and send it to the printer queue.
    SaveAndPrint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelFileFormat {
    #[default]
    Png,
    Pdf,
}

impl LabelFileFormat {
    pub fn format(self) -> LabelFormat {
        match self {
            LabelFileFormat::Png => LabelFormat::Png,
            LabelFileFormat::Pdf => LabelFormat::Pdf,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelSettings {
    pub after_provisioning: LabelMode,
    pub folder: PathBuf,
    pub format: LabelFileFormat,
    /// `WIDTHxHEIGHT` in millimetres, as `keyfill label --size` takes it.
    pub size: String,
    pub dpi: u32,
    /// A CUPS queue (`lpstat -p` lists them); empty: save only.
    pub printer_queue: String,
}

impl Default for LabelSettings {
    fn default() -> Self {
        let folder = directories::UserDirs::new()
            .and_then(|dirs| dirs.document_dir().map(Path::to_path_buf))
            .unwrap_or_else(std::env::temp_dir)
            .join("keyfill-labels");
        LabelSettings {
            after_provisioning: LabelMode::Save,
            folder,
            format: LabelFileFormat::Png,
            size: "50x30".to_owned(),
            dpi: 300,
            printer_queue: String::new(),
        }
    }
}

impl LabelSettings {
    /// The label size at the printer's resolution, or why it is not one.
    pub fn spec(&self) -> Result<LabelSpec, String> {
        let spec = self.size.parse::<LabelSpec>().map_err(|e| e.to_string())?.with_dpi(self.dpi);
        spec.validate().map_err(|e| e.to_string())?;
        Ok(spec)
    }

    /// The queue to print on, when printing is asked for.
    pub fn queue(&self) -> Option<String> {
        let queue = self.printer_queue.trim();
        (self.after_provisioning == LabelMode::SaveAndPrint && !queue.is_empty()).then(|| queue.to_owned())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockSettings {
    /// Lock after this many minutes without input; 0 never locks.
    pub after_idle_minutes: u32,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings { after_idle_minutes: 15 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisionSettings {
    /// Line work: a scanned label is provisioned at once, and its label made.
    pub auto_mode: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RotationDefaults {
    pub broker: String,
    pub first_wait_secs: f64,
    pub max_attempts: u32,
    pub window: usize,
}

impl Default for RotationDefaults {
    fn default() -> Self {
        let library = RotationSettings::default();
        RotationDefaults {
            broker: "mqtt://127.0.0.1:1883".to_owned(),
            first_wait_secs: library.first_wait.as_secs_f64(),
            max_attempts: library.max_attempts,
            window: library.window,
        }
    }
}

impl RotationDefaults {
    pub fn settings(&self) -> RotationSettings {
        RotationSettings {
            first_wait: Duration::from_secs_f64(self.first_wait_secs.clamp(0.05, 600.0)),
            max_attempts: self.max_attempts.max(1),
            window: self.window.max(1),
            ..RotationSettings::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportDefaults {
    pub c2_url: String,
    /// PEM file of the CA that signed C2's certificate; empty: the system's roots.
    pub ca_file: String,
    pub replace_foreign: bool,
    /// The C2 operator's public key for offline bundles: a `.pub` file, or 64 hex digits. Not
    /// secret, but its authenticity matters: bundles are readable by whoever holds its pair.
    pub bundle_recipient: String,
}

/// `gui-settings.json` in the user's config directory (`~/.config/keyfill/`).
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "keyfill", "keyfill").map(|dirs| dirs.config_dir().join(FILE_NAME))
}

/// Reads the settings at `path`; a missing file is the defaults.
pub fn load(path: &Path) -> Result<Settings, SettingsError> {
    load_over(path, &Settings::default())
}

/// Reads the settings at `path` over `defaults`: what the file does not hold keeps its default.
pub fn load_over(path: &Path, defaults: &Settings) -> Result<Settings, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(defaults.clone()),
        Err(source) => return Err(SettingsError::Read { path: path.to_owned(), source }),
    };
    let parse_error = |e: serde_json::Error| SettingsError::Parse { path: path.to_owned(), reason: e.to_string() };
    let saved: serde_json::Value = serde_json::from_str(&text).map_err(parse_error)?;
    let mut merged = serde_json::to_value(defaults).map_err(parse_error)?;
    merge(&mut merged, saved);
    serde_json::from_value(merged).map_err(parse_error)
}

fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(base), serde_json::Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// The settings' defaults with what the configuration files (`keyfill.toml`) set: the values
/// the app starts from until the operator saves settings of their own.
pub fn defaults_from(config: &keyfill_station::config::Config) -> Settings {
    let text = |key: &str| config.get(key).map(|entry| entry.value.as_str().to_owned());
    let number = |key: &str| text(key).and_then(|value| value.parse::<u64>().ok());
    let mut settings = Settings::default();
    settings.station.home = text("home").map(PathBuf::from);
    settings.station.database = text("db");
    settings.station.operator = text("operator");
    if let Some(kind) = text("gui.link") {
        settings.link.kind = match kind.as_str() {
            "pcsc" => LinkKind::Pcsc,
            "ble" => LinkKind::Ble,
            _ => LinkKind::Serial,
        };
    }
    if let Some(port) = text("gui.serial_port") {
        settings.link.serial_port = port;
    }
    if let Some(reader) = text("gui.pcsc_reader") {
        settings.link.pcsc_reader = reader;
    }
    if let Some(baud) = number("link.baud").and_then(|baud| u32::try_from(baud).ok()) {
        settings.link.baud = baud;
    }
    if let Some(wait) = number("link.card_wait") {
        settings.link.card_wait_secs = wait;
    }
    if let Some(size) = text("label.size") {
        settings.label.size = size;
    }
    if let Some(dpi) = number("label.dpi").and_then(|dpi| u32::try_from(dpi).ok()) {
        settings.label.dpi = dpi;
    }
    if let Some(queue) = text("label.printer_queue") {
        settings.label.printer_queue = queue;
    }
    if let Some(folder) = text("label.folder") {
        settings.label.folder = PathBuf::from(folder);
    }
    if let Some(broker) = text("mqtt.broker") {
        settings.rotation.broker = broker;
    }
    if let Some(window) = number("rotation.window").and_then(|window| usize::try_from(window).ok()) {
        settings.rotation.window = window;
    }
    if let Some(url) = text("c2.url") {
        settings.export.c2_url = url;
    }
    if let Some(ca) = text("c2.ca") {
        settings.export.ca_file = ca;
    }
    settings
}

/// Writes the settings to `path` atomically: a crash leaves the old file or the new one.
pub fn save(path: &Path, settings: &Settings) -> Result<(), SettingsError> {
    let failed = |source| SettingsError::Write { path: path.to_owned(), source };
    let json = serde_json::to_vec_pretty(settings).map_err(|e| failed(std::io::Error::other(e)))?;
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(failed)?;
    let temporary = folder.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself is durable only once the folder is.
        std::fs::File::open(folder)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `gui_settings` fuzz target: without correctly rounded float parsing a
    /// wait written as the shortest decimal that reads back exactly was read back one unit in
    /// the last place away, so a saved file did not load back unchanged.
    #[test]
    fn gui_settings_fuzz_float_loads_back_exactly_as_saved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let text = r#"{"rotation": {"first_wait_secs": 122222222222622222222222222222.5}}"#;
        std::fs::write(&path, text).unwrap();
        let loaded = load(&path).unwrap();
        save(&path, &loaded).unwrap();
        assert_eq!(load(&path).unwrap(), loaded);
        assert_eq!(loaded.rotation.settings().first_wait, Duration::from_secs(600), "used clamped");
    }

    #[test]
    fn config_gui_starts_from_the_files_until_the_operator_saves() {
        use keyfill_station::config::{Config, ConfigFile, Scope};
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("keyfill.toml");
        std::fs::write(
            &system,
            "db = \"postgres://keyfill@db/keyfill\"\n[label]\nsize = \"62x29\"\nprinter_queue = \"QL820\"\n\
             [gui]\nlink = \"pcsc\"\n[c2]\nurl = \"https://c2:8888\"\n",
        )
        .unwrap();
        assert!(ConfigFile::read(&system, Scope::System).unwrap().is_some());
        let config = Config::load(&system, None).unwrap();
        let defaults = defaults_from(&config);
        assert_eq!(defaults.station.database.as_deref(), Some("postgres://keyfill@db/keyfill"));
        assert_eq!((defaults.label.size.as_str(), defaults.label.printer_queue.as_str()), ("62x29", "QL820"));
        assert_eq!(defaults.link.kind, LinkKind::Pcsc);
        assert_eq!(defaults.export.c2_url, "https://c2:8888");
        assert_eq!(defaults.label.dpi, 300, "what the files leave out keeps its default");
        // No saved settings: the files' values. Saved ones win for what they hold, only.
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load_over(&path, &defaults).unwrap(), defaults);
        std::fs::write(&path, r#"{"label": {"size": "100x50"}}"#).unwrap();
        let loaded = load_over(&path, &defaults).unwrap();
        assert_eq!(loaded.label.size, "100x50");
        assert_eq!(loaded.label.printer_queue, "QL820");
        assert_eq!(loaded.link.kind, LinkKind::Pcsc);
    }

    #[test]
    fn gui_settings_round_trip_and_missing_file_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(FILE_NAME);
        assert_eq!(load(&path).unwrap(), Settings::default());
        let mut settings = Settings::default();
        settings.link.serial_port = "/dev/ttyUSB3".into();
        settings.lock.after_idle_minutes = 3;
        settings.provision.auto_mode = true;
        save(&path, &settings).unwrap();
        assert_eq!(load(&path).unwrap(), settings);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn gui_settings_keep_defaults_for_fields_an_older_file_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, r#"{"lock": {"after_idle_minutes": 5}}"#).unwrap();
        let settings = load(&path).unwrap();
        assert_eq!(settings.lock.after_idle_minutes, 5);
        assert_eq!(settings.link.baud, 115_200);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(load(&path), Err(SettingsError::Parse { .. })));
    }

    #[test]
    fn gui_settings_link_target_needs_a_serial_port() {
        let mut link = LinkSettings::default();
        assert_eq!(link.target(), None);
        link.serial_port = " /dev/ttyACM0 ".into();
        assert_eq!(link.target(), Some(LinkTarget::Serial { path: "/dev/ttyACM0".into(), baud: 115_200 }));
        link.kind = LinkKind::Pcsc;
        assert_eq!(link.target(), Some(LinkTarget::Pcsc { reader: None }));
    }
}
