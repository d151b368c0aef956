//! What the line tells the MES: one JSON object per line on stdout (JSON Lines), schema
//! [`SCHEMA`], documented in docs/line.md. Each event carries an id that the station's log line
//! for the same event carries too, so the two can be joined.

use super::config::LaneName;
use serde::Serialize;
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The schema every line names; a change that is not a pure addition of fields or events gets
/// a new one.
pub const SCHEMA: &str = "keyfill.line.v1";

/// A device as its label names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRef {
    pub id: String,
    pub name: String,
    pub serial_number: String,
}

/// A lane as `line_started` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneSummary {
    pub lane: String,
    pub link: String,
    pub labels: String,
}

/// Where an order stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderStanding {
    pub order: String,
    pub expected: i64,
    pub provisioned: i64,
    pub failed: i64,
    pub pending: i64,
    pub remaining: i64,
}

/// The events, tagged by `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum LineEvent {
    LineStarted {
        station: String,
        station_id: String,
        order: String,
        lanes: Vec<LaneSummary>,
    },
    /// The lane's port and label source are open.
    LaneReady {
        link: String,
        labels: String,
    },
    /// Something on the station's side keeps the lane from working (a scanner unplugged, a USB
    /// adapter missing, a folder unreadable); it is tried again, and reported again only when it
    /// changes.
    LaneProblem {
        problem: String,
        advice: String,
    },
    LabelRead {
        device: DeviceRef,
        source: String,
    },
    /// A label that names no device: not a Keyfill label, or damaged.
    LabelRejected {
        reason: String,
        source: String,
    },
    /// Another station sharing the database is working on the device; the lane waits.
    Waiting {
        device: DeviceRef,
        station: String,
    },
    Step {
        device: DeviceRef,
        step: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        key_id: Option<String>,
    },
    Provisioned {
        device: DeviceRef,
        key_id: String,
        /// The device held its pending key from an earlier session: confirmed, not keyed again.
        reconciled: bool,
        millis: u64,
    },
    /// Provisioned before this label was read; not keyed again.
    AlreadyProvisioned {
        device: DeviceRef,
        key_id: Option<String>,
    },
    /// Not provisioned. `state` is the device's record afterwards: `pending` (the key was sent and
    /// not confirmed: the next read of its label asks the device), `failed`, or none (nothing was
    /// recorded: refused before any key existed).
    Failed {
        device: DeviceRef,
        error: String,
        advice: Option<String>,
        state: Option<String>,
        millis: u64,
    },
    /// A label read but not started because the line is stopping; it is read again at the next
    /// start (a folder's file stays in place).
    NotStarted {
        device: DeviceRef,
    },
    OrderProgress(OrderStanding),
    OrderComplete(OrderStanding),
    Stopping {
        signal: String,
        in_flight: usize,
    },
    LaneStopped {
        provisioned: u64,
        failed: u64,
        rejected: u64,
    },
    LineStopped {
        provisioned: u64,
        failed: u64,
        rejected: u64,
    },
    /// A rotation or export run started through the API (`keyfill serve`).
    RunStarted {
        run: String,
        kind: &'static str,
        devices: usize,
    },
    RunFinished {
        run: String,
        kind: &'static str,
        devices: usize,
        failed: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl LineEvent {
    /// The `event` tag.
    pub fn kind(&self) -> &'static str {
        match self {
            LineEvent::LineStarted { .. } => "line_started",
            LineEvent::LaneReady { .. } => "lane_ready",
            LineEvent::LaneProblem { .. } => "lane_problem",
            LineEvent::LabelRead { .. } => "label_read",
            LineEvent::LabelRejected { .. } => "label_rejected",
            LineEvent::Waiting { .. } => "waiting",
            LineEvent::Step { .. } => "step",
            LineEvent::Provisioned { .. } => "provisioned",
            LineEvent::AlreadyProvisioned { .. } => "already_provisioned",
            LineEvent::Failed { .. } => "failed",
            LineEvent::NotStarted { .. } => "not_started",
            LineEvent::OrderProgress(_) => "order_progress",
            LineEvent::OrderComplete(_) => "order_complete",
            LineEvent::Stopping { .. } => "stopping",
            LineEvent::LaneStopped { .. } => "lane_stopped",
            LineEvent::LineStopped { .. } => "line_stopped",
            LineEvent::RunStarted { .. } => "run_started",
            LineEvent::RunFinished { .. } => "run_finished",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    schema: &'static str,
    event_id: &'a str,
    seq: u64,
    at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lane: Option<&'a str>,
    /// The API job the event is about (`keyfill serve`).
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a str>,
    #[serde(flatten)]
    event: &'a LineEvent,
}

/// An event as it was sent, for those who watch the sink (the API's jobs and event stream).
#[derive(Debug)]
pub struct Emitted<'a> {
    pub event_id: &'a str,
    /// The JSON line, without its newline.
    pub json: &'a str,
    pub lane: Option<&'a str>,
    pub job: Option<&'a str>,
    pub event: &'a LineEvent,
}

/// Called with each event, in order, under the sink's lock: keep it short.
pub type Observer = Box<dyn Fn(&Emitted<'_>) + Send + Sync>;

/// Where events go: JSON Lines on a writer (stdout), each also logged with its id.
pub struct EventSink {
    out: Mutex<Box<dyn Write + Send>>,
    run: String,
    seq: AtomicU64,
    write_failed: AtomicBool,
    observers: Vec<Observer>,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink").field("run", &self.run).field("seq", &self.seq).finish()
    }
}

impl EventSink {
    /// Events of this run get ids `RUN-SEQ`, `RUN` random: unique across runs, ordered within one.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        // An id, not a secret: a failed random source still gives a usable (clock-based) one.
        let run = crate::seal::random_array::<4>().unwrap_or_else(|_| (crate::home::unix_now() as u32).to_be_bytes());
        EventSink {
            out: Mutex::new(out),
            run: hex::encode(run),
            seq: AtomicU64::new(0),
            write_failed: false.into(),
            observers: Vec::new(),
        }
    }

    /// Also hands every event to `observer`.
    pub fn observed_by(mut self, observer: Observer) -> Self {
        self.observers.push(observer);
        self
    }

    /// Writes the event as one line, flushed, and logs it under the same id. A reader that went
    /// away costs the events (the records are in the database), never the line's work.
    pub fn emit(&self, lane: Option<&LaneName>, event: LineEvent) {
        self.emit_for_job(lane, None, event);
    }

    /// [`emit`](Self::emit) for an event about the API job `job`.
    pub fn emit_for_job(&self, lane: Option<&LaneName>, job: Option<&str>, event: LineEvent) {
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Numbered under the lock, so that the order of lines is the order of ids.
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let event_id = format!("{}-{seq}", self.run);
        let at = crate::time::rfc3339(crate::db::now_millis());
        let lane = lane.map(LaneName::as_str);
        let envelope = Envelope { schema: SCHEMA, event_id: &event_id, seq, at, lane, job, event: &event };
        let json = match serde_json::to_string(&envelope) {
            Ok(json) => json,
            Err(error) => {
                tracing::error!(%error, event_id, "cannot encode a line event");
                return;
            }
        };
        let written = out.write_all(json.as_bytes()).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
        // Still under the lock: observers see the events in the order of their ids.
        for observer in &self.observers {
            observer(&Emitted { event_id: &event_id, json: &json, lane, job, event: &event });
        }
        drop(out);
        if let Err(error) = written
            && !self.write_failed.swap(true, Ordering::SeqCst)
        {
            tracing::error!(%error, "cannot write the line's events to stdout; they are logged here only from now on");
        }
        match &event {
            LineEvent::Failed { error, .. } => {
                tracing::warn!(event_id, lane, event = event.kind(), %error, "line event")
            }
            LineEvent::LaneProblem { problem, .. } => {
                tracing::warn!(event_id, lane, event = event.kind(), %problem, "line event")
            }
            LineEvent::Provisioned { device, .. } | LineEvent::LabelRead { device, .. } => {
                tracing::info!(event_id, lane, event = event.kind(), id = %device.id, "line event")
            }
            _ => tracing::info!(event_id, lane, event = event.kind(), "line event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn line_events_are_one_json_object_per_line_with_ordered_ids() {
        let out = Shared::default();
        let sink = EventSink::new(Box::new(out.clone()));
        let lane = LaneName::parse("lane-1").expect("valid");
        let device = DeviceRef { id: "00".repeat(16), name: "dev\n1".into(), serial_number: "SN".into() };
        sink.emit(Some(&lane), LineEvent::LabelRead { device: device.clone(), source: "scanner /dev/x".into() });
        sink.emit(None, LineEvent::LineStopped { provisioned: 1, failed: 0, rejected: 0 });
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("one object per line")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["schema"], SCHEMA);
        assert_eq!(lines[0]["event"], "label_read");
        assert_eq!(lines[0]["lane"], "lane-1");
        assert_eq!(lines[0]["device"]["name"], "dev\n1", "escaped by JSON, not lost");
        assert_eq!(lines[1]["seq"], 2);
        assert!(lines[1].get("lane").is_none());
        let id = |line: &serde_json::Value| line["event_id"].as_str().expect("id").to_owned();
        assert_eq!(id(&lines[0]).split('-').next(), id(&lines[1]).split('-').next(), "one run");
        assert_ne!(id(&lines[0]), id(&lines[1]));
    }

    #[test]
    fn line_event_kinds_match_their_tags() {
        let event = LineEvent::Stopping { signal: "SIGTERM".into(), in_flight: 2 };
        assert_eq!(serde_json::to_value(&event).expect("json")["event"], event.kind());
    }
}
