//! The station's BLE adapter: btleplug (BlueZ over D-Bus on Linux) as the GATT client behind
//! [`GattChannel`]. Finds the device by the address or local name from its label, connects,
//! finds the Keyfill service, subscribes to the from-device characteristic.

use super::LinkError;
use super::ble::{BleLink, GattChannel};
use btleplug::api::{Central, CentralEvent, Characteristic, Manager as _, Peripheral as _, ScanFilter, WriteType};
use btleplug::platform::{Adapter, Manager, Peripheral};
use keyfill_formats::ble::{FROM_DEVICE_UUID, MIN_MTU, SERVICE_UUID, TO_DEVICE_UUID};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tracing::{debug, info};
use uuid::Uuid;

/// Bound on notifications waiting to be read; BLE delivers a few hundred per second at most.
const NOTIFICATION_BACKLOG: usize = 1024;

fn ble_error(context: &str, error: btleplug::Error) -> LinkError {
    LinkError::Io(std::io::Error::other(format!("{context}: {error}")))
}

fn parse_uuid(text: &str) -> Result<Uuid, LinkError> {
    text.parse().map_err(|_| LinkError::Io(std::io::Error::other(format!("bad UUID {text}"))))
}

/// A connected Keyfill peripheral.
pub struct BtleplugGatt {
    peripheral: Peripheral,
    to_device: Characteristic,
    notifications: mpsc::Receiver<Vec<u8>>,
    forwarder: tokio::task::JoinHandle<()>,
    address: String,
}

impl std::fmt::Debug for BtleplugGatt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtleplugGatt").field("address", &self.address).finish_non_exhaustive()
    }
}

impl Drop for BtleplugGatt {
    fn drop(&mut self) {
        self.forwarder.abort();
        let peripheral = self.peripheral.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = peripheral.disconnect().await;
            });
        }
    }
}

impl GattChannel for BtleplugGatt {
    fn mtu(&self) -> usize {
        // btleplug does not report the negotiated MTU on every platform: fragment for the
        // smallest one, which every peripheral accepts.
        MIN_MTU
    }

    async fn write(&mut self, fragment: &[u8]) -> Result<(), LinkError> {
        self.peripheral
            .write(&self.to_device, fragment, WriteType::WithoutResponse)
            .await
            .map_err(|e| ble_error("write", e))
    }

    async fn notification(&mut self) -> Result<Vec<u8>, LinkError> {
        self.notifications.recv().await.ok_or_else(|| LinkError::BleDisconnected(self.address.clone()))
    }
}

async fn matches(peripheral: &Peripheral, target: &str) -> bool {
    if peripheral.address().to_string().eq_ignore_ascii_case(target) {
        return true;
    }
    matches!(peripheral.properties().await, Ok(Some(properties)) if properties.local_name.as_deref() == Some(target))
}

async fn find(adapter: &Adapter, target: &str, scan: Duration) -> Result<Peripheral, LinkError> {
    let mut events = adapter.events().await.map_err(|e| ble_error("events", e))?;
    adapter.start_scan(ScanFilter::default()).await.map_err(|e| ble_error("scan", e))?;
    let deadline = Instant::now() + scan;
    let found = async {
        for peripheral in adapter.peripherals().await.map_err(|e| ble_error("peripherals", e))? {
            if matches(&peripheral, target).await {
                return Ok(peripheral);
            }
        }
        loop {
            let event = tokio::time::timeout_at(deadline.into(), events.next())
                .await
                .map_err(|_| LinkError::BleNotFound { target: target.to_owned(), seconds: scan.as_secs() })?;
            match event {
                Some(CentralEvent::DeviceDiscovered(id) | CentralEvent::DeviceUpdated(id)) => {
                    let peripheral = adapter.peripheral(&id).await.map_err(|e| ble_error("peripheral", e))?;
                    if matches(&peripheral, target).await {
                        return Ok(peripheral);
                    }
                }
                Some(_) => {}
                None => return Err(LinkError::BleNotFound { target: target.to_owned(), seconds: scan.as_secs() }),
            }
        }
    }
    .await;
    let _ = adapter.stop_scan().await;
    found
}

/// Scans up to `scan` for the device advertising as `target` (address or local name),
/// connects and returns the link.
pub async fn open_ble(target: &str, scan: Duration) -> Result<BleLink<BtleplugGatt>, LinkError> {
    open_ble_on(None, target, scan).await
}

/// [`open_ble`] on the adapter named `adapter` (`hci1`), else the first one.
pub async fn open_ble_on(
    adapter: Option<&str>,
    target: &str,
    scan: Duration,
) -> Result<BleLink<BtleplugGatt>, LinkError> {
    let manager = Manager::new().await.map_err(|e| ble_error("BlueZ", e))?;
    let adapters = manager.adapters().await.map_err(|e| ble_error("adapters", e))?;
    let adapter = match adapter {
        None => adapters.into_iter().next().ok_or(LinkError::NoBluetoothAdapter)?,
        Some(wanted) => {
            let mut names = Vec::new();
            let mut chosen = None;
            for candidate in adapters {
                // BlueZ describes an adapter as "hci0 (usb:v1D6Bp0246d0540)".
                let info = candidate.adapter_info().await.unwrap_or_default();
                let name = info.split_whitespace().next().unwrap_or_default().to_owned();
                if name == wanted && chosen.is_none() {
                    chosen = Some(candidate);
                }
                names.push(name);
            }
            chosen.ok_or_else(|| LinkError::NoSuchBluetoothAdapter { wanted: wanted.to_owned(), present: names })?
        }
    };
    let peripheral = find(&adapter, target, scan).await?;
    let address = peripheral.address().to_string();
    info!(%address, %target, "connecting");
    peripheral.connect().await.map_err(|e| ble_error("connect", e))?;
    peripheral.discover_services().await.map_err(|e| ble_error("discover services", e))?;
    let service = parse_uuid(SERVICE_UUID)?;
    let to_uuid = parse_uuid(TO_DEVICE_UUID)?;
    let from_uuid = parse_uuid(FROM_DEVICE_UUID)?;
    let characteristics = peripheral.characteristics();
    let find_characteristic = |uuid: Uuid| {
        characteristics
            .iter()
            .find(|c| c.uuid == uuid && c.service_uuid == service)
            .cloned()
            .ok_or_else(|| LinkError::BleNoService(address.clone()))
    };
    let to_device = find_characteristic(to_uuid)?;
    let from_device = find_characteristic(from_uuid)?;
    let mut stream = peripheral.notifications().await.map_err(|e| ble_error("notifications", e))?;
    peripheral.subscribe(&from_device).await.map_err(|e| ble_error("subscribe", e))?;
    let (sender, notifications) = mpsc::channel(NOTIFICATION_BACKLOG);
    let forwarder = tokio::spawn(async move {
        while let Some(notification) = stream.next().await {
            if notification.uuid == from_uuid && sender.send(notification.value).await.is_err() {
                break;
            }
        }
        debug!("notification stream ended");
    });
    let gatt = BtleplugGatt { peripheral, to_device, notifications, forwarder, address: address.clone() };
    BleLink::new(gatt, address)
}
