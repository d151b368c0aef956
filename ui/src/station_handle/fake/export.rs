//! Export answers: to C2 online (every provisioned device `created`), and offline bundles that
//! select, leave out and record like the real station, without writing a file.

use super::FakeControl;
use crate::messages::{BundleRefused, BundleRequest, BundleWritten, BundledDevice, Event, ExportUpdate, LeftOut};
use crate::problem::Problem;
use keyfill_station::bundle::{RecipientPublicKey, read_recipient_public_key};
use keyfill_station::db::devices::{Device, DeviceState, resolve_among};
use keyfill_station::db::now_millis;
use keyfill_station::export::{DeviceFilter, ExportError, ItemReport, Outcome};
use keyfill_station::time::rfc3339;
use std::path::Path;

/// Why the real selection (`export::exportable_items`) keeps a device's key back, if it does.
fn held_back(device: &Device) -> Option<String> {
    if device.state != DeviceState::Provisioned {
        return Some(format!("not provisioned (state {})", device.state.as_str()));
    }
    match device.rotation.as_deref() {
        Some("rotation_pending") => Some("a key rotation is in progress; export after the device confirms it".into()),
        Some("rotation_failed") => Some(
            "the last rotation is unsettled: the device holds the old or the new key; settle it with `keyfill rotate \
             --watch` (the device's next contact tells) before exporting"
                .into(),
        ),
        _ => None,
    }
}

impl FakeControl {
    pub(super) fn export(&self, url: &str) {
        let devices: Vec<Device> =
            self.with(|state| state.devices.iter().filter(|d| d.state == DeviceState::Provisioned).cloned().collect());
        self.send(Event::Export(ExportUpdate::Connecting { target: url.to_owned() }));
        self.send(Event::Export(ExportUpdate::Started { total: devices.len() }));
        let reports: Vec<ItemReport> = devices
            .iter()
            .map(|device| ItemReport {
                device_id: device.id.clone(),
                name: device.name.clone(),
                key_id: device.key_id.clone(),
                outcome: Outcome::Created,
                reason: None,
                attempts: 1,
            })
            .collect();
        for report in &reports {
            self.send(Event::Export(ExportUpdate::Item(report.clone())));
        }
        self.send(Event::Export(ExportUpdate::Finished {
            target: url.to_owned(),
            run_id: "0011223344556677".into(),
            reports,
        }));
    }

    pub(super) fn bundle(&self, request: &BundleRequest) {
        let outcome = self.bundle_outcome(request);
        self.send(Event::Bundle(outcome));
    }

    fn bundle_outcome(&self, request: &BundleRequest) -> Result<BundleWritten, BundleRefused> {
        let refused = |problem| BundleRefused { problem, excluded: Vec::new() };
        let text = request.recipient.trim();
        let recipient = match text.parse::<RecipientPublicKey>() {
            Ok(key) => key,
            Err(_) => read_recipient_public_key(Path::new(text))
                .map_err(|error| refused(Problem::bundle_recipient(text, &error)))?,
        };
        if request.out.exists() {
            return Err(refused(Problem::new(
                format!("{} exists.", request.out.display()),
                "Choose another file name.",
            )));
        }
        let selected: Vec<Device> = self
            .with(|state| match &request.filter {
                DeviceFilter::Named(wanted) => wanted
                    .iter()
                    .map(|reference| resolve_among(&state.devices, reference).map_err(ExportError::from))
                    .collect::<Result<Vec<_>, _>>(),
                DeviceFilter::All => {
                    Ok(state.devices.iter().filter(|d| d.state == DeviceState::Provisioned).cloned().collect())
                }
                DeviceFilter::ConfirmedSince(since) => Ok(state
                    .devices
                    .iter()
                    .filter(|d| d.state == DeviceState::Provisioned && d.provisioned_at.is_some_and(|at| at >= *since))
                    .cloned()
                    .collect()),
            })
            .map_err(|error| refused(Problem::export(&error)))?;
        let (kept, left): (Vec<&Device>, Vec<&Device>) = selected.iter().partition(|d| held_back(d).is_none());
        let excluded: Vec<LeftOut> = left
            .iter()
            .map(|d| LeftOut {
                device_id: d.id.clone(),
                name: d.name.clone(),
                reason: held_back(d).unwrap_or_default(),
            })
            .collect();
        if kept.is_empty() {
            let problem = Problem::new(
                "No key to put in a bundle: every device selected was left out.",
                "See each device's reason below: settle unfinished rotations (Watch for first contact), or choose \
                 provisioned devices.",
            );
            return Err(BundleRefused { problem, excluded });
        }
        let included: Vec<BundledDevice> = kept
            .iter()
            .map(|d| BundledDevice {
                device_id: d.id.clone(),
                name: d.name.clone(),
                key_id: d.key_id.clone().unwrap_or_default(),
            })
            .collect();
        let bundle_id = super::fake_hex(now_millis() as u64);
        let confirmed: Vec<i64> = kept.iter().filter_map(|d| d.provisioned_at).collect();
        let (earliest, latest) =
            (confirmed.iter().min().copied().unwrap_or(0), confirmed.iter().max().copied().unwrap_or(0));
        let manifest = self.with(|state| {
            for (device, bundled) in kept.iter().zip(&included) {
                let detail = format!("key {} in bundle {bundle_id} for recipient {recipient}", bundled.key_id);
                state.record(Some(device), "c2_bundled", detail);
            }
            let detail =
                format!("bundle {bundle_id}: {} key(s) to {recipient} in {}", included.len(), request.out.display());
            state.record(None, "c2_bundle_written", detail);
            let (name, id) =
                state.summary.identity.as_ref().map(|i| (i.name.clone(), i.id.clone())).unwrap_or_default();
            format!(
                "bundle {bundle_id} from station {name} ({id}), created {}: {} key(s) confirmed {} .. {}",
                rfc3339(now_millis()),
                included.len(),
                rfc3339(earliest),
                rfc3339(latest)
            )
        });
        Ok(BundleWritten { file: request.out.clone(), manifest, included, excluded })
    }
}
