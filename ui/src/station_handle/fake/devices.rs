//! The Devices screen's answers: the indexed list, a device's detail, reconcile and abandon.

use super::FakeControl;
use crate::device_index::DeviceIndex;
use crate::messages::{AbandonRequest, DeviceDetail, Event, ReconcileRequest};
use crate::problem::Problem;
use keyfill_station::db::devices::{Device, DeviceState};
use keyfill_station::db::events::Event as StoredEvent;
use keyfill_station::db::now_millis;
use keyfill_station::provision::{ProvisionError, ReconcileVerdict};

fn not_pending(device: &Device) -> ProvisionError {
    ProvisionError::NotPending { id: device.id.clone(), state: device.state.as_str() }
}

impl FakeControl {
    /// Indexes the list on a thread of its own, as the real station does off the UI thread; the
    /// fake waits for it, so tests stay deterministic.
    pub(super) fn load_devices(&self) {
        let devices = self.with(|state| state.devices.clone());
        let index = std::thread::scope(|scope| scope.spawn(|| DeviceIndex::build(devices)).join());
        let Ok(index) = index else {
            let problem = Problem::new("Indexing the devices stopped.", "Refresh the list.");
            return self.send(Event::Problem { command: "load_devices", problem });
        };
        if self.with(|state| state.hold_device_list) {
            self.with(|state| state.held_index = Some(index));
        } else {
            self.send(Event::DeviceIndex(Box::new(index)));
        }
    }

    /// Sends the list held by [`super::FakeState::hold_device_list`].
    pub fn release_device_list(&self) {
        if let Some(index) = self.with(|state| state.held_index.take()) {
            self.send(Event::DeviceIndex(Box::new(index)));
        }
    }

    pub(super) fn detail(&self, id: &str) {
        let detail = self.with(|state| {
            let device = state.devices.iter().find(|d| d.id == id)?.clone();
            let history = state
                .history
                .iter()
                .filter(|e| e.device_id.as_deref() == Some(id))
                .map(|e| StoredEvent {
                    id: e.id,
                    at: e.at,
                    device_id: e.device_id.clone(),
                    station_id: e.station_id.clone(),
                    operator: e.operator.clone(),
                    kind: e.kind.clone(),
                    detail: e.detail.clone(),
                })
                .collect();
            Some(DeviceDetail { device, history, exports: Vec::new() })
        });
        if let Some(detail) = detail {
            self.send(Event::DeviceDetail(detail));
        }
    }

    pub(super) fn reconcile(&self, request: &ReconcileRequest) {
        let outcome = self.with(|state| {
            let device = state.find(&request.device_id).cloned().ok_or_else(|| unknown(&request.device_id))?;
            if device.state != DeviceState::Pending {
                return Err(Problem::reconcile(&not_pending(&device)));
            }
            let verdict = state.reconcile_answer.clone().unwrap_or(Ok(ReconcileVerdict::Provisioned))?;
            let now = now_millis();
            let Some(record) = state.find_mut(&request.device_id) else { return Err(unknown(&request.device_id)) };
            record.updated_at = now;
            let detail = match verdict {
                ReconcileVerdict::Provisioned => {
                    record.state = DeviceState::Provisioned;
                    record.provisioned_at = Some(now);
                    record.failure = None;
                    "device proved it holds the pending key"
                }
                ReconcileVerdict::Failed => {
                    record.state = DeviceState::Failed;
                    record.failure = Some("device does not hold the pending key".into());
                    "device does not hold the pending key"
                }
            };
            let record = record.clone();
            state.record(Some(&record), "reconciled", detail.into());
            Ok((record, verdict))
        });
        let outcome = outcome.map(|(device, verdict)| {
            self.send(Event::DeviceChanged(device));
            verdict
        });
        self.send(Event::Reconciled { device_id: request.device_id.clone(), outcome });
    }

    pub(super) fn abandon(&self, request: &AbandonRequest) {
        let outcome = self.with(|state| {
            let reason = request.reason.trim();
            if reason.is_empty() {
                return Err(Problem::new("No reason given.", "Say why the device is abandoned."));
            }
            let Some(record) = state.find_mut(&request.device_id) else { return Err(unknown(&request.device_id)) };
            if record.state != DeviceState::Pending {
                return Err(Problem::abandon(&not_pending(record)));
            }
            record.state = DeviceState::Failed;
            record.failure = Some(format!("abandoned: {reason}"));
            record.updated_at = now_millis();
            let record = record.clone();
            state.record(Some(&record), "abandoned", reason.to_owned());
            Ok(record)
        });
        let outcome = outcome.map(|device| {
            self.send(Event::DeviceChanged(device));
        });
        self.send(Event::Abandoned { device_id: request.device_id.clone(), outcome });
    }
}

fn unknown(id: &str) -> Problem {
    Problem::new(format!("No device {id}."), "It may have been removed: refresh the list.")
}
