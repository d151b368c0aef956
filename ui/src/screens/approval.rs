//! The two-person approval dialog: at a station with named operators a dual-control operation
//! (the bundle export) takes the approval of the policy's number of security officers, each
//! typing their name and passphrase here. The station logs them in, signs the approvals into
//! the audit log and only then does the operation; a refusal (a wrong passphrase, too few
//! officers) comes back into the dialog, which stays open for another try.

use crate::custody::{Access, role_text};
use crate::messages::{Credential, SignedIn};
use crate::problem::Problem;
use crate::screens::credentials::{CredentialRows, RowLabels};
use crate::theme;
use crate::widgets;
use eframe::egui::{self, RichText};
use keyfill_station::custody::{Operation, Role};

/// What the dialog asks of the app this frame.
#[derive(Debug)]
pub enum ApprovalAction {
    /// Approve and go on, with the officers' credentials.
    Approve(Vec<Credential>),
    Cancel,
}

#[derive(Debug)]
pub struct ApprovalDialog {
    pub operation: Operation,
    pub subject: String,
    /// The officers' rows (the policy's approvals, less the actor's own if an officer).
    rows: CredentialRows,
    /// The actor, when their own login counts as one approval.
    own: Option<SignedIn>,
    approvals: usize,
    waiting: bool,
    problem: Option<Problem>,
}

impl ApprovalDialog {
    /// A dialog for `operation` on `subject` under `access` (its policy's approvals).
    pub fn new(operation: Operation, subject: String, access: &Access) -> Self {
        let approvals = usize::from(access.custody.map_or(2, |custody| custody.approvals));
        let own = access.actor.clone().filter(|actor| actor.role == Role::SecurityOfficer);
        let rows = approvals.saturating_sub(usize::from(own.is_some()));
        ApprovalDialog {
            operation,
            subject,
            rows: CredentialRows::new("approval", rows),
            own,
            approvals,
            waiting: false,
            problem: None,
        }
    }

    /// How many officers type their name and passphrase.
    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// The officers' credentials, when every row is filled in; the passphrases are wiped from
    /// the fields and the dialog waits for the station.
    pub fn approve(&mut self) -> Option<Vec<Credential>> {
        if self.waiting || !self.rows.is_complete() {
            return None;
        }
        self.waiting = true;
        self.problem = None;
        Some(self.rows.take())
    }

    /// The station refused the approvals: shown, and the dialog stays open for a retry.
    pub fn on_refused(&mut self, problem: Problem) {
        self.waiting = false;
        self.problem = Some(problem);
    }

    fn labels(index: usize) -> RowLabels {
        RowLabels {
            name: format!("Officer {} name", index + 1),
            passphrase: format!("Officer {} passphrase", index + 1),
        }
    }

    /// The modal window. `ok` names the approve button ("Approve and export").
    pub fn ui(&mut self, context: &egui::Context, ok: &str) -> Option<ApprovalAction> {
        let mut action = None;
        // Only Cancel closes it: a click beside it must not throw away what the officers typed.
        // Compact, so that it fits a 1024×600 window with a problem shown under the rows.
        egui::Modal::new(egui::Id::unique("approval-dialog")).show(context, |ui| {
            ui.set_width(600.0);
            self.contents(ui, ok, &mut action);
        });
        action
    }

    fn contents(&mut self, ui: &mut egui::Ui, ok: &str, action: &mut Option<ApprovalAction>) {
        {
            ui.label(RichText::new("Two-person approval").size(22.0).strong());
            ui.add_space(4.0);
            ui.label(RichText::new(self.operation.as_str()).strong());
            // The subject names a 64-digit key: break it anywhere rather than widen the dialog.
            let mut subject = egui::text::LayoutJob::single_section(
                self.subject.clone(),
                egui::TextFormat {
                    font_id: egui::FontId::monospace(15.0),
                    color: ui.visuals().text_color(),
                    ..Default::default()
                },
            );
            subject.wrap.max_width = ui.available_width();
            subject.wrap.break_anywhere = true;
            ui.add(egui::Label::new(subject).wrap());
            ui.add_space(4.0);
            let mut text = format!(
                "This takes the approval of {} security officers (dual control): each types their own name and \
                 passphrase. The approvals are signed into the audit log.",
                self.approvals
            );
            if let Some(own) = &self.own {
                text.push_str(&format!(" Your login ({}, {}) counts as one.", own.name, role_text(own.role)));
            }
            ui.add(egui::Label::new(text).wrap());
            ui.add_space(theme::SPACING);
            let submitted = self.rows.ui(ui, Self::labels, !self.waiting, true);
            ui.add_space(theme::SPACING);
            ui.horizontal(|ui| {
                let ready = !self.waiting && self.rows.is_complete();
                let approve = ui.add_enabled(ready, widgets::primary_button(ok, ready, egui::vec2(220.0, 40.0)));
                if (approve.clicked() || submitted)
                    && let Some(credentials) = self.approve()
                {
                    self.rows.forget_typed_text(ui.ctx());
                    *action = Some(ApprovalAction::Approve(credentials));
                }
                if ui.add_enabled(!self.waiting, egui::Button::new("Cancel")).clicked() {
                    *action = Some(ApprovalAction::Cancel);
                }
                if self.waiting {
                    ui.spinner();
                    ui.label("Checking the approvals…");
                }
            });
            if let Some(problem) = &self.problem {
                ui.add_space(theme::SPACING);
                widgets::problem_box(ui, problem);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::CustodySummary;

    fn access(role: Role, approvals: u8) -> Access {
        Access::of_actor(SignedIn { name: "sam".into(), role }, CustodySummary { unlock_quorum: 1, approvals })
    }

    #[test]
    fn custody_approval_dialog_counts_the_officers() {
        let dialog = ApprovalDialog::new(Operation::ExportBundle, "b".into(), &access(Role::Supervisor, 2));
        assert_eq!(dialog.rows(), 2, "a supervisor needs two officers");
        let dialog = ApprovalDialog::new(Operation::ExportBundle, "b".into(), &access(Role::Supervisor, 3));
        assert_eq!(dialog.rows(), 3);
        let dialog = ApprovalDialog::new(Operation::ExportBundle, "b".into(), &access(Role::SecurityOfficer, 2));
        assert_eq!(dialog.rows(), 1, "an officer's own login counts as one approval");
    }

    #[test]
    fn custody_approval_dialog_waits_then_retries() {
        let mut dialog = ApprovalDialog::new(Operation::ExportBundle, "b".into(), &access(Role::Supervisor, 2));
        assert!(dialog.approve().is_none(), "nothing typed");
        for (index, (name, passphrase)) in [("anna", "pa"), ("ben", "pb")].into_iter().enumerate() {
            dialog.rows.set_name(index, name);
            dialog.rows.set_passphrase_for_test(index, passphrase);
        }
        let credentials = dialog.approve().expect("complete");
        assert_eq!(credentials.len(), 2);
        assert_eq!(credentials[0].passphrase.expose(), "pa");
        assert!(dialog.is_waiting());
        assert!(dialog.approve().is_none(), "no second approval while waiting");
        dialog.on_refused(Problem::new("Wrong passphrase for operator ben.", "Type it again."));
        assert!(!dialog.is_waiting());
        assert!(dialog.problem().is_some());
        assert!(dialog.approve().is_none(), "the passphrases were wiped: they are typed again");
        assert_eq!(dialog.rows.names(), ["anna", "ben"]);
    }
}
