//! Choosing links on the command line, and provisioning several devices concurrently.

use super::output::DeviceJson;
use super::{describe, print_json};
use anyhow::{Result, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use keyfill_formats::printable;
use keyfill_formats::qr::OnboardingPayload;
use keyfill_station::detect::LinkTarget;
use keyfill_station::job::{JobError, JobOutcome, JobStep, LEASE_PATIENCE};
use keyfill_station::provision::{ProvisionError, Station};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Which links devices are on.
#[derive(Args)]
pub struct LinkArgs {
    /// Serial port a device is on (e.g. /dev/ttyUSB0); repeat for several.
    #[arg(long, required_unless_present_any = ["pcsc", "ble"])]
    serial: Vec<PathBuf>,
    /// PC/SC reader a card or NFC device is presented to (no value: any reader); repeat for several.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "READER")]
    pcsc: Vec<String>,
    /// BLE device address or local name (no value: the one on the label); repeat for several.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "ADDRESS|NAME")]
    ble: Vec<String>,
    /// Serial line speed.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// How long to wait for a card to be presented, or a BLE device to advertise, in seconds.
    #[arg(long, default_value_t = 30)]
    card_wait: u64,
}

/// Settings shared by every link of a command.
#[derive(Debug, Clone, Copy)]
pub struct LinkSettings {
    pub baud: u32,
    pub card_wait: Duration,
}

/// One link as given on the command line.
#[derive(Debug, Clone)]
pub enum LinkSpec {
    Serial(PathBuf),
    Pcsc(Option<String>),
    Ble(Option<String>),
}

impl LinkArgs {
    /// Every link: serial ports, then PC/SC readers, then BLE devices, each in command-line order.
    pub fn specs(&self) -> Vec<LinkSpec> {
        let optional = |text: &String| (!text.is_empty()).then(|| text.clone());
        let serial = self.serial.iter().cloned().map(LinkSpec::Serial);
        let pcsc = self.pcsc.iter().map(|r| LinkSpec::Pcsc(optional(r)));
        let ble = self.ble.iter().map(|t| LinkSpec::Ble(optional(t)));
        serial.chain(pcsc).chain(ble).collect()
    }

    pub fn settings(&self) -> LinkSettings {
        LinkSettings { baud: self.baud, card_wait: Duration::from_secs(self.card_wait) }
    }

    /// The one link of a command that takes exactly one.
    pub fn single(&self) -> Result<LinkSpec> {
        match self.specs().as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("give exactly one link: --serial PORT, --pcsc [READER] or --ble [ADDRESS|NAME]"),
        }
    }
}

impl LinkSpec {
    pub fn describe(&self) -> String {
        match self {
            LinkSpec::Serial(path) => path.display().to_string(),
            LinkSpec::Pcsc(Some(reader)) => format!("PC/SC reader {reader}"),
            LinkSpec::Pcsc(None) => "the first PC/SC reader with a card".into(),
            LinkSpec::Ble(Some(target)) => format!("BLE {target}"),
            LinkSpec::Ble(None) => "BLE (address or name from the label)".into(),
        }
    }

    /// The port or reader name as recorded with devices, when known before opening.
    pub fn port_hint(&self) -> Option<String> {
        match self {
            LinkSpec::Serial(path) => Some(path.to_string_lossy().into_owned()),
            LinkSpec::Pcsc(reader) | LinkSpec::Ble(reader) => reader.clone(),
        }
    }

    /// The link to open, with this command's settings.
    pub fn target(&self, settings: LinkSettings) -> LinkTarget {
        match self {
            LinkSpec::Serial(path) => LinkTarget::Serial { path: path.clone(), baud: settings.baud },
            LinkSpec::Pcsc(reader) => LinkTarget::Pcsc { reader: reader.clone() },
            LinkSpec::Ble(target) => LinkTarget::Ble { target: target.clone(), adapter: None },
        }
    }
}

fn bar(multi: &MultiProgress, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = multi.add(ProgressBar::new_spinner());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix}: {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// The operator advice for a failed provisioning, when the library has one.
pub fn advice(error: &anyhow::Error) -> Option<String> {
    if let Some(error) = error.downcast_ref::<JobError>() {
        return error.advice();
    }
    error.downcast_ref::<ProvisionError>().and_then(ProvisionError::advice)
}

/// Provisions one device: takes its lease first (another station sharing the database may be
/// working on it: then waits for that station), then opens the link.
async fn provision_one(
    station: &Station,
    spec: LinkSpec,
    settings: LinkSettings,
    payload: &OnboardingPayload,
    bar: &ProgressBar,
) -> Result<JobOutcome> {
    tracing::debug!(id = %payload.device_id.to_hex(), "job started");
    let target = spec.target(settings);
    let mut on_step = |step: JobStep| match step {
        JobStep::WaitingFor { station } => {
            bar.set_message(format!("waiting: station {} is working on this device", printable(&station)))
        }
        JobStep::Opening { link, after_wait: true } => {
            bar.set_message(format!("the other station left it unfinished; waiting on {link}"))
        }
        JobStep::Opening { .. } => bar.set_message("provisioning"),
        JobStep::Session(progress) => bar.set_message(describe(&progress)),
    };
    Ok(station.provision_job(&target, settings.card_wait, payload, LEASE_PATIENCE, &mut on_step).await?)
}

/// Provisions each (link, label) pair concurrently; a failure on one link never disturbs the
/// others. Prints one result per device; returns whether all succeeded.
pub async fn provision_all(
    station: Station,
    jobs: Vec<(LinkSpec, OnboardingPayload)>,
    args: &LinkArgs,
    progress: bool,
    json: bool,
) -> Result<bool> {
    let station = Arc::new(station);
    let multi = MultiProgress::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (spec, payload)) in jobs.into_iter().enumerate() {
        let station = station.clone();
        let bar = bar(&multi, progress);
        bar.set_prefix(payload.name.to_string());
        bar.set_message(format!("waiting on {}", spec.describe()));
        let settings = args.settings();
        tasks.spawn(async move {
            let result = provision_one(&station, spec, settings, &payload, &bar).await;
            bar.finish_and_clear();
            (index, payload, result)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined?);
    }
    results.sort_by_key(|(index, _, _)| *index);
    // Provisioning a device that holds its key already is refused (it is not re-keyed): the
    // run did not do what was asked, though nothing went wrong.
    let all_ok = results.iter().all(|(_, _, r)| matches!(r, Ok(JobOutcome::Provisioned(_))));
    if json {
        let report: Vec<serde_json::Value> = results
            .iter()
            .map(|(_, payload, result)| match result {
                Ok(JobOutcome::Provisioned(report)) => {
                    serde_json::to_value(DeviceJson::from(&report.device)).unwrap_or_default()
                }
                Ok(JobOutcome::AlreadyProvisioned(device)) => {
                    let mut value = serde_json::to_value(DeviceJson::from(device)).unwrap_or_default();
                    value["note"] = "already provisioned".into();
                    value
                }
                Err(error) => serde_json::json!({
                    "id": payload.device_id.to_hex(),
                    "name": payload.name.as_str(),
                    "state": "error",
                    "error": format!("{error:#}"),
                    "advice": advice(error),
                }),
            })
            .collect();
        if report.len() == 1 { print_json(&report[0])? } else { print_json(&report)? }
    } else {
        for (_, payload, result) in &results {
            match result {
                Ok(JobOutcome::AlreadyProvisioned(device)) => eprintln!(
                    "{} ({}) NOT provisioned again: it is already provisioned (key {}, over {} {}); it was not re-keyed",
                    printable(&device.name),
                    device.id,
                    device.key_id.as_deref().unwrap_or("-"),
                    printable(device.transport.as_deref().unwrap_or("-")),
                    printable(device.port.as_deref().unwrap_or("-")),
                ),
                Ok(JobOutcome::Provisioned(report)) => {
                    let how = if report.reconciled {
                        "reconciled: the device already held its key"
                    } else {
                        "confirmed by the device"
                    };
                    println!(
                        "{} ({}) provisioned over {} {}, key {} {how}",
                        printable(&report.device.name),
                        report.device.id,
                        printable(report.device.transport.as_deref().unwrap_or("-")),
                        printable(report.device.port.as_deref().unwrap_or("-")),
                        report.device.key_id.as_deref().unwrap_or("-")
                    );
                }
                Err(error) => {
                    eprintln!(
                        "{} ({}) NOT provisioned: {}",
                        payload.name,
                        payload.device_id,
                        printable(&format!("{error:#}"))
                    );
                    if let Some(advice) = advice(error) {
                        eprintln!("  what to do: {advice}");
                    }
                }
            }
        }
    }
    if let Ok(station) = Arc::try_unwrap(station) {
        station.inventory.close().await;
    }
    Ok(all_ok)
}
