//! Device labels end to end: each format renders, and what a printer would print decodes back
//! (rqrr) to exactly the QR text; sizes are exact; no key material reaches a label.
//! PDF rasterising uses poppler's `pdftoppm`/`pdftotext` (scripts/setup installs poppler-utils);
//! without them those checks are skipped with a note.

use keyfill_formats::DeviceId;
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload, SetupSecret};
use keyfill_station::db::Inventory;
use keyfill_station::db::devices::{self, Device, DeviceState, NewDevice};
use keyfill_station::label::{
    self, LabelContent, LabelError, LabelFormat, LabelLayout, LabelSpec, LineRole, QrKind, SheetSpec,
};
use std::path::Path;
use std::process::Command;

const PROVISIONED_AT: i64 = 1_738_332_000_000; // 2025-01-31T14:00:00Z

fn identity_device(name: &str, serial: &str) -> Device {
    Device {
        id: DeviceId::from_name(name).to_hex(),
        name: name.into(),
        serial_number: serial.into(),
        credential_mode: "identity".into(),
        identity_public_key: Some((0..32).collect()),
        sealed_setup_secret: None,
        model: Some("KF-TH1".into()),
        state: DeviceState::Provisioned,
        transport: Some("serial".into()),
        port: Some("/dev/ttyUSB0".into()),
        key_id: Some("key-1".into()),
        failure: None,
        created_at: PROVISIONED_AT - 5000,
        updated_at: PROVISIONED_AT,
        provisioned_at: Some(PROVISIONED_AT),
        rotation: None,
        rotation_attempts: None,
        order_id: None,
    }
}

fn decode_all(gray: image::GrayImage) -> Vec<String> {
    let mut prepared = rqrr::PreparedImage::prepare(gray);
    prepared.detect_grids().into_iter().filter_map(|grid| grid.decode().ok().map(|(_, text)| text)).collect()
}

fn decode_png(png: &[u8]) -> Vec<String> {
    decode_all(image::load_from_memory(png).expect("PNG decodes").to_luma8())
}

fn have(tool: &str) -> bool {
    let found = Command::new(tool).arg("-v").output().is_ok();
    if !found {
        eprintln!("note: {tool} not installed (poppler-utils); skipping the rasterised PDF check");
    }
    found
}

/// Rasterises every page of `pdf` with pdftoppm at `dpi`, in greyscale.
fn rasterise(pdf: &[u8], dpi: u32) -> Vec<image::GrayImage> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("labels.pdf");
    std::fs::write(&input, pdf).expect("write pdf");
    let prefix = dir.path().join("page");
    let status = Command::new("pdftoppm")
        .args(["-r", &dpi.to_string(), "-gray", "-png"])
        .arg(&input)
        .arg(&prefix)
        .status()
        .expect("run pdftoppm");
    assert!(status.success(), "pdftoppm failed");
    let mut pages: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "png"))
        .collect();
    pages.sort();
    pages.iter().map(|path| image::open(path).expect("page").to_luma8()).collect()
}

fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("labels.pdf");
    std::fs::write(&input, pdf).expect("write pdf");
    let output = Command::new("pdftotext").arg(&input).arg("-").output().expect("run pdftotext");
    assert!(output.status.success(), "pdftotext failed");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// The `[x0 y0 x1 y1]` of every MediaBox in the file, in order.
fn media_boxes(pdf: &[u8]) -> Vec<[f64; 4]> {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/MediaBox [")
        .map(|(at, key)| {
            let rest = &text[at + key.len()..];
            let numbers: Vec<f64> =
                rest[..rest.find(']').expect("]")].split_whitespace().map(|n| n.parse().expect("number")).collect();
            numbers.try_into().expect("four numbers")
        })
        .collect()
}

fn page_count(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.matches("/Type /Page").count() - text.matches("/Type /Pages").count()
}

#[test]
fn label_png_decodes_back_at_300_and_203_dpi() {
    let content = LabelContent::for_device(&identity_device("sensor-0042", "SN-2025-000042")).expect("content");
    assert_eq!(content.kind(), QrKind::IdentityPayload);
    for spec in [LabelSpec::LABEL_50X30, LabelSpec::LABEL_62X29, LabelSpec::LABEL_100X50] {
        for dpi in [203, 300] {
            let png = label::render_png(&content, &spec.with_dpi(dpi)).expect("render");
            assert_eq!(decode_png(&png), vec![content.qr_text().to_owned()], "{spec:?} at {dpi} dpi");
        }
    }
}

#[test]
fn label_png_has_the_exact_pixel_size_and_records_its_dpi() {
    let content = LabelContent::for_device(&identity_device("sensor-0042", "SN-1")).expect("content");
    for (spec, size) in [
        (LabelSpec::LABEL_50X30, (591, 354)),
        (LabelSpec::LABEL_50X30.with_dpi(203), (400, 240)),
        (LabelSpec::LABEL_62X29, (732, 343)),
        (LabelSpec::LABEL_100X50.with_dpi(600), (2362, 1181)),
    ] {
        let png = label::render_png(&content, &spec).expect("render");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().expect("png header");
        let info = reader.info();
        assert_eq!((info.width, info.height), size, "{spec:?}");
        assert_eq!(info.bit_depth, png::BitDepth::One);
        let dims = info.pixel_dims.expect("pHYs");
        assert_eq!((dims.xppu, dims.unit), ((f64::from(spec.dpi) / 0.0254).round() as u32, png::Unit::Meter));
    }
}

#[test]
fn label_svg_is_xml_sized_in_millimetres() {
    let content = LabelContent::for_device(&identity_device("a<b>&\"c\"", "SN-1")).expect("content");
    let svg = label::render_svg(&content, &LabelSpec::LABEL_62X29).expect("render");
    let mut reader = quick_xml::Reader::from_str(&svg);
    let mut root = None;
    let mut texts = Vec::new();
    let mut in_text = false;
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Start(element) if element.name().as_ref() == b"svg" => {
                let attribute = |name: &[u8]| {
                    let value = element.try_get_attribute(name).expect("attribute").expect("present").value;
                    String::from_utf8(value.into_owned()).expect("utf-8")
                };
                root = Some((attribute(b"width"), attribute(b"height"), attribute(b"viewBox")));
            }
            quick_xml::events::Event::Start(element) => in_text = element.name().as_ref() == b"text",
            quick_xml::events::Event::Text(text) if in_text => {
                texts.push(text.decode().expect("text").into_owned());
            }
            quick_xml::events::Event::GeneralRef(reference) if in_text => {
                // Entity references arrive apart from the text around them.
                let resolved = match &*reference {
                    b"lt" => "<",
                    b"gt" => ">",
                    b"amp" => "&",
                    b"quot" => "\"",
                    b"apos" => "'",
                    other => panic!("unexpected entity {other:?}"),
                };
                texts.push(resolved.to_owned());
            }
            quick_xml::events::Event::End(_) => {
                if in_text {
                    texts.push("\n".into());
                }
                in_text = false;
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(root, Some(("62mm".into(), "29mm".into(), "0 0 62 29".into())));
    let texts = texts.concat();
    assert!(texts.starts_with("a<b>&\"c\"\n"), "{texts}");
    assert!(texts.contains("S/N SN-1"), "{texts}");
    assert!(texts.contains("2025-01-31 UTC"), "{texts}");
}

#[test]
fn label_pdf_has_exact_page_size_and_decodes_back() {
    let content = LabelContent::for_device(&identity_device("sensor-0042", "SN-2025-000042")).expect("content");
    let pdf = label::render(&content, &LabelSpec::LABEL_50X30, LabelFormat::Pdf).expect("render");
    assert!(pdf.starts_with(b"%PDF-"));
    assert_eq!(page_count(&pdf), 1);
    let [x0, y0, x1, y1] = media_boxes(&pdf)[0];
    let expected = [0.0, 0.0, 50.0 * 72.0 / 25.4, 30.0 * 72.0 / 25.4]; // 141.732 x 85.039 pt
    for (got, want) in [x0, y0, x1, y1].iter().zip(expected) {
        assert!((got - want).abs() < 0.01, "MediaBox {:?}, expected {expected:?}", [x0, y0, x1, y1]);
    }
    if !have("pdftoppm") || !have("pdftotext") {
        return;
    }
    for dpi in [203, 300] {
        let pages = rasterise(&pdf, dpi);
        assert_eq!(pages.len(), 1);
        // pdftoppm rounds a page's dots up, the PNG renderer to the nearest.
        let (width, height) = LabelSpec::LABEL_50X30.with_dpi(dpi).pixel_size();
        let (got_width, got_height) = pages[0].dimensions();
        assert!(got_width.abs_diff(width) <= 1 && got_height.abs_diff(height) <= 1, "{dpi} dpi");
        assert_eq!(decode_all(pages[0].clone()), vec![content.qr_text().to_owned()], "{dpi} dpi");
    }
    let text = pdf_text(&pdf);
    assert!(text.contains("sensor-0042"), "{text}");
    assert!(text.contains(&content.device_id().to_hex()[..4]), "{text}");
    assert!(text.contains("2025-01-31 UTC"), "{text}");
}

#[test]
fn label_batch_sheet_of_30_has_the_expected_pages_and_codes() {
    let contents: Vec<LabelContent> = (0..30)
        .map(|i| LabelContent::for_device(&identity_device(&format!("sensor-{i:04}"), &format!("SN-{i:06}"))))
        .collect::<Result<_, _>>()
        .expect("contents");
    let spec = LabelSpec::LABEL_50X30;
    let per_sheet = SheetSpec::A4.labels_per_sheet(&spec);
    assert_eq!(per_sheet, 21); // 3 columns x 7 rows
    let pdf = label::render_pdf_sheet(&contents, &spec, &SheetSpec::A4).expect("render");
    assert_eq!(page_count(&pdf), 30_usize.div_ceil(per_sheet));
    for [_, _, width, height] in media_boxes(&pdf) {
        assert!((width - 595.276).abs() < 0.01 && (height - 841.89).abs() < 0.01, "{width} x {height}");
    }
    // One label per page for a label printer.
    let pages = label::render_pdf(&contents, &spec).expect("render");
    assert_eq!(page_count(&pages), 30);
    if !have("pdftoppm") {
        return;
    }
    let dpi = 300;
    let sheets = rasterise(&pdf, dpi);
    assert_eq!(sheets.len(), 2);
    // Scan each label on its own, as an operator would: cut it out of the page at its grid place.
    let dots = |mm: f64| (mm * f64::from(dpi) / 25.4).round() as u32;
    let positions = SheetSpec::A4.positions(&spec);
    let cells = sheets.iter().flat_map(|sheet| positions.iter().map(move |position| (sheet, position)));
    for (content, (sheet, (x, y))) in contents.iter().zip(cells) {
        let cell = image::imageops::crop_imm(sheet, dots(*x), dots(*y), dots(spec.width_mm), dots(spec.height_mm));
        assert_eq!(decode_all(cell.to_image()), vec![content.qr_text().to_owned()], "label at {x}, {y} mm");
    }
}

#[test]
fn label_long_names_are_fitted_and_still_decode() {
    let name = format!("plant-a.line-3.{}-sensor-0042", "x".repeat(200));
    let serial = format!("SERIAL-{}-END", "7".repeat(52));
    let content = LabelContent::for_device(&identity_device(&name, &serial)).expect("content");
    for spec in [LabelSpec::LABEL_50X30, LabelSpec::LABEL_62X29, LabelSpec::LABEL_100X50] {
        let layout = LabelLayout::new(&content, &spec).expect("layout");
        let area = layout.text_area;
        for line in &layout.lines {
            assert!(line.x_mm + line.width_mm <= area.x + area.width + 1e-9, "{line:?} overflows {area:?}");
        }
        let name_text: String =
            layout.lines.iter().filter(|l| l.role == LineRole::Name).map(|l| l.text.as_str()).collect();
        assert!(name_text.starts_with("plant-a.") && name_text.ends_with("0042"), "{name_text}");
        let serial_text: String =
            layout.lines.iter().filter(|l| l.role == LineRole::SerialNumber).map(|l| l.text.as_str()).collect();
        assert!(serial_text.starts_with("S/N SERIAL-") && serial_text.ends_with("-END"), "{serial_text}");
        let png = label::render_png(&content, &spec).expect("render");
        assert_eq!(decode_png(&png), vec![content.qr_text().to_owned()], "{spec:?}");
    }
}

#[test]
fn label_payload_too_long_for_the_label_is_an_error() {
    let content = LabelContent::for_device(&identity_device(&"n".repeat(255), &"S".repeat(64))).expect("content");
    let small = LabelSpec { width_mm: 25.0, height_mm: 15.0, dpi: 203 };
    for format in [LabelFormat::Png, LabelFormat::Svg, LabelFormat::Pdf] {
        let error = label::render(&content, &small, format).expect_err("too large");
        assert!(matches!(error, LabelError::PayloadTooLarge { .. }), "{error}");
    }
    // The same payload fits the default label, with modules of at least 0.25 mm.
    let layout = LabelLayout::new(&content, &LabelSpec::LABEL_50X30).expect("layout");
    assert!(f64::from(layout.qr.module_dots) * layout.mm_per_dot() >= label::MIN_MODULE_MM);
}

#[test]
fn label_never_carries_key_material() {
    // A setup-secret device: its sealed secret (still present while pending) never reaches the label.
    let mut device = identity_device("secret-device", "SN-9");
    device.credential_mode = "secret".into();
    device.identity_public_key = None;
    device.sealed_setup_secret = Some(vec![0xA5; 60]);
    let content = LabelContent::for_device(&device).expect("content");
    assert_eq!(content.kind(), QrKind::DeviceId);
    assert_eq!(content.qr_text(), device.id);
    let png = label::render_png(&content, &LabelSpec::LABEL_50X30).expect("render");
    assert_eq!(decode_png(&png), vec![device.id.clone()]);
    let svg = label::render_svg(&content, &LabelSpec::LABEL_50X30).expect("render");
    assert!(!svg.to_ascii_lowercase().contains(&"a5".repeat(8)));
    // An identity device: the QR holds the public key only, which the factory label printed.
    let content = LabelContent::for_device(&identity_device("identity-device", "SN-8")).expect("content");
    let payload = OnboardingPayload::parse(content.qr_text()).expect("payload");
    assert!(matches!(payload.credential, DeviceCredential::Identity { .. }));
}

#[test]
fn label_scanned_payload_is_printed_exactly() {
    let mut payload = OnboardingPayload::new(
        "field-unit-7".parse().expect("valid"),
        "SN-7",
        DeviceCredential::SetupSecret(SetupSecret([42; 16])),
    );
    payload.hints.serial = true;
    let text = payload.encode().expect("encode");
    let content = LabelContent::from_scanned_text(&text).expect("content").with_provisioned_at(Some(PROVISIONED_AT));
    assert_eq!(content.kind(), QrKind::ScannedSetupSecretPayload);
    let png = label::render_png(&content, &LabelSpec::LABEL_62X29.with_dpi(203)).expect("render");
    assert_eq!(decode_png(&png), vec![text]);
}

#[tokio::test]
async fn label_from_a_real_inventory_follows_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("keyfill.db").display());
    let inventory = Inventory::open(&url).await.expect("inventory");
    for (name, mode) in [("inv-identity", "identity"), ("inv-secret", "secret")] {
        let device = NewDevice {
            id: DeviceId::from_name(name).to_hex(),
            name: name.into(),
            serial_number: format!("SN-{name}"),
            credential_mode: mode,
            identity_public_key: (mode == "identity").then(|| vec![9; 32]),
            sealed_setup_secret: (mode == "secret").then(|| vec![1; 48]),
            model: None,
        };
        let mut tx = inventory.pool().begin().await.expect("begin");
        devices::begin_provisioning(&mut tx, &device, &format!("key-{name}"), "serial", "/dev/pts/1")
            .await
            .expect("pending");
        devices::mark_provisioned(&mut tx, &device.id, &format!("key-{name}"), "serial", "/dev/pts/1")
            .await
            .expect("done");
        tx.commit().await.expect("commit");
    }
    let provisioned = devices::list(inventory.pool(), Some(DeviceState::Provisioned)).await.expect("list");
    let contents: Vec<LabelContent> =
        provisioned.iter().map(LabelContent::for_device).collect::<Result<_, _>>().expect("contents");
    // Both rows may share a creation millisecond, so the inventory's order is not the insertion order.
    let mut kinds: Vec<(&str, QrKind)> = contents.iter().map(|c| (c.name(), c.kind())).collect();
    kinds.sort_by_key(|(name, _)| *name);
    assert_eq!(kinds, [("inv-identity", QrKind::IdentityPayload), ("inv-secret", QrKind::DeviceId)]);
    assert!(contents.iter().all(|c| c.provisioned_at().is_some()));
    let pdf = label::render_pdf(&contents, &LabelSpec::LABEL_50X30).expect("render");
    assert_eq!(page_count(&pdf), 2);
    inventory.close().await;
}

/// Regenerates the operator guide's sample labels:
/// `cargo test -p keyfill-station --test label -- --ignored label_doc_samples`.
#[test]
#[ignore = "writes docs/images; run by hand"]
fn label_doc_samples() {
    let content = LabelContent::for_device(&identity_device("sensor-0042", "SN-2025-000042")).expect("content");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
    std::fs::create_dir_all(&images).expect("docs/images");
    let spec = LabelSpec::LABEL_50X30;
    std::fs::write(images.join("label-50x30.png"), label::render_png(&content, &spec).expect("png")).expect("write");
    std::fs::write(images.join("label-50x30.svg"), label::render_svg(&content, &spec).expect("svg")).expect("write");
}
