//! `keyfill scan FILE…`: reads QR codes from image files and says, for each, whether it holds a
//! Keyfill label (docs/scanning.md).

use anyhow::Result;
use clap::Args;
use keyfill_formats::printable;
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_station::scan::{Corners, Label, Origin, ScanError, ScanResult, Scanner};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Image files (PNG or JPEG) holding a QR code.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// How a `keyfill scan` run ended short of a Keyfill label in every file: the exit code names the
/// worst outcome over the files (docs/cli.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
pub enum ScanFailure {
    #[error("a QR code was found that is not a valid Keyfill label; see above")]
    NotAKeyfillLabel,
    #[error("no QR code was found in at least one image; see above")]
    NoCode,
    #[error("at least one file could not be read as an image, or is larger than Keyfill reads; see above")]
    Unreadable,
}

impl ScanFailure {
    /// 3, 4 and 5: 1 is any other error, 2 a usage error.
    pub fn exit_code(self) -> u8 {
        match self {
            ScanFailure::NotAKeyfillLabel => 3,
            ScanFailure::NoCode => 4,
            ScanFailure::Unreadable => 5,
        }
    }

    fn of(status: Status) -> Option<Self> {
        match status {
            Status::Keyfill => None,
            Status::InvalidLabel | Status::NotKeyfill => Some(ScanFailure::NotAKeyfillLabel),
            Status::NoCode => Some(ScanFailure::NoCode),
            Status::Unreadable => Some(ScanFailure::Unreadable),
        }
    }
}

/// Scans every file; fails with the worst [`ScanFailure`] unless every file held a valid Keyfill
/// label.
pub async fn run(args: ScanArgs) -> Result<()> {
    let mut reports = Vec::with_capacity(args.files.len());
    for path in args.files {
        // Decoding is CPU work: keep it off the async runtime's worker threads.
        let scanned = tokio::task::spawn_blocking({
            let path = path.clone();
            move || Scanner::default().scan_file(&path)
        })
        .await?;
        let report = FileReport::new(&path, scanned);
        if !args.json {
            report.print();
        }
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    match reports.iter().filter_map(|r| ScanFailure::of(r.status)).max() {
        Some(failure) => Err(failure.into()),
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// At least one code is a valid Keyfill label.
    Keyfill,
    /// A code starts like a Keyfill label but does not parse.
    InvalidLabel,
    /// Codes were found, none of them a Keyfill label.
    NotKeyfill,
    NoCode,
    Unreadable,
}

/// The documented JSON shape of one scanned file.
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    status: Status,
    error: Option<String>,
    codes: Vec<CodeReport>,
}

#[derive(Debug, Serialize)]
struct CodeReport {
    kind: Status,
    /// The decoded text; withheld (null) when it carries a setup secret.
    text: Option<String>,
    /// Which decoder and preparation read it, e.g. `rxing-hybrid/as-is`.
    read_by: String,
    /// Why a text that starts like a Keyfill label is not a valid one.
    problem: Option<String>,
    label: Option<LabelJson>,
    /// The code's outer corners in the image's pixels, `[x, y]` clockwise from the code's
    /// top-left; null when the decoder gave no usable position.
    corners: Option<[[f32; 2]; 4]>,
}

#[derive(Debug, Serialize)]
struct LabelJson {
    name: String,
    device_id: String,
    serial_number: String,
    credential_mode: &'static str,
    model: Option<String>,
    serial_hint: bool,
    ble_address: Option<String>,
    ble_name: Option<String>,
    pcsc_aid: Option<String>,
}

impl FileReport {
    fn new(path: &std::path::Path, scanned: Result<Vec<ScanResult>, ScanError>) -> Self {
        let file = path.display().to_string();
        let results = match scanned {
            Ok(results) => results,
            Err(error) => {
                return FileReport {
                    file,
                    status: Status::Unreadable,
                    error: Some(error.to_string()),
                    codes: Vec::new(),
                };
            }
        };
        let codes: Vec<CodeReport> = results.iter().map(CodeReport::new).collect();
        let status = [Status::Keyfill, Status::InvalidLabel, Status::NotKeyfill]
            .into_iter()
            .find(|wanted| codes.iter().any(|code| code.kind == *wanted))
            .unwrap_or(Status::NoCode);
        FileReport { file, status, error: None, codes }
    }

    fn print(&self) {
        match self.status {
            Status::Unreadable => println!("{}: {}", self.file, self.error.as_deref().unwrap_or("unreadable")),
            Status::NoCode => println!("{}: no QR code found", self.file),
            _ => {
                for code in &self.codes {
                    println!("{}: {}", self.file, code.headline());
                    match &code.text {
                        Some(text) => println!("  text: {}", printable(text)),
                        None => println!("  text: (withheld: it carries the device's setup secret)"),
                    }
                    println!("  read by {}", code.read_by);
                }
            }
        }
    }
}

impl CodeReport {
    fn new(result: &ScanResult) -> Self {
        let read_by = match result.origin {
            Origin::Image(stage) => stage.to_string(),
            Origin::Typed => "scanner input".to_owned(),
        };
        let text = Some(result.text.clone());
        let corners = result.corners.map(corners_json);
        match &result.label {
            Label::Keyfill(payload) => CodeReport {
                kind: Status::Keyfill,
                text: match payload.credential {
                    DeviceCredential::SetupSecret(_) => None,
                    DeviceCredential::Identity { .. } => text,
                },
                read_by,
                problem: None,
                label: Some(LabelJson::new(payload)),
                corners,
            },
            Label::Invalid(error) => CodeReport {
                kind: Status::InvalidLabel,
                text,
                read_by,
                problem: Some(error.to_string()),
                label: None,
                corners,
            },
            Label::NotKeyfill => {
                CodeReport { kind: Status::NotKeyfill, text, read_by, problem: None, label: None, corners }
            }
        }
    }

    fn headline(&self) -> String {
        match (&self.label, &self.problem) {
            (Some(label), _) => {
                let mut line = format!(
                    "Keyfill label: device {} (id {}), serial {}, {} mode",
                    printable(&label.name),
                    label.device_id,
                    printable(&label.serial_number),
                    label.credential_mode
                );
                if let Some(model) = &label.model {
                    line += &format!(", model {}", printable(model));
                }
                line
            }
            (None, Some(problem)) => format!("looks like a Keyfill label but is not valid: {problem}"),
            (None, None) => "a QR code was found, but it is not a Keyfill label".to_owned(),
        }
    }
}

impl LabelJson {
    fn new(payload: &OnboardingPayload) -> Self {
        let hints = &payload.hints;
        LabelJson {
            name: payload.name.as_str().to_owned(),
            device_id: payload.device_id.to_string(),
            serial_number: payload.serial_number.clone(),
            credential_mode: match payload.credential {
                DeviceCredential::Identity { .. } => "identity",
                DeviceCredential::SetupSecret(_) => "secret",
            },
            model: payload.model.clone(),
            serial_hint: hints.serial,
            ble_address: hints.ble_address.map(|a| a.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")),
            ble_name: hints.ble_name.clone(),
            pcsc_aid: hints.pcsc_aid.as_ref().map(hex::encode),
        }
    }
}

/// Corners as `[x, y]` pairs, to a tenth of a pixel: the decoders locate a code to about half a
/// pixel, and more digits would only be noise.
fn corners_json(corners: Corners) -> [[f32; 2]; 4] {
    let tenth = |v: f32| (v * 10.0).round() / 10.0;
    corners.map(|p| [tenth(p.x), tenth(p.y)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfill_formats::qr::SetupSecret;

    fn report_of(texts: &[&str]) -> FileReport {
        let results = texts.iter().filter_map(|t| keyfill_station::scan::from_typed_text(t)).collect();
        FileReport::new(std::path::Path::new("label.png"), Ok(results))
    }

    #[test]
    fn scan_cli_file_status_prefers_a_keyfill_label() {
        let label = OnboardingPayload::new(
            "dev-1".parse().expect("valid"),
            "SN-1",
            DeviceCredential::Identity { public_key: [7; 32] },
        );
        let text = label.encode().unwrap_or_default();
        assert_eq!(report_of(&["https://example.com", &text]).status, Status::Keyfill);
        assert_eq!(report_of(&["https://example.com", "KF1:%%"]).status, Status::InvalidLabel);
        assert_eq!(report_of(&["https://example.com"]).status, Status::NotKeyfill);
        assert_eq!(report_of(&[]).status, Status::NoCode);
        let gone = keyfill_station::scan::image_file::read_image(
            std::path::Path::new("/nonexistent/x.png"),
            &keyfill_station::scan::ImageLimits::DEFAULT,
        );
        let unreadable =
            FileReport::new(std::path::Path::new("x.png"), Err(ScanError::from(gone.expect_err("no such file"))));
        assert_eq!(unreadable.status, Status::Unreadable);
    }

    #[test]
    fn scan_cli_withholds_the_text_of_setup_secret_labels() {
        let secret = DeviceCredential::SetupSecret(SetupSecret([9; 16]));
        let text = OnboardingPayload::new("dev-2".parse().expect("valid"), "SN-2", secret).encode().unwrap_or_default();
        let report = report_of(&[&text]);
        assert_eq!(report.status, Status::Keyfill);
        assert_eq!(report.codes[0].text, None);
        let json = serde_json::to_string(&report).unwrap_or_default();
        assert!(!json.contains(&text[4..]), "{json}");
        assert!(json.contains("\"credential_mode\":\"secret\""), "{json}");
    }

    #[test]
    fn scan_cli_json_gives_each_code_its_corners_or_null() {
        let typed = report_of(&["https://example.com"]);
        let json = serde_json::to_value(&typed).unwrap_or_default();
        assert_eq!(json["codes"][0]["corners"], serde_json::Value::Null);

        let label = OnboardingPayload::new(
            "dev-3".parse().expect("valid"),
            "SN-3",
            DeviceCredential::Identity { public_key: [3; 32] },
        );
        let code = qrcode::QrCode::new(label.encode().unwrap_or_default().as_bytes()).ok();
        let image = code.map(|c| c.render::<image::Luma<u8>>().module_dimensions(4, 4).build()).unwrap_or_default();
        let results = Scanner::default().scan_gray(image);
        let json =
            serde_json::to_value(FileReport::new(std::path::Path::new("label.png"), Ok(results))).unwrap_or_default();
        // The quiet zone is 4 modules of 4 pixels: the code starts 16 pixels in.
        let top_left = &json["codes"][0]["corners"][0];
        assert_eq!(top_left.as_array().map(Vec::len), Some(2), "{json}");
        let near = |v: &serde_json::Value| v.as_f64().is_some_and(|v| (v - 16.0).abs() < 2.0);
        assert!(near(&top_left[0]) && near(&top_left[1]), "{json}");
    }

    #[test]
    fn scan_cli_escapes_control_characters() {
        assert_eq!(printable("a\nb\t\x1b[2J\\"), "a\\nb\\t\\u{1b}[2J\\\\");
    }
}
