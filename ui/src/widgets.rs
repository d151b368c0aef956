//! Small drawing helpers shared by the screens.

use crate::problem::Problem;
use crate::theme;
use eframe::egui::{self, Color32, RichText};

/// What a status is, which picks its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Idle,
    Busy,
    Ok,
    Warning,
    Failed,
}

impl Tone {
    pub fn color(self) -> Color32 {
        match self {
            Tone::Idle => theme::IDLE,
            Tone::Busy => theme::BUSY,
            Tone::Ok => theme::OK,
            Tone::Warning => theme::WARNING,
            Tone::Failed => theme::FAILED,
        }
    }
}

/// The big coloured status block: one word or phrase, large, and a line under it.
pub fn status_banner(ui: &mut egui::Ui, tone: Tone, headline: &str, detail: &str) {
    egui::Frame::new().fill(tone.color()).corner_radius(8.0).inner_margin(egui::Margin::symmetric(20, 10)).show(
        ui,
        |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(headline).text_style(theme::status_style()).color(Color32::WHITE).strong());
            if !detail.is_empty() {
                ui.label(RichText::new(detail).color(Color32::WHITE).size(18.0));
            }
        },
    );
}

/// The one action a panel is for: filled with the accent colour while it can be pressed.
pub fn primary_button(text: &str, enabled: bool, size: egui::Vec2) -> egui::Button<'static> {
    let (fill, color) =
        if enabled { (theme::BUSY, Color32::WHITE) } else { (Color32::from_gray(222), theme::MUTED_TEXT) };
    egui::Button::new(RichText::new(text).size(19.0).strong().color(color)).fill(fill).min_size(size)
}

/// A problem with what to do about it, in a red-bordered box.
pub fn problem_box(ui: &mut egui::Ui, problem: &Problem) {
    egui::Frame::new()
        .fill(Color32::from_rgb(0xfd, 0xec, 0xec))
        .stroke(egui::Stroke::new(1.5, theme::FAILED))
        .corner_radius(6.0)
        .inner_margin(egui::Margin::same(12))
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(&problem.message).color(theme::FAILED).strong());
            ui.label(format!("What to do: {}", problem.help));
        });
}

/// A one-line notice in a tone's colour.
pub fn notice(ui: &mut egui::Ui, tone: Tone, text: &str) {
    ui.label(RichText::new(text).color(tone.color()).strong());
}

/// Where a label went: saved, printed, or saved with a print problem.
pub fn label_saved(ui: &mut egui::Ui, saved: &crate::messages::LabelSaved) {
    let text = match &saved.printed_on {
        Some(queue) => format!("Label printed on {queue}, saved to {}", saved.path.display()),
        None => format!("Label saved to {}", saved.path.display()),
    };
    notice(ui, Tone::Ok, &text);
    if let Some(problem) = &saved.print_problem {
        problem_box(ui, problem);
    }
}

/// A drop-down of the serial ports found on this machine; picking one writes its path to
/// `port`. Returns whether the operator picked one.
pub fn detected_serial_ports(
    ui: &mut egui::Ui,
    id_salt: &str,
    ports: &[keyfill_station::detect::SerialPortInfo],
    port: &mut String,
) -> bool {
    let mut picked = false;
    egui::ComboBox::from_id_salt(id_salt)
        .selected_text("Detected ports")
        .show_ui(ui, |ui| {
            for found in ports {
                let text = format!("{}  {}", found.path, found.description);
                if ui.selectable_label(*port == found.path, text).clicked() {
                    port.clone_from(&found.path);
                    picked = true;
                }
            }
        })
        .response
        .accessible_name("Detected serial ports");
    picked
}

/// Labelled values in two aligned columns.
pub fn facts(ui: &mut egui::Ui, id: &str, rows: &[(&str, String)]) {
    egui::Grid::new(id).num_columns(2).spacing([18.0, 6.0]).show(ui, |ui| {
        for (name, value) in rows {
            ui.label(RichText::new(*name).color(theme::MUTED_TEXT));
            ui.add(egui::Label::new(RichText::new(value).monospace()).wrap().selectable(true));
            ui.end_row();
        }
    });
}

/// A card with a heading.
pub fn section<R>(ui: &mut egui::Ui, title: &str, add_contents: impl FnOnce(&mut egui::Ui) -> R) -> R {
    theme::card()
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(title).heading().strong());
            ui.add_space(4.0);
            add_contents(ui)
        })
        .inner
}

/// A keyboard shortcut hint beside a control.
pub fn key_hint(ui: &mut egui::Ui, keys: &str) {
    ui.label(RichText::new(keys).small().color(theme::MUTED_TEXT));
}

/// `0123 4567 89ab …`: an id read aloud or compared by eye in groups of four.
pub fn grouped(hex: &str) -> String {
    hex.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

/// `2026-11-24 21:04:05 UTC` of Unix milliseconds.
pub fn utc_time(millis: i64) -> String {
    let text = keyfill_station::time::rfc3339(millis);
    format!("{} UTC", text.get(..19).unwrap_or(&text).replace('T', " "))
}

/// Colour of a device state or an event kind, for table cells.
pub fn state_tone(state: &str) -> Tone {
    match state {
        "provisioned" | "reconciled" | "rotated" | "c2_exported" | "active" | "created" | "replaced" => Tone::Ok,
        "pending" | "unconfirmed" | "rotation_pending" | "rotation_started" | "key_generated" => Tone::Warning,
        "failed" | "rotation_failed" | "c2_export_failed" | "abandoned" => Tone::Failed,
        _ => Tone::Idle,
    }
}

/// One labelled text field in a two-column form grid: the label names the field for screen
/// readers (and the kittest tests). Ends the grid row.
pub fn form_field(ui: &mut egui::Ui, label: &str, text: &mut String, hint: &str, enabled: bool) -> egui::Response {
    let label = ui.label(label);
    let response = ui.add_enabled(enabled, egui::TextEdit::singleline(text).hint_text(hint)).labelled_by(label.id);
    ui.end_row();
    response
}

/// Which of [`two_columns`]' columns to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    First,
    Second,
}

/// Two columns side by side, the first taking `first_share` of the width, when the space is at
/// least `stack_below` wide; else the first above the second, each the full width. `add` fills
/// each column in turn.
pub fn two_columns(ui: &mut egui::Ui, stack_below: f32, first_share: f32, mut add: impl FnMut(&mut egui::Ui, Column)) {
    let width = ui.available_width();
    if width < stack_below {
        add(ui, Column::First);
        ui.add_space(theme::SPACING);
        add(ui, Column::Second);
        return;
    }
    let gap = ui.spacing().item_spacing.x;
    let first = ((width - gap) * first_share).floor();
    ui.horizontal_top(|ui| {
        ui.allocate_ui_with_layout(egui::vec2(first, 0.0), egui::Layout::top_down(egui::Align::Min), |ui| {
            ui.set_width(first);
            add(ui, Column::First);
        });
        let second = ui.available_width();
        ui.allocate_ui_with_layout(egui::vec2(second, 0.0), egui::Layout::top_down(egui::Align::Min), |ui| {
            ui.set_width(second);
            add(ui, Column::Second);
        });
    });
}
