//! Which keys may leave the station: a device's current key once the device confirmed it, at
//! provisioning or at the end of a confirmed rotation. A device in the middle of a rotation, or
//! whose rotation failed, holds one of two keys and nobody knows which yet: it is reported,
//! not exported, until the rotation settles.

use super::{ExportError, ExportItem};
use crate::db::devices::{self, Device, DeviceState};
use crate::db::{DbError, keys};
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

/// The export items for `filter`, with the facts of each exportable key, in inventory order.
pub async fn exportable_items(
    station: &Station,
    filter: &DeviceFilter,
) -> Result<Vec<(ExportItem, Option<KeyFacts>)>, ExportError> {
    let pool = station.inventory.pool();
    let candidates: Vec<Device> = match filter {
        DeviceFilter::Named(wanted) => {
            let mut found = Vec::new();
            for reference in wanted {
                let device = devices::resolve(pool, reference).await?;
                if !found.iter().any(|d: &Device| d.id == device.id) {
                    found.push(device);
                }
            }
            found
        }
        DeviceFilter::All | DeviceFilter::ConfirmedSince(_) => {
            devices::list(pool, Some(DeviceState::Provisioned)).await?
        }
    };
    let mut items = Vec::with_capacity(candidates.len());
    for device in candidates {
        let (key, facts) = match current_key(station, &device).await? {
            Ok((key, facts)) => (Ok(key), Some(facts)),
            Err(reason) => (Err(reason), None),
        };
        if let (DeviceFilter::ConfirmedSince(since), Some(facts)) = (filter, &facts)
            && facts.confirmed_at < *since
        {
            continue;
        }
        items.push((ExportItem { device_id: device.id, name: device.name, key_id: device.key_id, key }, facts));
    }
    Ok(items)
}

/// The device's confirmed current key, or why it may not be exported.
async fn current_key(station: &Station, device: &Device) -> Result<Result<(SecretKey, KeyFacts), String>, ExportError> {
    if device.state != DeviceState::Provisioned {
        return Ok(Err(format!("not provisioned (state {})", device.state.as_str())));
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
    let inconsistent = |what: &str| DbError::Inconsistent(format!("device {}: {what}", device.id));
    let key_id = device.key_id.as_deref().ok_or_else(|| inconsistent("provisioned without a key"))?;
    let row = keys::get(station.inventory.pool(), key_id).await?.ok_or_else(|| inconsistent("its key is missing"))?;
    if row.state != "active" {
        return Ok(Err(format!("its current key is {}, not confirmed", row.state)));
    }
    let id = DeviceId::from_hex(&device.id).ok_or_else(|| inconsistent("id is not hex"))?;
    let key_id_bytes: [u8; 16] =
        hex::decode(key_id).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| inconsistent("key id is not hex"))?;
    let key = station.unlocked.master_key.open_device_key(&id, &device.name, &key_id_bytes, &row.sealed_key)?;
    let facts = KeyFacts {
        confirmed_at: row.confirmed_at.or(device.provisioned_at).unwrap_or(row.created_at),
        rotated: device.rotation.as_deref() == Some("active"),
    };
    Ok(Ok((key, facts)))
}
