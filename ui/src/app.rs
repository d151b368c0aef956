//! App state and panels.

use crate::bridge::{Bridge, Command, Event};
use eframe::egui;
use keyfill_station::db::devices::Device;

pub struct KeyfillApp {
    bridge: Bridge,
    devices: Vec<Device>,
    filter: String,
    error: Option<String>,
    loading: bool,
}

impl KeyfillApp {
    pub fn new(bridge: Bridge) -> Self {
        bridge.send(Command::RefreshDevices);
        KeyfillApp { bridge, devices: Vec::new(), filter: String::new(), error: None, loading: true }
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.bridge.try_recv() {
            match event {
                Event::Devices(list) => {
                    self.devices = list;
                    self.loading = false;
                    self.error = None;
                }
                Event::Error(message) => {
                    self.error = Some(message);
                    self.loading = false;
                }
            }
        }
    }

    fn devices_panel(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("Devices");
            if ui.button("Refresh").clicked() {
                self.loading = true;
                self.bridge.send(Command::RefreshDevices);
            }
            if self.loading {
                ui.spinner();
            }
            ui.label("Filter:");
            ui.text_edit_singleline(&mut self.filter);
        });
        if let Some(error) = &self.error {
            ui.colored_label(egui::Color32::RED, format!("{error} — check the database URL and try Refresh."));
        }
        let needle = self.filter.to_lowercase();
        let rows: Vec<&Device> = self
            .devices
            .iter()
            .filter(|d| needle.is_empty() || d.name.to_lowercase().contains(&needle) || d.id.contains(&needle))
            .collect();
        ui.label(format!("{} of {} devices", rows.len(), self.devices.len()));
        egui_extras::TableBuilder::new(ui)
            .striped(true)
            .column(egui_extras::Column::auto().at_least(260.0))
            .column(egui_extras::Column::auto().at_least(180.0))
            .column(egui_extras::Column::auto().at_least(90.0))
            .column(egui_extras::Column::auto().at_least(80.0))
            .column(egui_extras::Column::remainder())
            .header(22.0, |mut header| {
                for title in ["ID", "Name", "State", "Link", "Port"] {
                    header.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(20.0, rows.len(), |mut row| {
                    let device = rows[row.index()];
                    row.col(|ui| {
                        ui.monospace(&device.id);
                    });
                    row.col(|ui| {
                        ui.label(&device.name);
                    });
                    row.col(|ui| {
                        ui.label(device.state.as_str());
                    });
                    row.col(|ui| {
                        ui.label(device.transport.as_deref().unwrap_or("-"));
                    });
                    row.col(|ui| {
                        ui.label(device.port.as_deref().unwrap_or("-"));
                    });
                });
            });
    }
}

impl eframe::App for KeyfillApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.bridge.set_repaint_context(ctx);
        self.drain_events();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::CentralPanel::default().show(ui, |ui| self.devices_panel(ui));
    }
}
