//! The online export to C2 (`keyfill export c2`): each confirmed key registered with C2's
//! gateway, per device created, replaced, already exported or failed.

use super::DeviceSelection;
use super::results::{self, ResultRow};
use crate::messages::{Command, ExportRequest, ExportUpdate};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::Settings;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::custody::Operation;
use keyfill_station::export::{ALREADY_EXPORTED_MEANS, ItemReport, Outcome};
use std::path::PathBuf;

#[derive(Debug, Default)]
struct ExportRun {
    target: String,
    total: usize,
    reports: Vec<ItemReport>,
    finished: bool,
    problem: Option<Problem>,
    starting: bool,
}

impl ExportRun {
    fn count(&self, outcome: Outcome) -> usize {
        self.reports.iter().filter(|r| r.outcome == outcome).count()
    }
}

#[derive(Debug, Default)]
pub struct C2Panel {
    selection: DeviceSelection,
    run: ExportRun,
}

impl C2Panel {
    pub fn is_busy(&self) -> bool {
        self.run.starting && !self.run.finished && self.run.problem.is_none()
    }

    pub fn on_update(&mut self, update: ExportUpdate) {
        let run = &mut self.run;
        match update {
            ExportUpdate::Connecting { target } => run.target = target,
            ExportUpdate::Started { total } => run.total = total,
            ExportUpdate::Item(report) => run.reports.push(report),
            ExportUpdate::Finished { target, reports, .. } => {
                run.target = target;
                run.reports = reports;
                run.finished = true;
            }
            ExportUpdate::Failed(problem) => run.problem = Some(problem),
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.label(
            RichText::new(
                "Registers each confirmed key with C2. Per device: created, replaced, already exported or failed. \
                 An interrupted export resumes where it stopped.",
            )
            .color(theme::MUTED_TEXT),
        );
        ui.add_space(6.0);
        let running = self.is_busy();
        if self.form(ui, settings, !running) {
            actions.push(Action::SaveSettings(Box::new(settings.clone())));
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let allowed = crate::custody::Access::of(ui).allows(Operation::ExportToC2);
            let start = widgets::primary_button("Export to C2", !running && allowed, egui::vec2(180.0, 40.0));
            if crate::custody::gated(ui, Operation::ExportToC2, !running, start).clicked() {
                match self.request(settings) {
                    Ok(request) => {
                        self.run = ExportRun { starting: true, ..ExportRun::default() };
                        actions.push(Command::ExportC2(request).into());
                    }
                    Err(problem) => self.run = ExportRun { problem: Some(problem), ..ExportRun::default() },
                }
            }
            if running {
                ui.spinner();
                ui.label(if self.run.total == 0 { "Asking C2…" } else { "Exporting…" });
            }
        });
        self.results_ui(ui);
        actions
    }

    /// True when a setting changed (to save).
    fn form(&mut self, ui: &mut egui::Ui, settings: &mut Settings, enabled: bool) -> bool {
        let mut changed = false;
        egui::Grid::new("export-form").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            let label = ui.label("C2 address");
            changed |= ui
                .add_enabled(
                    enabled,
                    egui::TextEdit::singleline(&mut settings.export.c2_url).hint_text("https://c2.example:8888"),
                )
                .labelled_by(label.id)
                .lost_focus();
            ui.end_row();
            let label = ui.label("CA file (PEM)");
            changed |= ui
                .add_enabled(
                    enabled,
                    egui::TextEdit::singleline(&mut settings.export.ca_file).hint_text("empty: the system's roots"),
                )
                .labelled_by(label.id)
                .lost_focus();
            ui.end_row();
            self.selection.rows(ui, enabled);
            ui.label("");
            changed |= ui
                .add_enabled(
                    enabled,
                    egui::Checkbox::new(
                        &mut settings.export.replace_foreign,
                        "Overwrite clients this station never exported",
                    ),
                )
                .changed();
            ui.end_row();
        });
        changed
    }

    fn results_ui(&self, ui: &mut egui::Ui) {
        let run = &self.run;
        if run.total > 0 {
            let done = run.reports.len();
            let failed = run.count(Outcome::Failed);
            results::progress_bar(ui, done, run.total, failed, format!("{done} of {} devices", run.total));
        }
        if run.finished {
            let failed = run.count(Outcome::Failed);
            widgets::notice(
                ui,
                if failed == 0 { Tone::Ok } else { Tone::Warning },
                &format!(
                    "{}: {} created, {} replaced, {} already exported, {failed} failed",
                    run.target,
                    run.count(Outcome::Created),
                    run.count(Outcome::Replaced),
                    run.count(Outcome::AlreadyExported)
                ),
            );
            if run.count(Outcome::AlreadyExported) > 0 {
                ui.label(RichText::new(ALREADY_EXPORTED_MEANS).small().color(theme::MUTED_TEXT));
            }
        }
        if let Some(problem) = &run.problem {
            widgets::problem_box(ui, problem);
        }
        let rows: Vec<ResultRow> = run
            .reports
            .iter()
            .map(|report| {
                let tone = if report.outcome == Outcome::Failed { Tone::Failed } else { Tone::Ok };
                let text = match &report.reason {
                    Some(reason) => format!("{}: {reason}", report.outcome.label()),
                    None => report.outcome.label().to_owned(),
                };
                let row = ResultRow::new(report.name.clone(), text, tone).id(report.device_id.clone());
                match &report.key_id {
                    Some(key_id) if report.reason.is_none() => row.detail(format!("key {key_id}")),
                    _ => row,
                }
            })
            .collect();
        results::result_table(ui, "export-results", &rows);
    }

    fn request(&self, settings: &Settings) -> Result<ExportRequest, Problem> {
        let url = settings.export.c2_url.trim().to_owned();
        if url.is_empty() {
            return Err(Problem::new("No C2 address.", "Type C2's address, e.g. https://c2.example:8888."));
        }
        let ca = settings.export.ca_file.trim();
        Ok(ExportRequest {
            url,
            ca: (!ca.is_empty()).then(|| PathBuf::from(ca)),
            filter: self.selection.filter()?,
            replace_foreign: settings.export.replace_foreign,
        })
    }
}
