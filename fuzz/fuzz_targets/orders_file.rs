//! A work-order file from the MES (`keyfill orders import`): CSV with a header, or JSON. Any
//! bytes must give lines that passed every check, or a typed error naming where; never a panic.
//!
//! Input: one byte choosing the format (even: CSV, odd: JSON), then the file.
#![no_main]

use keyfill_station::orders::file::{Format, OrderId, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&choice, file)) = data.split_first() else { return };
    let format = if choice % 2 == 0 { Format::Csv } else { Format::Json };
    let Ok(lines) = parse(file, format) else { return };
    assert!(!lines.is_empty(), "a parsed file lists devices");
    for line in &lines {
        assert!(OrderId::parse(line.order_id.as_str()).is_ok(), "order ids are checked");
        assert!(!line.serial_number.is_empty(), "serial numbers are present");
        assert!(!line.serial_number.chars().any(char::is_control), "no control characters");
    }
    let mut ids: Vec<_> = lines.iter().map(|l| l.device_name.device_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), lines.len(), "no device twice");
});
