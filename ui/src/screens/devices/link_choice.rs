//! Choosing the link to reach a recorded device over, as on the Provision screen, starting
//! from the link the device was last seen on.

use crate::messages::LinkReport;
use crate::settings::{LinkKind, LinkSettings};
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};
use keyfill_station::db::devices::Device;

/// The operator's link settings, pointed at where `device` was last seen.
pub fn for_device(device: &Device, defaults: &LinkSettings) -> LinkSettings {
    let mut link = defaults.clone();
    let port = device.port.clone().unwrap_or_default();
    match device.transport.as_deref() {
        Some("serial") => {
            link.kind = LinkKind::Serial;
            link.serial_port = port;
        }
        Some("pcsc") => {
            link.kind = LinkKind::Pcsc;
            link.pcsc_reader = port;
        }
        Some("ble") => {
            link.kind = LinkKind::Ble;
            link.ble_target = port;
        }
        _ => {}
    }
    link
}

/// The kind of link and its port, reader or BLE device, with what detection found.
pub fn ui(ui: &mut egui::Ui, link: &mut LinkSettings, found: Option<&LinkReport>) {
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Link").strong());
        for kind in LinkKind::ALL {
            ui.selectable_value(&mut link.kind, kind, kind.title());
        }
    });
    ui.horizontal_wrapped(|ui| match link.kind {
        LinkKind::Serial => {
            let label = ui.label("Port");
            ui.add(egui::TextEdit::singleline(&mut link.serial_port).hint_text("/dev/ttyUSB0").desired_width(220.0))
                .labelled_by(label.id);
            let ports = found.and_then(|r| r.serial.as_ref().ok()).filter(|p| !p.is_empty());
            if let Some(ports) = ports {
                widgets::detected_serial_ports(ui, "reconcile-serial", ports, &mut link.serial_port);
            }
        }
        LinkKind::Pcsc => {
            let label = ui.label("Reader");
            ui.add(
                egui::TextEdit::singleline(&mut link.pcsc_reader)
                    .hint_text("empty: the first reader with a card")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            let readers = found.and_then(|r| r.pcsc.as_ref().ok()).filter(|r| !r.is_empty());
            if let Some(readers) = readers {
                egui::ComboBox::from_id_salt("reconcile-pcsc")
                    .selected_text("Detected readers")
                    .show_ui(ui, |ui| {
                        for reader in readers {
                            ui.selectable_value(&mut link.pcsc_reader, reader.clone(), reader);
                        }
                    })
                    .response
                    .accessible_name("Detected readers");
            }
        }
        LinkKind::Ble => {
            let label = ui.label("Device");
            ui.add(
                egui::TextEdit::singleline(&mut link.ble_target)
                    .hint_text("empty: where it was last seen, else its name")
                    .desired_width(260.0),
            )
            .labelled_by(label.id);
            let peripherals = found.and_then(|r| r.ble.as_ref().ok()).filter(|p| !p.is_empty());
            if let Some(peripherals) = peripherals {
                egui::ComboBox::from_id_salt("reconcile-ble")
                    .selected_text("Detected devices")
                    .show_ui(ui, |ui| {
                        for peripheral in peripherals {
                            let text = match &peripheral.name {
                                Some(name) => format!("{name}  {}", peripheral.address),
                                None => peripheral.address.clone(),
                            };
                            ui.selectable_value(&mut link.ble_target, peripheral.address.clone(), text);
                        }
                    })
                    .response
                    .accessible_name("Detected BLE devices");
            }
        }
    });
    let problem = found.and_then(|r| match link.kind {
        LinkKind::Serial => r.serial.as_ref().err(),
        LinkKind::Pcsc => r.pcsc.as_ref().err(),
        LinkKind::Ble => r.ble.as_ref().err(),
    });
    if let Some(problem) = problem {
        ui.label(RichText::new(format!("{} — {}", problem.message, problem.help)).small().color(theme::MUTED_TEXT));
    }
}
