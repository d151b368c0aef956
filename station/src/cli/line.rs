//! `keyfill line`: the line mode's command-line side: the configuration file, the signals, stdout.

use super::{GlobalArgs, interrupted, read_bounded};
use anyhow::{Context, Result};
use clap::Args;
use keyfill_station::home::StationHome;
use keyfill_station::line::config::{LineConfig, MAX_CONFIG_BYTES};
use keyfill_station::line::event::EventSink;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct LineArgs {
    /// The line's configuration: its work order and lanes (docs/line.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

pub async fn run(global: &GlobalArgs, home: &StationHome, args: LineArgs) -> Result<()> {
    let config = read_config(&args.config)?;
    if args.check {
        println!("{}: order {}, {} lane(s)", args.config.display(), config.order, config.lanes.len());
        for lane in &config.lanes {
            println!("  {}: {}, labels from {}", lane.name, lane.port, lane.labels);
        }
        return Ok(());
    }
    let station = global.station_for(home, keyfill_station::custody::Operation::Provision, "line").await?;
    let sink = Arc::new(EventSink::new(Box::new(std::io::stdout())));
    let (request_stop, stop_requested) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let first = interrupted().await;
        let _ = request_stop.send(Some(signal_name(first).to_owned()));
        let second = interrupted().await;
        // The sessions under way are abandoned; each device's record is as the session left it
        // (pending at worst), reconciled when its label is read again.
        eprintln!("{}: stopping at once, without waiting for the sessions under way", signal_name(second));
        std::process::exit(130);
    });
    keyfill_station::line::run(station, config, sink, stop_requested).await?;
    Ok(())
}

/// A line's configuration file, read within its bound and checked.
pub(super) fn read_config(path: &std::path::Path) -> Result<LineConfig> {
    let text = read_bounded(path, MAX_CONFIG_BYTES)?;
    let text = String::from_utf8(text).with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    LineConfig::parse(&text).with_context(|| format!("{} is not a valid line", path.display()))
}

fn signal_name(what: &str) -> &'static str {
    if what == "terminated" { "SIGTERM" } else { "SIGINT" }
}
