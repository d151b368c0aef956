//! The camera panel: frames from a [`FrameSource`] decoded by the scanner's background
//! [`LiveScan`], with a copy of each frame kept for the preview texture. Decoding never runs on
//! the UI thread; the UI only uploads the newest preview frame when it changed.
//!
//! The scanner reports the text of a code, not where it is in the frame, so the highlight is
//! the whole preview framed in green (a Keyfill label) or red (any other code) with what was
//! read beside it — never invented corner points.

use crate::bridge::Waker;
use crate::settings::{CameraChoice, CameraSource};
use crate::theme;
use eframe::egui::{self, Color32, RichText};
use keyfill_station::scan::camera::{V4l2Camera, list_cameras};
use keyfill_station::scan::live::{LiveEvent, LiveOptions, LiveScan};
use keyfill_station::scan::source::{FolderWatch, Frame, FrameSource, Next, SourceError};
use keyfill_station::scan::{Label, ScanResult, Scanner};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Preview frames wider than this are subsampled before they reach the UI thread.
const PREVIEW_WIDTH: u32 = 640;
/// How long the green or red frame stays after a code was read.
const HIGHLIGHT_SECONDS: f64 = 2.5;

/// The newest preview frame, as 8-bit grey, with a counter that changes with every frame.
/// Width and height, and the grey pixels row by row.
type PreviewFrame = ([usize; 2], Vec<u8>);

#[derive(Debug, Default)]
struct PreviewSlot {
    frame: Mutex<(u64, Option<PreviewFrame>)>,
}

impl PreviewSlot {
    fn put(&self, size: [usize; 2], pixels: Vec<u8>) {
        let mut slot = self.frame.lock().unwrap_or_else(PoisonError::into_inner);
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some((size, pixels));
    }

    fn take_if_newer(&self, seen: u64) -> Option<(u64, [usize; 2], Vec<u8>)> {
        let mut slot = self.frame.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.0 == seen {
            return None;
        }
        let generation = slot.0;
        slot.1.take().map(|(size, pixels)| (generation, size, pixels))
    }
}

/// Wraps a frame source: every frame goes on to the decoder and, subsampled, to the preview.
#[derive(Debug)]
struct PreviewTap {
    inner: Box<dyn FrameSource>,
    slot: Arc<PreviewSlot>,
    waker: Waker,
}

impl FrameSource for PreviewTap {
    fn next(&mut self) -> Result<Next, SourceError> {
        let next = self.inner.next()?;
        if let Next::Frame(frame) = &next {
            let (size, pixels) = subsample(frame);
            self.slot.put(size, pixels);
            self.waker.wake();
        }
        Ok(next)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Nearest-neighbour subsampling to at most [`PREVIEW_WIDTH`] pixels wide.
fn subsample(frame: &Frame) -> ([usize; 2], Vec<u8>) {
    let (width, height) = (frame.image.width(), frame.image.height());
    let step = width.div_ceil(PREVIEW_WIDTH).max(1);
    let raw = frame.image.as_raw();
    if step == 1 {
        return ([width as usize, height as usize], raw.clone());
    }
    let (out_width, out_height) = (width / step, height / step);
    let mut pixels = Vec::with_capacity((out_width * out_height) as usize);
    for y in 0..out_height {
        let row = (y * step * width) as usize;
        pixels.extend((0..out_width).map(|x| raw[row + (x * step) as usize]));
    }
    ([out_width as usize, out_height as usize], pixels)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CameraState {
    Off,
    NotFound,
    Running { source: String },
    Ended { source: String },
    Failed { message: String },
}

/// The last code read, for the highlight.
#[derive(Debug, Clone)]
struct Sighting {
    keyfill: bool,
    headline: String,
    detail: String,
    at: f64,
}

pub struct CameraPanel {
    live: Option<LiveScan>,
    slot: Arc<PreviewSlot>,
    texture: Option<egui::TextureHandle>,
    shown: u64,
    state: CameraState,
    sighting: Option<Sighting>,
}

impl std::fmt::Debug for CameraPanel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraPanel").field("state", &self.state).field("running", &self.live.is_some()).finish()
    }
}

impl Default for CameraPanel {
    fn default() -> Self {
        CameraPanel {
            live: None,
            slot: Arc::default(),
            texture: None,
            shown: 0,
            state: CameraState::Off,
            sighting: None,
        }
    }
}

impl CameraPanel {
    /// Starts decoding `source` (a camera, a watched folder, image files in tests).
    pub fn start(&mut self, source: Box<dyn FrameSource>, waker: Waker) {
        self.stop();
        let description = source.describe();
        self.slot = Arc::default();
        self.shown = 0;
        let tap = PreviewTap { inner: source, slot: self.slot.clone(), waker: waker.clone() };
        let wake = waker.clone();
        let options = LiveOptions { waker: Some(Arc::new(move || wake.wake())), ..LiveOptions::default() };
        match LiveScan::start(Box::new(tap), Scanner::default(), options) {
            Ok(live) => {
                self.live = Some(live);
                self.state = CameraState::Running { source: description };
            }
            Err(error) => self.state = CameraState::Failed { message: format!("cannot start the scanner: {error}") },
        }
    }

    /// Starts the source the settings choose; with no camera attached, says so.
    pub fn start_from_settings(&mut self, choice: &CameraChoice, waker: Waker) {
        match choice.source {
            CameraSource::Off => {
                self.stop();
                self.state = CameraState::Off;
            }
            CameraSource::Camera => {
                let cameras = list_cameras();
                let wanted = cameras.iter().find(|c| c.device == choice.camera.device).or(cameras.first());
                let Some(camera) = wanted else {
                    self.stop();
                    self.state = CameraState::NotFound;
                    return;
                };
                let settings = keyfill_station::scan::camera::CameraSettings {
                    device: camera.device.clone(),
                    ..choice.camera.clone()
                };
                match V4l2Camera::open(&settings) {
                    Ok(camera) => self.start(Box::new(camera), waker),
                    Err(error) => {
                        self.stop();
                        self.state = CameraState::Failed { message: error.to_string() };
                    }
                }
            }
            CameraSource::Folder => match FolderWatch::new(&choice.folder, Duration::from_millis(250)) {
                Ok(folder) => self.start(Box::new(folder), waker),
                Err(error) => {
                    self.stop();
                    self.state = CameraState::Failed { message: error.to_string() };
                }
            },
        }
    }

    pub fn stop(&mut self) {
        if let Some(live) = self.live.take() {
            // Dropping signals both threads to stop; joining here could wait for a decode.
            drop(live);
        }
        if matches!(self.state, CameraState::Running { .. }) {
            self.state = CameraState::Off;
        }
    }

    pub fn is_running(&self) -> bool {
        self.live.is_some()
    }

    /// Codes read since the last call; `now` is the UI clock, for the highlight.
    pub fn poll(&mut self, now: f64) -> Vec<ScanResult> {
        let mut found = Vec::new();
        let Some(live) = self.live.as_mut() else { return found };
        while let Some(event) = live.try_next() {
            match event {
                LiveEvent::Scanned(result) => {
                    self.sighting = Some(sighting_of(&result, now));
                    found.push(result);
                }
                LiveEvent::SourceFailed(error) => self.state = CameraState::Failed { message: error.to_string() },
                LiveEvent::Ended => {
                    let source = match &self.state {
                        CameraState::Running { source } => source.clone(),
                        _ => String::new(),
                    };
                    self.state = CameraState::Ended { source };
                }
                _ => {}
            }
        }
        if !matches!(self.state, CameraState::Running { .. }) {
            self.live = None;
        }
        found
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, now: f64) {
        if let Some((generation, size, pixels)) = self.slot.take_if_newer(self.shown) {
            self.shown = generation;
            let image = egui::ColorImage::from_gray(size, &pixels);
            match &mut self.texture {
                Some(texture) => texture.set(image, egui::TextureOptions::LINEAR),
                None => {
                    self.texture = Some(ui.ctx().load_texture("camera-preview", image, egui::TextureOptions::LINEAR))
                }
            }
        }
        if matches!(self.state, CameraState::Off | CameraState::NotFound) {
            // No preview to show: a one-line note instead of an empty black box.
            egui::Frame::new()
                .fill(theme::PANEL_FILL)
                .stroke(egui::Stroke::new(1.0, theme::CARD_STROKE))
                .corner_radius(6.0)
                .inner_margin(egui::Margin::same(10))
                .show(ui, |ui| {
                    ui.set_width(ui.available_width());
                    let title = if self.state == CameraState::Off { "Camera off" } else { "No camera found" };
                    ui.label(RichText::new(title).strong());
                    ui.label(RichText::new(self.state_text()).color(theme::MUTED_TEXT));
                });
            return;
        }
        let width = ui.available_width();
        let height = (width * 9.0 / 16.0).min(180.0);
        let highlight = self.sighting.as_ref().filter(|s| now - s.at < HIGHLIGHT_SECONDS);
        if let Some(sighting) = highlight {
            // Repaint when the highlight should fade, even without new frames.
            ui.ctx()
                .request_repaint_after(Duration::from_secs_f64((HIGHLIGHT_SECONDS - (now - sighting.at)).max(0.05)));
        }
        let (rect, _) = ui.allocate_exact_size(egui::vec2(width, height), egui::Sense::hover());
        ui.painter().rect_filled(rect, 6.0, Color32::from_rgb(0x26, 0x2d, 0x36));
        match &self.texture {
            Some(texture) if !matches!(self.state, CameraState::Off | CameraState::NotFound) => {
                let image_size = texture.size_vec2();
                let scale = (rect.width() / image_size.x).min(rect.height() / image_size.y);
                let shown = egui::Rect::from_center_size(rect.center(), image_size * scale);
                egui::Image::new(texture).paint_at(ui, shown);
            }
            _ => {
                let text = match &self.state {
                    CameraState::NotFound => "No camera found",
                    CameraState::Off => "Camera off",
                    _ => "Waiting for the first frame…",
                };
                ui.painter().text(
                    rect.center(),
                    egui::Align2::CENTER_CENTER,
                    text,
                    egui::FontId::proportional(20.0),
                    Color32::from_gray(220),
                );
            }
        }
        if let Some(sighting) = highlight {
            let color = if sighting.keyfill { theme::OK } else { theme::FAILED };
            ui.painter().rect_stroke(rect, 6.0, egui::Stroke::new(6.0, color), egui::StrokeKind::Inside);
        }
        ui.add_space(4.0);
        match highlight.or(self.sighting.as_ref()) {
            Some(sighting) => {
                let color = if sighting.keyfill { theme::OK } else { theme::FAILED };
                ui.label(RichText::new(&sighting.headline).color(color).strong());
                ui.label(RichText::new(&sighting.detail).monospace());
            }
            None => {
                ui.label(RichText::new(self.state_text()).color(theme::MUTED_TEXT));
            }
        }
    }

    fn state_text(&self) -> String {
        match &self.state {
            CameraState::Off => "Scan with the handheld scanner; Settings > Camera turns a camera on.".into(),
            CameraState::NotFound => "Connect a USB camera, or scan with the handheld scanner.".into(),
            CameraState::Running { source } => format!("Reading {source}: hold a label in view."),
            CameraState::Ended { source } => format!("{source}: no more frames."),
            CameraState::Failed { message } => format!("Camera stopped: {message}"),
        }
    }
}

fn sighting_of(result: &ScanResult, now: f64) -> Sighting {
    match &result.label {
        Label::Keyfill(payload) => Sighting {
            keyfill: true,
            headline: format!("Keyfill label: {}", payload.name),
            detail: format!("id {}", payload.device_id.to_hex()),
            at: now,
        },
        Label::Invalid(error) => {
            Sighting { keyfill: false, headline: "Damaged Keyfill label".into(), detail: error.to_string(), at: now }
        }
        Label::NotKeyfill => Sighting {
            keyfill: false,
            headline: "Not a Keyfill label".into(),
            detail: "a QR code was read, but it is not a device label".into(),
            at: now,
        },
    }
}
