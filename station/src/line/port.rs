//! From a lane's pinned port to the link a job opens. A USB adapter is looked up through udev for
//! every device, so an adapter plugged into another socket (another `/dev/ttyUSBn`) is followed.

use super::config::{LanePort, UsbSerialId};
use crate::detect::LinkTarget;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortError {
    #[error("the lane's USB serial adapter {wanted} is not plugged in (USB serial adapters present: {present})")]
    UsbAbsent { wanted: String, present: String },
    #[error("{count} USB serial adapters match {wanted}; name the one of this lane by its serial number")]
    UsbAmbiguous { wanted: String, count: usize },
    #[error("cannot list the serial ports: {0}")]
    Enumerate(String),
}

impl PortError {
    pub fn advice(&self) -> &'static str {
        match self {
            PortError::UsbAbsent { .. } => {
                "Plug the lane's adapter in (udev shows it at once), or correct its VID:PID:SERIAL in line.toml \
                 (`udevadm info /dev/ttyUSB0` shows an adapter's ids)."
            }
            PortError::UsbAmbiguous { .. } => "Write the lane's adapter as VID:PID:SERIAL in line.toml.",
            PortError::Enumerate(_) => "Check that udev runs and /sys is mounted.",
        }
    }
}

/// A USB serial port as udev describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbPort {
    pub path: PathBuf,
    pub vid: u16,
    pub pid: u16,
    pub serial: Option<String>,
}

/// The port of `wanted` among `ports`.
pub fn pick_usb(ports: &[UsbPort], wanted: &UsbSerialId) -> Result<PathBuf, PortError> {
    let matching: Vec<&UsbPort> = ports
        .iter()
        .filter(|port| port.vid == wanted.vid && port.pid == wanted.pid)
        .filter(|port| wanted.serial.is_none() || port.serial == wanted.serial)
        .collect();
    match matching.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => Err(PortError::UsbAbsent {
            wanted: wanted.to_string(),
            present: if ports.is_empty() {
                "none".into()
            } else {
                ports
                    .iter()
                    .map(|p| {
                        let id = UsbSerialId { vid: p.vid, pid: p.pid, serial: p.serial.clone() };
                        keyfill_formats::printable(&format!("{id} at {}", p.path.display())).into_owned()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        }),
        many => Err(PortError::UsbAmbiguous { wanted: wanted.to_string(), count: many.len() }),
    }
}

/// The USB serial ports udev knows. Blocking.
pub fn usb_ports() -> Result<Vec<UsbPort>, PortError> {
    let ports = tokio_serial::available_ports().map_err(|e| PortError::Enumerate(e.to_string()))?;
    Ok(ports
        .into_iter()
        .filter_map(|port| match port.port_type {
            tokio_serial::SerialPortType::UsbPort(usb) => Some(UsbPort {
                path: PathBuf::from(port.port_name),
                vid: usb.vid,
                pid: usb.pid,
                serial: usb.serial_number,
            }),
            _ => None,
        })
        .collect())
}

/// The link for the lane's next device.
pub async fn resolve(port: &LanePort, baud: u32) -> Result<LinkTarget, PortError> {
    Ok(match port {
        LanePort::Serial(path) => LinkTarget::Serial { path: path.clone(), baud },
        LanePort::Usb(wanted) => {
            let ports =
                tokio::task::spawn_blocking(usb_ports).await.map_err(|e| PortError::Enumerate(e.to_string()))??;
            LinkTarget::Serial { path: pick_usb(&ports, wanted)?, baud }
        }
        LanePort::Pcsc(reader) => LinkTarget::Pcsc { reader: Some(reader.clone()) },
        LanePort::Ble { adapter } => LinkTarget::Ble { target: None, adapter: Some(adapter.clone()) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(path: &str, vid: u16, pid: u16, serial: Option<&str>) -> UsbPort {
        UsbPort { path: path.into(), vid, pid, serial: serial.map(str::to_owned) }
    }

    #[test]
    fn line_usb_adapter_is_found_by_ids_and_serial_number_wherever_it_is_plugged() {
        let ports = [
            port("/dev/ttyUSB0", 0x0403, 0x6001, Some("A1")),
            port("/dev/ttyUSB3", 0x0403, 0x6001, Some("B2")),
            port("/dev/ttyACM0", 0x10c4, 0xea60, None),
        ];
        let wanted = |text: &str| UsbSerialId::parse(text).expect("valid");
        assert_eq!(pick_usb(&ports, &wanted("0403:6001:B2")), Ok("/dev/ttyUSB3".into()));
        assert_eq!(pick_usb(&ports, &wanted("10c4:ea60")), Ok("/dev/ttyACM0".into()));
        assert_eq!(
            pick_usb(&ports, &wanted("0403:6001")),
            Err(PortError::UsbAmbiguous { wanted: "USB 0403:6001".into(), count: 2 })
        );
        let absent = pick_usb(&ports, &wanted("0403:6001:C3")).expect_err("absent").to_string();
        assert!(absent.contains("USB 0403:6001 serial C3 is not plugged in"), "{absent}");
        assert!(absent.contains("USB 0403:6001 serial B2 at /dev/ttyUSB3"), "{absent}");
        let none = pick_usb(&[], &wanted("0403:6001")).expect_err("absent").to_string();
        assert!(none.ends_with("present: none)"), "{none}");
    }

    #[test]
    fn line_usb_serial_numbers_are_printed_escaped() {
        let ports = [port("/dev/ttyUSB0", 1, 2, Some("evil\u{1b}[2J"))];
        let error = pick_usb(&ports, &UsbSerialId::parse("0001:0003").expect("valid")).expect_err("absent");
        assert!(!error.to_string().contains('\u{1b}'), "{error}");
    }
}
