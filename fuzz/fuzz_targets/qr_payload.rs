//! The onboarding payload a camera or a handheld scanner reads off a label:
//! `OnboardingPayload::parse` on arbitrary text (bytes that are not UTF-8 are replaced, as a
//! scanner's text would be). A payload that parses must encode back to exactly the text read.
#![no_main]

use keyfill_formats::qr::OnboardingPayload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(payload) = OnboardingPayload::parse(&text) {
        assert_eq!(payload.encode().as_deref(), Ok(text.trim()), "a parsed payload re-encodes to its text");
    }
});
