//! What the UI asks of the station ([`Command`]) and what the station reports back ([`Event`]).
//! Plain data: row types are the station library's own public structs.

use crate::device_index::DeviceIndex;
use crate::problem::Problem;
use keyfill_formats::qr::OnboardingPayload;
use keyfill_station::custody::Role;
use keyfill_station::db::devices::Device;
use keyfill_station::db::events::{Event as StoredEvent, EventFilter, LoggedEvent};
use keyfill_station::db::exports::StoredExport;
use keyfill_station::db::orders::OrderCounts;
use keyfill_station::detect::{BlePeripheral, LinkTarget, SerialPortInfo};
use keyfill_station::export::{DeviceFilter, ItemReport};
use keyfill_station::label::{LabelFormat, LabelSpec};
use keyfill_station::provision::Progress;
use keyfill_station::provision::ReconcileVerdict;
use keyfill_station::rotation::{RotationProgress, RotationSettings};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroizing;

/// Ties the events of one provisioning or label to the request that started it.
pub type JobId = u64;

/// The master-key passphrase on its way to the station: wiped when dropped, never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Takes the text, leaving `typed` empty and its old buffer wiped.
    pub fn take_from(typed: &mut String) -> Self {
        let passphrase = Passphrase(Zeroizing::new(typed.clone()));
        zeroize::Zeroize::zeroize(typed);
        passphrase
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// A named operator's name and passphrase, as typed: for logging in and for approvals.
#[derive(Debug)]
pub struct Credential {
    pub name: String,
    pub passphrase: Passphrase,
}

/// Logging in at a station with named operators: the operator who will act, and (under an
/// unlock quorum of two or more) the other security officers who unlock with them.
#[derive(Debug)]
pub struct LoginRequest {
    pub operator: Credential,
    pub approvers: Vec<Credential>,
}

#[derive(Debug)]
pub enum Command {
    /// Unlocks with the master-key passphrase (or the token's PIN): a station without named
    /// operators.
    Unlock(Passphrase),
    /// Logs operators in and unlocks from their logins: a station with named operators.
    Login(Box<LoginRequest>),
    /// Drops the unlocked master key once the work in progress has finished.
    Lock,
    DetectLinks,
    Provision(Box<ProvisionRequest>),
    /// Stops the provisioning `job`: its session is dropped where it is, and the station
    /// settles the record by whether the key had left.
    CancelProvision {
        job: JobId,
    },
    LoadDevices,
    LoadDeviceDetail {
        id: String,
    },
    LoadHistory(HistoryQuery),
    SaveLabel(Box<LabelRequest>),
    Rotate(RotationRequest),
    ExportC2(ExportRequest),
    /// Rotates devices on their first contact until [`Command::StopWatch`] (or a lock).
    WatchRotation(WatchRequest),
    /// Stops listening for contacts; rotations in flight finish first.
    StopWatch,
    ExportBundle(Box<BundleRequest>),
    /// Asks a pending device over a link whether it holds its key.
    Reconcile(Box<ReconcileRequest>),
    /// Gives up on a pending device that can no longer be asked.
    Abandon(AbandonRequest),
    /// The open work orders with their progress.
    LoadOrders,
}

impl Command {
    /// A short name, for test transcripts and logs (never the passphrase).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Unlock(_) => "unlock",
            Command::Login(_) => "login",
            Command::Lock => "lock",
            Command::DetectLinks => "detect_links",
            Command::Provision(_) => "provision",
            Command::CancelProvision { .. } => "cancel_provision",
            Command::LoadDevices => "load_devices",
            Command::LoadDeviceDetail { .. } => "load_device_detail",
            Command::LoadHistory(_) => "load_history",
            Command::SaveLabel(_) => "save_label",
            Command::Rotate(_) => "rotate",
            Command::ExportC2(_) => "export_c2",
            Command::WatchRotation(_) => "watch_rotation",
            Command::StopWatch => "stop_watch",
            Command::ExportBundle(_) => "export_bundle",
            Command::Reconcile(_) => "reconcile",
            Command::Abandon(_) => "abandon",
            Command::LoadOrders => "load_orders",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub job: JobId,
    pub link: LinkTarget,
    /// How long to wait for a card to be presented or a BLE device to advertise.
    pub card_wait: Duration,
    pub payload: OnboardingPayload,
    /// The work order the operator is keying: a label that is not on it is refused before the
    /// link is opened.
    pub order: Option<String>,
}

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub limit: u32,
    pub filter: EventFilter,
}

/// A label for a provisioned device: saved to `folder`, printed if `printer_queue` is set.
#[derive(Debug, Clone)]
pub struct LabelRequest {
    pub job: JobId,
    pub device: Device,
    pub folder: PathBuf,
    pub format: LabelFormat,
    pub spec: LabelSpec,
    pub printer_queue: Option<String>,
}

impl LabelRequest {
    /// `sensor-0042-3f1a2b3c.png`: the name made safe for any file system, and the start of the id.
    pub fn file_name(&self) -> String {
        let name: String = self
            .device
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
            .collect();
        let id = self.device.id.get(..8).unwrap_or(&self.device.id);
        format!("{}-{id}.{}", name.trim_start_matches('.'), self.format.extension())
    }
}

#[derive(Debug, Clone)]
pub enum RotationTargets {
    /// Every provisioned device without a completed rotation (and interrupted ones).
    AllUnrotated,
    /// These devices, by id or name.
    Devices(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RotationRequest {
    pub broker: String,
    pub targets: RotationTargets,
    pub settings: RotationSettings,
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub filter: DeviceFilter,
    pub replace_foreign: bool,
}

/// Public facts about the station, known before it is unlocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationSummary {
    pub home: PathBuf,
    /// The database URL with any password hidden.
    pub database: String,
    pub operator: String,
    /// `None` when the home is not initialised.
    pub identity: Option<StationIdentity>,
    /// The custody policy when the station has named operators (its home holds
    /// `custody.json`); `None`: it unlocks with the master-key passphrase.
    pub custody: Option<CustodySummary>,
}

/// What the unlock form and the approval dialog need of a station's custody policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustodySummary {
    /// 1: any operator's login unlocks; M ≥ 2: M security officers log in together.
    pub unlock_quorum: u8,
    /// Security officers approving a dual-control operation (a bundle export).
    pub approvals: u8,
}

/// The operator logged in at a station with named operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationIdentity {
    pub name: String,
    pub id: String,
    /// The label of the PKCS#11 token that holds the station's keys, if one does: it is then
    /// unlocked with the token's PIN.
    pub token: Option<String>,
}

#[derive(Debug)]
pub enum Event {
    /// Sent once at start: who the station is, where its state lives.
    Station(StationSummary),
    Unlocked,
    /// Who logged in, at a station with named operators: sent just before [`Event::Unlocked`].
    LoggedIn(SignedIn),
    UnlockFailed(Problem),
    /// The security officers' approval of a dual-control operation was refused (a wrong
    /// passphrase, too few officers): nothing was done; the approval dialog shows why.
    /// `command` is [`Command::name`] of the operation.
    ApprovalRefused {
        command: &'static str,
        problem: Problem,
    },
    /// The master key is dropped.
    Locked,
    Links(LinkReport),
    Provision {
        job: JobId,
        update: ProvisionUpdate,
    },
    /// One device's record changed (provisioned, failed, now pending).
    DeviceChanged(Device),
    DeviceDetail(DeviceDetail),
    History(Vec<LoggedEvent>),
    Label {
        job: JobId,
        outcome: Result<LabelSaved, Problem>,
    },
    Rotation(RotationUpdate),
    Export(ExportUpdate),
    Watch(WatchUpdate),
    Bundle(Result<BundleWritten, BundleRefused>),
    /// How asking a pending device ended; its new record follows as [`Event::DeviceChanged`].
    Reconciled {
        device_id: String,
        outcome: Result<ReconcileVerdict, Problem>,
    },
    /// How abandoning a pending device ended; its new record follows as [`Event::DeviceChanged`].
    Abandoned {
        device_id: String,
        outcome: Result<(), Problem>,
    },
    /// The whole inventory, already indexed for search by the station side so that the UI
    /// thread only swaps it in: the answer to [`Command::LoadDevices`].
    DeviceIndex(Box<DeviceIndex>),
    /// The open work orders, oldest first: the answer to [`Command::LoadOrders`].
    Orders(Vec<OrderCounts>),
    /// A command failed outside any job (the database, a locked station); `command` is
    /// [`Command::name`] of the one that failed.
    Problem {
        command: &'static str,
        problem: Problem,
    },
}

/// What each link detector found, or why it found nothing.
#[derive(Debug, Clone)]
pub struct LinkReport {
    pub serial: Result<Vec<SerialPortInfo>, Problem>,
    pub pcsc: Result<Vec<String>, Problem>,
    pub ble: Result<Vec<BlePeripheral>, Problem>,
}

#[derive(Debug, Clone)]
pub enum ProvisionUpdate {
    /// Opening the link (waiting for a card or an advertisement on PC/SC and BLE).
    Opening {
        link: String,
    },
    Step(Progress),
    Provisioned {
        device: Box<Device>,
        reconciled: bool,
    },
    /// The device already holds its key from this station: nothing was done.
    AlreadyProvisioned {
        name: String,
    },
    /// The operator cancelled. `key_sent`: the key may be on the device, so the record stays
    /// pending (the next provisioning asks the device first); otherwise it is marked failed.
    Cancelled {
        key_sent: bool,
    },
    Failed(Problem),
}

#[derive(Debug, Clone)]
pub struct DeviceDetail {
    pub device: Device,
    pub history: Vec<StoredEvent>,
    pub exports: Vec<StoredExport>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSaved {
    pub path: PathBuf,
    /// The queue the label went to, if one is configured.
    pub printed_on: Option<String>,
    /// Printing was asked for and failed; the file is saved all the same.
    pub print_problem: Option<Problem>,
}

/// One device's rotation result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRow {
    pub device_id: String,
    pub name: String,
    /// The confirmed new key id, or why not.
    pub result: Result<String, String>,
}

#[derive(Debug, Clone)]
pub enum RotationUpdate {
    Started {
        total: usize,
        broker: String,
    },
    /// A device's rotation moved on, with its name for the table.
    Progress {
        device_id: String,
        name: String,
        progress: RotationProgress,
    },
    Finished(Vec<RotationRow>),
    Failed(Problem),
}

#[derive(Debug, Clone)]
pub enum ExportUpdate {
    /// Asking C2 for its crypto mode and its clients.
    Connecting {
        target: String,
    },
    Started {
        total: usize,
    },
    Item(ItemReport),
    Finished {
        target: String,
        run_id: String,
        reports: Vec<ItemReport>,
    },
    Failed(Problem),
}

#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub broker: String,
    pub settings: RotationSettings,
}

#[derive(Debug, Clone)]
pub enum WatchUpdate {
    /// Connected and subscribed: listening for hellos and late confirmations.
    Watching {
        broker: String,
    },
    /// A device's rotation moved on, with its name for the table.
    Progress {
        device_id: String,
        name: String,
        progress: RotationProgress,
    },
    /// Watching ended (stopped or locked); every rotation it started or settled, by name.
    Stopped(Vec<RotationRow>),
    Failed(Problem),
}

/// An offline bundle for an air-gapped C2, as `keyfill export bundle` makes it.
#[derive(Debug)]
pub struct BundleRequest {
    /// The C2 operator's public key: a `.pub` file from `keyfill bundle new-key`, or 64 hex digits.
    pub recipient: String,
    /// The bundle file to write; refused if it exists.
    pub out: PathBuf,
    pub filter: DeviceFilter,
    /// The factory root's PKCS#8 file, needed once by a home without a bundle-signing key whose
    /// factory root is kept offline.
    pub factory_root_key: Option<PathBuf>,
    /// The security officers approving the export (dual control), at a station with named
    /// operators; empty otherwise.
    pub approvers: Vec<Credential>,
}

impl BundleRequest {
    /// What the officers approve, as the approval dialog shows it and the audit log records it.
    pub fn subject(&self) -> String {
        format!("bundle {} for recipient {}", self.out.display(), keyfill_formats::printable(self.recipient.trim()))
    }
}

/// A device in a bundle (ids only), and a selected device left out with its reason: the
/// station library's own types.
pub use keyfill_station::export::offline::{BundledDevice, LeftOut};

#[derive(Debug, Clone)]
pub struct BundleWritten {
    pub file: PathBuf,
    /// `bundle ID from station NAME (ID), created …: N key(s) confirmed … .. …`, as the CLI prints it.
    pub manifest: String,
    pub included: Vec<BundledDevice>,
    pub excluded: Vec<LeftOut>,
}

/// No bundle was written: why, and the devices left out on the way (when every one was).
#[derive(Debug, Clone)]
pub struct BundleRefused {
    pub problem: Problem,
    pub excluded: Vec<LeftOut>,
}

#[derive(Debug, Clone)]
pub struct ReconcileRequest {
    pub device_id: String,
    /// `Ble { target: None }` means the BLE address the device was last seen at, else its name.
    pub link: LinkTarget,
    pub card_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct AbandonRequest {
    pub device_id: String,
    /// Why, for the event log; never empty.
    pub reason: String,
}
