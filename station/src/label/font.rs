//! The one label font: Hack Regular, taken from `epaint_default_fonts` (eframe's bundled fonts,
//! MIT + Bitstream Vera licence, which allow embedding). Monospace on purpose: every glyph has the
//! same advance, so text fitting is plain arithmetic shared by the PNG, SVG and PDF backends,
//! hex ids line up, and the SVG's generic `monospace` fallback keeps nearly the same widths.

use super::LabelError;
use ab_glyph::{Font, FontRef, GlyphId};

/// The font file, embedded whole (unmodified) in PDFs.
pub(crate) const FONT_BYTES: &[u8] = epaint_default_fonts::HACK_REGULAR;
/// PostScript name of the embedded font.
pub(crate) const POSTSCRIPT_NAME: &[u8] = b"Hack-Regular";
/// Shown instead of a character the font lacks (or a control character).
const REPLACEMENT: char = '?';

/// The font with the metrics the layout needs, as fractions of the em size.
#[derive(Debug)]
pub(crate) struct LabelFont {
    pub(crate) face: FontRef<'static>,
    pub(crate) units_per_em: f32,
    /// Horizontal advance of every glyph.
    pub(crate) advance_em: f64,
    /// Baseline to the top of the tallest glyphs.
    pub(crate) ascent_em: f64,
    /// Baseline to the bottom of descenders (positive).
    pub(crate) descent_em: f64,
}

impl LabelFont {
    pub(crate) fn load() -> Result<Self, LabelError> {
        let face = FontRef::try_from_slice(FONT_BYTES)
            .map_err(|_| LabelError::Font { reason: "the bundled font does not parse".into() })?;
        let units_per_em = face.units_per_em().ok_or_else(|| LabelError::Font { reason: "no units per em".into() })?;
        let zero = face.glyph_id('0');
        if zero.0 == 0 {
            return Err(LabelError::Font { reason: "the bundled font has no digits".into() });
        }
        let em = f64::from(units_per_em);
        Ok(LabelFont {
            advance_em: f64::from(face.h_advance_unscaled(zero)) / em,
            ascent_em: f64::from(face.ascent_unscaled()) / em,
            descent_em: -f64::from(face.descent_unscaled()) / em,
            units_per_em,
            face,
        })
    }

    /// The glyph drawn for `c`, if the font has it at the common monospace advance.
    fn monospace_glyph(&self, c: char) -> Option<GlyphId> {
        if c.is_control() {
            return None;
        }
        let id = self.face.glyph_id(c);
        let advance = f64::from(self.face.h_advance_unscaled(id)) / f64::from(self.units_per_em);
        // Zero-width marks and the odd wide glyph would break the width arithmetic.
        (id.0 != 0 && (advance - self.advance_em).abs() < 1e-6).then_some(id)
    }

    /// `text` with every character the font cannot draw at the monospace advance replaced, so
    /// every backend shows the same characters and the widths computed by the layout hold.
    pub(crate) fn displayable(&self, text: &str) -> String {
        text.chars().map(|c| if self.monospace_glyph(c).is_some() { c } else { REPLACEMENT }).collect()
    }

    /// Glyph of a character of a [`Self::displayable`] string.
    pub(crate) fn glyph(&self, c: char) -> GlyphId {
        self.monospace_glyph(c).unwrap_or_else(|| self.face.glyph_id(REPLACEMENT))
    }

    /// Whether the font can draw `c` (used to choose the ellipsis character).
    pub(crate) fn has(&self, c: char) -> bool {
        self.monospace_glyph(c).is_some()
    }
}

/// Font-wide facts a PDF font descriptor needs, in the font's units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DescriptorMetrics {
    pub(crate) bbox: [i16; 4],
    pub(crate) cap_height: i16,
}

/// Reads the `head` bounding box and the `OS/2` cap height straight from the table directory
/// (ab_glyph does not expose them).
pub(crate) fn descriptor_metrics(font: &[u8]) -> Option<DescriptorMetrics> {
    let head = table(font, b"head")?;
    let i16_at = |data: &[u8], at: usize| data.get(at..at + 2).map(|b| i16::from_be_bytes([b[0], b[1]]));
    let bbox = [i16_at(head, 36)?, i16_at(head, 38)?, i16_at(head, 40)?, i16_at(head, 42)?];
    // sCapHeight exists from OS/2 version 2; older tables fall back to the bounding box top.
    let cap_height = table(font, b"OS/2")
        .filter(|os2| i16_at(os2, 0).is_some_and(|version| version >= 2))
        .and_then(|os2| i16_at(os2, 88))
        .unwrap_or(bbox[3]);
    Some(DescriptorMetrics { bbox, cap_height })
}

fn table<'a>(font: &'a [u8], tag: &[u8; 4]) -> Option<&'a [u8]> {
    let u16_at = |at: usize| font.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let u32_at = |at: usize| font.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let tables = u16_at(4)?;
    (0..tables).find_map(|i| {
        let record = 12 + 16 * i;
        if font.get(record..record + 4)? != tag {
            return None;
        }
        let (offset, length) = (u32_at(record + 8)?, u32_at(record + 12)?);
        font.get(offset..offset.checked_add(length)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_font_is_monospace_with_sane_metrics() {
        let font = LabelFont::load().expect("font");
        assert!((0.55..0.65).contains(&font.advance_em), "advance {}", font.advance_em);
        assert!(font.ascent_em > 0.7 && font.descent_em > 0.1);
        for c in "0123456789abcdef ABCXYZ-_./:é".chars() {
            assert!(font.has(c), "{c:?}");
        }
        assert_eq!(font.displayable("a\u{7}b\u{301}c"), "a?b?c");
    }

    #[test]
    fn label_font_descriptor_metrics_read_from_tables() {
        let metrics = descriptor_metrics(FONT_BYTES).expect("metrics");
        assert!(metrics.bbox[0] < 0 && metrics.bbox[2] > 0 && metrics.bbox[3] > metrics.cap_height);
        assert!(metrics.cap_height > 1000, "cap height {}", metrics.cap_height);
    }
}
