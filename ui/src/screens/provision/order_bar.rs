//! The work order being keyed: one of the open orders from the MES, with its progress (done,
//! failed, remaining). A label that is not on the chosen order is refused before the link opens.

use crate::messages::Command;
use crate::problem::Problem;
use crate::screens::Action;
use crate::theme;
use eframe::egui::{self, RichText};
use keyfill_station::db::orders::OrderCounts;

/// How often the open orders are read again while the screen shows (orders imported meanwhile
/// appear; counts moved by other stations sharing the database catch up).
const REFRESH_SECS: f64 = 30.0;
/// The progress bar's track, darker than the card so that the remaining part shows.
const TRACK: egui::Color32 = egui::Color32::from_rgb(0xe3, 0xe8, 0xed);

#[derive(Debug, Default)]
pub struct OrderBar {
    orders: Vec<OrderCounts>,
    /// When the orders were last asked for (UI time, seconds).
    asked_at: Option<f64>,
    chosen: Option<String>,
    loaded: bool,
    loading: bool,
    problem: Option<Problem>,
    /// The chosen order was closed (or vanished) since it was chosen.
    dropped: Option<String>,
}

impl OrderBar {
    /// Asks for the open orders when the screen first shows, then every half minute while no
    /// provisioning runs.
    pub fn load_when_due(&mut self, now: f64, busy: bool) -> Option<Action> {
        let due = match self.asked_at {
            None => true,
            Some(asked) => !busy && now - asked >= REFRESH_SECS,
        };
        if !due || self.loading {
            return None;
        }
        self.asked_at = Some(now);
        Some(self.reload())
    }

    fn reload(&mut self) -> Action {
        self.loading = true;
        Command::LoadOrders.into()
    }

    /// After a provisioning: the chosen order's counts moved.
    pub fn after_provisioning(&mut self) -> Option<Action> {
        (!self.orders.is_empty() && !self.loading).then(|| self.reload())
    }

    /// Whether the bar has anything to show: open orders, a chosen one, or why they could not
    /// be read.
    pub fn shows(&self) -> bool {
        !self.orders.is_empty() || self.chosen.is_some() || self.dropped.is_some() || self.problem.is_some()
    }

    pub fn on_orders(&mut self, orders: Vec<OrderCounts>) {
        self.loading = false;
        self.loaded = true;
        self.problem = None;
        if let Some(chosen) = &self.chosen
            && !orders.iter().any(|o| &o.id == chosen)
        {
            self.dropped = self.chosen.take();
        }
        self.orders = orders;
    }

    pub fn on_problem(&mut self, problem: Problem) {
        self.loading = false;
        self.loaded = true;
        self.problem = Some(problem);
    }

    /// The order being keyed, if one is chosen.
    pub fn chosen(&self) -> Option<String> {
        self.chosen.clone()
    }

    fn chosen_counts(&self) -> Option<&OrderCounts> {
        let chosen = self.chosen.as_deref()?;
        self.orders.iter().find(|o| o.id == chosen)
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, enabled: bool) {
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new("Work order").strong());
            if self.orders.is_empty() && self.chosen.is_none() {
                let text = if self.loading && !self.loaded {
                    "loading…"
                } else {
                    "none open: any device is keyed (import orders with `keyfill orders import`)"
                };
                ui.label(RichText::new(text).color(theme::MUTED_TEXT));
            } else {
                ui.add_enabled_ui(enabled, |ui| {
                    let shown = self.chosen.clone().unwrap_or_else(|| "None: any device".into());
                    let before = self.chosen.clone();
                    egui::ComboBox::from_id_salt("work-order")
                        .selected_text(shown)
                        .width(220.0)
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut self.chosen, None, "None: any device");
                            for order in &self.orders {
                                let text = format!("{} · {} to go", order.id, order.outstanding());
                                ui.selectable_value(&mut self.chosen, Some(order.id.clone()), text);
                            }
                        })
                        .response
                        .accessible_name("Work order");
                    if self.chosen != before {
                        self.dropped = None;
                    }
                });
            }
        });
        if let Some(order) = self.chosen_counts() {
            ui.add_space(4.0);
            progress(ui, order);
        }
        if let Some(dropped) = &self.dropped {
            ui.label(
                RichText::new(format!("Work order {dropped} is no longer open: choose another, or none."))
                    .color(theme::WARNING),
            );
        }
        if let Some(problem) = &self.problem {
            ui.label(RichText::new(format!("Work orders: {}", problem.message)).color(theme::MUTED_TEXT));
        }
    }
}

fn progress(ui: &mut egui::Ui, order: &OrderCounts) {
    let finished = order.provisioned + order.failed;
    let fraction = if order.expected > 0 { finished as f32 / order.expected as f32 } else { 0.0 };
    let text = format!(
        "{} done · {} failed · {} remaining of {}",
        order.provisioned,
        order.failed,
        order.outstanding(),
        order.expected
    );
    ui.scope(|ui| {
        // The whole run's length visible behind what is done.
        ui.visuals_mut().extreme_bg_color = TRACK;
        ui.add(
            egui::ProgressBar::new(fraction.clamp(0.0, 1.0))
                .desired_width(ui.available_width())
                .desired_height(22.0)
                .fill(theme::OK_TINT)
                .text(RichText::new(text).strong()),
        )
        .on_hover_text("Done: confirmed by the device. Remaining: not keyed yet, or waiting for confirmation.");
    });
}
