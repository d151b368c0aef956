//! Devices screen benchmark with 100,000 devices: loading them from SQLite, building the search
//! index (both off the UI thread in the app), and the UI thread's cost of a frame and of a
//! keystroke of search.
//!
//! ```sh
//! cargo bench -p keyfill-gui --bench devices_table                  # 100,000 devices
//! cargo bench -p keyfill-gui --bench devices_table -- --devices 500000 --frames 200
//! ```
//! A frame is egui's whole pass over the app (layout of the visible rows, accessibility tree)
//! without GPU rendering, driven by egui_kittest at 1280×800. The search types "unit-099" one
//! character a frame, each narrowing the previous filter as an operator's typing does.

#[path = "../tests/support/mod.rs"]
mod support;

use eframe::egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use keyfill_gui::device_index::{DeviceIndex, DeviceQuery};
use keyfill_gui::screens::Screen;
use keyfill_station::db::Inventory;
use keyfill_station::db::devices::{self, Device, NewDevice};
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Options {
    devices: usize,
    frames: usize,
}

fn count(args: &mut impl Iterator<Item = String>, option: &str) -> Result<usize, String> {
    args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).ok_or(format!("{option} needs a positive count"))
}

fn options() -> Result<Options, String> {
    let mut options = Options { devices: 100_000, frames: 100 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes --bench to harness-less benchmarks.
            "--bench" => {}
            "--devices" => options.devices = count(&mut args, "--devices")?,
            "--frames" => options.frames = count(&mut args, "--frames")?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

/// Median and maximum of `times`.
fn median_max(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (times.get(times.len() / 2).copied().unwrap_or_default(), times.last().copied().unwrap_or_default())
}

/// Writes `count` pending devices to a fresh SQLite inventory and reads them back as the app does.
fn load_from_sqlite(count: usize) -> anyhow::Result<(Vec<Device>, Duration)> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("inventory.db").display());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let inventory = Inventory::open(&url).await?;
        let mut tx = inventory.pool().begin().await?;
        for n in 0..count {
            let device = NewDevice {
                id: format!("{n:032x}"),
                name: format!("unit-{n:06}"),
                serial_number: format!("SN-{n:06}"),
                credential_mode: "identity",
                identity_public_key: Some(vec![7; 32]),
                sealed_setup_secret: None,
                model: Some("TH-200".into()),
            };
            devices::begin_provisioning(&mut tx, &device, &format!("{n:032x}"), "serial", "/dev/ttyUSB0").await?;
        }
        tx.commit().await?;
        let started = Instant::now();
        let all = devices::list(inventory.pool(), None).await?;
        let elapsed = started.elapsed();
        inventory.close().await;
        Ok((all, elapsed))
    })
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("devices_table: {error}");
            return ExitCode::from(2);
        }
    };
    let (loaded, load_time) = match load_from_sqlite(options.devices) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("devices_table: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{} devices: SQLite list {load_time:.1?}", loaded.len());
    let started = Instant::now();
    let mut index = DeviceIndex::build(loaded);
    let build_time = started.elapsed();
    let started = Instant::now();
    index.set_query(DeviceQuery { text: "unit-099".into(), ..DeviceQuery::default() });
    println!(
        "index: build {build_time:.1?}, a first search over all devices {:.1?} ({} match)",
        started.elapsed(),
        index.visible().len()
    );

    let state = support::many_devices(options.devices);
    let (mut harness, _control) = support::unlocked(state);
    support::show(&mut harness, Screen::Devices);
    let mut frames = Vec::with_capacity(options.frames);
    for _ in 0..options.frames {
        let started = Instant::now();
        harness.step();
        frames.push(started.elapsed());
    }
    let (median, max) = median_max(frames);
    println!("frame with the whole table: median {median:.2?}, max {max:.2?} over {} frames", options.frames);

    harness.get_by_role_and_label(Role::TextInput, "Search").focus();
    harness.run();
    let mut keystrokes = Vec::new();
    for character in ["u", "n", "i", "t", "-", "0", "9", "9"] {
        harness.get_by_role_and_label(Role::TextInput, "Search").type_text(character);
        let started = Instant::now();
        harness.step();
        keystrokes.push(started.elapsed());
    }
    let (median, max) = median_max(keystrokes);
    println!("keystroke of search (filter and frame): median {median:.2?}, max {max:.2?}");
    ExitCode::SUCCESS
}
