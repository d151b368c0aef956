//! What the rotation and export panels draw alike: progress text over a bar, and a scrolling
//! table of devices and their results, coloured by outcome.

use crate::theme;
use crate::widgets::Tone;
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};

/// One row: the device, what happened to it, and the tone that says whether that is good.
#[derive(Debug, Clone)]
pub struct ResultRow {
    pub device: String,
    /// The device's id, shown on hover over its name.
    pub device_id: Option<String>,
    /// Short: the whole text shows on hover only when the column is too narrow for it.
    pub result: String,
    /// More than the cell says (a key id), shown on hover over the result.
    pub detail: Option<String>,
    pub tone: Tone,
}

impl ResultRow {
    pub fn new(device: impl Into<String>, result: impl Into<String>, tone: Tone) -> Self {
        ResultRow { device: device.into(), device_id: None, result: result.into(), detail: None, tone }
    }

    pub fn id(mut self, device_id: impl Into<String>) -> Self {
        self.device_id = Some(device_id.into());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// Dark on the bar's light fill, readable however far the bar has come.
pub fn progress_text(text: String) -> RichText {
    RichText::new(text).color(egui::Color32::from_rgb(0x1e, 0x25, 0x2d)).strong()
}

/// A progress bar of `done` out of `total` (`failed` of them failed) with `text` over it: blue
/// while running, then green when all went well, amber when some failed, red when all did.
pub fn progress_bar(ui: &mut egui::Ui, done: usize, total: usize, failed: usize, text: String) {
    let fill = if done < total {
        theme::BUSY_TINT
    } else if failed == 0 {
        theme::OK_TINT
    } else if failed >= done {
        theme::FAILED_TINT
    } else {
        theme::WARNING_TINT
    };
    ui.add(
        egui::ProgressBar::new(done as f32 / total.max(1) as f32)
            .text(progress_text(text))
            .fill(fill)
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
        .max_scroll_height(260.0)
        .column(Column::initial(200.0).at_least(110.0).clip(true))
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
                let Some(entry) = rows.get(row.index()) else { return };
                row.col(|ui| {
                    let name = ui.add(egui::Label::new(&entry.device).truncate());
                    if let Some(id) = &entry.device_id {
                        name.on_hover_text(format!("id {id}"));
                    }
                });
                row.col(|ui| {
                    let text = RichText::new(&entry.result).color(entry.tone.color());
                    let result = ui.add(egui::Label::new(text).truncate());
                    if let Some(detail) = &entry.detail {
                        result.on_hover_text(detail);
                    }
                });
            });
        });
}
