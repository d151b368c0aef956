//! Operator-facing output: tables for people, stable JSON for scripts (docs/cli.md). Every text
//! from outside (names, serial numbers, models, reasons, event details) is printed through
//! [`keyfill_formats::printable`]; JSON is escaped by its encoder.

use keyfill_formats::printable;
use keyfill_station::db::devices::Device;
use keyfill_station::db::events::Event;
use keyfill_station::db::exports::StoredExport;
use serde::Serialize;

pub use keyfill_station::time::{parse_utc, rfc3339};

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
    /// The work order the device was keyed under, if any.
    pub order: Option<&'a str>,
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
            order: d.order_id.as_deref(),
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

/// Devices as a table; text from outside (names, links) goes through [`printable`].
pub fn print_device_table(devices: &[Device]) {
    println!("{:<32}  {:<24}  {:<11}  {:<8}  {:<24}", "ID", "NAME", "STATE", "LINK", "PROVISIONED");
    for d in devices {
        println!(
            "{:<32}  {:<24}  {:<11}  {:<8}  {:<24}",
            printable(&d.id),
            printable(&d.name),
            d.state.as_str(),
            printable(d.transport.as_deref().unwrap_or("-")),
            d.provisioned_at.map(rfc3339).unwrap_or_else(|| "-".into())
        );
    }
}
