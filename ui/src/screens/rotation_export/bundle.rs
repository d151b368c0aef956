//! The offline bundle (`keyfill export bundle`): confirmed keys encrypted to the C2 operator's
//! public key and signed by this station, in a new file carried across the air gap; shows the
//! manifest, what went in and what was left out, and why.

use super::DeviceSelection;
use super::results::{self, ResultRow};
use crate::custody::{self, Access};
use crate::messages::{BundleRefused, BundleRequest, BundleWritten, Command, LeftOut};
use crate::problem::Problem;
use crate::screens::Action;
use crate::screens::approval::{ApprovalAction, ApprovalDialog};
use crate::settings::Settings;
use crate::theme;
use crate::widgets::{self, Tone, form_field};
use eframe::egui::{self, RichText};
use keyfill_station::custody::Operation;
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct BundlePanel {
    /// The file to write; a new one each time (a bundle never replaces a file).
    out: String,
    selection: DeviceSelection,
    /// Needed once by a home without a bundle-signing key whose factory root is offline.
    factory_root_key: String,
    writing: bool,
    outcome: Option<Result<BundleWritten, BundleRefused>>,
    /// At a station with named operators: the officers' approval of the export, with the
    /// request it approves.
    approval: Option<(ApprovalDialog, BundleRequest)>,
}

impl BundlePanel {
    pub fn is_busy(&self) -> bool {
        self.writing
    }

    /// The dialog asking for the officers' approval, while it shows.
    pub fn approval(&self) -> Option<&ApprovalDialog> {
        self.approval.as_ref().map(|(dialog, _)| dialog)
    }

    /// The officers' approval was refused: the dialog shows why and stays open.
    pub fn on_approval_refused(&mut self, problem: Problem) {
        self.writing = false;
        match &mut self.approval {
            Some((dialog, _)) => dialog.on_refused(problem),
            None => self.outcome = Some(Err(BundleRefused { problem, excluded: Vec::new() })),
        }
    }

    /// Locking: the dialog closes (its typed passphrases are wiped).
    pub fn close_approval(&mut self) {
        if !self.writing {
            self.approval = None;
        }
    }

    pub fn on_outcome(&mut self, outcome: Result<BundleWritten, BundleRefused>) {
        self.writing = false;
        self.approval = None;
        if outcome.is_ok() {
            // The next bundle needs a new name.
            self.out.clear();
        }
        self.outcome = Some(outcome);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        ui.label(
            RichText::new(
                "For an air-gapped C2: the confirmed keys, encrypted to the C2 operator's public key and signed by this \
                 station, in a file to carry across. The C2 operator imports it with `keyfill import bundle`.",
            )
            .color(theme::MUTED_TEXT),
        );
        ui.add_space(6.0);
        if self.form(ui, settings, !self.writing) {
            actions.push(Action::SaveSettings(Box::new(settings.clone())));
        }
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let access = Access::of(ui);
            let ready = !self.writing && self.approval.is_none();
            let start = widgets::primary_button(
                "Write bundle",
                ready && access.allows(Operation::ExportBundle),
                egui::vec2(180.0, 40.0),
            );
            if custody::gated(ui, Operation::ExportBundle, ready, start).clicked() {
                match self.request(settings) {
                    // Named operators: the security officers approve first.
                    Ok(request) if access.custody.is_some() => {
                        self.outcome = None;
                        let dialog = ApprovalDialog::new(Operation::ExportBundle, request.subject(), &access);
                        self.approval = Some((dialog, request));
                    }
                    Ok(request) => {
                        self.writing = true;
                        self.outcome = None;
                        actions.push(Command::ExportBundle(Box::new(request)).into());
                    }
                    Err(problem) => self.outcome = Some(Err(BundleRefused { problem, excluded: Vec::new() })),
                }
            }
            if self.writing {
                ui.spinner();
                ui.label("Sealing and signing…");
            }
        });
        self.outcome_ui(ui);
        actions.extend(self.approval_ui(ui.ctx()));
        actions
    }

    fn approval_ui(&mut self, context: &egui::Context) -> Option<Action> {
        let (dialog, request) = self.approval.as_mut()?;
        match dialog.ui(context, "Approve and export")? {
            ApprovalAction::Cancel => {
                self.approval = None;
                None
            }
            ApprovalAction::Approve(approvers) => {
                self.writing = true;
                // The dialog keeps its copy (without approvers) for a retry.
                let mut sent = copy(request);
                sent.approvers = approvers;
                Some(Command::ExportBundle(Box::new(sent)).into())
            }
        }
    }

    /// True when a setting changed (to save).
    fn form(&mut self, ui: &mut egui::Ui, settings: &mut Settings, enabled: bool) -> bool {
        let mut changed = false;
        egui::Grid::new("bundle-form").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            let label = ui.label("C2 operator's key");
            changed |= ui
                .add_enabled(
                    enabled,
                    egui::TextEdit::singleline(&mut settings.export.bundle_recipient)
                        .hint_text("KEY.pub file, or 64 hex digits"),
                )
                .labelled_by(label.id)
                .on_hover_text(
                    "The public key the C2 operator made with `keyfill bundle new-key`. Carry it the way the factory \
                     root is carried: a swapped key sends the keys to someone else.",
                )
                .lost_focus();
            ui.end_row();
            form_field(ui, "Bundle file", &mut self.out, "a new file, e.g. /media/usb/keys-line-3.kfb", enabled);
            self.selection.rows(ui, enabled);
            form_field(ui, "Factory root key", &mut self.factory_root_key, "only if asked: PKCS#8 file, once", enabled);
        });
        changed
    }

    fn request(&self, settings: &Settings) -> Result<BundleRequest, Problem> {
        let recipient = settings.export.bundle_recipient.trim();
        if recipient.is_empty() {
            return Err(Problem::new(
                "No C2 operator's key.",
                "Give the .pub file the C2 operator made with `keyfill bundle new-key`, or its 64 hex digits.",
            ));
        }
        let out = self.out.trim();
        if out.is_empty() {
            return Err(Problem::new(
                "No bundle file.",
                "Type the path of a new file, e.g. /media/usb/keys-line-3.kfb.",
            ));
        }
        let root = self.factory_root_key.trim();
        Ok(BundleRequest {
            recipient: recipient.to_owned(),
            out: PathBuf::from(out),
            filter: self.selection.filter()?,
            factory_root_key: (!root.is_empty()).then(|| PathBuf::from(root)),
            approvers: Vec::new(),
        })
    }

    fn outcome_ui(&self, ui: &mut egui::Ui) {
        let Some(outcome) = &self.outcome else { return };
        let (rows, excluded): (Vec<ResultRow>, &[LeftOut]) = match outcome {
            Ok(written) => {
                let tone = if written.excluded.is_empty() { Tone::Ok } else { Tone::Warning };
                widgets::notice(
                    ui,
                    tone,
                    &format!("Bundle written to {}: {} key(s)", written.file.display(), written.included.len()),
                );
                ui.add(egui::Label::new(RichText::new(&written.manifest).monospace().small()).wrap());
                let rows = written
                    .included
                    .iter()
                    .map(|d| {
                        ResultRow::new(d.name.clone(), "in the bundle", Tone::Ok)
                            .id(d.device_id.clone())
                            .detail(format!("key {}", d.key_id))
                    })
                    .collect();
                (rows, &written.excluded)
            }
            Err(refused) => {
                widgets::problem_box(ui, &refused.problem);
                (Vec::new(), &refused.excluded)
            }
        };
        if !excluded.is_empty() {
            widgets::notice(ui, Tone::Warning, &format!("{} device(s) left out", excluded.len()));
        }
        // Left out first: they are what needs the operator's attention.
        let rows: Vec<ResultRow> = excluded
            .iter()
            .map(|d| {
                ResultRow::new(d.name.clone(), format!("left out: {}", d.reason), Tone::Failed).id(d.device_id.clone())
            })
            .chain(rows)
            .collect();
        results::result_table(ui, "bundle-results", &rows);
    }
}

/// The request without its approvers (they are not copied).
fn copy(request: &BundleRequest) -> BundleRequest {
    BundleRequest {
        recipient: request.recipient.clone(),
        out: request.out.clone(),
        filter: request.filter.clone(),
        factory_root_key: request.factory_root_key.clone(),
        approvers: Vec::new(),
    }
}
