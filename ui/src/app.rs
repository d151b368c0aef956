//! The app: which screen shows, whether the station is locked, and the routing of events to the
//! screens. Everything the station does arrives here as an [`Event`] drained each frame.

use crate::bridge::Bridge;
use crate::custody::{Access, role_text};
use crate::messages::{
    BundleRefused, Command, Event, ExportUpdate, ProvisionUpdate, RotationUpdate, StationSummary, WatchUpdate,
};
use crate::problem::Problem;
use crate::screens::devices::DevicesScreen;
use crate::screens::history::HistoryScreen;
use crate::screens::provision::ProvisionScreen;
use crate::screens::rotation_export::RotationExportScreen;
use crate::screens::settings::SettingsScreen;
use crate::screens::unlock::UnlockScreen;
use crate::screens::{Action, Screen};
use crate::settings::{self, CameraChoice, CameraSource, Settings};
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, Key, Modifiers, RichText};
use keyfill_station::scan::source::FrameSource;
use std::path::PathBuf;
use std::time::Duration;

/// Whether the master key is unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Locked,
    Unlocked,
    /// Asked to lock; the station finishes the work in progress first.
    Locking {
        idle: bool,
    },
}

/// A message across the top of the window until dismissed.
#[derive(Debug, Clone)]
struct Banner {
    tone: Tone,
    text: String,
    help: Option<String>,
}

#[derive(Debug)]
pub struct KeyfillApp {
    bridge: Bridge,
    settings: Settings,
    settings_path: Option<PathBuf>,
    station: Option<StationSummary>,
    /// Who is logged in and what they may do, at a station with named operators.
    access: Access,
    lock: LockState,
    screen: Screen,
    unlock: UnlockScreen,
    provision: ProvisionScreen,
    devices: DevicesScreen,
    rotation_export: RotationExportScreen,
    history: HistoryScreen,
    settings_screen: SettingsScreen,
    banner: Option<Banner>,
    /// UI time of the last input, for the inactivity lock.
    last_input: f64,
    /// The camera source running now, to restart it when the settings change.
    camera_running_for: Option<CameraChoice>,
    /// Set when a test or demo feeds the camera itself: the settings do not drive it then.
    camera_injected: bool,
    styled: bool,
}

impl KeyfillApp {
    /// The app over `bridge`, with `settings` as loaded from `settings_path` (which Save writes;
    /// `None` keeps settings in memory only).
    pub fn new(bridge: Bridge, settings: Settings, settings_path: Option<PathBuf>) -> Self {
        let settings_screen = SettingsScreen::new(settings_path.clone());
        KeyfillApp {
            bridge,
            settings,
            settings_path,
            station: None,
            access: Access::default(),
            lock: LockState::Locked,
            screen: Screen::Provision,
            unlock: UnlockScreen::new(),
            provision: ProvisionScreen::default(),
            devices: DevicesScreen::default(),
            rotation_export: RotationExportScreen::default(),
            history: HistoryScreen::default(),
            settings_screen,
            banner: None,
            last_input: 0.0,
            camera_running_for: None,
            camera_injected: false,
            styled: false,
        }
    }

    /// Shows a warning across the top (e.g. settings that could not be read at start).
    pub fn warn(&mut self, text: impl Into<String>, help: impl Into<String>) {
        self.banner = Some(Banner { tone: Tone::Warning, text: text.into(), help: Some(help.into()) });
    }

    pub fn lock_state(&self) -> LockState {
        self.lock
    }

    /// The logged-in operator and what they may do (named operators); the default otherwise.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The two-person approval dialog of a bundle export, while it shows.
    pub fn approval_dialog(&self) -> Option<&crate::screens::approval::ApprovalDialog> {
        self.rotation_export.approval()
    }

    pub fn screen(&self) -> Screen {
        self.screen
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Feeds the camera panel from `source` instead of the configured camera (tests, demos).
    pub fn start_camera(&mut self, source: Box<dyn FrameSource>) {
        self.camera_injected = true;
        self.provision.camera.start(source, self.bridge.waker());
    }

    /// One frame: drain the station's events, handle shortcuts and the inactivity lock, draw.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let context = ui.ctx().clone();
        if !self.styled {
            // This frame's `Ui` was made with the old style: draw from the next one on.
            theme::apply(&context);
            self.styled = true;
            context.request_repaint();
            return;
        }
        self.bridge.set_repaint_context(&context);
        let now = ui.input(|i| i.time);
        let mut actions = Vec::new();
        for event in self.bridge.drain() {
            actions.extend(self.on_event(event, now));
        }
        self.track_activity(ui, now);
        actions.extend(self.shortcuts(ui));
        self.keep_camera_right();
        if self.lock != LockState::Locked {
            let (camera_actions, read_any) = self.provision.poll_camera(now, &self.settings);
            if read_any {
                self.last_input = now;
            }
            actions.extend(camera_actions);
        }
        actions.extend(self.draw(ui));
        for action in actions {
            self.perform(action);
        }
    }

    fn on_event(&mut self, event: Event, now: f64) -> Vec<Action> {
        match event {
            Event::Station(summary) => self.station = Some(summary),
            Event::Unlocked => {
                self.lock = LockState::Unlocked;
                self.unlock.on_unlocked();
                self.last_input = now;
                self.provision.focus_scan_field();
            }
            Event::LoggedIn(actor) => {
                let custody = self.station.as_ref().and_then(|station| station.custody);
                self.set_access(Access { actor: Some(actor), custody });
            }
            Event::UnlockFailed(problem) => self.unlock.on_failed(problem),
            Event::ApprovalRefused { command, problem } => match command {
                "export_bundle" => self.rotation_export.on_approval_refused(problem),
                _ => self.show_problem(problem),
            },
            Event::Locked => {
                if let LockState::Locking { idle: true } = self.lock {
                    self.unlock.reason = Some(format!(
                        "Locked after {} minute(s) without input.",
                        self.settings.lock.after_idle_minutes
                    ));
                }
                self.lock = LockState::Locked;
                self.set_access(Access::default());
                self.stop_camera();
            }
            Event::Links(report) => {
                self.devices.on_links(report.clone());
                self.provision.on_links(report);
            }
            Event::Provision { job, update } => {
                if matches!(
                    update,
                    ProvisionUpdate::Provisioned { .. }
                        | ProvisionUpdate::Failed(_)
                        | ProvisionUpdate::Cancelled { .. }
                ) {
                    self.history.mark_stale();
                }
                return self.provision.on_provision(job, update, &self.settings);
            }
            Event::DeviceIndex(index) => self.devices.on_index(*index),
            Event::Orders(orders) => self.provision.on_orders(orders),
            Event::DeviceChanged(device) => return self.devices.on_device_changed(device).into_iter().collect(),
            Event::DeviceDetail(detail) => self.devices.on_detail(detail),
            Event::History(rows) => self.history.on_history(rows),
            Event::Label { job, outcome } => {
                if self.devices.owns_label(job) {
                    self.devices.on_label(job, outcome);
                } else {
                    self.provision.on_label(job, outcome);
                }
            }
            Event::Rotation(update) => {
                let finished = matches!(update, RotationUpdate::Finished(_));
                self.rotation_export.on_rotation(update);
                if finished {
                    self.history.mark_stale();
                    return vec![self.devices.reload()];
                }
            }
            Event::Watch(update) => {
                let stopped = matches!(update, WatchUpdate::Stopped(_));
                self.rotation_export.on_watch(update);
                if stopped {
                    self.history.mark_stale();
                    return vec![self.devices.reload()];
                }
            }
            Event::Export(update) => {
                if matches!(update, ExportUpdate::Finished { .. }) {
                    self.history.mark_stale();
                }
                self.rotation_export.on_export(update);
            }
            Event::Bundle(outcome) => {
                self.history.mark_stale();
                self.rotation_export.on_bundle(outcome);
            }
            Event::Reconciled { device_id, outcome } => {
                self.history.mark_stale();
                self.devices.on_reconciled(&device_id, outcome);
            }
            Event::Abandoned { device_id, outcome } => {
                self.history.mark_stale();
                self.devices.on_abandoned(&device_id, outcome);
            }
            Event::Problem { command, problem } => match command {
                "load_devices" | "load_device_detail" => self.devices.on_problem(problem),
                "load_history" => self.history.on_problem(problem),
                // A run refused outright (a locked station): its panel shows why, so it does
                // not wait for an answer that never comes.
                "rotate" => self.rotation_export.on_rotation(RotationUpdate::Failed(problem)),
                "watch_rotation" => self.rotation_export.on_watch(WatchUpdate::Failed(problem)),
                "export_c2" => self.rotation_export.on_export(ExportUpdate::Failed(problem)),
                "export_bundle" => {
                    self.rotation_export.on_bundle(Err(BundleRefused { problem, excluded: Vec::new() }));
                }
                "reconcile" | "abandon" => self.devices.on_action_problem(problem),
                "load_orders" => self.provision.on_orders_problem(problem),
                _ => self.show_problem(problem),
            },
        }
        Vec::new()
    }

    fn set_access(&mut self, access: Access) {
        self.provision.access = access.clone();
        self.access = access;
    }

    fn show_problem(&mut self, problem: Problem) {
        self.banner = Some(Banner { tone: Tone::Failed, text: problem.message, help: Some(problem.help) });
    }

    fn track_activity(&mut self, ui: &egui::Ui, now: f64) {
        if ui.input(|i| !i.events.is_empty()) {
            self.last_input = now;
        }
        let minutes = self.settings.lock.after_idle_minutes;
        if self.lock != LockState::Unlocked || minutes == 0 {
            return;
        }
        let idle_for = now - self.last_input;
        let limit = f64::from(minutes) * 60.0;
        if idle_for >= limit {
            self.lock(true);
        } else {
            ui.ctx().request_repaint_after(Duration::from_secs_f64(limit - idle_for));
        }
    }

    fn lock(&mut self, idle: bool) {
        if self.lock == LockState::Unlocked {
            self.lock = LockState::Locking { idle };
            // The station stops a watch for first contact before it locks: a watch never ends
            // by itself, so waiting for it would never lock.
            self.rotation_export.on_locking();
            self.bridge.send(Command::Lock);
        }
    }

    fn shortcuts(&mut self, ui: &egui::Ui) -> Vec<Action> {
        if self.lock == LockState::Locked {
            return Vec::new();
        }
        let mut actions = Vec::new();
        let lock = ui.input_mut(|input| {
            for screen in Screen::ALL {
                let (digit, function) = screen.key();
                if input.consume_key(Modifiers::CTRL, digit) || input.consume_key(Modifiers::NONE, function) {
                    actions.push(Action::Show(screen));
                }
            }
            input.consume_key(Modifiers::CTRL, Key::L)
        });
        // Outside the input lock: a station that answers at once wakes the UI, which takes it.
        if lock {
            self.lock(false);
        }
        actions
    }

    /// The camera runs while the Provision screen shows on an unlocked station.
    fn keep_camera_right(&mut self) {
        if self.camera_injected {
            return;
        }
        let wanted = self.lock == LockState::Unlocked
            && self.screen == Screen::Provision
            && self.settings.camera.source != CameraSource::Off;
        let running_for = self.camera_running_for.as_ref();
        if !wanted {
            if running_for.is_some() {
                self.stop_camera();
            }
            return;
        }
        if running_for != Some(&self.settings.camera) {
            self.provision.camera.start_from_settings(&self.settings.camera, self.bridge.waker());
            self.camera_running_for = Some(self.settings.camera.clone());
        }
    }

    fn stop_camera(&mut self) {
        self.provision.camera.stop();
        self.camera_running_for = None;
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Station(command) => self.bridge.send(command),
            Action::Show(screen) => {
                self.screen = screen;
                if screen == Screen::Provision {
                    self.provision.focus_scan_field();
                }
            }
            Action::SaveSettings(new) => self.save_settings(*new),
            Action::OpenDevice(id) => {
                self.screen = Screen::Devices;
                // Shown from elsewhere: an old search must not hide it.
                self.devices.clear_search();
                let load = self.devices.select(id);
                self.perform(load);
                if let Some(load_all) = self.devices.load_once() {
                    self.perform(load_all);
                }
            }
        }
    }

    /// Shows the device `id` on the Devices screen with its history.
    pub fn open_device(&mut self, id: &str) {
        self.perform(Action::OpenDevice(id.to_owned()));
    }

    fn save_settings(&mut self, new: Settings) {
        self.settings = new;
        self.settings_screen.reset();
        if let Some(path) = &self.settings_path
            && let Err(error) = settings::save(path, &self.settings)
        {
            self.banner = Some(Banner {
                tone: Tone::Failed,
                text: error.to_string(),
                help: Some("The settings apply until the app closes; check the folder's permissions.".into()),
            });
        }
    }

    fn draw(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        if self.lock == LockState::Locked {
            let mut actions = Vec::new();
            egui::Panel::top("nav-locked")
                .frame(egui::Frame::new().fill(theme::NAV_FILL).inner_margin(egui::Margin::symmetric(14, 12)))
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new("KEYFILL").color(egui::Color32::WHITE).size(22.0).strong());
                        ui.label(RichText::new("operator station").color(egui::Color32::from_gray(185)).size(18.0));
                    });
                });
            egui::CentralPanel::default().frame(egui::Frame::new().fill(theme::PANEL_FILL)).show(ui, |ui| {
                actions = self.unlock.ui(ui, self.station.as_ref());
            });
            return actions;
        }
        let mut actions = Vec::new();
        // The panels read what the operator may do from the context (custody::Access::of).
        self.access.publish(ui.ctx());
        self.nav_bar(ui, &mut actions);
        self.status_bar(ui);
        egui::CentralPanel::default()
            .frame(egui::Frame::new().fill(theme::PANEL_FILL).inner_margin(egui::Margin::same(14)))
            .show(ui, |ui| {
                self.banner_ui(ui);
                // While locking, the screens stay visible (a provisioning's progress) but inert.
                let enabled = self.lock == LockState::Unlocked;
                ui.add_enabled_ui(enabled, |ui| {
                    let screen_actions = match self.screen {
                        // These two edit settings in place (the link, auto mode, the broker) and
                        // ask for a save once an edit is complete.
                        Screen::Provision => self.provision.ui(ui, &mut self.settings),
                        Screen::Devices => self.devices.ui(ui, &self.settings),
                        Screen::RotationExport => self.rotation_export.ui(ui, &mut self.settings),
                        Screen::History => self.history.ui(ui),
                        Screen::Settings => self.settings_screen.ui(ui, &self.settings, self.station.as_ref()),
                    };
                    actions.extend(screen_actions);
                });
            });
        actions
    }

    fn nav_bar(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        egui::Panel::top("nav")
            .frame(egui::Frame::new().fill(theme::NAV_FILL).inner_margin(egui::Margin::symmetric(14, 8)))
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.label(RichText::new("KEYFILL").color(egui::Color32::WHITE).size(22.0).strong());
                    ui.add_space(18.0);
                    for (index, screen) in Screen::ALL.into_iter().enumerate() {
                        let selected = self.screen == screen;
                        let text = RichText::new(screen.title()).size(18.0).color(if selected {
                            egui::Color32::WHITE
                        } else {
                            egui::Color32::from_gray(185)
                        });
                        let tab = egui::Button::selectable(selected, text)
                            .min_size(egui::vec2(0.0, 40.0))
                            .fill(if selected { theme::BUSY } else { egui::Color32::TRANSPARENT });
                        if ui.add(tab).on_hover_text(format!("Ctrl+{} or F{}", index + 1, index + 1)).clicked() {
                            actions.push(Action::Show(screen));
                        }
                    }
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        let lock = egui::Button::new(RichText::new("Lock").color(egui::Color32::WHITE))
                            .fill(egui::Color32::from_rgb(0x3a, 0x46, 0x55));
                        if ui.add_enabled(self.lock == LockState::Unlocked, lock).on_hover_text("Ctrl+L").clicked() {
                            self.lock(false);
                        }
                        if let Some(station) = &self.station {
                            let name = station.identity.as_ref().map(|i| i.name.as_str()).unwrap_or("station");
                            let operator = match &self.access.actor {
                                Some(actor) => format!("{} ({})", actor.name, role_text(actor.role)),
                                None => station.operator.clone(),
                            };
                            ui.label(
                                RichText::new(format!("{name} · {operator}")).color(egui::Color32::from_gray(200)),
                            );
                        }
                    });
                });
            });
    }

    fn status_bar(&self, ui: &mut egui::Ui) {
        egui::Panel::bottom("status")
            .frame(
                egui::Frame::new()
                    .fill(egui::Color32::from_rgb(0xe6, 0xe9, 0xed))
                    .inner_margin(egui::Margin::symmetric(14, 5)),
            )
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    let mut parts = Vec::new();
                    if let Some(station) = &self.station {
                        parts.push(format!("Database {}", station.database));
                    }
                    parts.push(match self.settings.link.target() {
                        Some(target) => format!("Link {}", target.describe()),
                        None => "No link chosen".to_owned(),
                    });
                    if self.settings.provision.auto_mode {
                        parts.push("Auto mode".to_owned());
                    }
                    parts.push(match self.settings.lock.after_idle_minutes {
                        0 => "Never locks by itself".to_owned(),
                        minutes => format!("Locks after {minutes} min idle"),
                    });
                    ui.label(RichText::new(parts.join("   ·   ")).small().color(theme::MUTED_TEXT));
                });
            });
    }

    fn banner_ui(&mut self, ui: &mut egui::Ui) {
        if let LockState::Locking { .. } = self.lock {
            let rotation_export = &self.rotation_export;
            let waiting = match (self.provision.busy_with(), rotation_export.is_watching(), rotation_export.is_busy()) {
                (Some(device), _, _) => format!("Locking: waiting for the provisioning of {device} to finish…"),
                (None, true, _) => {
                    "Locking: stopping the watch for first contact; rotations in flight finish first…".to_owned()
                }
                (None, false, true) => "Locking: waiting for the rotation or export to finish…".to_owned(),
                (None, false, false) => "Locking…".to_owned(),
            };
            widgets::status_banner(ui, Tone::Warning, "Locking", &waiting);
            ui.add_space(theme::SPACING);
        }
        let Some(banner) = &self.banner else { return };
        let mut dismissed = false;
        egui::Frame::new()
            .fill(egui::Color32::WHITE)
            .stroke(egui::Stroke::new(1.5, banner.tone.color()))
            .corner_radius(6.0)
            .inner_margin(egui::Margin::same(10))
            .show(ui, |ui| {
                ui.set_width(ui.available_width());
                ui.horizontal(|ui| {
                    ui.vertical(|ui| {
                        widgets::notice(ui, banner.tone, &banner.text);
                        if let Some(help) = &banner.help {
                            ui.label(format!("What to do: {help}"));
                        }
                    });
                    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                        dismissed = ui.button("Dismiss").clicked();
                    });
                });
            });
        ui.add_space(theme::SPACING);
        if dismissed {
            self.banner = None;
        }
    }
}

impl eframe::App for KeyfillApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.provision.camera.stop();
    }
}
