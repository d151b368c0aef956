//! Runs the card application as a virtual smart card for pcscd's `vpcd` reader driver
//! (vsmartcard), so a station provisions it through the real PC/SC stack.
//!
//! The card is the TCP client of the driver: connecting inserts the card, closing removes it.
//! Every message either way is a 2-byte big-endian length and a payload. A 1-byte payload from
//! the driver is a control code (0 power off, 1 power on, 2 reset: no reply; 4 get ATR: reply
//! with the ATR); a longer one is a command APDU, answered with the response APDU.

use crate::card::{CardApplet, answer_to_reset};
use crate::driver::{FaultInjection, FaultTriggered};
use crate::keystore::Keystore;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

const CONTROL_POWER_OFF: u8 = 0;
const CONTROL_POWER_ON: u8 = 1;
const CONTROL_RESET: u8 = 2;
const CONTROL_GET_ATR: u8 = 4;
/// Largest message accepted from the driver: a short APDU with 255 data bytes and Le.
const MAX_MESSAGE: usize = 4 + 1 + 255 + 1;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VpcdError {
    #[error("vpcd I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("vpcd sent a message of {0} bytes, beyond any short APDU")]
    Oversized(usize),
    #[error("the card was pulled (fault injection)")]
    Pulled,
}

/// Serves one card insertion: from connecting to the driver until either side closes.
pub async fn serve_card<K: Keystore>(
    stream: &mut TcpStream,
    applet: &mut CardApplet,
    keystore: &mut K,
    fault: FaultInjection,
) -> Result<(), VpcdError> {
    let _ = stream.set_nodelay(true);
    loop {
        let deadline = applet.poll_timeout();
        let mut length = [0u8; 2];
        tokio::select! {
            read = stream.read_exact(&mut length) => { read?; }
            _ = sleep_until(deadline) => {
                applet.handle_timeout(Instant::now(), keystore, fault).map_err(|FaultTriggered| VpcdError::Pulled)?;
                continue;
            }
        }
        let length = usize::from(u16::from_be_bytes(length));
        if length > MAX_MESSAGE {
            return Err(VpcdError::Oversized(length));
        }
        let mut message = vec![0u8; length];
        stream.read_exact(&mut message).await?;
        let reply = match message.as_slice() {
            [CONTROL_POWER_OFF] | [CONTROL_RESET] => {
                applet.reset();
                None
            }
            [CONTROL_POWER_ON] => None,
            [CONTROL_GET_ATR] => Some(answer_to_reset()),
            [other] => {
                warn!(code = other, "unknown vpcd control code");
                None
            }
            apdu => Some(applet.process(apdu, keystore, fault).map_err(|FaultTriggered| VpcdError::Pulled)?),
        };
        if let Some(reply) = reply {
            debug!(len = reply.len(), "vpcd reply");
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            stream.write_all(&framed).await?;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
