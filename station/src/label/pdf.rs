//! PDF: vector labels, one per page sized exactly in points for label printers, or sheets of
//! labels with cut marks for office printers. The label font is embedded whole (a CID font with
//! identity glyph encoding and a ToUnicode map, so text stays searchable and copyable); its
//! advance is the same as in the PNG, so every line keeps the width the layout fitted.

use super::LabelError;
use super::font::{self, FONT_BYTES, LabelFont, POSTSCRIPT_NAME};
use super::layout::{LabelLayout, QUIET_ZONE_MODULES};
use super::spec::{PT_PER_MM, SheetSpec};
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use std::collections::BTreeMap;

const FONT_RESOURCE: Name<'static> = Name(b"F1");
/// Cut marks: this far out from a label's corner, this long, this thick.
const CUT_MARK_OFFSET_MM: f64 = 0.75;
const CUT_MARK_LENGTH_MM: f64 = 2.0;
const CUT_MARK_WIDTH_MM: f64 = 0.1;
/// zlib level for the font and the page contents: the default trade-off.
const COMPRESSION_LEVEL: u8 = 6;

/// One page: its size and the labels on it, each at its top-left corner (mm from the page's
/// top-left).
#[derive(Debug)]
pub(crate) struct Page<'a> {
    pub(crate) width_mm: f64,
    pub(crate) height_mm: f64,
    pub(crate) labels: Vec<(f64, f64, &'a LabelLayout)>,
    pub(crate) cut_marks: bool,
}

/// One page per label, the page exactly the label's size.
pub(crate) fn label_pages(layouts: &[LabelLayout]) -> Vec<Page<'_>> {
    layouts
        .iter()
        .map(|layout| Page {
            width_mm: layout.spec.width_mm,
            height_mm: layout.spec.height_mm,
            labels: vec![(0.0, 0.0, layout)],
            cut_marks: false,
        })
        .collect()
}

/// Sheets holding the labels row by row at [`SheetSpec::positions`]. The caller has checked that
/// at least one label fits a sheet.
pub(crate) fn sheet_pages<'a>(layouts: &'a [LabelLayout], sheet: &SheetSpec) -> Vec<Page<'a>> {
    let Some(first) = layouts.first() else { return Vec::new() };
    let positions = sheet.positions(&first.spec);
    layouts
        .chunks(positions.len().max(1))
        .map(|chunk| Page {
            width_mm: sheet.width_mm,
            height_mm: sheet.height_mm,
            labels: chunk.iter().zip(&positions).map(|(layout, (x, y))| (*x, *y, layout)).collect(),
            cut_marks: true,
        })
        .collect()
}

/// Maps millimetres from a page's top-left corner to PDF points from its bottom-left.
#[derive(Debug, Clone, Copy)]
struct PageFrame {
    height_mm: f64,
}

impl PageFrame {
    fn x(&self, mm: f64) -> f32 {
        (mm * PT_PER_MM) as f32
    }

    fn y(&self, mm: f64) -> f32 {
        ((self.height_mm - mm) * PT_PER_MM) as f32
    }

    fn length(&self, mm: f64) -> f32 {
        (mm * PT_PER_MM) as f32
    }
}

pub(crate) fn render(pages: &[Page<'_>], font: &LabelFont) -> Result<Vec<u8>, LabelError> {
    let catalog_id = Ref::new(1);
    let page_tree_id = Ref::new(2);
    let type0_id = Ref::new(3);
    let cid_font_id = Ref::new(4);
    let descriptor_id = Ref::new(5);
    let font_file_id = Ref::new(6);
    let cmap_id = Ref::new(7);
    let info_id = Ref::new(8);
    let page_ids: Vec<(Ref, Ref)> =
        (0..pages.len() as i32).map(|i| (Ref::new(9 + 2 * i), Ref::new(10 + 2 * i))).collect();

    let mut pdf = Pdf::new();
    pdf.catalog(catalog_id).pages(page_tree_id);
    pdf.pages(page_tree_id).kids(page_ids.iter().map(|(page, _)| *page)).count(pages.len() as i32);
    pdf.document_info(info_id).title(TextStr("Keyfill device labels")).producer(TextStr("keyfill"));

    let mut used_glyphs = BTreeMap::new();
    for (page, (page_id, content_id)) in pages.iter().zip(&page_ids) {
        let frame = PageFrame { height_mm: page.height_mm };
        let mut content = Content::new();
        for (x, y, layout) in &page.labels {
            draw_qr(&mut content, frame, *x, *y, layout);
            draw_text(&mut content, frame, *x, *y, layout, font, &mut used_glyphs);
            if page.cut_marks {
                draw_cut_marks(&mut content, frame, *x, *y, layout);
            }
        }
        let media_box = Rect::new(0.0, 0.0, frame.length(page.width_mm), frame.length(page.height_mm));
        let mut page_writer = pdf.page(*page_id);
        page_writer.parent(page_tree_id).media_box(media_box).contents(*content_id);
        page_writer.resources().fonts().pair(FONT_RESOURCE, type0_id);
        page_writer.finish();
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&content.finish(), COMPRESSION_LEVEL);
        pdf.stream(*content_id, &compressed).filter(Filter::FlateDecode);
    }
    write_font(&mut pdf, font, &used_glyphs, [type0_id, cid_font_id, descriptor_id, font_file_id, cmap_id])?;
    Ok(pdf.finish())
}

fn draw_qr(content: &mut Content, frame: PageFrame, x: f64, y: f64, layout: &LabelLayout) {
    let qr = &layout.qr;
    let mm_per_dot = layout.mm_per_dot();
    let module = f64::from(qr.module_dots) * mm_per_dot;
    let x0 = x + f64::from(qr.x_dots) * mm_per_dot + QUIET_ZONE_MODULES as f64 * module;
    let y0 = y + f64::from(qr.y_dots) * mm_per_dot + QUIET_ZONE_MODULES as f64 * module;
    content.set_fill_gray(0.0);
    // All runs in one path filled once: abutting rectangles of one fill leave no hairline seams.
    for (row, column, run) in qr.dark_runs() {
        let left = x0 + column as f64 * module;
        let bottom = y0 + (row + 1) as f64 * module;
        content.rect(frame.x(left), frame.y(bottom), frame.length(run as f64 * module), frame.length(module));
    }
    content.fill_nonzero();
}

fn draw_text(
    content: &mut Content,
    frame: PageFrame,
    x: f64,
    y: f64,
    layout: &LabelLayout,
    font: &LabelFont,
    used_glyphs: &mut BTreeMap<u16, char>,
) {
    for line in &layout.lines {
        let mut glyphs = Vec::with_capacity(line.text.len() * 2);
        for c in line.text.chars() {
            let glyph = font.glyph(c).0;
            used_glyphs.entry(glyph).or_insert(c);
            glyphs.extend_from_slice(&glyph.to_be_bytes());
        }
        content
            .begin_text()
            .set_font(FONT_RESOURCE, frame.length(line.size_mm))
            .set_text_matrix([1.0, 0.0, 0.0, 1.0, frame.x(x + line.x_mm), frame.y(y + line.baseline_mm)])
            .show(Str(&glyphs))
            .end_text();
    }
}

/// Short lines continuing each edge of the label outwards, clear of its corner.
fn draw_cut_marks(content: &mut Content, frame: PageFrame, x: f64, y: f64, layout: &LabelLayout) {
    let (width, height) = (layout.spec.width_mm, layout.spec.height_mm);
    let (near, far) = (CUT_MARK_OFFSET_MM, CUT_MARK_OFFSET_MM + CUT_MARK_LENGTH_MM);
    content.set_stroke_gray(0.0).set_line_width(frame.length(CUT_MARK_WIDTH_MM));
    for (corner_x, corner_y, out_x, out_y) in
        [(x, y, -1.0, -1.0), (x + width, y, 1.0, -1.0), (x, y + height, -1.0, 1.0), (x + width, y + height, 1.0, 1.0)]
    {
        // Horizontal mark along the top or bottom edge, vertical along the left or right edge.
        content.move_to(frame.x(corner_x + out_x * near), frame.y(corner_y));
        content.line_to(frame.x(corner_x + out_x * far), frame.y(corner_y));
        content.move_to(frame.x(corner_x), frame.y(corner_y + out_y * near));
        content.line_to(frame.x(corner_x), frame.y(corner_y + out_y * far));
    }
    content.stroke();
}

/// Writes the embedded font objects: Type0 font, CID font, descriptor, font file, ToUnicode.
fn write_font(
    pdf: &mut Pdf,
    font: &LabelFont,
    used_glyphs: &BTreeMap<u16, char>,
    [type0_id, cid_font_id, descriptor_id, font_file_id, cmap_id]: [Ref; 5],
) -> Result<(), LabelError> {
    let metrics = font::descriptor_metrics(FONT_BYTES)
        .ok_or_else(|| LabelError::Font { reason: "no head table in the bundled font".into() })?;
    let to_pdf_units = |units: f64| (units * 1000.0 / f64::from(font.units_per_em)) as f32;
    let system_info = SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 };
    let base_font = Name(POSTSCRIPT_NAME);

    pdf.type0_font(type0_id)
        .base_font(base_font)
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_font_id)
        .to_unicode(cmap_id);
    let advance = (font.advance_em * 1000.0) as f32;
    let mut cid_font = pdf.cid_font(cid_font_id);
    cid_font
        .subtype(CidFontType::Type2)
        .base_font(base_font)
        .system_info(system_info)
        .font_descriptor(descriptor_id)
        // Some readers (poppler) take only an integer DW; the exact advance follows in W.
        .default_width(advance.round())
        .cid_to_gid_map_predefined(Name(b"Identity"));
    let mut widths = cid_font.widths();
    for glyph in used_glyphs.keys() {
        widths.same(*glyph, *glyph, advance);
    }
    widths.finish();
    cid_font.finish();
    let [x_min, y_min, x_max, y_max] = metrics.bbox.map(|units| to_pdf_units(f64::from(units)));
    pdf.font_descriptor(descriptor_id)
        .name(base_font)
        .flags(FontFlags::FIXED_PITCH | FontFlags::NON_SYMBOLIC)
        .bbox(Rect::new(x_min, y_min, x_max, y_max))
        .italic_angle(0.0)
        .ascent((font.ascent_em * 1000.0) as f32)
        .descent((-font.descent_em * 1000.0) as f32)
        .cap_height(to_pdf_units(f64::from(metrics.cap_height)))
        // Not in the font's tables; the usual estimate for a regular weight.
        .stem_v(80.0)
        .font_file2(font_file_id);
    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(FONT_BYTES, COMPRESSION_LEVEL);
    pdf.stream(font_file_id, &compressed).filter(Filter::FlateDecode).pair(Name(b"Length1"), FONT_BYTES.len() as i32);
    let mut cmap = UnicodeCmap::new(Name(b"Keyfill-Label-UTF16"), system_info);
    for (glyph, c) in used_glyphs {
        cmap.pair(*glyph, *c);
    }
    pdf.cmap(cmap_id, &cmap.finish());
    Ok(())
}
