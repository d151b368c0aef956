//! Image preparation before a decoder sees a frame: size limits, rescaling, inversion and a local
//! (adaptive) threshold. Every transform is computed at most once per frame and shared by the
//! stages that need it.
//!
//! The per-pixel loops are written out over slices (no per-pixel bounds-checked accessors), so
//! they stay tolerable in the unoptimised dev profile too.

use super::locate::Corners;
use image::GrayImage;
use image::imageops::{self, FilterType};
use std::fmt;
use std::sync::OnceLock;

/// Frames larger than this on either side are shrunk first: decode time grows with the pixel
/// count, and a label that fills a 12-megapixel photograph keeps modules of many pixels anyway.
pub const MAX_SIDE: u32 = 2560;

/// Frames whose shorter side is below this (smaller than 720p) may be tried at twice their size:
/// small modules are where rqrr's finder loses the pattern first. Larger frames are not: at 720p
/// and up a label at the station is many pixels per module, and doubling such a frame would make
/// the retry cost a camera frame interval many times over.
pub const UPSCALE_BELOW: u32 = 720;

/// How far below the local mean a pixel must be to count as dark in the adaptive threshold; it
/// keeps flat paper from turning into noise.
const THRESHOLD_OFFSET: u8 = 5;

/// The boxes behind the adaptive thresholds have a radius of the shorter side over these. rxing
/// does best with the narrower box, rqrr with the wider one (benchmark set, docs/scanning.md).
const ADAPTIVE_DIVISOR: u32 = 16;
const ADAPTIVE_UPSCALED_DIVISOR: u32 = 9;

/// One way of preparing a frame for a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Prep {
    /// The grayscale frame as captured (after the [`MAX_SIDE`] limit).
    AsIs,
    /// Dark and light swapped: light modules on a dark ground (laser-marked metal, negative
    /// print).
    Inverted,
    /// Twice the size ([`double_size`]); does not apply to frames of [`UPSCALE_BELOW`] or more.
    Upscaled,
    /// Black and white against the local mean ([`adaptive_threshold`]): survives shadows and
    /// uneven light that a global threshold cannot.
    Adaptive,
    /// [`Prep::Adaptive`] on the upscaled frame.
    AdaptiveUpscaled,
}

impl Prep {
    pub fn name(self) -> &'static str {
        match self {
            Prep::AsIs => "as-is",
            Prep::Inverted => "inverted",
            Prep::Upscaled => "upscaled",
            Prep::Adaptive => "adaptive",
            Prep::AdaptiveUpscaled => "adaptive-upscaled",
        }
    }

    /// How many pixels of the prepared image one pixel of the (size-limited) frame spans per side.
    fn magnification(self) -> f32 {
        match self {
            Prep::Upscaled | Prep::AdaptiveUpscaled => 2.0,
            Prep::AsIs | Prep::Inverted | Prep::Adaptive => 1.0,
        }
    }
}

impl fmt::Display for Prep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A frame and the transforms computed from it so far.
pub struct Prepared {
    /// Width and height of the frame as given, before the size limit.
    frame_size: (u32, u32),
    base: GrayImage,
    inverted: OnceLock<GrayImage>,
    upscaled: OnceLock<Option<GrayImage>>,
    adaptive: OnceLock<GrayImage>,
    adaptive_upscaled: OnceLock<Option<GrayImage>>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("frame_size", &self.frame_size)
            .field("width", &self.base.width())
            .field("height", &self.base.height())
            .finish()
    }
}

impl Prepared {
    /// Takes a grayscale frame, shrinking it to [`MAX_SIDE`] if needed.
    pub fn new(gray: GrayImage) -> Self {
        Prepared {
            frame_size: gray.dimensions(),
            base: fit_within(gray, MAX_SIDE),
            inverted: OnceLock::new(),
            upscaled: OnceLock::new(),
            adaptive: OnceLock::new(),
            adaptive_upscaled: OnceLock::new(),
        }
    }

    /// The frame a decoder works on (after the size limit).
    pub fn base(&self) -> &GrayImage {
        &self.base
    }

    /// Maps corners found in the image prepared as `prep` back to the frame given to
    /// [`Prepared::new`]: undoes the upscaling, then the size limit. Both are plain scalings that
    /// keep the image's edges in place (pixel centres map to pixel centres), so a point scales by
    /// the ratio of the sides, per axis: the size limit rounds each side on its own.
    pub fn corners_in_frame(&self, corners: Corners, prep: Prep) -> Corners {
        let (frame_width, frame_height) = self.frame_size;
        let magnification = prep.magnification();
        let scale = |frame_side: u32, base_side: u32| frame_side as f32 / (base_side.max(1) as f32 * magnification);
        let (sx, sy) = (scale(frame_width, self.base.width()), scale(frame_height, self.base.height()));
        corners.map(|p| p.scaled(sx, sy))
    }

    /// The frame prepared as `prep` asks, or `None` when that preparation does not apply to this
    /// frame (upscaling a frame that is already large).
    pub fn get(&self, prep: Prep) -> Option<&GrayImage> {
        match prep {
            Prep::AsIs => Some(&self.base),
            Prep::Inverted => Some(self.inverted.get_or_init(|| inverted(&self.base))),
            Prep::Upscaled => self.upscaled.get_or_init(|| upscaled(&self.base)).as_ref(),
            Prep::Adaptive => Some(self.adaptive.get_or_init(|| adaptive_threshold(&self.base, ADAPTIVE_DIVISOR))),
            Prep::AdaptiveUpscaled => {
                let threshold = |upscaled: &GrayImage| adaptive_threshold(upscaled, ADAPTIVE_UPSCALED_DIVISOR);
                self.adaptive_upscaled.get_or_init(|| self.get(Prep::Upscaled).map(threshold)).as_ref()
            }
        }
    }
}

/// Shrinks `gray` so that neither side exceeds `max_side`, keeping its aspect ratio.
pub fn fit_within(gray: GrayImage, max_side: u32) -> GrayImage {
    let (width, height) = gray.dimensions();
    let longest = width.max(height);
    if longest <= max_side {
        return gray;
    }
    let scale = f64::from(max_side) / f64::from(longest);
    // Never round a side down to zero: a 10000×1 strip stays one pixel high.
    let side = |v: u32| ((f64::from(v) * scale).round() as u32).max(1);
    imageops::resize(&gray, side(width), side(height), FilterType::Triangle)
}

fn inverted(gray: &GrayImage) -> GrayImage {
    let mut out = gray.clone();
    imageops::invert(&mut out);
    out
}

fn upscaled(gray: &GrayImage) -> Option<GrayImage> {
    let (width, height) = gray.dimensions();
    if width.min(height) >= UPSCALE_BELOW || width == 0 || height == 0 {
        return None;
    }
    Some(double_size(gray))
}

/// Twice the size, bilinear with pixel centres kept in place (weights 3/4 and 1/4). Written out
/// rather than `imageops::resize`, which is generic over filters and takes ~30× longer here.
pub fn double_size(gray: &GrayImage) -> GrayImage {
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    if width == 0 || height == 0 {
        return gray.clone();
    }
    let src = gray.as_raw();
    let row = |y: usize| &src[y * width..(y + 1) * width];
    // Each source row becomes one row of twice the width; two such rows blend into an output row.
    let widen = |line: &[u8], out: &mut Vec<u16>| {
        out.clear();
        for x in 0..width {
            let (left, here, right) = (line[x.saturating_sub(1)], line[x], line[(x + 1).min(width - 1)]);
            out.push(3 * u16::from(here) + u16::from(left));
            out.push(3 * u16::from(here) + u16::from(right));
        }
    };
    let mut out = Vec::with_capacity(4 * width * height);
    let (mut above, mut here, mut below) = (Vec::new(), Vec::new(), Vec::new());
    for y in 0..height {
        widen(row(y.saturating_sub(1)), &mut above);
        widen(row(y), &mut here);
        widen(row((y + 1).min(height - 1)), &mut below);
        // Weights sum to 16: (3·3 + 3·1 + 1·3 + 1·1); +8 rounds.
        out.extend(here.iter().zip(&above).map(|(h, a)| ((3 * h + a + 8) / 16) as u8));
        out.extend(here.iter().zip(&below).map(|(h, b)| ((3 * h + b + 8) / 16) as u8));
    }
    GrayImage::from_raw(2 * width as u32, 2 * height as u32, out).unwrap_or_else(|| gray.clone())
}

/// The mean of the (2·radius+1)² box around each pixel (clipped at the edges), from an integral
/// image: constant time per pixel whatever the radius.
pub fn box_mean(gray: &GrayImage, radius: u32) -> GrayImage {
    let (width, height) = (gray.width() as usize, gray.height() as usize);
    if width == 0 || height == 0 {
        return gray.clone();
    }
    // Sums wrap: a box's sum is exact modulo 2^32 and fits in 32 bits for boxes under 16 million
    // pixels, so wrapping arithmetic gives it exactly even where the running total overflows.
    let stride = width + 1;
    let mut integral = vec![0u32; stride * (height + 1)];
    for (y, line) in gray.as_raw().chunks_exact(width).enumerate() {
        let (done, rest) = integral.split_at_mut((y + 1) * stride);
        let above = &done[y * stride..];
        let mut running = 0u32;
        for (x, &value) in line.iter().enumerate() {
            running = running.wrapping_add(u32::from(value));
            rest[x + 1] = above[x + 1].wrapping_add(running);
        }
    }
    let radius = radius as usize;
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        let (top, bottom) = (y.saturating_sub(radius) * stride, (y + radius + 1).min(height) * stride);
        for x in 0..width {
            let (left, right) = (x.saturating_sub(radius), (x + radius + 1).min(width));
            let sum = integral[bottom + right]
                .wrapping_sub(integral[bottom + left])
                .wrapping_sub(integral[top + right])
                .wrapping_add(integral[top + left]);
            let area = ((right - left) * (bottom - top) / stride) as u32;
            out.push((sum / area) as u8);
        }
    }
    GrayImage::from_raw(width as u32, height as u32, out).unwrap_or_else(|| gray.clone())
}

/// Thresholds each pixel against the mean of a box around it, of radius the shorter side over
/// `divisor`: the box follows the image size so that it spans several modules of a label that
/// fills a good part of the frame.
pub fn adaptive_threshold(gray: &GrayImage, divisor: u32) -> GrayImage {
    let radius = (gray.width().min(gray.height()) / divisor.max(1)).max(3);
    let local_mean = box_mean(gray, radius);
    let pixels = gray.as_raw().iter().zip(local_mean.as_raw());
    let binary = pixels.map(|(&v, &mean)| if v < mean.saturating_sub(THRESHOLD_OFFSET) { 0 } else { 255 }).collect();
    GrayImage::from_raw(gray.width(), gray.height(), binary).unwrap_or_else(|| gray.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Luma;

    #[test]
    fn scan_box_mean_matches_a_naive_mean_at_edges_and_inside() {
        let gray = GrayImage::from_fn(23, 17, |x, y| Luma([((x * 37 + y * 91) % 256) as u8]));
        let mean = box_mean(&gray, 4);
        for (x, y) in [(0u32, 0u32), (22, 16), (11, 8), (3, 15), (20, 2)] {
            let (x0, x1, y0, y1) = (x.saturating_sub(4), (x + 5).min(23), y.saturating_sub(4), (y + 5).min(17));
            let mut values = Vec::new();
            for yy in y0..y1 {
                values.extend((x0..x1).map(|xx| u32::from(gray.get_pixel(xx, yy).0[0])));
            }
            let naive = values.iter().sum::<u32>() / values.len() as u32;
            assert_eq!(u32::from(mean.get_pixel(x, y).0[0]), naive, "at {x},{y}");
        }
    }

    #[test]
    fn scan_double_size_keeps_flat_areas_and_blends_edges() {
        let gray = GrayImage::from_fn(4, 3, |x, _| Luma([if x < 2 { 0 } else { 200 }]));
        let doubled = double_size(&gray);
        assert_eq!(doubled.dimensions(), (8, 6));
        assert_eq!(doubled.get_pixel(0, 0).0[0], 0);
        assert_eq!(doubled.get_pixel(7, 5).0[0], 200);
        // Output pixel 3 sits a quarter pixel left of the edge between source pixels 1 and 2.
        assert_eq!(doubled.get_pixel(3, 2).0[0], 50);
        assert_eq!(doubled.get_pixel(4, 2).0[0], 150);
    }

    #[test]
    fn scan_fit_within_keeps_thin_strips_one_pixel_high() {
        let strip = GrayImage::new(10_000, 1);
        let fitted = fit_within(strip, MAX_SIDE);
        assert_eq!(fitted.dimensions(), (MAX_SIDE, 1));
    }

    #[test]
    fn scan_corners_map_back_through_the_upscale_and_the_size_limit() {
        use crate::scan::locate::Point;
        let corners = [Point::new(0.0, 0.0), Point::new(100.0, 0.0), Point::new(100.0, 50.0), Point::new(0.0, 50.0)];
        let small = Prepared::new(GrayImage::new(300, 200));
        assert_eq!(small.corners_in_frame(corners, Prep::AsIs), corners);
        assert_eq!(small.corners_in_frame(corners, Prep::AdaptiveUpscaled)[2], Point::new(50.0, 25.0));
        // 5120×3001 is shrunk to 2560×1501 (rounded): each axis scales back by its own ratio.
        let large = Prepared::new(GrayImage::new(5120, 3001));
        assert_eq!(large.base().dimensions(), (2560, 1501));
        let back = large.corners_in_frame(corners, Prep::Inverted)[2];
        assert_eq!(back.x, 200.0);
        assert!((back.y - 50.0 * 3001.0 / 1501.0).abs() < 1e-3, "{back:?}");
    }

    #[test]
    fn scan_upscaling_skips_large_and_empty_frames() {
        assert!(Prepared::new(GrayImage::new(UPSCALE_BELOW, 2000)).get(Prep::Upscaled).is_none());
        assert!(Prepared::new(GrayImage::new(0, 0)).get(Prep::Upscaled).is_none());
        let small = Prepared::new(GrayImage::new(10, 20));
        assert_eq!(small.get(Prep::Upscaled).map(GrayImage::dimensions), Some((20, 40)));
    }

    #[test]
    fn scan_adaptive_threshold_separates_dark_from_light_under_a_gradient() {
        // Modules of 4 pixels under light that ramps from 60 to 250 across the frame: a dark
        // module on the bright side (125) is lighter than a light one on the dim side (60), so no
        // global threshold separates them.
        let ground = |x: u32| 60 + (x * 190 / 95) as u8;
        let dark = |x: u32, y: u32| (x / 4 + y / 4).is_multiple_of(2);
        let gray = GrayImage::from_fn(96, 96, |x, y| Luma([if dark(x, y) { ground(x) / 2 } else { ground(x) }]));
        let binary = adaptive_threshold(&gray, ADAPTIVE_DIVISOR);
        for (x, y, pixel) in binary.enumerate_pixels() {
            assert_eq!(pixel.0[0] == 0, dark(x, y), "at {x},{y}");
        }
    }
}
