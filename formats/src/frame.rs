//! Serial framing: each frame is `COBS(payload ‖ CRC-32(payload) little-endian) ‖ 0x00`.
//!
//! COBS removes every zero byte from the frame body, so `0x00` always marks a frame boundary and a
//! receiver that joins mid-stream, or sees line noise, resynchronises at the next zero. The decoder
//! never holds more than [`max_encoded_len`] bytes of one frame: a longer run is dropped (reported
//! once) and decoding resumes after the next delimiter.

use thiserror::Error;

/// Largest payload a serial frame carries.
pub const MAX_PAYLOAD: usize = 2048;
const CRC_LEN: usize = 4;
pub const DELIMITER: u8 = 0x00;

/// Longest COBS body (without delimiter) for a payload of `payload_len` bytes plus CRC.
pub const fn max_encoded_len(payload_len: usize) -> usize {
    let raw = payload_len + CRC_LEN;
    raw + raw.div_ceil(254) + 1
}

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum FrameError {
    #[error("payload of {len} bytes exceeds the frame limit of {max}")]
    PayloadTooLarge { len: usize, max: usize },
    #[error("encoded frame longer than {max} bytes dropped")]
    Oversized { max: usize },
    #[error("invalid COBS encoding")]
    BadCobs,
    #[error("frame shorter than its CRC")]
    TooShort,
    #[error("CRC mismatch: frame corrupted on the line")]
    BadCrc,
}

/// Encodes one payload as a complete frame, including the trailing delimiter.
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLarge { len: payload.len(), max: MAX_PAYLOAD });
    }
    let mut raw = Vec::with_capacity(payload.len() + CRC_LEN);
    raw.extend_from_slice(payload);
    raw.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let mut out = cobs_encode(&raw);
    out.push(DELIMITER);
    Ok(out)
}

fn cobs_encode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + input.len() / 254 + 2);
    let mut code_index = 0;
    out.push(0);
    let mut code = 1u8;
    for &byte in input {
        if byte == 0 {
            out[code_index] = code;
            code_index = out.len();
            out.push(0);
            code = 1;
        } else {
            out.push(byte);
            code += 1;
            if code == 0xFF {
                out[code_index] = code;
                code_index = out.len();
                out.push(0);
                code = 1;
            }
        }
    }
    out[code_index] = code;
    out
}

fn cobs_decode(input: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let code = input[i];
        if code == 0 {
            return Err(FrameError::BadCobs);
        }
        let end = i + usize::from(code);
        if end > input.len() {
            return Err(FrameError::BadCobs);
        }
        let block = &input[i + 1..end];
        if block.contains(&0) {
            return Err(FrameError::BadCobs);
        }
        out.extend_from_slice(block);
        i = end;
        if code != 0xFF && i < input.len() {
            out.push(0);
        }
    }
    Ok(out)
}

/// Decodes one COBS body (without delimiter) and checks its CRC.
pub fn decode(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let raw = cobs_decode(body)?;
    if raw.len() < CRC_LEN {
        return Err(FrameError::TooShort);
    }
    let (payload, crc) = raw.split_at(raw.len() - CRC_LEN);
    let mut crc_bytes = [0u8; CRC_LEN];
    crc_bytes.copy_from_slice(crc);
    if crc32fast::hash(payload) != u32::from_le_bytes(crc_bytes) {
        return Err(FrameError::BadCrc);
    }
    if payload.len() > MAX_PAYLOAD {
        return Err(FrameError::PayloadTooLarge { len: payload.len(), max: MAX_PAYLOAD });
    }
    Ok(payload.to_vec())
}

/// Incremental, bounded frame decoder for a byte stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
    limit: usize,
    discarding: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        let limit = max_encoded_len(MAX_PAYLOAD);
        FrameDecoder { buffer: Vec::with_capacity(256), limit, discarding: false }
    }

    /// Bytes currently held for an incomplete frame (never more than the frame limit).
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Feeds received bytes; returns every frame (or framing error) completed by them, in order.
    pub fn push(&mut self, input: &[u8]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut results = Vec::new();
        for &byte in input {
            if byte == DELIMITER {
                if self.discarding {
                    self.discarding = false;
                } else if !self.buffer.is_empty() {
                    results.push(decode(&self.buffer));
                }
                self.buffer.clear();
                continue;
            }
            if self.discarding {
                continue;
            }
            if self.buffer.len() == self.limit {
                self.buffer.clear();
                self.discarding = true;
                results.push(Err(FrameError::Oversized { max: self.limit }));
                continue;
            }
            self.buffer.push(byte);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cobs_known_vectors() {
        // Wikipedia's COBS examples.
        assert_eq!(cobs_encode(&[0x00]), vec![0x01, 0x01]);
        assert_eq!(cobs_encode(&[0x00, 0x00]), vec![0x01, 0x01, 0x01]);
        assert_eq!(cobs_encode(&[0x11, 0x22, 0x00, 0x33]), vec![0x03, 0x11, 0x22, 0x02, 0x33]);
        assert_eq!(cobs_encode(&[0x11, 0x00, 0x00, 0x00]), vec![0x02, 0x11, 0x01, 0x01, 0x01]);
        let long: Vec<u8> = (1..=254).collect();
        let mut expected = vec![0xFF];
        expected.extend(1..=254u8);
        expected.push(0x01);
        assert_eq!(cobs_encode(&long), expected);
        assert_eq!(cobs_decode(&expected).as_deref(), Ok(&long[..]));
    }

    #[test]
    fn resynchronises_after_noise() {
        let mut decoder = FrameDecoder::new();
        let mut stream = vec![0x13, 0x37, 0xAA];
        stream.push(DELIMITER);
        stream.extend(encode(b"hello").unwrap_or_default());
        let results = decoder.push(&stream);
        assert_eq!(results.len(), 2);
        assert!(results[0].is_err());
        assert_eq!(results[1].as_deref(), Ok(&b"hello"[..]));
    }

    #[test]
    fn oversized_run_is_dropped_with_bounded_buffer() {
        let mut decoder = FrameDecoder::new();
        let noise = vec![0x55u8; 100_000];
        let results = decoder.push(&noise);
        assert_eq!(results, vec![Err(FrameError::Oversized { max: max_encoded_len(MAX_PAYLOAD) })]);
        assert_eq!(decoder.buffered(), 0);
        let mut tail = vec![DELIMITER];
        tail.extend(encode(b"ok").unwrap_or_default());
        let results = decoder.push(&tail);
        assert_eq!(results, vec![Ok(b"ok".to_vec())]);
    }

    #[test]
    fn corrupted_frame_reports_crc() {
        let mut frame = encode(b"payload").unwrap_or_default();
        frame[3] ^= 0x01;
        let results = FrameDecoder::new().push(&frame);
        assert!(matches!(results.as_slice(), [Err(FrameError::BadCrc | FrameError::BadCobs)]));
    }
}
