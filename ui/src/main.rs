//! `keyfill-gui`: the operator station desktop app.
//!
//! The UI thread never touches the database: a background thread with a tokio runtime owns the
//! station core, panels send [`bridge::Command`]s and the app drains [`bridge::Event`]s each frame.

mod app;
mod bridge;

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "keyfill-gui", version, about = "Keyfill operator station")]
struct Args {
    /// Station home directory (default: the user's data directory).
    #[arg(long, env = "KEYFILL_HOME")]
    home: Option<PathBuf>,
    /// Database URL (default: sqlite://<home>/keyfill.db).
    #[arg(long, env = "KEYFILL_DB")]
    db: Option<String>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    let home = match args.home {
        Some(home) => home,
        None => {
            keyfill_station::home::default_home().ok_or_else(|| anyhow::anyhow!("no home directory; pass --home"))?
        }
    };
    let db = args.db.unwrap_or_else(|| keyfill_station::home::default_db_url(&home));
    let bridge = bridge::spawn(db)?;
    let options = eframe::NativeOptions {
        viewport: eframe::egui::ViewportBuilder::default()
            .with_inner_size([1000.0, 640.0])
            .with_title("Keyfill station"),
        ..Default::default()
    };
    eframe::run_native("keyfill-gui", options, Box::new(move |_cc| Ok(Box::new(app::KeyfillApp::new(bridge)))))
        .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
