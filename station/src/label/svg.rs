//! SVG: the label in millimetres (user units are millimetres through the viewBox). The QR code is
//! one path whose rectangles fall on printer dots; text uses a monospace family, and `textLength`
//! holds each line to the width the layout fitted, whatever monospace font the viewer substitutes.

use super::layout::{LabelLayout, QUIET_ZONE_MODULES};
use std::fmt::Write;

const FONT_FAMILY: &str = "Hack, 'DejaVu Sans Mono', 'Liberation Mono', monospace";

pub(crate) fn render(layout: &LabelLayout, title: &str) -> String {
    let spec = &layout.spec;
    let (width, height) = (number(spec.width_mm), number(spec.height_mm));
    let mut svg = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}mm" height="{height}mm" viewBox="0 0 {width} {height}">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", escape(title));
    let _ = writeln!(svg, r##"<rect width="{width}" height="{height}" fill="#fff"/>"##);
    let _ = writeln!(svg, r##"<path fill="#000" shape-rendering="crispEdges" d="{}"/>"##, qr_path(layout));
    for line in &layout.lines {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-family="{FONT_FAMILY}" font-size="{}" textLength="{}" lengthAdjust="spacingAndGlyphs" xml:space="preserve" fill="#000">{}</text>"##,
            number(line.x_mm),
            number(line.baseline_mm),
            number(line.size_mm),
            number(line.width_mm),
            escape(&line.text)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn qr_path(layout: &LabelLayout) -> String {
    let qr = &layout.qr;
    let mm_per_dot = layout.mm_per_dot();
    let module = f64::from(qr.module_dots) * mm_per_dot;
    let x0 = f64::from(qr.x_dots) * mm_per_dot + QUIET_ZONE_MODULES as f64 * module;
    let y0 = f64::from(qr.y_dots) * mm_per_dot + QUIET_ZONE_MODULES as f64 * module;
    let mut d = String::new();
    for (row, column, run) in qr.dark_runs() {
        let _ = write!(
            d,
            "M{} {}h{}v{}h-{}z",
            number(x0 + column as f64 * module),
            number(y0 + row as f64 * module),
            number(run as f64 * module),
            number(module),
            number(run as f64 * module)
        );
    }
    d
}

/// Millimetres with four decimals (0.1 µm), trailing zeros dropped.
pub(crate) fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".into() } else { text.into() }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_svg_numbers_are_short_and_exact() {
        assert_eq!(number(50.0), "50");
        assert_eq!(number(0.50800), "0.508");
        assert_eq!(number(-0.00001), "0");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
