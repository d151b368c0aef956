//! Where frames come from: one small trait, and the file-backed sources (a list of image files
//! played as a camera, a folder watched for new images). The V4L2 camera is in
//! [`super::camera`].

use super::image_file::{ImageFileError, ImageLimits};
use image::GrayImage;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// One grayscale frame and when it was captured, relative to the start of its source.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub image: GrayImage,
    pub at: Duration,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.image.width())
            .field("height", &self.image.height())
            .field("at", &self.at)
            .finish()
    }
}

/// What a source has next.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// Nothing new within the source's poll interval; ask again (the caller checks whether it
    /// should stop in between).
    Idle,
    /// The source has no more frames.
    Ended,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("cannot open camera {device}: {reason}")]
    CameraOpen { device: String, reason: String },
    #[error("camera {device} does not offer a frame format Keyfill can read (offers {offered})")]
    CameraFormat { device: String, offered: String },
    #[error("capturing from camera {device} failed: {reason}")]
    Capture { device: String, reason: String },
    #[error(transparent)]
    Image(#[from] ImageFileError),
    #[error("cannot list folder {path}: {reason}")]
    Folder { path: PathBuf, reason: String },
}

/// A source of frames. `next` may block, but for no more than about one frame interval or poll
/// interval, so that a background reader can stop promptly.
pub trait FrameSource: Send + fmt::Debug {
    fn next(&mut self) -> Result<Next, SourceError>;

    /// A short description for the operator ("camera /dev/video0", "folder ~/labels").
    fn describe(&self) -> String;
}

/// Image files played as a camera: each file is one frame, at `interval` apart (zero plays them
/// as fast as they decode). Used by tests and demos in place of a camera, and to replay captures.
#[derive(Debug)]
pub struct ImageFiles {
    paths: Vec<PathBuf>,
    interval: Duration,
    repeat: bool,
    position: usize,
    frames: u32,
    started: Option<Instant>,
}

impl ImageFiles {
    pub fn new(paths: Vec<PathBuf>, interval: Duration) -> Self {
        ImageFiles { paths, interval, repeat: false, position: 0, frames: 0, started: None }
    }

    /// Starts again from the first file after the last one instead of ending.
    pub fn repeating(mut self) -> Self {
        self.repeat = true;
        self
    }
}

impl FrameSource for ImageFiles {
    fn next(&mut self) -> Result<Next, SourceError> {
        if self.position >= self.paths.len() {
            if !self.repeat || self.paths.is_empty() {
                return Ok(Next::Ended);
            }
            self.position = 0;
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        // Frame times follow the nominal rate, as a camera's do, however long decoding takes.
        let at = self.interval.saturating_mul(self.frames);
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let path = &self.paths[self.position];
        self.position += 1;
        self.frames = self.frames.saturating_add(1);
        Ok(Next::Frame(Frame { image: read_gray(path)?, at }))
    }

    fn describe(&self) -> String {
        format!("{} image file(s)", self.paths.len())
    }
}

/// A folder watched for image files (PNG, JPEG): every file that appears or changes becomes one
/// frame. For label printers or phone apps that drop photographs into a shared folder.
///
/// Polling, not inotify: it works the same on network shares and costs one directory listing per
/// interval. Files present when watching starts are not frames, and a file is read only once its
/// size has stayed the same for one poll, so a half-written image is not read.
#[derive(Debug)]
pub struct FolderWatch {
    folder: PathBuf,
    poll: Duration,
    seen: HashMap<PathBuf, (SystemTime, u64)>,
    /// Files that changed at the last poll, with the size they had then.
    settling: HashMap<PathBuf, (SystemTime, u64)>,
    started: Instant,
}

impl FolderWatch {
    /// Starts watching `folder`; the files already in it are ignored.
    pub fn new(folder: impl Into<PathBuf>, poll: Duration) -> Result<Self, SourceError> {
        let folder = folder.into();
        let seen = list_images(&folder)?;
        Ok(FolderWatch { folder, poll, seen, settling: HashMap::new(), started: Instant::now() })
    }
}

impl FrameSource for FolderWatch {
    fn next(&mut self) -> Result<Next, SourceError> {
        let listing = list_images(&self.folder)?;
        // In name order, so that a batch of files dropped at once is read in a predictable order.
        let mut names: Vec<(&PathBuf, &(SystemTime, u64))> = listing.iter().collect();
        names.sort();
        let mut ready = None;
        for (path, stamp) in names {
            if self.seen.get(path) == Some(stamp) {
                continue;
            }
            if self.settling.get(path) == Some(stamp) && ready.is_none() {
                ready = Some((path.clone(), *stamp));
            } else if self.settling.get(path) != Some(stamp) {
                self.settling.insert(path.clone(), *stamp);
            }
        }
        self.settling.retain(|path, _| listing.contains_key(path));
        let Some((path, stamp)) = ready else {
            std::thread::sleep(self.poll);
            return Ok(Next::Idle);
        };
        self.settling.remove(&path);
        self.seen.insert(path.clone(), stamp);
        match read_gray(&path) {
            Ok(image) => Ok(Next::Frame(Frame { image, at: self.started.elapsed() })),
            // A file that is not an image after all (or was removed): skip it, keep watching.
            Err(error) => {
                tracing::warn!("{error}; skipped");
                Ok(Next::Idle)
            }
        }
    }

    fn describe(&self) -> String {
        format!("folder {}", self.folder.display())
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg"].iter().any(|known| e.eq_ignore_ascii_case(known)))
}

fn list_images(folder: &Path) -> Result<HashMap<PathBuf, (SystemTime, u64)>, SourceError> {
    let failed = |e: std::io::Error| SourceError::Folder { path: folder.to_owned(), reason: e.to_string() };
    let mut found = HashMap::new();
    for entry in std::fs::read_dir(folder).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let path = entry.path();
        // An entry that vanishes between listing and stat is simply not there yet.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() && is_image(&path) {
            found.insert(path, (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len()));
        }
    }
    Ok(found)
}

/// Reads an image file as grayscale, within [`ImageLimits::DEFAULT`].
pub fn read_gray(path: &Path) -> Result<GrayImage, SourceError> {
    Ok(super::image_file::read_gray(path, &ImageLimits::DEFAULT)?)
}
