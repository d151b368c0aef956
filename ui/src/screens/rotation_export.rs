//! The Rotation & export screen: first-use key rotation over MQTT and the export of confirmed
//! keys to C2, each with its progress and a per-device result table.

use crate::messages::{
    Command, ExportRequest, ExportUpdate, RotationRequest, RotationRow, RotationTargets, RotationUpdate,
};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::Settings;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use keyfill_station::export::{DeviceFilter, ItemReport, Outcome};
use keyfill_station::rotation::RotationProgress;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default)]
struct RotationRun {
    broker: String,
    total: usize,
    rotated: usize,
    failed: usize,
    /// Per device id: the latest word on it, while the run goes on.
    live: BTreeMap<String, String>,
    results: Option<Vec<RotationRow>>,
    problem: Option<Problem>,
    starting: bool,
}

impl RotationRun {
    fn running(&self) -> bool {
        self.starting || (self.total > 0 && self.results.is_none() && self.problem.is_none())
    }
}

#[derive(Debug, Default)]
struct ExportRun {
    target: String,
    total: usize,
    reports: Vec<ItemReport>,
    run_id: Option<String>,
    finished: bool,
    problem: Option<Problem>,
    starting: bool,
}

impl ExportRun {
    fn running(&self) -> bool {
        self.starting && !self.finished && self.problem.is_none()
    }

    fn count(&self, outcome: Outcome) -> usize {
        self.reports.iter().filter(|r| r.outcome == outcome).count()
    }
}

#[derive(Debug, Default)]
pub struct RotationExportScreen {
    /// Devices to rotate (names or ids, comma-separated); empty: every unrotated device.
    rotate_devices: String,
    rotation: RotationRun,
    export_devices: String,
    /// `YYYY-MM-DD`: only keys confirmed since then.
    export_since: String,
    export: ExportRun,
}

fn list(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl RotationExportScreen {
    /// Whether a rotation or an export is running (locking waits for it).
    pub fn is_busy(&self) -> bool {
        self.rotation.running() || self.export.running()
    }

    pub fn on_rotation(&mut self, update: RotationUpdate) {
        let run = &mut self.rotation;
        match update {
            RotationUpdate::Started { total, broker } => {
                run.total = total;
                run.broker = broker;
                run.starting = false;
            }
            RotationUpdate::Progress(progress) => match progress {
                RotationProgress::Attempt { device, attempt } => {
                    run.live.insert(device, format!("attempt {attempt}"));
                }
                RotationProgress::Rotated { device } => {
                    run.rotated += 1;
                    run.live.insert(device, "rotated".into());
                }
                RotationProgress::Failed { device, reason } => {
                    run.failed += 1;
                    run.live.insert(device, format!("failed: {reason}"));
                }
            },
            RotationUpdate::Finished(rows) => {
                run.results = Some(rows);
                run.starting = false;
            }
            RotationUpdate::Failed(problem) => {
                run.problem = Some(problem);
                run.starting = false;
            }
        }
    }

    pub fn on_export(&mut self, update: ExportUpdate) {
        let run = &mut self.export;
        match update {
            ExportUpdate::Connecting { target } => run.target = target,
            ExportUpdate::Started { total } => run.total = total,
            ExportUpdate::Item(report) => run.reports.push(report),
            ExportUpdate::Finished { target, run_id, reports } => {
                run.target = target;
                run.run_id = Some(run_id);
                run.reports = reports;
                run.finished = true;
            }
            ExportUpdate::Failed(problem) => run.problem = Some(problem),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        let half = ((ui.available_width() - theme::SPACING) / 2.0).max(360.0);
        ui.horizontal_top(|ui| {
            ui.allocate_ui_with_layout(
                egui::vec2(half, ui.available_height()),
                egui::Layout::top_down(egui::Align::Min),
                |ui| {
                    widgets::section(ui, "First-use rotation", |ui| actions.extend(self.rotation_ui(ui, settings)));
                },
            );
            ui.allocate_ui_with_layout(
                egui::vec2(half, ui.available_height()),
                egui::Layout::top_down(egui::Align::Min),
                |ui| {
                    widgets::section(ui, "Export to C2", |ui| actions.extend(self.export_ui(ui, settings)));
                },
            );
        });
        actions
    }

    fn rotation_ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.label(
            RichText::new(
                "Each device gets a new E4 key over MQTT; the new key becomes active only once the device confirms it \
                 under that key. Without a confirmation both keys are kept.",
            )
            .color(theme::MUTED_TEXT),
        );
        ui.add_space(6.0);
        let running = self.rotation.running();
        let mut changed = false;
        egui::Grid::new("rotation-form").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            let label = ui.label("MQTT broker");
            changed |= ui
                .add_enabled(
                    !running,
                    egui::TextEdit::singleline(&mut settings.rotation.broker).hint_text("mqtt://HOST:1883"),
                )
                .labelled_by(label.id)
                .lost_focus();
            ui.end_row();
            let label = ui.label("Devices");
            ui.add_enabled(
                !running,
                egui::TextEdit::singleline(&mut self.rotate_devices)
                    .hint_text("empty: every provisioned device not yet rotated"),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("First wait (s)");
            let first_wait = egui::DragValue::new(&mut settings.rotation.first_wait_secs).range(0.1..=600.0).speed(0.5);
            changed |= ui.add_enabled(!running, first_wait).labelled_by(label.id).changed();
            ui.end_row();
            let label = ui.label("Attempts");
            let attempts = egui::DragValue::new(&mut settings.rotation.max_attempts).range(1..=20);
            changed |= ui.add_enabled(!running, attempts).labelled_by(label.id).changed();
            ui.end_row();
            let label = ui.label("In flight");
            let window = egui::DragValue::new(&mut settings.rotation.window).range(1..=1024);
            changed |= ui.add_enabled(!running, window).labelled_by(label.id).changed();
            ui.end_row();
        });
        if changed {
            actions.push(Action::SaveSettings(Box::new(settings.clone())));
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let start = widgets::primary_button("Start rotation", !running, egui::vec2(180.0, 40.0));
            if ui.add_enabled(!running, start).clicked() {
                let devices = list(&self.rotate_devices);
                let targets =
                    if devices.is_empty() { RotationTargets::AllUnrotated } else { RotationTargets::Devices(devices) };
                self.rotation = RotationRun { starting: true, ..RotationRun::default() };
                actions.push(
                    Command::Rotate(RotationRequest {
                        broker: settings.rotation.broker.trim().to_owned(),
                        targets,
                        settings: settings.rotation.settings(),
                    })
                    .into(),
                );
            }
            if running {
                ui.spinner();
                ui.label(if self.rotation.starting { "Connecting to the broker…" } else { "Rotating…" });
            }
        });
        let run = &self.rotation;
        if run.total > 0 {
            let done = run.rotated + run.failed;
            ui.add(
                egui::ProgressBar::new(done as f32 / run.total as f32)
                    .text(progress_text(format!(
                        "{done} of {} · {} rotated · {} failed",
                        run.total, run.rotated, run.failed
                    )))
                    .fill(if done == run.total { theme::OK_TINT } else { theme::BUSY_TINT })
                    .desired_height(24.0),
            );
        }
        if let Some(problem) = &run.problem {
            widgets::problem_box(ui, problem);
        }
        let rows: Vec<(String, String, Tone)> = match &run.results {
            Some(results) => results
                .iter()
                .map(|row| match &row.result {
                    Ok(key) => (row.name.clone(), format!("rotated: key {key}"), Tone::Ok),
                    Err(reason) => (row.name.clone(), reason.clone(), Tone::Failed),
                })
                .collect(),
            None => run
                .live
                .iter()
                .map(|(id, word)| {
                    let tone = if word == "rotated" {
                        Tone::Ok
                    } else if word.starts_with("failed") {
                        Tone::Failed
                    } else {
                        Tone::Busy
                    };
                    (id.clone(), word.clone(), tone)
                })
                .collect(),
        };
        if let Some(results) = &run.results {
            let ok = results.iter().filter(|r| r.result.is_ok()).count();
            let tone = if ok == results.len() { Tone::Ok } else { Tone::Warning };
            widgets::notice(ui, tone, &format!("{ok} of {} rotations confirmed", results.len()));
        }
        result_table(ui, "rotation-results", &rows);
        actions
    }

    fn export_ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.label(
            RichText::new(
                "Registers each confirmed key with C2. Per device: created, replaced, unchanged or failed. An \
                 interrupted export resumes where it stopped.",
            )
            .color(theme::MUTED_TEXT),
        );
        ui.add_space(6.0);
        let running = self.export.running();
        let mut changed = false;
        egui::Grid::new("export-form").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            let label = ui.label("C2 address");
            changed |= ui
                .add_enabled(
                    !running,
                    egui::TextEdit::singleline(&mut settings.export.c2_url).hint_text("https://c2.example:8888"),
                )
                .labelled_by(label.id)
                .lost_focus();
            ui.end_row();
            let label = ui.label("CA file (PEM)");
            changed |= ui
                .add_enabled(
                    !running,
                    egui::TextEdit::singleline(&mut settings.export.ca_file).hint_text("empty: the system's roots"),
                )
                .labelled_by(label.id)
                .lost_focus();
            ui.end_row();
            let label = ui.label("Devices");
            ui.add_enabled(
                !running,
                egui::TextEdit::singleline(&mut self.export_devices).hint_text("empty: every provisioned device"),
            )
            .labelled_by(label.id);
            ui.end_row();
            let label = ui.label("Confirmed since");
            ui.add_enabled(
                !running,
                egui::TextEdit::singleline(&mut self.export_since).hint_text("YYYY-MM-DD (optional)"),
            )
            .labelled_by(label.id);
            ui.end_row();
            ui.label("");
            changed |= ui
                .add_enabled(
                    !running,
                    egui::Checkbox::new(
                        &mut settings.export.replace_foreign,
                        "Overwrite clients this station never exported",
                    ),
                )
                .changed();
            ui.end_row();
        });
        if changed {
            actions.push(Action::SaveSettings(Box::new(settings.clone())));
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let start = widgets::primary_button("Export to C2", !running, egui::vec2(180.0, 40.0));
            if ui.add_enabled(!running, start).clicked() {
                match self.export_request(settings) {
                    Ok(request) => {
                        self.export = ExportRun { starting: true, ..ExportRun::default() };
                        actions.push(Command::ExportC2(request).into());
                    }
                    Err(problem) => self.export = ExportRun { problem: Some(problem), ..ExportRun::default() },
                }
            }
            if running {
                ui.spinner();
                ui.label(if self.export.total == 0 { "Asking C2…" } else { "Exporting…" });
            }
        });
        let run = &self.export;
        if run.total > 0 {
            let done = run.reports.len();
            ui.add(
                egui::ProgressBar::new(done as f32 / run.total as f32)
                    .text(progress_text(format!("{done} of {} devices", run.total)))
                    .fill(if done == run.total { theme::OK_TINT } else { theme::BUSY_TINT })
                    .desired_height(24.0),
            );
        }
        if run.finished {
            let failed = run.count(Outcome::Failed);
            widgets::notice(
                ui,
                if failed == 0 { Tone::Ok } else { Tone::Warning },
                &format!(
                    "{}: {} created, {} replaced, {} unchanged, {failed} failed",
                    run.target,
                    run.count(Outcome::Created),
                    run.count(Outcome::Replaced),
                    run.count(Outcome::Unchanged)
                ),
            );
        }
        if let Some(problem) = &run.problem {
            widgets::problem_box(ui, problem);
        }
        let rows: Vec<(String, String, Tone)> = run
            .reports
            .iter()
            .map(|report| {
                let tone = if report.outcome == Outcome::Failed { Tone::Failed } else { Tone::Ok };
                let text = match &report.reason {
                    Some(reason) => format!("{}: {reason}", report.outcome.as_str()),
                    None => report.outcome.as_str().to_owned(),
                };
                (report.name.clone(), text, tone)
            })
            .collect();
        result_table(ui, "export-results", &rows);
        actions
    }

    fn export_request(&self, settings: &Settings) -> Result<ExportRequest, Problem> {
        let url = settings.export.c2_url.trim().to_owned();
        if url.is_empty() {
            return Err(Problem::new("No C2 address.", "Type C2's address, e.g. https://c2.example:8888."));
        }
        let devices = list(&self.export_devices);
        let since = self.export_since.trim();
        let filter = match (since.is_empty(), devices.is_empty()) {
            (false, _) => DeviceFilter::ConfirmedSince(keyfill_station::time::parse_utc(since).ok_or_else(|| {
                Problem::new(format!("{since:?} is not a date."), "Write the date as YYYY-MM-DD, or leave it empty.")
            })?),
            (true, false) => DeviceFilter::Named(devices),
            (true, true) => DeviceFilter::All,
        };
        let ca = settings.export.ca_file.trim();
        Ok(ExportRequest {
            url,
            ca: (!ca.is_empty()).then(|| PathBuf::from(ca)),
            filter,
            replace_foreign: settings.export.replace_foreign,
        })
    }
}

/// Dark on the bar's light fill, readable however far the bar has come.
fn progress_text(text: String) -> RichText {
    RichText::new(text).color(egui::Color32::from_rgb(0x1e, 0x25, 0x2d)).strong()
}

/// Device and result, coloured by outcome, in a scrolling table.
fn result_table(ui: &mut egui::Ui, id: &str, rows: &[(String, String, Tone)]) {
    if rows.is_empty() {
        return;
    }
    ui.add_space(6.0);
    TableBuilder::new(ui)
        .id_salt(id)
        .striped(true)
        .max_scroll_height(320.0)
        .column(Column::initial(220.0).at_least(120.0).clip(true))
        .column(Column::remainder().clip(true))
        .header(theme::ROW_HEIGHT, |mut header| {
            for title in ["Device", "Result"] {
                header.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(theme::ROW_HEIGHT, rows.len(), |mut row| {
                let Some((device, result, tone)) = rows.get(row.index()) else { return };
                row.col(|ui| {
                    ui.label(device);
                });
                row.col(|ui| {
                    ui.label(RichText::new(result).color(tone.color())).on_hover_text(result);
                });
            });
        });
}
