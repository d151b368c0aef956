//! Runs the E4 client over MQTT with rumqttc: subscribes to the device's control topic,
//! applies commands through [`E4Client`], persists before publishing, and publishes
//! confirmations (and an optional hello).
//!
//! The device uses QoS 1 both ways, with a persistent session. Every E4 command and every
//! confirmation is idempotent, so a duplicate costs nothing, while QoS 2's exactly-once state
//! would not survive a power loss: after a restart the broker resumes a half-finished QoS 2
//! exchange the new process knows nothing of, and the client drops the connection.

use crate::e4client::{E4Client, E4Event, E4Output, describe_clock_refusal};
use crate::keystore::Keystore;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tracing::{debug, info, warn};

/// Faults a test can inject into a real agent process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum E4Fault {
    #[default]
    None,
    /// Do not publish the first confirmation, as if the broker had lost it.
    DropFirstConfirmation,
    /// Exit right after storing a next key, before confirming it.
    ExitAfterNextStored,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MqttError {
    #[error("bad broker URL {0:?}: expected mqtt://HOST[:PORT]")]
    BadUrl(String),
    #[error("MQTT client: {0}")]
    Client(#[from] rumqttc::ClientError),
    #[error("keystore: {0}")]
    Keystore(#[from] crate::keystore::KeystoreError),
}

/// Host and port of `mqtt://HOST[:PORT]` (or `tcp://`).
pub fn parse_broker(url: &str) -> Result<(String, u16), MqttError> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| MqttError::BadUrl(url.into()))?;
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) => Ok((host.to_owned(), port.parse().map_err(|_| MqttError::BadUrl(url.into()))?)),
        None if !rest.is_empty() => Ok((rest.to_owned(), 1883)),
        None => Err(MqttError::BadUrl(url.into())),
    }
}

/// The device's clock in Unix seconds: the system clock, shifted by a fixed offset on test
/// benches to play a device whose clock disagrees with the station's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceClock {
    offset_secs: i64,
}

impl DeviceClock {
    /// The system clock, as on every real device.
    pub fn system() -> Self {
        DeviceClock::default()
    }

    /// The system clock shifted by `offset_secs` (negative: behind). For tests and bench
    /// devices only.
    pub fn shifted(offset_secs: i64) -> Self {
        DeviceClock { offset_secs }
    }

    pub fn now(&self) -> u64 {
        let system = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        system.saturating_add_signed(self.offset_secs)
    }

    async fn sleep_until(&self, deadline: Option<u64>) {
        match deadline {
            Some(deadline) => tokio::time::sleep(Duration::from_secs(deadline.saturating_sub(self.now()).max(1))).await,
            None => std::future::pending().await,
        }
    }
}

/// Serves E4 commands until the process ends.
pub async fn run_mqtt<K: Keystore>(
    broker: &str,
    mut client: E4Client,
    keystore: &mut K,
    hello: bool,
    mut fault: E4Fault,
    clock: DeviceClock,
) -> Result<(), MqttError> {
    let (host, port) = parse_broker(broker)?;
    let control = client.control_topic();
    let mut options = MqttOptions::new(format!("keyfill-{}", &control[3..]), host, port);
    options.set_keep_alive(Duration::from_secs(10));
    // A persistent session: commands sent while the device is offline wait for it.
    options.set_clean_session(false);
    // Acknowledge a command only once it is applied and stored: a power loss before that makes
    // the broker deliver it again.
    options.set_manual_acks(true);
    let (mqtt, mut events) = AsyncClient::new(options, 64);
    let window = client.timestamp_policy();
    info!(%broker, %control, max_future_skew = window.future_skew, max_age = window.max_age, "E4 client connecting");
    let mut pending_ack: Option<rumqttc::Publish> = None;
    loop {
        let outputs = tokio::select! {
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    mqtt.subscribe(control.clone(), QoS::AtLeastOnce).await?;
                    if hello {
                        match client.hello(clock.now()) {
                            Ok(output) => vec![output],
                            Err(error) => { warn!(%error, "cannot make a hello"); Vec::new() }
                        }
                    } else {
                        Vec::new()
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == control => {
                    let outputs = client.handle_control(&publish.payload, clock.now());
                    pending_ack = Some(publish);
                    outputs
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    pending_ack = Some(publish);
                    Vec::new()
                }
                Ok(other) => {
                    debug!(?other, "MQTT event");
                    Vec::new()
                }
                Err(error) => {
                    warn!(%error, "MQTT connection error; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Vec::new()
                }
            },
            _ = clock.sleep_until(client.poll_timeout()) => client.handle_timeout(clock.now()),
        };
        for output in outputs {
            match output {
                E4Output::Persist(state) => {
                    keystore.store(&state)?;
                    if fault == E4Fault::ExitAfterNextStored && state.e4.next.is_some() {
                        warn!("fault injection: exiting after storing the next key, before confirming");
                        std::process::exit(75);
                    }
                }
                E4Output::Publish { topic, payload } => {
                    if fault == E4Fault::DropFirstConfirmation && topic.starts_with("keyfill/confirm/") {
                        warn!("fault injection: dropping the first confirmation");
                        fault = E4Fault::None;
                        continue;
                    }
                    mqtt.publish(topic, QoS::AtLeastOnce, false, payload).await?;
                }
                E4Output::Event(event) => log_event(&event),
            }
        }
        if let Some(publish) = pending_ack.take() {
            mqtt.ack(&publish).await?;
        }
    }
}

fn log_event(event: &E4Event) {
    match event {
        E4Event::NextKeyStored { command_timestamp } => {
            info!(command_timestamp, "SetIdKey: next key stored, confirming")
        }
        E4Event::RotationConfirmedAgain { command_timestamp } => {
            info!(command_timestamp, "SetIdKey repeated: confirming again")
        }
        E4Event::KeyPromoted { by_command } => info!(by_command, "new client key in use; old key erased"),
        E4Event::CommandApplied { command } => info!(command, "E4 command applied"),
        E4Event::OutsideClockWindow { command_timestamp, now, window } => {
            warn!(
                command_timestamp,
                device_clock = now,
                "{}",
                describe_clock_refusal(*command_timestamp, *now, *window)
            )
        }
        E4Event::Rejected { reason } => warn!(%reason, "E4 message rejected"),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_broker;

    #[test]
    fn broker_urls() {
        assert_eq!(parse_broker("mqtt://127.0.0.1:1883").ok(), Some(("127.0.0.1".into(), 1883)));
        assert_eq!(parse_broker("mqtt://broker").ok(), Some(("broker".into(), 1883)));
        assert!(parse_broker("http://x").is_err());
        assert!(parse_broker("mqtt://h:port").is_err());
    }
}
