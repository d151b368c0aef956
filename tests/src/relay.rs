//! A man in the middle of a serial link, for field tests: the station and the device each open a
//! pseudo-terminal of their own, and the relay between them forwards whole frames, one message at
//! a time, under a test's policy: forward, hold (and deliver later, late), or drop. A policy can
//! also act at an exact point of a session, such as killing the station between two messages,
//! so that crash tests are driven by the messages themselves, not by timers.

use crate::PtyPair;
use anyhow::{Context, Result};
use keyfill_formats::frame::{self, FrameDecoder};
use keyfill_formats::message::{SessionId, WireMessage};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToDevice,
    ToStation,
}

/// One message as the relay saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub direction: Direction,
    /// Position among all messages seen since the relay started or was last reset (1-based).
    pub index: usize,
    /// `handshake init`, `transport message`, … or `undecodable`.
    pub kind: &'static str,
    pub session: Option<SessionId>,
    pub payload: Vec<u8>,
}

/// What the relay does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward,
    /// Deliver these bytes instead (framed with a valid CRC, as a man in the middle would).
    Replace(Vec<u8>),
    /// Keep it; [`Relay::release_held`] delivers it later.
    Hold,
    /// Deliver every held message first, then this one: late data that arrives just after a
    /// new session began.
    ReleaseHeldThenForward,
    Drop,
}

type Policy = Box<dyn FnMut(&Seen) -> Action + Send>;

struct Shared {
    policy: Policy,
    seen: Vec<Seen>,
    held: Vec<Seen>,
    count: usize,
}

/// Station ⇄ relay ⇄ device over two pseudo-terminal pairs.
pub struct Relay {
    station_pair: PtyPair,
    device_pair: PtyPair,
    shared: Arc<Mutex<Shared>>,
    to_station: File,
    to_device: File,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("station_port", &self.station_pair.station_side)
            .field("device_port", &self.device_pair.device_side)
            .finish_non_exhaustive()
    }
}

fn open_port(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).open(path).with_context(|| format!("open {}", path.display()))
}

impl Relay {
    /// Starts a relay that forwards everything until a policy is set.
    pub fn new(dir: &Path) -> Result<Self> {
        let station_pair = PtyPair::named(dir, "tty-station", "tty-relay-s")?;
        let device_pair = PtyPair::named(dir, "tty-relay-d", "tty-device")?;
        let from_station = open_port(&station_pair.device_side)?;
        let from_device = open_port(&device_pair.station_side)?;
        let shared = Arc::new(Mutex::new(Shared {
            policy: Box::new(|_| Action::Forward),
            seen: Vec::new(),
            held: Vec::new(),
            count: 0,
        }));
        let relay = Relay {
            to_station: from_station.try_clone()?,
            to_device: from_device.try_clone()?,
            station_pair,
            device_pair,
            shared,
        };
        relay.pump(from_station, relay.to_device.try_clone()?, Direction::ToDevice);
        relay.pump(from_device, relay.to_station.try_clone()?, Direction::ToStation);
        Ok(relay)
    }

    /// The port the station opens.
    pub fn station_port(&self) -> &Path {
        &self.station_pair.station_side
    }

    /// The port the device agent opens.
    pub fn device_port(&self) -> &Path {
        &self.device_pair.device_side
    }

    /// Replaces the policy and starts counting messages from 1 again.
    pub fn set_policy(&self, policy: impl FnMut(&Seen) -> Action + Send + 'static) {
        if let Ok(mut shared) = self.shared.lock() {
            shared.policy = Box::new(policy);
            shared.count = 0;
        }
    }

    /// Every message seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().map(|shared| shared.seen.clone()).unwrap_or_default()
    }

    /// Delivers every held message now, each to where it was going.
    pub fn release_held(&self) -> Result<usize> {
        let held = self.shared.lock().map(|mut shared| std::mem::take(&mut shared.held)).unwrap_or_default();
        deliver(&held, &self.to_station, &self.to_device)?;
        Ok(held.len())
    }

    /// Messages currently held.
    pub fn held(&self) -> usize {
        self.shared.lock().map(|shared| shared.held.len()).unwrap_or(0)
    }

    fn pump(&self, mut from: File, mut to: File, direction: Direction) {
        let shared = self.shared.clone();
        let (Ok(to_station), Ok(to_device)) = (self.to_station.try_clone(), self.to_device.try_clone()) else {
            return;
        };
        std::thread::spawn(move || {
            let mut decoder = FrameDecoder::new();
            let mut buffer = [0u8; 512];
            // Ends when the pseudo-terminals go away with the relay.
            while let Ok(n) = from.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                for payload in decoder.push(&buffer[..n]).into_iter().flatten() {
                    let Ok(mut shared) = shared.lock() else { return };
                    shared.count += 1;
                    let decoded = WireMessage::decode(&payload).ok();
                    let seen = Seen {
                        direction,
                        index: shared.count,
                        kind: decoded.as_ref().map_or("undecodable", |m| m.body.name()),
                        session: decoded.map(|m| m.session),
                        payload,
                    };
                    let action = (shared.policy)(&seen);
                    shared.seen.push(seen.clone());
                    if action == Action::ReleaseHeldThenForward {
                        let held = std::mem::take(&mut shared.held);
                        if deliver(&held, &to_station, &to_device).is_err() {
                            return;
                        }
                    }
                    match action {
                        Action::Forward | Action::ReleaseHeldThenForward => {
                            let Ok(framed) = frame::encode(&seen.payload) else { continue };
                            if to.write_all(&framed).and_then(|()| to.flush()).is_err() {
                                return;
                            }
                        }
                        Action::Replace(bytes) => {
                            let Ok(framed) = frame::encode(&bytes) else { continue };
                            if to.write_all(&framed).and_then(|()| to.flush()).is_err() {
                                return;
                            }
                        }
                        Action::Hold => shared.held.push(seen),
                        Action::Drop => {}
                    }
                }
            }
        });
    }
}

fn deliver(messages: &[Seen], to_station: &File, to_device: &File) -> Result<()> {
    for message in messages {
        let mut out = match message.direction {
            Direction::ToDevice => to_device,
            Direction::ToStation => to_station,
        };
        out.write_all(&frame::encode(&message.payload)?)?;
        out.flush()?;
    }
    Ok(())
}
