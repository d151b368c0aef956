//! The rotation card: broker and retry settings, then either a batch ("Start rotation": every
//! provisioned device not yet rotated, or the devices named) or a watch for first contact, and
//! the results of whichever ran last.

use super::list;
use super::results::{self, ResultRow};
use super::watch::WatchRun;
use crate::messages::{Command, RotationRequest, RotationRow, RotationTargets, RotationUpdate, WatchRequest};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::Settings;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::custody::Operation;
use keyfill_station::rotation::RotationProgress;
use std::collections::BTreeMap;

/// A device's latest word in a run, while it goes on.
#[derive(Debug, Clone)]
pub struct Live {
    pub text: String,
    pub tone: Tone,
}

impl Live {
    /// What `progress` says of its device; counts a device's end in `rotated` or `failed`.
    pub fn of(progress: RotationProgress, rotated: &mut usize, failed: &mut usize) -> Live {
        match progress {
            RotationProgress::Attempt { attempt, .. } => Live { text: format!("attempt {attempt}"), tone: Tone::Busy },
            RotationProgress::Rotated { .. } => {
                *rotated += 1;
                Live { text: "rotated".into(), tone: Tone::Ok }
            }
            RotationProgress::Failed { reason, .. } => {
                *failed += 1;
                Live { text: format!("failed: {reason}"), tone: Tone::Failed }
            }
        }
    }
}

/// The live rows, by name then id so the table reads alphabetically while devices come and go.
pub fn live_rows(live: &BTreeMap<(String, String), Live>) -> Vec<ResultRow> {
    live.iter()
        .map(|((name, id), live)| ResultRow::new(name.clone(), live.text.clone(), live.tone).id(id.clone()))
        .collect()
}

/// One batch rotation: a known set of devices, each rotated once.
#[derive(Debug, Default)]
pub struct BatchRun {
    total: usize,
    rotated: usize,
    failed: usize,
    /// Per device (name, id): the latest word on it, while the run goes on.
    live: BTreeMap<(String, String), Live>,
    results: Option<Vec<RotationRow>>,
    problem: Option<Problem>,
    starting: bool,
}

impl BatchRun {
    fn starting() -> Self {
        BatchRun { starting: true, ..BatchRun::default() }
    }

    pub fn is_running(&self) -> bool {
        self.starting || (self.total > 0 && self.results.is_none() && self.problem.is_none())
    }

    pub fn on_update(&mut self, update: RotationUpdate) {
        match update {
            RotationUpdate::Started { total, .. } => {
                self.total = total;
                self.starting = false;
            }
            RotationUpdate::Progress { device_id, name, progress } => {
                let live = Live::of(progress, &mut self.rotated, &mut self.failed);
                self.live.insert((name, device_id), live);
            }
            RotationUpdate::Finished(rows) => {
                self.results = Some(rows);
                self.starting = false;
            }
            RotationUpdate::Failed(problem) => {
                self.problem = Some(problem);
                self.starting = false;
            }
        }
    }

    fn ui(&self, ui: &mut egui::Ui) {
        if self.total > 0 {
            let (done, failed) = match &self.results {
                Some(rows) => (rows.len(), rows.iter().filter(|r| r.result.is_err()).count()),
                None => (self.rotated + self.failed, self.failed),
            };
            let text = format!("{done} of {} · {} rotated · {failed} failed", self.total, done - failed);
            results::progress_bar(ui, done, self.total.max(done), failed, text);
        }
        if let Some(problem) = &self.problem {
            widgets::problem_box(ui, problem);
        }
        let rows: Vec<ResultRow> = match &self.results {
            Some(rows) => {
                let ok = rows.iter().filter(|r| r.result.is_ok()).count();
                let tone = match ok {
                    _ if ok == rows.len() => Tone::Ok,
                    0 => Tone::Failed,
                    _ => Tone::Warning,
                };
                widgets::notice(ui, tone, &format!("{ok} of {} rotations confirmed", rows.len()));
                rows.iter().map(result_row).collect()
            }
            None => live_rows(&self.live),
        };
        results::result_table(ui, "rotation-results", &rows);
    }
}

/// A finished rotation as a table row.
pub fn result_row(row: &RotationRow) -> ResultRow {
    let result = match &row.result {
        Ok(key) => ResultRow::new(row.name.clone(), "rotated", Tone::Ok)
            .detail(format!("new key {key}, confirmed by the device")),
        Err(reason) => ResultRow::new(row.name.clone(), reason.clone(), Tone::Failed),
    };
    result.id(row.device_id.clone())
}

/// Which run the card shows: the last one started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Shown {
    #[default]
    Batch,
    Watch,
}

#[derive(Debug, Default)]
pub struct RotationPanel {
    /// Devices to rotate (names or ids, comma-separated); empty: every unrotated device.
    rotate_devices: String,
    pub batch: BatchRun,
    pub watch: WatchRun,
    shown: Shown,
}

impl RotationPanel {
    pub fn is_busy(&self) -> bool {
        self.batch.is_running() || self.watch.is_running()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.label(
            RichText::new(
                "Each device gets a new E4 key over MQTT; the new key becomes active only once the device confirms it \
                 under that key. Without a confirmation both keys are kept.",
            )
            .color(theme::MUTED_TEXT),
        );
        ui.add_space(6.0);
        // One rotation at a time: two would race to settle the same device's confirmation.
        let busy = self.is_busy();
        if form(ui, settings, &mut self.rotate_devices, !busy) {
            actions.push(Action::SaveSettings(Box::new(settings.clone())));
        }
        ui.add_space(6.0);
        ui.horizontal_wrapped(|ui| {
            let allowed = crate::custody::Access::of(ui).allows(Operation::Rotate);
            let start = widgets::primary_button("Start rotation", !busy && allowed, egui::vec2(180.0, 40.0));
            if crate::custody::gated(ui, Operation::Rotate, !busy, start).clicked() {
                let devices = list(&self.rotate_devices);
                let targets =
                    if devices.is_empty() { RotationTargets::AllUnrotated } else { RotationTargets::Devices(devices) };
                self.batch = BatchRun::starting();
                self.shown = Shown::Batch;
                let broker = settings.rotation.broker.trim().to_owned();
                actions.push(
                    Command::Rotate(RotationRequest { broker, targets, settings: settings.rotation.settings() }).into(),
                );
            }
            actions.extend(self.watch_button(ui, settings, busy));
            if self.batch.is_running() {
                ui.spinner();
                ui.label(if self.batch.starting { "Connecting to the broker…" } else { "Rotating…" });
            }
        });
        match self.shown {
            Shown::Batch => self.batch.ui(ui),
            Shown::Watch => self.watch.ui(ui),
        }
        actions
    }

    /// "Watch for first contact" when nothing runs; "Stop watching" while the watch runs.
    fn watch_button(&mut self, ui: &mut egui::Ui, settings: &Settings, busy: bool) -> Option<Action> {
        if self.watch.is_running() {
            let stoppable = self.watch.is_stoppable();
            let stop =
                egui::Button::new(RichText::new("Stop watching").size(19.0).strong()).min_size(egui::vec2(180.0, 40.0));
            let clicked = ui
                .add_enabled(stoppable, stop)
                .on_hover_text("Stops listening; rotations already started finish first")
                .clicked();
            return clicked.then(|| {
                self.watch.on_stop_requested();
                Command::StopWatch.into()
            });
        }
        let watch = egui::Button::new(RichText::new("Watch for first contact").size(19.0).strong())
            .min_size(egui::vec2(180.0, 40.0));
        let clicked = crate::custody::gated(ui, Operation::Rotate, !busy, watch)
            .on_hover_text(
                "Rotates each provisioned device never rotated when it says hello, and settles unfinished rotations \
                 from the device's next contact, until you press Stop watching",
            )
            .clicked();
        clicked.then(|| {
            self.watch = WatchRun::connecting();
            self.shown = Shown::Watch;
            let broker = settings.rotation.broker.trim().to_owned();
            Command::WatchRotation(WatchRequest { broker, settings: settings.rotation.settings() }).into()
        })
    }
}

/// The broker, the devices and the retry settings. True when a setting changed (to save).
fn form(ui: &mut egui::Ui, settings: &mut Settings, devices: &mut String, enabled: bool) -> bool {
    let mut changed = false;
    egui::Grid::new("rotation-form").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
        let label = ui.label("MQTT broker");
        changed |= ui
            .add_enabled(
                enabled,
                egui::TextEdit::singleline(&mut settings.rotation.broker).hint_text("mqtt://HOST:1883"),
            )
            .labelled_by(label.id)
            .lost_focus();
        ui.end_row();
        let label = ui.label("Devices to rotate");
        ui.add_enabled(
            enabled,
            egui::TextEdit::singleline(devices).hint_text("empty: every provisioned device not yet rotated"),
        )
        .labelled_by(label.id)
        .on_hover_text("For Start rotation. A watch takes every device that makes contact.");
        ui.end_row();
        let label = ui.label("First wait (s)");
        let first_wait = egui::DragValue::new(&mut settings.rotation.first_wait_secs).range(0.1..=600.0).speed(0.5);
        changed |= ui.add_enabled(enabled, first_wait).labelled_by(label.id).changed();
        ui.end_row();
        let label = ui.label("Attempts");
        let attempts = egui::DragValue::new(&mut settings.rotation.max_attempts).range(1..=20);
        changed |= ui.add_enabled(enabled, attempts).labelled_by(label.id).changed();
        ui.end_row();
        let label = ui.label("In flight");
        let window = egui::DragValue::new(&mut settings.rotation.window).range(1..=1024);
        changed |= ui.add_enabled(enabled, window).labelled_by(label.id).changed();
        ui.end_row();
    });
    changed
}
