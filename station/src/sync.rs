//! `keyfill sync`: a field station's records pushed to the factory's database.
//!
//! A field laptop keys devices offline on its own SQLite inventory, then pushes its devices,
//! their sealed keys and rotations, and its event log to the factory's PostgreSQL. Both stations
//! hold the same master key ([`crate::fleet`]), so keys travel sealed, exactly as stored: they are
//! never opened on the way. Each device is one transaction on the target; events follow in pages,
//! each copied once (an event's copy is known by its origin: the source inventory and its id),
//! with a cursor on the source, so a second run changes nothing and an interrupted one resumes.
//!
//! A device the factory knows already is compared by its keys: the target holds the field's
//! current key (nothing to do, or the target is further along), the field holds the target's
//! current key (the field is further along: its record is pushed), or neither holds the other's
//! — the same device keyed in both places — a conflict, reported and left as it is on both sides.

use crate::db::sync::{self, DeviceRow};
use crate::db::{DbError, Inventory, commit, meta};
use crate::provision::Station;
use serde::Serialize;
use thiserror::Error;

/// Devices and events read per query.
const PAGE: i64 = 500;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SyncError {
    #[error(
        "the factory database's secrets are sealed under another master key ({target}; this station's is \
         {local}): only a station that joined the factory's stations (`keyfill init --join-master`) can sync to it"
    )]
    OtherMasterKey { target: String, local: String },
    #[error("the factory database has no master key recorded yet: start one of its stations on it first")]
    TargetUnclaimed,
    #[error("the target is this station's own database")]
    SameDatabase,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for SyncError {
    fn from(error: sqlx::Error) -> Self {
        SyncError::Db(error.into())
    }
}

/// The same device, keyed in both places.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub device_id: String,
    pub name: String,
    /// Here: state and current key.
    pub local_state: String,
    pub local_key_id: Option<String>,
    /// In the factory database.
    pub target_state: String,
    pub target_key_id: Option<String>,
    pub reason: String,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncReport {
    /// Devices new to the target, or brought up to date there.
    pub devices_pushed: u64,
    /// Devices the target already held as they are here (or further along).
    pub devices_unchanged: u64,
    pub keys_pushed: u64,
    pub events_pushed: u64,
    pub conflicts: Vec<Conflict>,
}

/// How one device compares.
enum Plan {
    Push,
    Unchanged,
    Conflict(String),
}

fn plan(
    local: &DeviceRow,
    local_keys: &[sync::KeyRow],
    target: Option<&DeviceRow>,
    target_keys: &[sync::KeyRow],
) -> Plan {
    let Some(target) = target else { return Plan::Push };
    let same_record = target.current_key_id == local.current_key_id && target.state == local.state;
    let in_target = |key: &sync::KeyRow| target_keys.iter().any(|t| t.matches(key));
    if same_record && local_keys.iter().all(in_target) {
        return Plan::Unchanged;
    }
    // A failed key provably never reached the device: it conflicts with nothing.
    let live = |keys: &[sync::KeyRow]| {
        keys.iter().filter(|k| k.key.state != "failed").map(|k| k.key.key_id.clone()).collect::<Vec<_>>()
    };
    let knows = |keys: &[sync::KeyRow], key_id: &String| keys.iter().any(|k| &k.key.key_id == key_id);
    if live(target_keys).iter().all(|key| knows(local_keys, key)) {
        // Every key the factory holds for the device is known here: this record is further along.
        return Plan::Push;
    }
    if live(local_keys).iter().all(|key| knows(target_keys, key)) {
        // The factory knows every key this station made, and more: it is further along.
        return Plan::Unchanged;
    }
    Plan::Conflict(format!(
        "keyed in both places: here {} with key {}, in the factory database {} with key {}; neither station \
         knows the other's key, so only the device can tell which it holds: reconcile it on one station, then \
         abandon the other record",
        local.state,
        local.current_key_id.as_deref().unwrap_or("none"),
        target.state,
        target.current_key_id.as_deref().unwrap_or("none"),
    ))
}

/// Pushes this station's records to `target`. `progress` gets the devices done so far.
pub async fn sync(
    station: &Station,
    target: &Inventory,
    mut progress: impl FnMut(u64),
) -> Result<SyncReport, SyncError> {
    let local_pool = station.inventory.pool();
    let target_pool = target.pool();
    let local_check = station.unlocked.master_key.check_value().to_hex();
    match meta::master_key_check(target_pool).await? {
        None => return Err(SyncError::TargetUnclaimed),
        Some(check) if check != local_check => {
            return Err(SyncError::OtherMasterKey { target: check, local: local_check });
        }
        Some(_) => {}
    }
    let local_id = meta::inventory_id(local_pool).await?;
    let target_id = meta::inventory_id(target_pool).await?;
    if local_id == target_id {
        return Err(SyncError::SameDatabase);
    }
    let info = &station.unlocked.info;
    meta::ensure_station(target_pool, &hex::encode(info.station_id), &info.station_name, &info.certificate.encode())
        .await?;

    let mut report = SyncReport::default();
    let mut after = String::new();
    loop {
        let page = sync::devices_after(local_pool, &after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for device in page {
            push_device(station, target, &device, &mut report).await?;
            progress(report.devices_pushed + report.devices_unchanged + report.conflicts.len() as u64);
        }
    }
    push_events(station, target, &local_id, &target_id, &mut report).await?;
    if report.devices_pushed + report.events_pushed > 0 || !report.conflicts.is_empty() {
        let mut tx = target_pool.begin().await?;
        let detail = format!(
            "sync from station {} ({}): {} device(s) pushed, {} key(s), {} event(s), {} conflict(s)",
            info.station_name,
            hex::encode(info.station_id),
            report.devices_pushed,
            report.keys_pushed,
            report.events_pushed,
            report.conflicts.len()
        );
        crate::db::events::record(&mut tx, &station.actor, None, "sync_received", &detail).await?;
        commit(tx, "sync-recorded").await?;
    }
    Ok(report)
}

async fn push_device(
    station: &Station,
    target: &Inventory,
    device: &DeviceRow,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let (local_pool, target_pool) = (station.inventory.pool(), target.pool());
    let local_keys = sync::keys_of(local_pool, &device.id).await?;
    let target_device = sync::device(target_pool, &device.id).await?;
    let target_keys = sync::keys_of(target_pool, &device.id).await?;
    let conflict = |reason: String| Conflict {
        device_id: device.id.clone(),
        name: device.name.clone(),
        local_state: device.state.clone(),
        local_key_id: device.current_key_id.clone(),
        target_state: target_device.as_ref().map(|d| d.state.clone()).unwrap_or_default(),
        target_key_id: target_device.as_ref().and_then(|d| d.current_key_id.clone()),
        reason,
    };
    match plan(device, &local_keys, target_device.as_ref(), &target_keys) {
        Plan::Unchanged => {
            report.devices_unchanged += 1;
            return Ok(());
        }
        Plan::Conflict(reason) => {
            report.conflicts.push(conflict(reason));
            return Ok(());
        }
        Plan::Push => {}
    }
    let mut tx = target_pool.begin().await?;
    // A key of this device the factory holds for another device is one key twice: refused.
    for key in &local_keys {
        if let Some(check_value) = &key.check_value
            && let Some((key_id, owner)) = sync::key_with_check_value(&mut tx, check_value).await?
            && key_id != key.key.key_id
        {
            drop(tx);
            report.conflicts.push(conflict(format!(
                "its key {} has the check value {check_value} of key {key_id} of device {owner} in the factory \
                 database: one key twice; nothing of this device was pushed",
                key.key.key_id
            )));
            return Ok(());
        }
    }
    sync::put_device(&mut tx, device).await?;
    let new_keys = local_keys.iter().filter(|k| !target_keys.iter().any(|t| t.matches(k)));
    let mut pushed = 0;
    for key in new_keys {
        sync::put_key(&mut tx, key).await?;
        pushed += 1;
    }
    if let Some(rotation) = sync::rotation_of(station.inventory.pool(), &device.id).await? {
        sync::put_rotation(&mut tx, &rotation).await?;
    }
    commit(tx, "sync-device").await?;
    report.devices_pushed += 1;
    report.keys_pushed += pushed;
    Ok(())
}

async fn push_events(
    station: &Station,
    target: &Inventory,
    local_id: &str,
    target_id: &str,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let local_pool = station.inventory.pool();
    let mut after = sync::cursor(local_pool, target_id).await?;
    loop {
        let page = sync::events_after(local_pool, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        let last_id = last.event.id;
        let mut tx = target.pool().begin().await?;
        for event in &page {
            let origin = event.origin.clone().unwrap_or_else(|| format!("{local_id}:{}", event.event.id));
            if sync::put_event(&mut tx, event, &origin).await? {
                report.events_pushed += 1;
            }
        }
        commit(tx, "sync-events").await?;
        // After the target's commit: a crash between the two copies this page again, and each
        // copy is refused as one already there.
        sync::set_cursor(local_pool, target_id, last_id).await?;
        after = last_id;
    }
    Ok(())
}
