//! Keyfill station: provisions devices over authenticated sessions and keeps a sealed key
//! inventory.
//!
//! - [`protocol`]: the station's side of the protocol, sans-IO.
//! - [`link`]: the one transport trait and the serial adapter.
//! - [`provision`]: runs sessions over links and records every state change.
//! - [`db`]: the inventory (SQLite or PostgreSQL).
//! - [`seal`], [`home`]: secrets at rest and the station's own identity.
//! - [`audit`]: the signed, hash-chained audit log and its verification.
//! - [`demo`]: a simulated device on a pseudo-terminal.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod bundle;
pub mod check_values;
pub mod config;
pub mod custody;
pub mod db;
pub mod demo;
pub mod detect;
pub mod doctor;
pub mod export;
pub mod fleet;
pub mod home;
pub mod hsm;
pub mod job;
pub mod label;
pub mod lease;
pub mod line;
pub mod link;
pub mod operator;
pub mod orders;
pub mod protocol;
pub mod provision;
pub mod qr_image;
pub mod rotation;
pub mod scan;
pub mod seal;
pub mod sync;
pub mod time;
pub mod view;
