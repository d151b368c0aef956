//! A station home's `custody.json` as anyone who can write the home may leave it: any file
//! gives a refusal or a secret, never a panic. Input: a tag byte, then either a file of its own
//! (tag 1) or bytes written over a genuine file, two officers' shares of a quorum-2 secret
//! (tag 0: a big-endian offset, then the bytes), which reaches the HPKE and Shamir paths.
#![no_main]

use keyfill_station::audit::AuditKey;
use keyfill_station::audit::verify::SignerTrust;
use keyfill_station::custody::operators::{LoggedIn, new_operator};
use keyfill_station::custody::unlock::{CustodyFile, Policy, UnlockSecret};
use keyfill_station::custody::{OperatorName, Role};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Fixture {
    genuine: Vec<u8>,
    officers: Vec<LoggedIn>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = AuditKey::throwaway([5; 16]).expect("a key");
        let mut records = Vec::new();
        let mut officers = Vec::new();
        for name in ["anna", "ben"] {
            let record = new_operator(&OperatorName::parse(name).expect("a name"), Role::SecurityOfficer, "pw")
                .expect("an operator");
            officers.push(LoggedIn::open(&record, "pw").expect("opens"));
            records.push(record);
        }
        let secret = UnlockSecret::generate().expect("random");
        let policy = Policy { approvals: 2, unlock_quorum: 2 };
        let file = CustodyFile::new(&hex::encode([5u8; 16]), policy, 1, &secret, None, &records, &key).expect("a file");
        Fixture { genuine: serde_json::to_vec_pretty(&file).expect("json"), officers }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Some((&tag, rest)) = data.split_first() else { return };
    let bytes = if tag == 0 && rest.len() >= 2 {
        let mut bytes = fixture.genuine.clone();
        let at = usize::from(u16::from_be_bytes([rest[0], rest[1]])) % bytes.len();
        let patch = &rest[2..rest.len().min(2 + 256)];
        let end = (at + patch.len()).min(bytes.len());
        bytes[at..end].copy_from_slice(&patch[..end - at]);
        bytes
    } else {
        rest.to_vec()
    };
    let Ok(file) = serde_json::from_slice::<CustodyFile>(&bytes) else { return };
    assert!(!file.trusted(&SignerTrust::from_rows(&[], &[0; 32])), "nothing is trusted without a signer");
    let _ = file.holders().count();
    let present: Vec<&LoggedIn> = fixture.officers.iter().collect();
    let _ = file.open(&present);
    let _ = file.open(&present[..1]);
});
