//! Several stations, one inventory.
//!
//! The stations sharing a database share one master key: each holds it in its own home, sealed
//! under its own passphrase. A key sealed by one station therefore opens at every other, which a
//! shared line needs: the station that takes over a dead station's device must ask the device
//! about the pending key, any station may rotate or export any device, and a field laptop's
//! sealed keys travel to the factory database as they are, never opened on the way. A station
//! joins with the master key shared by one already in (`keyfill master share`, then `keyfill
//! init --join-master`): sealed under a one-time transfer passphrase and bound to the factory
//! root, so only a station of the same factory opens it. The inventory records which master key
//! its secrets are sealed under, and a station holding another is refused at start
//! ([`DbError::ForeignMasterKey`]) before it writes anything.

use crate::db::keys::{self, CheckRow};
use crate::db::{DbError, Inventory, meta};
use crate::home::UnlockedStation;
use crate::seal::{self, MasterKey, SealError, SealedMasterKey};
use keyfill_formats::DeviceId;
use serde::{Deserialize, Serialize};

/// Keys tried when an inventory from before master-key records is first opened: it is this
/// station's if any of them opens (one altered row must not lock a station out).
const KEYS_TRIED: usize = 5;

/// Checks that the inventory's secrets are sealed under this station's master key (recording
/// it, for an inventory that has no record yet), and registers the station.
pub async fn claim_inventory(inventory: &Inventory, unlocked: &UnlockedStation) -> Result<(), DbError> {
    let pool = inventory.pool();
    let ours = unlocked.master_key.check_value().to_hex();
    let recorded = match meta::master_key_check(pool).await? {
        Some(recorded) => recorded,
        None => {
            if !keys_open_under(inventory, &unlocked.master_key).await? {
                return Err(DbError::ForeignMasterKey {
                    database: "not recorded; its keys do not open under this station's".into(),
                    station: ours,
                });
            }
            meta::claim_master_key(pool, &unlocked.master_key.check_value()).await?
        }
    };
    if recorded != ours {
        return Err(DbError::ForeignMasterKey { database: recorded, station: ours });
    }
    let info = &unlocked.info;
    meta::register_station(pool, &hex::encode(info.station_id), &info.station_name, &info.certificate.encode()).await
}

/// Whether an inventory without a master-key record is this master key's: empty, or one of its
/// first keys opens.
async fn keys_open_under(inventory: &Inventory, master: &MasterKey) -> Result<bool, DbError> {
    let page = keys::check_page(inventory.pool(), "", KEYS_TRIED as i64, false).await?;
    Ok(page.is_empty() || page.iter().any(|row| opens(master, row)))
}

fn opens(master: &MasterKey, row: &CheckRow) -> bool {
    let (Some(device), Some(key_id)) =
        (DeviceId::from_hex(&row.device_id), hex::decode(&row.key_id).ok().and_then(|b| <[u8; 16]>::try_from(b).ok()))
    else {
        return false;
    };
    master.open_key(&seal::device_key_context(&device, &key_id), &row.sealed_key).is_ok()
}

/// A master key shared for another station to join: what `keyfill master share` writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MasterKeyShare {
    pub format: String,
    /// Stations of this factory root only (hex of the Ed25519 public key).
    pub factory_root: String,
    /// The shared master key's check value, to tell which inventory it opens.
    pub master_key_check: String,
    /// The station that shared it.
    pub shared_by: String,
    pub sealed: SealedMasterKey,
}

pub const SHARE_FORMAT: &str = "keyfill-master-key-share-v1";
/// A share file is a few hundred bytes; anything much larger is not one.
pub const MAX_SHARE_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    #[error("this is not a master-key share ({0})")]
    NotAShare(String),
    #[error(
        "the share is for the stations of factory root {share}, and this station's factory root is {station}: \
         initialise it with that factory's root (--factory-root-key)"
    )]
    OtherFactory { share: String, station: String },
    #[error("the share does not open: wrong transfer passphrase, or the file was altered")]
    DoesNotOpen,
    #[error(transparent)]
    Seal(SealError),
}

impl MasterKeyShare {
    pub fn new(unlocked: &UnlockedStation, passphrase: &str) -> Result<Self, SealError> {
        let info = &unlocked.info;
        Ok(MasterKeyShare {
            format: SHARE_FORMAT.into(),
            factory_root: hex::encode(info.factory_root),
            master_key_check: unlocked.master_key.check_value().to_hex(),
            shared_by: format!("{} ({})", info.station_name, hex::encode(info.station_id)),
            sealed: unlocked.master_key.share(passphrase, &info.factory_root)?,
        })
    }

    /// Reads a share from its JSON text.
    pub fn parse(text: &str) -> Result<Self, ShareError> {
        let share: MasterKeyShare = serde_json::from_str(text).map_err(|e| ShareError::NotAShare(e.to_string()))?;
        if share.format != SHARE_FORMAT {
            return Err(ShareError::NotAShare(format!("format {:?}", keyfill_formats::printable(&share.format))));
        }
        Ok(share)
    }

    /// Opens the shared master key for a station of `factory_root`.
    pub fn open(&self, passphrase: &str, factory_root: &[u8; 32]) -> Result<MasterKey, ShareError> {
        if self.factory_root != hex::encode(factory_root) {
            return Err(ShareError::OtherFactory {
                share: keyfill_formats::printable(&self.factory_root).into_owned(),
                station: hex::encode(factory_root),
            });
        }
        let master = MasterKey::open_share(&self.sealed, passphrase, factory_root).map_err(|error| match error {
            SealError::WrongPassphrase => ShareError::DoesNotOpen,
            other => ShareError::Seal(other),
        })?;
        if master.check_value().to_hex() != self.master_key_check {
            return Err(ShareError::DoesNotOpen);
        }
        Ok(master)
    }
}
