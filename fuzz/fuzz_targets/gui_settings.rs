//! The operator app's settings file (`gui-settings.json`), `keyfill_gui::settings::load`, and
//! what the app derives from it at start: the label size (`WIDTHxHEIGHT`, parsed by the
//! station's `LabelSpec`), the link, the rotation and card-wait settings. What loads must save
//! and load back unchanged.
#![no_main]

use keyfill_fuzz::{scratch_file, scratch_path};
use keyfill_gui::settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(loaded) = settings::load(&scratch_file("gui-settings.json", data)) else { return };
    let _ = loaded.label.spec();
    let _ = loaded.label.queue();
    let _ = loaded.link.target();
    let _ = loaded.link.card_wait();
    let _ = loaded.rotation.settings();
    let path = scratch_path("gui-settings-again.json");
    settings::save(&path, &loaded).expect("loaded settings can be saved");
    assert_eq!(settings::load(&path).ok(), Some(loaded), "saved settings load back unchanged");
});
