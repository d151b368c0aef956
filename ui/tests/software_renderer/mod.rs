//! A small CPU rasterizer for egui's triangles, so screenshots need neither a GPU nor a
//! display: the harness hands it every texture change, and [`render`] fills the triangles of a
//! frame with interpolated vertex colours times bilinear texture samples, blended the way
//! egui's own renderers blend (premultiplied alpha, in gamma space).

use eframe::egui::epaint::textures::TexturesDelta;
use eframe::egui::epaint::{ClippedPrimitive, ColorImage, ImageData, Primitive, TextureId};
use eframe::egui::{Color32, Rect};
use egui_kittest::TestRenderer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub type Textures = Rc<RefCell<HashMap<TextureId, ColorImage>>>;

/// Keeps every texture the harness creates or patches.
pub struct SoftwareRenderer {
    pub textures: Textures,
}

impl TestRenderer for SoftwareRenderer {
    fn handle_delta(&mut self, delta: &mut TexturesDelta) {
        let mut textures = self.textures.borrow_mut();
        // Each texture's changes, in order: a whole image, then patches of it.
        for (id, image_deltas) in &delta.set {
            for image_delta in image_deltas {
                let ImageData::Color(patch) = &image_delta.image;
                match image_delta.pos {
                    None => {
                        textures.insert(*id, ColorImage::clone(patch));
                    }
                    Some([x0, y0]) => {
                        if let Some(texture) = textures.get_mut(id) {
                            let width = texture.size[0];
                            for y in 0..patch.size[1] {
                                for x in 0..patch.size[0] {
                                    texture.pixels[(y0 + y) * width + x0 + x] = patch.pixels[y * patch.size[0] + x];
                                }
                            }
                        }
                    }
                }
            }
        }
        for id in &delta.free {
            textures.remove(id);
        }
        // Handled: epaint insists that a delta is never dropped unapplied.
        delta.clear();
    }
}

#[derive(Clone, Copy)]
struct Rgba([f32; 4]);

impl Rgba {
    fn of(color: Color32) -> Self {
        Rgba([color.r() as f32, color.g() as f32, color.b() as f32, color.a() as f32])
    }
}

fn sample(texture: &ColorImage, u: f32, v: f32) -> Rgba {
    let [width, height] = texture.size;
    let x = (u * width as f32 - 0.5).clamp(0.0, (width - 1) as f32);
    let y = (v * height as f32 - 0.5).clamp(0.0, (height - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(width - 1), (y0 + 1).min(height - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let texel = |x: usize, y: usize| Rgba::of(texture.pixels[y * width + x]);
    let (a, b, c, d) = (texel(x0, y0), texel(x1, y0), texel(x0, y1), texel(x1, y1));
    let mut out = [0.0; 4];
    for (i, channel) in out.iter_mut().enumerate() {
        let top = a.0[i] + (b.0[i] - a.0[i]) * fx;
        let bottom = c.0[i] + (d.0[i] - c.0[i]) * fx;
        *channel = top + (bottom - top) * fy;
    }
    Rgba(out)
}

/// Where in a pixel its sample is taken: off the centre by less than any feature, so that a
/// pixel centre never lies exactly on an edge two triangles share (a rectangle's diagonal
/// passes through pixel centres). Such a pixel would be drawn by both triangles, and a
/// translucent rectangle, a modal's backdrop, would show a dotted seam.
const SAMPLE: (f32, f32) = (0.5 + 1.0 / 4096.0, 0.5 + 1.0 / 8192.0);

/// The frame as RGBA pixels, `size` pixels, at `pixels_per_point`, over `background`.
pub fn render(
    textures: &Textures,
    primitives: &[ClippedPrimitive],
    size: [usize; 2],
    pixels_per_point: f32,
    background: Color32,
) -> image::RgbaImage {
    let [width, height] = size;
    let mut frame = vec![Rgba::of(background); width * height];
    let textures = textures.borrow();
    for primitive in primitives {
        let Primitive::Mesh(mesh) = &primitive.primitive else { continue };
        let Some(texture) = textures.get(&mesh.texture_id) else { continue };
        let clip =
            Rect::from_min_max(primitive.clip_rect.min * pixels_per_point, primitive.clip_rect.max * pixels_per_point)
                .intersect(Rect::from_min_max([0.0, 0.0].into(), [width as f32, height as f32].into()));
        if clip.is_negative() {
            continue;
        }
        for triangle in mesh.indices.chunks_exact(3) {
            let [a, b, c] = [0, 1, 2].map(|i| &mesh.vertices[triangle[i] as usize]);
            let [pa, pb, pc] = [a.pos, b.pos, c.pos].map(|p| p * pixels_per_point);
            let area = (pb.x - pa.x) * (pc.y - pa.y) - (pb.y - pa.y) * (pc.x - pa.x);
            if area.abs() < 1e-6 {
                continue;
            }
            let min_x = pa.x.min(pb.x).min(pc.x).max(clip.min.x).floor() as usize;
            let max_x = (pa.x.max(pb.x).max(pc.x).min(clip.max.x).ceil() as usize).min(width);
            let min_y = pa.y.min(pb.y).min(pc.y).max(clip.min.y).floor() as usize;
            let max_y = (pa.y.max(pb.y).max(pc.y).min(clip.max.y).ceil() as usize).min(height);
            let colors = [a.color, b.color, c.color].map(Rgba::of);
            let uniform_color = a.color == b.color && b.color == c.color;
            for y in min_y..max_y {
                let py = y as f32 + SAMPLE.1;
                for x in min_x..max_x {
                    let px = x as f32 + SAMPLE.0;
                    let w0 = ((pb.x - px) * (pc.y - py) - (pb.y - py) * (pc.x - px)) / area;
                    let w1 = ((pc.x - px) * (pa.y - py) - (pc.y - py) * (pa.x - px)) / area;
                    let w2 = 1.0 - w0 - w1;
                    if w0 < 0.0 || w1 < 0.0 || w2 < 0.0 {
                        continue;
                    }
                    let u = w0 * a.uv.x + w1 * b.uv.x + w2 * c.uv.x;
                    let v = w0 * a.uv.y + w1 * b.uv.y + w2 * c.uv.y;
                    let texel = sample(texture, u, v);
                    let mut source = [0.0; 4];
                    for (i, channel) in source.iter_mut().enumerate() {
                        let vertex = if uniform_color {
                            colors[0].0[i]
                        } else {
                            w0 * colors[0].0[i] + w1 * colors[1].0[i] + w2 * colors[2].0[i]
                        };
                        *channel = texel.0[i] * vertex / 255.0;
                    }
                    let destination = &mut frame[y * width + x];
                    let keep = 1.0 - source[3] / 255.0;
                    for (i, channel) in destination.0.iter_mut().enumerate() {
                        *channel = source[i] + *channel * keep;
                    }
                }
            }
        }
    }
    let mut image = image::RgbaImage::new(width as u32, height as u32);
    for (pixel, color) in image.pixels_mut().zip(frame) {
        let [r, g, b, _] = color.0.map(|c| c.round().clamp(0.0, 255.0) as u8);
        *pixel = image::Rgba([r, g, b, 255]);
    }
    image
}
