//! One `keyfill rotate --all-provisioned` run over a thousand simulated devices: a device farm
//! of real agent E4 clients (in-memory keystores) behind one MQTT connection to Mosquitto,
//! and a station inventory filled with their sealed keys.

use anyhow::{Context, Result};
use keyfill_agent::e4client::{E4Client, E4Output};
use keyfill_agent::keystore::{E4Keys, StoredKey};
use keyfill_e2e::{BROKER, Database, PASSPHRASE, Station, rand_u64};
use keyfill_formats::DeviceId;
use keyfill_station::db::{Inventory, devices, keys};
use keyfill_station::home::StationHome;
use keyfill_station::seal;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FLEET: usize = 1000;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Records `FLEET` provisioned devices with fresh keys; returns their E4 clients.
async fn fill_inventory(station: &Station, prefix: &str) -> Result<HashMap<String, E4Client>> {
    let unlocked = StationHome::new(&station.home).unlock(PASSPHRASE)?;
    let inventory = Inventory::open(station.db.url()).await?;
    let station_id = hex::encode(unlocked.info.station_id);
    let mut clients = HashMap::new();
    for index in 0..FLEET {
        let name = format!("{prefix}-{index:04}");
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
        let mut tx = inventory.pool().begin().await?;
        devices::begin_provisioning(&mut tx, &record, &key_id_hex, "serial", "fleet").await?;
        keys::insert(
            &mut tx,
            keys::NewKeyState::Pending,
            &key_id_hex,
            &id.to_hex(),
            "e4-symmetric-client-key",
            &sealed,
            &station_id,
        )
        .await?;
        keys::mark_active(&mut tx, &key_id_hex).await?;
        devices::mark_provisioned(&mut tx, &id.to_hex(), &key_id_hex, "serial", "fleet").await?;
        tx.commit().await?;
        let state = StoredKey {
            key_id,
            key,
            station_id: unlocked.info.station_id,
            issued_at: unix_now(),
            e4: E4Keys::default(),
        };
        clients.insert(id.to_hex(), E4Client::new(id, state, 3600));
    }
    inventory.close().await;
    Ok(clients)
}

/// How many MQTT connections the farm spreads its devices over (a broker queues at most
/// 1000 messages per client, and a thousand real devices would hold a thousand connections).
const FARM_CONNECTIONS: usize = 10;

/// One farm connection: answers its devices' control topics until each has switched keys.
async fn run_farm_connection(
    mut clients: HashMap<String, E4Client>,
    ready: tokio::sync::oneshot::Sender<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
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
        if stop.load(std::sync::atomic::Ordering::SeqCst) && rotated(&clients) {
            break;
        }
    }
    Ok(clients)
}

#[test]
fn rotation_of_a_thousand_simulated_devices_in_one_run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let prefix = format!("fleet-{:08x}", rand_u64() as u32);
    let clients = runtime.block_on(fill_inventory(&station, &prefix))?;
    let mut shards: Vec<HashMap<String, E4Client>> = (0..FARM_CONNECTIONS).map(|_| HashMap::new()).collect();
    for (index, (id, client)) in clients.into_iter().enumerate() {
        shards[index % FARM_CONNECTIONS].insert(id, client);
    }
    let mut farm = Vec::new();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for shard in shards {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let stop = stop.clone();
        farm.push(runtime.spawn(async move {
            tokio::time::timeout(Duration::from_secs(120), run_farm_connection(shard, ready_tx, stop)).await
        }));
        runtime.block_on(ready_rx)?;
    }

    let started = Instant::now();
    let output = station.run(&[
        "rotate",
        "--all-provisioned",
        "--broker",
        BROKER,
        "--window",
        "256",
        "--first-wait",
        "10",
        "--json",
    ])?;
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or_default());
    let report: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    assert_eq!(report.len(), FLEET);
    assert!(report.iter().all(|r| r["rotation"] == "active"));
    eprintln!("rotated {FLEET} devices in {:.2} s", elapsed.as_secs_f64());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for line in String::from_utf8_lossy(&output.stderr).lines().filter(|l| l.contains("warning")) {
        eprintln!("station: {line}");
    }

    // Every simulated device switched to exactly the key the station recorded as active.
    let mut clients = HashMap::new();
    for connection in farm {
        clients.extend(runtime.block_on(connection)?.context("a farm connection never saw all its devices switch")??);
    }
    let listed = station.devices()?;
    assert!(listed.iter().all(|d| d["rotation"] == "active"));
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
    assert_eq!(behind, 0, "devices that do not hold the key the station made active");
    Ok(())
}
