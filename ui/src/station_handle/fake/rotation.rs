//! Rotation answers: a batch over every provisioned device, and a watch for first contact in
//! which the test plays the devices ([`FakeControl::contact`]).

use super::{FakeControl, fake_hex};
use crate::messages::{Event, RotationRow, RotationUpdate, WatchUpdate};
use crate::problem::Problem;
use keyfill_station::db::devices::{Device, DeviceState};
use keyfill_station::rotation::{RotationError, RotationProgress};

const UNCONFIRMED_ATTEMPTS: u32 = 6;

fn new_key_id(device: &Device) -> String {
    fake_hex(device.created_at as u64 ^ 0x5bd1_e995)
}

fn progress_of(device: &Device, progress: RotationProgress) -> RotationUpdate {
    RotationUpdate::Progress { device_id: device.id.clone(), name: device.name.clone(), progress }
}

impl FakeControl {
    /// A batch over every provisioned device: each device listed in
    /// [`super::FakeState::rotation_unconfirmed`] fails, the others are rotated. With
    /// [`super::FakeState::hold_rotation`] the run stops after the first attempts, as while the
    /// station waits for confirmations, until [`FakeControl::finish_rotation`].
    pub(super) fn rotate(&self, broker: &str) {
        let devices: Vec<Device> =
            self.with(|state| state.devices.iter().filter(|d| d.state == DeviceState::Provisioned).cloned().collect());
        self.send(Event::Rotation(RotationUpdate::Started { total: devices.len(), broker: broker.to_owned() }));
        for device in &devices {
            let progress = RotationProgress::Attempt { device: device.id.clone(), attempt: 1 };
            self.send(Event::Rotation(progress_of(device, progress)));
        }
        if self.with(|state| state.hold_rotation) {
            self.with(|state| state.held_rotation = devices);
            return;
        }
        self.finish_batch(&devices);
    }

    /// Ends a batch held by [`super::FakeState::hold_rotation`].
    pub fn finish_rotation(&self) {
        let devices = self.with(|state| std::mem::take(&mut state.held_rotation));
        self.finish_batch(&devices);
    }

    fn finish_batch(&self, devices: &[Device]) {
        let mut rows = Vec::new();
        for device in devices {
            let unconfirmed = self.with(|state| state.rotation_unconfirmed.contains(&device.name));
            let (progress, kind, result) = if unconfirmed {
                let error = RotationError::Unconfirmed { attempts: UNCONFIRMED_ATTEMPTS, device_clock_offset: None };
                let progress = RotationProgress::Failed { device: device.id.clone(), reason: error.to_string() };
                (progress, "rotation_failed", Err(format!("rotation_failed: {error}")))
            } else {
                (RotationProgress::Rotated { device: device.id.clone() }, "rotated", Ok(new_key_id(device)))
            };
            self.send(Event::Rotation(progress_of(device, progress)));
            self.with(|state| state.record(Some(device), kind, "key confirmed".into()));
            rows.push(RotationRow { device_id: device.id.clone(), name: device.name.clone(), result });
        }
        self.send(Event::Rotation(RotationUpdate::Finished(rows)));
    }

    pub(super) fn watch(&self, broker: &str) {
        let already = self.with(|state| state.watching.is_some());
        if already {
            let problem = Problem::new("Already watching for first contact.", "Stop the watch first.");
            return self.send(Event::Problem { command: "watch_rotation", problem });
        }
        self.with(|state| {
            state.watching = Some(broker.to_owned());
            state.watch_rows.clear();
        });
        self.send(Event::Watch(WatchUpdate::Watching { broker: broker.to_owned() }));
    }

    pub(super) fn stop_watch(&self) {
        let stopped = self.with(|state| state.watching.take().map(|_| std::mem::take(&mut state.watch_rows)));
        if let Some(mut rows) = stopped {
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            self.send(Event::Watch(WatchUpdate::Stopped(rows)));
        }
    }

    /// The device `name` says hello while the station watches: a device never rotated is
    /// rotated (or fails, if listed in [`super::FakeState::rotation_unconfirmed`]), an unsettled
    /// rotation is settled, anything else is ignored, as `Rotator::watch` does.
    pub fn contact(&self, name: &str) {
        let Some(device) = self.with(|state| {
            state.watching.as_ref()?;
            state.find(name).filter(|d| d.state == DeviceState::Provisioned).cloned()
        }) else {
            return;
        };
        let progress = |progress| {
            self.send(Event::Watch(WatchUpdate::Progress {
                device_id: device.id.clone(),
                name: device.name.clone(),
                progress,
            }))
        };
        let unconfirmed = self.with(|state| state.rotation_unconfirmed.contains(&device.name));
        let result = match device.rotation.as_deref() {
            Some("active") => return,
            // The hello proves the device already uses the new key: settled at once.
            Some(_) if !unconfirmed => Ok(new_key_id(&device)),
            _ => {
                for attempt in 1..=if unconfirmed { UNCONFIRMED_ATTEMPTS } else { 1 } {
                    progress(RotationProgress::Attempt { device: device.id.clone(), attempt });
                }
                if unconfirmed {
                    Err(RotationError::Unconfirmed { attempts: UNCONFIRMED_ATTEMPTS, device_clock_offset: None })
                } else {
                    Ok(new_key_id(&device))
                }
            }
        };
        let (rotation, kind, detail, row) = match result {
            Ok(key_id) => {
                progress(RotationProgress::Rotated { device: device.id.clone() });
                ("active", "rotated", format!("key {key_id} confirmed"), Ok(key_id))
            }
            Err(error) => {
                progress(RotationProgress::Failed { device: device.id.clone(), reason: error.to_string() });
                ("rotation_failed", "rotation_failed", error.to_string(), Err(format!("rotation_failed: {error}")))
            }
        };
        self.with(|state| {
            if let Some(record) = state.find_mut(&device.id) {
                record.rotation = Some(rotation.into());
            }
            state.record(Some(&device), kind, detail);
            state.watch_rows.push(RotationRow { device_id: device.id.clone(), name: device.name.clone(), result: row });
        });
    }
}
