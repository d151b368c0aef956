//! BLE transport framing: wire messages over a GATT service, fragmented to the ATT MTU and
//! made reliable with a stop-and-wait acknowledgement, because notifications can be lost or
//! repeated.
//!
//! The station writes fragments to the *to-device* characteristic; the device notifies
//! fragments on the *from-device* characteristic. Each fragment starts with a 3-byte header:
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | kind: `0x01` data, `0x02` acknowledgement; bit `0x80` set on a message's last fragment |
//! | 1 | message sequence number (wraps at 256) |
//! | 2 | fragment index within the message (data) / 0 (acknowledgement) |
//!
//! A receiver acknowledges every complete message (also a repeated one, which it does not
//! deliver twice). A sender keeps one message in flight and sends it again, whole, until it is
//! acknowledged or [`MAX_ATTEMPTS`] is reached. Everything here is sans-IO: bytes and `now` in,
//! bytes, messages and deadlines out.

use crate::message::MAX_WIRE_MESSAGE;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The Keyfill GATT service ("keyfill" in the first 7 bytes).
pub const SERVICE_UUID: &str = "6b657966-696c-6c00-0000-000000000001";
/// Station → device: write (with or without response).
pub const TO_DEVICE_UUID: &str = "6b657966-696c-6c00-0000-000000000002";
/// Device → station: notify.
pub const FROM_DEVICE_UUID: &str = "6b657966-696c-6c00-0000-000000000003";

pub const HEADER_LEN: usize = 3;
/// The smallest ATT MTU (Bluetooth Core, Vol 3, Part F, 3.2.8).
pub const MIN_MTU: usize = 23;
/// The largest ATT MTU.
pub const MAX_MTU: usize = 517;
/// ATT's own header inside the MTU (opcode and handle).
const ATT_OVERHEAD: usize = 3;
const KIND_DATA: u8 = 0x01;
const KIND_ACK: u8 = 0x02;
const LAST: u8 = 0x80;
/// How long a sender waits for an acknowledgement before sending the message again.
pub const RETRANSMIT_AFTER: Duration = Duration::from_millis(400);
/// Sends of one message before the link is declared broken.
pub const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum BleError {
    #[error("ATT MTU {0} is outside {MIN_MTU}..={MAX_MTU}")]
    BadMtu(usize),
    #[error("message of {len} bytes exceeds {MAX_WIRE_MESSAGE}")]
    MessageTooLarge { len: usize },
    #[error("fragment of {len} bytes is shorter than its header")]
    FragmentTooShort { len: usize },
    #[error("fragment of {len} bytes exceeds the MTU")]
    FragmentTooLong { len: usize },
    #[error("unknown fragment kind {0:#04x}")]
    UnknownKind(u8),
    #[error("message {seq} lost fragments (expected {expected}, got {got}); discarded")]
    Gap { seq: u8, expected: u8, got: u8 },
    #[error("no acknowledgement after {MAX_ATTEMPTS} attempts")]
    RetriesExhausted,
}

/// Data bytes per fragment at ATT MTU `mtu`.
pub fn fragment_payload(mtu: usize) -> Result<usize, BleError> {
    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
        return Err(BleError::BadMtu(mtu));
    }
    Ok(mtu - ATT_OVERHEAD - HEADER_LEN)
}

/// Splits `message` into data fragments with sequence number `seq`.
pub fn fragment(seq: u8, message: &[u8], mtu: usize) -> Result<Vec<Vec<u8>>, BleError> {
    let size = fragment_payload(mtu)?;
    if message.len() > MAX_WIRE_MESSAGE {
        return Err(BleError::MessageTooLarge { len: message.len() });
    }
    let chunks: Vec<&[u8]> = if message.is_empty() { vec![&[][..]] } else { message.chunks(size).collect() };
    let last = chunks.len() - 1;
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| {
            let kind = if index == last { KIND_DATA | LAST } else { KIND_DATA };
            // At most ceil(1536 / 17) = 91 fragments (MTU 23): the index fits a byte.
            let mut fragment = vec![kind, seq, index as u8];
            fragment.extend_from_slice(chunk);
            fragment
        })
        .collect())
}

fn ack(seq: u8) -> Vec<u8> {
    vec![KIND_ACK | LAST, seq, 0]
}

/// Reassembles data fragments of one message at a time; bounded by [`MAX_WIRE_MESSAGE`].
#[derive(Debug, Default)]
struct Reassembler {
    seq: Option<u8>,
    next_index: u8,
    buffer: Vec<u8>,
}

impl Reassembler {
    /// Returns a complete message, or `None` while fragments are missing.
    fn push(&mut self, seq: u8, index: u8, last: bool, data: &[u8]) -> Result<Option<Vec<u8>>, BleError> {
        if self.seq != Some(seq) || index == 0 {
            if index != 0 {
                // The start of this message was lost; wait for the retransmission.
                self.reset();
                return Err(BleError::Gap { seq, expected: 0, got: index });
            }
            self.reset();
            self.seq = Some(seq);
        }
        if index < self.next_index {
            return Ok(None); // a repeated fragment
        }
        if index > self.next_index {
            let expected = self.next_index;
            self.reset();
            return Err(BleError::Gap { seq, expected, got: index });
        }
        if self.buffer.len() + data.len() > MAX_WIRE_MESSAGE {
            let len = self.buffer.len() + data.len();
            self.reset();
            return Err(BleError::MessageTooLarge { len });
        }
        self.buffer.extend_from_slice(data);
        self.next_index = self.next_index.wrapping_add(1);
        if last {
            let message = std::mem::take(&mut self.buffer);
            self.reset();
            return Ok(Some(message));
        }
        Ok(None)
    }

    fn reset(&mut self) {
        self.seq = None;
        self.next_index = 0;
        self.buffer.clear();
    }
}

struct InFlight {
    seq: u8,
    fragments: Vec<Vec<u8>>,
    deadline: Instant,
    attempts: u32,
}

/// One end of a reliable BLE message channel.
pub struct BleEndpoint {
    mtu: usize,
    next_seq: u8,
    in_flight: Option<InFlight>,
    queue: VecDeque<Vec<u8>>,
    reassembler: Reassembler,
    last_delivered: Option<u8>,
}

impl std::fmt::Debug for BleEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleEndpoint").field("mtu", &self.mtu).field("queued", &self.queue.len()).finish_non_exhaustive()
    }
}

/// What an endpoint wants done after an input.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BleOutput {
    /// Fragments to write or notify, in order.
    pub transmit: Vec<Vec<u8>>,
    /// Complete messages received, in order.
    pub delivered: Vec<Vec<u8>>,
}

impl BleEndpoint {
    pub fn new(mtu: usize) -> Result<Self, BleError> {
        fragment_payload(mtu)?;
        Ok(BleEndpoint {
            mtu,
            next_seq: 0,
            in_flight: None,
            queue: VecDeque::new(),
            reassembler: Reassembler::default(),
            last_delivered: None,
        })
    }

    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Queues a message; returns the fragments to send now (none if another is in flight).
    pub fn send(&mut self, message: Vec<u8>, now: Instant) -> Result<Vec<Vec<u8>>, BleError> {
        if message.len() > MAX_WIRE_MESSAGE {
            return Err(BleError::MessageTooLarge { len: message.len() });
        }
        self.queue.push_back(message);
        self.start_next(now)
    }

    fn start_next(&mut self, now: Instant) -> Result<Vec<Vec<u8>>, BleError> {
        if self.in_flight.is_some() {
            return Ok(Vec::new());
        }
        let Some(message) = self.queue.pop_front() else { return Ok(Vec::new()) };
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let fragments = fragment(seq, &message, self.mtu)?;
        let out = fragments.clone();
        self.in_flight = Some(InFlight { seq, fragments, deadline: now + RETRANSMIT_AFTER, attempts: 1 });
        Ok(out)
    }

    /// Feeds one received fragment. A malformed or out-of-order fragment is reported and
    /// dropped; the peer's retransmission repairs the message.
    pub fn receive(&mut self, fragment: &[u8], now: Instant) -> Result<BleOutput, BleError> {
        if fragment.len() < HEADER_LEN {
            return Err(BleError::FragmentTooShort { len: fragment.len() });
        }
        // Each side fragments by the MTU it knows; accept anything ATT can carry.
        if fragment.len() > MAX_MTU - ATT_OVERHEAD {
            return Err(BleError::FragmentTooLong { len: fragment.len() });
        }
        let (kind, seq, index) = (fragment[0], fragment[1], fragment[2]);
        let mut output = BleOutput::default();
        match kind & !LAST {
            KIND_ACK => {
                if self.in_flight.as_ref().is_some_and(|f| f.seq == seq) {
                    self.in_flight = None;
                    output.transmit = self.start_next(now)?;
                }
            }
            KIND_DATA => {
                if let Some(message) = self.reassembler.push(seq, index, kind & LAST != 0, &fragment[HEADER_LEN..])? {
                    if self.last_delivered != Some(seq) {
                        self.last_delivered = Some(seq);
                        output.delivered.push(message);
                    }
                    output.transmit.push(ack(seq));
                }
            }
            other => return Err(BleError::UnknownKind(other)),
        }
        Ok(output)
    }

    /// When [`BleEndpoint::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.in_flight.as_ref().map(|f| f.deadline)
    }

    /// Retransmits the message in flight if its acknowledgement is overdue.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Vec<Vec<u8>>, BleError> {
        let Some(in_flight) = self.in_flight.as_mut() else { return Ok(Vec::new()) };
        if now < in_flight.deadline {
            return Ok(Vec::new());
        }
        if in_flight.attempts >= MAX_ATTEMPTS {
            self.in_flight = None;
            return Err(BleError::RetriesExhausted);
        }
        in_flight.attempts += 1;
        in_flight.deadline = now + RETRANSMIT_AFTER;
        Ok(in_flight.fragments.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_fit_the_mtu_and_reassemble() -> Result<(), BleError> {
        for mtu in [MIN_MTU, 185, 247, MAX_MTU] {
            let message: Vec<u8> = (0..MAX_WIRE_MESSAGE).map(|i| i as u8).collect();
            let fragments = fragment(7, &message, mtu)?;
            assert!(fragments.iter().all(|f| f.len() <= mtu - ATT_OVERHEAD));
            let mut receiver = BleEndpoint::new(mtu)?;
            let mut delivered = Vec::new();
            for fragment in &fragments {
                delivered.extend(receiver.receive(fragment, Instant::now())?.delivered);
            }
            assert_eq!(delivered, vec![message]);
        }
        Ok(())
    }

    #[test]
    fn repeated_message_is_acknowledged_but_delivered_once() -> Result<(), BleError> {
        let mut receiver = BleEndpoint::new(MIN_MTU)?;
        let fragments = fragment(1, b"hello world, this spans fragments", MIN_MTU)?;
        let mut delivered = 0;
        let mut acks = 0;
        for _ in 0..2 {
            for fragment in &fragments {
                let output = receiver.receive(fragment, Instant::now())?;
                delivered += output.delivered.len();
                acks += output.transmit.len();
            }
        }
        assert_eq!((delivered, acks), (1, 2));
        Ok(())
    }

    #[test]
    fn a_gap_discards_the_partial_message() -> Result<(), BleError> {
        let mut receiver = BleEndpoint::new(MIN_MTU)?;
        let fragments = fragment(3, &[9; 60], MIN_MTU)?;
        receiver.receive(&fragments[0], Instant::now())?;
        assert!(matches!(receiver.receive(&fragments[2], Instant::now()), Err(BleError::Gap { .. })));
        let mut delivered = Vec::new();
        for fragment in &fragments {
            delivered.extend(receiver.receive(fragment, Instant::now())?.delivered);
        }
        assert_eq!(delivered, vec![vec![9; 60]]);
        Ok(())
    }

    #[test]
    fn sender_retransmits_until_acknowledged_then_gives_up() -> Result<(), BleError> {
        let start = Instant::now();
        let mut sender = BleEndpoint::new(MIN_MTU)?;
        let first = sender.send(vec![1, 2, 3], start)?;
        assert_eq!(sender.send(vec![4], start)?, Vec::<Vec<u8>>::new(), "one message in flight");
        let again = sender.handle_timeout(start + RETRANSMIT_AFTER)?;
        assert_eq!(again, first);
        let next = sender.receive(&ack(0), start)?;
        assert_eq!(next.transmit, fragment(1, &[4], MIN_MTU)?);
        let mut now = start;
        let mut result = Ok(Vec::new());
        for _ in 0..MAX_ATTEMPTS {
            now += RETRANSMIT_AFTER;
            result = sender.handle_timeout(now);
        }
        assert_eq!(result, Err(BleError::RetriesExhausted));
        Ok(())
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(BleEndpoint::new(22).err(), Some(BleError::BadMtu(22)));
        let mut receiver = BleEndpoint::new(MIN_MTU).expect("valid MTU");
        assert!(matches!(receiver.receive(&[1, 2], Instant::now()), Err(BleError::FragmentTooShort { .. })));
        assert!(matches!(receiver.receive(&[0x33, 0, 0], Instant::now()), Err(BleError::UnknownKind(0x33))));
        assert!(matches!(receiver.receive(&[1; 600], Instant::now()), Err(BleError::FragmentTooLong { .. })));
    }
}
