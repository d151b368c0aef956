//! Runs the agent core as a BLE peripheral: fragments written by the station to the
//! to-device characteristic come in, fragments go out as notifications of the from-device
//! characteristic (see `keyfill_formats::ble`). The GATT server itself (BlueZ through bluer on
//! a Linux device, an in-memory radio in tests, a relay in the simulated-BlueZ test) sits behind
//! [`FragmentChannel`].

use crate::core::AgentCore;
use crate::driver::{FaultInjection, FaultTriggered, settle, unix_now};
use crate::keystore::Keystore;
use keyfill_formats::ble::{BleEndpoint, BleError};
use std::time::Instant;
use tracing::debug;

/// A connected GATT peripheral's view of one central.
#[allow(async_fn_in_trait)] // Used with concrete types only.
pub trait FragmentChannel {
    fn mtu(&self) -> usize;
    /// Sends one fragment as a notification.
    async fn notify(&mut self, fragment: &[u8]) -> std::io::Result<()>;
    /// The next fragment the central wrote; `None` when it disconnected. Must be cancel-safe.
    async fn written(&mut self) -> std::io::Result<Option<Vec<u8>>>;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BleServeError {
    #[error("BLE framing: {0}")]
    Ble(#[from] BleError),
    #[error("BLE I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the link was dropped (fault injection)")]
    Dropped,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Serves one BLE connection until the central disconnects.
pub async fn serve_connection<C: FragmentChannel, K: Keystore>(
    channel: &mut C,
    core: &mut AgentCore,
    keystore: &mut K,
    fault: FaultInjection,
) -> Result<(), BleServeError> {
    let mut endpoint = BleEndpoint::new(channel.mtu())?;
    loop {
        let ble_deadline = endpoint.poll_timeout();
        let core_deadline = core.poll_timeout();
        let mut transmit = Vec::new();
        tokio::select! {
            written = channel.written() => {
                let Some(fragment) = written? else { return Ok(()) };
                match endpoint.receive(&fragment, Instant::now()) {
                    Ok(output) => {
                        // Acknowledge before the core runs: storing a key may take longer than the
                        // station's retransmission timer.
                        for ack in &output.transmit {
                            channel.notify(ack).await?;
                        }
                        for message in output.delivered {
                            let outputs = core.handle_message(&message, Instant::now(), unix_now());
                            let replies = settle(core, outputs, keystore, fault).map_err(|FaultTriggered| BleServeError::Dropped)?;
                            for reply in replies {
                                transmit.extend(endpoint.send(reply, Instant::now())?);
                            }
                        }
                    }
                    Err(error) => debug!(%error, "dropped a BLE fragment"),
                }
            }
            _ = sleep_until(ble_deadline) => transmit.extend(endpoint.handle_timeout(Instant::now())?),
            _ = sleep_until(core_deadline) => {
                let outputs = core.handle_timeout(Instant::now());
                for reply in settle(core, outputs, keystore, fault).map_err(|FaultTriggered| BleServeError::Dropped)? {
                    transmit.extend(endpoint.send(reply, Instant::now())?);
                }
            }
        }
        for fragment in transmit {
            channel.notify(&fragment).await?;
        }
    }
}
