//! A station that answers every command at once with the events the real one would send, from
//! an in-memory inventory. For the screen tests (deterministic: no threads, no clock) and the
//! screenshots. A test holds a [`FakeControl`] to change its behaviour and read what it was
//! asked, and to play the devices' part (a device saying hello to a watch: [`FakeControl::contact`]).
//!
//! - [`demo`]: the sample station of the screenshots and `keyfill-gui --demo`.
//! - `devices`, `rotation`, `export`: the answers, by screen.

mod custody;
mod demo;
mod devices;
mod export;
mod rotation;

pub use custody::{FakeCustody, FakeOperator};
pub use demo::demo_state;

use crate::bridge::EventSender;
use crate::device_index::DeviceIndex;
use crate::messages::{
    Command, Event, JobId, LabelSaved, LinkReport, ProvisionRequest, ProvisionUpdate, RotationRow, SignedIn,
    StationIdentity, StationSummary,
};
use crate::problem::Problem;
use crate::station_handle::StationHandle;
use keyfill_formats::qr::DeviceCredential;
use keyfill_station::db::devices::{Device, DeviceState, resolve_among};
use keyfill_station::db::events::{EventFilter, LoggedEvent};
use keyfill_station::db::now_millis;
use keyfill_station::db::orders::OrderCounts;
use keyfill_station::detect::{LinkTarget, SerialPortInfo};
use keyfill_station::home::HomeError;
use keyfill_station::provision::{Progress, ReconcileVerdict};
use keyfill_station::seal::SealError;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// What the fake station holds and how it behaves.
#[derive(Debug)]
pub struct FakeState {
    pub summary: StationSummary,
    pub passphrase: String,
    pub devices: Vec<Device>,
    /// Newest last.
    pub history: Vec<LoggedEvent>,
    pub links: LinkReport,
    /// The next provisioning fails with this problem after the handshake.
    pub provision_failure: Option<Problem>,
    /// Provisionings stop once the key is sent, until [`FakeControl::finish_provisioning`].
    pub hold_provisioning: bool,
    /// Commands received, by [`Command::name`].
    pub received: Vec<&'static str>,
    /// The device list is indexed but not sent until [`FakeControl::release_device_list`].
    pub hold_device_list: bool,
    /// What a pending device answers when asked about its key; `None`: it holds it.
    pub reconcile_answer: Option<Result<ReconcileVerdict, Problem>>,
    /// Devices (by name) that never confirm a rotation.
    pub rotation_unconfirmed: Vec<String>,
    /// Provisionings stop once the handshake started (a device that does not answer), until
    /// cancelled.
    pub hold_at_handshake: bool,
    /// A batch rotation stops after the first attempts until [`FakeControl::finish_rotation`].
    pub hold_rotation: bool,
    /// Open work orders: id and how many devices each expects.
    pub orders: Vec<(String, i64)>,
    /// Named operators ([`FakeState::with_named_operators`]); `None`: the master passphrase.
    pub custody: Option<FakeCustody>,
    /// Who logged in, at a station with named operators: the operator of every event.
    pub actor: Option<SignedIn>,
    held: Option<ProvisionRequest>,
    /// Whether the held provisioning had sent its key.
    held_key_sent: bool,
    held_rotation: Vec<Device>,
    held_index: Option<DeviceIndex>,
    lock_waiting: bool,
    /// The broker of the watch for first contact running now.
    watching: Option<String>,
    watch_rows: Vec<RotationRow>,
}

impl FakeState {
    /// An empty, initialised station whose passphrase is `passphrase`.
    pub fn new(passphrase: &str) -> Self {
        FakeState {
            summary: StationSummary {
                home: PathBuf::from("/var/lib/keyfill"),
                database: "sqlite:///var/lib/keyfill/keyfill.db".into(),
                operator: "operator".into(),
                identity: Some(StationIdentity {
                    name: "line-3-station".into(),
                    id: "5f0c1e2d3a4b5c6d7e8f901a2b3c4d5e".into(),
                    token: None,
                }),
                custody: None,
            },
            passphrase: passphrase.to_owned(),
            devices: Vec::new(),
            history: Vec::new(),
            links: LinkReport {
                serial: Ok(vec![SerialPortInfo {
                    path: "/dev/ttyUSB0".into(),
                    description: "USB 0403:6001 FTDI FT232R USB UART".into(),
                    usb: true,
                }]),
                pcsc: Err(Problem::new(
                    "PC/SC: pcscd is not running",
                    "Start pcscd (systemctl start pcscd) and connect the reader, then detect again.",
                )),
                ble: Err(Problem::new(
                    "BLE: no Bluetooth adapter",
                    "Plug in a Bluetooth adapter and check that bluetoothd runs.",
                )),
            },
            provision_failure: None,
            hold_provisioning: false,
            received: Vec::new(),
            hold_device_list: false,
            reconcile_answer: None,
            rotation_unconfirmed: Vec::new(),
            hold_at_handshake: false,
            hold_rotation: false,
            orders: Vec::new(),
            custody: None,
            actor: None,
            held: None,
            held_key_sent: false,
            held_rotation: Vec::new(),
            held_index: None,
            lock_waiting: false,
            watching: None,
            watch_rows: Vec::new(),
        }
    }

    /// The open orders' progress, counted from the devices as the station counts it.
    pub fn order_counts(&self) -> Vec<OrderCounts> {
        self.orders
            .iter()
            .map(|(id, expected)| {
                let on_order = || self.devices.iter().filter(|d| d.order_id.as_deref() == Some(id.as_str()));
                let count = |state: DeviceState| on_order().filter(|d| d.state == state).count() as i64;
                let (provisioned, failed, pending) =
                    (count(DeviceState::Provisioned), count(DeviceState::Failed), count(DeviceState::Pending));
                OrderCounts {
                    id: id.clone(),
                    state: "open".into(),
                    imported_at: 0,
                    closed_at: None,
                    expected: *expected,
                    provisioned,
                    failed,
                    pending,
                    not_started: (*expected - provisioned - failed - pending).max(0),
                }
            })
            .collect()
    }

    fn record(&mut self, device: Option<&Device>, kind: &str, detail: String) {
        let id = self.history.last().map_or(1, |event| event.id + 1);
        self.history.push(LoggedEvent {
            id,
            at: now_millis(),
            device_id: device.map(|d| d.id.clone()),
            device_name: device.map(|d| d.name.clone()),
            station_id: self.summary.identity.as_ref().map(|i| i.id.clone()).unwrap_or_default(),
            operator: self.actor.as_ref().map_or_else(|| self.summary.operator.clone(), |actor| actor.name.clone()),
            kind: kind.to_owned(),
            detail,
        });
    }

    /// The device `reference` names, by the station's own rules (an ambiguous one names none).
    fn find(&self, reference: &str) -> Option<&Device> {
        let id = resolve_among(&self.devices, reference).ok()?.id;
        self.devices.iter().find(|d| d.id == id)
    }

    fn find_mut(&mut self, reference: &str) -> Option<&mut Device> {
        let id = resolve_among(&self.devices, reference).ok()?.id;
        self.devices.iter_mut().find(|d| d.id == id)
    }

    fn upsert(&mut self, device: Device) {
        match self.devices.iter_mut().find(|d| d.id == device.id) {
            Some(slot) => *slot = device,
            None => self.devices.push(device),
        }
    }
}

/// A device record as the station writes it for `request`'s label over its link.
pub fn device_for(request: &ProvisionRequest, state: DeviceState, key_id: &str) -> Device {
    let payload = &request.payload;
    let (transport, port) = match &request.link {
        LinkTarget::Serial { path, .. } => ("serial", path.display().to_string()),
        LinkTarget::Pcsc { reader } => ("pcsc", reader.clone().unwrap_or_else(|| "reader 0".into())),
        LinkTarget::Ble { target, .. } => ("ble", target.clone().unwrap_or_else(|| payload.name.as_str().to_owned())),
    };
    let (mode, public_key) = match &payload.credential {
        DeviceCredential::Identity { public_key } => ("identity", Some(public_key.to_vec())),
        DeviceCredential::SetupSecret(_) => ("secret", None),
    };
    let now = now_millis();
    Device {
        id: payload.device_id.to_hex(),
        name: payload.name.as_str().to_owned(),
        serial_number: payload.serial_number.clone(),
        credential_mode: mode.into(),
        identity_public_key: public_key,
        sealed_setup_secret: None,
        model: payload.model.clone(),
        state,
        transport: Some(transport.into()),
        port: Some(port),
        key_id: Some(key_id.into()),
        failure: None,
        created_at: now,
        updated_at: now,
        provisioned_at: (state == DeviceState::Provisioned).then_some(now),
        rotation: None,
        rotation_attempts: None,
        order_id: request.order.clone(),
    }
}

/// 32 hex digits that look like a random key id, the same for the same seed.
pub(crate) fn fake_hex(seed: u64) -> String {
    format!("{:032x}", (u128::from(seed) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
}

/// The test's handle on the fake station.
#[derive(Debug, Clone)]
pub struct FakeControl {
    state: Arc<Mutex<FakeState>>,
    events: Arc<Mutex<Option<EventSender>>>,
}

impl FakeControl {
    pub fn new(state: FakeState) -> Self {
        FakeControl { state: Arc::new(Mutex::new(state)), events: Arc::default() }
    }

    /// For [`crate::bridge::Bridge::new`]: starts the fake station on the bridge's event channel.
    pub fn connect(&self) -> impl FnOnce(EventSender) -> Box<dyn StationHandle> + use<> {
        let control = self.clone();
        move |events| {
            *control.events.lock().unwrap_or_else(PoisonError::into_inner) = Some(events.clone());
            events.send(Event::Station(control.with(|state| state.summary.clone())));
            Box::new(FakeStation { control })
        }
    }

    pub fn with<R>(&self, change: impl FnOnce(&mut FakeState) -> R) -> R {
        change(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn received(&self) -> Vec<&'static str> {
        self.with(|state| state.received.clone())
    }

    fn send(&self, event: Event) {
        if let Some(events) = self.events.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            events.send(event);
        }
    }

    /// Completes a provisioning held by [`FakeState::hold_provisioning`] (and a lock waiting on it).
    pub fn finish_provisioning(&self) {
        let (held, lock_waiting) = self.with(|state| (state.held.take(), std::mem::take(&mut state.lock_waiting)));
        if let Some(request) = held {
            self.complete(&request);
        }
        if lock_waiting {
            self.send(Event::Locked);
        }
    }

    fn complete(&self, request: &ProvisionRequest) {
        let key_id = fake_hex(request.job);
        let device = device_for(request, DeviceState::Provisioned, &key_id);
        self.with(|state| {
            state.upsert(device.clone());
            state.record(Some(&device), "provisioned", format!("key {key_id} confirmed"));
        });
        self.send(Event::Provision { job: request.job, update: ProvisionUpdate::Step(Progress::Confirmed) });
        self.send(Event::DeviceChanged(device.clone()));
        let update = ProvisionUpdate::Provisioned { device: Box::new(device), reconciled: false };
        self.send(Event::Provision { job: request.job, update });
    }

    fn provision(&self, request: Box<ProvisionRequest>) {
        let job = request.job;
        let step = |progress| self.send(Event::Provision { job, update: ProvisionUpdate::Step(progress) });
        self.send(Event::Provision { job, update: ProvisionUpdate::Opening { link: request.link.describe() } });
        let id = request.payload.device_id.to_hex();
        let already =
            self.with(|state| state.devices.iter().any(|d| d.id == id && d.state == DeviceState::Provisioned));
        if already {
            let update = ProvisionUpdate::AlreadyProvisioned { name: request.payload.name.as_str().to_owned() };
            self.send(Event::Provision { job, update });
            return;
        }
        let key_id = fake_hex(job);
        step(Progress::KeyGenerated { key_id: key_id.clone() });
        step(Progress::Handshake);
        if self.with(|state| state.hold_at_handshake) {
            self.with(|state| {
                state.held = Some(*request);
                state.held_key_sent = false;
            });
            return;
        }
        if let Some(problem) = self.with(|state| state.provision_failure.take()) {
            let mut device = device_for(&request, DeviceState::Failed, &key_id);
            device.failure = Some(problem.message.clone());
            self.with(|state| {
                state.upsert(device.clone());
                state.record(Some(&device), "failed", problem.message.clone());
            });
            self.send(Event::DeviceChanged(device));
            self.send(Event::Provision { job, update: ProvisionUpdate::Failed(problem) });
            return;
        }
        step(Progress::KeySent);
        if self.with(|state| state.hold_provisioning) {
            self.with(|state| {
                state.held = Some(*request);
                state.held_key_sent = true;
            });
        } else {
            self.complete(&request);
        }
    }

    /// As the real station: a provisioning cancelled after its key left stays pending, one
    /// cancelled before is failed.
    fn cancel_provision(&self, job: JobId) {
        let held = self.with(|state| {
            let matches = state.held.as_ref().is_some_and(|held| held.job == job);
            matches.then(|| (state.held.take(), state.held_key_sent))
        });
        let Some((Some(request), key_sent)) = held else { return };
        let key_id = fake_hex(request.job);
        let (state, kind, detail) = if key_sent {
            (DeviceState::Pending, "unconfirmed", "cancelled by the operator after the key was sent")
        } else {
            (DeviceState::Failed, "failed", "cancelled by the operator before the key was sent")
        };
        let mut device = device_for(&request, state, &key_id);
        device.failure = Some(detail.to_owned());
        let lock_waiting = self.with(|fake| {
            fake.upsert(device.clone());
            fake.record(Some(&device), kind, detail.to_owned());
            std::mem::take(&mut fake.lock_waiting)
        });
        self.send(Event::DeviceChanged(device));
        self.send(Event::Provision { job, update: ProvisionUpdate::Cancelled { key_sent } });
        if lock_waiting {
            self.send(Event::Locked);
        }
    }

    fn answer(&self, command: Command) {
        self.with(|state| state.received.push(command.name()));
        // As the real station: a command the logged-in role may not give is refused.
        if let Some(problem) = self.refusal(&command) {
            self.send(Event::Problem { command: command.name(), problem });
            return;
        }
        match command {
            Command::Login(request) => self.login(&request),
            Command::Unlock(_) if self.with(|state| state.custody.is_some()) => {
                self.send(Event::UnlockFailed(crate::problem::Problem::named_operators()));
            }
            Command::Unlock(passphrase) => {
                if self.with(|state| state.passphrase == passphrase.expose()) {
                    self.send(Event::Unlocked);
                } else {
                    self.send(Event::UnlockFailed(Problem::unlock(&HomeError::Seal(SealError::WrongPassphrase))));
                }
            }
            Command::Lock => self.lock(),
            Command::DetectLinks => self.send(Event::Links(self.with(|state| state.links.clone()))),
            Command::Provision(request) => self.provision(request),
            Command::CancelProvision { job } => self.cancel_provision(job),
            Command::LoadDevices => self.load_devices(),
            Command::LoadDeviceDetail { id } => self.detail(&id),
            Command::LoadHistory(query) => {
                let rows = self.with(|state| {
                    state
                        .history
                        .iter()
                        .rev()
                        .filter(|e| matches(e, &query.filter))
                        .take(query.limit as usize)
                        .cloned()
                        .collect()
                });
                self.send(Event::History(rows));
            }
            Command::SaveLabel(request) => {
                let path = request.folder.join(request.file_name());
                let saved = LabelSaved { path, printed_on: request.printer_queue.clone(), print_problem: None };
                self.send(Event::Label { job: request.job, outcome: Ok(saved) });
            }
            Command::Rotate(request) => self.rotate(&request.broker),
            Command::ExportC2(request) => self.export(&request.url),
            Command::WatchRotation(request) => self.watch(&request.broker),
            Command::StopWatch => self.stop_watch(),
            Command::ExportBundle(request) => {
                if self.approved(&request) {
                    self.bundle(&request);
                }
            }
            Command::Reconcile(request) => self.reconcile(&request),
            Command::Abandon(request) => self.abandon(&request),
            Command::LoadOrders => self.send(Event::Orders(self.with(|state| state.order_counts()))),
        }
    }

    /// As the real station: a watch is stopped, a provisioning waited for, then the key dropped.
    fn lock(&self) {
        self.stop_watch();
        self.with(|state| state.actor = None);
        if self.with(|state| state.held.is_some()) {
            self.with(|state| state.lock_waiting = true);
        } else {
            self.send(Event::Locked);
        }
    }
}

fn matches(event: &LoggedEvent, filter: &EventFilter) -> bool {
    let text = filter.text.as_deref().map(str::to_lowercase);
    (filter.kinds.is_empty() || filter.kinds.contains(&event.kind))
        && filter.operator.as_ref().is_none_or(|o| *o == event.operator)
        && filter.device_id.as_ref().is_none_or(|d| event.device_id.as_ref() == Some(d))
        && filter.before_id.is_none_or(|before| event.id < before)
        && text.is_none_or(|text| {
            [Some(&event.detail), Some(&event.kind), event.device_name.as_ref(), event.device_id.as_ref()]
                .into_iter()
                .flatten()
                .any(|field| field.to_lowercase().contains(&text))
        })
}

#[derive(Debug)]
struct FakeStation {
    control: FakeControl,
}

impl StationHandle for FakeStation {
    fn send(&mut self, command: Command) {
        self.control.answer(command);
    }
}
