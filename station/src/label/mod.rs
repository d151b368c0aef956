//! Device labels: the device's QR code with its name, id, serial number and provisioning date,
//! sized for label printers, as PNG, SVG or PDF (one label per page, or sheets with cut marks).
//!
//! - [`LabelContent`]: what a label holds, and the rule for labels made from the inventory
//!   (identity-mode devices get a full `KF1:` payload, setup-secret devices only their id).
//! - [`LabelSpec`], [`SheetSpec`]: sizes; [`LabelLayout`]: the geometry every format draws.
//! - [`render`], [`render_pdf`], [`render_pdf_sheet`]: the files.
//!
//! ```
//! use keyfill_station::db::devices::Device;
//! use keyfill_station::label::{self, LabelContent, LabelError, LabelFormat, LabelSpec};
//!
//! /// A 50×30 mm label for a 203 dpi printer.
//! fn label_png(device: &Device) -> Result<Vec<u8>, LabelError> {
//!     let content = LabelContent::for_device(device)?;
//!     label::render(&content, &LabelSpec::LABEL_50X30.with_dpi(203), LabelFormat::Png)
//! }
//! ```
//!
//! Nothing here reads a key or a sealed secret; see [`content`] for why that holds by construction.

pub mod content;
mod font;
pub mod layout;
mod pdf;
mod png;
pub mod spec;
mod svg;

pub use content::{LabelContent, QrKind};
pub use layout::{LabelLayout, LineRole, MmRect, QrPlacement, TextLine};
pub use spec::{LabelFormat, LabelSpec, SheetSpec};

use font::LabelFont;
use keyfill_formats::qr::QrError;
use thiserror::Error;

/// Smallest QR module printed: finer than this and handheld scanners start to miss.
pub const MIN_MODULE_MM: f64 = 0.25;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LabelError {
    #[error("invalid label size: {reason}")]
    InvalidSpec { reason: String },
    #[error("cannot tell the label format of {path}: use a .png, .svg or .pdf file name")]
    UnknownFormat { path: String },
    #[error("not a valid Keyfill payload: {source}")]
    InvalidPayload { source: QrError },
    #[error("device {id} cannot be labelled: {reason} (the inventory record is inconsistent)")]
    InconsistentRecord { id: String, reason: &'static str },
    #[error(
        "the QR text ({chars} characters) does not fit a {width_mm} x {height_mm} mm label at {dpi} dpi with modules of at least {MIN_MODULE_MM} mm{}: use a larger label or a higher resolution",
        modules.map(|m| format!(" ({m} modules a side plus the quiet zone)")).unwrap_or_default()
    )]
    PayloadTooLarge { chars: usize, modules: Option<usize>, width_mm: f64, height_mm: f64, dpi: u32 },
    #[error(
        "the label text does not fit a {width_mm} x {height_mm} mm label even at the smallest text size: use a larger label"
    )]
    TextDoesNotFit { width_mm: f64, height_mm: f64 },
    #[error(
        "a {label_width_mm} x {label_height_mm} mm label does not fit on a {sheet_width_mm} x {sheet_height_mm} mm sheet"
    )]
    SheetTooSmall { label_width_mm: f64, label_height_mm: f64, sheet_width_mm: f64, sheet_height_mm: f64 },
    #[error("no labels to render")]
    NoLabels,
    #[error("label font: {reason}")]
    Font { reason: String },
    #[error("cannot encode the PNG: {reason}")]
    Png { reason: String },
}

/// One label as a file of `format` (a one-page PDF for [`LabelFormat::Pdf`]).
pub fn render(content: &LabelContent, spec: &LabelSpec, format: LabelFormat) -> Result<Vec<u8>, LabelError> {
    match format {
        LabelFormat::Png => render_png(content, spec),
        LabelFormat::Svg => render_svg(content, spec).map(String::into_bytes),
        LabelFormat::Pdf => render_pdf(std::slice::from_ref(content), spec),
    }
}

/// The label as a 1-bit PNG of exactly [`LabelSpec::pixel_size`] dots, recording its dpi.
pub fn render_png(content: &LabelContent, spec: &LabelSpec) -> Result<Vec<u8>, LabelError> {
    let font = LabelFont::load()?;
    png::render(&LabelLayout::with_font(content, spec, &font)?, &font)
}

/// The label as an SVG document `width_mm` × `height_mm` millimetres.
pub fn render_svg(content: &LabelContent, spec: &LabelSpec) -> Result<String, LabelError> {
    let font = LabelFont::load()?;
    let layout = LabelLayout::with_font(content, spec, &font)?;
    Ok(svg::render(&layout, &font.displayable(&format!("Keyfill label: {}", content.name()))))
}

/// A PDF with one page per label, each page exactly the label's size: for label printers.
pub fn render_pdf(contents: &[LabelContent], spec: &LabelSpec) -> Result<Vec<u8>, LabelError> {
    let font = LabelFont::load()?;
    let layouts = layouts(contents, spec, &font)?;
    pdf::render(&pdf::label_pages(&layouts), &font)
}

/// A PDF of `sheet`-sized pages, each holding a grid of labels with cut marks: for office
/// printers. Holds [`SheetSpec::labels_per_sheet`] labels a page.
pub fn render_pdf_sheet(contents: &[LabelContent], spec: &LabelSpec, sheet: &SheetSpec) -> Result<Vec<u8>, LabelError> {
    spec.validate()?;
    if sheet.labels_per_sheet(spec) == 0 {
        return Err(LabelError::SheetTooSmall {
            label_width_mm: spec.width_mm,
            label_height_mm: spec.height_mm,
            sheet_width_mm: sheet.width_mm,
            sheet_height_mm: sheet.height_mm,
        });
    }
    let font = LabelFont::load()?;
    let layouts = layouts(contents, spec, &font)?;
    pdf::render(&pdf::sheet_pages(&layouts, sheet), &font)
}

fn layouts(contents: &[LabelContent], spec: &LabelSpec, font: &LabelFont) -> Result<Vec<LabelLayout>, LabelError> {
    if contents.is_empty() {
        return Err(LabelError::NoLabels);
    }
    contents.iter().map(|content| LabelLayout::with_font(content, spec, font)).collect()
}
