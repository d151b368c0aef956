//! `keyfill label`: printable labels for devices in the inventory (no passphrase needed: a label
//! holds nothing sealed). See docs/labels.md.

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use keyfill_formats::printable;
use keyfill_station::db::Inventory;
use keyfill_station::db::devices::{self, Device, DeviceState};
use keyfill_station::label::{self, LabelContent, LabelFormat, LabelSpec, QrKind, SheetSpec};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct LabelArgs {
    /// Devices to label (id or name); several make a batch.
    #[arg(value_name = "DEVICE")]
    devices: Vec<String>,
    /// Label every provisioned device.
    #[arg(long)]
    all_provisioned: bool,
    /// Output file; its extension picks the format: .png, .svg or .pdf. Several devices in a PNG or
    /// SVG go to numbered files (labels.png: labels-01.png, labels-02.png, ...); a PDF holds them all.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Label size in millimetres, WIDTHxHEIGHT: 50x30, 62x29 (Brother DK-11209), 100x50 or any other.
    #[arg(long, default_value = "50x30", value_parser = parse_size)]
    size: LabelSpec,
    /// The printer's resolution in dots per inch (203 and 300 are common for thermal printers).
    #[arg(long, default_value_t = 300)]
    dpi: u32,
    /// PDF only: lay the labels out on sheets of this paper with cut marks (for office printers)
    /// instead of one label per page (for label printers).
    #[arg(long, value_enum)]
    sheet: Option<Sheet>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Sheet {
    A4,
    Letter,
}

impl From<Sheet> for SheetSpec {
    fn from(sheet: Sheet) -> Self {
        match sheet {
            Sheet::A4 => SheetSpec::A4,
            Sheet::Letter => SheetSpec::LETTER,
        }
    }
}

fn parse_size(text: &str) -> Result<LabelSpec, String> {
    text.parse::<LabelSpec>().map_err(|e| e.to_string())
}

pub async fn run(args: LabelArgs, inventory: &Inventory) -> Result<()> {
    let format = LabelFormat::from_path(&args.out)?;
    if args.sheet.is_some() && format != LabelFormat::Pdf {
        bail!("--sheet lays labels out on PDF pages: give --out a .pdf file");
    }
    let spec = args.size.with_dpi(args.dpi);
    spec.validate()?;
    let targets = select(inventory, &args.devices, args.all_provisioned).await?;
    let mut contents = Vec::with_capacity(targets.len());
    for device in &targets {
        let content = LabelContent::for_device(device)
            .with_context(|| format!("cannot label {} ({})", device.name, device.id))?;
        note_about(device, &content);
        contents.push(content);
    }
    match format {
        LabelFormat::Pdf => {
            let pdf = match args.sheet {
                Some(sheet) => label::render_pdf_sheet(&contents, &spec, &sheet.into())?,
                None => label::render_pdf(&contents, &spec)?,
            };
            write(&args.out, &pdf)?;
            println!("wrote {} ({} label(s))", args.out.display(), contents.len());
        }
        _ => {
            let paths = numbered_paths(&args.out, contents.len());
            for ((content, device), path) in contents.iter().zip(&targets).zip(&paths) {
                write(path, &label::render(content, &spec, format)?)?;
                println!("wrote {} ({}, {})", path.display(), printable(&device.name), device.id);
            }
        }
    }
    Ok(())
}

/// The devices named (in order) and, with `all_provisioned`, every provisioned device; each once.
async fn select(inventory: &Inventory, wanted: &[String], all_provisioned: bool) -> Result<Vec<Device>> {
    let mut targets: Vec<Device> = Vec::new();
    for name in wanted {
        let device = devices::resolve(inventory.pool(), name).await?;
        targets.push(device);
    }
    if all_provisioned {
        targets.extend(devices::list(inventory.pool(), Some(DeviceState::Provisioned)).await?);
    }
    let mut seen = std::collections::HashSet::new();
    targets.retain(|device| seen.insert(device.id.clone()));
    if targets.is_empty() {
        bail!("nothing to label: name devices, or pass --all-provisioned");
    }
    Ok(targets)
}

/// Tells the operator when a label will not be the full onboarding payload, or has no date.
fn note_about(device: &Device, content: &LabelContent) {
    if device.state != DeviceState::Provisioned {
        eprintln!("note: {} is {}: its label has no provisioning date", printable(&device.name), device.state.as_str());
    }
    if content.kind() == QrKind::DeviceId {
        eprintln!(
            "note: {} uses a setup secret, which the station never prints: its QR code holds only the device id",
            printable(&device.name)
        );
    }
}

/// `out` itself for one label; `STEM-01.EXT`, `STEM-02.EXT`, ... beside it for several.
fn numbered_paths(out: &Path, count: usize) -> Vec<PathBuf> {
    if count == 1 {
        return vec![out.to_path_buf()];
    }
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "label".into());
    let extension = out.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
    let digits = count.to_string().len().max(2);
    (1..=count).map(|n| out.with_file_name(format!("{stem}-{n:0digits$}.{extension}"))).collect()
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_cli_numbers_files_for_a_batch() {
        assert_eq!(numbered_paths(Path::new("out/l.png"), 1), [PathBuf::from("out/l.png")]);
        let paths = numbered_paths(Path::new("out/l.svg"), 3);
        assert_eq!(
            paths,
            [PathBuf::from("out/l-01.svg"), PathBuf::from("out/l-02.svg"), PathBuf::from("out/l-03.svg")]
        );
        assert_eq!(numbered_paths(Path::new("l.png"), 120)[0], PathBuf::from("l-001.png"));
    }
}
