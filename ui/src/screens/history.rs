//! The History screen: the station's event log, newest first — what was provisioned, failed,
//! rotated and exported, when and by whom — with filters, a search, and older pages on demand.

use crate::messages::{Command, HistoryQuery};
use crate::problem::Problem;
use crate::screens::Action;
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};
use egui_extras::{Column, TableBuilder};
use keyfill_station::db::events::{EventFilter, LoggedEvent};

const PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KindGroup {
    #[default]
    All,
    Provisioning,
    Failures,
    Rotation,
    Export,
}

impl KindGroup {
    const ALL: [KindGroup; 5] =
        [KindGroup::All, KindGroup::Provisioning, KindGroup::Failures, KindGroup::Rotation, KindGroup::Export];

    fn title(self) -> &'static str {
        match self {
            KindGroup::All => "All",
            KindGroup::Provisioning => "Provisioning",
            KindGroup::Failures => "Failures",
            KindGroup::Rotation => "Rotation",
            KindGroup::Export => "Export",
        }
    }

    /// The event kinds the station records for each group (station/src: provision, rotation, export).
    fn kinds(self) -> &'static [&'static str] {
        match self {
            KindGroup::All => &[],
            KindGroup::Provisioning => {
                &["key_generated", "provisioned", "unconfirmed", "failed", "reconciled", "abandoned"]
            }
            KindGroup::Failures => &["failed", "unconfirmed", "abandoned", "rotation_failed", "c2_export_failed"],
            KindGroup::Rotation => &["rotation_started", "rotated", "rotation_failed"],
            KindGroup::Export => {
                &["c2_exported", "c2_export_failed", "c2_export_run", "c2_bundled", "c2_bundle_written"]
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct HistoryScreen {
    rows: Vec<LoggedEvent>,
    group: KindGroup,
    search: String,
    operator: String,
    loading: bool,
    /// The answer on its way is an older page, to append.
    appending: bool,
    /// The last page was full: there may be older events.
    more: bool,
    loaded: bool,
    /// Something happened since the last load.
    stale: bool,
    problem: Option<Problem>,
}

impl HistoryScreen {
    pub fn on_history(&mut self, rows: Vec<LoggedEvent>) {
        self.more = rows.len() == PAGE as usize;
        if self.appending {
            self.rows.extend(rows);
        } else {
            self.rows = rows;
        }
        self.loading = false;
        self.appending = false;
        self.loaded = true;
        self.problem = None;
    }

    pub fn on_problem(&mut self, problem: Problem) {
        self.loading = false;
        self.appending = false;
        self.problem = Some(problem);
    }

    /// The station recorded something new: reload when next shown.
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    fn filter(&self) -> EventFilter {
        let text = self.search.trim();
        let operator = self.operator.trim();
        EventFilter {
            kinds: self.group.kinds().iter().map(|k| (*k).to_owned()).collect(),
            operator: (!operator.is_empty()).then(|| operator.to_owned()),
            text: (!text.is_empty()).then(|| text.to_owned()),
            ..EventFilter::default()
        }
    }

    fn load(&mut self, older: bool) -> Action {
        let mut filter = self.filter();
        if older {
            filter.before_id = self.rows.last().map(|row| row.id);
        }
        self.loading = true;
        self.appending = older;
        self.stale = false;
        Command::LoadHistory(HistoryQuery { limit: PAGE, filter }).into()
    }

    pub fn ui(&mut self, ui: &mut egui::Ui) -> Vec<Action> {
        let mut actions = Vec::new();
        if (!self.loaded || self.stale) && !self.loading {
            actions.push(self.load(false));
        }
        theme::card().show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal_wrapped(|ui| {
                let mut reload = false;
                for group in KindGroup::ALL {
                    reload |= ui.selectable_value(&mut self.group, group, group.title()).changed();
                }
                ui.separator();
                let label = ui.label("Search");
                let search = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.search)
                            .hint_text("device, detail, kind")
                            .desired_width(240.0),
                    )
                    .labelled_by(label.id);
                let label = ui.label("Operator");
                let operator = ui
                    .add(egui::TextEdit::singleline(&mut self.operator).hint_text("anyone").desired_width(140.0))
                    .labelled_by(label.id);
                let entered =
                    (search.lost_focus() || operator.lost_focus()) && ui.input(|i| i.key_pressed(egui::Key::Enter));
                reload |= entered;
                reload |= ui.add_enabled(!self.loading, egui::Button::new("Search")).clicked();
                if self.loading {
                    ui.spinner();
                }
                if reload && !self.loading {
                    actions.push(self.load(false));
                }
            });
            ui.label(
                RichText::new(format!(
                    "{} event(s){}",
                    self.rows.len(),
                    if self.more { ", older ones on request" } else { "" }
                ))
                .color(theme::MUTED_TEXT),
            );
        });
        if let Some(problem) = &self.problem {
            ui.add_space(8.0);
            widgets::problem_box(ui, problem);
        }
        ui.add_space(theme::SPACING);
        theme::card().inner_margin(egui::Margin::same(8)).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.set_height(ui.available_height());
            if self.rows.is_empty() {
                let text = if self.loading { "Loading the event log…" } else { "No events match." };
                ui.label(RichText::new(text).color(theme::MUTED_TEXT));
                return;
            }
            let table_height = ui.available_height() - if self.more { 56.0 } else { 0.0 };
            TableBuilder::new(ui)
                .id_salt("history-table")
                .striped(true)
                .max_scroll_height(table_height)
                .column(Column::initial(200.0).at_least(170.0))
                .column(Column::initial(150.0).at_least(110.0).clip(true))
                .column(Column::initial(190.0).at_least(100.0).clip(true))
                .column(Column::initial(110.0).at_least(80.0).clip(true))
                .column(Column::remainder().at_least(200.0).clip(true))
                .header(theme::ROW_HEIGHT, |mut header| {
                    for title in ["Time (UTC)", "Event", "Device", "Operator", "Detail"] {
                        header.col(|ui| {
                            ui.strong(title);
                        });
                    }
                })
                .body(|body| {
                    body.rows(theme::ROW_HEIGHT, self.rows.len(), |mut row| {
                        let Some(event) = self.rows.get(row.index()) else { return };
                        row.col(|ui| {
                            ui.label(widgets::utc_time(event.at).trim_end_matches(" UTC"));
                        });
                        row.col(|ui| {
                            ui.label(
                                RichText::new(&event.kind).color(widgets::state_tone(&event.kind).color()).strong(),
                            );
                        });
                        row.col(|ui| {
                            let device = match (&event.device_name, &event.device_id) {
                                (Some(name), _) => name.clone(),
                                (None, Some(id)) => id.clone(),
                                (None, None) => "—".to_owned(),
                            };
                            ui.label(device);
                        });
                        row.col(|ui| {
                            ui.label(&event.operator);
                        });
                        row.col(|ui| {
                            ui.label(&event.detail).on_hover_text(&event.detail);
                        });
                    });
                });
            if self.more && ui.add_enabled(!self.loading, egui::Button::new("Load older events")).clicked() {
                actions.push(self.load(true));
            }
        });
        actions
    }
}
