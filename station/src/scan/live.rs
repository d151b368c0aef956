//! The live scanner: a capture thread reads frames from a [`FrameSource`] at the source's rate,
//! a decoder thread decodes the newest frame, and deduplicated [`LiveEvent`]s come out of a
//! channel that the UI drains each frame (or awaits).
//!
//! Between the two threads sits a one-frame mailbox: a frame that arrives while the decoder is
//! busy replaces the waiting one, so the decoder always works on the newest frame and never falls
//! behind the camera. Each frame runs the first (cheap) stage of the cascade plus one of the
//! retry stages in turn, which bounds the work per frame while every stage still gets tried
//! within a few frames of a label that stays in view.

use super::source::{Frame, FrameSource, Next, SourceError};
use super::{Prepared, ScanResult, Scanner, run_stages};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc;

/// Called after each event is queued, from the decoder thread: the GUI passes
/// `egui::Context::request_repaint` so that it drains the channel promptly.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
pub struct LiveOptions {
    /// A code that has not been seen for this long is reported again when it reappears; while it
    /// stays in view (even if some frames miss it) it is reported once.
    pub forget_after: Duration,
    /// Events held for a consumer that is not draining; beyond it the decoder waits (and frames
    /// are dropped meanwhile).
    pub capacity: usize,
    pub waker: Option<Waker>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions { forget_after: Duration::from_secs(2), capacity: 32, waker: None }
    }
}

impl fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveOptions")
            .field("forget_after", &self.forget_after)
            .field("capacity", &self.capacity)
            .field("waker", &self.waker.as_ref().map(|_| "set"))
            .finish()
    }
}

#[derive(Debug)]
#[non_exhaustive]
pub enum LiveEvent {
    /// A code came into view. Its corners are in the pixels of the frame it was read in, of
    /// `frame_size` (width, height): a preview scales them as it scales that frame.
    Scanned { result: ScanResult, frame_size: (u32, u32) },
    /// The source failed; no more events follow.
    SourceFailed(SourceError),
    /// The source has no more frames (a file source played to its end); no more events follow.
    Ended,
}

/// Frame counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub captured: u64,
    pub decoded: u64,
    /// Frames replaced by a newer one before the decoder got to them.
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    captured: AtomicU64,
    decoded: AtomicU64,
    dropped: AtomicU64,
}

/// A running live scan. Dropping it stops both threads (without waiting for them).
#[derive(Debug)]
pub struct LiveScan {
    events: mpsc::Receiver<LiveEvent>,
    mailbox: Arc<Mailbox>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

impl LiveScan {
    /// Starts reading `source` and decoding its frames with `scanner`'s stages.
    pub fn start(source: Box<dyn FrameSource>, scanner: Scanner, options: LiveOptions) -> std::io::Result<Self> {
        let (sender, events) = mpsc::channel(options.capacity.max(1));
        let mailbox = Arc::new(Mailbox::default());
        let counters = Arc::new(Counters::default());
        let capture = {
            let (mailbox, counters) = (mailbox.clone(), counters.clone());
            std::thread::Builder::new()
                .name("scan-capture".into())
                .spawn(move || capture(source, &mailbox, &counters))?
        };
        let decode = {
            let (mailbox, counters) = (mailbox.clone(), counters.clone());
            std::thread::Builder::new()
                .name("scan-decode".into())
                .spawn(move || decode(&scanner, &options, &mailbox, &counters, &sender))
        };
        let decode = match decode {
            Ok(handle) => handle,
            Err(error) => {
                mailbox.stop();
                return Err(error);
            }
        };
        Ok(LiveScan { events, mailbox, counters, threads: vec![capture, decode] })
    }

    /// The next event if one is waiting; for the UI's per-frame drain.
    pub fn try_next(&mut self) -> Option<LiveEvent> {
        self.events.try_recv().ok()
    }

    /// Waits for the next event; `None` once the scan has ended and every event was taken.
    pub async fn next(&mut self) -> Option<LiveEvent> {
        self.events.recv().await
    }

    pub fn stats(&self) -> LiveStats {
        LiveStats {
            captured: self.counters.captured.load(Ordering::Relaxed),
            decoded: self.counters.decoded.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops both threads and waits for them: at most one frame interval and one decode.
    pub fn stop(mut self) -> LiveStats {
        self.mailbox.stop();
        // Unblocks a decoder waiting for room in the channel.
        self.events.close();
        for thread in self.threads.drain(..) {
            // A panic in a thread has already been reported by the panic hook.
            let _ = thread.join();
        }
        self.stats()
    }
}

impl Drop for LiveScan {
    fn drop(&mut self) {
        self.mailbox.stop();
    }
}

/// How the source ended, for the decoder to report after the last frame.
#[derive(Debug)]
enum End {
    Ended,
    Failed(SourceError),
}

#[derive(Debug, Default)]
struct Slot {
    frame: Option<Frame>,
    end: Option<End>,
    stopped: bool,
}

/// The one-frame hand-over between the capture and decoder threads.
#[derive(Debug, Default)]
struct Mailbox {
    slot: Mutex<Slot>,
    changed: Condvar,
}

impl Mailbox {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot stays consistent even if a holder panicked: every update is one assignment.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leaves `frame` for the decoder; returns whether it replaced one the decoder never took.
    fn put(&self, frame: Frame) -> bool {
        let replaced = self.lock().frame.replace(frame).is_some();
        self.changed.notify_one();
        replaced
    }

    fn end(&self, end: End) {
        self.lock().end = Some(end);
        self.changed.notify_one();
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Waits for the next frame; `Err` with the source's end once no frame is left, or `Ok(None)`
    /// when stopped.
    fn take(&self) -> Result<Option<Frame>, End> {
        let mut slot = self.lock();
        loop {
            if slot.stopped {
                return Ok(None);
            }
            if let Some(frame) = slot.frame.take() {
                return Ok(Some(frame));
            }
            if let Some(end) = slot.end.take() {
                return Err(end);
            }
            slot = self.changed.wait(slot).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

fn capture(mut source: Box<dyn FrameSource>, mailbox: &Mailbox, counters: &Counters) {
    while !mailbox.stopped() {
        match source.next() {
            Ok(Next::Frame(frame)) => {
                counters.captured.fetch_add(1, Ordering::Relaxed);
                if mailbox.put(frame) {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Next::Idle) => {}
            Ok(Next::Ended) => return mailbox.end(End::Ended),
            Err(error) => return mailbox.end(End::Failed(error)),
        }
    }
}

fn decode(
    scanner: &Scanner,
    options: &LiveOptions,
    mailbox: &Mailbox,
    counters: &Counters,
    events: &mpsc::Sender<LiveEvent>,
) {
    let stages = scanner.stages();
    let mut seen = Deduplicator::new(options.forget_after);
    let mut retry = 0usize;
    let send = |event: LiveEvent| {
        // The consumer went away: nobody is listening, so stop reading the camera too.
        if events.blocking_send(event).is_err() {
            mailbox.stop();
            return false;
        }
        if let Some(wake) = &options.waker {
            wake();
        }
        true
    };
    loop {
        let frame = match mailbox.take() {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(End::Ended) => {
                send(LiveEvent::Ended);
                return;
            }
            Err(End::Failed(error)) => {
                send(LiveEvent::SourceFailed(error));
                return;
            }
        };
        let this_frame = match stages.split_first() {
            Some((first, [])) => vec![*first],
            Some((first, retries)) => {
                let next = retries[retry % retries.len()];
                retry = retry.wrapping_add(1);
                vec![*first, next]
            }
            None => Vec::new(),
        };
        let frame_size = frame.image.dimensions();
        let found = run_stages(&Prepared::new(frame.image), &this_frame);
        counters.decoded.fetch_add(1, Ordering::Relaxed);
        for result in found {
            if seen.is_new(&result.text, frame.at) && !send(LiveEvent::Scanned { result, frame_size }) {
                return;
            }
        }
    }
}

/// Remembers when each text was last seen, in frame time, to report each appearance once.
#[derive(Debug)]
pub struct Deduplicator {
    forget_after: Duration,
    last_seen: HashMap<String, Duration>,
}

impl Deduplicator {
    pub fn new(forget_after: Duration) -> Self {
        Deduplicator { forget_after, last_seen: HashMap::new() }
    }

    /// Records a sighting of `text` at frame time `at`; true if it had not been seen within
    /// `forget_after` before.
    pub fn is_new(&mut self, text: &str, at: Duration) -> bool {
        let forget_after = self.forget_after;
        // Forget what has been out of view long enough, so the map stays small.
        self.last_seen.retain(|_, seen| at.saturating_sub(*seen) <= forget_after);
        self.last_seen.insert(text.to_owned(), at).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_dedup_reports_a_code_once_while_in_view_and_again_after_absence() {
        let mut seen = Deduplicator::new(Duration::from_millis(500));
        let ms = Duration::from_millis;
        assert!(seen.is_new("A", ms(0)));
        assert!(!seen.is_new("A", ms(300)));
        assert!(!seen.is_new("A", ms(700)), "seen 400 ms ago: still in view");
        assert!(seen.is_new("B", ms(750)));
        assert!(seen.is_new("A", ms(1300)), "out of view for 600 ms");
    }
}
