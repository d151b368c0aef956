//! Drawing where the scanner found a code on top of the camera preview: the geometry from frame
//! pixels to screen points, and the outline with its tag.
//!
//! The scanner reports corners in the pixels of the frame it decoded; the preview shows a
//! subsampled copy of that frame, letterboxed into the panel. The same two steps place the
//! corners, so the outline sits on the code whatever the panel's size.

use eframe::egui::epaint::PathStroke;
use eframe::egui::{self, Color32, FontId, Painter, Pos2, Rect, Shape, Vec2};
use keyfill_station::scan::Corners;

/// Where the preview texture came from: the frame it was made of and how much of that frame it
/// shows, in frame pixels (subsampling by a whole step drops the last few columns and rows).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreviewSource {
    pub frame_size: (u32, u32),
    pub covered: Vec2,
}

/// The rect that an image of `image_size` fills inside `area`: as large as fits with its aspect
/// ratio kept, centred (bars on the sides or above and below).
pub fn letterbox(area: Rect, image_size: Vec2) -> Rect {
    if image_size.x <= 0.0 || image_size.y <= 0.0 {
        return Rect::from_center_size(area.center(), Vec2::ZERO);
    }
    let scale = (area.width() / image_size.x).min(area.height() / image_size.y);
    Rect::from_center_size(area.center(), image_size * scale)
}

/// Where `corners`, in pixels of the preview's source frame, appear on screen when the part of
/// the frame the texture covers is drawn into `shown`.
pub fn frame_to_screen(corners: &Corners, source: &PreviewSource, shown: Rect) -> [Pos2; 4] {
    let scale = Vec2::new(shown.width() / source.covered.x.max(1.0), shown.height() / source.covered.y.max(1.0));
    corners.map(|p| shown.min + Vec2::new(p.x * scale.x, p.y * scale.y))
}

/// Outlines the code at `quad` in `color` and writes `tag` beside it: above the code, or below it
/// when there is no room above; kept inside the painter's clip rect (the preview).
pub fn paint_outline(painter: &Painter, quad: [Pos2; 4], color: Color32, tag: &str) {
    // Drawn outside the code's edge, so that the line hides none of the code; egui puts
    // "outside" on the left of the path's direction, which is outside for a clockwise path.
    let mut path = quad.to_vec();
    if !clockwise(&quad) {
        path.reverse();
    }
    painter.add(Shape::closed_line(path, PathStroke::new(3.0, color).outside()));
    let bounds = Rect::from_points(&quad);
    let font = FontId::proportional(14.0);
    let galley = painter.layout_no_wrap(tag.to_owned(), font, Color32::WHITE);
    let padding = Vec2::new(6.0, 2.0);
    let size = galley.size() + 2.0 * padding;
    let clip = painter.clip_rect();
    let above = bounds.top() - 4.0 - size.y;
    let top = if above >= clip.top() { above } else { (bounds.bottom() + 4.0).min(clip.bottom() - size.y) };
    let left = (bounds.center().x - size.x / 2.0).clamp(clip.left(), (clip.right() - size.x).max(clip.left()));
    let tag_rect = Rect::from_min_size(egui::pos2(left, top), size);
    painter.rect_filled(tag_rect, 3.0, color);
    painter.galley(tag_rect.min + padding, galley, Color32::WHITE);
}

/// Whether `quad` runs clockwise on screen (y grows downwards). A mirrored code's corners do not.
fn clockwise(quad: &[Pos2; 4]) -> bool {
    let twice_area: f32 = (0..4).map(|i| quad[i].x * quad[(i + 1) % 4].y - quad[(i + 1) % 4].x * quad[i].y).sum();
    twice_area > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_station::scan::Point;

    fn close(a: Pos2, b: Pos2) -> bool {
        (a - b).length() < 1e-3
    }

    #[test]
    fn gui_letterbox_keeps_the_aspect_ratio_and_centres_the_image() {
        let area = Rect::from_min_size(egui::pos2(10.0, 20.0), Vec2::new(400.0, 180.0));
        // 16:9 into a wider panel: limited by the height, bars left and right.
        let shown = letterbox(area, Vec2::new(640.0, 360.0));
        assert_eq!(shown, Rect::from_min_size(egui::pos2(50.0, 20.0), Vec2::new(320.0, 180.0)));
        // A tall image: limited by the height too, narrower.
        assert_eq!(letterbox(area, Vec2::new(100.0, 200.0)).width(), 90.0);
        // A wide strip: limited by the width, bars above and below.
        let strip = letterbox(area, Vec2::new(800.0, 100.0));
        assert_eq!((strip.width(), strip.height(), strip.center()), (400.0, 50.0, area.center()));
        assert_eq!(letterbox(area, Vec2::ZERO).area(), 0.0);
    }

    #[test]
    fn gui_outline_winding_is_read_on_screen_axes() {
        let quad = [egui::pos2(0.0, 0.0), egui::pos2(10.0, 0.0), egui::pos2(10.0, 10.0), egui::pos2(0.0, 10.0)];
        assert!(clockwise(&quad));
        let [a, b, c, d] = quad;
        assert!(!clockwise(&[a, d, c, b]), "a mirrored code's corners run the other way");
    }

    #[test]
    fn gui_corners_land_where_the_preview_draws_those_frame_pixels() {
        // A 1280×720 frame subsampled by 2 into a 640×360 texture, letterboxed into 400×180.
        let area = Rect::from_min_size(egui::pos2(10.0, 20.0), Vec2::new(400.0, 180.0));
        let source = PreviewSource { frame_size: (1280, 720), covered: Vec2::new(1280.0, 720.0) };
        let shown = letterbox(area, Vec2::new(640.0, 360.0));
        let corners =
            [Point::new(0.0, 0.0), Point::new(1280.0, 0.0), Point::new(640.0, 360.0), Point::new(320.0, 720.0)];
        let on_screen = frame_to_screen(&corners, &source, shown);
        let expected = [egui::pos2(50.0, 20.0), egui::pos2(370.0, 20.0), area.center(), egui::pos2(130.0, 200.0)];
        for (found, wanted) in on_screen.iter().zip(expected) {
            assert!(close(*found, wanted), "{on_screen:?}");
        }
        // A 1930-pixel-wide frame subsampled by 4 shows 482 × 4 = 1928 of its columns: the
        // texture's right edge is frame column 1928, not 1930.
        let source = PreviewSource { frame_size: (1930, 1080), covered: Vec2::new(1928.0, 1080.0) };
        let shown = letterbox(area, Vec2::new(482.0, 270.0));
        let right_edge = frame_to_screen(&[Point::new(1928.0, 1080.0); 4], &source, shown)[0];
        assert!(close(right_edge, shown.max), "{right_edge:?} vs {:?}", shown.max);
    }
}
