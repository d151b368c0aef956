//! The passphrase prompt: at start and after every lock.

use crate::messages::{Command, Passphrase, StationSummary};
use crate::problem::Problem;
use crate::screens::Action;
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};

#[derive(Debug, Default)]
pub struct UnlockScreen {
    /// The typed passphrase; wiped as soon as it is sent.
    passphrase: String,
    unlocking: bool,
    problem: Option<Problem>,
    /// Why the station locked, shown above the prompt.
    pub reason: Option<String>,
}

fn passphrase_id() -> egui::Id {
    egui::Id::unique("unlock-passphrase")
}

impl UnlockScreen {
    pub fn new() -> Self {
        // Room for a long passphrase, so typing never reallocates and leaves copies behind.
        UnlockScreen { passphrase: String::with_capacity(256), ..UnlockScreen::default() }
    }

    pub fn on_unlocked(&mut self) {
        self.unlocking = false;
        self.problem = None;
        self.reason = None;
    }

    pub fn on_failed(&mut self, problem: Problem) {
        self.unlocking = false;
        self.problem = Some(problem);
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, station: Option<&StationSummary>) -> Vec<Action> {
        let mut actions = Vec::new();
        // Scrolls: at 1024×600 a problem shown under the form ends below the window's edge.
        let top = (ui.available_height() * 0.12).max(24.0);
        egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
            ui.vertical_centered(|ui| {
                ui.add_space(top);
                ui.set_max_width(560.0);
                theme::card().show(ui, |ui| {
                    ui.set_width(520.0);
                    ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                        ui.vertical_centered(|ui| {
                            ui.label(RichText::new("Keyfill station").text_style(theme::title_style()).strong());
                            ui.label(RichText::new("Locked").color(theme::MUTED_TEXT).size(20.0));
                        });
                        ui.add_space(theme::SPACING);
                        if let Some(station) = station {
                            let (name, id) = match &station.identity {
                                Some(identity) => (identity.name.clone(), widgets::grouped(&identity.id)),
                                None => ("not initialised".to_owned(), "-".to_owned()),
                            };
                            widgets::facts(
                                ui,
                                "unlock-facts",
                                &[
                                    ("Station", name),
                                    ("Station id", id),
                                    ("Home", station.home.display().to_string()),
                                    ("Database", station.database.clone()),
                                    ("Operator", station.operator.clone()),
                                ],
                            );
                            if station.identity.is_none() {
                                ui.add_space(theme::SPACING);
                                widgets::problem_box(
                                    ui,
                                    &Problem::not_initialised(&station.home.display().to_string()),
                                );
                            }
                        }
                        ui.add_space(theme::SPACING);
                        if let Some(reason) = &self.reason {
                            widgets::notice(ui, widgets::Tone::Warning, reason);
                        }
                        let token =
                            station.and_then(|station| station.identity.as_ref()).and_then(|i| i.token.as_deref());
                        let prompt = match token {
                            Some(token) => format!("User PIN of the token {}", keyfill_formats::printable(token)),
                            None => "Master-key passphrase".to_owned(),
                        };
                        let label = ui.label(RichText::new(prompt).strong());
                        let field = ui.add_enabled(
                            !self.unlocking,
                            egui::TextEdit::singleline(&mut self.passphrase)
                                .id(passphrase_id())
                                .password(true)
                                .desired_width(f32::INFINITY)
                                .font(egui::TextStyle::Heading),
                        );
                        let field = field.labelled_by(label.id);
                        // Read before taking the focus back: `lost_focus` asks egui's memory as it is now.
                        let submitted = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                        if !self.unlocking && !field.has_focus() && ui.memory(|m| m.focused().is_none()) {
                            field.request_focus();
                        }
                        ui.add_space(theme::SPACING);
                        ui.horizontal(|ui| {
                            let ready = !self.unlocking && !self.passphrase.is_empty();
                            let button = ui
                                .add_enabled(ready, widgets::primary_button("Unlock", ready, egui::vec2(160.0, 44.0)));
                            widgets::key_hint(ui, "Enter");
                            if self.unlocking {
                                ui.spinner();
                                ui.label("Unlocking…");
                            }
                            if (button.clicked() || submitted) && !self.passphrase.is_empty() && !self.unlocking {
                                self.unlocking = true;
                                self.problem = None;
                                actions.push(Command::Unlock(Passphrase::take_from(&mut self.passphrase)).into());
                                forget_typed_text(ui.ctx());
                            }
                        });
                        if let Some(problem) = &self.problem {
                            ui.add_space(theme::SPACING);
                            widgets::problem_box(ui, problem);
                        }
                    });
                });
            })
        });
        actions
    }
}

/// egui keeps the text edit's undo history, which holds copies of what was typed: drop it.
fn forget_typed_text(context: &egui::Context) {
    if let Some(mut state) = egui::TextEdit::load_state(context, passphrase_id()) {
        state.clear_undoer();
        state.store(context, passphrase_id());
    }
}
