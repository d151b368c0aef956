//! Key check values across the inventory: filling in those of keys recorded before check values
//! existed, and the full scan of `keyfill keys check-duplicates`, which opens every key and
//! recomputes its value rather than trusting the stored one.

use crate::db::keys::{self, CheckRow};
use crate::db::{DbError, Inventory, devices};
use crate::seal::{self, KeyCheckValue, MasterKey};
use keyfill_formats::DeviceId;
use serde::Serialize;
use std::collections::HashMap;
use tracing::{info, warn};

/// Keys read per query.
const PAGE: i64 = 2_000;

fn open(master: &MasterKey, row: &CheckRow) -> Result<KeyCheckValue, String> {
    let device = DeviceId::from_hex(&row.device_id).ok_or("its device id is not 32 hex digits")?;
    let key_id: [u8; 16] =
        hex::decode(&row.key_id).ok().and_then(|b| b.try_into().ok()).ok_or("its key id is not 32 hex digits")?;
    let key = master
        .open_key(&seal::device_key_context(&device, &key_id), &row.sealed_key)
        .map_err(|_| "it does not open under this station's master key (altered, or sealed under another)")?;
    Ok(KeyCheckValue::of(&key))
}

/// Gives every key recorded without a check value its value. A key whose value another key
/// already holds keeps none and is logged: `keyfill keys check-duplicates` names both.
/// Returns how many were filled.
pub async fn backfill(inventory: &Inventory, master: &MasterKey) -> Result<u64, DbError> {
    let pool = inventory.pool();
    if !keys::any_without_check_value(pool).await? {
        return Ok(0);
    }
    info!("computing the check values of keys recorded before check values existed");
    let (mut filled, mut after) = (0u64, String::new());
    loop {
        let page = keys::check_page(pool, &after, PAGE, true).await?;
        let Some(last) = page.last() else { break };
        after = last.key_id.clone();
        for row in &page {
            match open(master, row) {
                Ok(check_value) => {
                    if keys::set_check_value(pool, &row.key_id, &check_value).await? {
                        filled += 1;
                    } else {
                        warn!(key_id = %row.key_id, device = %row.device_id, %check_value,
                            "this key is the same as another key in the inventory; run `keyfill keys check-duplicates`");
                    }
                }
                Err(reason) => warn!(key_id = %row.key_id, device = %row.device_id, "no check value: {reason}"),
            }
        }
        info!(filled, "check values computed");
    }
    Ok(filled)
}

/// Check values seen so far, to refuse a key that came before (in one bundle): about 40 bytes
/// per key (its check value and its device's id), never the key.
#[derive(Debug, Default)]
pub struct DistinctKeys {
    seen: HashMap<KeyCheckValue, DeviceId>,
}

impl DistinctKeys {
    /// Records `key`, held by `device`; a key seen before is an error naming the device that held
    /// it first, and the check value.
    pub fn insert(
        &mut self,
        key: &keyfill_formats::SecretKey,
        device: DeviceId,
    ) -> Result<(), (DeviceId, KeyCheckValue)> {
        let check_value = KeyCheckValue::of(key);
        match self.seen.entry(check_value) {
            std::collections::hash_map::Entry::Occupied(first) => Err((*first.get(), check_value)),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(device);
                Ok(())
            }
        }
    }
}

/// One key in a scan's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRef {
    pub key_id: String,
    pub device_id: String,
    /// The device's name, as recorded (escape it to print it).
    pub device_name: Option<String>,
    pub state: String,
    pub station_id: String,
}

/// Keys that are one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateGroup {
    pub check_value: String,
    pub keys: Vec<KeyRef>,
}

/// A key whose stored check value is not its key's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub key: KeyRef,
    pub stored: Option<String>,
    pub computed: String,
}

/// A key the scan could not open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub key: KeyRef,
    pub reason: String,
}

/// What `keyfill keys check-duplicates` found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DuplicateScan {
    pub keys: u64,
    pub duplicates: Vec<DuplicateGroup>,
    /// Keys whose stored value differs from their key's (or is missing).
    pub mismatched: Vec<Mismatch>,
    pub unreadable: Vec<Unreadable>,
}

impl DuplicateScan {
    pub fn clean(&self) -> bool {
        self.duplicates.is_empty() && self.mismatched.is_empty() && self.unreadable.is_empty()
    }
}

/// Opens every key of the inventory, recomputes its check value, and reports keys that are the
/// same key, stored values that are not their key's, and keys that do not open. Memory holds one
/// check value and key id per key (about 100 bytes), never a key beyond its own check.
pub async fn scan(
    inventory: &Inventory,
    master: &MasterKey,
    mut progress: impl FnMut(u64),
) -> Result<DuplicateScan, DbError> {
    let pool = inventory.pool();
    let mut first_seen: HashMap<KeyCheckValue, Box<str>> = HashMap::new();
    let mut groups: HashMap<KeyCheckValue, Vec<CheckRow>> = HashMap::new();
    let mut report = DuplicateScan::default();
    let mut found: Vec<(CheckRow, Finding)> = Vec::new();
    let mut after = String::new();
    loop {
        let page = keys::check_page(pool, &after, PAGE, false).await?;
        let Some(last) = page.last() else { break };
        after = last.key_id.clone();
        for mut row in page {
            report.keys += 1;
            let check_value = match open(master, &row) {
                Ok(value) => value,
                Err(reason) => {
                    row.sealed_key = Vec::new();
                    found.push((row, Finding::Unreadable(reason.to_owned())));
                    continue;
                }
            };
            row.sealed_key = Vec::new();
            if row.check_value.as_deref() != Some(check_value.to_hex().as_str()) {
                found.push((row.clone(), Finding::Mismatch(check_value)));
            }
            if let Some(first) = first_seen.get(&check_value) {
                let group = groups.entry(check_value).or_default();
                if group.is_empty() {
                    group.extend(keys::check_row(pool, first).await?.map(|mut row| {
                        row.sealed_key = Vec::new();
                        row
                    }));
                }
                group.push(row);
            } else {
                first_seen.insert(check_value, row.key_id.into_boxed_str());
            }
        }
        progress(report.keys);
    }
    let names = device_names(inventory, groups.values().flatten().chain(found.iter().map(|(row, _)| row))).await?;
    let reference = |row: &CheckRow| KeyRef {
        key_id: row.key_id.clone(),
        device_id: row.device_id.clone(),
        device_name: names.get(&row.device_id).cloned(),
        state: row.state.clone(),
        station_id: row.station_id.clone(),
    };
    let mut duplicates: Vec<DuplicateGroup> = groups
        .into_iter()
        .map(|(check_value, rows)| DuplicateGroup {
            check_value: check_value.to_hex(),
            keys: rows.iter().map(reference).collect(),
        })
        .collect();
    duplicates.sort_by(|a, b| a.check_value.cmp(&b.check_value));
    report.duplicates = duplicates;
    for (row, finding) in found {
        match finding {
            Finding::Mismatch(computed) => report.mismatched.push(Mismatch {
                key: reference(&row),
                stored: row.check_value.clone(),
                computed: computed.to_hex(),
            }),
            Finding::Unreadable(reason) => report.unreadable.push(Unreadable { key: reference(&row), reason }),
        }
    }
    Ok(report)
}

enum Finding {
    Mismatch(KeyCheckValue),
    Unreadable(String),
}

async fn device_names<'a>(
    inventory: &Inventory,
    rows: impl Iterator<Item = &'a CheckRow>,
) -> Result<HashMap<String, String>, DbError> {
    let mut names = HashMap::new();
    for row in rows {
        if !names.contains_key(&row.device_id)
            && let Some(device) = devices::get(inventory.pool(), &row.device_id).await?
        {
            names.insert(row.device_id.clone(), device.name);
        }
    }
    Ok(names)
}
