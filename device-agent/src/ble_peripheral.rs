//! The BLE peripheral adapter for Linux devices: BlueZ through bluer. Registers the Keyfill
//! GATT service, advertises it, and serves each central that connects with
//! [`crate::ble::serve_connection`]. Thin on purpose: everything testable lives in the core and
//! the BLE framing.

use crate::ble::{FragmentChannel, serve_connection};
use crate::core::AgentCore;
use crate::driver::FaultInjection;
use crate::keystore::Keystore;
use bluer::adv::Advertisement;
use bluer::gatt::local::{
    Application, Characteristic, CharacteristicControlEvent, CharacteristicNotify, CharacteristicNotifyMethod,
    CharacteristicWrite, CharacteristicWriteMethod, Service, characteristic_control, service_control,
};
use bluer::gatt::{CharacteristicReader, CharacteristicWriter};
use keyfill_formats::ble::{FROM_DEVICE_UUID, MIN_MTU, SERVICE_UUID, TO_DEVICE_UUID};
use tokio_stream::StreamExt;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeripheralError {
    #[error("BlueZ: {0}")]
    Bluez(#[from] bluer::Error),
    #[error("bad UUID constant: {0}")]
    Uuid(String),
}

/// One central's pair of characteristic streams.
struct BluerChannel {
    reader: CharacteristicReader,
    writer: CharacteristicWriter,
}

impl FragmentChannel for BluerChannel {
    fn mtu(&self) -> usize {
        // bluer reports the usable notification size; the framing counts in ATT MTU, which
        // adds the 3-byte ATT header.
        (self.writer.mtu() + 3).max(MIN_MTU)
    }

    async fn notify(&mut self, fragment: &[u8]) -> std::io::Result<()> {
        self.writer.send(fragment).await
    }

    async fn written(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let packet = self.reader.recv().await?;
        Ok((!packet.is_empty()).then_some(packet))
    }
}

/// The name as advertised: at most 29 bytes, cut on a character boundary.
pub fn advertised_name(name: &str) -> String {
    let mut end = name.len().min(keyfill_formats::qr::MAX_BLE_NAME_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

fn uuid(text: &str) -> Result<bluer::Uuid, PeripheralError> {
    text.parse().map_err(|_| PeripheralError::Uuid(text.to_owned()))
}

/// Advertises `local_name` with the Keyfill service and serves centrals until an error.
pub async fn serve_ble<K: Keystore>(
    local_name: &str,
    core: &mut AgentCore,
    keystore: &mut K,
    fault: FaultInjection,
) -> Result<(), PeripheralError> {
    let session = bluer::Session::new().await?;
    let adapter = session.default_adapter().await?;
    adapter.set_powered(true).await?;
    let advertisement = Advertisement {
        service_uuids: [uuid(SERVICE_UUID)?].into_iter().collect(),
        discoverable: Some(true),
        local_name: Some(advertised_name(local_name)),
        ..Default::default()
    };
    let _advertising = adapter.advertise(advertisement).await?;
    let (_service_control, service_handle) = service_control();
    let (to_device, to_device_handle) = characteristic_control();
    let (from_device, from_device_handle) = characteristic_control();
    let application = Application {
        services: vec![Service {
            uuid: uuid(SERVICE_UUID)?,
            primary: true,
            characteristics: vec![
                Characteristic {
                    uuid: uuid(TO_DEVICE_UUID)?,
                    write: Some(CharacteristicWrite {
                        write: true,
                        write_without_response: true,
                        method: CharacteristicWriteMethod::Io,
                        ..Default::default()
                    }),
                    control_handle: to_device_handle,
                    ..Default::default()
                },
                Characteristic {
                    uuid: uuid(FROM_DEVICE_UUID)?,
                    notify: Some(CharacteristicNotify {
                        notify: true,
                        method: CharacteristicNotifyMethod::Io,
                        ..Default::default()
                    }),
                    control_handle: from_device_handle,
                    ..Default::default()
                },
            ],
            control_handle: service_handle,
            ..Default::default()
        }],
        ..Default::default()
    };
    let _application = adapter.serve_gatt_application(application).await?;
    info!(adapter = adapter.name(), name = local_name, "advertising the Keyfill GATT service");
    tokio::pin!(to_device);
    tokio::pin!(from_device);
    let mut reader = None;
    let mut writer = None;
    loop {
        tokio::select! {
            Some(event) = to_device.next() => {
                if let CharacteristicControlEvent::Write(request) = event {
                    reader = Some(request.accept()?);
                }
            }
            Some(event) = from_device.next() => {
                if let CharacteristicControlEvent::Notify(notifier) = event {
                    writer = Some(notifier);
                }
            }
            else => return Ok(()),
        }
        if let (Some(_), Some(_)) = (&reader, &writer)
            && let (Some(reader), Some(writer)) = (reader.take(), writer.take())
        {
            let mut channel = BluerChannel { reader, writer };
            info!("central connected");
            if let Err(error) = serve_connection(&mut channel, core, keystore, fault).await {
                warn!(%error, "BLE session ended");
            }
        }
    }
}
