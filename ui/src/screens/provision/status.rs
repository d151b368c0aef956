//! The current device's status: what the big banner and the step bar show.

use crate::messages::JobId;
use crate::problem::Problem;
use crate::theme;
use crate::widgets::{self, Tone};
use eframe::egui::{self, RichText};
use keyfill_station::db::devices::Device;
use keyfill_station::provision::Progress;

/// The steps of one provisioning, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    Opening,
    Reconciling,
    KeyGenerated,
    Handshake,
    KeySent,
    Confirmed,
}

impl Step {
    pub fn of(progress: &Progress) -> Step {
        match progress {
            Progress::Reconciling => Step::Reconciling,
            Progress::KeyGenerated { .. } => Step::KeyGenerated,
            Progress::Handshake => Step::Handshake,
            Progress::KeySent => Step::KeySent,
            Progress::Confirmed => Step::Confirmed,
        }
    }

    fn text(self) -> &'static str {
        match self {
            Step::Opening => "Opening the link",
            Step::Reconciling => "Asking the device about its pending key",
            Step::KeyGenerated => "Key generated and recorded sealed",
            Step::Handshake => "Authenticating the device",
            Step::KeySent => "Key sent: waiting for the device's proof",
            Step::Confirmed => "Device confirmed the key",
        }
    }
}

/// The bar's stages, in order.
const STAGES: [&str; 5] = ["Link", "Key", "Authenticate", "Send", "Confirm"];

impl Step {
    /// How many stages are done when the station reports this step. The station reports a step
    /// as it starts it (opening the link, the handshake) or once it is done (the key generated,
    /// the key sent, the confirmation): a stage is done only once the next one has begun.
    fn stages_done(self) -> usize {
        match self {
            Step::Opening => 0,
            // Asking the device about its pending key is the key stage, under way.
            Step::Reconciling => 1,
            Step::KeyGenerated | Step::Handshake => 2,
            // The key left after the device authenticated: waiting for its proof.
            Step::KeySent => 4,
            Step::Confirmed => 5,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub enum Status {
    /// Nothing scanned yet.
    #[default]
    Waiting,
    /// A device is scanned and can be provisioned.
    Ready,
    Running {
        job: JobId,
        link: String,
        step: Step,
        /// Cancel was pressed; the station's answer is on its way.
        cancelling: bool,
    },
    Provisioned {
        device: Box<Device>,
        reconciled: bool,
    },
    /// Nothing to do: the device already holds its key from this station.
    AlreadyProvisioned {
        name: String,
    },
    Cancelled {
        key_sent: bool,
    },
    Failed {
        problem: Problem,
    },
}

impl Status {
    pub fn running_job(&self) -> Option<JobId> {
        match self {
            Status::Running { job, .. } => Some(*job),
            _ => None,
        }
    }

    /// Whether Enter (or the button) provisions now.
    pub fn can_provision(&self) -> bool {
        // Not after "already provisioned": there is nothing to do for that device.
        matches!(self, Status::Ready | Status::Failed { .. } | Status::Cancelled { .. })
    }

    pub fn ui(&self, ui: &mut egui::Ui, auto_mode: bool) {
        match self {
            Status::Waiting => widgets::status_banner(
                ui,
                Tone::Idle,
                "Scan a label",
                if auto_mode {
                    "Auto mode: the device is provisioned as soon as its label is read"
                } else {
                    "Handheld scanner, camera, or type the KF1: payload and press Enter"
                },
            ),
            Status::Ready => widgets::status_banner(
                ui,
                Tone::Busy,
                "Ready",
                "Put the device on the link and press Enter to provision",
            ),
            Status::Running { link, step, cancelling, .. } => {
                let (headline, detail) = if *cancelling {
                    ("Cancelling…", format!("Stopping the session — {link}"))
                } else {
                    ("Provisioning…", format!("{} — {link}", step.text()))
                };
                widgets::status_banner(ui, Tone::Busy, headline, &detail);
                ui.add_space(8.0);
                stage_bar(ui, *step);
            }
            Status::Provisioned { device, reconciled } => {
                let detail = if *reconciled {
                    "The device already held its pending key: record completed".to_owned()
                } else {
                    format!("Key {} confirmed by the device", device.key_id.as_deref().unwrap_or("-"))
                };
                widgets::status_banner(ui, Tone::Ok, "Provisioned", &detail);
                ui.add_space(8.0);
                stage_bar(ui, Step::Confirmed);
            }
            Status::AlreadyProvisioned { name } => {
                widgets::status_banner(
                    ui,
                    Tone::Idle,
                    "Already provisioned",
                    &format!("{name} holds its key from this station: nothing to do"),
                );
                ui.add_space(8.0);
                ui.label("Put the next device on the link and scan its label.");
            }
            Status::Cancelled { key_sent } => {
                let detail = if *key_sent {
                    "The key was sent but not confirmed: the record stays pending"
                } else {
                    "The key never left: the device holds no key from this station"
                };
                widgets::status_banner(ui, Tone::Warning, "Cancelled", detail);
                ui.add_space(8.0);
                let help = if *key_sent {
                    "What to do: provision the device again when it is on the link; the station first asks it \
                     whether it holds the key."
                } else {
                    "What to do: put the device on the link and provision again."
                };
                ui.label(RichText::new(help).strong());
            }
            Status::Failed { problem } => {
                widgets::status_banner(ui, Tone::Failed, "Not provisioned", &problem.message);
                ui.add_space(8.0);
                ui.label(RichText::new(format!("What to do: {}", problem.help)).strong());
            }
        }
    }
}

/// Five stages with the finished ones filled green, the one under way in the accent colour,
/// and a progress bar under them.
fn stage_bar(ui: &mut egui::Ui, step: Step) {
    let done = step.stages_done();
    ui.horizontal_wrapped(|ui| {
        for (index, name) in STAGES.iter().enumerate() {
            let (fill, text) = if index < done {
                (theme::OK, egui::Color32::WHITE)
            } else if index == done {
                (theme::BUSY, egui::Color32::WHITE)
            } else {
                (egui::Color32::from_gray(225), theme::MUTED_TEXT)
            };
            egui::Frame::new().fill(fill).corner_radius(12.0).inner_margin(egui::Margin::symmetric(12, 4)).show(
                ui,
                |ui| {
                    ui.label(RichText::new(format!("{}. {name}", index + 1)).color(text).strong());
                },
            );
        }
    });
    let fill = if done == STAGES.len() { theme::OK } else { theme::BUSY };
    ui.add(egui::ProgressBar::new(done as f32 / STAGES.len() as f32).desired_height(8.0).fill(fill));
}
