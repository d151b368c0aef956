use keyfill_formats::message::{
    self, AbortReason, HandshakeMode, KeyDelivery, MessageError, PROTOCOL_VERSION, SessionId, SessionMessage, WireBody,
    WireMessage,
};
use keyfill_formats::proof::{self, ProofPurpose};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_formats::{DeviceId, SecretKey};
use std::time::{Duration, Instant};
use thiserror::Error;
use zeroize::Zeroize;

/// How long the device may take, by default, to answer each handshake message.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the device may take, by default, to store the key and confirm it.
pub const CONFIRMATION_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds on the configurable timeouts: below a second a healthy device on a slow link fails;
/// above ten minutes an operator waits for a device that is not there.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
const NOISE_BUFFER: usize = 2048;

/// The station's authenticated identity: Noise static key and its certificate.
pub struct StationCredentials {
    /// The Noise static private key; when a token holds it, the stand-in
    /// [`super::token_dh::TOKEN_STATIC_STAND_IN`].
    pub static_private: SecretKey,
    pub certificate: Vec<u8>,
    /// The token's static key, when a token holds it.
    pub token_static: Option<super::token_dh::TokenStatic>,
}

impl StationCredentials {
    /// Credentials whose static key is in memory.
    pub fn in_memory(static_private: SecretKey, certificate: Vec<u8>) -> Self {
        StationCredentials { static_private, certificate, token_static: None }
    }
}

impl std::fmt::Debug for StationCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationCredentials").field("certificate_len", &self.certificate.len()).finish_non_exhaustive()
    }
}

/// How long the station waits for the device in each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// For each handshake answer (the reply, then `DeviceReady`).
    pub reply: Duration,
    /// For the key confirmation or status reply, which covers the device's durable write.
    pub confirmation: Duration,
}

impl Default for SessionTimeouts {
    fn default() -> Self {
        SessionTimeouts { reply: HANDSHAKE_TIMEOUT, confirmation: CONFIRMATION_TIMEOUT }
    }
}

impl SessionTimeouts {
    /// Timeouts within [`MIN_TIMEOUT`]..=[`MAX_TIMEOUT`]; `None` if either is outside.
    pub fn bounded(reply: Duration, confirmation: Duration) -> Option<Self> {
        let within = |d: Duration| (MIN_TIMEOUT..=MAX_TIMEOUT).contains(&d);
        (within(reply) && within(confirmation)).then_some(SessionTimeouts { reply, confirmation })
    }
}

/// What the station asks of the device once the session is up.
#[derive(Debug, Clone)]
pub enum Request {
    /// Deliver the initial key and wait for its confirmation.
    Deliver(KeyDelivery),
    /// Ask whether the device holds `key_id` (reconciliation); `key` checks its proof.
    QueryKey { key_id: [u8; 16], key: SecretKey },
}

/// How a session ended successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOutcome {
    /// The device proved it stored the delivered key.
    Confirmed { key_id: [u8; 16] },
    /// The device proved it holds `key_id`.
    KeyHeld { key_id: [u8; 16] },
    /// The device says it does not hold `key_id`.
    KeyNotHeld { key_id: [u8; 16] },
}

/// A received message that does not belong to the session: dropped and counted, never fatal,
/// since anything on the link can produce one (a late answer to an earlier session, a station
/// killed mid-session, line noise that passed the framing check, an echo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stray {
    /// A message of another session.
    OtherSession { session: SessionId, kind: &'static str },
    /// Bytes that are not a wire message of this protocol version.
    Undecodable(MessageError),
    /// A message naming this session that does not fit its state (a repeat, an echo of the
    /// station's own message) or fails authentication (corrupted or injected).
    Unexpected { kind: &'static str },
}

impl std::fmt::Display for Stray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stray::OtherSession { session, kind } => write!(f, "{kind} of another session ({session})"),
            Stray::Undecodable(error) => write!(f, "undecodable message ({error})"),
            Stray::Unexpected { kind } => write!(f, "unexpected or unauthentic {kind}"),
        }
    }
}

/// What one received message did to the session.
#[derive(Debug, Default)]
pub struct Step {
    /// Wire messages to send, in order.
    pub transmit: Vec<Vec<u8>>,
    /// Set when the session is complete.
    pub outcome: Option<SessionOutcome>,
    /// Set when the message was dropped.
    pub dropped: Option<Stray>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A genuine proof failure: the device answered this very session and could not show the
    /// identity key (or setup secret) of the label.
    #[error("the device could not prove it holds the key on its label (wrong device or cloned label)")]
    DeviceAuthenticationFailed,
    #[error("the device refused the session: {reason}")]
    RefusedByDevice { reason: AbortReason },
    /// The device declined the request inside the authenticated session, so it certainly did
    /// not take the key (unlike a plaintext abort, which anyone on the link could forge).
    #[error("the device declined the request: {reason}")]
    DeclinedByDevice { reason: AbortReason },
    #[error("the device sent an invalid key proof")]
    BadProof,
    #[error("protocol violation by the device: {0}")]
    ProtocolViolation(String),
    #[error("no answer from the device within {seconds} s while {phase}")]
    Timeout { phase: &'static str, seconds: u64 },
    /// The deadline passed while the link carried messages that were not this session's: a
    /// link problem (left-over or late data), not a verdict on the device.
    #[error(
        "the link carried data from an earlier session ({dropped} message(s) dropped) and no answer to this \
         session came within {seconds} s while {phase}"
    )]
    StaleLink { phase: &'static str, seconds: u64, dropped: u64 },
    #[error(
        "the device speaks provisioning protocol version {version}; this station speaks version {PROTOCOL_VERSION}"
    )]
    IncompatibleDevice { version: u64 },
    #[error("cannot set up Noise: {0}")]
    Noise(String),
    #[error(transparent)]
    Message(#[from] MessageError),
}

impl SessionError {
    /// The reason to give the device when the station ends the session, if it should be told.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        match self {
            SessionError::RefusedByDevice { .. } | SessionError::DeclinedByDevice { .. } => None,
            SessionError::DeviceAuthenticationFailed => Some(AbortReason::HandshakeFailed),
            SessionError::Timeout { .. } | SessionError::StaleLink { .. } => Some(AbortReason::Timeout),
            SessionError::IncompatibleDevice { .. } => Some(AbortReason::UnsupportedVersion),
            SessionError::BadProof | SessionError::ProtocolViolation(_) | SessionError::Message(_) => {
                Some(AbortReason::ProtocolViolation)
            }
            SessionError::Noise(_) => Some(AbortReason::Unspecified),
        }
    }

    /// Whether the failure says something about the link rather than the device: retrying on a
    /// clean link is the remedy.
    pub fn is_link_problem(&self) -> bool {
        matches!(
            self,
            SessionError::StaleLink { .. } | SessionError::RefusedByDevice { reason: AbortReason::UnknownSession }
        )
    }

    /// What the operator should do, whatever the link and whatever the front end.
    pub fn advice(&self) -> &'static str {
        match self {
            SessionError::DeviceAuthenticationFailed => {
                "The device on the link answered this session but does not hold the key (or setup secret) of this \
                 label: check that the label belongs to the device on the link; if it does, set the device aside \
                 for inspection (a cloned or re-flashed device)."
            }
            SessionError::StaleLink { .. } => {
                "The link carried data from an earlier session: retry. The station discards what is left on a \
                 link when it opens it, and ignores messages of other sessions."
            }
            SessionError::Timeout { .. } => {
                "Check that the device is powered, that its provisioning agent serves this link, and the cable or \
                 reader; then retry."
            }
            SessionError::IncompatibleDevice { .. } => {
                "Update the device's provisioning agent (firmware) to this station's protocol version, or provision \
                 it with a station of its version."
            }
            SessionError::RefusedByDevice { reason } | SessionError::DeclinedByDevice { reason } => match reason {
                AbortReason::UnknownSession | AbortReason::Timeout => {
                    "The device restarted or gave up on the session: retry."
                }
                AbortReason::AlreadyProvisioned => {
                    "The device already holds a key: if it must be keyed again (a lost inventory, a reworked \
                     device), factory-reset it first (`keyfill-agent reset`)."
                }
                AbortReason::BadCertificate => {
                    "The device does not trust this station: check that the device pins the factory root of this \
                     station (`keyfill info`)."
                }
                AbortReason::CertificateExpired => {
                    "The device finds the station certificate expired or not yet valid: check the device's clock and \
                     the certificate's validity (`keyfill info`)."
                }
                AbortReason::WrongDevice => {
                    "The label belongs to another device: scan the label of the device on the link."
                }
                AbortReason::StorageFailed => "The device could not store the key: check its storage, then retry.",
                AbortReason::UnsupportedVersion => {
                    "The device speaks another protocol version: update its provisioning agent (firmware)."
                }
                AbortReason::Busy => "The device is busy: wait a moment, then retry.",
                _ => "Retry; if the device refuses again, restart it.",
            },
            SessionError::BadProof | SessionError::ProtocolViolation(_) | SessionError::Message(_) => {
                "The device's authenticated answer was wrong: retry once; if it repeats, check the device's agent \
                 version and set the device aside."
            }
            SessionError::Noise(_) => "The station could not set up the session: retry; if it repeats, report it.",
        }
    }
}

struct AwaitingReply {
    noise: snow::HandshakeState,
}

struct Established {
    transport: snow::TransportState,
    handshake_hash: Vec<u8>,
}

enum State {
    AwaitingReply(Box<AwaitingReply>),
    AwaitingReady(Box<Established>),
    AwaitingResult(Box<Established>),
    Done,
}

/// One provisioning or reconciliation session with one device.
pub struct StationSession {
    device_id: DeviceId,
    mode: HandshakeMode,
    session_id: SessionId,
    request: Request,
    state: State,
    timeouts: SessionTimeouts,
    deadline: Instant,
    request_sent: bool,
    dropped: u64,
    credentials_certificate: Vec<u8>,
}

impl std::fmt::Debug for StationSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationSession")
            .field("device", &self.device_id)
            .field("session", &self.session_id)
            .field("request_sent", &self.request_sent)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

fn noise_error(error: snow::Error) -> SessionError {
    SessionError::Noise(error.to_string())
}

impl StationSession {
    /// Starts the session `session_id` (fresh and random for every session on a link); returns it
    /// and the first wire message to send.
    pub fn start(
        credentials: &StationCredentials,
        device: &OnboardingPayload,
        request: Request,
        session_id: SessionId,
        timeouts: SessionTimeouts,
        now: Instant,
    ) -> Result<(Self, Vec<u8>), SessionError> {
        Self::start_with(credentials, device, request, session_id, timeouts, now, None)
    }

    /// `test_ephemeral` fixes the Noise ephemeral key; only the known-answer tests pass one.
    fn start_with(
        credentials: &StationCredentials,
        device: &OnboardingPayload,
        request: Request,
        session_id: SessionId,
        timeouts: SessionTimeouts,
        now: Instant,
        test_ephemeral: Option<&[u8; 32]>,
    ) -> Result<(Self, Vec<u8>), SessionError> {
        let mode = match device.credential {
            DeviceCredential::Identity { .. } => HandshakeMode::Identity,
            DeviceCredential::SetupSecret(_) => HandshakeMode::SetupSecret,
        };
        let params = mode.noise_pattern().parse().map_err(noise_error)?;
        let prologue = message::noise_prologue(mode, &device.device_id, &session_id);
        let builder = match &credentials.token_static {
            Some(token_static) => snow::Builder::with_resolver(
                params,
                Box::new(super::token_dh::TokenResolver::new(token_static.clone())),
            ),
            None => snow::Builder::new(params),
        };
        let mut builder = builder
            .prologue(&prologue)
            .and_then(|b| b.local_private_key(credentials.static_private.expose()))
            .map_err(noise_error)?;
        if let Some(ephemeral) = test_ephemeral {
            builder = builder.fixed_ephemeral_key_for_testing_only(ephemeral);
        }
        let mut noise = match &device.credential {
            DeviceCredential::Identity { public_key } => {
                builder.remote_public_key(public_key).and_then(|b| b.build_initiator()).map_err(noise_error)?
            }
            DeviceCredential::SetupSecret(secret) => {
                let mut psk = proof::setup_psk(&secret.0, &device.device_id);
                let built = builder.psk(3, &psk).and_then(|b| b.build_initiator());
                psk.zeroize();
                built.map_err(noise_error)?
            }
        };
        let mut first = vec![0u8; NOISE_BUFFER];
        let len = noise.write_message(&[], &mut first).map_err(noise_error)?;
        first.truncate(len);
        let wire = WireMessage::new(session_id, WireBody::HandshakeInit { mode, noise: first }).encode()?;
        let session = StationSession {
            device_id: device.device_id,
            mode,
            session_id,
            request,
            state: State::AwaitingReply(Box::new(AwaitingReply { noise })),
            timeouts,
            deadline: now + timeouts.reply,
            request_sent: false,
            dropped: 0,
            credentials_certificate: credentials.certificate.clone(),
        };
        Ok((session, wire))
    }

    /// The id every message of this session carries.
    pub fn session_id(&self) -> SessionId {
        self.session_id
    }

    /// When the current phase times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Done => None,
            _ => Some(self.deadline),
        }
    }

    /// Whether the request (and so, for a delivery, the key) has been sent to the device.
    pub fn request_sent(&self) -> bool {
        self.request_sent
    }

    /// How many received messages were dropped as not belonging to this session.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The plaintext abort that tells the device this session ended on `error`, if it should be
    /// told (best effort: it is unauthenticated).
    pub fn abort_message(&self, error: &SessionError) -> Option<Vec<u8>> {
        let reason = error.abort_reason()?;
        WireMessage::new(self.session_id, WireBody::Abort { reason }).encode().ok()
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if now < self.deadline {
            return Ok(());
        }
        let (phase, timeout) = match self.state {
            State::Done => return Ok(()),
            State::AwaitingReply(_) => ("waiting for the handshake reply", self.timeouts.reply),
            State::AwaitingReady(_) => ("waiting for the device to accept the station", self.timeouts.reply),
            State::AwaitingResult(_) => ("waiting for the key confirmation", self.timeouts.confirmation),
        };
        self.state = State::Done;
        let seconds = timeout.as_secs();
        Err(match self.dropped {
            0 => SessionError::Timeout { phase, seconds },
            dropped => SessionError::StaleLink { phase, seconds, dropped },
        })
    }

    /// Feeds one received wire message. A message that is not this session's is dropped (see
    /// [`Step::dropped`]); any error ends the session.
    pub fn handle_message(&mut self, bytes: &[u8], now: Instant) -> Result<Step, SessionError> {
        let result = self.dispatch(bytes, now);
        match &result {
            Err(_) => self.state = State::Done,
            Ok(Step { dropped: Some(_), .. }) => self.dropped += 1,
            Ok(_) => {}
        }
        result
    }

    fn dispatch(&mut self, bytes: &[u8], now: Instant) -> Result<Step, SessionError> {
        let message = match WireMessage::decode(bytes) {
            Ok(message) => message,
            Err(MessageError::UnsupportedVersion(version)) if message::peek_version(bytes).is_some() => {
                // A whole message in another version is a statement of the peer, not noise.
                return Err(SessionError::IncompatibleDevice { version });
            }
            Err(error) => return Ok(dropped(Stray::Undecodable(error))),
        };
        if message.session != self.session_id {
            return Ok(dropped(Stray::OtherSession { session: message.session, kind: message.body.name() }));
        }
        if let WireBody::Abort { reason } = message.body {
            return Err(self.refusal(reason));
        }
        match (std::mem::replace(&mut self.state, State::Done), message.body) {
            (State::AwaitingReply(hs), WireBody::HandshakeReply { noise }) => {
                let finish = self.on_reply(*hs, &noise)?;
                self.deadline = now + self.timeouts.reply;
                Ok(Step { transmit: vec![finish], ..Step::default() })
            }
            (State::AwaitingReady(mut session), WireBody::Transport { ciphertext }) => {
                let Some(ready) = open(&mut session, &ciphertext)? else {
                    self.state = State::AwaitingReady(session);
                    return Ok(dropped(Stray::Unexpected { kind: "transport message" }));
                };
                match ready {
                    SessionMessage::DeviceReady { device_id } if device_id == self.device_id => {}
                    SessionMessage::Abort { reason } => {
                        return Err(SessionError::RefusedByDevice { reason });
                    }
                    _ => {
                        return Err(SessionError::ProtocolViolation("expected the device to be ready".into()));
                    }
                }
                let request = match &self.request {
                    Request::Deliver(delivery) => SessionMessage::KeyDelivery(delivery.clone()),
                    Request::QueryKey { key_id, .. } => {
                        SessionMessage::KeyStatusQuery { device_id: self.device_id, key_id: *key_id }
                    }
                };
                let wire = seal(&mut session, self.session_id, &request)?;
                self.request_sent = true;
                self.deadline = now + self.timeouts.confirmation;
                self.state = State::AwaitingResult(session);
                Ok(Step { transmit: vec![wire], ..Step::default() })
            }
            (State::AwaitingResult(mut session), WireBody::Transport { ciphertext }) => {
                let Some(reply) = open(&mut session, &ciphertext)? else {
                    self.state = State::AwaitingResult(session);
                    return Ok(dropped(Stray::Unexpected { kind: "transport message" }));
                };
                let outcome = self.check_result(&session, reply)?;
                Ok(Step { outcome: Some(outcome), ..Step::default() })
            }
            (state, other) => {
                // A repeat or an echo of this session's own traffic: nothing to act on.
                self.state = state;
                Ok(dropped(Stray::Unexpected { kind: other.name() }))
            }
        }
    }

    /// What the device's plaintext abort of this session means.
    fn refusal(&self, reason: AbortReason) -> SessionError {
        let proving = match self.state {
            // Identity mode: the device could not read Noise message 1, made for the label's key.
            State::AwaitingReply(_) => self.mode == HandshakeMode::Identity,
            // Setup-secret mode: message 3 is the first one keyed by the label's secret.
            State::AwaitingReady(_) => self.mode == HandshakeMode::SetupSecret,
            _ => false,
        };
        if proving && reason == AbortReason::HandshakeFailed {
            SessionError::DeviceAuthenticationFailed
        } else {
            SessionError::RefusedByDevice { reason }
        }
    }

    fn on_reply(&mut self, mut hs: AwaitingReply, noise_message: &[u8]) -> Result<Vec<u8>, SessionError> {
        let mut payload = [0u8; NOISE_BUFFER];
        hs.noise.read_message(noise_message, &mut payload).map_err(|_| SessionError::DeviceAuthenticationFailed)?;
        let mut finish = vec![0u8; NOISE_BUFFER];
        let len = hs.noise.write_message(&self.credentials_certificate, &mut finish).map_err(noise_error)?;
        finish.truncate(len);
        let handshake_hash = hs.noise.get_handshake_hash().to_vec();
        let transport = hs.noise.into_transport_mode().map_err(noise_error)?;
        self.state = State::AwaitingReady(Box::new(Established { transport, handshake_hash }));
        Ok(WireMessage::new(self.session_id, WireBody::HandshakeFinish { noise: finish }).encode()?)
    }

    fn check_result(&self, session: &Established, reply: SessionMessage) -> Result<SessionOutcome, SessionError> {
        match (&self.request, reply) {
            (Request::Deliver(delivery), SessionMessage::KeyConfirmation { device_id, key_id, proof }) => {
                let valid = device_id == self.device_id
                    && key_id == delivery.key_id
                    && proof::verify_possession_proof(
                        ProofPurpose::Confirmation,
                        &delivery.key,
                        &session.handshake_hash,
                        &device_id,
                        &key_id,
                        &proof,
                    );
                if valid { Ok(SessionOutcome::Confirmed { key_id }) } else { Err(SessionError::BadProof) }
            }
            (Request::QueryKey { key_id: asked, key }, SessionMessage::KeyStatusReply { device_id, key_id, proof }) => {
                if device_id != self.device_id || key_id != *asked {
                    return Err(SessionError::ProtocolViolation("status reply for another key".into()));
                }
                match proof {
                    Some(proof) => {
                        let valid = proof::verify_possession_proof(
                            ProofPurpose::Status,
                            key,
                            &session.handshake_hash,
                            &device_id,
                            &key_id,
                            &proof,
                        );
                        if valid { Ok(SessionOutcome::KeyHeld { key_id }) } else { Err(SessionError::BadProof) }
                    }
                    None => Ok(SessionOutcome::KeyNotHeld { key_id }),
                }
            }
            (_, SessionMessage::Abort { reason }) => Err(SessionError::DeclinedByDevice { reason }),
            (_, _) => Err(SessionError::ProtocolViolation("unexpected reply to the request".into())),
        }
    }
}

fn dropped(stray: Stray) -> Step {
    Step { dropped: Some(stray), ..Step::default() }
}

/// Decrypts a transport message; `None` if it fails authentication. A failed decryption leaves
/// the Noise receive nonce where it was, so the genuine message can still follow.
fn open(session: &mut Established, ciphertext: &[u8]) -> Result<Option<SessionMessage>, SessionError> {
    let mut plaintext = vec![0u8; NOISE_BUFFER];
    let Ok(len) = session.transport.read_message(ciphertext, &mut plaintext) else {
        return Ok(None);
    };
    let message = SessionMessage::decode(&plaintext[..len]);
    plaintext.zeroize();
    // Authenticated but malformed: the device itself is at fault.
    Ok(Some(message?))
}

fn seal(session: &mut Established, session_id: SessionId, message: &SessionMessage) -> Result<Vec<u8>, SessionError> {
    let mut plaintext = message.encode()?;
    let mut ciphertext = vec![0u8; plaintext.len() + 16];
    let written = session.transport.write_message(&plaintext, &mut ciphertext);
    plaintext.zeroize();
    let len = written.map_err(noise_error)?;
    ciphertext.truncate(len);
    Ok(WireMessage::new(session_id, WireBody::Transport { ciphertext }).encode()?)
}

#[cfg(test)]
#[path = "vectors.rs"]
mod vectors;
