//! The label size an operator types (`keyfill label --size`) or the operator app's settings
//! file holds (`label.size`), the one hand-written parser in that file: `LabelSpec::from_str`
//! (`WIDTHxHEIGHT` in millimetres), then the raster size at the resolution the input gives.
//! (`gui_settings` fuzzes the whole settings file, behind the `gui` feature.)
//!
//! Input: the resolution (`u16` LE, dots per inch), then the text.
#![no_main]

use keyfill_fuzz::Input;
use keyfill_station::label::LabelSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let dpi = u32::from(input.u16());
    let Ok(text) = std::str::from_utf8(input.rest()) else { return };
    let Ok(spec) = text.parse::<LabelSpec>() else { return };
    assert!(spec.validate().is_ok(), "a parsed size is a valid label size");
    let spec = spec.with_dpi(dpi);
    if spec.validate().is_ok() {
        let (width, height) = spec.pixel_size();
        assert!(width > 0 && height > 0, "a valid label has pixels");
    }
});
