//! Where a code lies: each decoder's own geometry turned into the code's four outer corners, in
//! the pixels of the image that decoder was given. [`super::Prepared::corners_in_frame`] then maps
//! them back to the frame given to the scanner.
//!
//! Coordinates are continuous: (0, 0) is the top-left corner of the top-left pixel, so the centre
//! of pixel (i, j) is (i + 0.5, j + 0.5). The outer corners are those of the symbol's module grid
//! (the quiet zone is not part of it).
//!
//! No decoder is run again for this: every decoder already computed the perspective it sampled
//! the code through, and the corners come from that perspective.

use rxing::common::{PerspectiveTransform, Quadrilateral};
use rxing::point;

/// A position in a frame, in pixels (see the module documentation for the convention).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Point { x, y }
    }

    /// This point in an image stretched by `sx` horizontally and `sy` vertically.
    pub fn scaled(self, sx: f32, sy: f32) -> Self {
        Point { x: self.x * sx, y: self.y * sy }
    }
}

/// A code's four outer corners: its top-left (the corner of the finder pattern that has the two
/// others beside it), then clockwise as the code is printed — top-right, bottom-right,
/// bottom-left. In the frame that is clockwise too, unless the code is mirrored.
pub type Corners = [Point; 4];

/// Corners from zxing-cpp's detector (rxing's `cpp_port`), which reports the corners of the grid
/// it sampled: projected outer corners in the order top-left, top-right, bottom-left,
/// bottom-right, each shifted by half a pixel (zxing-cpp adds it to round to whole pixels; the
/// port keeps the fraction, so it is taken off again here).
pub(crate) fn from_sampled_grid(points: &[rxing::Point]) -> Option<Corners> {
    let &[top_left, top_right, bottom_left, bottom_right] = points else { return None };
    let unshifted = |p: rxing::Point| Point::new(p.x - 0.5, p.y - 0.5);
    usable([unshifted(top_left), unshifted(top_right), unshifted(bottom_right), unshifted(bottom_left)])
}

/// Corners from ZXing's original detector, which reports the centres of the bottom-left, top-left
/// and top-right finder patterns, then the bottom-right alignment pattern's if it found one, for
/// a code of `dimension` modules a side.
///
/// ZXing sampled the code through the perspective those centres define: finder centres 3.5
/// modules in from the outer corners, the alignment pattern 6.5 modules in from the bottom-right
/// one, and without it the parallelogram the three finder centres span. Rebuilding that same
/// transform and mapping the grid's corners gives the corners ZXing read the code between.
pub(crate) fn from_finder_centres(points: &[rxing::Point], dimension: u32) -> Option<Corners> {
    let (bottom_left, top_left, top_right, alignment) = match *points {
        [bl, tl, tr] => (bl, tl, tr, None),
        [bl, tl, tr, alignment, ..] => (bl, tl, tr, Some(alignment)),
        _ => return None,
    };
    let side = dimension as f32;
    let (module_bottom_right, pixel_bottom_right) = match alignment {
        Some(alignment) => (point(side - 6.5, side - 6.5), alignment),
        None => (point(side - 3.5, side - 3.5), top_right - top_left + bottom_left),
    };
    let modules =
        Quadrilateral::new(point(3.5, 3.5), point(side - 3.5, 3.5), module_bottom_right, point(3.5, side - 3.5));
    let pixels = Quadrilateral::new(top_left, top_right, pixel_bottom_right, bottom_left);
    let transform = PerspectiveTransform::quadrilateralToQuadrilateral(modules, pixels).ok()?;
    let corner = |x: f32, y: f32| {
        let p = transform.transform_point(point(x, y));
        Point::new(p.x, p.y)
    };
    usable([corner(0.0, 0.0), corner(side, 0.0), corner(side, side), corner(0.0, side)])
}

/// Corners from rqrr (0.11), whose `Grid::bounds` are its perspective mapped at (0, 0),
/// (n + 1, 0), (n + 1, n + 1) and (0, n + 1) for a code of `modules` = n modules a side — one
/// module past the far edges — each rounded to a pixel index (rqrr samples pixel `round(p)`, so
/// its coordinates are pixel centres, half a pixel short of the convention here). Refitting the
/// perspective to those four points and mapping n instead of n + 1 recovers the true corners to
/// within the rounding, about half a pixel.
pub(crate) fn from_rqrr_bounds(bounds: &[rqrr::Point; 4], modules: usize) -> Option<Corners> {
    if modules == 0 {
        return None;
    }
    let pixel = |p: &rqrr::Point| point(p.x as f32 + 0.5, p.y as f32 + 0.5);
    let [top_left, top_right, bottom_right, bottom_left] = bounds.each_ref().map(pixel);
    let reported = Quadrilateral::new(top_left, top_right, bottom_right, bottom_left);
    // Maps the unit square onto the reported bounds, i.e. module coordinates divided by n + 1.
    let transform = PerspectiveTransform::squareToQuadrilateral(reported);
    let far = modules as f32 / (modules as f32 + 1.0);
    let corner = |u: f32, v: f32| {
        let p = transform.transform_point(point(u, v));
        Point::new(p.x, p.y)
    };
    usable([corner(0.0, 0.0), corner(far, 0.0), corner(far, far), corner(0.0, far)])
}

/// `corners`, if they describe a real quadrilateral: finite, and enclosing more than a pixel (a
/// degenerate perspective gives NaN, infinities or all four corners on a line).
fn usable(corners: Corners) -> Option<Corners> {
    if !corners.iter().all(|p| p.x.is_finite() && p.y.is_finite()) {
        return None;
    }
    // Shoelace formula: twice the signed area.
    let twice_area: f32 = (0..4)
        .map(|i| {
            let (a, b) = (corners[i], corners[(i + 1) % 4]);
            a.x * b.y - b.x * a.y
        })
        .sum();
    (twice_area.abs() > 2.0).then_some(corners)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Point, b: Point) -> bool {
        (a.x - b.x).abs() < 1e-3 && (a.y - b.y).abs() < 1e-3
    }

    #[test]
    fn scan_finder_centres_of_an_upright_code_give_its_outer_corners() {
        // A 25-module code at 4 px per module with its top-left corner at (100, 40): finder
        // centres 3.5 modules in, the alignment pattern 6.5 modules in from the bottom right.
        let at = |mx: f32, my: f32| point(100.0 + 4.0 * mx, 40.0 + 4.0 * my);
        let expected =
            [Point::new(100.0, 40.0), Point::new(200.0, 40.0), Point::new(200.0, 140.0), Point::new(100.0, 140.0)];
        let without = [at(3.5, 21.5), at(3.5, 3.5), at(21.5, 3.5)];
        let with = [at(3.5, 21.5), at(3.5, 3.5), at(21.5, 3.5), at(18.5, 18.5)];
        for points in [&without[..], &with[..]] {
            let corners = from_finder_centres(points, 25).unwrap_or_default();
            assert!(corners.iter().zip(&expected).all(|(a, b)| close(*a, *b)), "{corners:?}");
        }
        assert_eq!(from_finder_centres(&without[..2], 25), None);
    }

    #[test]
    fn scan_sampled_grid_corners_are_reordered_clockwise_and_unshifted() {
        let reported = [point(10.5, 20.5), point(50.5, 20.5), point(10.5, 60.5), point(50.5, 60.5)];
        let corners = from_sampled_grid(&reported).unwrap_or_default();
        assert_eq!(
            corners,
            [Point::new(10.0, 20.0), Point::new(50.0, 20.0), Point::new(50.0, 60.0), Point::new(10.0, 60.0)]
        );
    }

    #[test]
    fn scan_rqrr_bounds_one_module_past_the_edge_are_pulled_back() {
        // A 21-module code at 5 px per module from (30, 30): rqrr reports (0, 0) to (22, 22) in
        // modules, as pixel indices.
        let index = |m: i32| 30 + 5 * m;
        let bounds = [(0, 0), (22, 0), (22, 22), (0, 22)].map(|(x, y)| rqrr::Point { x: index(x), y: index(y) });
        let corners = from_rqrr_bounds(&bounds, 21).unwrap_or_default();
        let expected =
            [(0, 0), (21, 0), (21, 21), (0, 21)].map(|(x, y)| Point::new(index(x) as f32 + 0.5, index(y) as f32 + 0.5));
        assert!(corners.iter().zip(&expected).all(|(a, b)| close(*a, *b)), "{corners:?}");
    }

    #[test]
    fn scan_degenerate_geometry_gives_no_corners() {
        let on_a_line = [point(0.0, 0.0), point(10.0, 0.0), point(20.0, 0.0), point(30.0, 0.0)];
        assert_eq!(from_sampled_grid(&on_a_line), None);
        let nan = [point(f32::NAN, 0.0), point(10.0, 0.0), point(0.0, 10.0), point(10.0, 10.0)];
        assert_eq!(from_sampled_grid(&nan), None);
        assert_eq!(from_sampled_grid(&[]), None);
        let collapsed = [rqrr::Point { x: 3, y: 3 }; 4];
        assert_eq!(from_rqrr_bounds(&collapsed, 21), None);
    }
}
