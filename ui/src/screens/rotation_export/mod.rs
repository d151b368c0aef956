//! The Rotation & export screen: key rotation over MQTT on the left (a batch, or a watch for
//! devices' first contact), the export of confirmed keys on the right (online to C2, or an
//! offline bundle for an air-gapped C2), each with its progress and a per-device result table.
//!
//! - [`rotation`]: the rotation card, its form, and the batch run.
//! - [`watch`]: the watch for first contact: state and results.
//! - [`c2`]: the online export.
//! - [`bundle`]: the offline bundle.
//! - [`results`]: the progress text and result table they share.

mod bundle;
mod c2;
mod results;
mod rotation;
mod watch;

use crate::messages::{BundleRefused, BundleWritten, ExportUpdate, RotationUpdate, WatchUpdate};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::Settings;
use crate::widgets::{self, form_field};
use bundle::BundlePanel;
use c2::C2Panel;
use eframe::egui;
use keyfill_station::export::DeviceFilter;
use rotation::RotationPanel;

/// Below this width the rotation and export cards stack.
const TWO_COLUMNS_FROM: f32 = 1100.0;

/// Which export the right-hand card shows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ExportKind {
    #[default]
    Online,
    Bundle,
}

#[derive(Debug, Default)]
pub struct RotationExportScreen {
    rotation: RotationPanel,
    c2: C2Panel,
    bundle: BundlePanel,
    export_kind: ExportKind,
}

impl RotationExportScreen {
    /// Whether a rotation, a watch or an export is running (locking waits for it).
    pub fn is_busy(&self) -> bool {
        self.rotation.is_busy() || self.c2.is_busy() || self.bundle.is_busy()
    }

    /// Whether a watch for first contact runs (locking stops it).
    pub fn is_watching(&self) -> bool {
        self.rotation.watch.is_running()
    }

    /// The station is locking: a watch stops, as the station stops it.
    pub fn on_locking(&mut self) {
        self.rotation.watch.on_stop_requested();
        self.bundle.close_approval();
    }

    /// The officers' approval of a bundle export was refused.
    pub fn on_approval_refused(&mut self, problem: Problem) {
        self.bundle.on_approval_refused(problem);
    }

    /// The approval dialog of a bundle export, while it shows.
    pub fn approval(&self) -> Option<&crate::screens::approval::ApprovalDialog> {
        self.bundle.approval()
    }

    pub fn on_rotation(&mut self, update: RotationUpdate) {
        self.rotation.batch.on_update(update);
    }

    pub fn on_watch(&mut self, update: WatchUpdate) {
        self.rotation.watch.on_update(update);
    }

    pub fn on_export(&mut self, update: ExportUpdate) {
        self.c2.on_update(update);
    }

    pub fn on_bundle(&mut self, outcome: Result<BundleWritten, BundleRefused>) {
        self.bundle.on_outcome(outcome);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        // One scroll for the screen; the two cards stack on a narrow window.
        egui::ScrollArea::vertical().id_salt("rotation-export-scroll").auto_shrink([false, false]).show(ui, |ui| {
            widgets::two_columns(ui, TWO_COLUMNS_FROM, 0.5, |ui, column| match column {
                widgets::Column::First => {
                    widgets::section(ui, "First-use rotation", |ui| actions.extend(self.rotation.ui(ui, settings)));
                }
                widgets::Column::Second => {
                    widgets::section(ui, "Export to C2", |ui| actions.extend(self.export_ui(ui, settings)));
                }
            });
        });
        actions
    }

    fn export_ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        // Switching is refused mid-run so a running export never disappears from view.
        let running = self.c2.is_busy() || self.bundle.is_busy();
        ui.add_enabled_ui(!running, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.export_kind, ExportKind::Online, "Online to C2");
                ui.selectable_value(&mut self.export_kind, ExportKind::Bundle, "Offline bundle");
            });
        });
        ui.add_space(4.0);
        match self.export_kind {
            ExportKind::Online => self.c2.ui(ui, settings),
            ExportKind::Bundle => self.bundle.ui(ui, settings),
        }
    }
}

/// Names or ids separated by commas, spaces or new lines.
fn list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// The selection both exports offer: devices confirmed since a date, named devices, or every
/// provisioned device, as `--since` and `--devices` choose them.
#[derive(Debug, Default)]
struct DeviceSelection {
    /// Names or ids, empty for every provisioned device.
    devices: String,
    /// `YYYY-MM-DD`: only keys confirmed since then.
    since: String,
}

impl DeviceSelection {
    /// The selection's two rows of a form grid.
    fn rows(&mut self, ui: &mut egui::Ui, enabled: bool) {
        form_field(ui, "Devices to export", &mut self.devices, "empty: every provisioned device", enabled);
        form_field(ui, "Confirmed since", &mut self.since, "YYYY-MM-DD (optional)", enabled);
    }

    fn filter(&self) -> Result<DeviceFilter, Problem> {
        device_filter(&self.devices, &self.since)
    }
}

fn device_filter(devices: &str, since: &str) -> Result<DeviceFilter, Problem> {
    let devices = list(devices);
    let since = since.trim();
    Ok(match (since.is_empty(), devices.is_empty()) {
        (false, _) => DeviceFilter::ConfirmedSince(keyfill_station::time::parse_utc(since).ok_or_else(|| {
            Problem::new(format!("{since:?} is not a date."), "Write the date as YYYY-MM-DD, or leave it empty.")
        })?),
        (true, false) => DeviceFilter::Named(devices),
        (true, true) => DeviceFilter::All,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gui_export_selection_prefers_the_date_then_the_names() {
        assert!(matches!(device_filter("", ""), Ok(DeviceFilter::All)));
        assert!(matches!(device_filter("a, b", ""), Ok(DeviceFilter::Named(names)) if names == ["a", "b"]));
        assert!(matches!(device_filter("a", "2026-11-30"), Ok(DeviceFilter::ConfirmedSince(_))));
        let problem = device_filter("", "yesterday").unwrap_err();
        assert!(problem.help.contains("YYYY-MM-DD"), "{problem}");
    }
}
