//! Finding and opening the links a device may be on, for an operator who picks one from a list
//! rather than typing a port: serial ports, PC/SC readers, and BLE peripherals advertising the
//! Keyfill service. The desktop app calls these; each detector reports why it found nothing
//! (no pcscd, no Bluetooth adapter) instead of an empty list, so the operator knows what to fix.

use crate::link::btle::open_ble_on;
use crate::link::{AnyLink, LinkError, list_readers, open_pcsc, open_serial};
use btleplug::api::{Central, Manager as _, Peripheral as _, ScanFilter};
use btleplug::platform::Manager;
use keyfill_formats::ble::SERVICE_UUID;
use keyfill_formats::qr::OnboardingPayload;
use std::path::PathBuf;
use std::time::Duration;

/// How long D-Bus and BlueZ may take to answer before Bluetooth counts as unavailable.
const BLUETOOTH_ANSWER: Duration = Duration::from_secs(5);

/// A serial port found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPortInfo {
    pub path: String,
    /// What the port is, for the operator: "USB 0403:6001 FTDI FT232R", "built-in".
    pub description: String,
    /// USB adapters and USB devices (CDC ACM) are where devices on a bench usually are.
    pub usb: bool,
}

/// A BLE peripheral advertising the Keyfill GATT service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlePeripheral {
    pub address: String,
    pub name: Option<String>,
    pub rssi: Option<i16>,
}

/// Everything the detectors found, each with its own reason when it found nothing.
#[derive(Debug)]
pub struct DetectedLinks {
    pub serial: Result<Vec<SerialPortInfo>, LinkError>,
    pub pcsc: Result<Vec<String>, LinkError>,
    pub ble: Result<Vec<BlePeripheral>, LinkError>,
}

/// Runs the three detectors concurrently; BLE scans for `ble_scan`.
pub async fn detect_links(ble_scan: Duration) -> DetectedLinks {
    let serial = async {
        tokio::task::spawn_blocking(serial_ports).await.unwrap_or_else(|e| Err(LinkError::Io(std::io::Error::other(e))))
    };
    let pcsc = pcsc_readers();
    let ble = ble_peripherals(ble_scan);
    let (serial, pcsc, ble) = tokio::join!(serial, pcsc, ble);
    DetectedLinks { serial, pcsc, ble }
}

/// The serial ports udev knows, USB ones first. Blocking (udev enumeration).
pub fn serial_ports() -> Result<Vec<SerialPortInfo>, LinkError> {
    let ports = tokio_serial::available_ports()
        .map_err(|e| LinkError::Io(std::io::Error::other(format!("cannot list serial ports: {e}"))))?;
    let mut found: Vec<SerialPortInfo> = ports
        .into_iter()
        .map(|port| {
            let (description, usb) = match &port.port_type {
                tokio_serial::SerialPortType::UsbPort(usb) => {
                    let product = [usb.manufacturer.as_deref(), usb.product.as_deref()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(" ");
                    (format!("USB {:04x}:{:04x} {product}", usb.vid, usb.pid).trim_end().to_owned(), true)
                }
                tokio_serial::SerialPortType::PciPort => ("built-in (PCI)".to_owned(), false),
                tokio_serial::SerialPortType::BluetoothPort => ("Bluetooth serial".to_owned(), false),
                tokio_serial::SerialPortType::Unknown => ("serial port".to_owned(), false),
            };
            SerialPortInfo { path: port.port_name, description, usb }
        })
        .collect();
    found.sort_by(|a, b| b.usb.cmp(&a.usb).then_with(|| natural_port_order(&a.path, &b.path)));
    Ok(found)
}

/// `/dev/ttyS2` before `/dev/ttyS10`.
fn natural_port_order(a: &str, b: &str) -> std::cmp::Ordering {
    let split = |path: &str| {
        let digits = path.len() - path.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (stem, number) = path.split_at(path.len() - digits);
        (stem.to_owned(), number.parse::<u64>().unwrap_or(0))
    };
    split(a).cmp(&split(b))
}

/// The PC/SC readers pcscd offers (PC/SC calls block, so this runs on the blocking pool).
pub async fn pcsc_readers() -> Result<Vec<String>, LinkError> {
    tokio::task::spawn_blocking(list_readers).await.unwrap_or_else(|e| Err(LinkError::Io(std::io::Error::other(e))))
}

/// Scans for `scan` on the first Bluetooth adapter and lists the peripherals that advertise the
/// Keyfill service. [`LinkError::NoBluetoothAdapter`] when there is no adapter, or no BlueZ.
pub async fn ble_peripherals(scan: Duration) -> Result<Vec<BlePeripheral>, LinkError> {
    let unavailable =
        |what: &str, error: btleplug::Error| LinkError::Io(std::io::Error::other(format!("{what}: {error}")));
    let adapters = async {
        let manager = Manager::new().await.map_err(|e| unavailable("BlueZ", e))?;
        manager.adapters().await.map_err(|e| unavailable("Bluetooth adapters", e))
    };
    let adapter = match tokio::time::timeout(BLUETOOTH_ANSWER, adapters).await {
        Ok(Ok(adapters)) => adapters.into_iter().next().ok_or(LinkError::NoBluetoothAdapter)?,
        // No system bus or no bluetoothd: for the operator, there is no adapter to use.
        Ok(Err(_)) | Err(_) => return Err(LinkError::NoBluetoothAdapter),
    };
    let service = SERVICE_UUID.parse().map_err(|_| LinkError::BleNoService(SERVICE_UUID.to_owned()))?;
    adapter.start_scan(ScanFilter { services: vec![service] }).await.map_err(|e| unavailable("BLE scan", e))?;
    tokio::time::sleep(scan).await;
    let peripherals = adapter.peripherals().await.map_err(|e| unavailable("BLE peripherals", e));
    let _ = adapter.stop_scan().await;
    let mut found = Vec::new();
    for peripheral in peripherals? {
        let Ok(Some(properties)) = peripheral.properties().await else { continue };
        if properties.services.contains(&service) {
            found.push(BlePeripheral {
                address: properties.address.to_string(),
                name: properties.local_name,
                rssi: properties.rssi,
            });
        }
    }
    // Strongest signal first: on a bench, the device in front of the operator.
    found.sort_by_key(|p| std::cmp::Reverse(p.rssi.unwrap_or(i16::MIN)));
    Ok(found)
}

/// The link an operator chose for a provisioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTarget {
    Serial {
        path: PathBuf,
        baud: u32,
    },
    /// A reader by its full name or a unique part of it; `None`: the first reader with a card.
    Pcsc {
        reader: Option<String>,
    },
    /// An address or local name; `None`: the address or name on the device's label. On the
    /// adapter named (`hci1`), else the first.
    Ble {
        target: Option<String>,
        adapter: Option<String>,
    },
}

impl LinkTarget {
    /// For the operator: "/dev/ttyUSB0", "PC/SC reader ACS ACR122U", "BLE sensor-0042".
    pub fn describe(&self) -> String {
        match self {
            LinkTarget::Serial { path, .. } => path.display().to_string(),
            LinkTarget::Pcsc { reader: Some(reader) } => format!("PC/SC reader {reader}"),
            LinkTarget::Pcsc { reader: None } => "the first PC/SC reader with a card".to_owned(),
            LinkTarget::Ble { target, adapter } => {
                let target = target.as_deref().unwrap_or("(address or name from the label)");
                match adapter {
                    Some(adapter) => format!("BLE {target} on {adapter}"),
                    None => format!("BLE {target}"),
                }
            }
        }
    }

    /// Opens the link for `device`; a card or a BLE advertisement is awaited up to `wait`.
    pub async fn open(&self, wait: Duration, device: &OnboardingPayload) -> Result<AnyLink, LinkError> {
        self.open_or(wait, &ble_target(device)).await
    }

    /// Opens the link; a BLE link that names no device looks for `ble_fallback` (an address or
    /// an advertised name).
    pub async fn open_or(&self, wait: Duration, ble_fallback: &str) -> Result<AnyLink, LinkError> {
        Ok(match self {
            LinkTarget::Serial { path, baud } => AnyLink::Serial(open_serial(path, *baud)?),
            LinkTarget::Pcsc { reader } => AnyLink::Pcsc(open_pcsc(reader.clone(), wait).await?),
            LinkTarget::Ble { target, adapter } => {
                let target = target.as_deref().unwrap_or(ble_fallback);
                AnyLink::Ble(open_ble_on(adapter.as_deref(), target, wait).await?)
            }
        })
    }
}

/// The BLE address, else the advertised name, from a label; else the device name.
pub fn ble_target(device: &OnboardingPayload) -> String {
    match (&device.hints.ble_address, &device.hints.ble_name) {
        (Some(address), _) => address.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"),
        (None, Some(name)) => name.clone(),
        (None, None) => device.name.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_formats::qr::DeviceCredential;

    #[test]
    fn detect_orders_ports_naturally() {
        let mut paths = vec!["/dev/ttyS10", "/dev/ttyS2", "/dev/ttyACM0", "/dev/ttyS1"];
        paths.sort_by(|a, b| natural_port_order(a, b));
        assert_eq!(paths, ["/dev/ttyACM0", "/dev/ttyS1", "/dev/ttyS2", "/dev/ttyS10"]);
    }

    #[test]
    fn detect_ble_target_prefers_the_labels_address_then_its_name() {
        let mut payload = OnboardingPayload::new(
            "dev-1".parse().expect("valid"),
            "SN-1",
            DeviceCredential::Identity { public_key: [1; 32] },
        );
        assert_eq!(ble_target(&payload), "dev-1");
        payload.hints.ble_name = Some("KF-dev-1".into());
        assert_eq!(ble_target(&payload), "KF-dev-1");
        payload.hints.ble_address = Some([0xAA, 0xBB, 0xCC, 0x01, 0x02, 0x03]);
        assert_eq!(ble_target(&payload), "AA:BB:CC:01:02:03");
    }

    #[test]
    fn detect_describes_links_for_the_operator() {
        let serial = LinkTarget::Serial { path: "/dev/ttyUSB0".into(), baud: 115_200 };
        assert_eq!(serial.describe(), "/dev/ttyUSB0");
        assert_eq!(LinkTarget::Pcsc { reader: None }.describe(), "the first PC/SC reader with a card");
    }

    #[tokio::test]
    async fn detect_reports_every_kind_of_link_without_hanging() {
        // Whatever this machine has, every detector answers within its bound.
        let detected = tokio::time::timeout(Duration::from_secs(20), detect_links(Duration::from_millis(100))).await;
        assert!(detected.is_ok(), "link detection hung");
    }
}
