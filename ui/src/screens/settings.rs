//! The Settings screen: edits a draft of the persisted settings; Save writes them.

use crate::messages::StationSummary;
use crate::screens::Action;
use crate::settings::{CameraSource, LabelFileFormat, LabelMode, LinkKind, Settings};
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::scan::camera::{CameraInfo, list_cameras};
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct SettingsScreen {
    draft: Option<Settings>,
    cameras: Option<Vec<CameraInfo>>,
    lp: Option<Option<PathBuf>>,
    /// Where the settings are written, shown to the operator.
    path: Option<PathBuf>,
    saved: bool,
}

/// The `lp` program on `PATH`, if CUPS' client is installed.
pub fn find_lp() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("lp")).find(|candidate| candidate.is_file())
}

/// Below this width the two columns of sections stack.
const TWO_COLUMNS_FROM: f32 = 1100.0;

fn text_row(ui: &mut egui::Ui, name: &str, value: &mut String, hint: &str) {
    let label = ui.label(name);
    let width = ui.available_width().clamp(160.0, 420.0);
    ui.add(egui::TextEdit::singleline(value).hint_text(hint).desired_width(width)).labelled_by(label.id);
    ui.end_row();
}

fn path_row(ui: &mut egui::Ui, name: &str, value: &mut PathBuf, hint: &str) {
    let mut text = value.display().to_string();
    text_row(ui, name, &mut text, hint);
    if text != value.display().to_string() {
        *value = PathBuf::from(text);
    }
}

fn optional_row(ui: &mut egui::Ui, name: &str, value: &mut Option<String>, hint: &str) {
    let mut text = value.clone().unwrap_or_default();
    text_row(ui, name, &mut text, hint);
    *value = (!text.trim().is_empty()).then(|| text.trim().to_owned());
}

impl SettingsScreen {
    pub fn new(path: Option<PathBuf>) -> Self {
        SettingsScreen { path, ..SettingsScreen::default() }
    }

    /// Forgets an unsaved draft (after the settings changed elsewhere, e.g. the link bar).
    pub fn reset(&mut self) {
        self.draft = None;
    }

    /// `station`: where the running station's state lives and who operates it, which the
    /// station settings below apply to only at the next start.
    pub fn ui(&mut self, ui: &mut egui::Ui, current: &Settings, station: Option<&StationSummary>) -> Vec<Action> {
        let mut actions = Vec::new();
        let draft = self.draft.get_or_insert_with(|| current.clone());
        let dirty = draft != current;
        theme::card().show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                let save = widgets::primary_button("Save", dirty, egui::vec2(140.0, 40.0));
                let saving = ui.add_enabled(dirty, save).clicked();
                if saving {
                    actions.push(Action::SaveSettings(Box::new(draft.clone())));
                }
                if ui.add_enabled(dirty, egui::Button::new("Revert")).clicked() {
                    *draft = current.clone();
                }
                // "Saved" stays until the next edit.
                self.saved = saving || (self.saved && !dirty);
                if dirty && !saving {
                    widgets::notice(ui, Tone::Warning, "Unsaved changes");
                } else if self.saved {
                    widgets::notice(ui, Tone::Ok, "Saved");
                }
                if let Some(path) = &self.path {
                    ui.label(RichText::new(format!("Stored in {}", path.display())).color(theme::MUTED_TEXT));
                }
            });
        });
        ui.add_space(theme::SPACING);
        let draft = self.draft.get_or_insert_with(|| current.clone());
        let cameras = &mut self.cameras;
        let lp = self.lp.get_or_insert_with(find_lp).clone();
        egui::ScrollArea::vertical().id_salt("settings-scroll").auto_shrink([false, false]).show(ui, |ui| {
            widgets::two_columns(ui, TWO_COLUMNS_FROM, 0.5, |ui, column| match column {
                widgets::Column::First => {
                    station_section(ui, draft, station);
                    ui.add_space(theme::SPACING);
                    link_section(ui, draft);
                }
                widgets::Column::Second => {
                    camera_section(ui, draft, cameras);
                    ui.add_space(theme::SPACING);
                    label_section(ui, draft, lp.as_deref());
                    ui.add_space(theme::SPACING);
                    lock_section(ui, draft);
                }
            });
        });
        actions
    }
}

fn station_section(ui: &mut egui::Ui, draft: &mut Settings, station: Option<&StationSummary>) {
    widgets::section(ui, "Station", |ui| {
        if let Some(station) = station {
            ui.label(RichText::new("In use now").strong());
            widgets::facts(
                ui,
                "settings-station-in-use",
                &[
                    ("Home", station.home.display().to_string()),
                    ("Database", station.database.clone()),
                    ("Operator", station.operator.clone()),
                ],
            );
            ui.add_space(theme::SPACING);
            ui.label(RichText::new("At the next start").strong());
        }
        egui::Grid::new("settings-station").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            let station = &mut draft.station;
            let mut home = station.home.as_ref().map(|p| p.display().to_string());
            let default_home = keyfill_station::home::default_home()
                .map(|home| format!("default: {}", home.display()))
                .unwrap_or_else(|| "default: the user's data folder".to_owned());
            optional_row(ui, "Station home", &mut home, &default_home);
            station.home = home.map(PathBuf::from);
            optional_row(ui, "Database", &mut station.database, "default: sqlite://<home>/keyfill.db");
            optional_row(ui, "Operator", &mut station.operator, "default: the login name");
        });
        ui.label(
            RichText::new("Applies at the next start. --home, --db and KEYFILL_OPERATOR override these.")
                .color(theme::MUTED_TEXT),
        );
    });
}

fn link_section(ui: &mut egui::Ui, draft: &mut Settings) {
    widgets::section(ui, "Links", |ui| {
        let link = &mut draft.link;
        ui.horizontal_wrapped(|ui| {
            ui.label("Default link");
            for kind in LinkKind::ALL {
                ui.selectable_value(&mut link.kind, kind, kind.title());
            }
        });
        egui::Grid::new("settings-link").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            text_row(ui, "Serial port", &mut link.serial_port, "/dev/ttyUSB0");
            let label = ui.label("Serial speed (baud)");
            ui.add(egui::DragValue::new(&mut link.baud).range(1200..=3_000_000)).labelled_by(label.id);
            ui.end_row();
            text_row(ui, "PC/SC reader", &mut link.pcsc_reader, "empty: the first reader with a card");
            text_row(ui, "BLE device", &mut link.ble_target, "empty: the address or name on the label");
            let label = ui.label("Wait for a card or BLE (s)");
            ui.add(egui::DragValue::new(&mut link.card_wait_secs).range(1..=600)).labelled_by(label.id);
            ui.end_row();
        });
    });
}

fn lock_section(ui: &mut egui::Ui, draft: &mut Settings) {
    widgets::section(ui, "Lock", |ui| {
        ui.horizontal(|ui| {
            let label = ui.label("Lock after");
            ui.add(egui::DragValue::new(&mut draft.lock.after_idle_minutes).range(0..=480).suffix(" min"))
                .labelled_by(label.id);
            ui.label("without input (0: never)");
        });
        ui.label(
            RichText::new("Locking drops the unlocked master key; a provisioning in progress finishes first.")
                .color(theme::MUTED_TEXT),
        );
    });
}

fn camera_section(ui: &mut egui::Ui, draft: &mut Settings, cameras: &mut Option<Vec<CameraInfo>>) {
    widgets::section(ui, "Camera", |ui| {
        let camera = &mut draft.camera;
        ui.horizontal_wrapped(|ui| {
            ui.selectable_value(&mut camera.source, CameraSource::Off, "Off (handheld scanner)");
            ui.selectable_value(&mut camera.source, CameraSource::Camera, "USB camera");
            ui.selectable_value(&mut camera.source, CameraSource::Folder, "Watched folder");
        });
        match camera.source {
            CameraSource::Off => {}
            CameraSource::Camera => {
                let found = cameras.get_or_insert_with(list_cameras).clone();
                ui.horizontal(|ui| {
                    if found.is_empty() {
                        widgets::notice(ui, Tone::Warning, "No camera found");
                    } else {
                        egui::ComboBox::from_id_salt("camera-device")
                            .selected_text(camera.camera.device.display().to_string())
                            .width(320.0)
                            .show_ui(ui, |ui| {
                                for info in found.iter() {
                                    let text = format!("{} — {}", info.device.display(), info.name);
                                    ui.selectable_value(&mut camera.camera.device, info.device.clone(), text);
                                }
                            })
                            .response
                            .accessible_name("Camera");
                    }
                    if ui.button("Look again").clicked() {
                        *cameras = Some(list_cameras());
                    }
                });
                ui.horizontal(|ui| {
                    ui.label("Frame size");
                    ui.add(egui::DragValue::new(&mut camera.camera.width).range(160..=3840))
                        .accessible_name("Frame width");
                    ui.label("×");
                    ui.add(egui::DragValue::new(&mut camera.camera.height).range(120..=2160))
                        .accessible_name("Frame height");
                });
            }
            CameraSource::Folder => {
                egui::Grid::new("settings-folder").num_columns(2).show(ui, |ui| {
                    path_row(ui, "Folder", &mut camera.folder, "where photographs of labels arrive");
                });
            }
        }
    });
}

fn label_section(ui: &mut egui::Ui, draft: &mut Settings, lp: Option<&std::path::Path>) {
    widgets::section(ui, "Labels", |ui| {
        let label = &mut draft.label;
        ui.horizontal_wrapped(|ui| {
            ui.label("After provisioning");
            ui.selectable_value(&mut label.after_provisioning, LabelMode::Off, "Nothing");
            ui.selectable_value(&mut label.after_provisioning, LabelMode::Save, "Save the file");
            ui.selectable_value(&mut label.after_provisioning, LabelMode::SaveAndPrint, "Save and print");
        });
        egui::Grid::new("settings-label").num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            path_row(ui, "Folder", &mut label.folder, "where label files are saved");
            ui.label("Format");
            ui.horizontal(|ui| {
                ui.selectable_value(&mut label.format, LabelFileFormat::Png, "PNG");
                ui.selectable_value(&mut label.format, LabelFileFormat::Pdf, "PDF");
            });
            ui.end_row();
            text_row(ui, "Size (mm)", &mut label.size, "50x30");
            let name = ui.label("Resolution (dpi)");
            ui.add(egui::DragValue::new(&mut label.dpi).range(96..=1200)).labelled_by(name.id);
            ui.end_row();
            text_row(ui, "Printer queue", &mut label.printer_queue, "CUPS queue name (lpstat -p)");
        });
        if let Err(reason) = label.spec() {
            widgets::notice(ui, Tone::Failed, &reason);
        }
        if label.after_provisioning == LabelMode::SaveAndPrint {
            match (lp, label.printer_queue.trim().is_empty()) {
                (None, _) => widgets::notice(
                    ui,
                    Tone::Failed,
                    "lp (CUPS) is not installed: labels are saved but cannot be printed. Install cups-client.",
                ),
                (Some(_), true) => widgets::notice(ui, Tone::Warning, "Name the printer queue to print labels."),
                (Some(path), false) => {
                    ui.label(RichText::new(format!("Printing with {}", path.display())).color(theme::MUTED_TEXT));
                }
            }
        }
    });
}
