//! `keyfill-gui`: the operator station desktop app, as a library so that tests drive the same
//! app the binary runs.
//!
//! The UI thread never waits on the station. Screens return [`screens::Action`]s; station
//! commands go through the [`bridge::Bridge`] to a [`station_handle::StationHandle`]: the real
//! one runs the station library on a tokio runtime thread ([`station_handle::real`]), the fake
//! one answers at once with scripted events ([`station_handle::fake`]). Events come back over one
//! channel that the app drains every frame; the station side wakes the UI with
//! `request_repaint` when it queues one.
//!
//! - [`app`]: top-level state, screen switching, locking.
//! - [`screens`]: one module per screen, each a state struct with a `ui` function.
//! - [`messages`]: the commands and events, plain data.
//! - [`settings`]: what persists across restarts, apart from runtime state.
//! - [`camera`]: the camera preview beside the background decoder.
#![forbid(unsafe_code)]

pub mod app;
pub mod bridge;
pub mod camera;
pub mod custody;
pub mod device_index;
pub mod messages;
pub mod problem;
pub mod screens;
pub mod settings;
pub mod station_handle;
pub mod theme;
pub mod widgets;

pub use app::KeyfillApp;
