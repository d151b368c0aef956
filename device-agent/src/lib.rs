//! The device side of Keyfill provisioning.
//!
//! - [`core`]: the agent's protocol as a sans-IO state machine (wire messages and `now` in;
//!   wire messages, events and deadlines out). The same core serves every transport.
//! - [`keystore`]: where the device keeps its provisioned key; [`keystore::FileKeystore`] for
//!   Linux devices replaces its file atomically.
//! - [`identity`]: the device's name, credential and pinned factory root.
//! - [`serial`]: the thin async adapter that runs the core over a UART.
#![forbid(unsafe_code)]

pub mod ble;
pub mod ble_peripheral;
pub mod ble_relay;
pub mod card;
pub mod core;
pub mod crash;
pub mod driver;
pub mod e4client;
pub mod identity;
pub mod keystore;
pub mod mqtt;
pub mod serial;
pub mod vpcd;

pub use crate::core::{AgentCore, AgentEvent, AgentOutput};
