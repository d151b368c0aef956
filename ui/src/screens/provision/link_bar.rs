//! Choosing the link: serial port, PC/SC reader or BLE, with what auto-detection found.

use crate::messages::{Command, LinkReport};
use crate::problem::Problem;
use crate::screens::Action;
use crate::settings::{LinkKind, LinkSettings};
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};

#[derive(Debug, Default)]
pub struct LinkBar {
    detecting: bool,
    report: Option<LinkReport>,
    /// A detection result not yet used to fill an empty serial port.
    fresh: bool,
}

/// What the bar did this frame.
#[derive(Debug, Default)]
pub struct LinkBarOutput {
    /// The choice changed and should be saved (a text field saves when it loses focus).
    pub changed: bool,
    pub actions: Vec<Action>,
}

impl LinkBar {
    pub fn on_report(&mut self, report: LinkReport) {
        self.detecting = false;
        self.report = Some(report);
        self.fresh = true;
    }

    /// Asks for detection once, when the screen first shows.
    pub fn detect_once(&mut self) -> Option<Action> {
        (self.report.is_none() && !self.detecting).then(|| {
            self.detecting = true;
            Command::DetectLinks.into()
        })
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, link: &mut LinkSettings, enabled: bool) -> LinkBarOutput {
        let mut output = LinkBarOutput::default();
        if std::mem::take(&mut self.fresh) && link.serial_port.trim().is_empty() {
            // A USB adapter is where a bench device is; built-in ports rarely are, so only a
            // USB port is chosen for the operator.
            let usb = self
                .report
                .as_ref()
                .and_then(|r| r.serial.as_ref().ok())
                .and_then(|ports| ports.iter().find(|p| p.usb));
            if let Some(port) = usb {
                link.serial_port = port.path.clone();
                output.changed = true;
            }
        }
        ui.horizontal_wrapped(|ui| {
            ui.add_enabled_ui(enabled, |ui| {
                ui.label(RichText::new("Link").strong());
                for kind in LinkKind::ALL {
                    if ui.selectable_value(&mut link.kind, kind, kind.title()).changed() {
                        output.changed = true;
                    }
                }
                ui.separator();
                match link.kind {
                    LinkKind::Serial => self.serial_ui(ui, link, &mut output),
                    LinkKind::Pcsc => self.pcsc_ui(ui, link, &mut output),
                    LinkKind::Ble => self.ble_ui(ui, link, &mut output),
                }
            });
            ui.separator();
            if ui.add_enabled(!self.detecting, egui::Button::new("Detect links")).clicked() {
                self.detecting = true;
                output.actions.push(Command::DetectLinks.into());
            }
            if self.detecting {
                ui.spinner();
            }
        });
        if let Some(report) = &self.report {
            ui.label(RichText::new(summary(report, link.kind)).color(theme::MUTED_TEXT));
        }
        output
    }

    fn serial_ui(&mut self, ui: &mut egui::Ui, link: &mut LinkSettings, output: &mut LinkBarOutput) {
        let label = ui.label("Port");
        let field = ui
            .add(egui::TextEdit::singleline(&mut link.serial_port).hint_text("/dev/ttyUSB0").desired_width(240.0))
            .labelled_by(label.id);
        if field.lost_focus() {
            output.changed = true;
        }
        let ports = self.report.as_ref().and_then(|r| r.serial.as_ref().ok());
        if let Some(ports) = ports.filter(|p| !p.is_empty())
            && widgets::detected_serial_ports(ui, "detected-serial", ports, &mut link.serial_port)
        {
            output.changed = true;
        }
    }

    fn pcsc_ui(&mut self, ui: &mut egui::Ui, link: &mut LinkSettings, output: &mut LinkBarOutput) {
        let readers = self.report.as_ref().and_then(|r| r.pcsc.as_ref().ok()).cloned().unwrap_or_default();
        let shown =
            if link.pcsc_reader.is_empty() { "First reader with a card".to_owned() } else { link.pcsc_reader.clone() };
        let label = ui.label("Reader");
        egui::ComboBox::from_id_salt("pcsc-reader")
            .selected_text(shown)
            .width(300.0)
            .show_ui(ui, |ui| {
                output.changed |=
                    ui.selectable_value(&mut link.pcsc_reader, String::new(), "First reader with a card").changed();
                for reader in readers {
                    output.changed |= ui.selectable_value(&mut link.pcsc_reader, reader.clone(), reader).changed();
                }
            })
            .response
            .labelled_by(label.id);
    }

    fn ble_ui(&mut self, ui: &mut egui::Ui, link: &mut LinkSettings, output: &mut LinkBarOutput) {
        let peripherals = self.report.as_ref().and_then(|r| r.ble.as_ref().ok()).cloned().unwrap_or_default();
        let shown = if link.ble_target.is_empty() { "From the label".to_owned() } else { link.ble_target.clone() };
        let label = ui.label("Device");
        egui::ComboBox::from_id_salt("ble-target")
            .selected_text(shown)
            .width(300.0)
            .show_ui(ui, |ui| {
                output.changed |= ui.selectable_value(&mut link.ble_target, String::new(), "From the label").changed();
                for peripheral in peripherals {
                    let text = match (&peripheral.name, peripheral.rssi) {
                        (Some(name), Some(rssi)) => format!("{name}  {}  {rssi} dBm", peripheral.address),
                        (Some(name), None) => format!("{name}  {}", peripheral.address),
                        (None, _) => peripheral.address.clone(),
                    };
                    output.changed |=
                        ui.selectable_value(&mut link.ble_target, peripheral.address.clone(), text).changed();
                }
            })
            .response
            .labelled_by(label.id);
    }
}

fn count_or_problem<T>(found: &Result<Vec<T>, Problem>, one: &str, many: &str) -> String {
    match found {
        Ok(items) if items.len() == 1 => format!("1 {one}"),
        Ok(items) => format!("{} {many}", items.len()),
        Err(problem) => problem.message.trim_end_matches('.').to_owned(),
    }
}

/// "Found: 2 serial ports · PC/SC: pcscd is not running · BLE: no Bluetooth adapter", with the
/// chosen kind's help line when it found nothing.
fn summary(report: &LinkReport, kind: LinkKind) -> String {
    let mut text = format!(
        "Found: {} · {} · {}",
        count_or_problem(&report.serial, "serial port", "serial ports"),
        count_or_problem(&report.pcsc, "PC/SC reader", "PC/SC readers"),
        count_or_problem(&report.ble, "Keyfill BLE device", "Keyfill BLE devices"),
    );
    let chosen_problem = match kind {
        LinkKind::Serial => report.serial.as_ref().err(),
        LinkKind::Pcsc => report.pcsc.as_ref().err(),
        LinkKind::Ble => report.ble.as_ref().err(),
    };
    if let Some(problem) = chosen_problem {
        text.push_str(&format!(" — {}", problem.help));
    }
    text
}
