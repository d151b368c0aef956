//! How fast, and in how little memory, an over-limit image is refused: a blank 20000×20000 PNG
//! (a few hundred kilobytes on disk, 400 MB decoded) read through the station's bounded image
//! loader, as `keyfill scan`, `provision --qr-image`, the watched folder and the camera read
//! every image.
//!
//! ```sh
//! cargo bench -p keyfill-station --bench image_limits
//! ```
//! Reports the median and slowest refusal over 50 reads and the process's peak resident memory
//! (VmHWM) afterwards, which includes building the test image row by row.

use keyfill_station::scan::image_file::{ImageLimits, read_image};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

const SIDE: u32 = 20_000;
const READS: usize = 50;

fn blank_png(path: &Path) -> Result<u64, String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), SIDE, SIDE);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    let mut stream = writer.stream_writer().map_err(|e| e.to_string())?;
    let row = vec![0xffu8; SIDE as usize];
    for _ in 0..SIDE {
        stream.write_all(&row).map_err(|e| e.to_string())?;
    }
    stream.finish().map_err(|e| e.to_string())?;
    Ok(std::fs::metadata(path).map_err(|e| e.to_string())?.len())
}

fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> ExitCode {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("no temporary folder: {error}");
            return ExitCode::FAILURE;
        }
    };
    let path = dir.path().join("blank-20000.png");
    let size = match blank_png(&path) {
        Ok(size) => size,
        Err(error) => {
            eprintln!("cannot write the test image: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut times = Vec::with_capacity(READS);
    for _ in 0..READS {
        let start = Instant::now();
        let refused = read_image(&path, &ImageLimits::DEFAULT);
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        match refused {
            Err(error) if error.is_over_limit() => {}
            Err(error) => {
                eprintln!("the {SIDE}×{SIDE} image was refused, but not for its size: {error}");
                return ExitCode::FAILURE;
            }
            Ok(_) => {
                eprintln!("the {SIDE}×{SIDE} image was decoded");
                return ExitCode::FAILURE;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    println!("blank {SIDE}×{SIDE} PNG of {} KB, refused {READS} times", size / 1000);
    println!("  median {:.3} ms, slowest {:.3} ms", times[READS / 2], times[READS - 1]);
    match peak_resident_kib() {
        Some(kib) => println!("  peak resident memory of the whole run: {} MB", kib / 1024),
        None => println!("  peak resident memory: not available"),
    }
    ExitCode::SUCCESS
}
