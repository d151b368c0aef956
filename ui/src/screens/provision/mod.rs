//! The Provision screen: scan a label (handheld scanner, camera or typing), see the device,
//! provision it with one key — or none in auto mode — and get its label.
//!
//! Keyboard flow: the scan field holds the focus whenever nothing else does. A USB HID scanner
//! types the payload and Enter into it; Enter on an empty field provisions the scanned device
//! (also Ctrl+Enter or F9 from anywhere on the screen); Escape clears the device.

mod link_bar;
mod order_bar;
mod session_log;
mod status;

use crate::camera::CameraPanel;
use crate::custody::Access;
use crate::messages::{Command, JobId, LabelRequest, LabelSaved, LinkReport, ProvisionRequest, ProvisionUpdate};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::{LabelMode, Settings};
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, Key, Modifiers, RichText};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_station::custody::Operation;
use keyfill_station::db::devices::Device;
use keyfill_station::db::orders::OrderCounts;
use keyfill_station::scan::{Label, ScanResult, from_typed_text};
use link_bar::LinkBar;
use order_bar::OrderBar;
use session_log::{LogRow, SessionLog};
use status::{Status, Step};
use zeroize::Zeroize;

/// Below this width the scan and device panels stack.
const TWO_COLUMNS_FROM: f32 = 860.0;

pub fn scan_field_id() -> egui::Id {
    egui::Id::unique("provision-scan-field")
}

/// Where a label was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanOrigin {
    Keyboard,
    Camera,
}

#[derive(Debug)]
struct OnDeck {
    payload: OnboardingPayload,
    origin: ScanOrigin,
}

#[derive(Debug, Default)]
enum LabelStatus {
    #[default]
    None,
    Saving {
        job: JobId,
    },
    Saved(LabelSaved),
    Failed(Problem),
}

#[derive(Debug, Default)]
pub struct ProvisionScreen {
    /// What the logged-in operator may do (named operators): a supervisor does not key devices.
    pub access: Access,
    scan_text: String,
    on_deck: Option<OnDeck>,
    status: Status,
    scan_problem: Option<Problem>,
    next_job: JobId,
    label: LabelStatus,
    link_bar: LinkBar,
    order_bar: OrderBar,
    pub camera: CameraPanel,
    log: SessionLog,
    focus_scan: bool,
    /// The label made after the last provisioning, for "Label again".
    last_label: Option<LabelRequest>,
}

impl ProvisionScreen {
    /// Whether a provisioning is running (locking waits for it).
    pub fn is_busy(&self) -> bool {
        self.status.running_job().is_some()
    }

    /// The name of the device being provisioned, if any.
    pub fn busy_with(&self) -> Option<&str> {
        self.is_busy().then(|| self.on_deck.as_ref().map(|d| d.payload.name.as_str())).flatten()
    }

    pub fn on_links(&mut self, report: LinkReport) {
        self.link_bar.on_report(report);
    }

    pub fn on_orders(&mut self, orders: Vec<OrderCounts>) {
        self.order_bar.on_orders(orders);
    }

    pub fn on_orders_problem(&mut self, problem: Problem) {
        self.order_bar.on_problem(problem);
    }

    /// Gives the scan field the focus on the next frame.
    pub fn focus_scan_field(&mut self) {
        self.focus_scan = true;
    }

    /// Codes the camera read since the last frame, and whether it read any (a label held up to
    /// the camera is the operator at work, for the inactivity lock).
    pub fn poll_camera(&mut self, now: f64, settings: &Settings) -> (Vec<Action>, bool) {
        let mut actions = Vec::new();
        let results = self.camera.poll(now);
        let read_any = !results.is_empty();
        for result in results {
            actions.extend(self.accept(result, ScanOrigin::Camera, settings));
        }
        (actions, read_any)
    }

    fn next_job(&mut self) -> JobId {
        self.next_job += 1;
        self.next_job
    }

    fn accept_typed(&mut self, text: &str, settings: &Settings) -> Vec<Action> {
        match from_typed_text(text) {
            Some(result) => self.accept(result, ScanOrigin::Keyboard, settings),
            None => Vec::new(),
        }
    }

    /// A code was read: show the device, and in auto mode provision it at once.
    fn accept(&mut self, result: ScanResult, origin: ScanOrigin, settings: &Settings) -> Vec<Action> {
        let ScanResult { mut text, label, .. } = result;
        // The raw text of a setup-secret label holds the secret: keep only the parsed payload.
        text.zeroize();
        let payload = match label {
            Label::Keyfill(payload) => *payload,
            Label::NotKeyfill => {
                self.scan_problem = Some(Problem::new(
                    "That code is not a Keyfill label.",
                    "Scan the device's Keyfill label (its text starts with KF1:).",
                ));
                return Vec::new();
            }
            Label::Invalid(error) => {
                self.scan_problem = Some(Problem::new(
                    format!("This Keyfill label cannot be read: {error}."),
                    "Scan it again. If it keeps failing the label is damaged: print the payload on the device \
                     with `keyfill-agent payload` and type it in.",
                ));
                return Vec::new();
            }
        };
        if let Some(busy) = self.busy_with() {
            self.scan_problem = Some(Problem::new(
                format!("Still provisioning {busy}."),
                "Wait until it is done, then scan the next label.",
            ));
            return Vec::new();
        }
        if let Status::Provisioned { device, .. } = &self.status
            && device.id == payload.device_id.to_hex()
            && origin == ScanOrigin::Camera
        {
            // The label of the device just provisioned, still in front of the camera.
            return Vec::new();
        }
        self.scan_problem = None;
        self.label = LabelStatus::None;
        self.last_label = None;
        if origin == ScanOrigin::Keyboard {
            // The camera's last reading is not the device on deck any more.
            self.camera.forget_sighting();
        }
        self.on_deck = Some(OnDeck { payload, origin });
        self.status = Status::Ready;
        if settings.provision.auto_mode { self.provision(settings).into_iter().collect() } else { Vec::new() }
    }

    fn provision(&mut self, settings: &Settings) -> Option<Action> {
        if !self.status.can_provision() {
            return None;
        }
        if let Some(why) = self.access.refusal(Operation::Provision) {
            self.scan_problem = Some(Problem::new(why, "Log in as an operator to key devices: lock, then log in."));
            return None;
        }
        let payload = self.on_deck.as_ref()?.payload.clone();
        let Some(link) = settings.link.target() else {
            self.scan_problem = Some(Problem::new(
                "No link is chosen.",
                "Type or pick the serial port under Link, or choose another link.",
            ));
            return None;
        };
        let job = self.next_job();
        self.status = Status::Running { job, link: link.describe(), step: Step::Opening, cancelling: false };
        self.scan_problem = None;
        self.label = LabelStatus::None;
        Some(
            Command::Provision(Box::new(ProvisionRequest {
                job,
                link,
                card_wait: settings.link.card_wait(),
                payload,
                order: self.order_bar.chosen(),
            }))
            .into(),
        )
    }

    /// Asks the station to stop the provisioning under way.
    fn cancel(&mut self) -> Option<Action> {
        let Status::Running { job, cancelling, .. } = &mut self.status else { return None };
        if *cancelling {
            return None;
        }
        *cancelling = true;
        Some(Command::CancelProvision { job: *job }.into())
    }

    fn clear(&mut self) {
        if !self.is_busy() {
            self.on_deck = None;
            self.status = Status::Waiting;
            self.scan_problem = None;
            self.label = LabelStatus::None;
        }
    }

    pub fn on_provision(&mut self, job: JobId, update: ProvisionUpdate, settings: &Settings) -> Vec<Action> {
        let Status::Running { job: running, link, step, .. } = &mut self.status else { return Vec::new() };
        if *running != job {
            return Vec::new();
        }
        let link = link.clone();
        // A finished provisioning moves the orders' counts.
        let finished = !matches!(update, ProvisionUpdate::Opening { .. } | ProvisionUpdate::Step(_));
        let mut actions = Vec::new();
        match update {
            ProvisionUpdate::Opening { .. } => *step = Step::Opening,
            ProvisionUpdate::Step(progress) => *step = Step::of(&progress),
            ProvisionUpdate::Provisioned { device, reconciled } => {
                self.log.push(LogRow {
                    at: keyfill_station::db::now_millis(),
                    name: device.name.clone(),
                    id: device.id.clone(),
                    link: device.port.clone().unwrap_or(link),
                    outcome: if reconciled { "provisioned (reconciled)".into() } else { "provisioned".into() },
                    tone: Tone::Ok,
                });
                let label = self.label_request(&device, settings);
                self.status = Status::Provisioned { device, reconciled };
                self.focus_scan = true;
                actions.extend(label);
                actions.extend(self.order_bar.after_provisioning());
                return actions;
            }
            ProvisionUpdate::AlreadyProvisioned { name } => {
                self.log_on_deck(&link, "already provisioned", Tone::Idle);
                self.status = Status::AlreadyProvisioned { name };
                self.focus_scan = true;
            }
            ProvisionUpdate::Cancelled { key_sent } => {
                let outcome = if key_sent { "cancelled: pending" } else { "cancelled" };
                self.log_on_deck(&link, outcome, Tone::Warning);
                self.status = Status::Cancelled { key_sent };
                self.focus_scan = true;
            }
            ProvisionUpdate::Failed(problem) => {
                if let Some(on_deck) = &self.on_deck {
                    self.log.push(LogRow {
                        at: keyfill_station::db::now_millis(),
                        name: on_deck.payload.name.as_str().to_owned(),
                        id: on_deck.payload.device_id.to_hex(),
                        link,
                        outcome: problem.message.clone(),
                        tone: Tone::Failed,
                    });
                }
                self.status = Status::Failed { problem };
                self.focus_scan = true;
            }
        }
        if finished {
            actions.extend(self.order_bar.after_provisioning());
        }
        actions
    }

    /// A row of the session table for the device on deck.
    fn log_on_deck(&mut self, link: &str, outcome: &str, tone: Tone) {
        if let Some(on_deck) = &self.on_deck {
            self.log.push(LogRow {
                at: keyfill_station::db::now_millis(),
                name: on_deck.payload.name.as_str().to_owned(),
                id: on_deck.payload.device_id.to_hex(),
                link: link.to_owned(),
                outcome: outcome.to_owned(),
                tone,
            });
        }
    }

    fn label_request(&mut self, device: &Device, settings: &Settings) -> Option<Action> {
        if settings.label.after_provisioning == LabelMode::Off {
            return None;
        }
        let spec = match settings.label.spec() {
            Ok(spec) => spec,
            Err(reason) => {
                self.label = LabelStatus::Failed(Problem::new(
                    format!("No label: {reason}."),
                    "Fix the label size in Settings > Labels; the device itself is provisioned.",
                ));
                return None;
            }
        };
        let job = self.next_job();
        self.label = LabelStatus::Saving { job };
        let request = LabelRequest {
            job,
            device: device.clone(),
            folder: settings.label.folder.clone(),
            format: settings.label.format.format(),
            spec,
            printer_queue: settings.label.queue(),
        };
        self.last_label = Some(request.clone());
        Some(Command::SaveLabel(Box::new(request)).into())
    }

    /// The last label again (the printer jammed, the label peeled off), under a new job.
    fn label_again(&mut self) -> Option<Action> {
        let mut request = self.last_label.clone()?;
        request.job = self.next_job();
        self.label = LabelStatus::Saving { job: request.job };
        Some(Command::SaveLabel(Box::new(request)).into())
    }

    pub fn on_label(&mut self, job: JobId, outcome: Result<LabelSaved, Problem>) {
        if matches!(self.label, LabelStatus::Saving { job: waiting } if waiting == job) {
            self.label = match outcome {
                Ok(saved) => LabelStatus::Saved(saved),
                Err(problem) => LabelStatus::Failed(problem),
            };
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions: Vec<Action> = self.link_bar.detect_once().into_iter().collect();
        let now = ui.input(|i| i.time);
        actions.extend(self.order_bar.load_when_due(now, self.is_busy()));
        let shortcut =
            ui.input_mut(|i| i.consume_key(Modifiers::CTRL, Key::Enter) || i.consume_key(Modifiers::NONE, Key::F9));
        if ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape)) {
            if self.is_busy() {
                actions.extend(self.cancel());
            } else {
                self.clear();
            }
        }
        if shortcut {
            actions.extend(self.provision(settings));
        }

        // One scroll for the screen: on a small window nothing falls out of reach.
        egui::ScrollArea::vertical().id_salt("provision-scroll").auto_shrink([false, false]).show(ui, |ui| {
            theme::card().inner_margin(egui::Margin::symmetric(16, 10)).show(ui, |ui| {
                ui.set_width(ui.available_width());
                let output = self.link_bar.ui(ui, &mut settings.link, !self.is_busy());
                if output.changed {
                    actions.push(Action::SaveSettings(Box::new(settings.clone())));
                }
                actions.extend(output.actions);
            });
            ui.add_space(theme::SPACING);
            // Left: where labels come in and what this session did; right: the device and its
            // status. One above the other on a narrow window.
            widgets::two_columns(ui, TWO_COLUMNS_FROM, 0.44, |ui, column| match column {
                widgets::Column::First => {
                    // Only for a station keying work orders; it never pushes the device panel
                    // and its buttons down.
                    if self.order_bar.shows() {
                        theme::card().inner_margin(egui::Margin::symmetric(16, 8)).show(ui, |ui| {
                            ui.set_width(ui.available_width());
                            self.order_bar.ui(ui, !self.is_busy());
                        });
                        ui.add_space(theme::SPACING);
                    }
                    theme::card().show(ui, |ui| {
                        ui.set_width(ui.available_width());
                        actions.extend(self.scan_ui(ui, settings));
                    });
                    ui.add_space(theme::SPACING);
                    theme::card().show(ui, |ui| {
                        ui.set_width(ui.available_width());
                        self.log.ui(ui);
                    });
                }
                widgets::Column::Second => {
                    theme::card().show(ui, |ui| {
                        ui.set_width(ui.available_width());
                        actions.extend(self.device_ui(ui, settings));
                    });
                }
            });
        });
        actions
    }

    fn scan_ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        let label = ui.label(RichText::new("Scan label").heading().strong());
        let field = ui
            .add(
                egui::TextEdit::singleline(&mut self.scan_text)
                    .id(scan_field_id())
                    .hint_text("Scan, or type KF1:… and press Enter")
                    .font(egui::FontId::monospace(18.0))
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(label.id);
        if field.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)) {
            let mut text = std::mem::take(&mut self.scan_text);
            if text.trim().is_empty() {
                actions.extend(self.provision(settings));
            } else {
                actions.extend(self.accept_typed(&text, settings));
            }
            // A label may carry a setup secret: wipe the typed text and the field's undo history.
            text.zeroize();
            forget_text_history(ui.ctx(), scan_field_id());
            self.focus_scan = true;
        }
        if self.focus_scan || ui.memory(|m| m.focused().is_none()) {
            field.request_focus();
            self.focus_scan = false;
        }
        ui.add_space(8.0);
        let now = ui.input(|i| i.time);
        self.camera.ui(ui, now);
        if let Some(problem) = &self.scan_problem {
            ui.add_space(8.0);
            widgets::problem_box(ui, problem);
        }
        actions
    }

    fn device_ui(&mut self, ui: &mut egui::Ui, settings: &mut Settings) -> Vec<Action> {
        let mut actions = Vec::new();
        // The name, the status and the buttons first: on a small window they are what shows
        // without scrolling; the device's facts follow.
        match &self.on_deck {
            Some(on_deck) => {
                ui.label(RichText::new(on_deck.payload.name.as_str()).text_style(theme::title_style()).strong());
            }
            None => {
                ui.label(RichText::new("No device scanned").text_style(theme::title_style()).color(theme::MUTED_TEXT));
                ui.label(
                    RichText::new("The device's name, id and serial number appear here.").color(theme::MUTED_TEXT),
                );
            }
        }
        ui.add_space(8.0);
        self.status.ui(ui, settings.provision.auto_mode);
        ui.add_space(theme::SPACING);
        ui.horizontal_wrapped(|ui| {
            let ready = self.status.can_provision() && self.on_deck.is_some();
            let allowed = self.access.allows(Operation::Provision);
            let button = widgets::primary_button("Provision device", ready && allowed, egui::vec2(210.0, 52.0));
            let clicked = crate::custody::gated(ui, Operation::Provision, ready, button).clicked();
            widgets::key_hint(ui, "Enter · Ctrl+Enter · F9");
            if clicked {
                actions.extend(self.provision(settings));
                self.focus_scan = true;
            }
            if self.is_busy() {
                let cancelling = matches!(self.status, Status::Running { cancelling: true, .. });
                let cancel = ui
                    .add_enabled(!cancelling, egui::Button::new("Cancel"))
                    .on_hover_text("Stops waiting for the device; the record is settled by whether the key left");
                if cancel.clicked() {
                    actions.extend(self.cancel());
                    self.focus_scan = true;
                }
            } else if ui.add_enabled(self.on_deck.is_some(), egui::Button::new("Clear")).clicked() {
                self.clear();
                self.focus_scan = true;
            }
            widgets::key_hint(ui, "Esc");
            if let Status::Provisioned { device, .. } = &self.status
                && ui.button("Show in Devices").clicked()
            {
                actions.push(Action::OpenDevice(device.id.clone()));
            }
        });
        if let Some(on_deck) = &self.on_deck {
            ui.add_space(theme::SPACING);
            device_facts(ui, on_deck);
        }
        ui.add_space(8.0);
        if ui.checkbox(&mut settings.provision.auto_mode, "Auto mode: scan, provision, label").changed() {
            actions.push(Action::SaveSettings(Box::new(settings.clone())));
            self.focus_scan = true;
        }
        actions.extend(self.label_ui(ui, settings));
        actions
    }

    fn label_ui(&mut self, ui: &mut egui::Ui, settings: &Settings) -> Option<Action> {
        let again = matches!(self.label, LabelStatus::Saved(_) | LabelStatus::Failed(_)) && self.last_label.is_some();
        match &self.label {
            LabelStatus::None => {
                if settings.label.after_provisioning == LabelMode::Off {
                    ui.label(RichText::new("Labels: off (Settings > Labels)").color(theme::MUTED_TEXT));
                }
            }
            LabelStatus::Saving { .. } => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Making the label…");
                });
            }
            LabelStatus::Saved(saved) => widgets::label_saved(ui, saved),
            LabelStatus::Failed(problem) => widgets::problem_box(ui, problem),
        }
        if again && ui.button("Label again").clicked() {
            self.focus_scan = true;
            return self.label_again();
        }
        None
    }
}

fn device_facts(ui: &mut egui::Ui, on_deck: &OnDeck) {
    let payload = &on_deck.payload;
    let credential = match payload.credential {
        DeviceCredential::Identity { .. } => "identity key",
        DeviceCredential::SetupSecret(_) => "setup secret",
    };
    let origin = match on_deck.origin {
        ScanOrigin::Keyboard => "scanner / keyboard",
        ScanOrigin::Camera => "camera",
    };
    let name = |ui: &mut egui::Ui, text: &str| {
        ui.label(RichText::new(text).color(theme::MUTED_TEXT));
    };
    let value = |ui: &mut egui::Ui, text: &str| {
        ui.add(egui::Label::new(RichText::new(text).monospace()).selectable(true));
    };
    egui::Grid::new("device-facts").num_columns(2).spacing([16.0, 4.0]).show(ui, |ui| {
        let mut row = |title: &str, text: &str| {
            name(ui, title);
            value(ui, text);
            ui.end_row();
        };
        row("Device id", &widgets::grouped(&payload.device_id.to_hex()));
        row("Serial number", &payload.serial_number);
        if let Some(model) = &payload.model {
            row("Model", model);
        }
        row("Credential", credential);
        row("Read by", origin);
    });
}

/// egui keeps a text edit's undo history, with copies of what was typed: drop it.
pub fn forget_text_history(context: &egui::Context, id: egui::Id) {
    if let Some(mut state) = egui::TextEdit::load_state(context, id) {
        state.clear_undoer();
        state.store(context, id);
    }
}
