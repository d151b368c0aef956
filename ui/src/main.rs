//! `keyfill-gui`: the operator station desktop app. See the library's documentation for how
//! it is built; this binary reads its options and settings and opens the window.

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use keyfill_gui::KeyfillApp;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::settings::{self, Settings};
use keyfill_gui::station_handle::StationHandle;
use keyfill_gui::station_handle::fake::{FakeControl, demo_state};
use keyfill_gui::station_handle::real::{RealStation, StationConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "keyfill-gui", version, about = "Keyfill operator station")]
struct Args {
    /// Station home directory (default: the settings', else the user's data directory).
    #[arg(long, env = "KEYFILL_HOME")]
    home: Option<PathBuf>,
    /// Database URL (default: the settings', else sqlite://<home>/keyfill.db).
    #[arg(long, env = "KEYFILL_DB")]
    db: Option<String>,
    /// Operator name recorded in the event log (default: the settings', else the login name).
    #[arg(long, env = "KEYFILL_OPERATOR")]
    operator: Option<String>,
    /// Settings file (default: gui-settings.json in the user's config directory).
    #[arg(long, env = "KEYFILL_GUI_SETTINGS")]
    settings: Option<PathBuf>,
    /// Run against a simulated station with sample data (passphrase "demo"): for training and
    /// screenshots. Nothing is written to any inventory.
    #[arg(long)]
    demo: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KEYFILL_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let settings_path = args.settings.clone().or_else(settings::default_path);
    let (settings, settings_warning) = match &settings_path {
        Some(path) => match settings::load(path) {
            Ok(settings) => (settings, None),
            Err(error) => (Settings::default(), Some(error.to_string())),
        },
        None => (Settings::default(), None),
    };
    let home = match args.home.clone().or_else(|| settings.station.home.clone()) {
        Some(home) => home,
        None => keyfill_station::home::default_home().ok_or_else(|| anyhow!("no home directory; pass --home"))?,
    };
    let config = StationConfig {
        db_url: args
            .db
            .clone()
            .or_else(|| settings.station.database.clone())
            .unwrap_or_else(|| keyfill_station::home::default_db_url(&home)),
        operator: args
            .operator
            .clone()
            .or_else(|| settings.station.operator.clone())
            .unwrap_or_else(keyfill_station::operator::default_operator),
        home,
    };
    let bridge = if args.demo {
        Bridge::new(FakeControl::new(demo_state("demo")).connect())
    } else {
        Bridge::try_new(|events| RealStation::spawn(config, events).map(|s| Box::new(s) as Box<dyn StationHandle>))
            .context("cannot start the station thread")?
    };
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([1024.0, 600.0])
            .with_title("Keyfill station"),
        ..Default::default()
    };
    let settings_path = if args.demo { None } else { settings_path };
    eframe::run_native(
        "keyfill-gui",
        options,
        Box::new(move |_creation| {
            let mut app = KeyfillApp::new(bridge, settings, settings_path);
            if let Some(warning) = settings_warning {
                app.warn(
                    format!("Settings not loaded: {warning}"),
                    "The defaults are used; saving in Settings replaces the file.",
                );
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))
}
