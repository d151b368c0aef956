//! Label geometry, computed once and drawn by every backend: the QR code in printer dots (so its
//! modules land on whole dots, sharp on a thermal head), the text in millimetres.
//!
//! Landscape labels put the code on the left and the text on the right; portrait labels put the
//! code on top. The code is as large as the label's short side allows (at most 60 % of the long
//! side); the text takes what is left, fitted as `fit_text` describes.

use super::content::LabelContent;
use super::font::LabelFont;
use super::spec::LabelSpec;
use super::{LabelError, MIN_MODULE_MM};
use qrcode::{EcLevel, QrCode};

/// Blank border kept around everything: die-cut labels shift by up to a millimetre.
const MARGIN_MM: f64 = 1.5;
/// ISO/IEC 18004 asks for four blank modules around a QR code.
pub const QUIET_ZONE_MODULES: usize = 4;
/// Fewer dots than this per module and a thermal head's dot gain fills the gaps.
const MIN_MODULE_DOTS: u32 = 2;
const QR_MAX_SHARE_OF_LONG_SIDE: f64 = 0.6;
/// Medium error correction (15 %): survives scuffs without making the code much denser.
const EC_LEVEL: EcLevel = EcLevel::M;

/// Body text em size range, in millimetres (1.4 mm is about 4 pt, still legible at 203 dpi).
const BODY_MAX_MM: f64 = 5.0;
const BODY_MIN_MM: f64 = 1.4;
const BODY_STEP_MM: f64 = 0.05;
/// The name is drawn up to this much larger than the body text (and never smaller).
const NAME_MAX_RATIO: f64 = 1.4;
/// Line pitch as a multiple of the em size.
const LINE_PITCH_EM: f64 = 1.2;
/// Extra space below the name, as a multiple of the body size.
const NAME_GAP_EM: f64 = 0.3;
/// Hex digits per group of the device id.
const ID_GROUP: usize = 4;
/// A name or serial number takes at most two lines; beyond that it is shortened.
const MAX_FIELD_LINES: usize = 2;

/// A rectangle in millimetres from the label's top-left corner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MmRect {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// The QR code's place on the label, in printer dots.
#[derive(Debug, Clone, PartialEq)]
pub struct QrPlacement {
    /// Top-left corner of the quiet zone.
    pub x_dots: u32,
    pub y_dots: u32,
    pub module_dots: u32,
    /// Modules per side of the code itself, without the quiet zone.
    pub modules: usize,
    dark: Vec<bool>,
}

impl QrPlacement {
    /// Whether the module at (`column`, `row`) of the code (quiet zone excluded) is dark.
    pub fn is_dark(&self, column: usize, row: usize) -> bool {
        column < self.modules && row < self.modules && self.dark[row * self.modules + column]
    }

    /// Side of the code with its quiet zone, in dots.
    pub fn side_dots(&self) -> u32 {
        self.module_dots * (self.modules + 2 * QUIET_ZONE_MODULES) as u32
    }

    /// Horizontal runs of dark modules as (row, first column, length), the code's origin at the
    /// top-left module: vector backends draw one rectangle per run instead of per module.
    pub fn dark_runs(&self) -> Vec<(usize, usize, usize)> {
        let mut runs = Vec::new();
        for row in 0..self.modules {
            let mut column = 0;
            while column < self.modules {
                if self.is_dark(column, row) {
                    let start = column;
                    while column < self.modules && self.is_dark(column, row) {
                        column += 1;
                    }
                    runs.push((row, start, column - start));
                } else {
                    column += 1;
                }
            }
        }
        runs
    }
}

/// What a text line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineRole {
    Name,
    DeviceId,
    SerialNumber,
    ProvisionedDate,
}

/// One line of text, already fitted: `text` holds only characters the font draws.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub role: LineRole,
    pub text: String,
    pub x_mm: f64,
    pub baseline_mm: f64,
    /// Em size.
    pub size_mm: f64,
    /// Advance width of the whole line (monospace: characters × advance).
    pub width_mm: f64,
}

/// A label laid out for one [`LabelSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct LabelLayout {
    pub spec: LabelSpec,
    pub width_px: u32,
    pub height_px: u32,
    pub qr: QrPlacement,
    /// Where the text may go; every line lies inside it.
    pub text_area: MmRect,
    pub lines: Vec<TextLine>,
}

impl LabelLayout {
    pub fn new(content: &LabelContent, spec: &LabelSpec) -> Result<Self, LabelError> {
        let font = LabelFont::load()?;
        Self::with_font(content, spec, &font)
    }

    pub(crate) fn with_font(content: &LabelContent, spec: &LabelSpec, font: &LabelFont) -> Result<Self, LabelError> {
        spec.validate()?;
        let (width_px, height_px) = spec.pixel_size();
        let dots_per_mm = spec.dots_per_mm();
        let mm = |dots: u32| f64::from(dots) / dots_per_mm;
        let landscape = spec.width_mm >= spec.height_mm;
        let margin_px = (MARGIN_MM * dots_per_mm).round() as u32;
        let (short_px, long_px) = if landscape { (height_px, width_px) } else { (width_px, height_px) };
        let available =
            short_px.saturating_sub(2 * margin_px).min((f64::from(long_px) * QR_MAX_SHARE_OF_LONG_SIDE).floor() as u32);
        let qr = place_qr(content.qr_text(), spec, available)?;
        let side = qr.side_dots();
        let (qr, text_area) = if landscape {
            let qr = QrPlacement { x_dots: margin_px, y_dots: (height_px - side) / 2, ..qr };
            let x = mm(qr.x_dots + side);
            let area = MmRect {
                x,
                y: MARGIN_MM,
                width: spec.width_mm - MARGIN_MM - x,
                height: spec.height_mm - 2.0 * MARGIN_MM,
            };
            (qr, area)
        } else {
            let qr = QrPlacement { x_dots: (width_px - side) / 2, y_dots: margin_px, ..qr };
            let y = mm(qr.y_dots + side);
            let area = MmRect {
                x: MARGIN_MM,
                y,
                width: spec.width_mm - 2.0 * MARGIN_MM,
                height: spec.height_mm - MARGIN_MM - y,
            };
            (qr, area)
        };
        let lines = fit_text(font, content, text_area)
            .ok_or(LabelError::TextDoesNotFit { width_mm: spec.width_mm, height_mm: spec.height_mm })?;
        Ok(LabelLayout { spec: *spec, width_px, height_px, qr, text_area, lines })
    }

    /// Millimetres per printer dot.
    pub fn mm_per_dot(&self) -> f64 {
        1.0 / self.spec.dots_per_mm()
    }
}

/// Encodes `text` and picks the largest whole number of dots per module that fits `available`.
fn place_qr(text: &str, spec: &LabelSpec, available_dots: u32) -> Result<QrPlacement, LabelError> {
    let min_module_dots = MIN_MODULE_DOTS.max((MIN_MODULE_MM * spec.dots_per_mm() - 1e-9).ceil() as u32);
    let too_large = |modules: Option<usize>| LabelError::PayloadTooLarge {
        chars: text.len(),
        modules,
        width_mm: spec.width_mm,
        height_mm: spec.height_mm,
        dpi: spec.dpi,
    };
    let code = QrCode::with_error_correction_level(text.as_bytes(), EC_LEVEL).map_err(|_| too_large(None))?;
    let modules = code.width();
    let module_dots = available_dots / (modules + 2 * QUIET_ZONE_MODULES) as u32;
    if module_dots < min_module_dots {
        return Err(too_large(Some(modules)));
    }
    let dark = code.to_colors().into_iter().map(|color| color == qrcode::Color::Dark).collect();
    Ok(QrPlacement { x_dots: 0, y_dots: 0, module_dots, modules, dark })
}

/// Lays out the text lines inside `area`, or `None` if they do not fit even at the smallest size.
///
/// Deterministic: the body size (device id and date) goes down from [`BODY_MAX_MM`] in fixed
/// steps and the first size at which every line fits wins. The id wraps by groups of four digits
/// (8, 4, 2 or 1 groups a line, so lines stay even). The name is never smaller than the body: it
/// takes one line, or two, up to [`NAME_MAX_RATIO`] times the body size. The serial number is never
/// larger than the body: one line, down to the smallest size, then two. Only when that is not
/// enough at the smallest size are the name and serial number shortened, in the middle (device
/// names often differ only at the end, serial numbers at either end).
pub(crate) fn fit_text(font: &LabelFont, content: &LabelContent, area: MmRect) -> Option<Vec<TextLine>> {
    let name = font.displayable(content.name());
    let id_hex = content.device_id().to_hex();
    let groups: Vec<&str> = (0..id_hex.len()).step_by(ID_GROUP).map(|i| &id_hex[i..i + ID_GROUP]).collect();
    let serial = font.displayable(&format!("S/N {}", content.serial_number()));
    let date = content.provisioned_date();
    let ellipsis = if font.has('…') { "…" } else { "..." };
    let steps = ((BODY_MAX_MM - BODY_MIN_MM) / BODY_STEP_MM).round() as usize;
    (0..=steps).find_map(|step| {
        let body = BODY_MAX_MM - step as f64 * BODY_STEP_MM;
        let smallest = step == steps;
        let per_line = chars_fitting(area.width, body, font);
        let groups_per_line = [8, 4, 2, 1].into_iter().find(|&g| g * (ID_GROUP + 1) - 1 <= per_line)?;
        if date.as_ref().is_some_and(|date| date.chars().count() > per_line) {
            return None;
        }
        let field = |text: &str, max_size: f64, min_size: f64| {
            FieldFit { width: area.width, max_size, min_size, max_lines: MAX_FIELD_LINES, font, ellipsis }.fit(text)
        };
        let name = field(&name, body * NAME_MAX_RATIO, body);
        // A name shortened at a size above the smallest would rather shrink with the body.
        if name.shortened && !smallest {
            return None;
        }
        let serial = field(&serial, body, BODY_MIN_MM);
        let mut blocks: Vec<(LineRole, Vec<String>, f64)> = vec![
            (LineRole::Name, name.lines, name.size),
            (LineRole::DeviceId, groups.chunks(groups_per_line).map(|chunk| chunk.join(" ")).collect(), body),
            (LineRole::SerialNumber, serial.lines, serial.size),
        ];
        if let Some(date) = &date {
            blocks.push((LineRole::ProvisionedDate, vec![date.clone()], body));
        }
        let text_height: f64 = blocks.iter().map(|(_, lines, size)| lines.len() as f64 * size * LINE_PITCH_EM).sum();
        let height = text_height + body * NAME_GAP_EM;
        if height > area.height {
            return None;
        }
        // Centre the block vertically; each baseline sits in its line box like the font's own.
        let gap = (LINE_PITCH_EM - font.ascent_em - font.descent_em).max(0.0) / 2.0;
        let mut top = area.y + (area.height - height) / 2.0;
        let mut placed = Vec::new();
        for (role, lines, size) in blocks {
            for text in lines {
                let width_mm = text.chars().count() as f64 * size * font.advance_em;
                let baseline_mm = top + (gap + font.ascent_em) * size;
                placed.push(TextLine { role, text, x_mm: area.x, baseline_mm, size_mm: size, width_mm });
                top += size * LINE_PITCH_EM;
            }
            if role == LineRole::Name {
                top += body * NAME_GAP_EM;
            }
        }
        Some(placed)
    })
}

/// How a free-text field (name, serial number) may be fitted to the text width.
struct FieldFit<'a> {
    width: f64,
    max_size: f64,
    min_size: f64,
    max_lines: usize,
    font: &'a LabelFont,
    ellipsis: &'a str,
}

#[derive(Debug)]
struct FittedField {
    lines: Vec<String>,
    size: f64,
    shortened: bool,
}

impl FieldFit<'_> {
    /// The fewest lines (one, then two) at which `text` reaches `min_size`, as large as that
    /// allows up to `max_size`; failing that, shortened to `max_lines` lines at `min_size`.
    fn fit(&self, text: &str) -> FittedField {
        let size_for = |longest: usize| self.width / (longest.max(1) as f64 * self.font.advance_em);
        let chars = text.chars().count();
        let mut candidates = vec![vec![text.to_owned()]];
        if self.max_lines >= 2 && chars > 1 {
            let (first, second) = split_in_two(text);
            candidates.push(vec![first, second]);
        }
        for lines in candidates {
            let longest = lines.iter().map(|line| line.chars().count()).max().unwrap_or(0);
            let size = size_for(longest).min(self.max_size);
            if size >= self.min_size {
                return FittedField { lines, size, shortened: false };
            }
        }
        let per_line = chars_fitting(self.width, self.min_size, self.font).max(1);
        let shortened = ellipsize_middle(text, per_line * self.max_lines, self.ellipsis);
        FittedField { lines: split_chars(&shortened, per_line), size: self.min_size, shortened: true }
    }
}

/// Two lines of nearly equal length, broken after a separator (`-`, `_`, `/`, `.`, `:`, space)
/// when one lies near the middle, else between characters.
fn split_in_two(text: &str) -> (String, String) {
    let chars: Vec<char> = text.chars().collect();
    let balanced = chars.len().div_ceil(2);
    // A separator break may make the longer line up to a quarter longer than an even split.
    let tolerance = balanced.div_ceil(4);
    let at = (1..chars.len())
        .filter(|&at| matches!(chars[at - 1], '-' | '_' | '/' | '.' | ':' | ' '))
        .map(|at| (at.max(chars.len() - at), at))
        .filter(|(longest, _)| *longest <= balanced + tolerance)
        .min()
        .map_or(balanced, |(_, at)| at);
    (chars[..at].iter().collect(), chars[at..].iter().collect())
}

fn chars_fitting(width_mm: f64, size_mm: f64, font: &LabelFont) -> usize {
    (width_mm / (size_mm * font.advance_em) + 1e-9).floor() as usize
}

/// Splits into lines of at most `per_line` characters.
fn split_chars(text: &str, per_line: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(per_line.max(1)).map(|chunk| chunk.iter().collect()).collect()
}

/// Shortens `text` to at most `max_chars` characters by replacing its middle with `ellipsis`.
pub(crate) fn ellipsize_middle(text: &str, max_chars: usize, ellipsis: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= max_chars {
        return text.to_owned();
    }
    let kept = max_chars.saturating_sub(ellipsis.chars().count());
    if kept == 0 {
        return chars[..max_chars].iter().collect();
    }
    let head = kept.div_ceil(2);
    let tail = kept - head;
    let mut out: String = chars[..head].iter().collect();
    out.push_str(ellipsis);
    out.extend(&chars[chars.len() - tail..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};

    fn content(name: &str, serial: &str) -> LabelContent {
        let payload = OnboardingPayload::new(
            name.parse().expect("a valid name"),
            serial,
            DeviceCredential::Identity { public_key: [3; 32] },
        );
        LabelContent::from_scanned(&payload).expect("content").with_provisioned_at(Some(1_738_332_000_000))
    }

    fn assert_inside(layout: &LabelLayout) {
        let area = layout.text_area;
        for line in &layout.lines {
            assert!(line.x_mm >= area.x - 1e-9 && line.x_mm + line.width_mm <= area.x + area.width + 1e-9, "{line:?}");
            assert!(line.baseline_mm > area.y && line.baseline_mm < area.y + area.height, "{line:?}");
        }
    }

    #[test]
    fn label_split_in_two_prefers_separators_near_the_middle() {
        let split = |text: &str| {
            let (first, second) = split_in_two(text);
            (first, second)
        };
        assert_eq!(split("warehouse-3-freezer-sensor-0042"), ("warehouse-3-".into(), "freezer-sensor-0042".into()));
        assert_eq!(split("abcdefgh"), ("abcd".into(), "efgh".into()));
        // The only separator is too far from the middle: an even split.
        assert_eq!(split("a-bcdefghijkl"), ("a-bcdef".into(), "ghijkl".into()));
    }

    #[test]
    fn label_ellipsize_middle_keeps_both_ends() {
        assert_eq!(ellipsize_middle("building-7-sensor-0042", 9, "…"), "buil…0042");
        assert_eq!(ellipsize_middle("short", 9, "…"), "short");
        assert_eq!(ellipsize_middle("abcdef", 2, "..."), "ab");
    }

    #[test]
    fn label_layout_presets_fit_with_whole_dot_modules() {
        for spec in [LabelSpec::LABEL_50X30, LabelSpec::LABEL_62X29, LabelSpec::LABEL_100X50] {
            for dpi in [203, 300, 600] {
                let layout =
                    LabelLayout::new(&content("sensor-0042", "SN-DEMO-0001"), &spec.with_dpi(dpi)).expect("layout");
                assert!(layout.qr.module_dots >= 2);
                assert!(layout.qr.x_dots + layout.qr.side_dots() <= layout.width_px);
                assert!(layout.qr.y_dots + layout.qr.side_dots() <= layout.height_px);
                let id: String = layout
                    .lines
                    .iter()
                    .filter(|l| l.role == LineRole::DeviceId)
                    .map(|l| l.text.replace(' ', ""))
                    .collect();
                assert_eq!(id, keyfill_formats::DeviceId::from_name("sensor-0042").to_hex());
                assert_inside(&layout);
            }
        }
    }

    #[test]
    fn label_long_name_and_serial_are_fitted() {
        let name = "plant-a-line-3-station-12-temperature-and-humidity-sensor-0042";
        let serial = "SERIAL-0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZ-0123456789-abcdef";
        let layout = LabelLayout::new(&content(name, serial), &LabelSpec::LABEL_50X30).expect("layout");
        assert_inside(&layout);
        let name: String = layout.lines.iter().filter(|l| l.role == LineRole::Name).map(|l| l.text.as_str()).collect();
        assert!(name.starts_with("plant-a-") && name.ends_with("0042") && name.contains('…'), "{name}");
        // Never smaller than the body text.
        let body = layout.lines.iter().find(|l| l.role == LineRole::DeviceId).expect("id line").size_mm;
        assert!(layout.lines.iter().filter(|l| l.role == LineRole::Name).all(|l| l.size_mm >= body));
    }

    #[test]
    fn label_portrait_puts_code_on_top() {
        let spec = LabelSpec { width_mm: 30.0, height_mm: 50.0, dpi: 300 };
        let layout = LabelLayout::new(&content("sensor-0042", "SN-1"), &spec).expect("layout");
        assert!(layout.text_area.y * spec.dots_per_mm() >= f64::from(layout.qr.y_dots + layout.qr.side_dots()) - 1e-6);
        assert_inside(&layout);
    }

    #[test]
    fn label_payload_too_large_is_an_error() {
        let name = "n".repeat(255);
        let serial = "S".repeat(64);
        let tiny = LabelSpec { width_mm: 20.0, height_mm: 12.0, dpi: 203 };
        assert!(matches!(LabelLayout::new(&content(&name, &serial), &tiny), Err(LabelError::PayloadTooLarge { .. })));
    }
}
