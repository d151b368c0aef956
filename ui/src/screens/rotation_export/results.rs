//! What the rotation and export panels draw alike: progress text over a bar, and a scrolling
//! table of devices and their results, coloured by outcome.

use crate::theme;
use crate::widgets::Tone;
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};

/// One row: the device, what happened to it, and the tone that says whether that is good.
pub type ResultRow = (String, String, Tone);

/// Dark on the bar's light fill, readable however far the bar has come.
pub fn progress_text(text: String) -> RichText {
    RichText::new(text).color(egui::Color32::from_rgb(0x1e, 0x25, 0x2d)).strong()
}

/// A progress bar of `done` out of `total` with `text` over it.
pub fn progress_bar(ui: &mut egui::Ui, done: usize, total: usize, text: String) {
    ui.add(
        egui::ProgressBar::new(done as f32 / total.max(1) as f32)
            .text(progress_text(text))
            .fill(if done >= total { theme::OK_TINT } else { theme::BUSY_TINT })
            .desired_height(24.0),
    );
}

/// Counts with no total (a watch), in a strip the height and colour of a progress bar.
pub fn counter_strip(ui: &mut egui::Ui, text: String) {
    egui::Frame::new().fill(theme::BUSY_TINT).corner_radius(4.0).inner_margin(egui::Margin::symmetric(10, 3)).show(
        ui,
        |ui| {
            ui.set_width(ui.available_width());
            ui.label(progress_text(text));
        },
    );
}

/// Device and result, coloured by outcome, in a scrolling table; nothing when there are no rows.
pub fn result_table(ui: &mut egui::Ui, id: &str, rows: &[ResultRow]) {
    if rows.is_empty() {
        return;
    }
    ui.add_space(6.0);
    TableBuilder::new(ui)
        .id_salt(id)
        .striped(true)
        .max_scroll_height(320.0)
        .column(Column::initial(220.0).at_least(120.0).clip(true))
        .column(Column::remainder().clip(true))
        .header(theme::ROW_HEIGHT, |mut header| {
            for title in ["Device", "Result"] {
                header.col(|ui| {
                    ui.strong(title);
                });
            }
        })
        .body(|body| {
            body.rows(theme::ROW_HEIGHT, rows.len(), |mut row| {
                let Some((device, result, tone)) = rows.get(row.index()) else { return };
                row.col(|ui| {
                    ui.label(device);
                });
                row.col(|ui| {
                    ui.label(RichText::new(result).color(tone.color())).on_hover_text(result);
                });
            });
        });
}
