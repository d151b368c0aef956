use keyfill_formats::message::{AbortReason, HandshakeMode, KeyDelivery, MessageError, SessionMessage, WireMessage};
use keyfill_formats::proof::{self, ProofPurpose};
use keyfill_formats::qr::{DeviceCredential, OnboardingPayload};
use keyfill_formats::{DeviceId, SecretKey};
use std::time::{Duration, Instant};
use thiserror::Error;
use zeroize::Zeroize;

/// How long the device may take to answer each handshake message.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the device may take to store the key and confirm it.
pub const CONFIRMATION_TIMEOUT: Duration = Duration::from_secs(20);
const NOISE_BUFFER: usize = 2048;

/// The station's authenticated identity: Noise static key and its certificate.
pub struct StationCredentials {
    pub static_private: SecretKey,
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for StationCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationCredentials").field("certificate_len", &self.certificate.len()).finish_non_exhaustive()
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

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error("the device could not prove it holds the key on its label (wrong device or cloned label)")]
    DeviceAuthenticationFailed,
    #[error("the device refused the session: {reason:?}")]
    RefusedByDevice { reason: AbortReason },
    /// The device declined the request inside the authenticated session, so it certainly did
    /// not take the key (unlike a plaintext abort, which anyone on the link could forge).
    #[error("the device declined the request: {reason:?}")]
    DeclinedByDevice { reason: AbortReason },
    #[error("the device sent an invalid key proof")]
    BadProof,
    #[error("protocol violation: {0}")]
    ProtocolViolation(String),
    #[error("no answer from the device within {seconds} s while {phase}")]
    Timeout { phase: &'static str, seconds: u64 },
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
            SessionError::Timeout { .. } => Some(AbortReason::Timeout),
            SessionError::BadProof | SessionError::ProtocolViolation(_) | SessionError::Message(_) => {
                Some(AbortReason::ProtocolViolation)
            }
            SessionError::Noise(_) => Some(AbortReason::Unspecified),
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
    request: Request,
    state: State,
    deadline: Instant,
    request_sent: bool,
    credentials_certificate: Vec<u8>,
}

impl std::fmt::Debug for StationSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationSession")
            .field("device", &self.device_id)
            .field("request_sent", &self.request_sent)
            .finish_non_exhaustive()
    }
}

fn noise_error(error: snow::Error) -> SessionError {
    SessionError::Noise(error.to_string())
}

impl StationSession {
    /// Starts a session; returns it and the first wire message to send.
    pub fn start(
        credentials: &StationCredentials,
        device: &OnboardingPayload,
        request: Request,
        now: Instant,
    ) -> Result<(Self, Vec<u8>), SessionError> {
        Self::start_with(credentials, device, request, now, None)
    }

    /// `test_ephemeral` fixes the Noise ephemeral key; only the known-answer tests pass one.
    fn start_with(
        credentials: &StationCredentials,
        device: &OnboardingPayload,
        request: Request,
        now: Instant,
        test_ephemeral: Option<&[u8; 32]>,
    ) -> Result<(Self, Vec<u8>), SessionError> {
        let mode = match device.credential {
            DeviceCredential::Identity { .. } => HandshakeMode::Identity,
            DeviceCredential::SetupSecret(_) => HandshakeMode::SetupSecret,
        };
        let params = mode.noise_pattern().parse().map_err(noise_error)?;
        let prologue = keyfill_agent::core::prologue(mode, &device.device_id);
        let mut builder = snow::Builder::new(params)
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
        let mut message = vec![0u8; NOISE_BUFFER];
        let len = noise.write_message(&[], &mut message).map_err(noise_error)?;
        message.truncate(len);
        let wire = WireMessage::HandshakeInit { mode, noise: message }.encode()?;
        let session = StationSession {
            device_id: device.device_id,
            request,
            state: State::AwaitingReply(Box::new(AwaitingReply { noise })),
            deadline: now + HANDSHAKE_TIMEOUT,
            request_sent: false,
            credentials_certificate: credentials.certificate.clone(),
        };
        Ok((session, wire))
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

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        if now < self.deadline {
            return Ok(());
        }
        let (phase, timeout) = match self.state {
            State::Done => return Ok(()),
            State::AwaitingReply(_) => ("waiting for the handshake reply", HANDSHAKE_TIMEOUT),
            State::AwaitingReady(_) => ("waiting for the device to accept the station", HANDSHAKE_TIMEOUT),
            State::AwaitingResult(_) => ("waiting for the key confirmation", CONFIRMATION_TIMEOUT),
        };
        self.state = State::Done;
        Err(SessionError::Timeout { phase, seconds: timeout.as_secs() })
    }

    /// Feeds one received wire message. Returns wire messages to send, and the outcome once the
    /// session is complete. Any error ends the session.
    pub fn handle_message(
        &mut self,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(Vec<Vec<u8>>, Option<SessionOutcome>), SessionError> {
        let result = self.dispatch(bytes, now);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn dispatch(&mut self, bytes: &[u8], now: Instant) -> Result<(Vec<Vec<u8>>, Option<SessionOutcome>), SessionError> {
        let message = WireMessage::decode(bytes)?;
        if let WireMessage::Abort { reason } = message {
            // A device that cannot read the first XK message does not hold the label's key.
            if matches!(self.state, State::AwaitingReply(_)) && reason == AbortReason::HandshakeFailed {
                return Err(SessionError::DeviceAuthenticationFailed);
            }
            return Err(SessionError::RefusedByDevice { reason });
        }
        match (std::mem::replace(&mut self.state, State::Done), message) {
            (State::AwaitingReply(hs), WireMessage::HandshakeReply { noise }) => {
                let finish = self.on_reply(*hs, &noise)?;
                self.deadline = now + HANDSHAKE_TIMEOUT;
                Ok((vec![finish], None))
            }
            (State::AwaitingReady(mut session), WireMessage::Transport { ciphertext }) => {
                match open(&mut session, &ciphertext)? {
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
                let wire = seal(&mut session, &request)?;
                self.request_sent = true;
                self.deadline = now + CONFIRMATION_TIMEOUT;
                self.state = State::AwaitingResult(session);
                Ok((vec![wire], None))
            }
            (State::AwaitingResult(mut session), WireMessage::Transport { ciphertext }) => {
                let reply = open(&mut session, &ciphertext)?;
                let outcome = self.check_result(&session, reply)?;
                Ok((Vec::new(), Some(outcome)))
            }
            (_, other) => Err(SessionError::ProtocolViolation(format!("unexpected {}", wire_name(&other)))),
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
        Ok(WireMessage::HandshakeFinish { noise: finish }.encode()?)
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

fn wire_name(message: &WireMessage) -> &'static str {
    match message {
        WireMessage::HandshakeInit { .. } => "handshake init",
        WireMessage::HandshakeReply { .. } => "handshake reply",
        WireMessage::HandshakeFinish { .. } => "handshake finish",
        WireMessage::Transport { .. } => "transport message",
        WireMessage::Abort { .. } => "abort",
    }
}

fn open(session: &mut Established, ciphertext: &[u8]) -> Result<SessionMessage, SessionError> {
    let mut plaintext = vec![0u8; NOISE_BUFFER];
    let len = session
        .transport
        .read_message(ciphertext, &mut plaintext)
        .map_err(|_| SessionError::ProtocolViolation("transport message failed authentication".into()))?;
    let message = SessionMessage::decode(&plaintext[..len]);
    plaintext.zeroize();
    Ok(message?)
}

fn seal(session: &mut Established, message: &SessionMessage) -> Result<Vec<u8>, SessionError> {
    let mut plaintext = message.encode()?;
    let mut ciphertext = vec![0u8; plaintext.len() + 16];
    let written = session.transport.write_message(&plaintext, &mut ciphertext);
    plaintext.zeroize();
    let len = written.map_err(noise_error)?;
    ciphertext.truncate(len);
    Ok(WireMessage::Transport { ciphertext }.encode()?)
}

#[cfg(test)]
#[path = "vectors.rs"]
mod vectors;
