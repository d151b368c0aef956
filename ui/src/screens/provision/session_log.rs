//! The live table of what this session did, newest first.

use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use std::collections::VecDeque;

const KEPT: usize = 1000;
/// The table's height: about eight rows, scrolling for more.
const TABLE_HEIGHT: f32 = 250.0;

#[derive(Debug, Clone)]
pub struct LogRow {
    pub at: i64,
    pub name: String,
    pub id: String,
    pub link: String,
    pub outcome: String,
    pub tone: Tone,
}

#[derive(Debug, Default)]
pub struct SessionLog {
    rows: VecDeque<LogRow>,
    provisioned: usize,
    failed: usize,
    /// Already provisioned: nothing to do, neither success nor failure.
    already: usize,
    cancelled: usize,
}

impl SessionLog {
    pub fn push(&mut self, row: LogRow) {
        match row.tone {
            Tone::Ok => self.provisioned += 1,
            Tone::Failed => self.failed += 1,
            Tone::Idle => self.already += 1,
            Tone::Warning => self.cancelled += 1,
            Tone::Busy => {}
        }
        self.rows.push_front(row);
        self.rows.truncate(KEPT);
    }

    pub fn ui(&self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("This session").heading().strong());
            let mut counts = format!("{} provisioned · {} failed", self.provisioned, self.failed);
            if self.already > 0 {
                counts.push_str(&format!(" · {} already provisioned", self.already));
            }
            if self.cancelled > 0 {
                counts.push_str(&format!(" · {} cancelled", self.cancelled));
            }
            ui.label(RichText::new(counts).color(theme::MUTED_TEXT));
        });
        if self.rows.is_empty() {
            ui.label(RichText::new("Nothing provisioned yet in this session.").color(theme::MUTED_TEXT));
            return;
        }
        TableBuilder::new(ui)
            .id_salt("session-log")
            .striped(true)
            .max_scroll_height(TABLE_HEIGHT)
            .column(Column::exact(86.0))
            .column(Column::initial(140.0).at_least(100.0).clip(true))
            .column(Column::remainder().at_least(100.0).clip(true))
            .header(theme::ROW_HEIGHT, |mut header| {
                for title in ["Time", "Device", "Result"] {
                    header.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(theme::ROW_HEIGHT, self.rows.len(), |mut row| {
                    let Some(entry) = self.rows.get(row.index()) else { return };
                    row.col(|ui| {
                        let time = widgets::utc_time(entry.at);
                        ui.label(time.get(11..19).unwrap_or(&time));
                    });
                    row.col(|ui| {
                        ui.add(egui::Label::new(&entry.name).truncate())
                            .on_hover_text(format!("{} over {}", entry.id, entry.link));
                    });
                    row.col(|ui| {
                        // Shown in full on hover when it does not fit.
                        ui.add(
                            egui::Label::new(RichText::new(&entry.outcome).color(entry.tone.color()).strong())
                                .truncate(),
                        );
                    });
                });
            });
    }
}
