//! The line mode's `line.toml` (`keyfill line --config`): any text must give a line whose every
//! lane passed its checks, or a typed error naming the lane; never a panic.
#![no_main]

use keyfill_station::line::config::{LaneName, LineConfig, MAX_LANES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = LineConfig::parse(text) else { return };
    assert!((1..=MAX_LANES).contains(&config.lanes.len()), "1 to {MAX_LANES} lanes");
    let mut names: Vec<&str> = config.lanes.iter().map(|lane| lane.name.as_str()).collect();
    for name in &names {
        assert!(LaneName::parse(name).is_ok(), "lane names are checked");
    }
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), config.lanes.len(), "no lane name twice");
    for lane in &config.lanes {
        assert!(!lane.port.to_string().chars().any(char::is_control), "no control characters in a port");
    }
});
