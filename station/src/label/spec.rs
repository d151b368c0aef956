//! Label and sheet sizes, and output formats.

use super::LabelError;
use std::path::Path;
use std::str::FromStr;

pub(crate) const MM_PER_INCH: f64 = 25.4;
pub(crate) const PT_PER_MM: f64 = 72.0 / MM_PER_INCH;

const MIN_SIDE_MM: f64 = 10.0;
const MAX_SIDE_MM: f64 = 300.0;
const MIN_DPI: u32 = 96;
const MAX_DPI: u32 = 1200;

/// One label's physical size and the printer's resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelSpec {
    pub width_mm: f64,
    pub height_mm: f64,
    /// Dots per inch of the printer: the PNG is rendered at this resolution, and the QR modules
    /// are a whole number of these dots in every format.
    pub dpi: u32,
}

impl LabelSpec {
    /// 50 × 30 mm at 300 dpi, the default: a common die-cut thermal label.
    pub const LABEL_50X30: LabelSpec = LabelSpec { width_mm: 50.0, height_mm: 30.0, dpi: 300 };
    /// 62 × 29 mm at 300 dpi, like Brother's DK-11209 address labels.
    pub const LABEL_62X29: LabelSpec = LabelSpec { width_mm: 62.0, height_mm: 29.0, dpi: 300 };
    /// 100 × 50 mm at 300 dpi, a large shipping-style label.
    pub const LABEL_100X50: LabelSpec = LabelSpec { width_mm: 100.0, height_mm: 50.0, dpi: 300 };

    /// The same size at another resolution (203 dpi for most entry-level thermal printers).
    pub fn with_dpi(self, dpi: u32) -> Self {
        LabelSpec { dpi, ..self }
    }

    /// Rejects sizes and resolutions no label printer has.
    pub fn validate(&self) -> Result<(), LabelError> {
        let sides_ok = [self.width_mm, self.height_mm].iter().all(|side| (MIN_SIDE_MM..=MAX_SIDE_MM).contains(side));
        if !sides_ok {
            return Err(LabelError::InvalidSpec {
                reason: format!(
                    "label sides must be {MIN_SIDE_MM}..={MAX_SIDE_MM} mm, not {} x {} mm",
                    self.width_mm, self.height_mm
                ),
            });
        }
        if !(MIN_DPI..=MAX_DPI).contains(&self.dpi) {
            return Err(LabelError::InvalidSpec {
                reason: format!("resolution must be {MIN_DPI}..={MAX_DPI} dpi, not {}", self.dpi),
            });
        }
        Ok(())
    }

    pub(crate) fn dots_per_mm(&self) -> f64 {
        f64::from(self.dpi) / MM_PER_INCH
    }

    /// Raster size: each side rounded to the nearest whole dot (50 mm at 300 dpi is 590.55 dots,
    /// so 591; 30 mm is 354.33, so 354).
    pub fn pixel_size(&self) -> (u32, u32) {
        let dots = |mm: f64| (mm * self.dots_per_mm()).round() as u32;
        (dots(self.width_mm), dots(self.height_mm))
    }
}

impl Default for LabelSpec {
    fn default() -> Self {
        LabelSpec::LABEL_50X30
    }
}

/// Parses `WIDTHxHEIGHT` in millimetres (`50x30`, `62x29`, `100x50`, `57.5x32`) at 300 dpi.
impl FromStr for LabelSpec {
    type Err = LabelError;

    fn from_str(text: &str) -> Result<Self, LabelError> {
        let invalid = || LabelError::InvalidSpec {
            reason: format!("{text:?} is not a label size: write WIDTHxHEIGHT in millimetres, e.g. 50x30"),
        };
        let (width, height) = text.trim().split_once(['x', 'X', '×']).ok_or_else(invalid)?;
        let parse = |side: &str| side.trim().trim_end_matches("mm").parse::<f64>().map_err(|_| invalid());
        let spec = LabelSpec { width_mm: parse(width)?, height_mm: parse(height)?, dpi: LabelSpec::default().dpi };
        spec.validate()?;
        Ok(spec)
    }
}

/// A sheet of labels for an office printer: labels in a grid, with cut marks in the gutters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SheetSpec {
    pub width_mm: f64,
    pub height_mm: f64,
    /// Unprinted border; office printers cannot print the last few millimetres.
    pub margin_mm: f64,
    /// Space between labels, wide enough for the cut marks of both neighbours.
    pub gutter_mm: f64,
}

impl SheetSpec {
    pub const A4: SheetSpec = SheetSpec { width_mm: 210.0, height_mm: 297.0, margin_mm: 10.0, gutter_mm: 6.0 };
    pub const LETTER: SheetSpec = SheetSpec { width_mm: 215.9, height_mm: 279.4, margin_mm: 10.0, gutter_mm: 6.0 };

    /// Columns and rows of `label`s that fit on one sheet (0 if none does).
    pub fn grid(&self, label: &LabelSpec) -> (usize, usize) {
        let fit = |sheet: f64, side: f64| {
            let usable = sheet - 2.0 * self.margin_mm + self.gutter_mm;
            if usable <= 0.0 { 0 } else { (usable / (side + self.gutter_mm) + 1e-9).floor() as usize }
        };
        (fit(self.width_mm, label.width_mm), fit(self.height_mm, label.height_mm))
    }

    /// Top-left corners (mm from the sheet's top-left) of one sheet's labels, row by row, the
    /// grid centred on the sheet.
    pub fn positions(&self, label: &LabelSpec) -> Vec<(f64, f64)> {
        let (columns, rows) = self.grid(label);
        let extent = |count: usize, side: f64| count as f64 * side + count.saturating_sub(1) as f64 * self.gutter_mm;
        let left = (self.width_mm - extent(columns, label.width_mm)) / 2.0;
        let top = (self.height_mm - extent(rows, label.height_mm)) / 2.0;
        (0..rows)
            .flat_map(|row| (0..columns).map(move |column| (column, row)))
            .map(|(column, row)| {
                (
                    left + column as f64 * (label.width_mm + self.gutter_mm),
                    top + row as f64 * (label.height_mm + self.gutter_mm),
                )
            })
            .collect()
    }

    /// How many labels one sheet holds.
    pub fn labels_per_sheet(&self, label: &LabelSpec) -> usize {
        let (columns, rows) = self.grid(label);
        columns * rows
    }
}

/// Output format of a label file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LabelFormat {
    /// 1-bit raster at the printer's resolution, with the resolution recorded (pHYs).
    Png,
    /// Vector, sized in millimetres.
    Svg,
    /// Vector, one label per page sized in points (or sheets of labels).
    Pdf,
}

impl LabelFormat {
    /// The format named by a file's extension (`.png`, `.svg`, `.pdf`, any case).
    pub fn from_path(path: &Path) -> Result<Self, LabelError> {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("png") => Ok(LabelFormat::Png),
            Some("svg") => Ok(LabelFormat::Svg),
            Some("pdf") => Ok(LabelFormat::Pdf),
            _ => Err(LabelError::UnknownFormat { path: path.display().to_string() }),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            LabelFormat::Png => "png",
            LabelFormat::Svg => "svg",
            LabelFormat::Pdf => "pdf",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_pixel_size_rounds_to_nearest_dot() {
        assert_eq!(LabelSpec::LABEL_50X30.pixel_size(), (591, 354));
        assert_eq!(LabelSpec::LABEL_50X30.with_dpi(203).pixel_size(), (400, 240));
        assert_eq!(LabelSpec::LABEL_62X29.pixel_size(), (732, 343));
    }

    #[test]
    fn label_size_parses_and_validates() {
        let spec: LabelSpec = "62x29".parse().expect("size");
        assert_eq!((spec.width_mm, spec.height_mm, spec.dpi), (62.0, 29.0, 300));
        assert_eq!("57.5 x 32mm".parse::<LabelSpec>().expect("size").width_mm, 57.5);
        assert!("50".parse::<LabelSpec>().is_err());
        assert!("5x3".parse::<LabelSpec>().is_err());
        assert!(LabelSpec::LABEL_50X30.with_dpi(20).validate().is_err());
    }

    #[test]
    fn label_sheet_grid_a4() {
        // (190 + 6) / 56 = 3.5 columns, (277 + 6) / 36 = 7.86 rows.
        assert_eq!(SheetSpec::A4.grid(&LabelSpec::LABEL_50X30), (3, 7));
        assert_eq!(SheetSpec::A4.grid(&LabelSpec::LABEL_100X50), (1, 5));
        let huge = LabelSpec { width_mm: 250.0, height_mm: 30.0, dpi: 300 };
        assert_eq!(SheetSpec::A4.labels_per_sheet(&huge), 0);
        let positions = SheetSpec::A4.positions(&LabelSpec::LABEL_50X30);
        assert_eq!(positions.len(), 21);
        // 3 x 50 + 2 x 6 = 162 mm wide, centred: 24 mm from each side; 7 x 30 + 6 x 6 = 246 mm high.
        assert_eq!(positions[0], (24.0, 25.5));
        assert_eq!(positions[4], (24.0 + 56.0, 25.5 + 36.0));
    }

    #[test]
    fn label_format_from_extension() {
        assert_eq!(LabelFormat::from_path(Path::new("a/b.PNG")).expect("png"), LabelFormat::Png);
        assert_eq!(LabelFormat::from_path(Path::new("b.pdf")).expect("pdf"), LabelFormat::Pdf);
        assert!(LabelFormat::from_path(Path::new("b.jpg")).is_err());
        assert!(LabelFormat::from_path(Path::new("b")).is_err());
    }
}
