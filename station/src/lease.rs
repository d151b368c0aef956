//! A station process's hold on one device while it works on it ([`crate::db::leases`] is the
//! row). The hold renews itself in the background at a third of its lifetime, so a live station
//! keeps it however long the device takes, and a dead one blocks the device only until it
//! expires.

use crate::db::leases::{self, Claim, Taken};
use crate::db::{DbError, Inventory, commit, events, meta};
use crate::provision::{ProvisionError, Station};
use sqlx::{Any, Transaction};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tracing::warn;

/// Shortest and longest lease lifetime a station accepts: a shorter one would expire between
/// two renewals on a loaded database; a longer one would block a dead station's devices for
/// longer than an operator waits.
pub const MIN_LEASE: Duration = Duration::from_secs(3);
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// The default: a dead station's devices are free again within half a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The holder name of this station process: the station, this machine's boot, the process id
/// and start time, and a random tag. The middle parts let another process on the same machine see
/// that a holder has died ([`holder_is_dead`]) and take its leases at once, instead of waiting
/// for them to expire: a station restarted after a crash reconciles its device first time.
pub(crate) fn process_holder(station_id: &str, tag: &str) -> String {
    let boot = boot_id().unwrap_or_else(|| "-".into());
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or_else(|| "-".into());
    format!("{station_id}/{boot}/{pid}/{start}/{tag}")
}

/// Whether `holder` names a process of this machine's current boot that no longer runs (its
/// process id is gone, or belongs to a process started at another time). Anything that cannot be
/// read for certain (another machine, an unreadable `/proc`) is alive.
pub fn holder_is_dead(holder: &str) -> bool {
    let parts: Vec<&str> = holder.split('/').collect();
    let [_, boot, pid, start, _] = parts.as_slice() else { return false };
    if boot_id().as_deref() != Some(*boot) || *start == "-" {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else { return false };
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
        Ok(stat) => start_time_of(&stat).is_some_and(|running| running != *start),
    }
}

fn boot_id() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id: String = text.trim().chars().filter(char::is_ascii_hexdigit).collect();
    (!id.is_empty()).then_some(id)
}

/// The process's start time in clock ticks after boot (`/proc/PID/stat`, field 22).
fn start_time(pid: u32) -> Option<String> {
    start_time_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn start_time_of(stat: &str) -> Option<String> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_owned)
}

/// What a lease is taken for, as recorded with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Provision,
    Reconcile,
    Abandon,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Provision => "provision",
            Purpose::Reconcile => "reconcile",
            Purpose::Abandon => "abandon",
        }
    }
}

/// A held lease. Released by [`DeviceLease::release`]; dropped without it, it stops renewing and
/// is released in the background (or expires).
#[derive(Debug)]
pub struct DeviceLease {
    inventory: Inventory,
    device_id: String,
    holder: String,
    ttl_millis: i64,
    lost: Arc<AtomicBool>,
    renewal: Option<JoinHandle<()>>,
    /// Given up in the transaction that recorded the device's outcome ([`DeviceLease::release_in`]).
    released: AtomicBool,
}

impl DeviceLease {
    pub(crate) fn held(inventory: Inventory, device_id: String, holder: String, ttl: Duration) -> Self {
        let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = tokio::spawn(renew(inventory.clone(), device_id.clone(), holder.clone(), ttl, lost.clone()));
        DeviceLease {
            inventory,
            device_id,
            holder,
            ttl_millis,
            lost,
            renewal: Some(renewal),
            released: AtomicBool::new(false),
        }
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// In a transaction that changes the device: proves the lease is still held (and holds it
    /// until the commit). False if it was lost: the caller must not commit.
    pub async fn still_held(&self, tx: &mut Transaction<'_, Any>) -> Result<bool, DbError> {
        if self.lost.load(Ordering::SeqCst) {
            return Ok(false);
        }
        leases::fence(tx, self.inventory.backend(), &self.device_id, &self.holder, self.ttl_millis).await
    }

    /// Gives the device up for other stations.
    /// Gives the lease up inside the transaction that records the device's outcome, saving a
    /// commit of its own; [`DeviceLease::released_with`] once that transaction committed.
    pub(crate) async fn release_in(&self, tx: &mut Transaction<'_, Any>) -> Result<(), DbError> {
        leases::release(&mut **tx, &self.device_id, &self.holder).await
    }

    /// The transaction of [`DeviceLease::release_in`] committed: nothing is left to release.
    pub(crate) fn released_with(&self) {
        self.released.store(true, Ordering::SeqCst);
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
    }

    pub async fn release(mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if self.released.load(Ordering::SeqCst) {
            return;
        }
        let gate = self.inventory.write_gate().await;
        let released = leases::release(self.inventory.pool(), &self.device_id, &self.holder).await;
        drop(gate);
        if let Err(error) = released {
            warn!(device = %self.device_id, %error, "could not release the device's lease; it expires by itself");
        }
    }
}

impl Drop for DeviceLease {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
            if self.released.load(Ordering::SeqCst) {
                return;
            }
            let (inventory, device_id, holder) = (self.inventory.clone(), self.device_id.clone(), self.holder.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _gate = inventory.write_gate().await;
                    let _ = leases::release(inventory.pool(), &device_id, &holder).await;
                });
            }
        }
    }
}

/// Taking and checking leases: a [`Station`]'s side.
impl Station {
    /// Takes the device's lease for this station process, or says which station holds it. A
    /// lease taken over from a station that let it expire is recorded in the device's history.
    pub async fn lease(&self, device_id: &str, purpose: Purpose) -> Result<DeviceLease, ProvisionError> {
        let pool = self.inventory.pool();
        let ttl_millis = i64::try_from(self.lease_ttl.as_millis()).unwrap_or(i64::MAX);
        let station_id = self.station_id();
        let mut claim = Claim {
            device_id,
            station_id: &station_id,
            holder: &self.holder,
            purpose: purpose.as_str(),
            ttl_millis,
            replacing: None,
        };
        let mut taken = {
            let _gate = self.inventory.write_gate().await;
            leases::take(pool, self.inventory.backend(), claim).await?
        };
        let dead;
        if let Taken::HeldBy(row) = &taken
            && crate::lease::holder_is_dead(&row.holder)
        {
            // A process of this machine that stopped (killed, crashed): its leases are free now.
            dead = row.holder.clone();
            claim.replacing = Some(&dead);
            let _gate = self.inventory.write_gate().await;
            taken = leases::take(pool, self.inventory.backend(), claim).await?;
        }
        match taken {
            Taken::Yes { previous } => {
                if let Some(previous) = previous {
                    let station = meta::station_name(pool, &previous.station_id).await?;
                    let why = if previous.expired() {
                        "had expired"
                    } else {
                        "belonged to a process of this machine that no longer runs"
                    };
                    let detail = format!(
                        "lease for {} taken over from station {station} ({}), whose lease for {} {why}",
                        purpose.as_str(),
                        previous.station_id,
                        previous.purpose
                    );
                    warn!(device = device_id, "{detail}");
                    let _gate = self.inventory.write_gate().await;
                    let mut tx = pool.begin().await.map_err(DbError::from)?;
                    events::record(&mut tx, &self.actor, Some(device_id), "lease_taken_over", &detail).await?;
                    commit(tx, "lease-taken-over").await?;
                }
                Ok(DeviceLease::held(self.inventory.clone(), device_id.to_owned(), self.holder.clone(), self.lease_ttl))
            }
            Taken::HeldBy(row) => Err(ProvisionError::Leased {
                id: device_id.to_owned(),
                station: format!("{} ({})", meta::station_name(pool, &row.station_id).await?, row.station_id),
                purpose: row.purpose.clone(),
                expires_in_secs: ((row.expires_at - row.now).max(0) + 999) / 1000,
            }),
        }
    }

    /// [`Station::lease`], waiting up to `patience` while another station holds the device.
    /// Returns the lease and whether it had to wait.
    pub async fn lease_waiting(
        &self,
        device_id: &str,
        purpose: Purpose,
        patience: Duration,
    ) -> Result<(DeviceLease, bool), ProvisionError> {
        let deadline = Instant::now() + patience;
        let mut waited = false;
        loop {
            match self.lease(device_id, purpose).await {
                Err(ProvisionError::Leased { expires_in_secs, .. }) if Instant::now() < deadline => {
                    waited = true;
                    let until_expiry = Duration::from_secs(expires_in_secs.max(0) as u64);
                    let pause = until_expiry.clamp(Duration::from_millis(100), Duration::from_millis(500));
                    tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                }
                Ok(lease) => return Ok((lease, waited)),
                Err(other) => return Err(other),
            }
        }
    }

    /// Fails with [`ProvisionError::LeaseLost`] unless `lease` is still this station's.
    pub(crate) async fn fence(
        &self,
        lease: &DeviceLease,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), ProvisionError> {
        if lease.still_held(tx).await? {
            Ok(())
        } else {
            Err(ProvisionError::LeaseLost { id: lease.device_id().to_owned() })
        }
    }
}

async fn renew(inventory: Inventory, device_id: String, holder: String, ttl: Duration, lost: Arc<AtomicBool>) {
    let ttl_millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(ttl / 3).await;
        let renewed = {
            let _gate = inventory.write_gate().await;
            leases::renew(inventory.pool(), inventory.backend(), &device_id, &holder, ttl_millis).await
        };
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                warn!(device = %device_id, "this station's lease on the device expired before it was renewed");
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // The next renewal may get through; the lease stays valid until it expires.
            Err(error) => warn!(device = %device_id, %error, "could not renew the device's lease"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_station_a_holder_is_dead_only_when_its_process_is_gone_from_this_boot() {
        let me = process_holder("st", "tag");
        assert!(!holder_is_dead(&me), "this process runs: {me}");
        let parts: Vec<&str> = me.split('/').collect();
        // The same process id started at another time: the id was reused.
        let reused = format!("st/{}/{}/1/tag", parts[1], parts[2]);
        assert!(holder_is_dead(&reused));
        // A process id that does not exist now.
        let gone = format!("st/{}/4194999/{}/tag", parts[1], parts[3]);
        assert!(holder_is_dead(&gone));
        // Another machine (or boot), or an unreadable name: not judged dead.
        assert!(!holder_is_dead(&format!("st/0000/4194999/{}/tag", parts[3])));
        assert!(!holder_is_dead("st/abcdef"));
    }
}
