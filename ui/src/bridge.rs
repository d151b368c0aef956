//! The bridge between the UI thread and the station core running on a tokio runtime thread.

use keyfill_station::db::Inventory;
use keyfill_station::db::devices::{self, Device};
use std::sync::mpsc;

/// What a panel asks of the station.
#[derive(Debug)]
pub enum Command {
    RefreshDevices,
}

/// What the station reports back.
#[derive(Debug)]
pub enum Event {
    Devices(Vec<Device>),
    Error(String),
}

#[derive(Debug)]
pub struct Bridge {
    commands: tokio::sync::mpsc::UnboundedSender<Command>,
    events: mpsc::Receiver<Event>,
    repaint: std::sync::Arc<std::sync::Mutex<Option<eframe::egui::Context>>>,
}

impl Bridge {
    pub fn send(&self, command: Command) {
        // The station thread only stops when the app exits, so a send error has no one to tell.
        let _ = self.commands.send(command);
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Lets the station thread wake the UI when an event arrives.
    pub fn set_repaint_context(&self, context: &eframe::egui::Context) {
        if let Ok(mut slot) = self.repaint.lock() {
            *slot = Some(context.clone());
        }
    }
}

/// Starts the station thread.
pub fn spawn(db_url: String) -> anyhow::Result<Bridge> {
    let (command_tx, mut command_rx) = tokio::sync::mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::channel();
    let repaint = std::sync::Arc::new(std::sync::Mutex::new(None::<eframe::egui::Context>));
    let repaint_station = repaint.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    std::thread::Builder::new().name("station".into()).spawn(move || {
        runtime.block_on(async move {
            let notify = |event: Event| {
                let _ = event_tx.send(event);
                if let Ok(slot) = repaint_station.lock()
                    && let Some(context) = slot.as_ref()
                {
                    context.request_repaint();
                }
            };
            let inventory = match Inventory::open(&db_url).await {
                Ok(inventory) => inventory,
                Err(error) => {
                    notify(Event::Error(format!("cannot open the database: {error}")));
                    return;
                }
            };
            while let Some(command) = command_rx.recv().await {
                match command {
                    Command::RefreshDevices => match devices::list(inventory.pool(), None).await {
                        Ok(list) => notify(Event::Devices(list)),
                        Err(error) => notify(Event::Error(error.to_string())),
                    },
                }
            }
        });
    })?;
    Ok(Bridge { commands: command_tx, events: event_rx, repaint })
}
