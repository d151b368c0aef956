//! Keyfill wire formats: pure data and pure functions, no I/O.
//!
//! - [`qr`]: the onboarding payload printed on a device label (`KF1:` + base45 of CBOR).
//! - [`message`]: provisioning protocol messages (deterministic CBOR, versioned, size-bounded).
//! - [`frame`]: serial framing (COBS + CRC-32, bounded, resynchronising decoder).
//! - [`cert`]: the station certificate signed by the factory root.
//! - [`bundle`]: the offline C2 export bundle (manifest, entries, signed envelope) and, in
//!   [`cert`], its signer's certificate; the HPKE and Ed25519 calls are made by the station.
//! - [`ids`]: device ids, which are E4 client ids (SHA3-256 of the name, first 16 bytes).
//! - [`name`]: device names, validated once into a [`DeviceName`].
//! - [`printable`]: outside text escaped for terminals and logs.
//! - [`audit`]: the audit log's hash chain and what its signatures cover.
//!
//! Every decoder here is bounded and returns a typed error on bad input; none panics.
#![forbid(unsafe_code)]

pub mod apdu;
pub mod audit;
pub mod base45;
pub mod ble;
pub mod bundle;
mod cbor;
pub mod cert;
pub mod e4;
pub mod frame;
pub mod ids;
pub mod message;
pub mod name;
pub mod printable;
pub mod proof;
pub mod qr;
pub mod secret;

pub use ids::DeviceId;
pub use name::{DeviceName, NameError};
pub use printable::printable;
pub use secret::SecretKey;
