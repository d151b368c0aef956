//! Operator-facing output: tables for people, stable JSON for scripts (docs/cli.md). Every text
//! from outside (names, serial numbers, models, reasons, event details) is printed through
//! [`keyfill_formats::printable`]; JSON is escaped by its encoder.

use keyfill_formats::printable;
use keyfill_station::db::devices::Device;

pub use keyfill_station::time::{parse_utc, rfc3339};
pub use keyfill_station::view::DeviceJson;

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
