//! Runs the agent core over a byte stream with serial framing (COBS + CRC-32).
//!
//! The adapter is generic over `AsyncRead + AsyncWrite`, so a UART opened with tokio-serial, a
//! pseudo-terminal and an in-memory pipe all drive the same code.

use crate::core::{AgentCore, AgentEvent, AgentOutput};
use crate::keystore::Keystore;
use keyfill_formats::frame::{self, FrameDecoder};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, warn};

/// Faults a test can inject into a real agent process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultInjection {
    #[default]
    None,
    /// Exit right after the key is durably stored, before the confirmation is sent.
    ExitAfterStore,
}

/// Why the link loop ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("link closed by the other side")]
    Closed,
    #[error("link I/O: {0}")]
    Io(#[from] std::io::Error),
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
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
        process(outputs, stream, core, keystore, fault).await?;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

async fn process<S, K>(
    mut outputs: Vec<AgentOutput>,
    stream: &mut S,
    core: &mut AgentCore,
    keystore: &mut K,
    fault: FaultInjection,
) -> Result<(), LinkError>
where
    S: AsyncWrite + Unpin,
    K: Keystore,
{
    while !outputs.is_empty() {
        let mut next = Vec::new();
        for output in outputs {
            match output {
                AgentOutput::Transmit(bytes) => match frame::encode(&bytes) {
                    Ok(framed) => {
                        stream.write_all(&framed).await?;
                        stream.flush().await?;
                    }
                    Err(error) => warn!(%error, "message does not fit a frame"),
                },
                AgentOutput::Persist(record) => {
                    let result = keystore.store(&record).map(|()| record).map_err(|e| e.to_string());
                    if result.is_ok() && fault == FaultInjection::ExitAfterStore {
                        warn!("fault injection: exiting after storing the key, before confirming");
                        std::process::exit(75);
                    }
                    next.extend(core.persisted(result));
                }
                AgentOutput::Event(event) => log_event(&event),
            }
        }
        outputs = next;
    }
    Ok(())
}

fn log_event(event: &AgentEvent) {
    match event {
        AgentEvent::SessionStarted { mode } => info!(?mode, "provisioning session started"),
        AgentEvent::StationVerified { station_name, station_id } => {
            info!(station = %station_name, station_id = %hex::encode(station_id), "station certificate verified")
        }
        AgentEvent::StationRefused { reason } => warn!(?reason, "station refused"),
        AgentEvent::KeyReceived { key_id } => info!(key_id = %hex::encode(key_id), "key received"),
        AgentEvent::KeyConfirmed { key_id } => {
            info!(key_id = %hex::encode(key_id), "key stored and confirmed")
        }
        AgentEvent::StatusAnswered { key_id, held } => {
            info!(key_id = %hex::encode(key_id), held, "key status answered")
        }
        AgentEvent::SessionFailed { reason } => warn!(%reason, "session failed"),
        AgentEvent::SessionAborted { reason } => debug!(?reason, "session aborted by station"),
    }
}
