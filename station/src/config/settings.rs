//! Every key a configuration file may set: its kind of value, the environment variable that
//! overrides it, and what it means. `keyfill config show` lists them in this order.

use super::kind::Kind;

/// One setting of `keyfill.toml`.
#[derive(Debug)]
pub struct Setting {
    /// Dotted key: `c2.url` is `url` in the `[c2]` table.
    pub key: &'static str,
    pub kind: Kind,
    /// The environment variable that overrides the files (and a flag overrides it).
    pub env: Option<&'static str>,
    pub about: &'static str,
}

const fn setting(key: &'static str, kind: Kind, env: Option<&'static str>, about: &'static str) -> Setting {
    Setting { key, kind, env, about }
}

/// Seconds-valued settings are bounded like their flags.
const TIMEOUT: Kind = Kind::Integer { min: 1, max: 600 };

pub const SETTINGS: &[Setting] = &[
    setting("home", Kind::Path, Some("KEYFILL_HOME"), "station home directory"),
    setting("db", Kind::DatabaseUrl, Some("KEYFILL_DB"), "database URL: sqlite://FILE or postgres://…"),
    setting("operator", Kind::Text, Some("KEYFILL_OPERATOR"), "operator name in the event log (no named operators)"),
    setting("card_module", Kind::Path, Some("KEYFILL_CARD_MODULE"), "PKCS#11 module reading operators' cards"),
    setting("log_format", Kind::Choice(&["text", "json"]), Some("KEYFILL_LOG_FORMAT"), "log format on stderr"),
    setting("reply_timeout", TIMEOUT, Some("KEYFILL_REPLY_TIMEOUT"), "seconds per handshake reply"),
    setting("confirm_timeout", TIMEOUT, Some("KEYFILL_CONFIRM_TIMEOUT"), "seconds for the key confirmation"),
    setting(
        "lease_secs",
        Kind::Integer { min: crate::lease::MIN_LEASE.as_secs() as i64, max: crate::lease::MAX_LEASE.as_secs() as i64 },
        Some("KEYFILL_LEASE_SECS"),
        "seconds a device lease lasts",
    ),
    setting("link.baud", Kind::Integer { min: 1_200, max: 4_000_000 }, Some("KEYFILL_BAUD"), "serial line speed"),
    setting("link.card_wait", TIMEOUT, Some("KEYFILL_CARD_WAIT"), "seconds to wait for a card or BLE device"),
    setting("provision.require_order", Kind::Bool, Some("KEYFILL_REQUIRE_ORDER"), "refuse devices on no open order"),
    setting("mqtt.broker", Kind::Url(&["mqtt", "mqtts"]), Some("KEYFILL_BROKER"), "MQTT broker for rotations"),
    setting(
        "mqtt.inflight",
        Kind::Integer { min: 1, max: 65_535 },
        Some("KEYFILL_MQTT_INFLIGHT"),
        "QoS 2 commands in flight",
    ),
    setting(
        "rotation.window",
        Kind::Integer { min: 1, max: 100_000 },
        Some("KEYFILL_ROTATION_WINDOW"),
        "rotations under way at once",
    ),
    setting("c2.url", Kind::Url(&["https"]), Some("KEYFILL_C2_URL"), "C2's HTTPS gateway"),
    setting("c2.ca", Kind::Path, Some("KEYFILL_C2_CA"), "PEM file of the CA that signed C2's certificate"),
    setting("c2.timeout", TIMEOUT, Some("KEYFILL_C2_TIMEOUT"), "seconds per request to C2"),
    setting(
        "c2.concurrency",
        Kind::Integer { min: 1, max: 256 },
        Some("KEYFILL_C2_CONCURRENCY"),
        "requests to C2 at once",
    ),
    setting(
        "c2.max_attempts",
        Kind::Integer { min: 1, max: 100 },
        Some("KEYFILL_C2_MAX_ATTEMPTS"),
        "attempts per C2 request",
    ),
    setting("api.listen", Kind::SocketAddr, Some("KEYFILL_API_LISTEN"), "address and port of `keyfill serve`"),
    setting(
        "api.tls_cert",
        Kind::Path,
        Some("KEYFILL_API_TLS_CERT"),
        "certificate chain (PEM) `keyfill serve` serves HTTPS with",
    ),
    setting("api.tls_key", Kind::Path, Some("KEYFILL_API_TLS_KEY"), "private key (PEM) of api.tls_cert"),
    setting("label.size", Kind::LabelSize, Some("KEYFILL_LABEL_SIZE"), "label size in mm, WIDTHxHEIGHT"),
    setting("label.dpi", Kind::Integer { min: 100, max: 1_200 }, Some("KEYFILL_LABEL_DPI"), "label printer resolution"),
    setting("label.printer_queue", Kind::Text, None, "CUPS queue the app prints labels to"),
    setting("label.folder", Kind::Path, None, "folder the app saves labels in"),
    setting("gui.link", Kind::Choice(&["serial", "pcsc", "ble"]), None, "the app's link kind"),
    setting("gui.serial_port", Kind::Path, None, "the app's serial port"),
    setting("gui.pcsc_reader", Kind::Text, None, "the app's PC/SC reader (empty: any)"),
];

/// The setting of a dotted key.
pub fn setting_of(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|setting| setting.key == key)
}

/// The tables of the file (`[c2]`, `[label]`, …).
pub fn tables() -> impl Iterator<Item = &'static str> {
    let mut seen: Vec<&'static str> = Vec::new();
    SETTINGS.iter().filter_map(|s| s.key.split_once('.').map(|(table, _)| table)).filter(move |table| {
        let new = !seen.contains(table);
        if new {
            seen.push(table);
        }
        new
    })
}
