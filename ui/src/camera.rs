//! The camera panel: frames from a [`FrameSource`] decoded by the scanner's background
//! [`LiveScan`], with a copy of each frame kept for the preview texture. Decoding never runs on
//! the UI thread; the UI only uploads the newest preview frame when it changed.
//!
//! A code that is read is outlined on the preview where the scanner found it — green with the
//! device's name for a Keyfill label, red for any other code — and described in text below the
//! preview (which is what a screen reader gets). When the scanner gives no corners, or the
//! preview no longer shows the frame size the code was read in, the whole preview is framed
//! instead: never an outline in the wrong place. [`overlay`] has the geometry.

mod overlay;

use crate::bridge::Waker;
use crate::settings::{CameraChoice, CameraSource};
use crate::theme;
use eframe::egui::{self, Color32, RichText};
use keyfill_station::scan::camera::{V4l2Camera, list_cameras};
use keyfill_station::scan::live::{LiveEvent, LiveOptions, LiveScan};
use keyfill_station::scan::source::{FolderWatch, Frame, FrameSource, Next, SourceError};
use keyfill_station::scan::{Corners, Label, ScanResult, Scanner};
use overlay::PreviewSource;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Preview frames wider than this are subsampled before they reach the UI thread.
const PREVIEW_WIDTH: u32 = 640;
/// How long the green or red highlight stays after a code was read.
const HIGHLIGHT_SECONDS: f64 = 2.5;

/// A subsampled copy of a camera frame, as 8-bit grey.
#[derive(Debug)]
struct PreviewFrame {
    /// Width and height of the texture.
    size: [usize; 2],
    /// The grey pixels row by row.
    pixels: Vec<u8>,
    source: PreviewSource,
}

/// The newest preview frame, with a counter that changes with every frame.
#[derive(Debug, Default)]
struct PreviewSlot {
    frame: Mutex<(u64, Option<PreviewFrame>)>,
}

impl PreviewSlot {
    fn put(&self, frame: PreviewFrame) {
        let mut slot = self.frame.lock().unwrap_or_else(PoisonError::into_inner);
        slot.0 = slot.0.wrapping_add(1);
        slot.1 = Some(frame);
    }

    fn take_if_newer(&self, seen: u64) -> Option<(u64, PreviewFrame)> {
        let mut slot = self.frame.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.0 == seen {
            return None;
        }
        let generation = slot.0;
        slot.1.take().map(|frame| (generation, frame))
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
            self.slot.put(subsample(frame));
            self.waker.wake();
        }
        Ok(next)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Nearest-neighbour subsampling by a whole step, to at most [`PREVIEW_WIDTH`] pixels wide.
fn subsample(frame: &Frame) -> PreviewFrame {
    let (width, height) = (frame.image.width(), frame.image.height());
    let step = width.div_ceil(PREVIEW_WIDTH).max(1);
    let raw = frame.image.as_raw();
    let (out_width, out_height) = (width / step, height / step);
    let source = PreviewSource {
        frame_size: (width, height),
        covered: egui::vec2((out_width * step) as f32, (out_height * step) as f32),
    };
    let size = [out_width as usize, out_height as usize];
    if step == 1 {
        return PreviewFrame { size, pixels: raw.clone(), source };
    }
    let mut pixels = Vec::with_capacity((out_width * out_height) as usize);
    for y in 0..out_height {
        let row = (y * step * width) as usize;
        pixels.extend((0..out_width).map(|x| raw[row + (x * step) as usize]));
    }
    PreviewFrame { size, pixels, source }
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
    /// Written beside the outline: the device's name, or what is wrong with the code.
    tag: String,
    /// Where the code was, if the scanner said.
    outline: Option<Outline>,
    at: f64,
}

/// A code's corners in the frame it was read in.
#[derive(Debug, Clone, Copy)]
struct Outline {
    corners: Corners,
    frame_size: (u32, u32),
}

pub struct CameraPanel {
    live: Option<LiveScan>,
    slot: Arc<PreviewSlot>,
    texture: Option<egui::TextureHandle>,
    /// The frame the texture shows, to place outlines on it.
    texture_source: Option<PreviewSource>,
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
            texture_source: None,
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

    /// Forgets the last code read: a label typed or scanned by hand took its place.
    pub fn forget_sighting(&mut self) {
        self.sighting = None;
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
                LiveEvent::Scanned { result, frame_size } => {
                    self.sighting = Some(sighting_of(&result, frame_size, now));
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
        if let Some((generation, frame)) = self.slot.take_if_newer(self.shown) {
            self.shown = generation;
            self.texture_source = Some(frame.source);
            let image = egui::ColorImage::from_gray(frame.size, &frame.pixels);
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
        let mut shown = None;
        match &self.texture {
            Some(texture) if !matches!(self.state, CameraState::Off | CameraState::NotFound) => {
                let image_rect = overlay::letterbox(rect, texture.size_vec2());
                egui::Image::new(texture).paint_at(ui, image_rect);
                shown = Some(image_rect);
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
            match self.outline_on_screen(sighting, shown) {
                Some(quad) => overlay::paint_outline(&ui.painter_at(rect), quad, color, &sighting.tag),
                None => {
                    ui.painter().rect_stroke(rect, 6.0, egui::Stroke::new(6.0, color), egui::StrokeKind::Inside);
                }
            }
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

    /// Where the sighting's code is on screen, if the preview shows a frame of the size it was
    /// read in (a folder of images of different sizes may have moved on to another).
    fn outline_on_screen(&self, sighting: &Sighting, shown: Option<egui::Rect>) -> Option<[egui::Pos2; 4]> {
        let (outline, source, shown) = (sighting.outline?, self.texture_source?, shown?);
        (outline.frame_size == source.frame_size).then(|| overlay::frame_to_screen(&outline.corners, &source, shown))
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

/// What to show of a code read in a frame of `frame_size`.
fn sighting_of(result: &ScanResult, frame_size: (u32, u32), now: f64) -> Sighting {
    let (keyfill, headline, detail, tag) = match &result.label {
        Label::Keyfill(payload) => (
            true,
            format!("Keyfill label: {}", payload.name.as_str()),
            format!("id {}", payload.device_id.to_hex()),
            payload.name.as_str().to_owned(),
        ),
        Label::Invalid(error) => (false, "Damaged Keyfill label".into(), error.to_string(), "Damaged label".into()),
        Label::NotKeyfill => (
            false,
            "Not a Keyfill label".into(),
            "a QR code was read, but it is not a device label".into(),
            "Not a Keyfill label".into(),
        ),
    };
    let outline = result.corners.map(|corners| Outline { corners, frame_size });
    Sighting { keyfill, headline, detail, tag, outline, at: now }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eframe::egui::epaint::{ColorMode, Shape};
    use egui_kittest::Harness;
    use image::GrayImage;
    use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
    use keyfill_station::scan::{Origin, Point, THOROUGH};

    /// A running panel whose preview shows one 1280×720 frame in which `text` was read at
    /// `corners` (its centre 180 pixels square).
    fn panel_with(text: String, corners: Option<Corners>) -> CameraPanel {
        let mut panel = CameraPanel { state: CameraState::Running { source: "test".into() }, ..CameraPanel::default() };
        panel.slot.put(subsample(&Frame { image: GrayImage::new(1280, 720), at: Duration::ZERO }));
        let result = ScanResult::new(text, Origin::Image(THOROUGH[0])).with_corners(corners);
        panel.sighting = Some(sighting_of(&result, (1280, 720), 0.0));
        panel
    }

    fn centre_square() -> Corners {
        [Point::new(550.0, 270.0), Point::new(730.0, 270.0), Point::new(730.0, 450.0), Point::new(550.0, 450.0)]
    }

    fn label_text() -> String {
        let payload = OnboardingPayload::new(
            "sensor-0042".parse().expect("valid"),
            "SN-42",
            DeviceCredential::Identity { public_key: [7; 32] },
        );
        payload.encode().unwrap_or_default()
    }

    /// Draws the panel once; returns what it painted.
    fn painted(panel: CameraPanel) -> Vec<Shape> {
        let mut harness = Harness::builder()
            .with_size([420.0, 320.0])
            .build_ui_state(|ui, panel: &mut CameraPanel| panel.ui(ui, 0.0), panel);
        // `run` would wait out the highlight's delayed repaint: two frames upload and draw.
        harness.run_steps(2);
        harness.output().shapes.iter().map(|clipped| clipped.shape.clone()).collect()
    }

    fn outlines(shapes: &[Shape]) -> Vec<(Vec<egui::Pos2>, Color32)> {
        let outline = |shape: &Shape| match shape {
            Shape::Path(path) if path.closed => match path.stroke.color {
                ColorMode::Solid(color) => Some((path.points.clone(), color)),
                ColorMode::UV(_) => None,
            },
            _ => None,
        };
        shapes.iter().filter_map(outline).collect()
    }

    /// Where the preview texture was drawn: the one rect filled with a texture.
    fn preview_image_rect(shapes: &[Shape]) -> Option<egui::Rect> {
        shapes.iter().find_map(|shape| match shape {
            Shape::Rect(rect) if rect.brush.is_some() => Some(rect.rect),
            Shape::Mesh(mesh) if mesh.texture_id != egui::TextureId::default() => Some(mesh.calc_bounds()),
            _ => None,
        })
    }

    #[test]
    fn gui_camera_outlines_a_keyfill_label_where_it_is_in_the_preview() {
        let shapes = painted(panel_with(label_text(), Some(centre_square())));
        let image = preview_image_rect(&shapes).unwrap_or_else(|| panic!("no preview image"));
        let outlines = outlines(&shapes);
        let [(points, color)] = outlines.as_slice() else { panic!("one outline expected: {outlines:?}") };
        assert_eq!(*color, theme::OK);
        // The frame's centre square, scaled as the frame is: centred on the image, 180/1280 of its
        // width wide.
        let quad = egui::Rect::from_points(points);
        assert!((quad.center() - image.center()).length() < 0.5, "{quad:?} in {image:?}");
        assert!((quad.width() - image.width() * 180.0 / 1280.0).abs() < 0.5, "{quad:?} in {image:?}");
        let name_shown = shapes.iter().any(|s| matches!(s, Shape::Text(text) if text.galley.text() == "sensor-0042"));
        assert!(name_shown, "the device's name is written beside the outline");
    }

    #[test]
    fn gui_camera_outlines_another_code_in_red_and_frames_the_preview_without_corners() {
        let shapes = painted(panel_with("https://example.com".into(), Some(centre_square())));
        let colours: Vec<Color32> = outlines(&shapes).into_iter().map(|(_, colour)| colour).collect();
        assert_eq!(colours, [theme::FAILED]);

        // No corners: the whole preview is framed green instead, and no outline is made up.
        let shapes = painted(panel_with(label_text(), None));
        assert!(outlines(&shapes).is_empty());
        let framed = shapes.iter().any(|s| matches!(s, Shape::Rect(rect) if rect.stroke.color == theme::OK));
        assert!(framed, "the preview is framed in green");
    }

    #[test]
    fn gui_subsampled_preview_records_the_frame_part_it_covers() {
        let frame = Frame { image: GrayImage::new(1930, 1081), at: Duration::ZERO };
        let preview = subsample(&frame);
        // A step of 4: 482×270 pixels showing 1928×1080 of the frame.
        assert_eq!(preview.size, [482, 270]);
        assert_eq!(preview.source, PreviewSource { frame_size: (1930, 1081), covered: egui::vec2(1928.0, 1080.0) });
        let small = subsample(&Frame { image: GrayImage::new(320, 240), at: Duration::ZERO });
        assert_eq!(small.source.covered, egui::vec2(320.0, 240.0));
    }
}
