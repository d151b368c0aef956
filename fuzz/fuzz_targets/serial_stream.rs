//! The resynchronising serial stream decoder, `FrameDecoder::push`, fed a stream cut into
//! arbitrary chunks. Structure-aware: the stream is built from items, each a frame made by the
//! real encoder (so its CRC is right), line noise ended by a delimiter, or raw bytes with no
//! delimiter (which corrupt the frame after them). Checked: the chunking changes nothing, the
//! buffer stays within the frame limit, and every frame that starts on a boundary is delivered.
//!
//! Input: items, each a tag byte (`0` frame, `1` noise, `2` raw, `3` end of items; modulo 4)
//! then a chunk (`u16` LE length, bytes); after the end tag, one byte per push: its size minus
//! one (255: everything left).
#![no_main]

use keyfill_formats::frame::{self, DELIMITER, FrameDecoder, MAX_PAYLOAD, max_encoded_len};
use keyfill_fuzz::Input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    let mut at_boundary = true;
    loop {
        if input.is_empty() {
            break;
        }
        match input.byte() % 4 {
            0 => {
                let payload = input.chunk();
                let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
                if at_boundary {
                    expected.push(payload.to_vec());
                }
                stream.extend(frame::encode(payload).expect("the payload is within the frame limit"));
                at_boundary = true;
            }
            1 => {
                stream.extend_from_slice(input.chunk());
                stream.push(DELIMITER);
                at_boundary = true;
            }
            2 => {
                let raw = input.chunk();
                stream.extend_from_slice(raw);
                at_boundary = raw.last().map_or(at_boundary, |&last| last == DELIMITER);
            }
            _ => break,
        }
    }

    let whole = FrameDecoder::new().push(&stream);

    let mut decoder = FrameDecoder::new();
    let mut chunked = Vec::new();
    let mut rest = &stream[..];
    while !rest.is_empty() {
        let size = match (input.is_empty(), input.byte()) {
            (true, _) | (false, 255) => rest.len(),
            (false, n) => usize::from(n) + 1,
        };
        let (now, later) = rest.split_at(size.min(rest.len()));
        chunked.extend(decoder.push(now));
        assert!(decoder.buffered() <= max_encoded_len(MAX_PAYLOAD), "the decoder's buffer is bounded");
        rest = later;
    }
    assert_eq!(chunked, whole, "chunking does not change what is decoded");

    let mut frames = whole.iter().filter_map(|result| result.as_ref().ok());
    for payload in &expected {
        assert!(frames.any(|frame| frame == payload), "a frame that starts on a boundary is delivered");
    }
});
