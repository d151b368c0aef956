//! What can be done to the selected device: print or save its label (any device), and for a
//! pending one, reconcile or abandon it in a dialog.

use super::abandon::AbandonDialog;
use super::reconcile::ReconcileDialog;
use crate::messages::{Command, JobId, LabelRequest, LabelSaved, LinkReport};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::Settings;
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};
use keyfill_station::custody::Operation;
use keyfill_station::db::devices::{Device, DeviceState};
use keyfill_station::provision::ReconcileVerdict;

/// Label jobs of this screen count from here, far above the Provision screen's (which count
/// from 1), so the app can tell whose label an answer is for.
const FIRST_LABEL_JOB: JobId = 1 << 40;

/// What a dialog wants after a frame.
#[derive(Debug, Default)]
pub struct DialogOutput {
    pub action: Option<Action>,
    pub close: bool,
}

#[derive(Debug)]
enum Dialog {
    Reconcile(ReconcileDialog),
    Abandon(AbandonDialog),
}

impl Dialog {
    fn is_waiting(&self) -> bool {
        match self {
            Dialog::Reconcile(dialog) => dialog.is_waiting(),
            Dialog::Abandon(dialog) => dialog.is_waiting(),
        }
    }
}

#[derive(Debug, Default)]
enum LabelStatus {
    #[default]
    Idle,
    Making {
        job: JobId,
        device_id: String,
    },
    Done {
        device_id: String,
        outcome: Result<LabelSaved, Problem>,
    },
}

#[derive(Debug, Default)]
pub struct DeviceActions {
    dialog: Option<Dialog>,
    label: LabelStatus,
    last_label_job: JobId,
}

impl DeviceActions {
    pub fn owns_label(&self, job: JobId) -> bool {
        job >= FIRST_LABEL_JOB
    }

    pub fn on_label(&mut self, job: JobId, outcome: Result<LabelSaved, Problem>) {
        if let LabelStatus::Making { job: waiting, device_id } = &self.label
            && *waiting == job
        {
            self.label = LabelStatus::Done { device_id: device_id.clone(), outcome };
        }
    }

    pub fn on_reconciled(&mut self, device_id: &str, outcome: Result<ReconcileVerdict, Problem>) {
        if let Some(Dialog::Reconcile(dialog)) = &mut self.dialog
            && dialog.device_id == device_id
        {
            dialog.on_answer(outcome);
        }
    }

    pub fn on_abandoned(&mut self, device_id: &str, outcome: Result<(), Problem>) {
        if let Some(Dialog::Abandon(dialog)) = &mut self.dialog
            && dialog.device_id == device_id
        {
            dialog.on_done(outcome);
        }
    }

    pub fn on_problem(&mut self, problem: Problem) {
        match &mut self.dialog {
            Some(Dialog::Reconcile(dialog)) if dialog.is_waiting() => dialog.on_answer(Err(problem)),
            Some(Dialog::Abandon(dialog)) if dialog.is_waiting() => dialog.on_done(Err(problem)),
            _ => {}
        }
    }

    /// The actions card of `device`, and its dialog when one is open.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        device: &Device,
        settings: &Settings,
        found: Option<&LinkReport>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if device.state == DeviceState::Pending {
            ui.label(RichText::new("Pending: its key was sent, never confirmed").strong().color(theme::WARNING));
            ui.horizontal_wrapped(|ui| {
                if crate::custody::gated(ui, Operation::Reconcile, true, egui::Button::new("Reconcile…"))
                    .on_hover_text("Ask the device over a link whether it holds its pending key")
                    .clicked()
                {
                    self.dialog = Some(Dialog::Reconcile(ReconcileDialog::new(device, settings)));
                    if found.is_none() {
                        actions.push(Command::DetectLinks.into());
                    }
                }
                if crate::custody::gated(ui, Operation::Abandon, true, egui::Button::new("Abandon…"))
                    .on_hover_text("Give up on a device that can no longer be asked")
                    .clicked()
                {
                    self.dialog = Some(Dialog::Abandon(AbandonDialog::new(device)));
                }
            });
            ui.add_space(6.0);
        }
        actions.extend(self.label_ui(ui, device, settings));
        actions.extend(self.dialog_ui(ui, found));
        actions
    }

    fn label_ui(&mut self, ui: &mut egui::Ui, device: &Device, settings: &Settings) -> Option<Action> {
        let making = matches!(&self.label, LabelStatus::Making { .. });
        let queue = settings.label.printer_queue.trim().to_owned();
        let mut asked = None;
        ui.horizontal_wrapped(|ui| {
            let print = ui
                .add_enabled(!making && !queue.is_empty(), egui::Button::new("Print label"))
                .on_hover_text(format!("Save the label and print it on {queue}"))
                .on_disabled_hover_text("Set a printer queue in Settings > Labels to print");
            if print.clicked() {
                asked = Some(Some(queue.clone()));
            }
            let save = ui
                .add_enabled(!making, egui::Button::new("Save label"))
                .on_hover_text(format!("Save the label in {}", settings.label.folder.display()));
            if save.clicked() {
                asked = Some(None);
            }
            if making {
                ui.spinner();
            }
        });
        match &self.label {
            LabelStatus::Done { device_id, outcome } if *device_id == device.id => match outcome {
                Ok(saved) => widgets::label_saved(ui, saved),
                Err(problem) => widgets::problem_box(ui, problem),
            },
            _ => {}
        }
        let printer_queue = asked?;
        match self.label_request(device, settings, printer_queue) {
            Ok(request) => {
                self.label = LabelStatus::Making { job: request.job, device_id: device.id.clone() };
                Some(Command::SaveLabel(Box::new(request)).into())
            }
            Err(problem) => {
                self.label = LabelStatus::Done { device_id: device.id.clone(), outcome: Err(problem) };
                None
            }
        }
    }

    /// The same label as after a provisioning (Settings > Labels), under a job of this screen.
    fn label_request(
        &mut self,
        device: &Device,
        settings: &Settings,
        printer_queue: Option<String>,
    ) -> Result<LabelRequest, Problem> {
        let spec = settings.label.spec().map_err(|reason| {
            Problem::new(format!("No label: {reason}."), "Fix the label size in Settings > Labels.")
        })?;
        self.last_label_job = self.last_label_job.max(FIRST_LABEL_JOB - 1) + 1;
        Ok(LabelRequest {
            job: self.last_label_job,
            device: device.clone(),
            folder: settings.label.folder.clone(),
            format: settings.label.format.format(),
            spec,
            printer_queue,
        })
    }

    fn dialog_ui(&mut self, ui: &egui::Ui, found: Option<&LinkReport>) -> Option<Action> {
        let dialog = self.dialog.as_mut()?;
        let enabled = ui.is_enabled();
        let frame = theme::card().inner_margin(egui::Margin::same(20)).shadow(ui.style().visuals.popup_shadow);
        let modal = egui::Modal::new(egui::Id::unique("device-action-dialog")).frame(frame).show(ui.ctx(), |ui| {
            // The screen behind is inert while the station locks; so is the dialog.
            ui.add_enabled_ui(enabled, |ui| match dialog {
                Dialog::Reconcile(dialog) => dialog.ui(ui, found),
                Dialog::Abandon(dialog) => dialog.ui(ui),
            })
            .inner
        });
        // Esc or a click beside the dialog closes it, unless an answer is awaited.
        let dismissed = modal.should_close() && !dialog.is_waiting();
        let output = modal.inner;
        if output.close || dismissed {
            self.dialog = None;
        }
        output.action
    }
}
