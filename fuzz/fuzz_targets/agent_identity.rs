//! The device's identity file (`DeviceIdentity::from_json`): name, credential and pinned
//! factory root, read at every start of the agent. What parses must write back (`to_json`) to
//! a file that parses to the same identity.
#![no_main]

use keyfill_agent::identity::DeviceIdentity;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("identity.json");
    let Ok(identity) = DeviceIdentity::from_json(text, path) else { return };
    let written = identity.to_json().expect("an identity that was read can be written");
    let again = DeviceIdentity::from_json(&written, path).expect("a written identity reads back");
    assert_eq!(again.name, identity.name);
    assert_eq!(again.device_id, identity.device_id);
    assert_eq!(again.serial_number, identity.serial_number);
    assert_eq!(again.factory_root, identity.factory_root);
    assert_eq!(again.onboarding_payload(), identity.onboarding_payload());
});
