//! `keyfill orders`: work orders from the MES and their signed reconciliation reports.

use super::output::rfc3339;
use super::{print_json, read_bounded};
use anyhow::{Context, Result};
use clap::Subcommand;
use keyfill_formats::printable;
use keyfill_station::db::Inventory;
use keyfill_station::db::orders::{self, OrderCounts};
use keyfill_station::home::StationHome;
use keyfill_station::orders::file::{self, Format};
use keyfill_station::orders::report::{self, OrderReport};
use keyfill_station::orders::{self as work_orders, Imported};
use keyfill_station::provision::Station;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum OrdersCommand {
    /// Import work orders from the MES: CSV with a header row (order_id, device_name, model,
    /// serial_number, optional link and batch), or a JSON array of objects with those fields
    /// (files ending .json). All orders of the file are imported, or none; an order imported
    /// before with the same devices is left as it is.
    Import {
        file: PathBuf,
        /// The file's format (default: from its extension).
        #[arg(long, value_enum)]
        format: Option<FileFormat>,
    },
    /// List the orders with their progress.
    List {
        /// Closed orders too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// One order: its progress and each device's state.
    Show {
        order: String,
        #[arg(long)]
        json: bool,
    },
    /// The order's reconciliation (expected, provisioned, failed, pending, not keyed, unexpected),
    /// signed by this station's signing key as a JWS (EdDSA) for the MES.
    Report {
        order: String,
        /// The report as JSON, with its JWS.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// The report as CSV (one row per device).
        #[arg(long)]
        csv: bool,
        /// Also write the JWS (compact serialisation; its payload is the report exactly as
        /// printed) to this file.
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
    /// Close an order. Refused while devices are pending or not keyed, unless --force with a
    /// --reason (recorded, and shown in the report).
    Close {
        order: String,
        #[arg(long, requires = "reason")]
        force: bool,
        #[arg(long, requires = "force")]
        reason: Option<String>,
    },
    /// Check a signed report (a JWS from `orders report --signature`) against the factory root and
    /// print the report it signs. Needs no station.
    VerifyReport {
        file: PathBuf,
        /// The factory root public key file (factory-root.pub).
        #[arg(long)]
        factory_root: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FileFormat {
    Csv,
    Json,
}

pub async fn import(station: &Station, file: &Path, format: Option<FileFormat>) -> Result<()> {
    let format = match format {
        Some(FileFormat::Csv) => Format::Csv,
        Some(FileFormat::Json) => Format::Json,
        None => Format::of_path(file),
    };
    let bytes = read_bounded(file, file::MAX_FILE_BYTES)?;
    let lines = file::parse(&bytes, format).with_context(|| format!("{} was not imported", file.display()))?;
    let source = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let imported = work_orders::import(station, &source, lines)
        .await
        .with_context(|| format!("{} was not imported; nothing changed", file.display()))?;
    for order in imported {
        match order {
            Imported::Created { id, devices } => println!("order {id}: {devices} device(s) imported"),
            Imported::Unchanged { id, devices } => {
                println!("order {id}: imported before with the same {devices} device(s); unchanged")
            }
        }
    }
    Ok(())
}

fn counts_json(order: &OrderCounts) -> serde_json::Value {
    serde_json::json!({
        "order": order.id,
        "state": order.state,
        "imported_at": rfc3339(order.imported_at),
        "closed_at": order.closed_at.map(rfc3339),
        "expected": order.expected,
        "provisioned": order.provisioned,
        "failed": order.failed,
        "pending": order.pending,
        "not_started": order.not_started,
    })
}

fn counts_line(order: &OrderCounts) -> String {
    format!(
        "{:<20} {:<6} {:>6} expected {:>6} provisioned {:>5} failed {:>5} pending {:>6} not keyed",
        order.id, order.state, order.expected, order.provisioned, order.failed, order.pending, order.not_started
    )
}

pub async fn list(inventory: &Inventory, all: bool, json: bool) -> Result<()> {
    let orders = orders::list(inventory.pool(), !all).await?;
    if json {
        return print_json(&orders.iter().map(counts_json).collect::<Vec<_>>());
    }
    if orders.is_empty() {
        println!("{}", if all { "no work orders" } else { "no open work orders (--all lists closed ones)" });
    }
    for order in &orders {
        println!("{}", counts_line(order));
    }
    Ok(())
}

pub async fn show(inventory: &Inventory, order: &str, json: bool) -> Result<()> {
    let pool = inventory.pool();
    let counts = orders::counts(pool, order).await?.with_context(|| format!("no order {}", printable(order)))?;
    let items = orders::items(pool, order).await?;
    let unexpected = orders::unexpected(pool, order).await?;
    if json {
        let mut value = counts_json(&counts);
        value["unexpected"] = unexpected.len().into();
        value["devices"] = items
            .iter()
            .map(|item| {
                serde_json::json!({
                    "name": item.device_name,
                    "device_id": item.device_id,
                    "serial_number": item.serial_number,
                    "model": item.model,
                    "batch": item.batch,
                    "link": item.link,
                    "state": item.state.as_deref().unwrap_or("not_started"),
                })
            })
            .collect();
        return print_json(&value);
    }
    println!("{}", counts_line(&counts));
    for item in &items {
        println!(
            "  {:<12} {} ({}) serial {}{}",
            item.state.as_deref().unwrap_or("not_started"),
            printable(&item.device_name),
            item.device_id,
            printable(&item.serial_number),
            item.batch.as_deref().map(|b| format!(" batch {}", printable(b))).unwrap_or_default()
        );
    }
    if !unexpected.is_empty() {
        println!("  {} device(s) keyed under this order that it does not list", unexpected.len());
    }
    Ok(())
}

fn print_text(report: &OrderReport) {
    let c = &report.counts;
    println!(
        "order {} ({}): {} expected, {} provisioned, {} failed, {} pending, {} not keyed, {} unexpected",
        report.order, report.state, c.expected, c.provisioned, c.failed, c.pending, c.not_started, c.unexpected
    );
    if let Some(reason) = &report.close_reason {
        println!("closed with devices outstanding: {}", printable(reason));
    }
    for device in report.devices.iter().filter(|d| d.state != "provisioned") {
        println!("  {:<12} {} ({})", device.state, printable(&device.name), device.device_id);
    }
    for device in &report.unexpected {
        println!("  unexpected   {} ({}) {}", printable(&device.name), device.device_id, device.state);
    }
}

pub async fn report(
    station: &Station,
    home: &StationHome,
    order: &str,
    json: bool,
    csv: bool,
    signature: Option<&Path>,
) -> Result<()> {
    let report = report::build(station, order).await?;
    let signer = home.bundle_signer(&station.unlocked, None).context("cannot load the station's signing key")?;
    let (payload, content_type) =
        if csv { (report::to_csv(&report)?, "csv") } else { (serde_json::to_vec_pretty(&report)?, "json") };
    let jws = report::sign(&payload, content_type, &signer)?;
    if let Some(path) = signature {
        write_new(path, format!("{jws}\n").as_bytes())?;
    }
    if csv {
        std::io::stdout().write_all(&payload)?;
    } else if json {
        print_json(&serde_json::json!({ "report": report, "jws": jws }))?;
    } else {
        print_text(&report);
        if let Some(path) = signature {
            println!("signed report (JWS): {}", path.display());
        }
    }
    Ok(())
}

fn write_new(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

pub async fn close(station: &Station, order: &str, reason: Option<&str>) -> Result<()> {
    let counts = work_orders::close(station, order, reason).await?;
    println!("order {} closed: {}", counts.id, counts_line(&counts));
    Ok(())
}

pub fn verify_report(file: &Path, factory_root: &Path) -> Result<()> {
    let root = keyfill_station::bundle::read_factory_root_public(factory_root)?;
    let jws = String::from_utf8(read_bounded(file, 512 * 1024 * 1024)?).context("the report is not text")?;
    let verified = report::verify(&jws, &root).with_context(|| format!("{} does not verify", file.display()))?;
    eprintln!(
        "signature valid: signed by station {} ({}), certified by factory root {}",
        printable(&verified.certificate.body.station_name),
        hex::encode(verified.certificate.body.station_id),
        hex::encode(root)
    );
    std::io::stdout().write_all(&verified.payload)?;
    Ok(())
}
