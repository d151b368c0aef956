//! Camera capture on Linux through V4L2 (the `linuxvideo` crate: plain ioctls in Rust, no C
//! library and no bindgen at build time).
//!
//! Only the luma plane matters to a QR decoder, so the camera is asked for a format whose luma
//! is cheap to take: 8-bit grey, then YUYV (every other byte), then Motion JPEG (decoded).

use super::image_file::ImageLimits;
use super::source::{Frame, FrameSource, Next, SourceError};
use image::GrayImage;
use linuxvideo::format::{PixFormat, PixelFormat};
use linuxvideo::stream::ReadStream;
use linuxvideo::{BufType, CapabilityFlags, Device};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The camera settings the operator chooses; persisted by the GUI with its other settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CameraSettings {
    /// The V4L2 device node, e.g. `/dev/video0`.
    pub device: PathBuf,
    /// Requested frame size; the driver picks the nearest it supports.
    pub width: u32,
    pub height: u32,
}

impl Default for CameraSettings {
    fn default() -> Self {
        // 720p keeps a label's modules several pixels wide at arm's length while one rxing pass
        // stays a few milliseconds.
        CameraSettings { device: PathBuf::from("/dev/video0"), width: 1280, height: 720 }
    }
}

/// A capture device, as offered in the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    pub device: PathBuf,
    pub name: String,
    /// The pixel formats (fourcc) the device offers, e.g. `YUYV`, `MJPG`.
    pub formats: Vec<String>,
}

/// The video capture devices present. A UVC webcam has two nodes, one of them for metadata; only
/// nodes that capture video are listed. Devices that cannot be opened (busy, no permission) are
/// left out.
pub fn list_cameras() -> Vec<CameraInfo> {
    let Ok(devices) = linuxvideo::list() else { return Vec::new() };
    let mut cameras: Vec<CameraInfo> = devices
        .filter_map(Result::ok)
        .filter_map(|device| {
            let capabilities = device.capabilities().ok()?;
            if !capabilities.device_capabilities().contains(CapabilityFlags::VIDEO_CAPTURE) {
                return None;
            }
            let formats = device
                .formats(BufType::VIDEO_CAPTURE)
                .filter_map(Result::ok)
                .map(|desc| fourcc_text(desc.pixel_format()))
                .collect();
            Some(CameraInfo { device: device.path().ok()?, name: capabilities.card().to_owned(), formats })
        })
        .collect();
    cameras.sort_by(|a, b| a.device.cmp(&b.device));
    cameras
}

/// The frame encodings Keyfill reads, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CameraEncoding {
    Grey,
    Yuyv,
    Mjpeg,
}

impl CameraEncoding {
    const PREFERENCE: [CameraEncoding; 3] = [CameraEncoding::Grey, CameraEncoding::Yuyv, CameraEncoding::Mjpeg];

    fn pixel_format(self) -> PixelFormat {
        match self {
            CameraEncoding::Grey => PixelFormat::from_fourcc(*b"GREY"),
            CameraEncoding::Yuyv => PixelFormat::YUYV,
            CameraEncoding::Mjpeg => PixelFormat::MJPG,
        }
    }
}

/// A V4L2 camera streaming frames.
pub struct V4l2Camera {
    device: String,
    stream: ReadStream,
    encoding: CameraEncoding,
    width: u32,
    height: u32,
    bytes_per_line: u32,
    started: Instant,
}

impl fmt::Debug for V4l2Camera {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V4l2Camera")
            .field("device", &self.device)
            .field("encoding", &self.encoding)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// How long `next` waits for a frame before reporting [`Next::Idle`]; short, so that stopping
/// never waits for a stalled camera.
const POLL: Duration = Duration::from_millis(5);

impl V4l2Camera {
    /// Opens the camera and starts streaming at the size nearest to the settings'.
    pub fn open(settings: &CameraSettings) -> Result<Self, SourceError> {
        let device = settings.device.display().to_string();
        let open_failed = |e: std::io::Error| SourceError::CameraOpen { device: device.clone(), reason: e.to_string() };
        let camera = Device::open(&settings.device).map_err(open_failed)?;
        let offered: Vec<PixelFormat> =
            camera.formats(BufType::VIDEO_CAPTURE).filter_map(Result::ok).map(|d| d.pixel_format()).collect();
        let encoding = CameraEncoding::PREFERENCE
            .into_iter()
            .find(|e| offered.contains(&e.pixel_format()))
            .ok_or_else(|| SourceError::CameraFormat {
                device: device.clone(),
                offered: offered.iter().map(|f| fourcc_text(*f)).collect::<Vec<_>>().join(", "),
            })?;
        let capture = camera
            .video_capture(PixFormat::new(settings.width, settings.height, encoding.pixel_format()))
            .map_err(open_failed)?;
        let format = capture.format();
        if format.pixel_format() != encoding.pixel_format() {
            return Err(SourceError::CameraFormat { device, offered: fourcc_text(format.pixel_format()) });
        }
        let (width, height, bytes_per_line) = (format.width(), format.height(), format.bytes_per_line());
        let stream = capture.into_stream().map_err(open_failed)?;
        Ok(V4l2Camera { device, stream, encoding, width, height, bytes_per_line, started: Instant::now() })
    }

    /// The negotiated frame size.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

impl FrameSource for V4l2Camera {
    fn next(&mut self) -> Result<Next, SourceError> {
        let failed = |e: std::io::Error| SourceError::Capture { device: self.device.clone(), reason: e.to_string() };
        if self.stream.will_block().map_err(failed)? {
            std::thread::sleep(POLL);
            return Ok(Next::Idle);
        }
        let (encoding, width, height, stride) = (self.encoding, self.width, self.height, self.bytes_per_line);
        let image =
            self.stream.dequeue(|buffer| Ok(to_gray(encoding, &buffer, width, height, stride))).map_err(failed)?;
        match image {
            Some(image) => Ok(Next::Frame(Frame { image, at: self.started.elapsed() })),
            // A truncated or corrupt frame (USB hiccup): drop it, the next one comes in 1/30 s.
            None => Ok(Next::Idle),
        }
    }

    fn describe(&self) -> String {
        format!("camera {} ({}×{}, {:?})", self.device, self.width, self.height, self.encoding)
    }
}

/// The luma plane of one captured buffer, or `None` if the buffer is too short or not decodable.
pub fn to_gray(
    encoding: CameraEncoding,
    data: &[u8],
    width: u32,
    height: u32,
    bytes_per_line: u32,
) -> Option<GrayImage> {
    match encoding {
        CameraEncoding::Grey => pick_luma(data, width, height, bytes_per_line.max(width), 1),
        CameraEncoding::Yuyv => pick_luma(data, width, height, bytes_per_line.max(width.saturating_mul(2)), 2),
        // A frame's JPEG header may claim any size: read within the same limits as files.
        CameraEncoding::Mjpeg => {
            super::image_file::decode_image(data, Some(image::ImageFormat::Jpeg), &ImageLimits::DEFAULT)
                .ok()
                .map(image::DynamicImage::into_luma8)
        }
    }
}

/// Takes every `step`-th byte of each row: the luma of GREY (step 1) and YUYV (step 2) frames.
fn pick_luma(data: &[u8], width: u32, height: u32, stride: u32, step: usize) -> Option<GrayImage> {
    let (width, height, stride) = (width as usize, height as usize, stride as usize);
    let needed = stride.checked_mul(height.checked_sub(1)?)?.checked_add(width.checked_mul(step)?)?;
    if width == 0 || data.len() < needed {
        return None;
    }
    let mut luma = Vec::with_capacity(width * height);
    for row in data.chunks(stride).take(height) {
        luma.extend(row.iter().step_by(step).take(width));
    }
    GrayImage::from_raw(width as u32, height as u32, luma)
}

fn fourcc_text(format: PixelFormat) -> String {
    String::from_utf8_lossy(&format.as_fourcc()).trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_yuyv_luma_is_every_other_byte_and_respects_the_stride() {
        // 2×2 pixels, rows padded to 6 bytes: Y U Y V pad pad.
        let data = [10, 1, 20, 2, 0, 0, 30, 3, 40, 4, 0, 0];
        let gray = to_gray(CameraEncoding::Yuyv, &data, 2, 2, 6);
        assert_eq!(gray.map(|g| g.into_raw()), Some(vec![10, 20, 30, 40]));
    }

    #[test]
    fn scan_short_or_corrupt_buffers_are_dropped_not_read_out_of_bounds() {
        assert!(to_gray(CameraEncoding::Yuyv, &[1, 2, 3], 2, 2, 4).is_none());
        assert!(to_gray(CameraEncoding::Grey, &[], 0, 0, 0).is_none());
        assert!(to_gray(CameraEncoding::Mjpeg, b"not a jpeg", 2, 2, 0).is_none());
    }

    #[test]
    #[ignore = "needs a V4L2 camera at /dev/video0 (none on CI or the build machines)"]
    fn scan_camera_delivers_frames() {
        let mut camera = V4l2Camera::open(&CameraSettings::default()).expect("open /dev/video0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Next::Frame(frame) = camera.next().expect("capture") {
                assert_eq!(frame.image.dimensions(), camera.size());
                return;
            }
        }
        panic!("no frame from {} within 5 s", camera.describe());
    }
}
