//! Runs the agent core over a byte stream with serial framing (COBS + CRC-32).
//!
//! The adapter is generic over `AsyncRead + AsyncWrite`, so a UART opened with tokio-serial, a
//! pseudo-terminal and an in-memory pipe all drive the same code.

use crate::core::AgentCore;
use crate::driver::{FaultInjection, FaultTriggered, settle, unix_now};
use crate::keystore::Keystore;
use keyfill_formats::frame::{self, FrameDecoder};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

/// Why the link loop ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("link closed by the other side")]
    Closed,
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves provisioning sessions on `stream` until it closes.
pub async fn serve_stream<S, K>(
    stream: &mut S,
    core: &mut AgentCore,
    keystore: &mut K,
    fault: FaultInjection,
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    K: Keystore,
{
    serve_stream_as(stream, core, keystore, fault, &mut |_| None).await
}

/// [`serve_stream`], where after every exchange `next_device` may put another device in the
/// core's place: a test jig keying a stream of boards through one link, for soak runs.
pub async fn serve_stream_as<S, K>(
    stream: &mut S,
    core: &mut AgentCore,
    keystore: &mut K,
    fault: FaultInjection,
    next_device: &mut (dyn FnMut(&AgentCore) -> Option<AgentCore> + Send),
) -> Result<(), LinkError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    K: Keystore,
{
    let mut decoder = FrameDecoder::new();
    let mut buffer = [0u8; 512];
    loop {
        let deadline = core.poll_timeout();
        let read = tokio::select! {
            read = stream.read(&mut buffer) => Some(read?),
            _ = sleep_until(deadline) => None,
        };
        let outputs = match read {
            Some(0) => return Err(LinkError::Closed),
            Some(n) => {
                let mut outputs = Vec::new();
                for frame in decoder.push(&buffer[..n]) {
                    match frame {
                        Ok(payload) => outputs.extend(core.handle_message(&payload, Instant::now(), unix_now())),
                        Err(error) => warn!(%error, "dropped a bad frame"),
                    }
                }
                outputs
            }
            None => core.handle_timeout(Instant::now()),
        };
        let transmit = match settle(core, outputs, keystore, fault) {
            Ok(transmit) => transmit,
            Err(FaultTriggered) => return Err(LinkError::Closed),
        };
        for message in transmit {
            match frame::encode(&message) {
                Ok(framed) => {
                    stream.write_all(&framed).await?;
                    stream.flush().await?;
                }
                Err(error) => warn!(%error, "message does not fit a frame"),
            }
        }
        if let Some(next) = next_device(core) {
            *core = next;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
