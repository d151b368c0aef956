//! Labels as a careless or hostile label printer could make them: any name, serial number or
//! model, with a correct checksum and device id, so that whatever refuses them is Keyfill's own
//! validation and not a damaged code.

use keyfill_formats::{DeviceId, base45};

/// The `KF1:` text of an identity-mode label for `name`, whatever `name` holds.
pub fn forged_label(name: &str, serial_number: &str, model: Option<&str>, public_key: [u8; 32]) -> String {
    let entries = 5 + u64::from(model.is_some());
    let mut body = Vec::new();
    uint(&mut body, 0);
    uint(&mut body, 1);
    uint(&mut body, 1);
    text(&mut body, name);
    uint(&mut body, 2);
    bytes(&mut body, &DeviceId::from_name(name).0);
    uint(&mut body, 3);
    text(&mut body, serial_number);
    uint(&mut body, 4);
    bytes(&mut body, &public_key);
    if let Some(model) = model {
        uint(&mut body, 7);
        text(&mut body, model);
    }
    // The checksum covers the map without its own entry.
    let mut unchecked = Vec::new();
    head(&mut unchecked, 5, entries);
    unchecked.extend_from_slice(&body);
    let checksum = crc32fast::hash(&unchecked);
    let mut cbor = Vec::new();
    head(&mut cbor, 5, entries + 1);
    cbor.extend_from_slice(&body);
    uint(&mut cbor, 15);
    bytes(&mut cbor, &checksum.to_be_bytes());
    format!("KF1:{}", base45::encode(&cbor))
}

/// A CBOR head in its shortest form.
fn head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    match value {
        0..=23 => out.push(major | value as u8),
        24..=0xff => out.extend([major | 24, value as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend((value as u16).to_be_bytes());
        }
        _ => {
            out.push(major | 26);
            out.extend((value as u32).to_be_bytes());
        }
    }
}

fn uint(out: &mut Vec<u8>, value: u64) {
    head(out, 0, value);
}

fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    head(out, 2, value.len() as u64);
    out.extend_from_slice(value);
}

fn text(out: &mut Vec<u8>, value: &str) {
    head(out, 3, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}
