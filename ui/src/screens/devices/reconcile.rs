//! Reconciling a pending device (`keyfill devices reconcile`): a key was sent to it but its
//! confirmation never came back, so the station asks the device, over a link, whether it holds
//! that key. Yes: the record becomes provisioned. No: failed, and the device can be provisioned
//! again. No answer: the record stays pending.

use super::actions::DialogOutput;
use super::link_choice;
use crate::messages::{Command, LinkReport, ReconcileRequest};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::{LinkSettings, Settings};
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::db::devices::Device;
use keyfill_station::provision::ReconcileVerdict;

#[derive(Debug)]
enum Asked {
    NotYet,
    Asking,
    Answered(Result<ReconcileVerdict, Problem>),
}

#[derive(Debug)]
pub struct ReconcileDialog {
    pub device_id: String,
    name: String,
    link: LinkSettings,
    asked: Asked,
}

impl ReconcileDialog {
    pub fn new(device: &Device, settings: &Settings) -> Self {
        ReconcileDialog {
            device_id: device.id.clone(),
            name: device.name.clone(),
            link: link_choice::for_device(device, &settings.link),
            asked: Asked::NotYet,
        }
    }

    pub fn is_waiting(&self) -> bool {
        matches!(self.asked, Asked::Asking)
    }

    pub fn on_answer(&mut self, outcome: Result<ReconcileVerdict, Problem>) {
        self.asked = Asked::Answered(outcome);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, found: Option<&LinkReport>) -> DialogOutput {
        let mut output = DialogOutput::default();
        ui.set_width(560.0);
        ui.label(RichText::new(format!("Reconcile {}", self.name)).heading().strong());
        ui.add(
            egui::Label::new(
                "A key was sent to this device but its confirmation never came back. Put the device on a link: the \
                 station asks it whether it holds that key. If it does, the record becomes provisioned; if not, \
                 failed, and you can provision it again.",
            )
            .wrap(),
        );
        ui.add_space(theme::SPACING);
        let asking = self.is_waiting();
        ui.add_enabled_ui(!asking, |ui| link_choice::ui(ui, &mut self.link, found));
        ui.add_space(theme::SPACING);
        ui.horizontal(|ui| {
            let ask = widgets::primary_button("Ask the device", !asking, egui::vec2(200.0, 40.0));
            if ui.add_enabled(!asking, ask).clicked() {
                output.action = self.request();
            }
            let close = if matches!(self.asked, Asked::Answered(_)) { "Done" } else { "Cancel" };
            if ui.add_enabled(!asking, egui::Button::new(close)).clicked() {
                output.close = true;
            }
            if ui.add(egui::Button::new("Detect links")).clicked() {
                output.action = Some(Command::DetectLinks.into());
            }
        });
        match &self.asked {
            Asked::NotYet => {}
            Asked::Asking => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Asking the device…");
                });
            }
            Asked::Answered(Ok(ReconcileVerdict::Provisioned)) => {
                widgets::notice(ui, Tone::Ok, &format!("{} holds its key: now provisioned.", self.name));
            }
            Asked::Answered(Ok(ReconcileVerdict::Failed)) => {
                widgets::notice(ui, Tone::Warning, &format!("{} does not hold its key: now failed.", self.name));
                ui.label("Provision it again on the Provision screen: it gets a new key.");
            }
            Asked::Answered(Err(problem)) => widgets::problem_box(ui, problem),
        }
        output
    }

    fn request(&mut self) -> Option<Action> {
        let Some(link) = self.link.target() else {
            self.asked =
                Asked::Answered(Err(Problem::new("No link is chosen.", "Type the serial port the device is on.")));
            return None;
        };
        self.asked = Asked::Asking;
        let request = ReconcileRequest { device_id: self.device_id.clone(), link, card_wait: self.link.card_wait() };
        Some(Command::Reconcile(Box::new(request)).into())
    }
}
