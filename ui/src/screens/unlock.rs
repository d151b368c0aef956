//! The passphrase prompt: at start and after every lock. At a station with named operators it
//! asks for the operator's name and passphrase instead, and under an unlock quorum for the other
//! security officers who unlock with them.

use crate::messages::{Command, CustodySummary, LoginRequest, Passphrase, StationSummary};
use crate::problem::Problem;
use crate::screens::Action;
use crate::screens::credentials::{CredentialRows, RowLabels};
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};

#[derive(Debug)]
pub struct UnlockScreen {
    /// The typed passphrase; wiped as soon as it is sent.
    passphrase: String,
    /// Named operators: the operator's name and passphrase, then the other officers' under an
    /// unlock quorum; the passphrases wiped as soon as they are sent.
    login: CredentialRows,
    unlocking: bool,
    problem: Option<Problem>,
    /// A problem just arrived: scroll it into view once (at 1024×600 it is under the form).
    reveal_problem: bool,
    /// Why the station locked, shown above the prompt.
    pub reason: Option<String>,
}

fn passphrase_id() -> egui::Id {
    egui::Id::unique("unlock-passphrase")
}

impl Default for UnlockScreen {
    fn default() -> Self {
        Self::new()
    }
}

/// The labels of the login form's rows under `custody`: the operator who will work at the
/// station first, then the security officers an unlock quorum asks for.
pub fn login_labels(custody: &CustodySummary) -> Vec<RowLabels> {
    let officers = match custody.unlock_quorum {
        0 | 1 => 0,
        quorum => usize::from(quorum),
    };
    std::iter::once(RowLabels { name: "Operator name".into(), passphrase: "Passphrase".into() })
        .chain(
            (1..=officers).map(|n| RowLabels {
                name: format!("Officer {n} name"),
                passphrase: format!("Officer {n} passphrase"),
            }),
        )
        .collect()
}

/// Officer rows that must be filled in, besides the operator's: one fewer than the quorum, as
/// the operator may be an officer (the station says so when the quorum is not met).
fn officer_rows_needed(custody: &CustodySummary) -> usize {
    usize::from(custody.unlock_quorum.max(1)) - 1
}

/// The line above the login form explaining who logs in.
pub fn login_explanation(custody: &CustodySummary) -> String {
    match custody.unlock_quorum {
        0 | 1 => "This station has named operators: log in with your name and passphrase. What you do is recorded \
                  under your name."
            .to_owned(),
        quorum => format!(
            "{quorum} security officers must unlock this station together after a restart. Type the name and \
             passphrase of who will work at the station, then the officers'; an officer who works here counts as \
             one of them (leave a row empty)."
        ),
    }
}

impl UnlockScreen {
    pub fn new() -> Self {
        // Room for a long passphrase, so typing never reallocates and leaves copies behind.
        UnlockScreen {
            passphrase: String::with_capacity(256),
            login: CredentialRows::new("unlock-login", 1),
            unlocking: false,
            problem: None,
            reveal_problem: false,
            reason: None,
        }
    }

    pub fn on_unlocked(&mut self) {
        self.unlocking = false;
        self.problem = None;
        self.reason = None;
    }

    pub fn on_failed(&mut self, problem: Problem) {
        self.unlocking = false;
        self.problem = Some(problem);
        self.reveal_problem = true;
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, station: Option<&StationSummary>) -> Vec<Action> {
        let mut actions = Vec::new();
        // Scrolls: at 1024×600 a problem shown under the form ends below the window's edge.
        // A quorum's form is tall: it starts near the top, its button in view at 1280×800.
        let tall = station.and_then(|s| s.custody.as_ref()).is_some_and(|c| c.unlock_quorum >= 2);
        let top = if tall { 16.0 } else { (ui.available_height() * 0.12).max(24.0) };
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
                            let mut facts = vec![
                                ("Station", name),
                                ("Station id", id),
                                ("Home", station.home.display().to_string()),
                                ("Database", station.database.clone()),
                            ];
                            // With named operators, whoever logs in is the operator.
                            if station.custody.is_none() {
                                facts.push(("Operator", station.operator.clone()));
                            }
                            widgets::facts(ui, "unlock-facts", &facts);
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
                        if let Some(custody) = station.and_then(|station| station.custody) {
                            self.login_form(ui, &custody, &mut actions);
                            return;
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
                            show_problem(ui, problem, &mut self.reveal_problem);
                        }
                    });
                });
            })
        });
        actions
    }
}

impl UnlockScreen {
    /// Named operators: name and passphrase rows, and the Log in button.
    fn login_form(&mut self, ui: &mut egui::Ui, custody: &CustodySummary, actions: &mut Vec<Action>) {
        let labels = login_labels(custody);
        if self.login.len() != labels.len() {
            self.login.resize(labels.len());
        }
        ui.add(egui::Label::new(login_explanation(custody)).wrap());
        ui.add_space(6.0);
        let submitted = self.login.ui(ui, |index| labels[index].clone(), !self.unlocking, true);
        ui.add_space(theme::SPACING);
        ui.horizontal(|ui| {
            let ready = !self.unlocking && self.login.is_ready(officer_rows_needed(custody));
            let text = if labels.len() > 1 { "Log in and unlock" } else { "Log in" };
            let button = ui.add_enabled(ready, widgets::primary_button(text, ready, egui::vec2(200.0, 44.0)));
            widgets::key_hint(ui, "Enter");
            if self.unlocking {
                ui.spinner();
                ui.label("Logging in…");
            }
            if (button.clicked() || submitted) && ready {
                self.unlocking = true;
                self.problem = None;
                let mut credentials = self.login.take_filled().into_iter();
                if let Some(operator) = credentials.next() {
                    let approvers = credentials.collect();
                    actions.push(Command::Login(Box::new(LoginRequest { operator, approvers })).into());
                }
                self.login.forget_typed_text(ui.ctx());
            }
        });
        if let Some(problem) = &self.problem {
            ui.add_space(theme::SPACING);
            show_problem(ui, problem, &mut self.reveal_problem);
        }
    }
}

/// The problem box, scrolled into view the first time it is drawn.
fn show_problem(ui: &mut egui::Ui, problem: &Problem, reveal: &mut bool) {
    let rect = ui.scope(|ui| widgets::problem_box(ui, problem)).response.rect;
    if std::mem::take(reveal) {
        ui.scroll_to_rect(rect, Some(egui::Align::BOTTOM));
    }
}

/// egui keeps the text edit's undo history, which holds copies of what was typed: drop it.
fn forget_typed_text(context: &egui::Context) {
    if let Some(mut state) = egui::TextEdit::load_state(context, passphrase_id()) {
        state.clear_undoer();
        state.store(context, passphrase_id());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custody_unlock_form_fields_follow_the_quorum() {
        let names = |quorum| -> Vec<(String, String)> {
            login_labels(&CustodySummary { unlock_quorum: quorum, approvals: 2 })
                .into_iter()
                .map(|l| (l.name, l.passphrase))
                .collect()
        };
        assert_eq!(names(1), [("Operator name".to_owned(), "Passphrase".to_owned())]);
        let two = names(2);
        assert_eq!(two.len(), 3, "the operator, then two officers");
        assert_eq!(two[2], ("Officer 2 name".to_owned(), "Officer 2 passphrase".to_owned()));
        assert_eq!(names(3).len(), 4);
        assert_eq!(officer_rows_needed(&CustodySummary { unlock_quorum: 2, approvals: 2 }), 1);
        let explained = login_explanation(&CustodySummary { unlock_quorum: 2, approvals: 2 });
        assert!(explained.starts_with("2 security officers must unlock this station together"), "{explained}");
        assert!(login_explanation(&CustodySummary { unlock_quorum: 1, approvals: 2 }).contains("your name"));
    }
}
