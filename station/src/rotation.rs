//! First-use key rotation over MQTT, confirmed by the device under the new key.
//!
//! For each device: a new key is generated and recorded sealed as `next` with the rotation in
//! `rotation_pending` before anything is published; each attempt is an E4 SetIdKey with a fresh
//! timestamp under the current key (retained, QoS 2, like C2), and from the second attempt on
//! also under the new key, in case the device already switched and erased the old one. The
//! device's confirmation, protected under the new key, names the new key and one of the sent
//! timestamps; only then does the new key become `active` and the old one `retired`. Without a
//! confirmation the rotation ends `rotation_failed` with both keys kept: the device's next
//! contact (a hello or a late confirmation, see [`Rotator::watch`]) tells which key it holds.
//! A rotation interrupted by a station restart resumes from the database with the same keys.

use crate::db::devices::{self, DeviceState};
use crate::db::events;
use crate::db::rotations::{self, Rotation};
use crate::db::{self, DbError, keys};
use crate::provision::Station;
use crate::seal::{self, KeyCheckValue, SealError};
use keyfill_formats::e4::keyfill::{
    CONFIRM_TOPIC_PREFIX, Confirmation, HELLO_PLAINTEXT, HELLO_TOPIC_PREFIX, rotated_key_id,
};
use keyfill_formats::e4::{self, Command, TimestampPolicy};
use keyfill_formats::{DeviceId, SecretKey};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

const KEY_KIND: &str = "e4-symmetric-client-key";

/// Retry schedule and concurrency.
#[derive(Debug, Clone, Copy)]
pub struct RotationSettings {
    /// Wait for a confirmation after the first attempt; doubles after each attempt.
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub max_attempts: u32,
    /// Rotations in flight at once.
    pub window: usize,
    /// QoS 2 publications the station leaves unacknowledged at once. Mosquitto takes at most
    /// `max_inflight_messages` (20 by default) from an MQTT 3.1.1 client and discards the
    /// excess while still acknowledging it, so a larger window loses commands under load.
    pub mqtt_inflight: u16,
}

impl Default for RotationSettings {
    fn default() -> Self {
        RotationSettings {
            first_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(120),
            max_attempts: 6,
            window: 64,
            mqtt_inflight: 20,
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RotationError {
    #[error("unknown device {0}")]
    UnknownDevice(String),
    #[error("device {0} is not provisioned")]
    NotProvisioned(String),
    #[error(
        "no confirmation after {attempts} attempts; both keys are kept, the device's next contact tells which it uses. {}",
        unconfirmed_cause(*device_clock_offset)
    )]
    Unconfirmed {
        attempts: u32,
        /// How far ahead of the station's clock (negative: behind) an authentic message from the
        /// device was stamped during the rotation, if one came.
        device_clock_offset: Option<i64>,
    },
    #[error("bad broker URL {0:?}: expected mqtt://HOST[:PORT]")]
    BadBroker(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    E4(#[from] e4::E4Error),
}

/// Offsets up to this many seconds are transit time or rounding, not a clock to fix.
const CLOCK_NOISE_SECS: i64 = 2;

/// The likely reason a device sent no confirmation, from what the station saw of its clock.
fn unconfirmed_cause(device_clock_offset: Option<i64>) -> String {
    let limit = e4::MAX_AGE_SECS;
    match device_clock_offset {
        Some(offset) if offset < -CLOCK_NOISE_SECS => format!(
            "A message from the device during the rotation was stamped {} s behind the station's clock: the \
             device's clock is behind, so it takes every command as stamped in the future and refuses it \
             (devices accept at most {limit} s, E4's Go client none). Set the device's clock (NTP), then rotate again",
            offset.unsigned_abs()
        ),
        Some(offset) if offset > CLOCK_NOISE_SECS => format!(
            "A message from the device during the rotation was stamped {offset} s ahead of the station's clock: \
             the device's clock is ahead, so it takes every command as {offset} s old and refuses it beyond \
             {limit} s. Set the device's clock (NTP), then rotate again"
        ),
        _ => format!(
            "Likely causes: the device is offline or not running `keyfill-agent mqtt`, or its clock differs \
             from the station's by more than it accepts ({limit} s at most; E4's Go client refuses any \
             command stamped ahead of its clock)"
        ),
    }
}

/// How far ahead of `now` (negative: behind) `payload` is stamped, if it authenticates under
/// `key` whatever its timestamp: what a device's message says about its clock.
fn stamp_offset(key: &SecretKey, payload: &[u8], now: u64) -> Option<i64> {
    e4::unprotect(key, payload, now, TimestampPolicy::ANY).ok()?;
    let stamp = i128::from(e4::protected_timestamp(payload).ok()?);
    i64::try_from(stamp - i128::from(now)).ok()
}

/// Progress of a batch, as events (the CLI draws a bar, the GUI its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationProgress {
    Attempt { device: String, attempt: u32 },
    Rotated { device: String },
    Failed { device: String, reason: String },
}

/// How one device's rotation ended.
#[derive(Debug)]
pub struct RotationReport {
    pub device_id: String,
    pub name: String,
    pub result: Result<String, RotationError>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Host and port of `mqtt://HOST[:PORT]`.
pub fn parse_broker(url: &str) -> Result<(String, u16), RotationError> {
    keyfill_agent::mqtt::parse_broker(url).map_err(|_| RotationError::BadBroker(url.into()))
}

/// An MQTT message: topic and payload.
type Message = (String, Vec<u8>);
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Message>>>>;

/// Counts QoS 2 publications handed to the client and completed by the broker, so the station
/// can wait for its last commands to leave before it exits.
#[derive(Debug, Default)]
struct Delivery {
    published: std::sync::atomic::AtomicU64,
    completed: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

/// The station's MQTT side of rotation: one connection per run, confirmations routed per device.
///
/// Each run connects under a client id of its own ([`client_id`]): two runs under one id would
/// take the connection from each other, and the broker would close one every time the other
/// reconnects. [`Rotator::close`] ends the connection with a DISCONNECT once the run is done;
/// dropping the rotator (a cancelled run) ends the connection task as well.
pub struct Rotator {
    station: Arc<Station>,
    mqtt: AsyncClient,
    /// The task that drives the connection; taken by [`Rotator::close`] or aborted on drop.
    connection: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set once the run ends: the connection task stops instead of reconnecting.
    closing: Arc<std::sync::atomic::AtomicBool>,
    delivery: Arc<Delivery>,
    /// Set while [`Rotator::watch`] reads messages no rotation waits for.
    watching: Arc<std::sync::atomic::AtomicBool>,
    routes: Routes,
    unrouted: Mutex<Option<mpsc::UnboundedReceiver<Message>>>,
    settings: RotationSettings,
}

impl std::fmt::Debug for Rotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotator").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// `keyfill-<first 8 hex digits of the station id>-<12 random hex digits>`: names the station in
/// the broker's log, and is new for every run.
pub fn client_id(station_id: &[u8]) -> Result<String, RotationError> {
    let prefix = hex::encode(station_id.get(..4).unwrap_or(station_id));
    Ok(format!("keyfill-{prefix}-{}", hex::encode(seal::random_array::<6>()?)))
}

/// How long [`Rotator::close`] waits for the broker to take the DISCONNECT.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

impl Drop for Rotator {
    fn drop(&mut self) {
        let connection =
            self.connection.get_mut().map(Option::take).unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let Some(connection) = connection {
            connection.abort();
        }
    }
}

fn device_hex(topic: &str) -> Option<&str> {
    topic.strip_prefix(CONFIRM_TOPIC_PREFIX).or_else(|| topic.strip_prefix(HELLO_TOPIC_PREFIX))
}

impl Rotator {
    /// Connects to the broker and subscribes to confirmations and hellos.
    pub async fn connect(
        station: Arc<Station>,
        broker: &str,
        settings: RotationSettings,
    ) -> Result<Self, RotationError> {
        let (host, port) = parse_broker(broker)?;
        let client_id = client_id(&station.unlocked.info.station_id)?;
        debug!(%client_id, broker, "connecting");
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(15));
        options.set_inflight(settings.mqtt_inflight.max(1));
        let (mqtt, mut events) = AsyncClient::new(options, 4096);
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let (unrouted_tx, unrouted_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let subscriber = mqtt.clone();
        let task_routes = routes.clone();
        let delivery = Arc::new(Delivery::default());
        let task_delivery = delivery.clone();
        let watching = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task_watching = watching.clone();
        let closing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let task_closing = closing.clone();
        let connection = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut pending_acks = 0;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        pending_acks = 2;
                        let _ = subscriber.subscribe(format!("{CONFIRM_TOPIC_PREFIX}+"), QoS::ExactlyOnce).await;
                        let _ = subscriber.subscribe(format!("{HELLO_TOPIC_PREFIX}+"), QoS::ExactlyOnce).await;
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        pending_acks -= 1;
                        if pending_acks == 0
                            && let Some(ready) = ready.take()
                        {
                            let _ = ready.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::PubComp(_))) => {
                        task_delivery.completed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        task_delivery.changed.notify_waiters();
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        let message = (publish.topic.clone(), publish.payload.to_vec());
                        let route = device_hex(&publish.topic)
                            .and_then(|id| task_routes.lock().ok().and_then(|routes| routes.get(id).cloned()));
                        match route {
                            Some(route) if route.send(message.clone()).is_ok() => {}
                            // Only a watcher reads unrouted messages; otherwise they are dropped.
                            _ if task_watching.load(std::sync::atomic::Ordering::SeqCst) => {
                                let _ = unrouted_tx.send(message);
                            }
                            _ => {}
                        }
                    }
                    // The DISCONNECT is written and flushed: the run is over.
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) if task_closing.load(std::sync::atomic::Ordering::SeqCst) => break,
                    Err(error) => {
                        warn!(%error, "MQTT connection error; reconnecting");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let ready = match tokio::time::timeout(Duration::from_secs(15), ready_rx).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(RotationError::Mqtt("connection task ended".into())),
            Err(_) => Err(RotationError::Mqtt("no answer from the broker".into())),
        };
        if let Err(error) = ready {
            connection.abort();
            return Err(error);
        }
        Ok(Rotator {
            station,
            mqtt,
            connection: Mutex::new(Some(connection)),
            closing,
            delivery,
            watching,
            routes,
            unrouted: Mutex::new(Some(unrouted_rx)),
            settings,
        })
    }

    /// Ends the run's connection: a DISCONNECT to the broker, then the connection task ends.
    /// Call it once the run is over (after [`Rotator::flush`]); a rotator dropped without it
    /// ends its connection task all the same, without the DISCONNECT.
    pub async fn close(&self) {
        let connection = self.connection.lock().ok().and_then(|mut slot| slot.take());
        let Some(mut connection) = connection else { return };
        self.closing.store(true, std::sync::atomic::Ordering::SeqCst);
        if self.mqtt.try_disconnect().is_ok() && tokio::time::timeout(CLOSE_WAIT, &mut connection).await.is_ok() {
            return;
        }
        warn!("the broker did not take the DISCONNECT in time; closing the connection");
        connection.abort();
    }

    /// Rotates every device in `device_ids` with at most `window` in flight.
    pub async fn rotate_all(
        self: &Arc<Self>,
        device_ids: Vec<String>,
        progress: impl Fn(RotationProgress) + Send + Sync + 'static,
    ) -> Vec<RotationReport> {
        let progress = Arc::new(progress);
        let window = Arc::new(Semaphore::new(self.settings.window.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for device_id in device_ids {
            let rotator = self.clone();
            let window = window.clone();
            let progress = progress.clone();
            tasks.spawn(async move {
                let _permit = window.acquire_owned().await;
                rotator.rotate(&device_id, &*progress).await
            });
        }
        let mut reports = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(report) = joined {
                reports.push(report);
            }
        }
        reports
    }

    /// Rotates one device (or resumes its interrupted rotation).
    pub async fn rotate(&self, device_id: &str, progress: &(dyn Fn(RotationProgress) + Send + Sync)) -> RotationReport {
        let name = match devices::get(self.station.inventory.pool(), device_id).await {
            Ok(Some(device)) => device.name,
            _ => String::new(),
        };
        let result = self.rotate_inner(device_id, progress).await;
        match &result {
            Ok(_) => progress(RotationProgress::Rotated { device: device_id.to_owned() }),
            Err(error) => {
                progress(RotationProgress::Failed { device: device_id.to_owned(), reason: error.to_string() })
            }
        }
        RotationReport { device_id: device_id.to_owned(), name, result }
    }

    fn key_context(&self, device: &DeviceId, key_id_hex: &str) -> Result<Vec<u8>, RotationError> {
        let key_id: [u8; 16] = hex::decode(key_id_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DbError::Inconsistent(format!("bad key id {key_id_hex}")))?;
        Ok(seal::device_key_context(device, &key_id))
    }

    async fn unseal(&self, device: &DeviceId, key_id_hex: &str) -> Result<SecretKey, RotationError> {
        let pool = self.station.inventory.pool();
        let row = keys::get(pool, key_id_hex)
            .await?
            .ok_or_else(|| DbError::Inconsistent(format!("missing key {key_id_hex}")))?;
        let key_id: [u8; 16] = hex::decode(key_id_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DbError::Inconsistent(format!("bad key id {key_id_hex}")))?;
        let master_key = &self.station.unlocked.master_key;
        match master_key.open_key(&seal::device_key_context(device, &key_id), &row.sealed_key) {
            // Only now is the device's name worth a query: the error names it.
            Err(SealError::Unauthentic) => {
                let name = devices::get(pool, &device.to_hex()).await?.map(|d| d.name).unwrap_or_default();
                Ok(master_key.open_device_key(device, &name, &key_id, &row.sealed_key)?)
            }
            opened => Ok(opened?),
        }
    }

    /// As [`Rotator::unseal`], for the watcher, which goes on with other devices: the reason is
    /// logged.
    async fn unseal_or_warn(&self, device: &DeviceId, key_id_hex: &str) -> Option<SecretKey> {
        match self.unseal(device, key_id_hex).await {
            Ok(key) => Some(key),
            Err(error) => {
                warn!(device = %device.to_hex(), "cannot open the device's key: {error}");
                None
            }
        }
    }

    /// The rotation to drive: an unfinished one from the database, or a new one.
    async fn begin(&self, device_id: &str) -> Result<(DeviceId, Rotation), RotationError> {
        let pool = self.station.inventory.pool();
        let device =
            devices::get(pool, device_id).await?.ok_or_else(|| RotationError::UnknownDevice(device_id.into()))?;
        if device.state != DeviceState::Provisioned {
            return Err(RotationError::NotProvisioned(device_id.into()));
        }
        let id = DeviceId::from_hex(device_id).ok_or_else(|| RotationError::UnknownDevice(device_id.into()))?;
        if let Some(rotation) = rotations::get(pool, device_id).await?
            && rotation.state != "active"
        {
            info!(device = device_id, state = %rotation.state, "resuming rotation");
            if rotation.state != "rotation_pending" {
                let mut tx = pool.begin().await.map_err(DbError::from)?;
                rotations::set_state(&mut tx, device_id, "rotation_pending", None).await?;
                db::commit(tx, "rotation-resumed").await?;
            }
            return Ok((id, rotation));
        }
        let old_key_id = device.key_id.ok_or_else(|| DbError::Inconsistent(format!("{device_id} has no key")))?;
        let new_key = self.station.key_source.new_key()?;
        let new_key_id = hex::encode(rotated_key_id(&new_key));
        let sealed = self.station.unlocked.master_key.seal(&self.key_context(&id, &new_key_id)?, new_key.expose())?;
        let station_id = hex::encode(self.station.unlocked.info.station_id);
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        let record = keys::NewKey {
            state: keys::NewKeyState::Next,
            key_id: &new_key_id,
            device_id,
            kind: KEY_KIND,
            sealed_key: &sealed,
            check_value: KeyCheckValue::of(&new_key),
            station_id: &station_id,
        };
        keys::insert(&mut tx, record).await?;
        rotations::start(&mut tx, device_id, &old_key_id, &new_key_id).await?;
        events::record(
            &mut tx,
            &self.station.actor,
            Some(device_id),
            "rotation_started",
            &format!("next key {new_key_id}"),
        )
        .await?;
        db::commit(tx, "rotation-started").await?;
        let rotation =
            rotations::get(pool, device_id).await?.ok_or_else(|| DbError::Inconsistent("rotation vanished".into()))?;
        Ok((id, rotation))
    }

    async fn rotate_inner(
        &self,
        device_id: &str,
        progress: &(dyn Fn(RotationProgress) + Send + Sync),
    ) -> Result<String, RotationError> {
        let (id, rotation) = self.begin(device_id).await?;
        let old = self.unseal(&id, &rotation.old_key_id).await?;
        let new = self.unseal(&id, &rotation.new_key_id).await?;
        let (route, mut incoming) = mpsc::unbounded_channel();
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(id.to_hex(), route);
        }
        let result = self.drive(&id, &rotation, &old, &new, &mut incoming, progress).await;
        if let Ok(mut routes) = self.routes.lock() {
            routes.remove(&id.to_hex());
        }
        result
    }

    async fn drive(
        &self,
        id: &DeviceId,
        rotation: &Rotation,
        old: &SecretKey,
        new: &SecretKey,
        incoming: &mut mpsc::UnboundedReceiver<Message>,
        progress: &(dyn Fn(RotationProgress) + Send + Sync),
    ) -> Result<String, RotationError> {
        let pool = self.station.inventory.pool();
        let device_id = id.to_hex();
        let mut sent = rotation.sent_timestamps();
        let resumed = !sent.is_empty();
        let mut wait = self.settings.first_wait;
        let mut device_clock_offset = None;
        for attempt in 0..self.settings.max_attempts {
            // A fresh timestamp for every attempt: E4 receivers drop commands older than 10 minutes.
            // Never a timestamp ahead of the clock (receivers may refuse any future one): wait
            // for the clock to pass the last one sent instead.
            while sent.last().is_some_and(|last| unix_now() <= *last) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let timestamp = unix_now();
            sent.push(timestamp);
            rotations::record_attempt(pool, &device_id, &sent).await?;
            let set_id_key = Command::SetIdKey { key: new.clone() }.encode();
            if attempt > 0 || resumed {
                // The device may have switched already and erased the old key: probe under the new one.
                let probe = e4::protect(new, timestamp, &set_id_key)?;
                self.publish(&id.control_topic(), probe, false).await?;
            }
            let command = e4::protect(old, timestamp, &set_id_key)?;
            self.publish(&id.control_topic(), command, true).await?;
            progress(RotationProgress::Attempt { device: device_id.clone(), attempt: attempt + 1 });
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(Some((topic, payload))) = tokio::time::timeout_at(deadline, incoming.recv()).await {
                let now = unix_now();
                if let Some(offset) = stamp_offset(old, &payload, now).or_else(|| stamp_offset(new, &payload, now)) {
                    device_clock_offset = Some(offset);
                }
                if !topic.starts_with(CONFIRM_TOPIC_PREFIX) {
                    continue;
                }
                if confirms(new, &payload, &sent) {
                    self.finish(id, rotation).await?;
                    return Ok(rotation.new_key_id.clone());
                }
                debug!(device = %device_id, "ignored a confirmation that does not match");
            }
            wait = (wait * 2).min(self.settings.max_wait);
        }
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        let error = RotationError::Unconfirmed { attempts: sent.len() as u32, device_clock_offset };
        let failure = error.to_string();
        rotations::set_state(&mut tx, &device_id, "rotation_failed", Some(&failure)).await?;
        events::record(&mut tx, &self.station.actor, Some(&device_id), "rotation_failed", &failure).await?;
        db::commit(tx, "rotation-failed").await?;
        Err(error)
    }

    async fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), RotationError> {
        self.mqtt
            .publish(topic, QoS::ExactlyOnce, retain, payload)
            .await
            .map_err(|e| RotationError::Mqtt(e.to_string()))?;
        self.delivery.published.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Waits until the broker completed every publication (or `timeout` passes).
    pub async fn flush(&self, timeout: Duration) -> bool {
        use std::sync::atomic::Ordering;
        let done = || self.delivery.completed.load(Ordering::SeqCst) >= self.delivery.published.load(Ordering::SeqCst);
        let wait = async {
            while !done() {
                let changed = self.delivery.changed.notified();
                if done() {
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// The device proved it holds the new key: make it current, retire the old one.
    async fn finish(&self, id: &DeviceId, rotation: &Rotation) -> Result<(), RotationError> {
        let device_id = id.to_hex();
        let mut tx = self.station.inventory.pool().begin().await.map_err(DbError::from)?;
        keys::mark_active(&mut tx, &rotation.new_key_id).await?;
        keys::retire(&mut tx, &rotation.old_key_id).await?;
        devices::set_current_key(&mut tx, &device_id, &rotation.new_key_id).await?;
        rotations::set_state(&mut tx, &device_id, "active", None).await?;
        events::record(
            &mut tx,
            &self.station.actor,
            Some(&device_id),
            "rotated",
            &format!("key {} confirmed", rotation.new_key_id),
        )
        .await?;
        db::commit(tx, "rotated").await?;
        // Clear the retained command, and use the new key once so the device erases the old one
        // now rather than at the end of its grace period.
        let _ = self.publish(&id.control_topic(), Vec::new(), true).await;
        if let Ok(new) = self.unseal(id, &rotation.new_key_id).await
            && let Ok(probe) = e4::protect(&new, unix_now(), &Command::SetIdKey { key: new.clone() }.encode())
        {
            let _ = self.publish(&id.control_topic(), probe, false).await;
        }
        info!(device = %device_id, key_id = %rotation.new_key_id, "rotation confirmed");
        Ok(())
    }

    /// First use: waits for devices' hellos (and late confirmations) and rotates each provisioned
    /// device once; resolves failed rotations from what the device proves. Runs until
    /// `stop` resolves.
    pub async fn watch(
        self: &Arc<Self>,
        stop: impl std::future::Future<Output = ()>,
        progress: impl Fn(RotationProgress) + Send + Sync + 'static,
    ) -> Result<Vec<RotationReport>, RotationError> {
        let mut unrouted = self
            .unrouted
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .ok_or_else(|| RotationError::Mqtt("already watching".into()))?;
        self.watching.store(true, std::sync::atomic::Ordering::SeqCst);
        let progress = Arc::new(progress);
        let window = Arc::new(Semaphore::new(self.settings.window.max(1)));
        let busy: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        let mut reports = Vec::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(Some(report)) = joined { reports.push(report); }
                }
                message = unrouted.recv() => {
                    let Some((topic, payload)) = message else { break };
                    let Some(device_id) = device_hex(&topic).map(str::to_owned) else { continue };
                    // One contact at a time per device: a hello and a confirmation arriving
                    // together must not settle the same rotation twice.
                    let Some(claim) = ContactClaim::take(&busy, &device_id) else { continue };
                    let rotator = self.clone();
                    let window = window.clone();
                    let progress = progress.clone();
                    tasks.spawn(async move {
                        let _permit = window.acquire_owned().await;
                        let report = rotator.on_contact(&device_id, &topic, &payload, &*progress).await;
                        drop(claim);
                        report
                    });
                }
            }
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(report)) = joined {
                reports.push(report);
            }
        }
        Ok(reports)
    }

    /// A device spoke: settle a failed rotation from the key it used, or start its first rotation.
    async fn on_contact(
        &self,
        device_id: &str,
        topic: &str,
        payload: &[u8],
        progress: &(dyn Fn(RotationProgress) + Send + Sync),
    ) -> Option<RotationReport> {
        let pool = self.station.inventory.pool();
        let device = devices::get(pool, device_id).await.ok().flatten()?;
        if device.state != DeviceState::Provisioned {
            return None;
        }
        let id = DeviceId::from_hex(device_id)?;
        let rotation = rotations::get(pool, device_id).await.ok().flatten();
        let now = unix_now();
        match rotation {
            Some(rotation) if rotation.state == "active" => None,
            Some(rotation) => {
                let new = self.unseal_or_warn(&id, &rotation.new_key_id).await?;
                let uses_new = if topic.starts_with(CONFIRM_TOPIC_PREFIX) {
                    confirms(&new, payload, &rotation.sent_timestamps())
                } else {
                    e4::unprotect(&new, payload, now, TimestampPolicy::C_CLIENT)
                        .is_ok_and(|p| p.as_slice() == HELLO_PLAINTEXT)
                };
                if uses_new {
                    let result = self.finish(&id, &rotation).await.map(|()| rotation.new_key_id.clone());
                    progress(RotationProgress::Rotated { device: device_id.to_owned() });
                    return Some(RotationReport { device_id: device_id.to_owned(), name: device.name, result });
                }
                // Only a device that proves it still uses the old key gets the rotation again.
                let old = self.unseal_or_warn(&id, &rotation.old_key_id).await?;
                let on_old = topic.starts_with(HELLO_TOPIC_PREFIX)
                    && e4::unprotect(&old, payload, now, TimestampPolicy::C_CLIENT)
                        .is_ok_and(|p| p.as_slice() == HELLO_PLAINTEXT);
                if !on_old {
                    match stamp_offset(&old, payload, now).or_else(|| stamp_offset(&new, payload, now)) {
                        Some(offset) => warn_outside_window(device_id, offset),
                        None => debug!(device = device_id, "contact that proves neither key; ignored"),
                    }
                    return None;
                }
                Some(self.rotate(device_id, progress).await)
            }
            None if topic.starts_with(HELLO_TOPIC_PREFIX) => {
                let current = self.unseal_or_warn(&id, device.key_id.as_deref()?).await?;
                let genuine = e4::unprotect(&current, payload, now, TimestampPolicy::C_CLIENT)
                    .is_ok_and(|p| p.as_slice() == HELLO_PLAINTEXT);
                if !genuine {
                    match stamp_offset(&current, payload, now) {
                        Some(offset) => warn_outside_window(device_id, offset),
                        None => warn!(device = device_id, "hello that does not open under the device's key"),
                    }
                    return None;
                }
                Some(self.rotate(device_id, progress).await)
            }
            None => None,
        }
    }
}

/// A device's message that authenticates but is stamped outside the station's window.
fn warn_outside_window(device_id: &str, offset: i64) {
    let (amount, side) = (offset.unsigned_abs(), if offset < 0 { "behind" } else { "ahead of" });
    warn!(
        device = device_id,
        offset,
        "message from the device stamped {amount} s {side} the station's clock, outside the {} s window: the \
         device's clock is wrong (or the message was replayed); set the device's clock (NTP), it refuses \
         the station's commands until then",
        e4::MAX_AGE_SECS
    );
}

/// A device marked as being handled by the watcher until dropped.
struct ContactClaim {
    busy: Arc<Mutex<std::collections::HashSet<String>>>,
    device_id: String,
}

impl ContactClaim {
    fn take(busy: &Arc<Mutex<std::collections::HashSet<String>>>, device_id: &str) -> Option<Self> {
        let inserted = busy.lock().ok()?.insert(device_id.to_owned());
        inserted.then(|| ContactClaim { busy: busy.clone(), device_id: device_id.to_owned() })
    }
}

impl Drop for ContactClaim {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.busy.lock() {
            busy.remove(&self.device_id);
        }
    }
}

/// Whether `payload` is a confirmation of exactly `new` for one of the `sent` commands.
fn confirms(new: &SecretKey, payload: &[u8], sent: &[u64]) -> bool {
    let Ok(plaintext) = e4::unprotect(new, payload, unix_now(), TimestampPolicy::C_CLIENT) else { return false };
    Confirmation::decode(&plaintext).is_ok_and(|c| c.names(new) && sent.contains(&c.command_timestamp))
}

/// Devices eligible for rotation: provisioned devices without a completed rotation.
pub async fn rotatable_devices(station: &Station) -> Result<Vec<String>, RotationError> {
    let pool = station.inventory.pool();
    let mut out = Vec::new();
    for device in devices::list(pool, Some(DeviceState::Provisioned)).await? {
        let done = rotations::get(pool, &device.id).await?.is_some_and(|r| r.state == "active");
        if !done {
            out.push(device.id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_a_failed_rotation_names_the_device_clock_when_a_device_message_showed_it() {
        let failed = |offset| RotationError::Unconfirmed { attempts: 3, device_clock_offset: offset }.to_string();
        let behind = failed(Some(-660));
        assert!(behind.contains("stamped 660 s behind the station's clock") && behind.contains("NTP"), "{behind}");
        let ahead = failed(Some(700));
        assert!(ahead.contains("stamped 700 s ahead of the station's clock"), "{ahead}");
        // Transit time is not a clock problem; nothing seen names the clock only as a possibility.
        for unknown in [failed(Some(1)), failed(None)] {
            assert!(unknown.contains("Likely causes") && unknown.contains("clock differs"), "{unknown}");
        }
    }

    #[test]
    fn field_stamp_offset_reads_only_authentic_messages() {
        let key = SecretKey::from_bytes([4; 32]);
        let hello = e4::protect(&key, 1_000, HELLO_PLAINTEXT).unwrap_or_default();
        assert_eq!(stamp_offset(&key, &hello, 1_660), Some(-660), "outside any window, still read");
        assert_eq!(stamp_offset(&SecretKey::from_bytes([5; 32]), &hello, 1_660), None, "not under this key");
    }
}
