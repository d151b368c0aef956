//! The Devices screen: every device in a virtualised table (only the rows in view are laid out,
//! so 100,000 devices scroll smoothly), with search and filters, and a detail view with the
//! device's history.

use crate::device_index::{DeviceIndex, DeviceQuery};
use crate::messages::{Command, DeviceDetail};
use crate::problem::Problem;
use crate::screens::Action;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use keyfill_station::db::devices::{Device, DeviceState};

const TRANSPORTS: [(&str, &str); 3] = [("serial", "Serial"), ("pcsc", "PC/SC"), ("ble", "BLE")];

#[derive(Debug, Default)]
pub struct DevicesScreen {
    index: DeviceIndex,
    query: DeviceQuery,
    loading: bool,
    loaded: bool,
    selected: Option<String>,
    detail: Option<DeviceDetail>,
    problem: Option<Problem>,
}

fn search_field_id() -> egui::Id {
    egui::Id::unique("devices-search")
}

impl DevicesScreen {
    pub fn on_devices(&mut self, devices: Vec<Device>) {
        self.index.replace_all(devices);
        self.loading = false;
        self.loaded = true;
        self.problem = None;
    }

    pub fn on_device_changed(&mut self, device: Device) -> Option<Action> {
        let reload_detail = self.selected.as_deref() == Some(device.id.as_str());
        let id = device.id.clone();
        self.index.upsert(device);
        reload_detail.then(|| Command::LoadDeviceDetail { id }.into())
    }

    pub fn on_detail(&mut self, detail: DeviceDetail) {
        if self.selected.as_deref() == Some(detail.device.id.as_str()) {
            self.detail = Some(detail);
        }
    }

    pub fn on_problem(&mut self, problem: Problem) {
        self.loading = false;
        self.problem = Some(problem);
    }

    /// The inventory is loaded the first time the screen shows, then kept current by events.
    pub fn load_once(&mut self) -> Option<Action> {
        (!self.loaded && !self.loading).then(|| self.reload())
    }

    /// Selects the device `id` and asks for its history.
    pub fn select(&mut self, id: String) -> Action {
        self.selected = Some(id.clone());
        self.detail = None;
        Command::LoadDeviceDetail { id }.into()
    }

    fn reload(&mut self) -> Action {
        self.loading = true;
        Command::LoadDevices.into()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions: Vec<Action> = self.load_once().into_iter().collect();
        if ui.input_mut(|i| i.consume_key(egui::Modifiers::CTRL, egui::Key::F)) {
            ui.memory_mut(|m| m.request_focus(search_field_id()));
        }
        theme::card().show(ui, |ui| {
            ui.set_width(ui.available_width());
            actions.extend(self.toolbar(ui));
        });
        if let Some(problem) = &self.problem {
            ui.add_space(8.0);
            widgets::problem_box(ui, problem);
        }
        ui.add_space(theme::SPACING);
        if self.selected.is_some() {
            egui::Panel::right("device-detail")
                .resizable(true)
                .default_size(420.0)
                .min_size(320.0)
                .frame(theme::card().inner_margin(egui::Margin::same(16)))
                .show(ui, |ui| {
                    if let Some(action) = self.detail_ui(ui) {
                        actions.push(action);
                    }
                });
        }
        theme::card().inner_margin(egui::Margin::same(8)).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.set_height(ui.available_height());
            if let Some(action) = self.table(ui) {
                actions.push(action);
            }
        });
        actions
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut query = self.query.clone();
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Search");
            ui.add(
                egui::TextEdit::singleline(&mut query.text)
                    .id(search_field_id())
                    .hint_text("name, id, serial number, port")
                    .desired_width(300.0),
            )
            .labelled_by(label.id);
            widgets::key_hint(ui, "Ctrl+F");
            ui.separator();
            let counts = self.index.counts();
            let states = [
                (None, format!("All {}", self.index.len())),
                (Some(DeviceState::Provisioned), format!("Provisioned {}", counts.provisioned)),
                (Some(DeviceState::Pending), format!("Pending {}", counts.pending)),
                (Some(DeviceState::Failed), format!("Failed {}", counts.failed)),
            ];
            for (state, text) in states {
                ui.selectable_value(&mut query.state, state, text);
            }
            ui.separator();
            let shown = query
                .transport
                .as_deref()
                .and_then(|t| TRANSPORTS.iter().find(|(key, _)| *key == t).map(|(_, title)| *title))
                .unwrap_or("Any link");
            egui::ComboBox::from_id_salt("transport-filter")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut query.transport, None, "Any link");
                    for (key, title) in TRANSPORTS {
                        ui.selectable_value(&mut query.transport, Some(key.to_owned()), title);
                    }
                })
                .response
                .accessible_name("Link filter");
            if ui.add_enabled(!self.loading, egui::Button::new("Refresh")).clicked() {
                actions.push(self.reload());
            }
            if self.loading {
                ui.spinner();
            }
        });
        if query != self.query {
            self.index.set_query(query.clone());
            self.query = query;
        }
        ui.label(
            RichText::new(format!("Showing {} of {} devices", self.index.visible().len(), self.index.len()))
                .color(theme::MUTED_TEXT),
        );
        actions
    }

    fn table(&mut self, ui: &mut egui::Ui) -> Option<Action> {
        let mut clicked = None;
        if self.index.is_empty() {
            let text = if self.loading {
                "Loading the inventory…"
            } else {
                "No devices yet: provision one on the Provision screen."
            };
            ui.label(RichText::new(text).color(theme::MUTED_TEXT));
            return None;
        }
        let visible = self.index.visible();
        // With the detail open the table narrows to what tells devices apart.
        let compact = self.selected.is_some();
        let titles: &[&str] = if compact {
            &["Name", "State", "Id", "Updated (UTC)"]
        } else {
            &["Name", "State", "Id", "Serial number", "Link", "Updated (UTC)"]
        };
        let mut table = TableBuilder::new(ui)
            .id_salt("devices-table")
            .striped(true)
            .sense(egui::Sense::click())
            .column(Column::initial(170.0).at_least(110.0).clip(true))
            .column(Column::initial(115.0).at_least(90.0));
        table = if compact {
            table.column(Column::remainder().at_least(100.0).clip(true))
        } else {
            table
                .column(Column::initial(300.0).at_least(120.0).clip(true))
                .column(Column::initial(140.0).at_least(80.0).clip(true))
                .column(Column::remainder().at_least(120.0).clip(true))
        };
        table
            .column(Column::exact(150.0))
            .header(theme::ROW_HEIGHT, |mut header| {
                for title in titles {
                    header.col(|ui| {
                        ui.strong(*title);
                    });
                }
            })
            .body(|body| {
                body.rows(theme::ROW_HEIGHT, visible.len(), |mut row| {
                    let Some(device) = visible.get(row.index()).and_then(|&i| self.index.device(i)) else { return };
                    row.set_selected(self.selected.as_deref() == Some(device.id.as_str()));
                    row.col(|ui| {
                        ui.label(&device.name);
                    });
                    row.col(|ui| {
                        let state = device.state.as_str();
                        ui.label(RichText::new(state).color(widgets::state_tone(state).color()).strong());
                    });
                    row.col(|ui| {
                        ui.monospace(&device.id);
                    });
                    if !compact {
                        row.col(|ui| {
                            ui.label(&device.serial_number);
                        });
                        row.col(|ui| {
                            ui.label(link_text(device));
                        });
                    }
                    row.col(|ui| {
                        let time = widgets::utc_time(device.updated_at);
                        ui.label(time.get(..16).unwrap_or(&time));
                    });
                    if row.response().clicked() {
                        clicked = Some(device.id.clone());
                    }
                });
            });
        clicked.map(|id| self.select(id))
    }

    fn detail_ui(&mut self, ui: &mut egui::Ui) -> Option<Action> {
        let selected = self.selected.clone()?;
        let mut action = None;
        ui.horizontal(|ui| {
            ui.label(RichText::new("Device").heading().strong());
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui.button("Close").clicked() {
                    self.selected = None;
                    self.detail = None;
                }
                if ui.button("Reload").clicked() {
                    action = Some(Command::LoadDeviceDetail { id: selected.clone() }.into());
                }
            });
        });
        let device = self.detail.as_ref().map(|d| &d.device).or_else(|| self.index.by_id(&selected))?;
        ui.label(RichText::new(&device.name).text_style(theme::title_style()).strong());
        let state = device.state.as_str();
        widgets::notice(ui, widgets::state_tone(state), state);
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
        widgets::facts(ui, "device-detail-facts", &rows);
        if let Some(failure) = &device.failure {
            ui.add_space(6.0);
            widgets::notice(ui, Tone::Warning, &format!("Last problem: {failure}"));
        }
        ui.add_space(theme::SPACING);
        ui.label(RichText::new("Device history").strong());
        match &self.detail {
            None => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Loading…");
                });
            }
            Some(detail) => {
                egui::ScrollArea::vertical().id_salt("device-history").max_height(ui.available_height()).show(
                    ui,
                    |ui| {
                        for event in detail.history.iter().rev() {
                            ui.horizontal_wrapped(|ui| {
                                ui.label(RichText::new(widgets::utc_time(event.at)).small().color(theme::MUTED_TEXT));
                                ui.label(
                                    RichText::new(&event.kind).color(widgets::state_tone(&event.kind).color()).strong(),
                                );
                                ui.label(
                                    RichText::new(format!("by {}", event.operator)).small().color(theme::MUTED_TEXT),
                                );
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
                    },
                );
            }
        }
        action
    }
}

fn link_text(device: &Device) -> String {
    match (device.transport.as_deref(), device.port.as_deref()) {
        (Some(transport), Some(port)) => format!("{transport} {port}"),
        (Some(transport), None) => transport.to_owned(),
        _ => "-".to_owned(),
    }
}
