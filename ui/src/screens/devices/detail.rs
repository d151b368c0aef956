//! The selected device: its record, what can be done to it, and its history.

use super::{DevicesScreen, link_text};
use crate::messages::Command;
use crate::screens::Action;
use crate::settings::Settings;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::db::devices::Device;

impl DevicesScreen {
    pub(super) fn detail_ui(&mut self, ui: &mut egui::Ui, settings: &Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(selected) = self.selected.clone() else { return actions };
        ui.horizontal(|ui| {
            ui.label(RichText::new("Device").heading().strong());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.button("Close").clicked() {
                    self.selected = None;
                    self.detail = None;
                }
                if ui.button("Reload").clicked() {
                    actions.push(Command::LoadDeviceDetail { id: selected.clone() }.into());
                }
            });
        });
        let Some(device) = self.detail.as_ref().map(|d| &d.device).or_else(|| self.index.by_id(&selected)).cloned()
        else {
            return actions;
        };
        // One scroll for the whole record: on a small window nothing falls out of reach.
        egui::ScrollArea::vertical().id_salt("device-detail").auto_shrink([false, false]).show(ui, |ui| {
            ui.label(RichText::new(&device.name).text_style(theme::title_style()).strong());
            let state = device.state.as_str();
            widgets::notice(ui, widgets::state_tone(state), state);
            // What can be done comes before the facts: it is what the operator came for.
            ui.add_space(4.0);
            actions.extend(self.actions.ui(ui, &device, settings, self.links.as_ref()));
            ui.add_space(theme::SPACING);
            widgets::facts(ui, "device-detail-facts", &facts(&device));
            if let Some(failure) = &device.failure {
                ui.add_space(6.0);
                widgets::notice(ui, Tone::Warning, &format!("Last problem: {failure}"));
            }
            ui.add_space(theme::SPACING);
            self.history_ui(ui);
        });
        actions
    }

    fn history_ui(&self, ui: &mut egui::Ui) {
        ui.label(RichText::new("Device history").strong());
        let Some(detail) = &self.detail else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Loading…");
            });
            return;
        };
        for event in detail.history.iter().rev() {
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(widgets::utc_time(event.at)).small().color(theme::MUTED_TEXT));
                ui.label(RichText::new(&event.kind).color(widgets::state_tone(&event.kind).color()).strong());
                ui.label(RichText::new(format!("by {}", event.operator)).small().color(theme::MUTED_TEXT));
            });
            ui.add(egui::Label::new(&event.detail).wrap());
            ui.add_space(4.0);
        }
        if !detail.exports.is_empty() {
            ui.add_space(8.0);
            ui.label(RichText::new("C2 exports").strong());
            for export in &detail.exports {
                ui.label(format!(
                    "{}  {}  {}{}",
                    widgets::utc_time(export.at),
                    export.outcome,
                    export.target,
                    export.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
                ));
            }
        }
    }
}

fn facts(device: &Device) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Id", widgets::grouped(&device.id)),
        ("Serial number", device.serial_number.clone()),
        ("Credential", device.credential_mode.clone()),
        ("Link", link_text(device)),
        ("Key id", device.key_id.as_deref().map(widgets::grouped).unwrap_or_else(|| "-".into())),
    ];
    if let Some(model) = &device.model {
        rows.push(("Model", model.clone()));
    }
    match device.provisioned_at {
        Some(at) => rows.push(("Provisioned", widgets::utc_time(at))),
        None => rows.push(("First seen", widgets::utc_time(device.created_at))),
    }
    if let Some(rotation) = &device.rotation {
        rows.push(("Rotation", format!("{rotation} ({} attempts)", device.rotation_attempts.unwrap_or(0))));
    }
    rows
}
