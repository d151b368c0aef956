//! The Devices screen: every device in a virtualised table (only the rows in view are laid out,
//! so 100,000 devices scroll smoothly), with search and filters, and a detail view with the
//! device's history and what can be done to it.
//!
//! The list arrives already indexed ([`Event::DeviceIndex`](crate::messages::Event)): this
//! screen only swaps it in, keeping the previous list on screen while a reload is on its way.
//!
//! - [`table`]: the table.
//! - [`detail`]: the selected device's record, history and actions.
//! - [`actions`]: labels, and the reconcile and abandon dialogs of a pending device.

mod abandon;
mod actions;
mod detail;
mod link_choice;
mod reconcile;
mod table;

use crate::device_index::{DeviceIndex, DeviceQuery};
use crate::messages::{Command, DeviceDetail, JobId, LabelSaved, LinkReport};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::Settings;
use crate::theme;
use crate::widgets;
use actions::DeviceActions;
use eframe::egui::{self, RichText};
use keyfill_station::db::devices::{Device, DeviceState};
use keyfill_station::provision::ReconcileVerdict;

const TRANSPORTS: [(&str, &str); 3] = [("serial", "Serial"), ("pcsc", "PC/SC"), ("ble", "BLE")];

#[derive(Debug, Default)]
pub struct DevicesScreen {
    index: DeviceIndex,
    query: DeviceQuery,
    loading: bool,
    loaded: bool,
    /// Records changed since the list on its way was read: replayed onto it when it arrives,
    /// so a provisioning finished during a reload is not lost.
    changed_while_loading: Vec<Device>,
    selected: Option<String>,
    detail: Option<DeviceDetail>,
    problem: Option<Problem>,
    actions: DeviceActions,
    links: Option<LinkReport>,
}

fn search_field_id() -> egui::Id {
    egui::Id::unique("devices-search")
}

impl DevicesScreen {
    /// The list, indexed off the UI thread: swapped in, with the current filter.
    pub fn on_index(&mut self, mut index: DeviceIndex) {
        for device in self.changed_while_loading.drain(..) {
            index.upsert_if_newer(device);
        }
        index.set_query(self.query.clone());
        self.index = index;
        self.loading = false;
        self.loaded = true;
        self.problem = None;
    }

    pub fn on_device_changed(&mut self, device: Device) -> Option<Action> {
        let reload_detail = self.selected.as_deref() == Some(device.id.as_str());
        let id = device.id.clone();
        if self.loading {
            self.changed_while_loading.push(device.clone());
        }
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
        self.changed_while_loading.clear();
        self.problem = Some(problem);
    }

    pub fn on_links(&mut self, report: LinkReport) {
        self.links = Some(report);
    }

    /// Whether `job` is a label this screen asked for (the Provision screen asks for others).
    pub fn owns_label(&self, job: JobId) -> bool {
        self.actions.owns_label(job)
    }

    pub fn on_label(&mut self, job: JobId, outcome: Result<LabelSaved, Problem>) {
        self.actions.on_label(job, outcome);
    }

    pub fn on_reconciled(&mut self, device_id: &str, outcome: Result<ReconcileVerdict, Problem>) {
        self.actions.on_reconciled(device_id, outcome);
    }

    pub fn on_abandoned(&mut self, device_id: &str, outcome: Result<(), Problem>) {
        self.actions.on_abandoned(device_id, outcome);
    }

    /// A reconcile or abandon the station refused outright (a locked station).
    pub fn on_action_problem(&mut self, problem: Problem) {
        self.actions.on_problem(problem);
    }

    /// The inventory is loaded the first time the screen shows, then kept current by events.
    pub fn load_once(&mut self) -> Option<Action> {
        (!self.loaded && !self.loading).then(|| self.reload())
    }

    /// Forgets the search and filters, so a device opened from another screen is in the table.
    pub fn clear_search(&mut self) {
        if self.query != DeviceQuery::default() {
            self.query = DeviceQuery::default();
            self.index.set_query(self.query.clone());
        }
    }

    /// Selects the device `id` and asks for its history.
    pub fn select(&mut self, id: String) -> Action {
        self.selected = Some(id.clone());
        self.detail = None;
        Command::LoadDeviceDetail { id }.into()
    }

    /// Asks for the whole list again; the one shown stays until it arrives.
    pub fn reload(&mut self) -> Action {
        self.loading = true;
        self.changed_while_loading.clear();
        Command::LoadDevices.into()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &Settings) -> Vec<Action> {
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
            // The table keeps at least its compact columns beside the detail.
            let width = ui.available_width();
            egui::Panel::right("device-detail")
                .resizable(true)
                .default_size((width * 0.45).clamp(340.0, 480.0))
                .min_size(320.0)
                .max_size((width - 460.0).max(320.0))
                .frame(theme::card().inner_margin(egui::Margin::same(16)))
                .show(ui, |ui| actions.extend(self.detail_ui(ui, settings)));
        }
        theme::card().inner_margin(egui::Margin::same(8)).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.set_height(ui.available_height());
            if let Some(id) = table::show(ui, &self.index, self.selected.as_deref(), self.loading) {
                actions.push(self.select(id));
            }
        });
        actions
    }

    fn toolbar(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut query = self.query.clone();
        let mut open_first = false;
        ui.horizontal_wrapped(|ui| {
            let label = ui.label("Search");
            let search = ui
                .add(
                    egui::TextEdit::singleline(&mut query.text)
                        .id(search_field_id())
                        .hint_text("name, id, serial number, port")
                        .desired_width(300.0),
                )
                .labelled_by(label.id);
            if search.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                open_first = true;
            }
            widgets::key_hint(ui, "Ctrl+F · Enter opens");
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
            let orders: Vec<String> = self.index.orders().map(str::to_owned).collect();
            if !orders.is_empty() || query.order.is_some() {
                let shown = query.order.clone().unwrap_or_else(|| "Any work order".into());
                egui::ComboBox::from_id_salt("order-filter")
                    .selected_text(shown)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut query.order, None, "Any work order");
                        for order in orders {
                            ui.selectable_value(&mut query.order, Some(order.clone()), order);
                        }
                    })
                    .response
                    .accessible_name("Work order filter");
            }
            if ui.add_enabled(!self.loading, egui::Button::new("Refresh")).clicked() {
                actions.push(self.reload());
            }
            if self.loading {
                ui.spinner();
                if self.loaded {
                    ui.label(RichText::new("Reloading…").color(theme::MUTED_TEXT));
                }
            }
        });
        if query != self.query {
            self.index.set_query(query.clone());
            self.query = query;
        }
        if open_first {
            let first = self.index.visible().first().and_then(|&i| self.index.device(i)).map(|d| d.id.clone());
            if let Some(id) = first {
                actions.push(self.select(id));
            }
        }
        ui.label(
            RichText::new(format!("Showing {} of {} devices", self.index.visible().len(), self.index.len()))
                .color(theme::MUTED_TEXT),
        );
        actions
    }
}

fn link_text(device: &Device) -> String {
    match (device.transport.as_deref(), device.port.as_deref()) {
        (Some(transport), Some(port)) => format!("{transport} {port}"),
        (Some(transport), None) => transport.to_owned(),
        _ => "-".to_owned(),
    }
}
