//! The two QR decoders behind the scanner, each isolated so that a panic inside it is an
//! outcome, never a crash of the station.
//!
//! - `rxing` (a Rust port of ZXing and of zxing-cpp's QR detector) finds more codes and is an
//!   order of magnitude faster on the benchmark set; it runs first, with two binarisations.
//! - `rqrr` (a port of quirc) finds a few codes that rxing misses (see docs/scanning.md).
//!   rqrr 0.11 can panic with an `assert!` in `detect_grids` on degenerate input.
//!
//! Both are ports with many internal `unwrap`s and indexing, so both run under `catch_unwind`.
//! That needs the default `panic = "unwind"`; a profile with `panic = "abort"` would turn a decoder
//! bug back into a crash. The panic hook still prints the panic message on stderr.

use super::locate::{self, Corners};
use image::GrayImage;
use rqrr::BitGrid;
use rxing::common::{DetectorRXingResult, GlobalHistogramBinarizer, HybridBinarizer};
use rxing::multi::MultipleBarcodeReader;
use rxing::qrcode::cpp_port::QrReader;
use rxing::qrcode::decoder::{QRCodeDecoderMetaData, qrcode_decoder};
use rxing::qrcode::detector::Detector;
use rxing::{BarcodeFormat, Binarizer, BinaryBitmap, DecodeHints, Luma8Source};
use std::collections::HashSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A decoder together with the binarisation it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decoder {
    /// rxing with ZXing's hybrid binariser (local thresholds over 8×8 blocks).
    RxingHybrid,
    /// rxing with ZXing's global histogram binariser: better where the code is small against a
    /// large, evenly lit background.
    RxingGlobal,
    /// rqrr (quirc), with its own row-wise moving-average threshold.
    Rqrr,
}

impl Decoder {
    pub fn name(self) -> &'static str {
        match self {
            Decoder::RxingHybrid => "rxing-hybrid",
            Decoder::RxingGlobal => "rxing-global",
            Decoder::Rqrr => "rqrr",
        }
    }

    /// Decodes every QR code this decoder finds in `gray`, in the order found, with its corners
    /// in `gray`'s pixels.
    pub fn decode(self, gray: &GrayImage) -> Result<Vec<Decoded>, DecoderPanicked> {
        if gray.width() == 0 || gray.height() == 0 {
            return Ok(Vec::new());
        }
        isolated(self, || match self {
            Decoder::RxingHybrid => luma_source(gray).map(|s| rxing_decode(HybridBinarizer::new(s))),
            Decoder::RxingGlobal => luma_source(gray).map(|s| rxing_decode(GlobalHistogramBinarizer::new(s))),
            Decoder::Rqrr => Some(rqrr_decode(gray)),
        })
        .map(Option::unwrap_or_default)
    }
}

impl fmt::Display for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One code a decoder read: its text and, when the decoder's geometry gives a usable one, its
/// outer corners in the pixels of the image the decoder was given.
#[derive(Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    pub corners: Option<Corners>,
}

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text may be a setup-secret label; only `ScanResult`, which knows, may show it.
        f.debug_struct("Decoded")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("corners", &self.corners)
            .finish()
    }
}

/// A decoder panicked on a frame; the frame is treated as holding no code for that decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {decoder} decoder panicked: {message}")]
pub struct DecoderPanicked {
    pub decoder: Decoder,
    pub message: String,
}

/// Runs `work` for `decoder`, turning a panic into an error.
fn isolated<T>(decoder: Decoder, work: impl FnOnce() -> T) -> Result<T, DecoderPanicked> {
    // The decoders only read the frame and own everything else they touch, so nothing
    // observable is left half-updated when they unwind.
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| DecoderPanicked {
        decoder,
        message: payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned()),
    })
}

/// Borrows the frame (no copy per stage). The only error, a buffer that does not match the
/// dimensions, cannot happen for a `GrayImage`.
fn luma_source(gray: &GrayImage) -> Option<Luma8Source<'_>> {
    Luma8Source::new_with_slice(gray.as_raw(), gray.width(), gray.height()).ok()
}

fn rxing_hints() -> DecodeHints {
    DecodeHints {
        PossibleFormats: Some(HashSet::from([BarcodeFormat::QR_CODE])),
        // Try harder scans every row for finder patterns instead of every few: it costs little
        // on camera-sized frames and finds small codes.
        TryHarder: Some(true),
        ..DecodeHints::default()
    }
}

fn rxing_decode<B: Binarizer>(binarizer: B) -> Vec<Decoded> {
    let mut bitmap = BinaryBitmap::new(binarizer);
    let hints = rxing_hints();
    // zxing-cpp's detector first (it finds several codes and copes with perspective), ZXing's
    // original detector as the fallback, as rxing's own MultiFormatReader does.
    let found = QrReader.decode_multiple_with_hints(&mut bitmap, &hints).unwrap_or_default();
    if !found.is_empty() {
        let decoded = |r: &rxing::RXingResult| Decoded {
            text: r.getText().to_owned(),
            corners: locate::from_sampled_grid(r.getPoints()),
        };
        return found.iter().map(decoded).collect();
    }
    zxing_decode(&bitmap, &hints).into_iter().collect()
}

/// ZXing's original detector and decoder: what `rxing::qrcode::QRCodeReader` does for an image
/// that is not a "pure" code, spelled out because the reader's result drops the sampled grid's
/// dimension, which the corners need (see [`locate::from_finder_centres`]).
fn zxing_decode<B: Binarizer>(bitmap: &BinaryBitmap<B>, hints: &DecodeHints) -> Option<Decoded> {
    let detected = Detector::new(bitmap.get_black_matrix()).detect_with_hints(hints).ok()?;
    let decoded = qrcode_decoder::decode_bitmatrix_with_hints(detected.getBits(), hints).ok()?;
    let mut points = detected.getPoints().to_vec();
    // A mirrored code was read transposed: swap the finder centres back, as the reader does.
    if let Some(other) = decoded.getOther()
        && let Some(meta) = other.downcast_ref::<QRCodeDecoderMetaData>()
    {
        meta.applyMirroredCorrection(&mut points);
    }
    let corners = locate::from_finder_centres(&points, detected.getBits().getWidth());
    Some(Decoded { text: decoded.getText().to_owned(), corners })
}

fn rqrr_decode(gray: &GrayImage) -> Vec<Decoded> {
    let mut prepared = rqrr::PreparedImage::prepare(gray.clone());
    prepared.detect_grids().into_iter().filter_map(rqrr_read).collect()
}

fn rqrr_read<G: BitGrid>(grid: rqrr::Grid<G>) -> Option<Decoded> {
    let (_, text) = grid.decode().ok()?;
    let corners = locate::from_rqrr_bounds(&grid.bounds, grid.grid.size());
    Some(Decoded { text, corners })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, imageops};

    /// A code rendered upright at 4 pixels per module, with the corners of its module grid (after
    /// a 4-module quiet zone).
    fn rendered(text: &str) -> (GrayImage, f32, f32) {
        let code = qrcode::QrCode::new(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let side = (code.width() * 4) as f32;
        (code.render::<Luma<u8>>().module_dimensions(4, 4).build(), 16.0, 16.0 + side)
    }

    fn assert_near(found: Option<Corners>, expected: [(f32, f32); 4]) {
        let found = found.unwrap_or_else(|| panic!("no corners"));
        for (p, (x, y)) in found.iter().zip(expected) {
            assert!((p.x - x).abs() < 1.0 && (p.y - y).abs() < 1.0, "{found:?} vs {expected:?}");
        }
    }

    #[test]
    fn scan_zxing_fallback_reports_the_outer_corners_in_code_order() {
        // The fallback only runs when zxing-cpp's detector finds nothing, which no clean
        // rendering provokes: call it directly. Version 7 has an alignment pattern, version 1 none.
        for text in ["KF1:short", &"X".repeat(120)] {
            let (upright, near, far) = rendered(text);
            // A quarter turn clockwise: the code's top-left corner goes to the image's top-right.
            let turned = imageops::rotate90(&upright);
            let width = turned.width() as f32;
            for (image, expected) in [
                (upright, [(near, near), (far, near), (far, far), (near, far)]),
                (turned, [(width - near, near), (width - near, far), (width - far, far), (width - far, near)]),
            ] {
                let source = luma_source(&image).unwrap_or_else(|| panic!("no source"));
                let bitmap = BinaryBitmap::new(HybridBinarizer::new(source));
                let decoded = zxing_decode(&bitmap, &rxing_hints()).unwrap_or_else(|| panic!("not read"));
                assert_eq!(decoded.text, text);
                assert_near(decoded.corners, expected);
            }
        }
    }

    #[test]
    fn scan_decoded_debug_output_hides_the_text() {
        let decoded = Decoded { text: "KF1:secret-bearing".to_owned(), corners: None };
        let shown = format!("{decoded:?}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn scan_a_panicking_decoder_is_an_error_not_a_crash() {
        let outcome: Result<(), _> = isolated(Decoder::Rqrr, || panic!("assertion failed: x <= i32::MAX as f64"));
        let panicked = outcome.err();
        assert_eq!(panicked.as_ref().map(|p| p.decoder), Some(Decoder::Rqrr));
        assert_eq!(panicked.map(|p| p.message).as_deref(), Some("assertion failed: x <= i32::MAX as f64"));
        let formatted: Result<(), _> = isolated(Decoder::RxingHybrid, || panic!("index {} out of range", 41));
        assert_eq!(formatted.err().map(|p| p.message).as_deref(), Some("index 41 out of range"));
    }
}
