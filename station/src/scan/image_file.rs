//! Reading image files, and camera frames in JPEG, with every size bounded before anything is
//! decoded: the file's length before it is read, the dimensions from the image's header, and the
//! bytes the decoded pixels take. A few hundred kilobytes of PNG can declare 20000×20000 pixels;
//! decoding it would take a minute and gigabytes of memory, so it is refused from its header in
//! milliseconds instead. Every image the station reads goes through here (docs/scanning.md lists
//! the limits and why they keep real photographs readable).

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};
use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use thiserror::Error;

const MIB: u64 = 1024 * 1024;

/// The most an image may be, in file bytes, pixels and decoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Largest file read at all.
    pub max_file_bytes: u64,
    /// Widest and tallest image decoded, in pixels.
    pub max_side: u32,
    /// Most pixels decoded (width × height).
    pub max_pixels: u64,
    /// Most memory the decoder may take: the decoded pixels (with 16-bit channels, alpha, and so
    /// on), and metadata such as an embedded colour profile.
    pub max_decoded_bytes: u64,
}

impl ImageLimits {
    /// 64 MiB files, 16384 pixels a side, 50 megapixels (a 48-megapixel phone photograph, an A4
    /// page scanned at 600 dpi), 256 MiB decoded (50 megapixels of 8-bit RGBA).
    pub const DEFAULT: ImageLimits = ImageLimits {
        max_file_bytes: 64 * MIB,
        max_side: 16_384,
        max_pixels: 50_000_000,
        max_decoded_bytes: 256 * MIB,
    };

    /// The image crate's own limits, applied by its decoders as well.
    fn decoder_limits(&self, with_dimensions: bool) -> Limits {
        let mut limits = Limits::default();
        limits.max_alloc = Some(self.max_decoded_bytes);
        if with_dimensions {
            limits.max_image_width = Some(self.max_side);
            limits.max_image_height = Some(self.max_side);
        }
        limits
    }
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits::DEFAULT
    }
}

/// Why an image was not read. Each refusal happens before the pixels are decoded, except
/// [`ImageFileError::Decode`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImageFileError {
    #[error("cannot read image {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error(
        "image {path} is {} MiB{}, more than the {} MiB Keyfill reads; rescan or photograph the label at a lower resolution, or save it as JPEG",
        size.div_ceil(MIB), if *at_least { " or more" } else { "" }, limit / MIB
    )]
    FileTooLarge { path: PathBuf, size: u64, at_least: bool, limit: u64 },
    #[error(
        "image {path} is {width}×{height} pixels, more than Keyfill decodes ({max_side} pixels a side, {} megapixels in all); rescan or photograph the label at a lower resolution: a label needs far fewer pixels",
        max_pixels / 1_000_000
    )]
    TooManyPixels { path: PathBuf, width: u32, height: u32, max_side: u32, max_pixels: u64 },
    #[error(
        "image {path} would take {} MiB of memory to decode, more than the {} MiB Keyfill allows; rescan the label at a lower resolution or with 8 bits per channel",
        needed.div_ceil(MIB), limit / MIB
    )]
    TooMuchMemory { path: PathBuf, needed: u64, limit: u64 },
    #[error(
        "image {path} needs more memory to decode than the {} MiB Keyfill allows ({reason}); rescan the label at a lower resolution",
        limit / MIB
    )]
    DecoderLimit { path: PathBuf, limit: u64, reason: String },
    #[error("{path} is not a PNG or JPEG image")]
    UnknownFormat { path: PathBuf },
    #[error("cannot decode image {path} (damaged or cut short?): {reason}")]
    Decode { path: PathBuf, reason: String },
}

impl ImageFileError {
    /// Whether the image was refused for its size (file, pixels or memory), not for being
    /// unreadable or damaged.
    pub fn is_over_limit(&self) -> bool {
        matches!(
            self,
            ImageFileError::FileTooLarge { .. }
                | ImageFileError::TooManyPixels { .. }
                | ImageFileError::TooMuchMemory { .. }
                | ImageFileError::DecoderLimit { .. }
        )
    }
}

/// Reads the PNG or JPEG file at `path` (the format is told by its content, not its name).
pub fn read_image(path: &Path, limits: &ImageLimits) -> Result<DynamicImage, ImageFileError> {
    let io = |e: std::io::Error| ImageFileError::Io { path: path.to_owned(), reason: e.to_string() };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let too_large = |size, at_least| ImageFileError::FileTooLarge {
        path: path.to_owned(),
        size,
        at_least,
        limit: limits.max_file_bytes,
    };
    if size > limits.max_file_bytes {
        return Err(too_large(size, false));
    }
    // The length read is bounded too: the file may grow, or be a device that never ends.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limits.max_file_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(too_large(bytes.len() as u64, true));
    }
    decode(&bytes, None, limits).map_err(|refusal| refusal.at(path, limits))
}

/// Reads a grayscale image from the file at `path`.
pub fn read_gray(path: &Path, limits: &ImageLimits) -> Result<image::GrayImage, ImageFileError> {
    read_image(path, limits).map(DynamicImage::into_luma8)
}

/// Decodes an image held in memory, e.g. a camera's JPEG frame; `format` when it is known.
pub fn decode_image(
    bytes: &[u8],
    format: Option<ImageFormat>,
    limits: &ImageLimits,
) -> Result<DynamicImage, ImageFileError> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(ImageFileError::FileTooLarge {
            path: PathBuf::from("(in memory)"),
            size: bytes.len() as u64,
            at_least: false,
            limit: limits.max_file_bytes,
        });
    }
    decode(bytes, format, limits).map_err(|refusal| refusal.at(Path::new("(in memory)"), limits))
}

/// Why [`decode`] refused, before the path is known.
enum Refusal {
    TooManyPixels { width: u32, height: u32 },
    TooMuchMemory { needed: u64 },
    DecoderLimit(String),
    UnknownFormat,
    Decode(String),
}

impl Refusal {
    fn at(self, path: &Path, limits: &ImageLimits) -> ImageFileError {
        let path = path.to_owned();
        match self {
            Refusal::TooManyPixels { width, height } => ImageFileError::TooManyPixels {
                path,
                width,
                height,
                max_side: limits.max_side,
                max_pixels: limits.max_pixels,
            },
            Refusal::TooMuchMemory { needed } => {
                ImageFileError::TooMuchMemory { path, needed, limit: limits.max_decoded_bytes }
            }
            Refusal::DecoderLimit(reason) => {
                ImageFileError::DecoderLimit { path, limit: limits.max_decoded_bytes, reason }
            }
            Refusal::UnknownFormat => ImageFileError::UnknownFormat { path },
            Refusal::Decode(reason) => ImageFileError::Decode { path, reason },
        }
    }
}

fn classify(error: ImageError) -> Refusal {
    match error {
        // The decoder's own accounting (e.g. a huge embedded colour profile) hit the limit.
        ImageError::Limits(limit) => Refusal::DecoderLimit(limit.to_string()),
        other => Refusal::Decode(other.to_string()),
    }
}

fn reader(bytes: &[u8], format: Option<ImageFormat>) -> Result<ImageReader<Cursor<&[u8]>>, Refusal> {
    let reader = match format {
        Some(format) => ImageReader::with_format(Cursor::new(bytes), format),
        None => {
            ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| Refusal::Decode(e.to_string()))?
        }
    };
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => Ok(reader),
        _ => Err(Refusal::UnknownFormat),
    }
}

/// [`decode_unguarded`], with a decoder's panic turned into a refusal. The decoders are
/// third-party code run on hostile input, and some panic instead of failing: png 0.18.1 does on
/// a PLTE chunk whose length is not a multiple of 3 (found by the `image_file` fuzz target;
/// fixed upstream in image-rs/image-png#682, not yet released). Like the QR decoders
/// (`scan::decoders`), they run under `catch_unwind`, which needs the default
/// `panic = "unwind"`; the panic hook still prints the message on stderr.
fn decode(bytes: &[u8], format: Option<ImageFormat>, limits: &ImageLimits) -> Result<DynamicImage, Refusal> {
    // The decoders own everything they touch and only read `bytes`: nothing observable is left
    // half-updated when they unwind.
    catch_unwind(AssertUnwindSafe(|| decode_unguarded(bytes, format, limits))).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(Refusal::Decode(format!("the image decoder failed on it ({message})")))
    })
}

/// Header first: the dimensions are checked before the decoder is asked for a single pixel.
fn decode_unguarded(bytes: &[u8], format: Option<ImageFormat>, limits: &ImageLimits) -> Result<DynamicImage, Refusal> {
    // Without the image crate's dimension limits here, so that an image too large is refused
    // with its size, which the operator needs to know.
    let mut header = reader(bytes, format)?;
    header.limits(limits.decoder_limits(false));
    let (width, height) = header.into_dimensions().map_err(classify)?;
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels {
        return Err(Refusal::TooManyPixels { width, height });
    }
    let mut full = reader(bytes, format)?;
    full.limits(limits.decoder_limits(true));
    let decoder = full.into_decoder().map_err(classify)?;
    let needed = decoder.total_bytes();
    if needed > limits.max_decoded_bytes {
        return Err(Refusal::TooMuchMemory { needed });
    }
    DynamicImage::from_decoder(decoder).map_err(classify)
}
