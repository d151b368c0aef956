//! PNG: a 1-bit raster at the printer's resolution, which it records (pHYs) so that "print at
//! 100 %" gives the label's size. Black and white only: a label printer would dither grey edges.

use super::LabelError;
use super::font::LabelFont;
use super::layout::{LabelLayout, QUIET_ZONE_MODULES};
use ab_glyph::{Font, PxScale, point};

/// Glyph coverage from which a dot is printed; a little under half keeps thin strokes at 203 dpi.
const INK_THRESHOLD: f32 = 0.45;

/// Dots of one label, `true` for black.
#[derive(Debug)]
struct Bitmap {
    width: u32,
    height: u32,
    dots: Vec<bool>,
}

impl Bitmap {
    fn new(width: u32, height: u32) -> Self {
        Bitmap { width, height, dots: vec![false; width as usize * height as usize] }
    }

    fn set(&mut self, x: i64, y: i64) {
        if (0..i64::from(self.width)).contains(&x) && (0..i64::from(self.height)).contains(&y) {
            self.dots[y as usize * self.width as usize + x as usize] = true;
        }
    }

    fn fill(&mut self, x: u32, y: u32, width: u32, height: u32) {
        for row in y..y + height {
            for column in x..x + width {
                self.set(i64::from(column), i64::from(row));
            }
        }
    }

    /// Rows packed 8 dots a byte, most significant first; 1 is white in a greyscale PNG.
    fn packed_rows(&self) -> Vec<u8> {
        let stride = self.width.div_ceil(8) as usize;
        let mut data = vec![0xFF; stride * self.height as usize];
        for (index, _) in self.dots.iter().enumerate().filter(|(_, dark)| **dark) {
            let (x, y) = (index % self.width as usize, index / self.width as usize);
            data[y * stride + x / 8] &= !(0x80 >> (x % 8));
        }
        data
    }
}

pub(crate) fn render(layout: &LabelLayout, font: &LabelFont) -> Result<Vec<u8>, LabelError> {
    let mut bitmap = Bitmap::new(layout.width_px, layout.height_px);
    draw_qr(&mut bitmap, layout);
    draw_text(&mut bitmap, layout, font);
    encode(&bitmap, layout.spec.dpi)
}

fn draw_qr(bitmap: &mut Bitmap, layout: &LabelLayout) {
    let qr = &layout.qr;
    let origin = |position: u32| position + QUIET_ZONE_MODULES as u32 * qr.module_dots;
    let (x0, y0) = (origin(qr.x_dots), origin(qr.y_dots));
    for (row, column, run) in qr.dark_runs() {
        let x = x0 + column as u32 * qr.module_dots;
        let y = y0 + row as u32 * qr.module_dots;
        bitmap.fill(x, y, run as u32 * qr.module_dots, qr.module_dots);
    }
}

fn draw_text(bitmap: &mut Bitmap, layout: &LabelLayout, font: &LabelFont) {
    let dots_per_mm = 1.0 / layout.mm_per_dot();
    for line in &layout.lines {
        let em_dots = line.size_mm * dots_per_mm;
        // ab_glyph scales by the font's height (ascent - descent), not by the em.
        let scale = (em_dots * f64::from(font.face.height_unscaled()) / f64::from(font.units_per_em)) as f32;
        let advance = font.advance_em * em_dots;
        let baseline = (line.baseline_mm * dots_per_mm) as f32;
        for (index, c) in line.text.chars().enumerate() {
            let x = (line.x_mm * dots_per_mm + index as f64 * advance) as f32;
            let glyph = font.glyph(c).with_scale_and_position(PxScale::from(scale), point(x, baseline));
            let Some(outline) = font.face.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                if coverage >= INK_THRESHOLD {
                    bitmap.set(bounds.min.x as i64 + i64::from(gx), bounds.min.y as i64 + i64::from(gy));
                }
            });
        }
    }
}

fn encode(bitmap: &Bitmap, dpi: u32) -> Result<Vec<u8>, LabelError> {
    let png_error = |e: png::EncodingError| LabelError::Png { reason: e.to_string() };
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, bitmap.width, bitmap.height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let dots_per_metre = (f64::from(dpi) / 0.0254).round() as u32;
    encoder.set_pixel_dims(Some(png::PixelDimensions {
        xppu: dots_per_metre,
        yppu: dots_per_metre,
        unit: png::Unit::Meter,
    }));
    let mut writer = encoder.write_header().map_err(png_error)?;
    writer.write_image_data(&bitmap.packed_rows()).map_err(png_error)?;
    writer.finish().map_err(png_error)?;
    Ok(out)
}
