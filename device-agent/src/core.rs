//! The agent's protocol state machine. It performs no I/O and reads no clock.
//!
//! Every wire message names its session. A `HandshakeInit` starts the session it names; any other
//! message that names another session, does not fit the state, or fails authentication is
//! dropped and reported as [`AgentEvent::StrayMessage`], never fatal: bytes an earlier session
//! left on the link must not end the current one. A message of a session the device does not
//! have is answered with `Abort(UnknownSession)` for that session, so a station whose device
//! restarted learns it at once.
//!
//! ```text
//! Idle --HandshakeInit--> Handshaking --HandshakeFinish + valid certificate--> Established
//! Established --KeyDelivery--> AwaitingPersist --persisted(Ok)--> Established (sends confirmation)
//! Established --KeyStatusQuery--> Established (sends status reply)
//! any --error, abort or deadline--> Idle
//! ```
//! A new `HandshakeInit` always starts a fresh session (the station may have restarted).

use crate::identity::{DeviceCredential, DeviceIdentity};
use crate::keystore::StoredKey;
use keyfill_formats::DeviceId;
use keyfill_formats::cert::{self, StationCertificate};
use keyfill_formats::message::{
    self, AbortReason, HandshakeMode, MessageError, PROTOCOL_VERSION, SessionId, SessionMessage, WireBody, WireMessage,
};
use keyfill_formats::proof::{self, ProofPurpose};
use std::time::{Duration, Instant};
use zeroize::Zeroize;

/// How long a session may stay idle between two station messages.
pub const SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const NOISE_BUFFER: usize = 2048;

/// Something the driver must do.
#[derive(Debug)]
pub enum AgentOutput {
    /// Send this encoded [`WireMessage`] to the station.
    Transmit(Vec<u8>),
    /// Store this key durably, then call [`AgentCore::persisted`].
    Persist(StoredKey),
    /// Report progress.
    Event(AgentEvent),
}

/// What happened, for logs and status displays. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    SessionStarted {
        mode: HandshakeMode,
    },
    StationVerified {
        station_name: String,
        station_id: [u8; 16],
    },
    StationRefused {
        reason: AbortReason,
    },
    KeyReceived {
        key_id: [u8; 16],
    },
    KeyConfirmed {
        key_id: [u8; 16],
    },
    StatusAnswered {
        key_id: [u8; 16],
        held: bool,
    },
    SessionFailed {
        reason: String,
    },
    SessionAborted {
        reason: AbortReason,
    },
    /// A received message was dropped: not this session's, out of place, or unauthentic.
    StrayMessage {
        reason: String,
    },
}

/// Proof that the station's certificate chains to the pinned factory root, is in its validity
/// period and names the Noise static key the station used. Only [`verify_station`] makes one.
#[derive(Debug)]
struct StationVerified {
    station_id: [u8; 16],
}

struct Handshaking {
    session: SessionId,
    noise: snow::HandshakeState,
}

struct Established {
    session: SessionId,
    transport: snow::TransportState,
    handshake_hash: Vec<u8>,
    station: StationVerified,
}

struct AwaitingPersist {
    session: Established,
    key_id: [u8; 16],
}

enum State {
    Idle,
    Handshaking(Box<Handshaking>),
    Established(Box<Established>),
    AwaitingPersist(Box<AwaitingPersist>),
}

/// The device agent's protocol core.
pub struct AgentCore {
    identity: DeviceIdentity,
    stored: Option<StoredKey>,
    state: State,
    deadline: Option<Instant>,
    /// Only unit tests set this, to replay the independent known-answer transcripts.
    test_ephemeral: Option<[u8; 32]>,
}

impl std::fmt::Debug for AgentCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Idle => "idle",
            State::Handshaking(_) => "handshaking",
            State::Established(_) => "established",
            State::AwaitingPersist(_) => "awaiting-persist",
        };
        f.debug_struct("AgentCore").field("device", &self.identity.device_id).field("state", &state).finish()
    }
}

fn verify_station(
    payload: &[u8],
    remote_static: Option<&[u8]>,
    root: &[u8; 32],
    unix_now: u64,
) -> Result<(StationVerified, String), AbortReason> {
    let certificate = StationCertificate::decode(payload).map_err(|_| AbortReason::BadCertificate)?;
    if certificate.body.root_key_id != cert::root_key_id(root)
        || !proof::certificate_signature_valid(&certificate, root)
    {
        return Err(AbortReason::BadCertificate);
    }
    if remote_static != Some(&certificate.body.noise_static[..]) {
        return Err(AbortReason::BadCertificate);
    }
    if unix_now < certificate.body.not_before || unix_now > certificate.body.not_after {
        return Err(AbortReason::CertificateExpired);
    }
    Ok((StationVerified { station_id: certificate.body.station_id }, certificate.body.station_name))
}

impl State {
    fn session(&self) -> Option<SessionId> {
        match self {
            State::Idle => None,
            State::Handshaking(hs) => Some(hs.session),
            State::Established(session) => Some(session.session),
            State::AwaitingPersist(pending) => Some(pending.session.session),
        }
    }
}

fn stray(reason: String) -> Vec<AgentOutput> {
    vec![AgentOutput::Event(AgentEvent::StrayMessage { reason })]
}

impl AgentCore {
    pub fn new(identity: DeviceIdentity, stored: Option<StoredKey>) -> Self {
        AgentCore { identity, stored, state: State::Idle, deadline: None, test_ephemeral: None }
    }

    pub fn device_id(&self) -> DeviceId {
        self.identity.device_id
    }

    /// The key the core believes is stored (after the last successful persist).
    pub fn stored_key_id(&self) -> Option<[u8; 16]> {
        self.stored.as_ref().map(|k| k.key_id)
    }

    /// When [`AgentCore::handle_timeout`] must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Vec<AgentOutput> {
        match self.deadline {
            Some(deadline) if now >= deadline && !matches!(self.state, State::Idle | State::AwaitingPersist(_)) => {
                self.reset();
                vec![AgentOutput::Event(AgentEvent::SessionFailed { reason: "station went silent".into() })]
            }
            _ => Vec::new(),
        }
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.deadline = None;
    }

    /// Ends session `session` with a plaintext abort.
    fn fail(&mut self, session: SessionId, reason: AbortReason, detail: &str) -> Vec<AgentOutput> {
        self.reset();
        let mut out = Vec::new();
        if let Ok(bytes) = WireMessage::new(session, WireBody::Abort { reason }).encode() {
            out.push(AgentOutput::Transmit(bytes));
        }
        out.push(AgentOutput::Event(AgentEvent::SessionFailed { reason: detail.to_owned() }));
        out
    }

    /// Feeds one received wire message (one frame's payload).
    pub fn handle_message(&mut self, bytes: &[u8], now: Instant, unix_now: u64) -> Vec<AgentOutput> {
        if matches!(self.state, State::AwaitingPersist(_)) {
            // The key is being written: nothing may interrupt the session until the driver
            // reports the outcome, or the stored key and the confirmation would diverge.
            return Vec::new();
        }
        let message = match WireMessage::decode(bytes) {
            Ok(message) => message,
            Err(MessageError::UnsupportedVersion(version)) => return self.other_version(version),
            Err(error) => return stray(format!("undecodable message: {error}")),
        };
        let current = self.state.session();
        if let WireBody::HandshakeInit { mode, noise } = &message.body {
            if current == Some(message.session) {
                return stray(format!("repeated handshake init of session {}", message.session));
            }
            self.deadline = Some(now + SESSION_IDLE_TIMEOUT);
            return self.start_handshake(message.session, *mode, noise);
        }
        if current != Some(message.session) {
            return self.unknown_session(&message);
        }
        self.deadline = Some(now + SESSION_IDLE_TIMEOUT);
        let state = std::mem::replace(&mut self.state, State::Idle);
        match (state, message.body) {
            (State::Handshaking(hs), WireBody::HandshakeFinish { noise }) => {
                self.finish_handshake(*hs, &noise, unix_now)
            }
            (State::Established(session), WireBody::Transport { ciphertext }) => {
                self.on_transport(*session, &ciphertext)
            }
            (_, WireBody::Abort { reason }) => {
                self.reset();
                vec![AgentOutput::Event(AgentEvent::SessionAborted { reason })]
            }
            (state, body) => {
                self.state = state;
                stray(format!("{} out of place in session {}", body.name(), message.session))
            }
        }
    }

    /// A message of a session this device does not have (it ended, or the device restarted).
    fn unknown_session(&mut self, message: &WireMessage) -> Vec<AgentOutput> {
        let mut out =
            stray(format!("{} of session {}, which this device does not have", message.body.name(), message.session));
        // Answering an abort would only make another abort bounce back.
        if !matches!(message.body, WireBody::Abort { .. })
            && let Ok(bytes) =
                WireMessage::new(message.session, WireBody::Abort { reason: AbortReason::UnknownSession }).encode()
        {
            out.push(AgentOutput::Transmit(bytes));
        }
        out
    }

    /// A station that speaks another protocol version is told so, in this device's version.
    fn other_version(&mut self, version: u64) -> Vec<AgentOutput> {
        let mut out = stray(format!("message in protocol version {version}; this device speaks {PROTOCOL_VERSION}"));
        let abort = WireMessage::new(
            SessionId([0; message::SESSION_ID_LEN]),
            WireBody::Abort { reason: AbortReason::UnsupportedVersion },
        );
        if let Ok(bytes) = abort.encode() {
            out.push(AgentOutput::Transmit(bytes));
        }
        out
    }

    fn start_handshake(&mut self, session: SessionId, mode: HandshakeMode, noise_message: &[u8]) -> Vec<AgentOutput> {
        let noise = match self.build_responder(session, mode) {
            Ok(noise) => noise,
            Err(reason) => return self.fail(session, reason, "handshake mode not supported by this device"),
        };
        let mut hs = Handshaking { session, noise };
        let mut payload = [0u8; NOISE_BUFFER];
        if hs.noise.read_message(noise_message, &mut payload).is_err() {
            return self.fail(session, AbortReason::HandshakeFailed, "handshake message 1 rejected");
        }
        let mut reply = vec![0u8; NOISE_BUFFER];
        let len = match hs.noise.write_message(&[], &mut reply) {
            Ok(len) => len,
            Err(_) => {
                return self.fail(session, AbortReason::HandshakeFailed, "cannot write handshake message 2");
            }
        };
        reply.truncate(len);
        let Ok(bytes) = WireMessage::new(session, WireBody::HandshakeReply { noise: reply }).encode() else {
            return self.fail(session, AbortReason::HandshakeFailed, "handshake reply too large");
        };
        self.state = State::Handshaking(Box::new(hs));
        vec![AgentOutput::Event(AgentEvent::SessionStarted { mode }), AgentOutput::Transmit(bytes)]
    }

    fn build_responder(&self, session: SessionId, mode: HandshakeMode) -> Result<snow::HandshakeState, AbortReason> {
        let params = mode.noise_pattern().parse().map_err(|_| AbortReason::HandshakeFailed)?;
        let prologue = message::noise_prologue(mode, &self.identity.device_id, &session);
        let mut builder = snow::Builder::new(params).prologue(&prologue).map_err(|_| AbortReason::HandshakeFailed)?;
        if let Some(ephemeral) = &self.test_ephemeral {
            builder = builder.fixed_ephemeral_key_for_testing_only(ephemeral);
        }
        let built = match (&self.identity.credential, mode) {
            (DeviceCredential::Identity { private_key, .. }, HandshakeMode::Identity) => {
                builder.local_private_key(private_key.expose()).and_then(|b| b.build_responder())
            }
            (DeviceCredential::SetupSecret(secret), HandshakeMode::SetupSecret) => {
                let mut psk = proof::setup_psk(&secret.0, &self.identity.device_id);
                let built = builder.psk(3, &psk).and_then(|b| b.build_responder());
                psk.zeroize();
                built
            }
            _ => return Err(AbortReason::WrongDevice),
        };
        built.map_err(|_| AbortReason::HandshakeFailed)
    }

    fn finish_handshake(&mut self, mut hs: Handshaking, noise_message: &[u8], unix_now: u64) -> Vec<AgentOutput> {
        let session = hs.session;
        let mut payload = vec![0u8; NOISE_BUFFER];
        let len = match hs.noise.read_message(noise_message, &mut payload) {
            Ok(len) => len,
            Err(_) => {
                return self.fail(session, AbortReason::HandshakeFailed, "handshake message 3 rejected");
            }
        };
        let (station, station_name) = match verify_station(
            &payload[..len],
            hs.noise.get_remote_static(),
            &self.identity.factory_root,
            unix_now,
        ) {
            Ok(verified) => verified,
            Err(reason) => {
                let mut out = self.fail(session, reason, "station certificate refused");
                out.push(AgentOutput::Event(AgentEvent::StationRefused { reason }));
                return out;
            }
        };
        let handshake_hash = hs.noise.get_handshake_hash().to_vec();
        let Ok(transport) = hs.noise.into_transport_mode() else {
            return self.fail(session, AbortReason::HandshakeFailed, "handshake incomplete");
        };
        let station_id = station.station_id;
        let session = Established { session, transport, handshake_hash, station };
        let mut out = vec![AgentOutput::Event(AgentEvent::StationVerified { station_name, station_id })];
        out.extend(self.send_sealed(session, &SessionMessage::DeviceReady { device_id: self.identity.device_id }));
        out
    }

    fn on_transport(&mut self, mut session: Established, ciphertext: &[u8]) -> Vec<AgentOutput> {
        let mut plaintext = vec![0u8; NOISE_BUFFER];
        let Ok(len) = session.transport.read_message(ciphertext, &mut plaintext) else {
            // Corrupted or injected: the receive nonce did not move, so the genuine message can
            // still come.
            let id = session.session;
            self.state = State::Established(Box::new(session));
            return stray(format!("transport message of session {id} failed authentication"));
        };
        let decoded = SessionMessage::decode(&plaintext[..len]);
        plaintext.zeroize();
        let message = match decoded {
            Ok(message) => message,
            Err(error) => {
                return self.fail(
                    session.session,
                    AbortReason::ProtocolViolation,
                    &format!("bad session message: {error}"),
                );
            }
        };
        match message {
            SessionMessage::KeyDelivery(delivery) => {
                if delivery.device_id != self.identity.device_id {
                    return self.send_sealed_abort(session, AbortReason::WrongDevice);
                }
                if delivery.station_id != session.station.station_id {
                    return self.send_sealed_abort(session, AbortReason::ProtocolViolation);
                }
                // An initial key is accepted once; a provisioned device is re-keyed by E4
                // rotation, or factory-reset (`keyfill-agent reset`) first.
                // Only an exact repeat (same key, same id, same station) is a retry: it is confirmed
                // from what is stored, without writing the keystore again.
                if let Some(held) = &self.stored {
                    let exact_repeat = held.key_id == delivery.key_id
                        && held.station_id == delivery.station_id
                        && held.key.constant_time_eq(&delivery.key);
                    if !exact_repeat {
                        return self.send_sealed_abort(session, AbortReason::AlreadyProvisioned);
                    }
                    let device_id = self.identity.device_id;
                    let key_id = held.key_id;
                    let proof = proof::possession_proof(
                        ProofPurpose::Confirmation,
                        &held.key,
                        &session.handshake_hash,
                        &device_id,
                        &key_id,
                    );
                    let mut out =
                        self.send_sealed(session, &SessionMessage::KeyConfirmation { device_id, key_id, proof });
                    out.push(AgentOutput::Event(AgentEvent::KeyConfirmed { key_id }));
                    return out;
                }
                let key_id = delivery.key_id;
                let record = StoredKey {
                    key_id,
                    key: delivery.key.clone(),
                    station_id: session.station.station_id,
                    issued_at: delivery.issued_at,
                    e4: Default::default(),
                };
                self.state = State::AwaitingPersist(Box::new(AwaitingPersist { session, key_id }));
                vec![AgentOutput::Event(AgentEvent::KeyReceived { key_id }), AgentOutput::Persist(record)]
            }
            SessionMessage::KeyStatusQuery { device_id, key_id } => {
                if device_id != self.identity.device_id {
                    return self.send_sealed_abort(session, AbortReason::WrongDevice);
                }
                let proof = self.stored.as_ref().filter(|k| k.key_id == key_id).map(|k| {
                    proof::possession_proof(ProofPurpose::Status, &k.key, &session.handshake_hash, &device_id, &key_id)
                });
                let held = proof.is_some();
                let reply = SessionMessage::KeyStatusReply { device_id, key_id, proof };
                let mut out = self.send_sealed(session, &reply);
                out.insert(0, AgentOutput::Event(AgentEvent::StatusAnswered { key_id, held }));
                out
            }
            SessionMessage::Abort { reason } => {
                self.reset();
                vec![AgentOutput::Event(AgentEvent::SessionAborted { reason })]
            }
            SessionMessage::KeyConfirmation { .. }
            | SessionMessage::KeyStatusReply { .. }
            | SessionMessage::DeviceReady { .. } => self.send_sealed_abort(session, AbortReason::ProtocolViolation),
        }
    }

    fn send_sealed(&mut self, mut session: Established, message: &SessionMessage) -> Vec<AgentOutput> {
        let id = session.session;
        let Ok(mut plaintext) = message.encode() else {
            return self.fail(id, AbortReason::ProtocolViolation, "session message too large");
        };
        let mut ciphertext = vec![0u8; plaintext.len() + 16];
        let written = session.transport.write_message(&plaintext, &mut ciphertext);
        plaintext.zeroize();
        let Ok(len) = written else {
            return self.fail(id, AbortReason::ProtocolViolation, "cannot encrypt session message");
        };
        ciphertext.truncate(len);
        match WireMessage::new(id, WireBody::Transport { ciphertext }).encode() {
            Ok(bytes) => {
                self.state = State::Established(Box::new(session));
                vec![AgentOutput::Transmit(bytes)]
            }
            Err(_) => self.fail(id, AbortReason::ProtocolViolation, "transport message too large"),
        }
    }

    fn send_sealed_abort(&mut self, session: Established, reason: AbortReason) -> Vec<AgentOutput> {
        let mut out = self.send_sealed(session, &SessionMessage::Abort { reason });
        self.reset();
        out.push(AgentOutput::Event(AgentEvent::SessionFailed { reason: format!("aborted: {reason:?}") }));
        out
    }

    /// The driver reports the outcome of the last [`AgentOutput::Persist`].
    pub fn persisted(&mut self, result: Result<StoredKey, String>) -> Vec<AgentOutput> {
        let state = std::mem::replace(&mut self.state, State::Idle);
        let State::AwaitingPersist(pending) = state else {
            self.state = state;
            return Vec::new();
        };
        let AwaitingPersist { session, key_id } = *pending;
        match result {
            Ok(stored) if stored.key_id == key_id => {
                let device_id = self.identity.device_id;
                let proof = proof::possession_proof(
                    ProofPurpose::Confirmation,
                    &stored.key,
                    &session.handshake_hash,
                    &device_id,
                    &key_id,
                );
                self.stored = Some(stored);
                let mut out = self.send_sealed(session, &SessionMessage::KeyConfirmation { device_id, key_id, proof });
                out.push(AgentOutput::Event(AgentEvent::KeyConfirmed { key_id }));
                out
            }
            Ok(_) => self.send_sealed_abort(session, AbortReason::StorageFailed),
            Err(error) => {
                let mut out = self.send_sealed_abort(session, AbortReason::StorageFailed);
                out.push(AgentOutput::Event(AgentEvent::SessionFailed { reason: format!("keystore: {error}") }));
                out
            }
        }
    }
}

#[cfg(test)]
mod vectors;
