//! The device's keystore file (`FileKeystore::load`): the provisioned key and the E4 state,
//! read at every start of the agent. What loads must store and load back unchanged.
#![no_main]

use keyfill_agent::keystore::{FileKeystore, Keystore};
use keyfill_fuzz::{scratch_file, scratch_path};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keystore = FileKeystore::new(scratch_file("key.json", data));
    let Ok(Some(stored)) = keystore.load() else { return };
    let mut again = FileKeystore::new(scratch_path("key-again.json"));
    again.store(&stored).expect("a loaded key can be stored");
    assert_eq!(again.load().ok().flatten(), Some(stored), "a stored key loads back unchanged");
});
