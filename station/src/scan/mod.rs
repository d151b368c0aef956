//! Reading device labels: QR codes in camera frames and image files, and text typed by a
//! handheld (USB HID) scanner, all ending in one [`ScanResult`].
//!
//! - [`Scanner`] runs a cascade of [`Stage`]s (a [`Decoder`] on a [`Prep`]ared frame) and stops
//!   at the first stage that finds a code. Cheap stages come first, so a clear label costs one
//!   rxing pass; the retries only run on frames that fail.
//! - [`decoders`]: rxing and rqrr, each isolated against panics; [`locate`]: where each code
//!   lies, from the decoders' own geometry.
//! - [`image_file`]: reading image files and JPEG frames within [`ImageLimits`], refusing
//!   oversized ones from their header.
//! - [`preprocess`]: size limit, rescaling, inversion, adaptive threshold.
//! - [`source`]: frame sources (image files played as a camera, a watched folder) and
//!   [`camera`]: V4L2 capture.
//! - [`live`]: the background decoder: frames in, deduplicated [`live::LiveEvent`]s out.
//!
//! See docs/scanning.md for the benchmark behind the stage order.

pub mod camera;
pub mod decoders;
pub mod image_file;
pub mod live;
pub mod locate;
pub mod preprocess;
pub mod source;

pub use decoders::{Decoded, Decoder, DecoderPanicked};
pub use image_file::{ImageFileError, ImageLimits};
pub use locate::{Corners, Point};
pub use preprocess::{Prep, Prepared};

use image::GrayImage;
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload, QrError};
use std::fmt;
use std::path::Path;
use thiserror::Error;

/// One decoded code: the text exactly as the code holds it, what it means to Keyfill, and where
/// it lies in the frame.
#[derive(Clone, PartialEq)]
pub struct ScanResult {
    pub text: String,
    pub label: Label,
    pub origin: Origin,
    /// The code's outer corners in the pixels of the frame given to the scanner (before any
    /// preparation), clockwise from the code's top-left ([`Corners`]). `None` when the decoder's
    /// geometry gave nothing usable, and always for [`Origin::Typed`].
    pub corners: Option<Corners>,
}

impl fmt::Debug for ScanResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text of a setup-secret label encodes the secret, which the payload's own Debug
        // redacts; a logged scan must not print it either.
        let secret = self.payload().is_some_and(|p| matches!(p.credential, DeviceCredential::SetupSecret(_)));
        let text: &dyn fmt::Debug = if secret { &"<redacted: carries a setup secret>" } else { &self.text };
        f.debug_struct("ScanResult")
            .field("text", text)
            .field("label", &self.label)
            .field("origin", &self.origin)
            .field("corners", &self.corners)
            .finish()
    }
}

/// What a decoded text is to Keyfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// A valid Keyfill onboarding payload.
    Keyfill(Box<OnboardingPayload>),
    /// A code that is not a Keyfill label at all (a URL, a product code...).
    NotKeyfill,
    /// Starts like a Keyfill label but does not parse: damaged, misread, or of a newer version.
    Invalid(QrError),
}

/// How a result was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Decoded from an image by this stage of the cascade.
    Image(Stage),
    /// Typed by a handheld scanner (or pasted) into the operator's text field.
    Typed,
}

impl ScanResult {
    /// Classifies `text` (the decoded content of one code); no position yet.
    pub fn new(text: String, origin: Origin) -> Self {
        let label = match OnboardingPayload::parse(&text) {
            Ok(payload) => Label::Keyfill(Box::new(payload)),
            Err(QrError::WrongPrefix) => Label::NotKeyfill,
            Err(error) => Label::Invalid(error),
        };
        ScanResult { text, label, origin, corners: None }
    }

    /// This result at `corners` in its frame.
    pub fn with_corners(self, corners: Option<Corners>) -> Self {
        ScanResult { corners, ..self }
    }

    /// The parsed payload, if this is a valid Keyfill label.
    pub fn payload(&self) -> Option<&OnboardingPayload> {
        match &self.label {
            Label::Keyfill(payload) => Some(payload),
            Label::NotKeyfill | Label::Invalid(_) => None,
        }
    }
}

/// The entry point for a handheld scanner: a USB HID scanner types the payload followed by Enter
/// into a text field, which hands the line here. Returns `None` for an empty line.
pub fn from_typed_text(line: &str) -> Option<ScanResult> {
    // The scanner's Enter arrives as "\n" or "\r\n"; keyboards' layouts add nothing else.
    let text = line.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return None;
    }
    Some(ScanResult::new(text.to_owned(), Origin::Typed))
}

/// One step of the cascade: a decoder on a prepared frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stage {
    pub decoder: Decoder,
    pub prep: Prep,
}

impl Stage {
    pub const fn new(decoder: Decoder, prep: Prep) -> Self {
        Stage { decoder, prep }
    }

    /// Runs this stage on `frame`; the corners of what it reads are in the pixels of the frame
    /// given to [`Prepared::new`]. `Ok(None)` when the preparation does not apply to the frame.
    pub fn run(self, frame: &Prepared) -> Result<Option<Vec<Decoded>>, DecoderPanicked> {
        let Some(image) = frame.get(self.prep) else { return Ok(None) };
        let in_frame = |code: Decoded| Decoded {
            corners: code.corners.map(|corners| frame.corners_in_frame(corners, self.prep)),
            ..code
        };
        self.decoder.decode(image).map(|codes| Some(codes.into_iter().map(in_frame).collect()))
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.decoder, self.prep)
    }
}

/// The full cascade, cheapest first. Each stage but the inverted one reads photographs of the
/// benchmark set that the stages before it miss (docs/scanning.md has the numbers); the inverted
/// stage is for light-on-dark labels, which the set does not hold.
///
/// Left out because they read nothing the cascade misses, on the photographs or on rendered
/// labels from 1 to 2.5 pixels per module: rxing on the upscaled frame (as good a single stage
/// as the adaptive one, at twice its cost) and plain rqrr.
pub const THOROUGH: &[Stage] = &[
    Stage::new(Decoder::RxingHybrid, Prep::AsIs),
    Stage::new(Decoder::RxingGlobal, Prep::AsIs),
    Stage::new(Decoder::RxingHybrid, Prep::Inverted),
    Stage::new(Decoder::RxingHybrid, Prep::Adaptive),
    Stage::new(Decoder::Rqrr, Prep::AdaptiveUpscaled),
];

/// Stages the benchmark also measures on their own, for comparison: plain rqrr is the old
/// decoder's baseline.
pub const MEASURED_ONLY: &[Stage] =
    &[Stage::new(Decoder::RxingHybrid, Prep::Upscaled), Stage::new(Decoder::Rqrr, Prep::AsIs)];

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error(transparent)]
    Image(#[from] ImageFileError),
}

/// Finds QR codes in images by running a cascade of stages until one finds a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanner {
    stages: Vec<Stage>,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner { stages: THOROUGH.to_vec() }
    }
}

impl Scanner {
    /// A scanner running `stages` in order (the benchmark measures single stages this way).
    pub fn with_stages(stages: impl Into<Vec<Stage>>) -> Self {
        Scanner { stages: stages.into() }
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// Every code found by the first stage that finds any; empty if none does.
    pub fn scan_gray(&self, gray: GrayImage) -> Vec<ScanResult> {
        run_stages(&Prepared::new(gray), &self.stages)
    }

    /// As [`Scanner::scan_gray`], for an image of any pixel format.
    pub fn scan_image(&self, image: &image::DynamicImage) -> Vec<ScanResult> {
        self.scan_gray(image.to_luma8())
    }

    /// Reads the image file at `path` (PNG or JPEG) within [`ImageLimits::DEFAULT`] and scans it.
    pub fn scan_file(&self, path: &Path) -> Result<Vec<ScanResult>, ScanError> {
        Ok(self.scan_gray(image_file::read_gray(path, &ImageLimits::DEFAULT)?))
    }
}

/// Runs `stages` in order on a prepared frame and returns every code found by the first stage
/// that finds any.
pub fn run_stages(frame: &Prepared, stages: &[Stage]) -> Vec<ScanResult> {
    for &stage in stages {
        match stage.run(frame) {
            Ok(Some(codes)) if !codes.is_empty() => {
                let result =
                    |code: Decoded| ScanResult::new(code.text, Origin::Image(stage)).with_corners(code.corners);
                return dedup(codes).into_iter().map(result).collect();
            }
            Ok(_) => {}
            Err(panicked) => tracing::warn!("{panicked}; trying the next stage"),
        }
    }
    Vec::new()
}

/// Two finder-pattern sets on the same code yield its text twice; keep the first of each (and
/// its position).
fn dedup(codes: Vec<Decoded>) -> Vec<Decoded> {
    let mut unique: Vec<Decoded> = Vec::with_capacity(codes.len());
    for code in codes {
        if !unique.iter().any(|seen| seen.text == code.text) {
            unique.push(code);
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_formats::qr::SetupSecret;

    #[test]
    fn scan_debug_output_never_shows_a_setup_secret_label_text() {
        let secret = DeviceCredential::SetupSecret(SetupSecret([0x5a; 16]));
        let text = OnboardingPayload::new("dev-9".parse().expect("valid"), "SN-9", secret).encode().unwrap_or_default();
        let result = ScanResult::new(text.clone(), Origin::Typed);
        assert!(result.payload().is_some());
        let shown = format!("{result:?}");
        assert!(!shown.contains(&text[4..]), "{shown}");
        let url = ScanResult::new("https://example.com".to_owned(), Origin::Typed);
        assert!(format!("{url:?}").contains("https://example.com"));
    }
}
