//! The channels between the UI thread and the station: commands go to a [`StationHandle`], which
//! never blocks; events come back over one channel, and whoever queues one wakes the UI so that
//! the next frame drains it.

use crate::messages::{Command, Event};
use crate::station_handle::StationHandle;
use eframe::egui;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, mpsc};

/// Asks the UI for a frame. Holds the egui context once the first frame has handed it over.
#[derive(Clone, Default)]
pub struct Waker(Arc<Mutex<Option<egui::Context>>>);

impl Waker {
    pub fn set_context(&self, context: &egui::Context) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(context.clone());
        }
    }

    pub fn wake(&self) {
        if let Some(context) = self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            context.request_repaint();
        }
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waker")
    }
}

/// The station side's way back to the UI.
#[derive(Debug, Clone)]
pub struct EventSender {
    events: mpsc::Sender<Event>,
    waker: Waker,
}

impl EventSender {
    /// Queues `event` and wakes the UI. False once the UI has gone.
    pub fn send(&self, event: Event) -> bool {
        let sent = self.events.send(event).is_ok();
        self.waker.wake();
        sent
    }
}

/// The UI's end: send commands, drain events.
#[derive(Debug)]
pub struct Bridge {
    station: Box<dyn StationHandle>,
    events: mpsc::Receiver<Event>,
    waker: Waker,
}

impl Bridge {
    /// Connects to the station that `connect` starts with the sending end of the event channel.
    pub fn new(connect: impl FnOnce(EventSender) -> Box<dyn StationHandle>) -> Self {
        match Self::try_new(|events| Ok::<_, std::convert::Infallible>(connect(events))) {
            Ok(bridge) => bridge,
            Err(never) => match never {},
        }
    }

    /// As [`Bridge::new`], for a station that may fail to start.
    pub fn try_new<E>(connect: impl FnOnce(EventSender) -> Result<Box<dyn StationHandle>, E>) -> Result<Self, E> {
        let (sender, events) = mpsc::channel();
        let waker = Waker::default();
        let station = connect(EventSender { events: sender, waker: waker.clone() })?;
        Ok(Bridge { station, events, waker })
    }

    pub fn send(&mut self, command: Command) {
        tracing::debug!(command = command.name(), "to the station");
        self.station.send(command);
    }

    /// Every event queued so far, without waiting.
    pub fn drain(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }

    /// Lets the station side (and the camera decoder) wake the UI.
    pub fn set_repaint_context(&self, context: &egui::Context) {
        self.waker.set_context(context);
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }
}
