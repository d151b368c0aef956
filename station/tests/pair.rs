//! Deterministic pair tests: the station session and the agent core in one process, connected
//! by an in-memory link that can drop, corrupt, record and replay messages. No I/O, no clock.

use keyfill_agent::core::{AgentCore, AgentEvent, AgentOutput};
use keyfill_agent::identity::DeviceIdentity;
use keyfill_agent::keystore::StoredKey;
use keyfill_formats::SecretKey;
use keyfill_formats::cert::{self, CertificateBody, StationCertificate};
use keyfill_formats::message::{AbortReason, KeyDelivery, KeyKind, SessionId, WireBody, WireMessage};
use keyfill_formats::qr::OnboardingPayload;
use keyfill_station::protocol::{
    Request, SessionError, SessionOutcome, SessionTimeouts, StationCredentials, StationSession, Stray,
};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const NOW_UNIX: u64 = 1_800_000_000;

struct FactoryRoot {
    pair: Ed25519KeyPair,
    public: [u8; 32],
}

fn factory_root(seed: u8) -> FactoryRoot {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("valid seed");
    let public = pair.public_key().as_ref().try_into().expect("32 bytes");
    FactoryRoot { pair, public }
}

fn station(root: &FactoryRoot, not_before: u64, not_after: u64) -> StationCredentials {
    let static_private = SecretKey::from_bytes([0x42; 32]);
    let noise_static = keyfill_agent::identity::x25519_public_key(&static_private);
    let body = CertificateBody {
        station_id: [9; 16],
        station_name: "pair-test".into(),
        noise_static,
        not_before,
        not_after,
        root_key_id: cert::root_key_id(&root.public),
    };
    let tbs = body.encode();
    let signature = root.pair.sign(&CertificateBody::signing_input(&tbs)).as_ref().try_into().expect("64 bytes");
    StationCredentials::in_memory(static_private, StationCertificate { body, tbs, signature }.encode())
}

fn valid_station(root: &FactoryRoot) -> StationCredentials {
    station(root, NOW_UNIX - 10, NOW_UNIX + 1000)
}

fn device(name: &str, root: &FactoryRoot, secret_mode: bool) -> DeviceIdentity {
    DeviceIdentity::generate(name.parse().expect("a valid name"), "SN-1", root.public, secret_mode).expect("identity")
}

fn delivery(device: &DeviceIdentity, key_byte: u8) -> KeyDelivery {
    KeyDelivery {
        device_id: device.device_id,
        key_id: [key_byte; 16],
        key: SecretKey::from_bytes([key_byte; 32]),
        kind: KeyKind::E4SymmetricClientKey,
        issued_at: NOW_UNIX,
        station_id: [9; 16],
    }
}

/// A session id no other session of the test process uses.
fn fresh_session_id() -> SessionId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    SessionId(NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes())
}

fn start(
    credentials: &StationCredentials,
    payload: &OnboardingPayload,
    request: Request,
    now: Instant,
) -> Result<(StationSession, Vec<u8>), SessionError> {
    StationSession::start(credentials, payload, request, fresh_session_id(), SessionTimeouts::default(), now)
}

fn transmitted(outputs: Vec<AgentOutput>) -> Vec<Vec<u8>> {
    outputs.into_iter().filter_map(|o| if let AgentOutput::Transmit(b) = o { Some(b) } else { None }).collect()
}

/// What happened in one run of a pair.
#[derive(Default)]
struct Transcript {
    to_device: Vec<Vec<u8>>,
    to_station: Vec<Vec<u8>>,
    stored: Option<StoredKey>,
    agent_events: Vec<AgentEvent>,
}

/// Drives both sides until the station ends. `tamper` may rewrite or drop each message
/// (direction: true = station→device).
fn run_pair(
    credentials: &StationCredentials,
    payload: &OnboardingPayload,
    agent: &mut AgentCore,
    request: Request,
    mut tamper: impl FnMut(bool, usize, Vec<u8>) -> Option<Vec<u8>>,
) -> (Result<SessionOutcome, SessionError>, Transcript) {
    let mut now = Instant::now();
    let mut transcript = Transcript::default();
    let (mut session, first) = match start(credentials, payload, request, now) {
        Ok(started) => started,
        Err(error) => return (Err(error), transcript),
    };
    let mut to_device = vec![first];
    for _round in 0..10 {
        let mut to_station = Vec::new();
        for message in to_device.drain(..) {
            let index = transcript.to_device.len();
            transcript.to_device.push(message.clone());
            let Some(message) = tamper(true, index, message) else {
                continue;
            };
            let mut outputs = agent.handle_message(&message, now, NOW_UNIX);
            while !outputs.is_empty() {
                let mut next = Vec::new();
                for output in outputs {
                    match output {
                        AgentOutput::Transmit(bytes) => to_station.push(bytes),
                        AgentOutput::Persist(record) => {
                            transcript.stored = Some(record.clone());
                            next.extend(agent.persisted(Ok(record)));
                        }
                        AgentOutput::Event(event) => transcript.agent_events.push(event),
                    }
                }
                outputs = next;
            }
        }
        for message in to_station {
            let index = transcript.to_station.len();
            transcript.to_station.push(message.clone());
            let Some(message) = tamper(false, index, message) else {
                continue;
            };
            match session.handle_message(&message, now) {
                Ok(step) => {
                    to_device.extend(step.transmit);
                    if let Some(outcome) = step.outcome {
                        return (Ok(outcome), transcript);
                    }
                }
                Err(error) => return (Err(error), transcript),
            }
        }
        if to_device.is_empty() {
            now += Duration::from_secs(60);
            if let Err(error) = session.handle_timeout(now) {
                return (Err(error), transcript);
            }
        }
    }
    (Err(SessionError::ProtocolViolation("pair did not settle".into())), transcript)
}

fn untouched(_: bool, _: usize, m: Vec<u8>) -> Option<Vec<u8>> {
    Some(m)
}

#[test]
fn identity_mode_delivers_and_confirms() {
    let root = factory_root(1);
    let identity = device("line-1 dev-1", &root, false);
    let payload = identity.onboarding_payload();
    let mut agent = AgentCore::new(identity.clone(), None);
    let (result, transcript) =
        run_pair(&valid_station(&root), &payload, &mut agent, Request::Deliver(delivery(&identity, 7)), untouched);
    assert_eq!(result.expect("provisioned"), SessionOutcome::Confirmed { key_id: [7; 16] });
    let stored = transcript.stored.expect("device stored the key");
    assert_eq!(stored.key, SecretKey::from_bytes([7; 32]));
    assert_eq!(stored.station_id, [9; 16]);
    assert_eq!(transcript.to_device.len(), 3, "init, finish, delivery");
    assert_eq!(transcript.to_station.len(), 3, "reply, ready, confirmation");
}

#[test]
fn setup_secret_mode_delivers_and_confirms() {
    let root = factory_root(1);
    let identity = device("secret-dev", &root, true);
    let payload = identity.onboarding_payload();
    let mut agent = AgentCore::new(identity.clone(), None);
    let (result, transcript) =
        run_pair(&valid_station(&root), &payload, &mut agent, Request::Deliver(delivery(&identity, 3)), untouched);
    assert_eq!(result.expect("provisioned"), SessionOutcome::Confirmed { key_id: [3; 16] });
    assert!(transcript.stored.is_some());
}

#[test]
fn label_with_another_devices_key_fails_before_the_key_leaves() {
    let root = factory_root(1);
    let genuine = device("dev-a", &root, false);
    let impostor_label = device("dev-a", &root, false).onboarding_payload(); // same name, other key
    let mut agent = AgentCore::new(genuine.clone(), None);
    let (result, transcript) = run_pair(
        &valid_station(&root),
        &impostor_label,
        &mut agent,
        Request::Deliver(delivery(&genuine, 5)),
        untouched,
    );
    assert!(matches!(result, Err(SessionError::DeviceAuthenticationFailed)), "{result:?}");
    assert!(transcript.stored.is_none());
    assert_eq!(transcript.to_device.len(), 1, "nothing but the first handshake message left the station");
}

#[test]
fn wrong_setup_secret_never_receives_the_key() {
    let root = factory_root(1);
    let genuine = device("dev-s", &root, true);
    let cloned_label = device("dev-s", &root, true).onboarding_payload(); // other secret
    let mut agent = AgentCore::new(genuine.clone(), None);
    let (result, transcript) =
        run_pair(&valid_station(&root), &cloned_label, &mut agent, Request::Deliver(delivery(&genuine, 5)), untouched);
    assert!(matches!(result, Err(SessionError::DeviceAuthenticationFailed)), "{result:?}");
    assert!(transcript.stored.is_none());
    assert!(transcript.to_device.len() <= 2, "the key delivery was never sent");
}

#[test]
fn station_signed_by_another_root_is_refused() {
    let device_root = factory_root(1);
    let rogue_root = factory_root(2);
    let identity = device("dev-r", &device_root, false);
    let mut agent = AgentCore::new(identity.clone(), None);
    let (result, transcript) = run_pair(
        &valid_station(&rogue_root),
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 5)),
        untouched,
    );
    assert!(matches!(result, Err(SessionError::RefusedByDevice { reason: AbortReason::BadCertificate })), "{result:?}");
    assert!(transcript.stored.is_none());
    assert!(transcript.agent_events.contains(&AgentEvent::StationRefused { reason: AbortReason::BadCertificate }));
}

#[test]
fn expired_station_certificate_is_refused() {
    let root = factory_root(1);
    let identity = device("dev-e", &root, false);
    let mut agent = AgentCore::new(identity.clone(), None);
    let expired = station(&root, NOW_UNIX - 1000, NOW_UNIX - 1);
    let (result, transcript) = run_pair(
        &expired,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 5)),
        untouched,
    );
    assert!(
        matches!(result, Err(SessionError::RefusedByDevice { reason: AbortReason::CertificateExpired })),
        "{result:?}"
    );
    assert!(transcript.stored.is_none());
}

#[test]
fn replayed_station_messages_are_rejected_and_store_nothing() {
    let root = factory_root(1);
    let identity = device("dev-replay", &root, false);
    let credentials = valid_station(&root);
    let mut agent = AgentCore::new(identity.clone(), None);
    let (result, recording) = run_pair(
        &credentials,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 1)),
        untouched,
    );
    assert!(result.is_ok());

    // An attacker replays the whole recorded station side to a device (fresh or the same).
    let mut victim = AgentCore::new(identity.clone(), None);
    let mut stored = false;
    for (index, message) in recording.to_device.iter().enumerate() {
        for output in victim.handle_message(message, Instant::now(), NOW_UNIX) {
            match output {
                AgentOutput::Persist(_) => stored = true,
                AgentOutput::Transmit(bytes) if index > 0 => {
                    let answer = WireMessage::decode(&bytes).expect("well-formed");
                    assert!(
                        matches!(answer.body, WireBody::Abort { .. }),
                        "only aborts answer a replay, got {answer:?}"
                    );
                }
                _ => {}
            }
        }
    }
    assert!(!stored, "a replayed session must not deliver a key");
    assert!(victim.stored_key_id().is_none());
}

#[test]
fn replayed_device_messages_do_not_confirm_a_new_session() {
    let root = factory_root(1);
    let identity = device("dev-replay-2", &root, false);
    let credentials = valid_station(&root);
    let mut agent = AgentCore::new(identity.clone(), None);
    let (_, recording) = run_pair(
        &credentials,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 1)),
        untouched,
    );
    // A fake device answers a new session with the recorded device messages: as they are, they
    // name the recorded session and are dropped; relabelled with the new session, they fail
    // the handshake.
    let (mut session, first) =
        start(&credentials, &identity.onboarding_payload(), Request::Deliver(delivery(&identity, 2)), Instant::now())
            .expect("start");
    let step = session.handle_message(&recording.to_station[0], Instant::now()).expect("dropped, not fatal");
    assert!(matches!(step.dropped, Some(Stray::OtherSession { .. })), "{step:?}");
    let mut relabelled = WireMessage::decode(&recording.to_station[0]).expect("recorded reply");
    relabelled.session = WireMessage::decode(&first).expect("init").session;
    let result = session.handle_message(&relabelled.encode().expect("encodes"), Instant::now());
    assert!(matches!(result, Err(SessionError::DeviceAuthenticationFailed)), "{result:?}");
    assert!(!session.request_sent());
}

#[test]
fn any_flipped_bit_ends_the_session_without_provisioning() {
    let root = factory_root(1);
    let identity = device("dev-flip", &root, false);
    let credentials = valid_station(&root);
    for direction in [true, false] {
        for index in 0..3 {
            for byte in [0usize, 5, 20, 40] {
                let mut agent = AgentCore::new(identity.clone(), None);
                let (result, transcript) = run_pair(
                    &credentials,
                    &identity.onboarding_payload(),
                    &mut agent,
                    Request::Deliver(delivery(&identity, 4)),
                    |to_device, i, mut message| {
                        if to_device == direction && i == index && byte < message.len() {
                            message[byte] ^= 0x01;
                        }
                        Some(message)
                    },
                );
                assert!(result.is_err(), "tampering {direction}/{index}/{byte} must fail, got {result:?}");
                let _ = transcript;
            }
        }
    }
}

#[test]
fn lost_confirmation_times_out_after_the_key_was_sent() {
    let root = factory_root(1);
    let identity = device("dev-lost", &root, false);
    let mut agent = AgentCore::new(identity.clone(), None);
    let (result, transcript) = run_pair(
        &valid_station(&root),
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 8)),
        |to_device, i, m| if !to_device && i == 2 { None } else { Some(m) },
    );
    assert!(matches!(result, Err(SessionError::Timeout { .. })), "{result:?}");
    assert!(transcript.stored.is_some(), "the device stored the key; the station must reconcile, not guess");
}

#[test]
fn status_query_proves_possession_of_the_pending_key() {
    let root = factory_root(1);
    let identity = device("dev-status", &root, false);
    let credentials = valid_station(&root);
    let mut agent = AgentCore::new(identity.clone(), None);
    let (_, transcript) = run_pair(
        &credentials,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 6)),
        untouched,
    );
    assert!(transcript.stored.is_some());
    let held = Request::QueryKey { key_id: [6; 16], key: SecretKey::from_bytes([6; 32]) };
    let (result, _) = run_pair(&credentials, &identity.onboarding_payload(), &mut agent, held, untouched);
    assert_eq!(result.expect("answered"), SessionOutcome::KeyHeld { key_id: [6; 16] });
    let other = Request::QueryKey { key_id: [1; 16], key: SecretKey::from_bytes([1; 32]) };
    let (result, _) = run_pair(&credentials, &identity.onboarding_payload(), &mut agent, other, untouched);
    assert_eq!(result.expect("answered"), SessionOutcome::KeyNotHeld { key_id: [1; 16] });
    // A station that expects another key value under the same id rejects the proof.
    let wrong_value = Request::QueryKey { key_id: [6; 16], key: SecretKey::from_bytes([9; 32]) };
    let (result, _) = run_pair(&credentials, &identity.onboarding_payload(), &mut agent, wrong_value, untouched);
    assert!(matches!(result, Err(SessionError::BadProof)), "{result:?}");
}

#[test]
fn a_provisioned_device_refuses_another_initial_key_but_accepts_a_retry_of_its_own() {
    let root = factory_root(1);
    let identity = device("dev-once", &root, false);
    let credentials = valid_station(&root);
    let mut agent = AgentCore::new(identity.clone(), None);
    let (first, _) = run_pair(
        &credentials,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 1)),
        untouched,
    );
    assert!(first.is_ok());
    let (retry, _) = run_pair(
        &credentials,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 1)),
        untouched,
    );
    assert_eq!(retry.expect("same key again is idempotent"), SessionOutcome::Confirmed { key_id: [1; 16] });
    let (other, transcript) = run_pair(
        &credentials,
        &identity.onboarding_payload(),
        &mut agent,
        Request::Deliver(delivery(&identity, 2)),
        untouched,
    );
    assert!(
        matches!(other, Err(SessionError::DeclinedByDevice { reason: AbortReason::AlreadyProvisioned })),
        "{other:?}"
    );
    assert!(transcript.stored.is_none());
    assert_eq!(agent.stored_key_id(), Some([1; 16]));
}

#[test]
fn messages_arriving_while_the_key_is_written_do_not_break_the_confirmation() {
    let root = factory_root(1);
    let identity = device("dev-busy", &root, false);
    let credentials = valid_station(&root);
    let payload = identity.onboarding_payload();
    let mut agent = AgentCore::new(identity.clone(), None);
    let now = Instant::now();
    let (mut session, first) =
        start(&credentials, &payload, Request::Deliver(delivery(&identity, 5)), now).expect("start");
    let reply = transmitted(agent.handle_message(&first, now, NOW_UNIX));
    let finish = session.handle_message(&reply[0], now).expect("reply").transmit;
    let ready = transmitted(agent.handle_message(&finish[0], now, NOW_UNIX));
    let delivery_wire = session.handle_message(&ready[0], now).expect("ready").transmit;
    let persist = agent.handle_message(&delivery_wire[0], now, NOW_UNIX);
    let record = persist
        .into_iter()
        .find_map(|o| if let AgentOutput::Persist(r) = o { Some(r) } else { None })
        .expect("persist requested");
    // A new handshake, an abort and garbage arrive while the key is being written.
    assert!(agent.handle_message(&first, now, NOW_UNIX).is_empty());
    let abort = WireMessage::new(session.session_id(), WireBody::Abort { reason: AbortReason::Busy });
    assert!(agent.handle_message(&abort.encode().expect("abort"), now, NOW_UNIX).is_empty());
    assert!(agent.handle_message(b"\xff\x00garbage", now, NOW_UNIX).is_empty());
    let confirmation = transmitted(agent.persisted(Ok(record)));
    let step = session.handle_message(&confirmation[0], now).expect("confirmation");
    assert_eq!(step.outcome, Some(SessionOutcome::Confirmed { key_id: [5; 16] }));
    assert_eq!(agent.stored_key_id(), Some([5; 16]));
}

/// Runs the device side of one message: what the agent transmits, and whether it reported a
/// dropped message.
fn feed_agent(agent: &mut AgentCore, message: &[u8], now: Instant) -> (Vec<Vec<u8>>, bool) {
    let mut transmit = Vec::new();
    let mut stray = false;
    for output in agent.handle_message(message, now, NOW_UNIX) {
        match output {
            AgentOutput::Transmit(bytes) => transmit.push(bytes),
            AgentOutput::Event(AgentEvent::StrayMessage { .. }) => stray = true,
            AgentOutput::Event(_) => {}
            AgentOutput::Persist(record) => transmit.extend(transmitted(agent.persisted(Ok(record)))),
        }
    }
    (transmit, stray)
}

#[test]
fn field_a_late_reply_to_an_earlier_session_is_dropped_and_the_new_session_completes() {
    let root = factory_root(1);
    let identity = device("dev-late", &root, false);
    let credentials = valid_station(&root);
    let payload = identity.onboarding_payload();
    let mut agent = AgentCore::new(identity.clone(), None);
    let now = Instant::now();
    // Session A: the device answers after the station gave up; its reply stays on the link.
    let (_abandoned, init_a) = start(&credentials, &payload, Request::Deliver(delivery(&identity, 1)), now).expect("A");
    let (late_reply_a, _) = feed_agent(&mut agent, &init_a, now);
    // Session B (the retry) reads that reply first, then its own.
    let (mut session, init_b) =
        start(&credentials, &payload, Request::Deliver(delivery(&identity, 2)), now).expect("B");
    let (reply_b, _) = feed_agent(&mut agent, &init_b, now);
    let step = session.handle_message(&late_reply_a[0], now).expect("a stray is not fatal");
    assert!(matches!(step.dropped, Some(Stray::OtherSession { kind: "handshake reply", .. })), "{step:?}");
    assert!(step.transmit.is_empty());
    let mut to_device = session.handle_message(&reply_b[0], now).expect("own reply").transmit;
    let mut outcome = None;
    while outcome.is_none() {
        let message = to_device.pop().expect("the session goes on");
        let (answers, _) = feed_agent(&mut agent, &message, now);
        for answer in answers {
            let step = session.handle_message(&answer, now).expect("session continues");
            to_device.extend(step.transmit);
            outcome = outcome.or(step.outcome);
        }
    }
    assert_eq!(outcome, Some(SessionOutcome::Confirmed { key_id: [2; 16] }));
    assert_eq!(session.dropped(), 1);
    assert_eq!(agent.stored_key_id(), Some([2; 16]));
}

#[test]
fn field_a_deadline_passed_among_stray_messages_is_a_link_problem_not_a_wrong_device() {
    let root = factory_root(1);
    let identity = device("dev-confused", &root, false);
    let credentials = valid_station(&root);
    let payload = identity.onboarding_payload();
    let mut agent = AgentCore::new(identity.clone(), None);
    let now = Instant::now();
    let (_earlier, init_a) = start(&credentials, &payload, Request::Deliver(delivery(&identity, 1)), now).expect("A");
    let (reply_a, _) = feed_agent(&mut agent, &init_a, now);
    let (mut session, _init_b) =
        start(&credentials, &payload, Request::Deliver(delivery(&identity, 2)), now).expect("B");
    for stale in [reply_a[0].clone(), b"\x84\x02\x02garbage".to_vec(), init_a.clone()] {
        assert!(session.handle_message(&stale, now).expect("dropped").dropped.is_some());
    }
    let error = session.handle_timeout(now + Duration::from_secs(11)).expect_err("deadline");
    assert!(matches!(error, SessionError::StaleLink { dropped: 3, .. }), "{error:?}");
    assert!(error.is_link_problem());
    let text = error.to_string();
    assert!(text.contains("earlier session") && !text.contains("wrong device"), "{text}");
    // Without strays the same deadline is a plain timeout.
    let (mut quiet, _) = start(&credentials, &payload, Request::Deliver(delivery(&identity, 3)), now).expect("C");
    let error = quiet.handle_timeout(now + Duration::from_secs(11)).expect_err("deadline");
    assert!(matches!(error, SessionError::Timeout { .. }), "{error:?}");
}

#[test]
fn field_the_device_drops_messages_of_other_sessions_and_keeps_its_own() {
    let root = factory_root(1);
    let identity = device("dev-strays", &root, false);
    let credentials = valid_station(&root);
    let payload = identity.onboarding_payload();
    let mut agent = AgentCore::new(identity.clone(), None);
    let now = Instant::now();
    // Session A gets as far as the finish, then the station is killed; its finish arrives late.
    let (mut session_a, init_a) =
        start(&credentials, &payload, Request::Deliver(delivery(&identity, 1)), now).expect("A");
    let (reply_a, _) = feed_agent(&mut agent, &init_a, now);
    let finish_a = session_a.handle_message(&reply_a[0], now).expect("A reply").transmit;
    let (mut session_b, init_b) =
        start(&credentials, &payload, Request::Deliver(delivery(&identity, 2)), now).expect("B");
    let (reply_b, _) = feed_agent(&mut agent, &init_b, now);
    let (answer, stray) = feed_agent(&mut agent, &finish_a[0], now);
    assert!(stray, "the finish of session A is reported as dropped");
    // The device tells whoever runs session A that it no longer has it; session B ignores that.
    let unknown = WireMessage::decode(&answer[0]).expect("abort");
    assert_eq!(unknown.body, WireBody::Abort { reason: AbortReason::UnknownSession });
    assert_ne!(unknown.session, session_b.session_id());
    assert!(session_b.handle_message(&answer[0], now).expect("dropped").dropped.is_some());
    // An undecodable message is dropped without an answer.
    let (answer, stray) = feed_agent(&mut agent, b"\x01\x02noise", now);
    assert!(stray && answer.is_empty());
    // Session B completes.
    let finish_b = session_b.handle_message(&reply_b[0], now).expect("B reply").transmit;
    let (ready_b, _) = feed_agent(&mut agent, &finish_b[0], now);
    let delivery_b = session_b.handle_message(&ready_b[0], now).expect("ready").transmit;
    let (confirmation_b, _) = feed_agent(&mut agent, &delivery_b[0], now);
    let step = session_b.handle_message(&confirmation_b[0], now).expect("confirmation");
    assert_eq!(step.outcome, Some(SessionOutcome::Confirmed { key_id: [2; 16] }));
}

#[test]
fn field_a_device_that_lost_the_session_says_so_at_once() {
    let root = factory_root(1);
    let identity = device("dev-restarted", &root, false);
    let credentials = valid_station(&root);
    let payload = identity.onboarding_payload();
    let now = Instant::now();
    let mut agent = AgentCore::new(identity.clone(), None);
    let (mut session, init) = start(&credentials, &payload, Request::Deliver(delivery(&identity, 1)), now).expect("A");
    let (reply, _) = feed_agent(&mut agent, &init, now);
    let finish = session.handle_message(&reply[0], now).expect("reply").transmit;
    // The device restarts (power cycle) before the finish arrives.
    let mut restarted = AgentCore::new(identity.clone(), None);
    let (answer, _) = feed_agent(&mut restarted, &finish[0], now);
    let result = session.handle_message(&answer[0], now);
    assert!(matches!(result, Err(SessionError::RefusedByDevice { reason: AbortReason::UnknownSession })), "{result:?}");
    assert!(!session.request_sent(), "the key never left");
}

#[test]
fn field_a_transport_message_that_fails_authentication_is_dropped_and_the_genuine_one_accepted() {
    let root = factory_root(1);
    let identity = device("dev-injected", &root, true);
    let credentials = valid_station(&root);
    let payload = identity.onboarding_payload();
    let now = Instant::now();
    let mut agent = AgentCore::new(identity.clone(), None);
    let (mut session, init) = start(&credentials, &payload, Request::Deliver(delivery(&identity, 4)), now).expect("A");
    let (reply, _) = feed_agent(&mut agent, &init, now);
    let finish = session.handle_message(&reply[0], now).expect("reply").transmit;
    let (ready, _) = feed_agent(&mut agent, &finish[0], now);
    // An injected transport message under this session's id, before the genuine DeviceReady.
    let forged = WireMessage::new(session.session_id(), WireBody::Transport { ciphertext: vec![0x5A; 36] });
    let step = session.handle_message(&forged.encode().expect("encodes"), now).expect("dropped");
    assert!(matches!(step.dropped, Some(Stray::Unexpected { .. })), "{step:?}");
    let delivery_wire = session.handle_message(&ready[0], now).expect("genuine ready").transmit;
    // The same towards the device, before the genuine delivery.
    let (answer, stray) = feed_agent(&mut agent, &forged.encode().expect("encodes"), now);
    assert!(stray && answer.is_empty());
    let (confirmation, _) = feed_agent(&mut agent, &delivery_wire[0], now);
    let step = session.handle_message(&confirmation[0], now).expect("confirmation");
    assert_eq!(step.outcome, Some(SessionOutcome::Confirmed { key_id: [4; 16] }));
}
