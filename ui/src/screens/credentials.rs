//! Rows of operator name + passphrase, as the unlock form (named operators) and the two-person
//! approval dialog ask for them. The passphrases are masked, taken out wiped
//! ([`Passphrase::take_from`]), wiped on drop, and egui's undo history of them is dropped.

use crate::messages::{Credential, Passphrase};
use eframe::egui;
use zeroize::Zeroize;

/// Room for a long passphrase, so typing never reallocates and leaves copies behind.
const PASSPHRASE_ROOM: usize = 256;

#[derive(Debug)]
struct Row {
    name: String,
    passphrase: String,
}

impl Row {
    fn new() -> Self {
        Row { name: String::new(), passphrase: String::with_capacity(PASSPHRASE_ROOM) }
    }
}

/// What each row's two fields are labelled.
#[derive(Debug, Clone)]
pub struct RowLabels {
    pub name: String,
    pub passphrase: String,
}

#[derive(Debug)]
pub struct CredentialRows {
    /// Salts the fields' ids: two forms never share a field.
    salt: &'static str,
    rows: Vec<Row>,
}

impl Drop for CredentialRows {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl CredentialRows {
    pub fn new(salt: &'static str, count: usize) -> Self {
        CredentialRows { salt, rows: (0..count).map(|_| Row::new()).collect() }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Makes it `count` rows, keeping what the first ones hold.
    pub fn resize(&mut self, count: usize) {
        if count < self.rows.len() {
            for row in &mut self.rows[count..] {
                row.passphrase.zeroize();
            }
        }
        self.rows.resize_with(count, Row::new);
    }

    /// Whether every row has a name and a passphrase.
    pub fn is_complete(&self) -> bool {
        self.rows.iter().all(|row| !row.name.trim().is_empty() && !row.passphrase.is_empty())
    }

    /// Whether the first row is complete, and at least `others` of the rest, the rest empty.
    pub fn is_ready(&self, others: usize) -> bool {
        let complete = |row: &Row| !row.name.trim().is_empty() && !row.passphrase.is_empty();
        let empty = |row: &Row| row.name.trim().is_empty() && row.passphrase.is_empty();
        let Some((first, rest)) = self.rows.split_first() else { return false };
        complete(first)
            && rest.iter().all(|row| complete(row) || empty(row))
            && rest.iter().filter(|row| complete(row)).count() >= others
    }

    /// The names typed, trimmed.
    pub fn names(&self) -> Vec<String> {
        self.rows.iter().map(|row| row.name.trim().to_owned()).collect()
    }

    /// Sets row `index`'s name (the logged-in operator's own row, say).
    pub fn set_name(&mut self, index: usize, name: &str) {
        if let Some(row) = self.rows.get_mut(index) {
            row.name = name.to_owned();
        }
    }

    #[cfg(test)]
    pub(crate) fn set_passphrase_for_test(&mut self, index: usize, passphrase: &str) {
        if let Some(row) = self.rows.get_mut(index) {
            row.passphrase.zeroize();
            row.passphrase.push_str(passphrase);
        }
    }

    /// The credentials, each passphrase taken out and its field wiped; the names stay for a
    /// retry.
    pub fn take(&mut self) -> Vec<Credential> {
        self.rows
            .iter_mut()
            .map(|row| Credential {
                name: row.name.trim().to_owned(),
                passphrase: Passphrase::take_from(&mut row.passphrase),
            })
            .collect()
    }

    /// The credentials of the rows filled in (the first always), as [`CredentialRows::take`].
    pub fn take_filled(&mut self) -> Vec<Credential> {
        self.rows
            .iter_mut()
            .enumerate()
            .filter(|(index, row)| *index == 0 || !row.name.trim().is_empty())
            .map(|(_, row)| Credential {
                name: row.name.trim().to_owned(),
                passphrase: Passphrase::take_from(&mut row.passphrase),
            })
            .collect()
    }

    /// Wipes every passphrase typed.
    pub fn wipe(&mut self) {
        for row in &mut self.rows {
            row.passphrase.zeroize();
        }
    }

    fn field_id(&self, index: usize, passphrase: bool) -> egui::Id {
        egui::Id::unique((self.salt, index, passphrase))
    }

    /// The rows as two-column grid rows, labelled by `labels(index)`. Returns whether Enter was
    /// pressed in a passphrase field (to submit). `focus_first`: put the cursor in the first
    /// empty field when nothing has the focus.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        labels: impl Fn(usize) -> RowLabels,
        enabled: bool,
        focus_first: bool,
    ) -> bool {
        let mut submitted = false;
        let mut first_empty: Option<egui::Response> = None;
        let ids: Vec<(egui::Id, egui::Id)> =
            (0..self.rows.len()).map(|i| (self.field_id(i, false), self.field_id(i, true))).collect();
        egui::Grid::new((self.salt, "grid")).num_columns(2).spacing([12.0, 8.0]).show(ui, |ui| {
            for (index, row) in self.rows.iter_mut().enumerate() {
                let RowLabels { name, passphrase } = labels(index);
                let label = ui.label(name);
                let field = ui
                    .add_enabled(
                        enabled,
                        egui::TextEdit::singleline(&mut row.name)
                            .id(ids[index].0)
                            .hint_text("name")
                            .desired_width(280.0),
                    )
                    .labelled_by(label.id);
                if row.name.is_empty() && first_empty.is_none() {
                    first_empty = Some(field);
                }
                ui.end_row();
                let label = ui.label(passphrase);
                let field = ui
                    .add_enabled(
                        enabled,
                        egui::TextEdit::singleline(&mut row.passphrase)
                            .id(ids[index].1)
                            .password(true)
                            .desired_width(280.0),
                    )
                    .labelled_by(label.id);
                submitted |= field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if row.passphrase.is_empty() && first_empty.is_none() {
                    first_empty = Some(field);
                }
                ui.end_row();
            }
        });
        if focus_first
            && enabled
            && ui.memory(|m| m.focused().is_none())
            && let Some(field) = first_empty
        {
            field.request_focus();
        }
        submitted
    }

    /// egui keeps each text edit's undo history, which holds copies of what was typed: drop it.
    pub fn forget_typed_text(&self, context: &egui::Context) {
        for index in 0..self.rows.len() {
            let id = self.field_id(index, true);
            if let Some(mut state) = egui::TextEdit::load_state(context, id) {
                state.clear_undoer();
                state.store(context, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custody_credential_rows_take_and_wipe() {
        let mut rows = CredentialRows::new("test", 2);
        assert!(!rows.is_complete());
        rows.rows[0].name = " anna ".into();
        rows.rows[0].passphrase.push_str("pw-a");
        rows.rows[1].name = "ben".into();
        assert!(!rows.is_complete(), "ben has no passphrase");
        rows.rows[1].passphrase.push_str("pw-b");
        assert!(rows.is_complete());
        let taken = rows.take();
        assert_eq!(taken.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["anna", "ben"]);
        assert_eq!(taken[1].passphrase.expose(), "pw-b");
        assert!(rows.rows.iter().all(|row| row.passphrase.is_empty()), "passphrases wiped");
        assert_eq!(rows.names(), ["anna", "ben"], "names kept for a retry");
        assert!(!rows.is_complete());
        rows.resize(1);
        assert_eq!(rows.len(), 1);
        rows.resize(3);
        assert_eq!(rows.names(), ["anna", "", ""]);
    }
}
