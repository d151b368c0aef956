//! `keyfill-gui`: the operator station desktop app. See the library's documentation for how
//! it is built; this binary reads its options and settings and opens the window.

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use keyfill_gui::KeyfillApp;
use keyfill_gui::bridge::Bridge;
use keyfill_gui::settings;
use keyfill_gui::station_handle::StationHandle;
use keyfill_gui::station_handle::fake::{FakeControl, demo_state};
use keyfill_gui::station_handle::real::{RealStation, StationConfig};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "keyfill-gui", version, about = "Keyfill operator station")]
struct Args {
    /// Station home directory (default: the settings', else keyfill.toml's, else the user's data
    /// directory).
    #[arg(long, env = "KEYFILL_HOME")]
    home: Option<PathBuf>,
    /// Database URL (default: the settings', else keyfill.toml's, else sqlite://<home>/keyfill.db).
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
    // A broken keyfill.toml could point the app at another database: nothing starts on it.
    let config = match keyfill_station::config::Config::load_default() {
        Ok(config) => config,
        Err(error) => return show_config_error(&error.to_string()),
    };
    let defaults = settings::defaults_from(&config);
    let settings_path = args.settings.clone().or_else(settings::default_path);
    let (settings, settings_warning) = match &settings_path {
        Some(path) => match settings::load_over(path, &defaults) {
            Ok(settings) => (settings, None),
            Err(error) => (defaults, Some(error.to_string())),
        },
        None => (defaults, None),
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
    let options = window_options();
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

fn window_options() -> eframe::NativeOptions {
    eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([1024.0, 600.0])
            .with_title("Keyfill station"),
        ..Default::default()
    }
}

/// A window that says which configuration file is wrong, where, and how to go on; the app is
/// started from a desktop menu, where nobody reads standard error.
fn show_config_error(error: &str) -> Result<()> {
    let message = keyfill_formats::printable(error).into_owned();
    eprintln!("error: {message}");
    let shown = message.clone();
    eframe::run_ui_native("keyfill-gui", window_options(), move |ui, _frame| {
        eframe::egui::CentralPanel::default().show(ui, |ui| {
            ui.add_space(24.0);
            ui.heading("Keyfill cannot start: a configuration file is wrong");
            ui.add_space(12.0);
            ui.label(eframe::egui::RichText::new(&shown).monospace());
            ui.add_space(12.0);
            ui.label(
                "Correct the file (or move it aside) and start Keyfill again. \
                 In a terminal, `keyfill config show` checks the files and shows every setting.",
            );
            ui.add_space(12.0);
            if ui.button("Quit").clicked() {
                ui.ctx().send_viewport_cmd(eframe::egui::ViewportCommand::Close);
            }
        });
    })
    .map_err(|e| anyhow!("cannot open the window: {e}"))?;
    // Said on stderr already; the status tells a script.
    std::process::exit(2)
}
