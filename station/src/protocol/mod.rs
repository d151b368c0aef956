//! The station's side of the provisioning protocol as a sans-IO state machine.
//!
//! Every wire message names its session (a fresh random [`SessionId`] per session, also bound
//! into the Noise prologue); a message naming another session, or one that does not fit the
//! state, is dropped and counted ([`Stray`]), never fatal, so bytes an earlier session left on
//! the link cannot end this one. A deadline that passes after such drops is reported as a link
//! problem ([`SessionError::StaleLink`]), not as a verdict on the device.
//!
//! [`SessionId`]: keyfill_formats::message::SessionId
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
pub mod token_dh;

pub use session::{
    CONFIRMATION_TIMEOUT, HANDSHAKE_TIMEOUT, MAX_TIMEOUT, MIN_TIMEOUT, Request, SessionError, SessionOutcome,
    SessionTimeouts, StationCredentials, StationSession, Step, Stray,
};
