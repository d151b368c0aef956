//! The devices table: virtualised, newest first, narrower while a device's detail is open.

use super::link_text;
use crate::device_index::DeviceIndex;
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};

/// Draws the rows that `index` shows; returns the id of a row clicked.
pub fn show(ui: &mut egui::Ui, index: &DeviceIndex, selected: Option<&str>, loading: bool) -> Option<String> {
    if index.is_empty() {
        let text =
            if loading { "Loading the inventory…" } else { "No devices yet: provision one on the Provision screen." };
        ui.label(RichText::new(text).color(theme::MUTED_TEXT));
        return None;
    }
    let mut clicked = None;
    let visible = index.visible();
    // With the detail open the table narrows to what tells devices apart.
    let compact = selected.is_some();
    let titles: &[&str] = if compact {
        &["Name", "State", "Id", "Updated (UTC)"]
    } else {
        &["Name", "State", "Id", "Serial number", "Link", "Updated (UTC)"]
    };
    // The id column gives way first on a narrow window, so the columns after it stay in view.
    let id_width = (ui.available_width() - 160.0 - 110.0 - 140.0 - 120.0 - 140.0 - 60.0).clamp(120.0, 300.0);
    let mut table = TableBuilder::new(ui)
        .id_salt("devices-table")
        .striped(true)
        .sense(egui::Sense::click())
        .column(Column::initial(160.0).at_least(100.0).clip(true))
        .column(Column::initial(110.0).at_least(90.0).clip(true));
    table = if compact {
        table.column(Column::remainder().at_least(60.0).clip(true))
    } else {
        table
            .column(Column::initial(id_width).at_least(120.0).clip(true))
            .column(Column::initial(140.0).at_least(80.0).clip(true))
            .column(Column::remainder().at_least(120.0).clip(true))
    };
    table
        .column(Column::exact(140.0))
        .header(theme::ROW_HEIGHT, |mut header| {
            for title in titles {
                header.col(|ui| {
                    ui.strong(*title);
                });
            }
        })
        .body(|body| {
            body.rows(theme::ROW_HEIGHT, visible.len(), |mut row| {
                let Some(device) = visible.get(row.index()).and_then(|&i| index.device(i)) else { return };
                row.set_selected(selected == Some(device.id.as_str()));
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
    clicked
}
