//! The screens. Each is a state struct with a `ui` function that draws it and returns what it
//! wants done as [`Action`]s; none of them talks to the station directly.

pub mod approval;
pub mod credentials;
pub mod devices;
pub mod history;
pub mod provision;
pub mod rotation_export;
pub mod settings;
pub mod unlock;

use crate::messages::Command;
use crate::settings::Settings;
use eframe::egui::Key;

/// What a screen asks for. Most are station commands; the rest are the app's own business
/// (saving settings, switching screens), so a screen never needs a reference to the app.
#[derive(Debug)]
pub enum Action {
    Station(Command),
    SaveSettings(Box<Settings>),
    Show(Screen),
    /// Show this device (by id) on the Devices screen, with its history.
    OpenDevice(String),
}

impl From<Command> for Action {
    fn from(command: Command) -> Self {
        Action::Station(command)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Screen {
    #[default]
    Provision,
    Devices,
    RotationExport,
    History,
    Settings,
}

impl Screen {
    pub const ALL: [Screen; 5] =
        [Screen::Provision, Screen::Devices, Screen::RotationExport, Screen::History, Screen::Settings];

    pub fn title(self) -> &'static str {
        match self {
            Screen::Provision => "Provision",
            Screen::Devices => "Devices",
            Screen::RotationExport => "Rotation & export",
            Screen::History => "History",
            Screen::Settings => "Settings",
        }
    }

    /// Ctrl + this key (or F1…F5) shows the screen.
    pub fn key(self) -> (Key, Key) {
        match self {
            Screen::Provision => (Key::Num1, Key::F1),
            Screen::Devices => (Key::Num2, Key::F2),
            Screen::RotationExport => (Key::Num3, Key::F3),
            Screen::History => (Key::Num4, Key::F4),
            Screen::Settings => (Key::Num5, Key::F5),
        }
    }
}
