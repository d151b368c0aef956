//! Carries out what the core asks for (store a key, report an event) and collects what it wants
//! sent; shared by every transport adapter.

use crate::core::{AgentCore, AgentEvent, AgentOutput};
use crate::keystore::Keystore;
use keyfill_formats::message::{WireBody, WireMessage};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// Faults a test can inject into a real agent process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultInjection {
    #[default]
    None,
    /// Exit right after the key is durably stored, before the confirmation is sent.
    ExitAfterStore,
    /// Drop the link (pull the card) when a key arrives, before storing it.
    DropLinkOnDelivery,
    /// Send, ahead of every handshake reply, a reply of another session: what a late answer to
    /// an earlier session looks like on the link.
    StrayBeforeReply,
}

/// The injected fault fired: the adapter must drop its link now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultTriggered;

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Runs `outputs` to completion: persists keys (feeding the result back to the core), logs
/// events, and returns the wire messages to transmit, in order.
pub fn settle<K: Keystore>(
    core: &mut AgentCore,
    mut outputs: Vec<AgentOutput>,
    keystore: &mut K,
    fault: FaultInjection,
) -> Result<Vec<Vec<u8>>, FaultTriggered> {
    let mut transmit = Vec::new();
    while !outputs.is_empty() {
        let mut next = Vec::new();
        for output in outputs {
            match output {
                AgentOutput::Transmit(bytes) => {
                    if fault == FaultInjection::StrayBeforeReply
                        && let Some(stray) = reply_of_another_session(&bytes)
                    {
                        warn!("fault injection: a reply of another session goes first");
                        transmit.push(stray);
                    }
                    transmit.push(bytes);
                }
                AgentOutput::Persist(record) => {
                    if fault == FaultInjection::DropLinkOnDelivery {
                        warn!("fault injection: dropping the link as the key arrives");
                        // The key is never stored; the core must hear so, or it would wait forever.
                        let _ = core.persisted(Err("link dropped before storing".into()));
                        return Err(FaultTriggered);
                    }
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
    Ok(transmit)
}

fn reply_of_another_session(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut message = WireMessage::decode(bytes).ok()?;
    if !matches!(message.body, WireBody::HandshakeReply { .. }) {
        return None;
    }
    message.session.0.iter_mut().for_each(|byte| *byte ^= 0xA5);
    message.encode().ok()
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
        AgentEvent::StrayMessage { reason } => warn!(%reason, "dropped a message"),
    }
}
