//! `keyfill rotate`: confirmed first-use key rotation over MQTT.

use super::print_json;
use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keyfill_formats::printable;
use keyfill_station::db::devices;
use keyfill_station::provision::Station;
use keyfill_station::rotation::{RotationError, RotationProgress, RotationSettings, Rotator, rotatable_devices};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct RotateArgs {
    /// Devices to rotate (id or name).
    devices: Vec<String>,
    /// Rotate every provisioned device that has not completed a rotation (and resume interrupted ones).
    #[arg(long)]
    all_provisioned: bool,
    /// Wait for devices' first contact (hello on keyfill/hello/<id>) and rotate each then.
    #[arg(long)]
    watch: bool,
    /// Stop watching after this many seconds (default: until interrupted).
    #[arg(long)]
    watch_for: Option<u64>,
    /// MQTT broker, mqtt://HOST[:PORT].
    #[arg(long)]
    broker: String,
    /// Seconds to wait for a confirmation after the first attempt; doubled after each attempt.
    #[arg(long, default_value_t = 5.0)]
    first_wait: f64,
    /// Attempts before a rotation is marked rotation_failed.
    #[arg(long, default_value_t = 6)]
    max_attempts: u32,
    /// Rotations in flight at once.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// QoS 2 commands left unacknowledged by the broker at once; at most the broker's limit
    /// (Mosquitto's max_inflight_messages, 20 by default), which silently drops the excess.
    #[arg(long, default_value_t = 20)]
    mqtt_inflight: u16,
    #[arg(long)]
    json: bool,
}

pub async fn run(station: Station, args: RotateArgs, interactive: bool) -> Result<bool> {
    let settings = RotationSettings {
        first_wait: Duration::from_secs_f64(args.first_wait.max(0.05)),
        max_attempts: args.max_attempts.max(1),
        window: args.window.max(1),
        mqtt_inflight: args.mqtt_inflight.max(1),
        ..RotationSettings::default()
    };
    let mut targets = Vec::new();
    for wanted in &args.devices {
        targets.push(devices::resolve(station.inventory.pool(), wanted).await?.id);
    }
    if args.all_provisioned {
        targets.extend(rotatable_devices(&station).await?);
    }
    targets.sort();
    targets.dedup();
    if targets.is_empty() && !args.watch {
        bail!("nothing to rotate: name devices, or pass --all-provisioned or --watch");
    }
    let station = Arc::new(station);
    let rotator = Arc::new(Rotator::connect(station.clone(), &args.broker, settings).await?);
    let bar = if interactive && !args.json { ProgressBar::new(targets.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rotated ({elapsed}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let progress_bar = bar.clone();
    let progress = move |event: RotationProgress| match event {
        RotationProgress::Rotated { .. } | RotationProgress::Failed { .. } => progress_bar.inc(1),
        RotationProgress::Attempt { attempt, .. } if attempt > 1 => progress_bar.set_message("retrying some devices"),
        RotationProgress::Attempt { .. } => {}
    };
    let mut reports = rotator.rotate_all(targets, progress.clone()).await;
    if args.watch {
        eprintln!("watching for devices' first contact on {}", args.broker);
        let stop = async {
            match args.watch_for {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        let watched = rotator.watch(stop, progress).await;
        if watched.is_err() {
            rotator.close().await;
        }
        reports.extend(watched?);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    if !rotator.flush(Duration::from_secs(10)).await {
        eprintln!("warning: the broker did not acknowledge every command within 10 s");
    }
    rotator.close().await;
    let ok = reports.iter().filter(|r| r.result.is_ok()).count();
    if args.json {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| match &r.result {
                Ok(key_id) => serde_json::json!({"id": r.device_id, "name": r.name, "rotation": "active", "key_id": key_id}),
                Err(error) => {
                    let state = if matches!(error, RotationError::Unconfirmed { .. }) { "rotation_failed" } else { "error" };
                    serde_json::json!({"id": r.device_id, "name": r.name, "rotation": state, "error": error.to_string()})
                }
            })
            .collect();
        print_json(&rows)?;
    } else {
        for report in &reports {
            match &report.result {
                Ok(key_id) => {
                    println!("{} ({}) rotated: key {key_id} confirmed", printable(&report.name), report.device_id)
                }
                Err(error) => eprintln!(
                    "{} ({}) NOT rotated: {}",
                    printable(&report.name),
                    report.device_id,
                    printable(&error.to_string())
                ),
            }
        }
        eprintln!("{ok} of {} rotations confirmed in {:.1} s", reports.len(), elapsed.as_secs_f64());
    }
    Ok(ok == reports.len())
}
