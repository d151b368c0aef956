//! Operator-facing output: tables for people, stable JSON for scripts (docs/cli.md).

use keyfill_station::db::devices::Device;
use keyfill_station::db::events::Event;
use keyfill_station::db::exports::StoredExport;
use serde::Serialize;

/// RFC 3339 UTC time of Unix milliseconds, e.g. `2026-11-24T21:04:05.123Z`.
pub fn rfc3339(millis: i64) -> String {
    let seconds = millis.div_euclid(1000);
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        millis.rem_euclid(1000)
    )
}

/// Unix milliseconds of `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
pub fn parse_utc(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.strip_suffix('Z')?)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (parts.next()??, parts.next()??, parts.next()??);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || !(1970..=9999).contains(&year) {
        return None;
    }
    let (mut seconds, mut millis) = (0, 0);
    if let Some(time) = time {
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let mut fields = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
        let (hour, minute, second) = (fields.next()??, fields.next()??, fields.next()??);
        if hour > 23
            || minute > 59
            || second > 60
            || fraction.len() > 3
            || !fraction.chars().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        seconds = hour * 3600 + minute * 60 + second;
        millis = if fraction.is_empty() { 0 } else { format!("{fraction:0<3}").parse().ok()? };
    }
    // Days since 1970-01-01 from a civil date (H. Hinnant's algorithm), the inverse of rfc3339.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + seconds) * 1000 + millis)
}

/// The documented JSON shape of a device. Never contains key material.
#[derive(Serialize)]
pub struct DeviceJson<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub serial_number: &'a str,
    pub credential_mode: &'a str,
    pub model: Option<&'a str>,
    pub state: &'a str,
    pub transport: Option<&'a str>,
    pub port: Option<&'a str>,
    pub key_id: Option<&'a str>,
    pub failure: Option<&'a str>,
    pub created_at: String,
    pub updated_at: String,
    pub provisioned_at: Option<String>,
    /// Key rotation: null, rotation_pending, active or rotation_failed.
    pub rotation: Option<&'a str>,
    pub rotation_attempts: Option<i64>,
}

impl<'a> From<&'a Device> for DeviceJson<'a> {
    fn from(d: &'a Device) -> Self {
        DeviceJson {
            id: &d.id,
            name: &d.name,
            serial_number: &d.serial_number,
            credential_mode: &d.credential_mode,
            model: d.model.as_deref(),
            state: d.state.as_str(),
            transport: d.transport.as_deref(),
            port: d.port.as_deref(),
            key_id: d.key_id.as_deref(),
            failure: d.failure.as_deref(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
            provisioned_at: d.provisioned_at.map(rfc3339),
            rotation: d.rotation.as_deref(),
            rotation_attempts: d.rotation_attempts,
        }
    }
}

#[derive(Serialize)]
pub struct EventJson<'a> {
    pub at: String,
    pub kind: &'a str,
    pub detail: &'a str,
    pub operator: &'a str,
    pub station_id: &'a str,
}

impl<'a> From<&'a Event> for EventJson<'a> {
    fn from(e: &'a Event) -> Self {
        EventJson {
            at: rfc3339(e.at),
            kind: &e.kind,
            detail: &e.detail,
            operator: &e.operator,
            station_id: &e.station_id,
        }
    }
}

/// One export of a device's key to a C2 server, newest first in `devices show --json`.
#[derive(Serialize)]
pub struct ExportJson<'a> {
    pub at: String,
    pub target: &'a str,
    pub run_id: &'a str,
    pub key_id: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub attempts: i64,
}

impl<'a> From<&'a StoredExport> for ExportJson<'a> {
    fn from(e: &'a StoredExport) -> Self {
        ExportJson {
            at: rfc3339(e.at),
            target: &e.target,
            run_id: &e.run_id,
            key_id: e.key_id.as_deref(),
            outcome: &e.outcome,
            reason: e.reason.as_deref(),
            attempts: e.attempts,
        }
    }
}

pub fn print_device_table(devices: &[Device]) {
    println!("{:<32}  {:<24}  {:<11}  {:<8}  {:<24}", "ID", "NAME", "STATE", "LINK", "PROVISIONED");
    for d in devices {
        println!(
            "{:<32}  {:<24}  {:<11}  {:<8}  {:<24}",
            d.id,
            d.name,
            d.state.as_str(),
            d.transport.as_deref().unwrap_or("-"),
            d.provisioned_at.map(rfc3339).unwrap_or_else(|| "-".into())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_utc, rfc3339};

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_554_245_123), "2026-11-24T21:04:05.123Z");
    }

    #[test]
    fn parses_what_it_prints() {
        for millis in [0, 951_782_400_000, 1_795_554_245_123, 1_795_554_245_000] {
            assert_eq!(parse_utc(&rfc3339(millis)), Some(millis));
        }
        assert_eq!(parse_utc("2026-11-24"), Some(1_795_478_400_000));
        assert_eq!(parse_utc("2026-11-24T21:04:05Z"), Some(1_795_554_245_000));
        for bad in ["", "2026-13-01", "2026-11-24T21:04:05", "yesterday", "2026-11-24T25:00:00Z"] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
