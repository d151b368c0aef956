//! Link auto-detection.

use crate::bridge::EventSender;
use crate::messages::{Event, LinkReport};
use crate::problem::Problem;
use keyfill_station::detect::{LinkTarget, detect_links};
use keyfill_station::link::LinkError;
use std::time::Duration;

const BLE_SCAN: Duration = Duration::from_secs(3);

fn problem(error: &LinkError, kind: LinkTarget) -> Problem {
    match error {
        LinkError::NoBluetoothAdapter => {
            Problem::new("BLE: no Bluetooth adapter", "Plug in a Bluetooth adapter and check that bluetoothd runs.")
        }
        LinkError::Pcsc { .. } => Problem::new(
            "PC/SC: pcscd is not running",
            "Start pcscd (systemctl start pcscd) and connect the reader, then detect again.",
        ),
        other => Problem::link(other, &kind),
    }
}

pub async fn detect(events: EventSender) {
    let found = detect_links(BLE_SCAN).await;
    let report = LinkReport {
        serial: found.serial.map_err(|e| problem(&e, LinkTarget::Serial { path: "serial ports".into(), baud: 0 })),
        pcsc: found.pcsc.map_err(|e| problem(&e, LinkTarget::Pcsc { reader: None })),
        ble: found.ble.map_err(|e| problem(&e, LinkTarget::Ble { target: None, adapter: None })),
    };
    events.send(Event::Links(report));
}
