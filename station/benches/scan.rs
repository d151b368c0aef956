//! Scanner benchmark over real photographs: decode rate and time per image, for the whole cascade
//! and for every stage on its own.
//!
//! ```sh
//! taskset -c 0 cargo bench -p keyfill-station --bench scan            # ../shared/qr-photos
//! taskset -c 0 cargo bench -p keyfill-station --bench scan -- DIR --runs 9
//! ```
//! `KEYFILL_QR_PHOTOS=DIR` also names the set. Images are decoded to grayscale before timing, as
//! a camera frame arrives; the time per image is the median over the runs, then the median and
//! 90th percentile over the images are reported. One thread: pin it to one core with taskset.

#[path = "../tests/scan_support/photos.rs"]
mod photos;

use image::GrayImage;
use keyfill_station::scan::{MEASURED_ONLY, Origin, Prepared, Scanner, Stage, THOROUGH, run_stages};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

struct Options {
    dir: PathBuf,
    runs: usize,
}

fn options() -> Result<Options, String> {
    let mut dir = None;
    let mut runs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // cargo bench passes --bench to harness-less benchmarks.
            "--bench" => {}
            "--runs" => {
                runs = args.next().and_then(|n| n.parse().ok()).filter(|&n| n > 0).ok_or("--runs needs a count")?;
            }
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            other => dir = Some(PathBuf::from(other)),
        }
    }
    Ok(Options { dir: dir.unwrap_or_else(photos::shared_photos_dir), runs })
}

struct Image {
    name: String,
    gray: GrayImage,
    expected: String,
}

/// Median and 90th percentile (nearest rank) of `values`, in milliseconds.
fn median_p90(mut values: Vec<f64>) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let rank = |q: f64| values[((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
    (rank(0.5), rank(0.9))
}

/// Runs `stages` on every image `runs` times; per image: decoded correctly, median time, and
/// which stage read it.
fn measure(images: &[Image], stages: &[Stage], runs: usize) -> Vec<(bool, f64, Option<Stage>)> {
    images
        .iter()
        .map(|image| {
            let mut times = Vec::with_capacity(runs);
            let mut outcome = (false, None);
            for _ in 0..runs {
                let started = Instant::now();
                // Preparation is part of the work a frame costs, so it is inside the timing.
                let found = run_stages(&Prepared::new(image.gray.clone()), stages);
                times.push(started.elapsed().as_secs_f64() * 1e3);
                let hit = found.iter().find(|r| r.text == image.expected);
                outcome = (
                    hit.is_some(),
                    hit.and_then(|r| match r.origin {
                        Origin::Image(stage) => Some(stage),
                        Origin::Typed => None,
                    }),
                );
            }
            (outcome.0, median_p90(times).0, outcome.1)
        })
        .collect()
}

fn report(label: &str, results: &[(bool, f64, Option<Stage>)]) {
    let decoded = results.iter().filter(|r| r.0).count();
    let (median, p90) = median_p90(results.iter().map(|r| r.1).collect());
    let max = results.iter().map(|r| r.1).fold(0.0, f64::max);
    println!(
        "{label:<26} {decoded:>3}/{:<3} {:>5.1}%   median {median:>6.2} ms   p90 {p90:>6.2} ms   max {max:>6.1} ms",
        results.len(),
        100.0 * decoded as f64 / results.len().max(1) as f64,
    );
}

/// The live decoder's cost per camera frame: every frame runs the first stage, and, when that
/// finds nothing, one retry stage in turn; the slowest pair bounds the frame rate it keeps up
/// with. Measured on 1280×720 frames made from a photograph that no stage reads (every stage runs
/// to the end) and from one that the first stage reads.
fn camera_frames(images: &[Image], missed: &[&str], runs: usize) {
    let Some((&first, retries)) = THOROUGH.split_first() else { return };
    let frame_of =
        |image: &Image| image::imageops::resize(&image.gray, 1280, 720, image::imageops::FilterType::Triangle);
    let time = |gray: &GrayImage, stages: &[Stage]| {
        let times = (0..runs)
            .map(|_| {
                let started = Instant::now();
                let _ = run_stages(&Prepared::new(gray.clone()), stages);
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median_p90(times).0
    };
    println!("\nlive decoder on a 1280×720 camera frame (median per frame)");
    if let Some(image) = images.iter().find(|image| !missed.contains(&image.name.as_str())) {
        let frame = frame_of(image);
        println!("  code in view ({}): {first} alone {:>6.2} ms", image.name, time(&frame, &[first]));
    }
    if let Some(image) = images.iter().find(|image| missed.contains(&image.name.as_str())) {
        let frame = frame_of(image);
        for &retry in retries {
            let label = format!("{first} + {retry}");
            println!("  nothing read ({}): {label:<46} {:>6.2} ms", image.name, time(&frame, &[first, retry]));
        }
    }
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("scan bench: {error}\nusage: cargo bench --bench scan -- [PHOTO_DIR] [--runs N]");
            return ExitCode::FAILURE;
        }
    };
    let cases = match photos::load_cases(&options.dir) {
        Ok(cases) => cases,
        Err(error) => {
            eprintln!("scan bench: {error} (set KEYFILL_QR_PHOTOS or pass the folder)");
            return ExitCode::FAILURE;
        }
    };
    let mut images = Vec::with_capacity(cases.len());
    for case in cases {
        match image::open(&case.image) {
            Ok(image) => images.push(Image {
                name: case.image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                gray: image.to_luma8(),
                expected: case.expected,
            }),
            Err(error) => {
                eprintln!("scan bench: cannot read {}: {error}", case.image.display());
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{} images from {}, {} runs each, median time per image",
        images.len(),
        options.dir.display(),
        options.runs
    );

    println!("\ncascade (Scanner::default)");
    let cascade = measure(&images, Scanner::default().stages(), options.runs);
    report("all stages", &cascade);
    let mut by_stage: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, stage) in &cascade {
        if let Some(stage) = stage {
            *by_stage.entry(stage.to_string()).or_default() += 1;
        }
    }
    for stage in THOROUGH {
        println!("  read by {:<26} {:>3}", stage.to_string(), by_stage.get(&stage.to_string()).copied().unwrap_or(0));
    }
    let missed: Vec<&str> =
        images.iter().zip(&cascade).filter(|(_, r)| !r.0).map(|(image, _)| image.name.as_str()).collect();
    println!("  missed: {}", if missed.is_empty() { "none".to_owned() } else { missed.join(" ") });

    println!("\neach stage alone");
    for &stage in THOROUGH.iter().chain(MEASURED_ONLY) {
        report(&stage.to_string(), &measure(&images, &[stage], options.runs));
    }

    camera_frames(&images, &missed, options.runs);
    ExitCode::SUCCESS
}
