//! Abandoning a pending device (`keyfill devices abandon`): for a device that can no longer be
//! asked (scrapped, replaced, re-initialised). The record becomes failed with the operator's
//! reason; if the device does hold the key after all, it refuses a new one until factory-reset,
//! so the dialog says so and asks for an explicit confirmation.

use super::actions::DialogOutput;
use crate::messages::{AbandonRequest, Command};
use crate::problem::Problem;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::db::devices::Device;

#[derive(Debug)]
enum Progress {
    Deciding,
    Abandoning,
    Done(Result<(), Problem>),
}

#[derive(Debug)]
pub struct AbandonDialog {
    pub device_id: String,
    name: String,
    reason: String,
    understood: bool,
    progress: Progress,
}

impl AbandonDialog {
    pub fn new(device: &Device) -> Self {
        AbandonDialog {
            device_id: device.id.clone(),
            name: device.name.clone(),
            reason: String::new(),
            understood: false,
            progress: Progress::Deciding,
        }
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self.progress, Progress::Abandoning)
    }

    pub fn on_done(&mut self, outcome: Result<(), Problem>) {
        self.progress = Progress::Done(outcome);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) -> DialogOutput {
        let mut output = DialogOutput::default();
        ui.set_width(560.0);
        ui.label(RichText::new(format!("Abandon {}", self.name)).heading().strong());
        if let Progress::Done(Ok(())) = self.progress {
            widgets::notice(ui, Tone::Ok, &format!("{} abandoned: now failed.", self.name));
            ui.label("The event log keeps your reason. Provisioning it again needs a factory-reset device.");
            if ui.button("Done").clicked() {
                output.close = true;
            }
            return output;
        }
        ui.add(
            egui::Label::new(
                "Only for a device that can no longer be asked whether it holds its pending key: scrapped, replaced, \
                 or re-initialised with a new identity. Otherwise reconcile it. The record becomes failed; its pending \
                 key stays sealed in the inventory for the audit trail.",
            )
            .wrap(),
        );
        ui.add_space(6.0);
        widgets::notice(
            ui,
            Tone::Warning,
            "If the device does hold that key, it refuses any new key (AlreadyProvisioned) until it is factory-reset \
             (keyfill-agent reset --yes).",
        );
        ui.add_space(theme::SPACING);
        let busy = self.is_waiting();
        ui.add_enabled_ui(!busy, |ui| {
            let label = ui.label("Reason (kept in the event log)");
            ui.add(
                egui::TextEdit::singleline(&mut self.reason)
                    .hint_text("e.g. board scrapped after a failed flash")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
            ui.checkbox(
                &mut self.understood,
                "I understand: the device may refuse a new key until it is factory-reset",
            );
        });
        let missing = if self.reason.trim().is_empty() {
            Some("Give a reason to abandon the device.")
        } else if !self.understood {
            Some("Tick the confirmation above to abandon the device.")
        } else {
            None
        };
        ui.add_space(6.0);
        ui.horizontal(|ui| {
            let ready = missing.is_none() && !busy;
            let abandon = egui::Button::new(RichText::new("Abandon device").size(19.0).strong().color(if ready {
                egui::Color32::WHITE
            } else {
                theme::MUTED_TEXT
            }))
            .fill(if ready { theme::FAILED } else { egui::Color32::from_gray(222) })
            .min_size(egui::vec2(200.0, 40.0));
            if ui.add_enabled(ready, abandon).clicked() {
                self.progress = Progress::Abandoning;
                output.action = Some(
                    Command::Abandon(AbandonRequest {
                        device_id: self.device_id.clone(),
                        reason: self.reason.trim().to_owned(),
                    })
                    .into(),
                );
            }
            if ui.add_enabled(!busy, egui::Button::new("Cancel")).clicked() {
                output.close = true;
            }
        });
        if let Some(missing) = missing {
            ui.label(RichText::new(missing).color(theme::MUTED_TEXT));
        }
        match &self.progress {
            Progress::Abandoning => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Abandoning…");
                });
            }
            Progress::Done(Err(problem)) => widgets::problem_box(ui, problem),
            Progress::Deciding | Progress::Done(Ok(())) => {}
        }
        output
    }
}
