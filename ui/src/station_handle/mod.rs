//! "The station" as the UI sees it: something that takes commands without blocking and answers
//! with events through the [`crate::bridge::EventSender`] it was started with.
//!
//! - [`real`]: the station library on a tokio runtime thread.
//! - [`fake`]: scripted answers, at once, for tests and screenshots.

pub mod fake;
pub mod real;

use crate::messages::Command;
use std::fmt;

pub trait StationHandle: fmt::Debug {
    /// Hands `command` over; the answer comes later as events. Never blocks.
    fn send(&mut self, command: Command);
}
