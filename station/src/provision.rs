//! Provisioning and reconciliation: drives a [`StationSession`] over a [`Link`] and records each
//! state change in the inventory before the next step, so that a crash anywhere leaves a state
//! the station can reconcile.
//!
//! Record states: `pending` is written (with the sealed key) before the key is sent;
//! `provisioned` only after the device proved it stored the key; `failed` only when the key
//! provably never left the station or the device says it does not hold it. A session that
//! breaks after the key was sent leaves `pending`, resolved by asking the device
//! ([`Station::reconcile`]), never by guessing.

use crate::db::devices::{self, Device, DeviceState, NewDevice};
use crate::db::events::{self, Actor};
use crate::db::{DbError, Inventory, commit, keys};
use crate::home::{UnlockedStation, unix_now};
use crate::lease::{DEFAULT_LEASE, DeviceLease, Purpose};
use crate::link::{Link, LinkError, LinkInfo};
use crate::protocol::{Request, SessionError, SessionOutcome, SessionTimeouts, StationSession};
use crate::seal::{self, KeyCheckValue, KeySource, SealError, SystemKeys};
use keyfill_formats::message::{AbortReason, KeyDelivery, KeyKind, SessionId};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload, SetupSecret, TransportHints};
use keyfill_formats::{DeviceId, DeviceName};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::{info, warn};

const KEY_KIND: &str = "e4-symmetric-client-key";

/// Progress of one provisioning, for a CLI spinner or a GUI panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    Reconciling,
    KeyGenerated { key_id: String },
    Handshake,
    KeySent,
    Confirmed,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProvisionError {
    #[error("device {name} ({id}) is already provisioned")]
    AlreadyProvisioned { name: String, id: String },
    #[error("unknown device {0}")]
    UnknownDevice(String),
    #[error("device {id} is {state}, not pending: nothing to reconcile")]
    NotPending { id: String, state: &'static str },
    #[error("provisioning failed; the device did not take the key")]
    Failed { source: SessionOrLinkError },
    #[error("the key was sent but not confirmed ({source}); the record stays pending: run `keyfill devices reconcile`")]
    Unconfirmed { source: SessionOrLinkError },
    #[error("reconciliation could not reach a verdict; the record stays pending")]
    ReconcileIncomplete { source: SessionOrLinkError },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("cannot start the session: {0}")]
    Setup(SessionError),
    #[error(
        "device {id} is being worked on by station {station} ({purpose}); its lease ends in {expires_in_secs} s \
         unless that station renews it"
    )]
    Leased { id: String, station: String, purpose: String, expires_in_secs: i64 },
    #[error("{0}")]
    NotAdmitted(#[from] crate::orders::NotAdmitted),
    #[error(
        "this station lost its lease on device {id} before it could record what happened (it stalled past the \
         lease's end, or the database was unreachable): another station may be working on the device, so nothing \
         more was recorded here"
    )]
    LeaseLost { id: String },
}

/// A session failure, from the protocol or from the link.
#[derive(Debug, Error)]
pub enum SessionOrLinkError {
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Link(#[from] LinkError),
}

impl SessionOrLinkError {
    /// What the operator should do.
    pub fn advice(&self) -> &'static str {
        match self {
            SessionOrLinkError::Session(error) => error.advice(),
            SessionOrLinkError::Link(error) => error.advice(),
        }
    }
}

impl ProvisionError {
    /// What the operator should do next, if there is a specific answer.
    pub fn advice(&self) -> Option<String> {
        match self {
            ProvisionError::AlreadyProvisioned { .. } => {
                Some("Nothing to do: the device holds its key from this station.".into())
            }
            ProvisionError::Failed { source } => {
                Some(format!("{} The device holds no key from this station.", source.advice()))
            }
            ProvisionError::Unconfirmed { source } => Some(format!(
                "{} The record stays pending: with the device on the link, run the same provision again (it first \
                 asks the device whether it holds the key) or `keyfill devices reconcile`.",
                source.advice()
            )),
            ProvisionError::ReconcileIncomplete { source } => {
                Some(format!("{} The record stays pending: ask the device again.", source.advice()))
            }
            ProvisionError::Leased { .. } => Some(
                "Wait for the other station to finish with the device (it then shows as provisioned), or provision it \
                 there. A station that stopped holds the device only until its lease ends."
                    .into(),
            ),
            ProvisionError::NotAdmitted(crate::orders::NotAdmitted::Mismatch { .. }) => Some(
                "Nothing was sent. Check that the label belongs to this device and that the work order is right; \
                 correct the order in the MES (a new order id) if it is wrong."
                    .into(),
            ),
            ProvisionError::NotAdmitted(_) => Some(
                "Nothing was sent. Import the work order that lists this device (`keyfill orders import`), or key \
                 it under its own order."
                    .into(),
            ),
            ProvisionError::LeaseLost { .. } => Some(
                "Look at the device's record (`keyfill devices show`) and its history before trying again; a pending \
                 record is resolved by asking the device."
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The result of a provisioning run.
#[derive(Debug, Clone)]
pub struct ProvisionReport {
    pub device: Device,
    /// True if the device already held its pending key and was only reconciled.
    pub reconciled: bool,
}

/// How a reconciliation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileVerdict {
    /// The device proved it holds the pending key: now `provisioned`.
    Provisioned,
    /// The device does not hold the pending key: now `failed`.
    Failed,
}

/// The station: unlocked credentials plus the inventory.
#[derive(Debug)]
pub struct Station {
    pub inventory: Inventory,
    pub unlocked: UnlockedStation,
    pub actor: Actor,
    /// How long sessions wait for the device.
    pub timeouts: SessionTimeouts,
    /// Where new keys come from (the system random source).
    pub key_source: Arc<dyn KeySource>,
    /// How long a device's lease lasts unless renewed ([`DeviceLease`]).
    pub lease_ttl: Duration,
    /// Which labels this station keys (work orders).
    pub order_policy: crate::orders::OrderPolicy,
    /// This station process among all that share the database: holds its leases.
    pub(crate) holder: String,
}

/// How a session over a link ended.
#[derive(Debug)]
pub struct SessionRun {
    pub result: Result<SessionOutcome, SessionOrLinkError>,
    /// Whether the request (for a delivery, the key) may have left the station.
    pub request_sent: bool,
    /// Messages received that were not this session's, dropped.
    pub dropped: u64,
}

/// Runs one session to its end over `link`.
///
/// Whatever the link holds from before is discarded first; messages that arrive during the
/// session but are not its own are dropped (and logged) by the session.
pub async fn run_session<L: Link>(
    link: &mut L,
    mut session: StationSession,
    first: Vec<u8>,
    mut progress: impl FnMut(Progress),
) -> SessionRun {
    let port = link.info().port;
    let result = async {
        link.discard_received()?;
        link.send(&first).await?;
        loop {
            let Some(deadline) = session.poll_timeout() else {
                return Err(SessionError::ProtocolViolation("session ended without an outcome".into()).into());
            };
            match tokio::time::timeout_at(deadline.into(), link.recv()).await {
                Err(_elapsed) => session.handle_timeout(Instant::now())?,
                Ok(received) => {
                    let sent_before = session.request_sent();
                    let step = session.handle_message(&received?, Instant::now())?;
                    if let Some(stray) = &step.dropped {
                        warn!(%port, session = %session.session_id(), %stray, "dropped a message that is not this session's");
                    }
                    for message in step.transmit {
                        link.send(&message).await?;
                    }
                    if !sent_before && session.request_sent() {
                        progress(Progress::KeySent);
                    }
                    if let Some(outcome) = step.outcome {
                        return Ok(outcome);
                    }
                }
            }
        }
    }
    .await;
    if let Err(SessionOrLinkError::Session(error)) = &result
        && let Some(abort) = session.abort_message(error)
    {
        // Best effort: tell the device at once instead of leaving it to its idle timeout.
        let _ = link.send(&abort).await;
    }
    if session.dropped() > 0 {
        info!(%port, dropped = session.dropped(), "messages of other sessions were dropped during this session");
    }
    SessionRun { result, request_sent: session.request_sent(), dropped: session.dropped() }
}

fn new_device(payload: &OnboardingPayload, station: &UnlockedStation) -> Result<NewDevice, SealError> {
    let (mode, public_key, sealed_secret) = match &payload.credential {
        DeviceCredential::Identity { public_key } => ("identity", Some(public_key.to_vec()), None),
        DeviceCredential::SetupSecret(secret) => {
            let sealed = station.master_key.seal(&seal::setup_secret_context(&payload.device_id), &secret.0)?;
            ("secret", None, Some(sealed))
        }
    };
    Ok(NewDevice {
        id: payload.device_id.to_hex(),
        name: payload.name.as_str().to_owned(),
        serial_number: payload.serial_number.clone(),
        credential_mode: mode,
        identity_public_key: public_key,
        sealed_setup_secret: sealed_secret,
        model: payload.model.clone(),
    })
}

impl Station {
    pub fn new(inventory: Inventory, unlocked: UnlockedStation, actor: Actor) -> Self {
        let tag = seal::random_array::<8>().map(hex::encode).unwrap_or_else(|_| "-".into());
        let holder = crate::lease::process_holder(&hex::encode(unlocked.info.station_id), &tag);
        Station {
            inventory,
            unlocked,
            actor,
            timeouts: SessionTimeouts::default(),
            key_source: Arc::new(SystemKeys),
            lease_ttl: DEFAULT_LEASE,
            order_policy: crate::orders::OrderPolicy::default(),
            holder,
        }
    }

    /// [`Station::new`], after checking that this station's master key is the one the
    /// inventory's secrets are sealed under (a database shared by several stations has one),
    /// recording the station in the inventory, and giving keys recorded before check values
    /// existed their values.
    pub async fn start(inventory: Inventory, unlocked: UnlockedStation, actor: Actor) -> Result<Self, DbError> {
        crate::fleet::claim_inventory(&inventory, &unlocked).await?;
        crate::check_values::backfill(&inventory, &unlocked.master_key).await?;
        crate::audit::record_unlock(&inventory, &unlocked.home, &actor).await?;
        Ok(Station::new(inventory, unlocked, actor))
    }

    pub(crate) fn station_id(&self) -> String {
        hex::encode(self.unlocked.info.station_id)
    }

    /// The work order the device is keyed under, if any; refused when this station's order
    /// policy does not admit its label ([`crate::orders::OrderPolicy`]). Checked again when the
    /// device is provisioned; a caller may ask first, before it opens a link.
    pub async fn admitted(&self, payload: &OnboardingPayload) -> Result<Option<String>, ProvisionError> {
        self.order_policy.admit(self.inventory.pool(), payload).await.map_err(|error| match error {
            crate::orders::AdmitError::NotAdmitted(refused) => ProvisionError::NotAdmitted(refused),
            crate::orders::AdmitError::Db(error) => ProvisionError::Db(error),
        })
    }

    /// Starts a session with a fresh random id.
    fn start_session(
        &self,
        payload: &OnboardingPayload,
        request: Request,
    ) -> Result<(StationSession, Vec<u8>), ProvisionError> {
        let session_id = SessionId(seal::random_array()?);
        StationSession::start(&self.unlocked.credentials, payload, request, session_id, self.timeouts, Instant::now())
            .map_err(ProvisionError::Setup)
    }

    /// Provisions the device described by `payload` over `link`, under a lease of its own.
    pub async fn provision<L: Link>(
        &self,
        link: &mut L,
        payload: &OnboardingPayload,
        progress: impl FnMut(Progress),
    ) -> Result<ProvisionReport, ProvisionError> {
        let lease = self.lease(&payload.device_id.to_hex(), Purpose::Provision).await?;
        let result = self.provision_leased(&lease, link, payload, progress).await;
        lease.release().await;
        result
    }

    /// Provisions the device described by `payload` over `link`; `lease` is its lease, taken
    /// before the link was opened.
    pub async fn provision_leased<L: Link>(
        &self,
        lease: &DeviceLease,
        link: &mut L,
        payload: &OnboardingPayload,
        mut progress: impl FnMut(Progress),
    ) -> Result<ProvisionReport, ProvisionError> {
        let pool = self.inventory.pool();
        let id = payload.device_id.to_hex();
        let LinkInfo { transport, port } = link.info();
        if let Some(existing) = devices::get(pool, &id).await? {
            match existing.state {
                DeviceState::Provisioned => {
                    return Err(ProvisionError::AlreadyProvisioned { name: existing.name, id });
                }
                DeviceState::Pending => {
                    progress(Progress::Reconciling);
                    if self.reconcile_leased(lease, link, &existing).await? == ReconcileVerdict::Provisioned {
                        let device = devices::get(pool, &id).await?.ok_or(ProvisionError::UnknownDevice(id))?;
                        return Ok(ProvisionReport { device, reconciled: true });
                    }
                }
                DeviceState::Failed => {}
            }
        }

        let order = self.admitted(payload).await?;
        let key = self.key_source.new_key()?;
        let check_value = KeyCheckValue::of(&key);
        let key_id = seal::random_array::<16>()?;
        let key_id_hex = hex::encode(key_id);
        let sealed_key =
            self.unlocked.master_key.seal(&seal::device_key_context(&payload.device_id, &key_id), key.expose())?;
        let record = new_device(payload, &self.unlocked)?;
        let gate = self.inventory.write_gate().await;
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        self.fence(lease, &mut tx).await?;
        devices::begin_provisioning(&mut tx, &record, &key_id_hex, transport, &port).await?;
        if let Some(order) = &order {
            devices::set_order(&mut tx, &id, order).await?;
        }
        let station_id = self.station_id();
        let new_key = keys::NewKey {
            state: keys::NewKeyState::Pending,
            key_id: &key_id_hex,
            device_id: &id,
            kind: KEY_KIND,
            sealed_key: &sealed_key,
            check_value,
            station_id: &station_id,
        };
        if let Err(error) = keys::insert(&mut tx, new_key).await {
            drop(tx);
            drop(gate);
            if let DbError::DuplicateKey { check_value } = &error {
                self.record_duplicate(&id, check_value).await;
            }
            return Err(error.into());
        }
        events::record(
            &mut tx,
            &self.actor,
            Some(&id),
            "key_generated",
            &format!("key {key_id_hex} over {transport} {port}"),
        )
        .await?;
        commit(tx, "pending").await?;
        drop(gate);
        progress(Progress::KeyGenerated { key_id: key_id_hex.clone() });
        info!(device = %payload.name, id = %id, key_id = %key_id_hex, %transport, %port, "provisioning");

        let delivery = KeyDelivery {
            device_id: payload.device_id,
            key_id,
            key,
            kind: KeyKind::E4SymmetricClientKey,
            issued_at: unix_now(),
            station_id: self.unlocked.info.station_id,
        };
        let (session, first) = self.start_session(payload, Request::Deliver(delivery))?;
        progress(Progress::Handshake);
        let SessionRun { result, request_sent: key_sent, .. } = run_session(link, session, first, &mut progress).await;
        match result {
            Ok(SessionOutcome::Confirmed { .. }) => {
                let _gate = self.inventory.write_gate().await;
                let mut tx = pool.begin().await.map_err(DbError::from)?;
                self.fence(lease, &mut tx).await?;
                keys::mark_active(&mut tx, &key_id_hex).await?;
                devices::mark_provisioned(&mut tx, &id, &key_id_hex, transport, &port).await?;
                events::record(&mut tx, &self.actor, Some(&id), "provisioned", &format!("key {key_id_hex} confirmed"))
                    .await?;
                lease.release_in(&mut tx).await?;
                commit(tx, "provisioned").await?;
                lease.released_with();
                progress(Progress::Confirmed);
                info!(device = %payload.name, id = %id, key_id = %key_id_hex, "provisioned");
                let device = devices::get(pool, &id).await?.ok_or(ProvisionError::UnknownDevice(id))?;
                Ok(ProvisionReport { device, reconciled: false })
            }
            Ok(other) => {
                let source = SessionError::ProtocolViolation(format!("unexpected outcome {other:?}")).into();
                self.record_failure(lease, &id, &key_id_hex, key_sent, source).await
            }
            Err(source) => self.record_failure(lease, &id, &key_id_hex, key_sent, source).await,
        }
    }

    /// A refused duplicate leaves an event (the check value only, which says nothing of the key)
    /// for the security team; the refusal itself is the caller's error.
    async fn record_duplicate(&self, id: &str, check_value: &str) {
        warn!(device = id, check_value, "a newly generated key duplicates a key already in the inventory; refused");
        let detail =
            format!("a new key for this device had check value {check_value}, already in the inventory: refused");
        let recorded = async {
            let _gate = self.inventory.write_gate().await;
            let mut tx = self.inventory.pool().begin().await.map_err(DbError::from)?;
            events::record(&mut tx, &self.actor, Some(id), "duplicate_key_refused", &detail).await?;
            commit(tx, "duplicate-key-refused").await
        };
        if let Err(error) = recorded.await {
            warn!(device = id, %error, "could not record the refused duplicate key");
        }
    }

    async fn record_failure(
        &self,
        lease: &DeviceLease,
        id: &str,
        key_id: &str,
        key_sent: bool,
        source: SessionOrLinkError,
    ) -> Result<ProvisionReport, ProvisionError> {
        let pool = self.inventory.pool();
        let reason = source.to_string();
        // A device that declined inside the session did not store the key, except when its
        // storage failed midway: then only asking it again can tell.
        let declined = matches!(
            &source,
            SessionOrLinkError::Session(SessionError::DeclinedByDevice { reason }) if *reason != AbortReason::StorageFailed
        );
        if key_sent && !declined {
            warn!(id, key_id, %reason, "key sent but not confirmed; record stays pending");
            let _gate = self.inventory.write_gate().await;
            let mut tx = pool.begin().await.map_err(DbError::from)?;
            self.fence(lease, &mut tx).await?;
            devices::note_pending(&mut tx, id, &format!("unconfirmed: {reason}")).await?;
            events::record(&mut tx, &self.actor, Some(id), "unconfirmed", &reason).await?;
            lease.release_in(&mut tx).await?;
            commit(tx, "unconfirmed").await?;
            lease.released_with();
            return Err(ProvisionError::Unconfirmed { source });
        }
        warn!(id, key_id, %reason, key_sent, "provisioning failed; the device does not hold the key");
        let _gate = self.inventory.write_gate().await;
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        self.fence(lease, &mut tx).await?;
        keys::mark_failed(&mut tx, key_id).await?;
        devices::mark_failed(&mut tx, id, &reason).await?;
        events::record(&mut tx, &self.actor, Some(id), "failed", &reason).await?;
        lease.release_in(&mut tx).await?;
        commit(tx, "failed").await?;
        lease.released_with();
        Err(ProvisionError::Failed { source })
    }

    /// Records how a provisioning the operator cancelled left the device, as a failure is
    /// recorded: a key that left may be on the device, so the record stays pending and the next
    /// provisioning asks the device first; a key that never left is failed.
    pub async fn settle_cancelled(
        &self,
        lease: &DeviceLease,
        id: &str,
        key_id: &str,
        key_sent: bool,
    ) -> Result<(), ProvisionError> {
        let pool = self.inventory.pool();
        let _gate = self.inventory.write_gate().await;
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        self.fence(lease, &mut tx).await?;
        if key_sent {
            let note = "cancelled by the operator after the key was sent";
            devices::note_pending(&mut tx, id, note).await?;
            events::record(&mut tx, &self.actor, Some(id), "unconfirmed", note).await?;
        } else {
            let reason = "cancelled by the operator before the key was sent";
            keys::mark_failed(&mut tx, key_id).await?;
            devices::mark_failed(&mut tx, id, reason).await?;
            events::record(&mut tx, &self.actor, Some(id), "failed", reason).await?;
        }
        commit(tx, "cancelled").await?;
        Ok(())
    }

    /// Rebuilds what the label said, from the inventory, to authenticate the device again.
    fn payload_of(&self, device: &Device) -> Result<OnboardingPayload, ProvisionError> {
        let device_id = DeviceId::from_hex(&device.id)
            .ok_or_else(|| DbError::Inconsistent(format!("bad device id {}", device.id)))?;
        let credential = match (device.identity_public_key.as_deref(), device.sealed_setup_secret.as_deref()) {
            (Some(public_key), _) => DeviceCredential::Identity {
                public_key: public_key.try_into().map_err(|_| DbError::Inconsistent("identity key length".into()))?,
            },
            (None, Some(sealed)) => {
                let secret = self.unlocked.master_key.open_setup_secret(&device_id, &device.name, sealed)?;
                let bytes: [u8; 16] =
                    secret.as_slice().try_into().map_err(|_| DbError::Inconsistent("setup secret length".into()))?;
                DeviceCredential::SetupSecret(SetupSecret(bytes))
            }
            (None, None) => {
                return Err(DbError::Inconsistent(format!("device {} has no credential", device.id)).into());
            }
        };
        // An inventory written by an earlier version may hold a name that is no device name.
        let name = DeviceName::parse(&device.name).map_err(|error| {
            DbError::Inconsistent(format!("device {}: its stored name is not a valid device name: {error}", device.id))
        })?;
        Ok(OnboardingPayload {
            name,
            device_id,
            serial_number: device.serial_number.clone(),
            credential,
            hints: TransportHints::default(),
            model: device.model.clone(),
        })
    }

    /// Gives up on a `pending` device that cannot be asked any more (replaced, destroyed or
    /// re-initialised): the record becomes `failed`, the pending key stays sealed for the audit
    /// trail. An operator decision, recorded with its reason.
    pub async fn abandon(&self, device: &Device, reason: &str) -> Result<(), ProvisionError> {
        if device.state != DeviceState::Pending {
            return Err(ProvisionError::NotPending { id: device.id.clone(), state: device.state.as_str() });
        }
        let lease = self.lease(&device.id, Purpose::Abandon).await?;
        let result = self.abandon_leased(&lease, device, reason).await;
        lease.release().await;
        result
    }

    async fn abandon_leased(&self, lease: &DeviceLease, device: &Device, reason: &str) -> Result<(), ProvisionError> {
        let pool = self.inventory.pool();
        // Read again under the lease: another station may have resolved it meanwhile.
        let device =
            devices::get(pool, &device.id).await?.ok_or_else(|| ProvisionError::UnknownDevice(device.id.clone()))?;
        if device.state != DeviceState::Pending {
            return Err(ProvisionError::NotPending { id: device.id.clone(), state: device.state.as_str() });
        }
        let _gate = self.inventory.write_gate().await;
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        self.fence(lease, &mut tx).await?;
        if let Some(key_id) = &device.key_id {
            keys::mark_failed(&mut tx, key_id).await?;
        }
        devices::mark_failed(&mut tx, &device.id, &format!("abandoned: {reason}")).await?;
        events::record(&mut tx, &self.actor, Some(&device.id), "abandoned", reason).await?;
        commit(tx, "abandoned").await?;
        warn!(id = %device.id, %reason, "pending record abandoned");
        Ok(())
    }

    /// Resolves a `pending` device by asking it over `link` whether it holds the pending key,
    /// under a lease of its own.
    pub async fn reconcile<L: Link>(&self, link: &mut L, device: &Device) -> Result<ReconcileVerdict, ProvisionError> {
        if device.state != DeviceState::Pending {
            return Err(ProvisionError::NotPending { id: device.id.clone(), state: device.state.as_str() });
        }
        let lease = self.lease(&device.id, Purpose::Reconcile).await?;
        let result = self.reconcile_leased(&lease, link, device).await;
        lease.release().await;
        result
    }

    /// [`Station::reconcile`] under `lease`.
    pub async fn reconcile_leased<L: Link>(
        &self,
        lease: &DeviceLease,
        link: &mut L,
        device: &Device,
    ) -> Result<ReconcileVerdict, ProvisionError> {
        let pool = self.inventory.pool();
        // Read again under the lease: another station may have resolved it meanwhile.
        let device =
            &devices::get(pool, &device.id).await?.ok_or_else(|| ProvisionError::UnknownDevice(device.id.clone()))?;
        if device.state != DeviceState::Pending {
            return Err(ProvisionError::NotPending { id: device.id.clone(), state: device.state.as_str() });
        }
        let key_id_hex =
            device.key_id.clone().ok_or_else(|| DbError::Inconsistent("pending device without key".into()))?;
        let row = keys::get(pool, &key_id_hex)
            .await?
            .ok_or_else(|| DbError::Inconsistent(format!("missing key {key_id_hex}")))?;
        let payload = self.payload_of(device)?;
        let key_id: [u8; 16] = hex::decode(&key_id_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| DbError::Inconsistent("bad key id".into()))?;
        let key =
            self.unlocked.master_key.open_device_key(&payload.device_id, &device.name, &key_id, &row.sealed_key)?;
        let (session, first) = self.start_session(&payload, Request::QueryKey { key_id, key })?;
        let result = run_session(link, session, first, |_| {}).await.result;
        let LinkInfo { transport, port } = link.info();
        let _gate = self.inventory.write_gate().await;
        let mut tx = pool.begin().await.map_err(DbError::from)?;
        self.fence(lease, &mut tx).await?;
        let verdict = match result {
            Ok(SessionOutcome::KeyHeld { .. }) => {
                keys::mark_active(&mut tx, &key_id_hex).await?;
                devices::mark_provisioned(&mut tx, &device.id, &key_id_hex, transport, &port).await?;
                events::record(
                    &mut tx,
                    &self.actor,
                    Some(&device.id),
                    "reconciled",
                    "device proved it holds the pending key",
                )
                .await?;
                ReconcileVerdict::Provisioned
            }
            Ok(SessionOutcome::KeyNotHeld { .. }) => {
                keys::mark_failed(&mut tx, &key_id_hex).await?;
                devices::mark_failed(&mut tx, &device.id, "device does not hold the pending key").await?;
                events::record(
                    &mut tx,
                    &self.actor,
                    Some(&device.id),
                    "reconciled",
                    "device does not hold the pending key",
                )
                .await?;
                ReconcileVerdict::Failed
            }
            Ok(SessionOutcome::Confirmed { .. }) => {
                return Err(ProvisionError::ReconcileIncomplete {
                    source: SessionError::ProtocolViolation("confirmation in a status session".into()).into(),
                });
            }
            Err(source) => return Err(ProvisionError::ReconcileIncomplete { source }),
        };
        commit(tx, "reconciled").await?;
        info!(id = %device.id, ?verdict, "reconciled");
        Ok(verdict)
    }
}
