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

use image::GrayImage;
use rxing::common::{GlobalHistogramBinarizer, HybridBinarizer};
use rxing::multi::MultipleBarcodeReader;
use rxing::qrcode::QRCodeReader;
use rxing::qrcode::cpp_port::QrReader;
use rxing::{BarcodeFormat, Binarizer, BinaryBitmap, DecodeHints, Luma8Source, Reader};
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

    /// Decodes every QR code this decoder finds in `gray`, in the order found.
    pub fn decode(self, gray: &GrayImage) -> Result<Vec<String>, DecoderPanicked> {
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

fn rxing_decode<B: Binarizer>(binarizer: B) -> Vec<String> {
    let mut bitmap = BinaryBitmap::new(binarizer);
    let hints = rxing_hints();
    // zxing-cpp's detector first (it finds several codes and copes with perspective), ZXing's
    // original detector as the fallback, as rxing's own MultiFormatReader does.
    let found = QrReader.decode_multiple_with_hints(&mut bitmap, &hints).unwrap_or_default();
    if !found.is_empty() {
        return found.iter().map(|r| r.getText().to_owned()).collect();
    }
    QRCodeReader.decode_with_hints(&mut bitmap, &hints).map(|r| vec![r.getText().to_owned()]).unwrap_or_default()
}

fn rqrr_decode(gray: &GrayImage) -> Vec<String> {
    let mut prepared = rqrr::PreparedImage::prepare(gray.clone());
    prepared.detect_grids().into_iter().filter_map(|grid| grid.decode().ok().map(|(_, text)| text)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
