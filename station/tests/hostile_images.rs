//! Hostile image files against every path that reads images (`cargo test hostile_` runs them):
//! a blank 20000×20000 PNG, a header that lies, a cut-short file, a file too large to read, a
//! decompression bomb within the pixel limit. Each must be refused before its pixels are decoded:
//! the tests check the kind of refusal, which is decided from the file's length or the image's
//! header, never how long it took. `keyfill scan` is run as its user would, for its exit codes.
//! Inputs on which the `image_file` fuzz target made a decoder panic (`fuzz_` tests) must be
//! refused as damaged images.

use image::{GrayImage, Luma};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_station::scan::image_file::{ImageFileError, ImageLimits, read_image};
use keyfill_station::scan::source::{FolderWatch, FrameSource, Next, read_gray};
use keyfill_station::scan::{ScanError, Scanner};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

/// A blank PNG written row by row, so the test never holds the image: a
/// 20000×20000 one is a few hundred kilobytes on disk and 400 MB decoded.
fn blank_png(path: &Path, width: u32, height: u32, color: png::ColorType, depth: png::BitDepth) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap_or_else(|e| panic!("{e}")));
    let mut encoder = png::Encoder::new(file, width, height);
    encoder.set_color(color);
    encoder.set_depth(depth);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().unwrap_or_else(|e| panic!("{e}"));
    let row_bytes = width as usize * color.samples() * if depth == png::BitDepth::Sixteen { 2 } else { 1 };
    let row = vec![0xffu8; row_bytes];
    let mut stream = writer.stream_writer().unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..height {
        stream.write_all(&row).unwrap_or_else(|e| panic!("{e}"));
    }
    stream.finish().unwrap_or_else(|e| panic!("{e}"));
}

fn crc32(bytes: &[u8]) -> u32 {
    // PNG's chunk checksum (ISO 3309 CRC-32), bit by bit: a few hundred bytes only.
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A well-formed grayscale PNG whose header says `width`×`height` but whose data holds `rows`
/// rows of `width` pixels.
fn lying_png(width: u32, height: u32, rows: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    let raw = vec![0u8; (width as usize + 1) * rows as usize];
    chunk(&mut out, b"IDAT", &miniz_oxide::deflate::compress_to_vec_zlib(&raw, 6));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn label_png(path: &Path) -> String {
    let payload = OnboardingPayload::new(
        keyfill_formats::DeviceName::parse("hostile-1").expect("a valid name"),
        "SN-1",
        DeviceCredential::Identity { public_key: [7; 32] },
    );
    let text = payload.encode().unwrap_or_else(|e| panic!("{e}"));
    let code = qrcode::QrCode::new(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    code.render::<Luma<u8>>().module_dimensions(6, 6).build().save(path).unwrap_or_else(|e| panic!("{e}"));
    text
}

fn read(path: &Path) -> Result<image::DynamicImage, ImageFileError> {
    read_image(path, &ImageLimits::DEFAULT)
}

#[test]
fn hostile_blank_20000_pixel_png_is_refused_from_its_header() {
    let dir = temp_dir();
    let path = dir.path().join("blank.png");
    blank_png(&path, 20_000, 20_000, png::ColorType::Grayscale, png::BitDepth::Eight);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size < 2 * 1024 * 1024, "a small file ({size} bytes) that decodes to 400 MB");
    match read(&path) {
        Err(ImageFileError::TooManyPixels { width: 20_000, height: 20_000, .. }) => {}
        other => panic!("{other:?}"),
    }
    let message = read(&path).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("20000×20000") && message.contains("lower resolution"), "{message}");
    // Every path that reads a file: the scanner, `provision --qr-image`, frame sources.
    assert!(matches!(Scanner::default().scan_file(&path), Err(ScanError::Image(ImageFileError::TooManyPixels { .. }))));
    assert!(matches!(
        keyfill_station::qr_image::decode_file(&path),
        Err(keyfill_station::qr_image::QrImageError::Image(ImageFileError::TooManyPixels { .. }))
    ));
    assert!(matches!(read_gray(&path), Err(keyfill_station::scan::source::SourceError::Image(e)) if e.is_over_limit()));
}

#[test]
fn hostile_png_headers_that_lie_are_refused_or_read_only_as_far_as_they_say() {
    let dir = temp_dir();
    // Claims 20000×20000, holds one row: refused from the header, the data is never read.
    let claims_more = dir.path().join("claims-more.png");
    std::fs::write(&claims_more, lying_png(20_000, 20_000, 1)).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(read(&claims_more), Err(ImageFileError::TooManyPixels { .. })));
    // Claims 64×64, holds 20000 rows: only 64 rows are decoded.
    let claims_less = dir.path().join("claims-less.png");
    std::fs::write(&claims_less, lying_png(64, 64, 20_000)).unwrap_or_else(|e| panic!("{e}"));
    match read(&claims_less) {
        Ok(image) => assert_eq!((image.width(), image.height()), (64, 64)),
        Err(error) => assert!(matches!(error, ImageFileError::Decode { .. }), "{error:?}"),
    }
    // A JPEG named .png, and text named .png: told by content, not by name.
    let jpeg = dir.path().join("really-a-jpeg.png");
    GrayImage::from_pixel(32, 32, Luma([200]))
        .save_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(read(&jpeg).is_ok());
    let text = dir.path().join("text.png");
    std::fs::write(&text, b"KF1:not an image at all").unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(read(&text), Err(ImageFileError::UnknownFormat { .. })));
}

#[test]
fn hostile_truncated_file_is_a_decode_error() {
    let dir = temp_dir();
    let whole = dir.path().join("label.png");
    label_png(&whole);
    let bytes = std::fs::read(&whole).unwrap_or_else(|e| panic!("{e}"));
    let cut = dir.path().join("cut.png");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(read(&cut), Err(ImageFileError::Decode { .. })), "{:?}", read(&cut).err());
    let signature_only = dir.path().join("signature.png");
    std::fs::write(&signature_only, &bytes[..8]).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(read(&signature_only), Err(ImageFileError::Decode { .. })));
}

#[test]
fn hostile_huge_file_is_refused_before_it_is_read() {
    let dir = temp_dir();
    let path = dir.path().join("huge.png");
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    // Sparse: 64 MiB and one byte on paper, nothing on disk.
    file.set_len(ImageLimits::DEFAULT.max_file_bytes + 1).unwrap_or_else(|e| panic!("{e}"));
    drop(file);
    match read(&path) {
        Err(ImageFileError::FileTooLarge { at_least: false, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A device that never ends is cut at the limit, not read forever.
    let small = ImageLimits { max_file_bytes: 1024, ..ImageLimits::DEFAULT };
    assert!(matches!(
        read_image(Path::new("/dev/zero"), &small),
        Err(ImageFileError::FileTooLarge { at_least: true, .. })
    ));
}

#[test]
fn hostile_decompression_bomb_within_the_pixel_limit_is_refused_for_its_memory() {
    let dir = temp_dir();
    // 7000×7000 = 49 megapixels, under the pixel limit; 16-bit RGBA makes it 392 MB decoded.
    let path = dir.path().join("bomb.png");
    blank_png(&path, 7_000, 7_000, png::ColorType::Rgba, png::BitDepth::Sixteen);
    match read(&path) {
        Err(ImageFileError::TooMuchMemory { needed, limit, .. }) => {
            assert_eq!(needed, 7_000 * 7_000 * 8);
            assert_eq!(limit, ImageLimits::DEFAULT.max_decoded_bytes);
        }
        other => panic!("{other:?}"),
    }
}

/// Found by the `image_file` fuzz target (docs/fuzzing.md): a 4×2 indexed-colour PNG whose PLTE
/// chunk is 85 bytes long, not a multiple of 3. png 0.18.1 panics expanding such a palette.
const FUZZ_PALETTE_PNG: &str = concat!(
    "89504e470d0a1a0a0000000d494844520000000400000002080300000048768d5100000055504c5445000306090c0f12",
    "15181b1e2124272a2d303336393c3f4245484b4e5154575a5d606366696c6f7275787b7e8184878a8d909396999c9fa2",
    "a5a8abaeb1b4b7babdc0c3c6c9cccfd2d5d8dbdee1e4e7eaedf0f3f6f9fc13164b7a000000124944415478da636050f5",
    "ca67e03608ad020007b201e9290e21630000000049454e44ae426082",
);

#[test]
fn hostile_fuzz_png_palette_not_a_multiple_of_3_is_refused_not_a_crash() {
    let bytes = hex::decode(FUZZ_PALETTE_PNG).unwrap_or_else(|e| panic!("{e}"));
    let dir = temp_dir();
    let path = dir.path().join("palette.png");
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
    let read = read(&path);
    assert!(matches!(read, Err(ImageFileError::Decode { .. })), "{read:?}");
    // Camera frames take the same path.
    let decoded = keyfill_station::scan::image_file::decode_image(&bytes, None, &ImageLimits::DEFAULT);
    assert!(matches!(decoded, Err(ImageFileError::Decode { .. })), "{decoded:?}");
}

#[test]
fn hostile_camera_jpeg_frames_go_through_the_same_limits() {
    use keyfill_station::scan::camera::{CameraEncoding, to_gray};
    let mut frame = Vec::new();
    GrayImage::from_pixel(64, 48, Luma([90]))
        .write_to(&mut std::io::Cursor::new(&mut frame), image::ImageFormat::Jpeg)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(to_gray(CameraEncoding::Mjpeg, &frame, 64, 48, 0).map(|g| g.dimensions()), Some((64, 48)));
    // The same frame with a start-of-frame header claiming 60000×60000: dropped, not decoded.
    let sof = frame.windows(2).position(|w| w == [0xff, 0xc0]).unwrap_or_else(|| panic!("no SOF0"));
    frame[sof + 5..sof + 9].copy_from_slice(&[0xea, 0x60, 0xea, 0x60]);
    let decoded =
        keyfill_station::scan::image_file::decode_image(&frame, Some(image::ImageFormat::Jpeg), &ImageLimits::DEFAULT);
    assert!(matches!(decoded, Err(ImageFileError::TooManyPixels { width: 60_000, height: 60_000, .. })), "{decoded:?}");
    assert!(to_gray(CameraEncoding::Mjpeg, &frame, 64, 48, 0).is_none());
}

#[test]
fn hostile_watched_folder_skips_an_oversized_image_and_reads_the_next() {
    let dir = temp_dir();
    let mut watch = FolderWatch::new(dir.path(), Duration::from_millis(10)).unwrap_or_else(|e| panic!("{e}"));
    blank_png(&dir.path().join("a-blank.png"), 20_000, 20_000, png::ColorType::Grayscale, png::BitDepth::Eight);
    label_png(&dir.path().join("b-label.png"));
    let mut frames = Vec::new();
    for _ in 0..200 {
        match watch.next().unwrap_or_else(|e| panic!("{e}")) {
            Next::Frame(frame) => frames.push(frame.image.dimensions()),
            Next::Idle if frames.is_empty() => continue,
            _ => break,
        }
    }
    assert_eq!(frames.len(), 1, "only the label became a frame: {frames:?}");
}

fn shared_photos() -> Vec<PathBuf> {
    let dir = match std::env::var_os("KEYFILL_QR_PHOTOS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/qr-photos"),
    };
    let subset = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scan_photos/img");
    [dir.join("img"), subset]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect()
}

#[test]
fn hostile_limits_keep_every_shared_photograph_readable() {
    let photos = shared_photos();
    assert!(!photos.is_empty(), "the photo subset ships with the repository");
    for photo in photos {
        if let Err(error) = read(&photo) {
            panic!("{}: {error}", photo.display());
        }
    }
}

/// `keyfill scan FILES` with a home of its own (scanning needs no station).
fn keyfill_scan(dir: &Path, files: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyfill"))
        .arg("--home")
        .arg(dir.join("home"))
        .arg("scan")
        .args(files)
        .env("KEYFILL_LOG", "warn")
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hostile_keyfill_scan_exit_codes_tell_unreadable_no_code_and_not_keyfill_apart() {
    let dir = temp_dir();
    let label = dir.path().join("label.png");
    label_png(&label);
    let blank = dir.path().join("blank.png");
    blank_png(&blank, 20_000, 20_000, png::ColorType::Grayscale, png::BitDepth::Eight);
    let empty = dir.path().join("empty.png");
    GrayImage::from_pixel(64, 64, Luma([255])).save(&empty).unwrap_or_else(|e| panic!("{e}"));
    let url = dir.path().join("url.png");
    let code = qrcode::QrCode::new(b"https://example.com/").unwrap_or_else(|e| panic!("{e}"));
    code.render::<Luma<u8>>().module_dimensions(6, 6).build().save(&url).unwrap_or_else(|e| panic!("{e}"));
    let cut = dir.path().join("cut.png");
    let bytes = std::fs::read(&label).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));

    let code_of = |files: &[&Path]| keyfill_scan(dir.path(), files).status.code();
    assert_eq!(code_of(&[&label]), Some(0));
    assert_eq!(code_of(&[&url]), Some(3), "a code that is not a Keyfill label");
    assert_eq!(code_of(&[&empty]), Some(4), "no code");
    assert_eq!(code_of(&[&cut]), Some(5), "unreadable");
    assert_eq!(code_of(&[&dir.path().join("absent.png")]), Some(5), "unreadable");
    // The file: refused from its header, with the size, the limit and what to do.
    let output = keyfill_scan(dir.path(), &[&blank]);
    assert_eq!(output.status.code(), Some(5));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.contains("20000×20000 pixels") && said.contains("16384") && said.contains("lower resolution"),
        "{said}"
    );
    // Several files: the worst outcome wins (unreadable > no code > not Keyfill > label).
    assert_eq!(code_of(&[&label, &url]), Some(3));
    assert_eq!(code_of(&[&url, &empty, &label]), Some(4));
    assert_eq!(code_of(&[&blank, &empty, &url, &label]), Some(5));
}
