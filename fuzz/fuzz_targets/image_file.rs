//! The bounded image loader every image the station reads goes through:
//! `scan::image_file::read_image` on a file holding the input, with small limits so that runs
//! stay fast (the limits are what is under test: a header may claim any size).
//! Checked: an image that loads is within every limit.
//!
//! The loader runs the third-party decoders under `catch_unwind` and refuses an image on which
//! one panics, so a caught panic is an outcome here, not a crash: the target puts back the
//! default panic hook in place of libfuzzer-sys's, which aborts even on a panic that is caught.
//! A panic that escapes the loader still aborts (libfuzzer-sys's `catch_unwind` around every
//! input) and is reported.
#![no_main]

use keyfill_fuzz::scratch_file;
use keyfill_station::scan::image_file::{ImageLimits, read_image};
use libfuzzer_sys::fuzz_target;
use std::sync::Once;

const LIMITS: ImageLimits =
    ImageLimits { max_file_bytes: 256 * 1024, max_side: 512, max_pixels: 64 * 1024, max_decoded_bytes: 1024 * 1024 };

fuzz_target!(|data: &[u8]| {
    static DEFAULT_PANIC_HOOK: Once = Once::new();
    DEFAULT_PANIC_HOOK.call_once(|| drop(std::panic::take_hook()));
    let path = scratch_file("image", data);
    if let Ok(image) = read_image(&path, &LIMITS) {
        assert!(image.width() <= LIMITS.max_side && image.height() <= LIMITS.max_side);
        assert!(u64::from(image.width()) * u64::from(image.height()) <= LIMITS.max_pixels);
        assert!(image.as_bytes().len() as u64 <= LIMITS.max_decoded_bytes);
    }
});
