//! The BLE link: wire messages over the Keyfill GATT service, fragmented and acknowledged by
//! `keyfill_formats::ble`. The GATT client itself (btleplug on a real adapter, or an in-memory
//! radio in tests) sits behind [`GattChannel`].

use super::{Link, LinkError, LinkInfo};
use keyfill_formats::ble::{BleEndpoint, BleError};
use std::collections::VecDeque;
use std::time::Instant;
use tracing::debug;

/// What the BLE link needs from a connected GATT client.
#[allow(async_fn_in_trait)] // Used with concrete types only.
pub trait GattChannel {
    /// The negotiated ATT MTU.
    fn mtu(&self) -> usize;
    /// Writes one fragment to the to-device characteristic.
    async fn write(&mut self, fragment: &[u8]) -> Result<(), LinkError>;
    /// The next notification of the from-device characteristic. Must be cancel-safe.
    async fn notification(&mut self) -> Result<Vec<u8>, LinkError>;
}

/// A reliable message link over a [`GattChannel`].
#[derive(Debug)]
pub struct BleLink<G> {
    gatt: G,
    endpoint: BleEndpoint,
    delivered: VecDeque<Vec<u8>>,
    info: LinkInfo,
}

fn ble_error(error: BleError) -> LinkError {
    LinkError::Ble(error)
}

impl<G: GattChannel> BleLink<G> {
    pub fn new(gatt: G, device: String) -> Result<Self, LinkError> {
        let endpoint = BleEndpoint::new(gatt.mtu()).map_err(ble_error)?;
        Ok(BleLink { gatt, endpoint, delivered: VecDeque::new(), info: LinkInfo { transport: "ble", port: device } })
    }

    async fn write_all(&mut self, fragments: Vec<Vec<u8>>) -> Result<(), LinkError> {
        for fragment in fragments {
            self.gatt.write(&fragment).await?;
        }
        Ok(())
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

impl<G: GattChannel> Link for BleLink<G> {
    fn info(&self) -> LinkInfo {
        self.info.clone()
    }

    async fn send(&mut self, message: &[u8]) -> Result<(), LinkError> {
        let fragments = self.endpoint.send(message.to_vec(), Instant::now()).map_err(ble_error)?;
        self.write_all(fragments).await
    }

    async fn recv(&mut self) -> Result<Vec<u8>, LinkError> {
        loop {
            if let Some(message) = self.delivered.pop_front() {
                return Ok(message);
            }
            let deadline = self.endpoint.poll_timeout();
            tokio::select! {
                notification = self.gatt.notification() => {
                    match self.endpoint.receive(&notification?, Instant::now()) {
                        Ok(output) => {
                            self.delivered.extend(output.delivered);
                            self.write_all(output.transmit).await?;
                        }
                        Err(error) => debug!(%error, "dropped a BLE fragment"),
                    }
                }
                _ = sleep_until(deadline) => {
                    let again = self.endpoint.handle_timeout(Instant::now()).map_err(ble_error)?;
                    self.write_all(again).await?;
                }
            }
        }
    }

    fn discard_received(&mut self) -> Result<(), LinkError> {
        // Whole messages only: the fragment layer keeps its sequence state, so a message being
        // reassembled completes (and, if stale, is dropped by the session).
        self.delivered.clear();
        Ok(())
    }
}
