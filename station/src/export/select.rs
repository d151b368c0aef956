//! Which keys may leave the station: a device's current key once the device confirmed it, at
//! provisioning or at the end of a confirmed rotation. A device in the middle of a rotation, or
//! whose rotation failed, holds one of two keys and nobody knows which yet: it is reported,
//! not exported, until the rotation settles.

use super::{ExportError, ExportItem};
use crate::db::DbError;
use crate::db::devices::{self, Device, DeviceState};
use crate::db::keys::{self, ProvisionedKeyRow};
use crate::provision::Station;
use keyfill_formats::{DeviceId, SecretKey};

/// Which devices an export covers.
#[derive(Debug, Clone)]
pub enum DeviceFilter {
    /// Every provisioned device.
    All,
    /// These devices (ids or names, as [`devices::resolve`] reads them); one that cannot be
    /// exported is reported, not skipped.
    Named(Vec<String>),
    /// Provisioned devices whose current key was confirmed at or after this Unix time (ms).
    ConfirmedSince(i64),
}

/// An exportable key with the facts a bundle records about it.
#[derive(Debug)]
pub struct KeyFacts {
    pub confirmed_at: i64,
    pub rotated: bool,
}

/// Devices read from the inventory per page by [`ExportablePages`].
const PAGE: usize = 2000;

/// The export items for `filter`, with the facts of each exportable key, in inventory order.
pub async fn exportable_items(
    station: &Station,
    filter: &DeviceFilter,
) -> Result<Vec<(ExportItem, Option<KeyFacts>)>, ExportError> {
    let pool = station.inventory.pool();
    let candidates: Vec<Device> = match filter {
        DeviceFilter::Named(wanted) => named(station, wanted).await?,
        DeviceFilter::All | DeviceFilter::ConfirmedSince(_) => {
            devices::list(pool, Some(DeviceState::Provisioned)).await?
        }
    };
    let mut items = Vec::with_capacity(candidates.len());
    for device in candidates {
        if let Some(item) = device_item(station, filter, device).await? {
            items.push(item);
        }
    }
    Ok(items)
}

async fn named(station: &Station, wanted: &[String]) -> Result<Vec<Device>, ExportError> {
    let mut found = Vec::new();
    for reference in wanted {
        let device = devices::resolve(station.inventory.pool(), reference).await?;
        if !found.iter().any(|d: &Device| d.id == device.id) {
            found.push(device);
        }
    }
    Ok(found)
}

async fn device_item(
    station: &Station,
    filter: &DeviceFilter,
    device: Device,
) -> Result<Option<(ExportItem, Option<KeyFacts>)>, ExportError> {
    let row = match (&device.state, device.key_id.as_deref()) {
        (DeviceState::Provisioned, Some(key_id)) => keys::get(station.inventory.pool(), key_id).await?,
        _ => None,
    };
    let candidate = Candidate {
        device_id: device.id,
        name: device.name,
        provisioned: device.state == DeviceState::Provisioned,
        state: device.state.as_str(),
        rotation: device.rotation,
        key_id: device.key_id,
        provisioned_at: device.provisioned_at,
        key: row.map(|row| StoredKey {
            state: row.state,
            sealed: row.sealed_key,
            created_at: row.created_at,
            confirmed_at: row.confirmed_at,
        }),
    };
    judge(station, filter, candidate)
}

/// The exportable items for `filter` a page at a time, in increasing device-id order (a bundle
/// needs that order; the inventory reads it along indexes kept in that order), so that a million
/// keys are never all in memory. Named devices come as one page, sorted the same way.
///
/// The inventory is read one page ahead by a task of its own, so that the database's work on the
/// next page overlaps the unsealing and sealing of this one: one query either way, a SQLite
/// inventory through a bulk connection of its own ([`crate::db::bulk`]), PostgreSQL's through
/// the pool.
#[derive(Debug)]
pub struct ExportablePages<'a> {
    station: &'a Station,
    filter: &'a DeviceFilter,
    done: bool,
    reader: Option<tokio::sync::mpsc::Receiver<Result<Vec<ProvisionedKeyRow>, DbError>>>,
}

/// Reads every provisioned device through the pool, in pages, into `pages`; dropping the
/// receiver (with its [`ExportablePages`]) ends this task at its next page.
async fn read_ahead(
    inventory: crate::db::Inventory,
    pages: tokio::sync::mpsc::Sender<Result<Vec<ProvisionedKeyRow>, DbError>>,
) {
    use tokio_stream::StreamExt;
    let mut rows = keys::provisioned_rows(&inventory);
    let mut page = Vec::with_capacity(PAGE);
    loop {
        match rows.next().await {
            Some(Ok(row)) => {
                page.push(row);
                if page.len() < PAGE {
                    continue;
                }
                let full = std::mem::replace(&mut page, Vec::with_capacity(PAGE));
                if pages.send(Ok(full)).await.is_err() {
                    return;
                }
            }
            Some(Err(error)) => {
                let _ = pages.send(Err(error.into())).await;
                return;
            }
            None => {
                if !page.is_empty() {
                    let _ = pages.send(Ok(page)).await;
                }
                return;
            }
        }
    }
}

impl<'a> ExportablePages<'a> {
    pub fn new(station: &'a Station, filter: &'a DeviceFilter) -> Self {
        let reader = match filter {
            DeviceFilter::Named(_) => None,
            DeviceFilter::All | DeviceFilter::ConfirmedSince(_) => {
                let (sender, receiver) = tokio::sync::mpsc::channel(1);
                match station.inventory.sqlite_file() {
                    Some(file) => {
                        let file = file.to_path_buf();
                        tokio::task::spawn_blocking(move || {
                            crate::db::bulk::send_provisioned_pages(&file, PAGE, &sender)
                        });
                    }
                    None => {
                        tokio::spawn(read_ahead(station.inventory.clone(), sender));
                    }
                }
                Some(receiver)
            }
        };
        ExportablePages { station, filter, done: false, reader }
    }

    /// The next page; `None` once every device was read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<(ExportItem, Option<KeyFacts>)>>, ExportError> {
        if self.done {
            return Ok(None);
        }
        if let DeviceFilter::Named(wanted) = self.filter {
            self.done = true;
            let mut devices = named(self.station, wanted).await?;
            devices.sort_by(|a, b| a.id.cmp(&b.id));
            let mut items = Vec::with_capacity(devices.len());
            for device in devices {
                if let Some(item) = device_item(self.station, self.filter, device).await? {
                    items.push(item);
                }
            }
            return Ok(Some(items));
        }
        let Some(reader) = self.reader.as_mut() else { return Ok(None) };
        let Some(rows) = reader.recv().await else {
            self.done = true;
            return Ok(None);
        };
        let rows = rows?;
        if rows.is_empty() {
            self.done = true;
            return Ok(None);
        }
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(item) = judge(self.station, self.filter, Candidate::provisioned(row))? {
                items.push(item);
            }
        }
        Ok(Some(items))
    }
}

/// What the selection knows of a device and its current key, however it was read.
struct Candidate {
    device_id: String,
    name: String,
    provisioned: bool,
    state: &'static str,
    rotation: Option<String>,
    key_id: Option<String>,
    provisioned_at: Option<i64>,
    key: Option<StoredKey>,
}

struct StoredKey {
    state: String,
    sealed: Vec<u8>,
    created_at: i64,
    confirmed_at: Option<i64>,
}

impl Candidate {
    fn provisioned(row: ProvisionedKeyRow) -> Self {
        let key = match (row.key_state, row.sealed_key, row.key_created_at) {
            (Some(state), Some(sealed), Some(created_at)) => {
                Some(StoredKey { state, sealed, created_at, confirmed_at: row.confirmed_at })
            }
            _ => None,
        };
        Candidate {
            device_id: row.device_id,
            name: row.name,
            provisioned: true,
            state: DeviceState::Provisioned.as_str(),
            rotation: row.rotation_state,
            key_id: row.current_key_id,
            provisioned_at: row.provisioned_at,
            key,
        }
    }
}

/// The item for a candidate, `None` when the filter leaves it out.
fn judge(
    station: &Station,
    filter: &DeviceFilter,
    candidate: Candidate,
) -> Result<Option<(ExportItem, Option<KeyFacts>)>, ExportError> {
    let (key, facts) = match current_key(station, &candidate)? {
        Ok((key, facts)) => (Ok(key), Some(facts)),
        Err(reason) => (Err(reason), None),
    };
    if let (DeviceFilter::ConfirmedSince(since), Some(facts)) = (filter, &facts)
        && facts.confirmed_at < *since
    {
        return Ok(None);
    }
    let item = ExportItem { device_id: candidate.device_id, name: candidate.name, key_id: candidate.key_id, key };
    Ok(Some((item, facts)))
}

/// The device's confirmed current key, or why it may not be exported.
fn current_key(station: &Station, device: &Candidate) -> Result<Result<(SecretKey, KeyFacts), String>, ExportError> {
    if !device.provisioned {
        return Ok(Err(format!("not provisioned (state {})", device.state)));
    }
    match device.rotation.as_deref() {
        Some("rotation_pending") => {
            return Ok(Err("a key rotation is in progress; export after the device confirms it".into()));
        }
        Some("rotation_failed") => {
            return Ok(Err("the last rotation is unsettled: the device holds the old or the new key; settle it \
                           with `keyfill rotate --watch` (the device's next contact tells) before exporting"
                .into()));
        }
        _ => {}
    }
    let inconsistent = |what: &str| DbError::Inconsistent(format!("device {}: {what}", device.device_id));
    let key_id = device.key_id.as_deref().ok_or_else(|| inconsistent("provisioned without a key"))?;
    let row = device.key.as_ref().ok_or_else(|| inconsistent("its key is missing"))?;
    if row.state != "active" {
        return Ok(Err(format!("its current key is {}, not confirmed", row.state)));
    }
    let id = DeviceId::from_hex(&device.device_id).ok_or_else(|| inconsistent("id is not hex"))?;
    let key_id_bytes: [u8; 16] =
        hex::decode(key_id).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| inconsistent("key id is not hex"))?;
    let key = station.unlocked.master_key.open_device_key(&id, &device.name, &key_id_bytes, &row.sealed)?;
    let facts = KeyFacts {
        confirmed_at: row.confirmed_at.or(device.provisioned_at).unwrap_or(row.created_at),
        rotated: device.rotation.as_deref() == Some("active"),
    };
    Ok(Ok((key, facts)))
}
