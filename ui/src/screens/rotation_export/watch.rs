//! The watch for first contact (`keyfill rotate --watch`): from Start to Stop, each device that
//! says hello is rotated if it never was, and an unfinished rotation is settled from what the
//! device's contact proves. No spinner while watching: a watch runs for hours, and a spinner
//! would repaint the window all that time; the window repaints when a device makes contact.

use super::results::{self, ResultRow};
use super::rotation::{Live, live_rows, result_row};
use crate::messages::{RotationRow, WatchUpdate};
use crate::problem::Problem;
use crate::widgets::{self, Tone};
use eframe::egui;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
enum Phase {
    #[default]
    Idle,
    Connecting,
    Watching {
        broker: String,
    },
    /// Stop was asked for: no new contacts; rotations in flight finish.
    Stopping,
    Ended,
}

#[derive(Debug, Default)]
pub struct WatchRun {
    phase: Phase,
    rotated: usize,
    failed: usize,
    /// By (name, id), so the table reads alphabetically while devices come and go.
    live: BTreeMap<(String, String), Live>,
    results: Option<Vec<RotationRow>>,
    problem: Option<Problem>,
}

impl WatchRun {
    pub fn connecting() -> Self {
        WatchRun { phase: Phase::Connecting, ..WatchRun::default() }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.phase, Phase::Connecting | Phase::Watching { .. } | Phase::Stopping)
    }

    /// Stop can be pressed once, and only after the broker answered (before, there is nothing
    /// to stop: a failed connection ends the watch by itself).
    pub fn is_stoppable(&self) -> bool {
        matches!(self.phase, Phase::Watching { .. })
    }

    pub fn on_stop_requested(&mut self) {
        if self.is_running() {
            self.phase = Phase::Stopping;
        }
    }

    fn in_progress(&self) -> usize {
        self.live.values().filter(|l| l.tone == Tone::Busy).count()
    }

    pub fn on_update(&mut self, update: WatchUpdate) {
        match update {
            WatchUpdate::Watching { broker } => {
                // A Stop pressed while connecting still holds.
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Watching { broker };
                }
            }
            WatchUpdate::Progress { device_id, name, progress } => {
                let live = Live::of(progress, &mut self.rotated, &mut self.failed);
                self.live.insert((name, device_id), live);
            }
            WatchUpdate::Stopped(rows) => {
                self.results = Some(rows);
                self.phase = Phase::Ended;
            }
            WatchUpdate::Failed(problem) => {
                self.problem = Some(problem);
                self.phase = Phase::Ended;
            }
        }
    }

    pub fn ui(&self, ui: &mut egui::Ui) {
        let counts = format!("{} rotated · {} failed · {} in progress", self.rotated, self.failed, self.in_progress());
        match &self.phase {
            Phase::Idle => {}
            Phase::Connecting => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("Connecting to the broker…");
                });
            }
            Phase::Watching { broker } => {
                widgets::notice(ui, Tone::Busy, &format!("Watching {broker} for devices' first contact"));
                results::counter_strip(ui, counts);
            }
            Phase::Stopping => {
                let in_flight = self.in_progress();
                let text = if in_flight == 0 {
                    "Stopping the watch…".to_owned()
                } else {
                    format!("Stopping the watch: {in_flight} rotation(s) in flight finish first…")
                };
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(text);
                });
                results::counter_strip(ui, counts);
            }
            Phase::Ended => {
                if let Some(rows) = &self.results {
                    let ok = rows.iter().filter(|r| r.result.is_ok()).count();
                    let (tone, text) = match rows.len() {
                        0 => (Tone::Idle, "Watch stopped: no device needed a rotation".to_owned()),
                        n if ok == n => (Tone::Ok, format!("Watch stopped: {ok} of {n} rotations confirmed")),
                        n => (Tone::Warning, format!("Watch stopped: {ok} of {n} rotations confirmed")),
                    };
                    widgets::notice(ui, tone, &text);
                }
            }
        }
        if let Some(problem) = &self.problem {
            widgets::problem_box(ui, problem);
        }
        let rows: Vec<ResultRow> = match &self.results {
            Some(rows) => rows.iter().map(result_row).collect(),
            None => live_rows(&self.live),
        };
        results::result_table(ui, "watch-results", &rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_station::rotation::RotationProgress;

    #[test]
    fn gui_watch_counts_contacts_and_a_stop_while_connecting_holds() {
        let mut run = WatchRun::connecting();
        run.on_stop_requested();
        run.on_update(WatchUpdate::Watching { broker: "mqtt://b:1883".into() });
        assert_eq!(run.phase, Phase::Stopping);
        let progress = |device: &str, progress| WatchUpdate::Progress {
            device_id: device.into(),
            name: format!("name-{device}"),
            progress,
        };
        run.on_update(progress("a", RotationProgress::Attempt { device: "a".into(), attempt: 1 }));
        run.on_update(progress("b", RotationProgress::Attempt { device: "b".into(), attempt: 1 }));
        run.on_update(progress("a", RotationProgress::Rotated { device: "a".into() }));
        assert_eq!((run.rotated, run.failed, run.in_progress()), (1, 0, 1));
        run.on_update(WatchUpdate::Stopped(Vec::new()));
        assert!(!run.is_running());
    }
}
