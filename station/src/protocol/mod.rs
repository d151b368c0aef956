//! The station's side of the provisioning protocol as a sans-IO state machine.
//!
//! ```text
//! start ──HandshakeInit──▶ AwaitingReply ──reply ok: HandshakeFinish(certificate)──▶ AwaitingReady
//! AwaitingReady ──DeviceReady──▶ send request (KeyDelivery | KeyStatusQuery) ──▶ AwaitingResult
//! AwaitingResult ──KeyConfirmation | KeyStatusReply (proof checked)──▶ Done(outcome)
//! ```
//! The key leaves the station only after the device has proved its identity key (or setup
//! secret) and accepted the station certificate; [`StationSession::request_sent`] tells the
//! driver whether a failure happened before or after that point.

mod session;

pub use session::{
    CONFIRMATION_TIMEOUT, HANDSHAKE_TIMEOUT, Request, SessionError, SessionOutcome, StationCredentials, StationSession,
};
