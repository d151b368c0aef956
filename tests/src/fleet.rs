//! A fleet of simulated devices rotated by one `keyfill rotate --all-provisioned` run: a device
//! farm of real agent E4 clients (in-memory keystores) behind a few MQTT connections to
//! Mosquitto, and a station inventory filled with their sealed keys. The rotation test checks
//! it; the `rotation_fleet` benchmark times it.

use crate::{BROKER, Database, PASSPHRASE, Station, rand_u64};
use anyhow::{Context, Result, bail};
use keyfill_agent::e4client::{E4Client, E4Output};
use keyfill_agent::keystore::{E4Keys, StoredKey};
use keyfill_formats::DeviceId;
use keyfill_station::db::{Inventory, devices, keys};
use keyfill_station::home::StationHome;
use keyfill_station::seal;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many devices share one MQTT connection of the farm (a broker queues at most 1000
/// messages per client, a SUBSCRIBE of every device's topic must fit rumqttc's packet limit, and
/// a thousand real devices would hold a thousand connections).
const DEVICES_PER_CONNECTION: usize = 100;

/// What one fleet rotation did.
#[derive(Debug)]
pub struct FleetRotation {
    /// Wall time of the `keyfill rotate` process alone (not the inventory or farm set-up).
    pub elapsed: Duration,
    /// Devices the station reported `active` after the run.
    pub active: usize,
    /// Devices that do not hold the key the station made active (must be 0).
    pub behind: usize,
    /// Devices whose rotation took more than one command (a command or confirmation was lost,
    /// or came after the first wait).
    pub retried: usize,
    /// The station's warnings, for a reader wondering why a run was slow.
    pub warnings: Vec<String>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Provisions `size` simulated devices on a fresh SQLite station, rotates them all in one run
/// with `window` rotations in flight (and `extra` arguments to `keyfill rotate`), and checks
/// each device against the station's record.
pub fn rotate_fleet(size: usize, window: usize, extra: &[&str]) -> Result<FleetRotation> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let prefix = format!("fleet-{:08x}", rand_u64() as u32);
    let clients = runtime.block_on(fill_inventory(&station, &prefix, size))?;
    let connections = size.div_ceil(DEVICES_PER_CONNECTION).max(1);
    let mut shards: Vec<HashMap<String, E4Client>> = (0..connections).map(|_| HashMap::new()).collect();
    for (index, (id, client)) in clients.into_iter().enumerate() {
        shards[index % connections].insert(id, client);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut farm = Vec::new();
    for shard in shards {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let stop = stop.clone();
        let connection = runtime.spawn(async move {
            tokio::time::timeout(Duration::from_secs(120), run_farm_connection(shard, ready_tx, stop)).await
        });
        if runtime.block_on(ready_rx).is_err() {
            // The connection ended before it subscribed: its result says why.
            runtime.block_on(connection)?.context("a farm connection timed out")??;
            bail!("a farm connection ended before it subscribed");
        }
        farm.push(connection);
    }

    let window = window.to_string();
    let started = Instant::now();
    let mut args =
        vec!["rotate", "--all-provisioned", "--broker", BROKER, "--window", &window, "--first-wait", "10", "--json"];
    args.extend_from_slice(extra);
    let output = station.run_env(&args, &[("KEYFILL_LOG", "info")])?;
    if let Some(path) = std::env::var_os("KEYFILL_FLEET_STDERR") {
        std::fs::write(path, &output.stderr)?;
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("keyfill rotate failed: {}", stderr.lines().last().unwrap_or_default());
    }
    let report: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    if report.len() != size {
        bail!("the rotation reported {} devices of {size}", report.len());
    }
    let warnings = stderr.lines().filter(|l| l.to_ascii_lowercase().contains("warn")).map(str::to_owned).collect();

    let mut clients = HashMap::new();
    for connection in farm {
        clients.extend(runtime.block_on(connection)?.context("a farm connection never saw all its devices switch")??);
    }
    let listed = station.devices()?;
    let active = listed.iter().filter(|d| d["rotation"] == "active").count();
    let retried = listed.iter().filter(|d| d["rotation_attempts"].as_i64().is_some_and(|n| n > 1)).count();
    // The station's active key is the one each device proved it holds: in use already, or
    // stored as next until the device sees a command under it or its grace period ends.
    let mut behind = 0;
    for device in &listed {
        let id = device["id"].as_str().context("id")?;
        let state = clients.get(id).context("simulated device")?.state();
        let held =
            [Some(state.key_id), state.e4.next.as_ref().map(|n| keyfill_formats::e4::keyfill::rotated_key_id(&n.key))];
        if !held.iter().flatten().any(|k| Some(hex::encode(k)) == device["key_id"].as_str().map(str::to_owned)) {
            behind += 1;
        }
    }
    Ok(FleetRotation { elapsed, active, behind, retried, warnings })
}

/// Records `size` provisioned devices with fresh keys; returns their E4 clients.
async fn fill_inventory(station: &Station, prefix: &str, size: usize) -> Result<HashMap<String, E4Client>> {
    let mut clients = HashMap::new();
    record_fleet(station, prefix, size, |id, state| {
        clients.insert(id.to_hex(), E4Client::new(id, state, 3600));
    })
    .await?;
    Ok(clients)
}

/// Devices recorded in one transaction: a commit per device would make a million take hours.
const FLEET_BATCH: usize = 1000;

/// Records `size` devices named `PREFIX-NNNNN` as provisioned with fresh sealed keys, straight
/// into the inventory (no link, no agent), and hands each device's key to `each`.
pub async fn record_fleet(
    station: &Station,
    prefix: &str,
    size: usize,
    mut each: impl FnMut(DeviceId, StoredKey),
) -> Result<()> {
    let unlocked = StationHome::new(&station.home).unlock(PASSPHRASE)?;
    let inventory = Inventory::open(station.db.url()).await?;
    let station_id = hex::encode(unlocked.info.station_id);
    let mut tx = inventory.pool().begin().await?;
    for index in 0..size {
        let name = format!("{prefix}-{index:05}");
        let id = DeviceId::from_name(&name);
        let key = seal::random_key()?;
        let key_id = seal::random_array::<16>()?;
        let sealed = unlocked.master_key.seal(&seal::device_key_context(&id, &key_id), key.expose())?;
        let record = devices::NewDevice {
            id: id.to_hex(),
            name: name.clone(),
            serial_number: format!("SN-{index}"),
            credential_mode: "identity",
            identity_public_key: Some(vec![1; 32]),
            sealed_setup_secret: None,
            model: None,
        };
        let key_id_hex = hex::encode(key_id);
        devices::begin_provisioning(&mut tx, &record, &key_id_hex, "serial", "fleet").await?;
        let new_key = keys::NewKey {
            state: keys::NewKeyState::Pending,
            key_id: &key_id_hex,
            device_id: &id.to_hex(),
            kind: "e4-symmetric-client-key",
            sealed_key: &sealed,
            check_value: seal::KeyCheckValue::of(&key),
            station_id: &station_id,
        };
        keys::insert(&mut tx, new_key).await?;
        keys::mark_active(&mut tx, &key_id_hex).await?;
        devices::mark_provisioned(&mut tx, &id.to_hex(), &key_id_hex, "serial", "fleet").await?;
        if (index + 1) % FLEET_BATCH == 0 {
            tx.commit().await?;
            tx = inventory.pool().begin().await?;
        }
        let state = StoredKey {
            key_id,
            key,
            station_id: unlocked.info.station_id,
            issued_at: unix_now(),
            e4: E4Keys::default(),
        };
        each(id, state);
    }
    tx.commit().await?;
    inventory.close().await;
    Ok(())
}

/// One farm connection: answers its devices' control topics until each has switched keys.
async fn run_farm_connection(
    mut clients: HashMap<String, E4Client>,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: Arc<AtomicBool>,
) -> Result<HashMap<String, E4Client>> {
    let mut options = MqttOptions::new(format!("keyfill-fleet-{:08x}", rand_u64() as u32), "127.0.0.1", 1883);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_inflight(200);
    let (mqtt, mut events) = AsyncClient::new(options, 10_000);
    let (outgoing, mut to_publish) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let publisher = mqtt.clone();
    tokio::spawn(async move {
        while let Some((topic, payload)) = to_publish.recv().await {
            let _ = publisher.publish(topic, QoS::AtLeastOnce, false, payload).await;
        }
    });
    let topics: Vec<rumqttc::SubscribeFilter> =
        clients.keys().map(|id| rumqttc::SubscribeFilter::new(format!("e4/{id}"), QoS::AtLeastOnce)).collect();
    let mut ready = Some(ready);
    let initial: HashMap<String, [u8; 16]> = clients.iter().map(|(id, c)| (id.clone(), c.state().key_id)).collect();
    // Done when every device holds a new key, confirmed (as next) or already in use.
    let rotated = |clients: &HashMap<String, E4Client>| {
        clients.iter().all(|(id, c)| c.state().e4.next.is_some() || Some(&c.state().key_id) != initial.get(id))
    };
    // EventLoop::poll is not cancel-safe: never time it out mid-packet; the caller bounds the whole farm.
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => mqtt.subscribe_many(topics.clone()).await?,
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some(client) = publish.topic.strip_prefix("e4/").and_then(|id| clients.get_mut(id)) else {
                    continue;
                };
                for output in client.handle_control(&publish.payload, unix_now()) {
                    if let E4Output::Publish { topic, payload } = output {
                        let _ = outgoing.send((topic, payload));
                    }
                }
            }
            Ok(_) => {}
            Err(error) => return Err(error).context("farm MQTT connection"),
        }
        if stop.load(Ordering::SeqCst) && rotated(&clients) {
            break;
        }
    }
    Ok(clients)
}
