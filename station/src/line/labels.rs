//! A lane's label sources, each a task sending what it reads to its lane: a handheld scanner in
//! serial mode, a drop folder, a camera. A source that fails (a scanner unplugged, a folder
//! gone) says so once and keeps trying; stopping the lane aborts its source.

use super::config::LabelSource;
use crate::scan::Scanner;
use crate::scan::camera::{CameraSettings, V4l2Camera};
use crate::scan::live::{LiveEvent, LiveOptions, LiveScan};
use keyfill_formats::qr::{MAX_TEXT_LEN, PREFIX};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a failed source waits before trying again.
const RETRY: Duration = Duration::from_secs(2);
/// A scanner line longer than this is not a label (the longest payload, and a scanner's prefix
/// or suffix characters).
const MAX_LINE: usize = MAX_TEXT_LEN + 64;
/// A partial line with no end within this is dropped: a scanner unplugged mid-label.
const LINE_STALL: Duration = Duration::from_secs(2);
/// How often the drop folder is listed.
const FOLDER_POLL: Duration = Duration::from_millis(250);
/// The largest text file a drop folder's label may be.
const MAX_TEXT_FILE: u64 = 16 * 1024;
/// The most files a drop folder's listing considers at once; more wait for the next listing.
const MAX_FOLDER_LISTING: usize = 10_000;
/// Subfolders of a drop folder that labels are moved to once handled.
pub const DONE_DIR: &str = "done";
pub const FAILED_DIR: &str = "failed";

/// What a source sends its lane.
#[derive(Debug)]
pub enum LabelInput {
    /// The source is open (again).
    Ready,
    Label(LabelRead),
    /// Something was read that is not a label.
    Rejected {
        reason: String,
        source: String,
        receipt: Option<Receipt>,
    },
    Problem {
        problem: String,
        advice: String,
    },
}

/// One label's text, where it came from, and for a dropped file the file to move once handled.
#[derive(Debug)]
pub struct LabelRead {
    pub text: String,
    pub source: String,
    pub receipt: Option<Receipt>,
    /// The API job the label was submitted as; its events carry the job's id.
    pub job: Option<String>,
}

/// A dropped label file, moved into `done/` or `failed/` once its device was handled; a file
/// never settled (the line stopped first, or crashed) is read again at the next start.
#[derive(Debug)]
pub struct Receipt {
    folder: PathBuf,
    file: PathBuf,
    /// The folder's files handed to the lane and not yet settled; settling takes this one out, so
    /// that a file dropped again under the same name is a new label.
    handed: Handed,
}

type Handed = Arc<Mutex<HashSet<PathBuf>>>;

impl Receipt {
    /// Moves the file into `done/` (`handled`) or `failed/`; never over another file.
    pub fn settle(self, handled: bool) {
        let into = self.folder.join(if handled { DONE_DIR } else { FAILED_DIR });
        let Some(name) = self.file.file_name() else { return };
        let mut target = into.join(name);
        let mut attempt = 1;
        while target.exists() && attempt < 1000 {
            target = into.join(format!("{}.{attempt}", name.to_string_lossy()));
            attempt += 1;
        }
        match std::fs::rename(&self.file, &target) {
            Ok(()) => {
                self.handed.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.file);
            }
            // Left where it is, and not read again by this run.
            Err(error) => tracing::warn!(file = %self.file.display(), %error, "cannot move a handled label file"),
        }
    }
}

/// Starts the source; it runs until aborted.
pub fn start(source: &LabelSource, to_lane: mpsc::Sender<LabelInput>) -> JoinHandle<()> {
    match source.clone() {
        LabelSource::Scanner { path, baud } => tokio::spawn(scanner(path, baud, to_lane)),
        LabelSource::Folder(path) => tokio::spawn(folder(path, to_lane)),
        LabelSource::Camera(path) => tokio::spawn(camera(path, to_lane)),
        // Its labels come through the lane's inbox: the source only says the lane is ready.
        LabelSource::Api => tokio::spawn(async move {
            let _ = to_lane.send(LabelInput::Ready).await;
        }),
    }
}

/// Reports a problem only when it differs from the last one reported.
struct Problems {
    last: Option<String>,
}

impl Problems {
    async fn report(&mut self, to_lane: &mpsc::Sender<LabelInput>, problem: String, advice: &str) {
        if self.last.as_ref() != Some(&problem) {
            self.last = Some(problem.clone());
            let _ = to_lane.send(LabelInput::Problem { problem, advice: advice.to_owned() }).await;
        }
    }

    async fn ready(&mut self, to_lane: &mpsc::Sender<LabelInput>) {
        self.last = None;
        let _ = to_lane.send(LabelInput::Ready).await;
    }
}

async fn scanner(path: PathBuf, baud: u32, to_lane: mpsc::Sender<LabelInput>) {
    let source = format!("scanner {}", path.display());
    let mut problems = Problems { last: None };
    loop {
        let opened = tokio_serial::SerialStream::open(&tokio_serial::new(path.to_string_lossy(), baud));
        let problem = match opened {
            Ok(stream) => {
                problems.ready(&to_lane).await;
                let ended = read_lines(stream, &source, &to_lane).await;
                format!("the scanner at {} stopped: {ended}", path.display())
            }
            Err(error) => format!("cannot open the scanner at {}: {error}", path.display()),
        };
        problems
            .report(
                &to_lane,
                problem,
                "Check that the scanner is plugged in and set to USB serial (CDC) mode; the lane opens it again by \
                 itself.",
            )
            .await;
        tokio::time::sleep(RETRY).await;
    }
}

/// Splits a scanner's bytes into labels (a line each, ended by CR or LF); returns why it stopped.
async fn read_lines(mut stream: impl AsyncReadExt + Unpin, source: &str, to_lane: &mpsc::Sender<LabelInput>) -> String {
    let mut line: Vec<u8> = Vec::new();
    let mut overlong = false;
    let mut buffer = [0u8; 512];
    loop {
        let read = if line.is_empty() && !overlong {
            stream.read(&mut buffer).await
        } else {
            match tokio::time::timeout(LINE_STALL, stream.read(&mut buffer)).await {
                Ok(read) => read,
                Err(_) => {
                    line.clear();
                    overlong = false;
                    reject(to_lane, source, "an incomplete label: no end of line followed within 2 s".into()).await;
                    continue;
                }
            }
        };
        let count = match read {
            Ok(0) => return "end of input".into(),
            Ok(count) => count,
            Err(error) => return error.to_string(),
        };
        for &byte in &buffer[..count] {
            if byte == b'\r' || byte == b'\n' {
                if overlong {
                    reject(to_lane, source, format!("a scanned line longer than {MAX_LINE} bytes is not a label"))
                        .await;
                } else if !line.is_empty() {
                    match String::from_utf8(std::mem::take(&mut line)) {
                        Ok(text) => {
                            let read = LabelRead { text, source: source.to_owned(), receipt: None, job: None };
                            let _ = to_lane.send(LabelInput::Label(read)).await;
                        }
                        Err(_) => reject(to_lane, source, "a scanned line that is not UTF-8 text".into()).await,
                    }
                }
                line.clear();
                overlong = false;
            } else if line.len() < MAX_LINE {
                line.push(byte);
            } else {
                overlong = true;
            }
        }
    }
}

async fn reject(to_lane: &mpsc::Sender<LabelInput>, source: &str, reason: String) {
    let _ = to_lane.send(LabelInput::Rejected { reason, source: source.to_owned(), receipt: None }).await;
}

/// One file of a drop folder's listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
}

async fn folder(path: PathBuf, to_lane: mpsc::Sender<LabelInput>) {
    let mut problems = Problems { last: None };
    // Files handed to the lane and not yet moved away; files seen once, to be read once their
    // size and time have held still for a listing (not while they are being written).
    let handed: Handed = Arc::default();
    let mut settling: HashMap<PathBuf, Stamp> = HashMap::new();
    let mut was_ready = false;
    loop {
        let listing = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || list_folder(&path)).await.unwrap_or_else(|e| Err(e.to_string()))
        };
        let files = match listing {
            Ok(files) => files,
            Err(error) => {
                was_ready = false;
                problems
                    .report(
                        &to_lane,
                        format!("cannot use the drop folder {}: {error}", path.display()),
                        "Create the folder and let the station's account read and write it (the lane moves each \
                         label file into done/ or failed/ once handled); the lane tries again by itself.",
                    )
                    .await;
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if !was_ready {
            was_ready = true;
            problems.ready(&to_lane).await;
        }
        let present: HashSet<&PathBuf> = files.iter().map(|(file, _)| file).collect();
        settling.retain(|file, _| present.contains(file));
        for (file, stamp) in &files {
            if handed.lock().unwrap_or_else(PoisonError::into_inner).contains(file) {
                continue;
            }
            if settling.get(file) != Some(stamp) {
                settling.insert(file.clone(), *stamp);
                continue;
            }
            settling.remove(file);
            handed.lock().unwrap_or_else(PoisonError::into_inner).insert(file.clone());
            let receipt = Receipt { folder: path.clone(), file: file.clone(), handed: handed.clone() };
            let input = read_label_file(file.clone(), receipt).await;
            if to_lane.send(input).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(FOLDER_POLL).await;
    }
}

/// The folder's candidate files, oldest first: regular files, not hidden, not partial
/// (`.part`, `.tmp`, `~`). Makes `done/` and `failed/` if missing.
fn list_folder(path: &Path) -> Result<Vec<(PathBuf, Stamp)>, String> {
    for sub in [DONE_DIR, FAILED_DIR] {
        std::fs::create_dir_all(path.join(sub)).map_err(|e| e.to_string())?;
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| e.to_string())? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp") || name.ends_with('~') {
            continue;
        }
        // A file that vanishes between listing and stat is simply not there.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            let stamp = Stamp { modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), len: meta.len() };
            files.push((entry.path(), stamp));
            if files.len() >= MAX_FOLDER_LISTING {
                break;
            }
        }
    }
    files.sort_by(|(a, sa), (b, sb)| sa.modified.cmp(&sb.modified).then_with(|| a.cmp(b)));
    Ok(files)
}

/// A dropped file's label: its text (`.txt`), or the Keyfill code in its image (`.png`, `.jpg`).
async fn read_label_file(file: PathBuf, receipt: Receipt) -> LabelInput {
    let source = format!("file {}", keyfill_formats::printable(&file.display().to_string()));
    let extension = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    let text = match extension.as_deref() {
        Some("txt") => {
            let file = file.clone();
            tokio::task::spawn_blocking(move || read_text(&file)).await.unwrap_or_else(|e| Err(e.to_string()))
        }
        Some("png" | "jpg" | "jpeg") => {
            let file = file.clone();
            tokio::task::spawn_blocking(move || {
                let texts = crate::qr_image::decode_file(&file).map_err(|e| e.to_string())?;
                texts
                    .into_iter()
                    .find(|t| t.trim_start().starts_with(PREFIX))
                    .ok_or_else(|| "its image holds a QR code, but not a Keyfill label".to_owned())
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
        }
        _ => Err("not a label file (.txt holding the label's text, or a .png or .jpg of the label)".into()),
    };
    match text {
        Ok(text) => LabelInput::Label(LabelRead { text, source, receipt: Some(receipt), job: None }),
        Err(reason) => LabelInput::Rejected { reason, source, receipt: Some(receipt) },
    }
}

fn read_text(file: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_TEXT_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_TEXT_FILE {
        return Err(format!("larger than {MAX_TEXT_FILE} bytes: not a label"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_owned())
}

async fn camera(path: PathBuf, to_lane: mpsc::Sender<LabelInput>) {
    let source = format!("camera {}", path.display());
    let mut problems = Problems { last: None };
    loop {
        let settings = CameraSettings { device: path.clone(), ..CameraSettings::default() };
        let opened = tokio::task::spawn_blocking(move || V4l2Camera::open(&settings)).await.unwrap_or_else(|e| {
            Err(crate::scan::source::SourceError::Capture { device: String::new(), reason: e.to_string() })
        });
        let problem =
            match opened.map(|camera| LiveScan::start(Box::new(camera), Scanner::default(), LiveOptions::default())) {
                Ok(Ok(mut live)) => {
                    problems.ready(&to_lane).await;
                    loop {
                        match live.next().await {
                            Some(LiveEvent::Scanned { result, .. }) => {
                                let read =
                                    LabelRead { text: result.text, source: source.clone(), receipt: None, job: None };
                                if to_lane.send(LabelInput::Label(read)).await.is_err() {
                                    return;
                                }
                            }
                            Some(LiveEvent::SourceFailed(error)) => break error.to_string(),
                            Some(_) => {}
                            None => break "the camera stopped".to_owned(),
                        }
                    }
                }
                Ok(Err(error)) => error.to_string(),
                Err(error) => error.to_string(),
            };
        problems
            .report(
                &to_lane,
                problem,
                "Check that the camera is plugged in and no other program uses it; the lane opens it again by itself.",
            )
            .await;
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &'static [u8]) -> Vec<String> {
        let (sender, mut receiver) = mpsc::channel(16);
        let ended = read_lines(input, "scanner test", &sender).await;
        assert_eq!(ended, "end of input");
        drop(sender);
        let mut seen = Vec::new();
        while let Some(input) = receiver.recv().await {
            seen.push(match input {
                LabelInput::Label(read) => format!("label {}", read.text),
                LabelInput::Rejected { reason, .. } => format!("rejected {reason}"),
                other => format!("{other:?}"),
            });
        }
        seen
    }

    #[tokio::test]
    async fn line_scanner_lines_end_with_cr_or_lf_and_blank_lines_are_skipped() {
        assert_eq!(lines_of(b"KF1:AB\r\n\r\nKF1:CD\nKF1:EF\r").await, ["label KF1:AB", "label KF1:CD", "label KF1:EF"]);
    }

    #[tokio::test]
    async fn line_scanner_refuses_overlong_and_non_text_lines_and_goes_on() {
        static LONG: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut bytes = vec![b'A'; MAX_LINE + 10];
            bytes.extend_from_slice(b"\n\xff\xfe\nKF1:OK\n");
            bytes
        });
        let seen = lines_of(LONG.as_slice()).await;
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen[0].starts_with("rejected a scanned line longer than"), "{seen:?}");
        assert_eq!(seen[1], "rejected a scanned line that is not UTF-8 text");
        assert_eq!(seen[2], "label KF1:OK");
    }

    #[tokio::test]
    async fn line_folder_labels_are_read_once_settled_and_moved_when_handled() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(".hidden"), "KF1:X").expect("write");
        std::fs::write(dir.path().join("b.part"), "KF1:X").expect("write");
        std::fs::write(dir.path().join("a.txt"), "KF1:AAA\n").expect("write");
        std::fs::write(dir.path().join("c.bin"), [0u8; 4]).expect("write");
        let (sender, mut receiver) = mpsc::channel(1);
        let task = tokio::spawn(folder(dir.path().to_owned(), sender));
        async fn next(receiver: &mut mpsc::Receiver<LabelInput>) -> LabelInput {
            tokio::time::timeout(Duration::from_secs(10), receiver.recv()).await.expect("in time").expect("open")
        }
        assert!(matches!(next(&mut receiver).await, LabelInput::Ready));
        let mut rejected = None;
        let mut label = None;
        for _ in 0..2 {
            match next(&mut receiver).await {
                LabelInput::Label(read) => label = Some(read),
                LabelInput::Rejected { reason, receipt, .. } => rejected = Some((reason, receipt)),
                other => panic!("{other:?}"),
            }
        }
        let label = label.expect("a.txt read");
        assert_eq!(label.text, "KF1:AAA\n");
        let (reason, receipt) = rejected.expect("c.bin refused");
        assert!(reason.starts_with("not a label file"), "{reason}");
        receipt.expect("a file").settle(false);
        label.receipt.expect("a file").settle(true);
        assert!(dir.path().join(DONE_DIR).join("a.txt").exists());
        assert!(dir.path().join(FAILED_DIR).join("c.bin").exists());
        // A file dropped again under a handled name is read again, and kept beside the first.
        std::fs::write(dir.path().join("a.txt"), "KF1:BBB").expect("write");
        let LabelInput::Label(again) = next(&mut receiver).await else { panic!("read again") };
        again.receipt.expect("a file").settle(true);
        assert!(dir.path().join(DONE_DIR).join("a.txt.1").exists());
        task.abort();
    }
}
