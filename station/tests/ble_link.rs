//! The provisioning protocol through the BLE framing, over an in-memory radio with realistic
//! ATT MTUs that loses, repeats and corrupts fragments. Station: the real `BleLink` and
//! `run_session`; device: the real agent core behind `keyfill_agent::ble::serve_connection`.

use keyfill_agent::ble::{FragmentChannel, serve_connection};
use keyfill_agent::core::AgentCore;
use keyfill_agent::driver::FaultInjection;
use keyfill_agent::identity::DeviceIdentity;
use keyfill_agent::keystore::{Keystore, KeystoreError, StoredKey};
use keyfill_formats::SecretKey;
use keyfill_formats::cert::{self, CertificateBody, StationCertificate};
use keyfill_formats::message::{AbortReason, KeyDelivery, KeyKind, SessionId};
use keyfill_station::link::LinkError;
use keyfill_station::link::ble::{BleLink, GattChannel};
use keyfill_station::protocol::{
    Request, SessionError, SessionOutcome, SessionTimeouts, StationCredentials, StationSession,
};
use keyfill_station::provision::{SessionOrLinkError, run_session};
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Deterministic radio impairments.
#[derive(Clone)]
struct Impairment {
    state: Arc<Mutex<u64>>,
    drop_percent: u64,
    duplicate_percent: u64,
    corrupt_once: Arc<Mutex<Option<usize>>>,
}

impl Impairment {
    fn new(seed: u64, drop_percent: u64, duplicate_percent: u64) -> Self {
        Impairment {
            state: Arc::new(Mutex::new(seed | 1)),
            drop_percent,
            duplicate_percent,
            corrupt_once: Arc::new(Mutex::new(None)),
        }
    }

    fn roll(&self) -> u64 {
        let mut state = self.state.lock().expect("rng");
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state % 100
    }

    /// What the radio delivers for one transmitted fragment.
    fn carry(&self, fragment: &[u8]) -> Vec<Vec<u8>> {
        let mut fragment = fragment.to_vec();
        // Count only data fragments long enough to corrupt past the header.
        if let Some(countdown) = self.corrupt_once.lock().expect("corrupt").as_mut()
            && fragment.len() > 8
        {
            if *countdown == 0 {
                fragment[8] ^= 0x20;
            }
            *countdown = countdown.wrapping_sub(1);
        }
        if self.roll() < self.drop_percent {
            return Vec::new();
        }
        if self.roll() < self.duplicate_percent { vec![fragment.clone(), fragment] } else { vec![fragment] }
    }
}

struct StationRadio {
    mtu: usize,
    to_device: mpsc::UnboundedSender<Vec<u8>>,
    from_device: mpsc::UnboundedReceiver<Vec<u8>>,
    impairment: Impairment,
}

impl GattChannel for StationRadio {
    fn mtu(&self) -> usize {
        self.mtu
    }

    async fn write(&mut self, fragment: &[u8]) -> Result<(), LinkError> {
        for carried in self.impairment.carry(fragment) {
            self.to_device.send(carried).map_err(|_| LinkError::Closed)?;
        }
        Ok(())
    }

    async fn notification(&mut self) -> Result<Vec<u8>, LinkError> {
        self.from_device.recv().await.ok_or(LinkError::Closed)
    }
}

struct DeviceRadio {
    mtu: usize,
    to_station: mpsc::UnboundedSender<Vec<u8>>,
    from_station: mpsc::UnboundedReceiver<Vec<u8>>,
    impairment: Impairment,
}

impl FragmentChannel for DeviceRadio {
    fn mtu(&self) -> usize {
        self.mtu
    }

    async fn notify(&mut self, fragment: &[u8]) -> std::io::Result<()> {
        for carried in self.impairment.carry(fragment) {
            let _ = self.to_station.send(carried);
        }
        Ok(())
    }

    async fn written(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.from_station.recv().await)
    }
}

#[derive(Default)]
struct MemoryKeystore(Option<StoredKey>);

impl Keystore for MemoryKeystore {
    fn load(&self) -> Result<Option<StoredKey>, KeystoreError> {
        Ok(self.0.clone())
    }

    fn store(&mut self, key: &StoredKey) -> Result<(), KeystoreError> {
        self.0 = Some(key.clone());
        Ok(())
    }
}

fn root(seed: u8) -> (Ed25519KeyPair, [u8; 32]) {
    let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).expect("seed");
    let public = pair.public_key().as_ref().try_into().expect("32 bytes");
    (pair, public)
}

fn credentials(root_seed: u8) -> StationCredentials {
    let (pair, public) = root(root_seed);
    let static_private = SecretKey::from_bytes([0x24; 32]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    let body = CertificateBody {
        station_id: [5; 16],
        station_name: "ble-test".into(),
        noise_static: keyfill_agent::identity::x25519_public_key(&static_private),
        not_before: now - 60,
        not_after: now + 3600,
        root_key_id: cert::root_key_id(&public),
    };
    let tbs = body.encode();
    let signature = pair.sign(&CertificateBody::signing_input(&tbs)).as_ref().try_into().expect("64 bytes");
    StationCredentials::in_memory(static_private, StationCertificate { body, tbs, signature }.encode())
}

struct Outcome {
    result: Result<SessionOutcome, SessionOrLinkError>,
    dropped: u64,
    stored: Option<StoredKey>,
}

/// One session over the impaired radio. `label_of` may differ from `device` (a cloned label).
async fn session_over_ble(
    mtu: usize,
    impairment: Impairment,
    station_root: u8,
    device: DeviceIdentity,
    label_of: &DeviceIdentity,
) -> Outcome {
    session_over_ble_with(mtu, impairment, station_root, device, label_of, FaultInjection::None, Default::default())
        .await
}

/// Timeouts short enough for sessions that are meant to run out of time.
fn short_timeouts() -> SessionTimeouts {
    SessionTimeouts::bounded(Duration::from_secs(1), Duration::from_secs(2)).expect("within bounds")
}

async fn session_over_ble_with(
    mtu: usize,
    impairment: Impairment,
    station_root: u8,
    device: DeviceIdentity,
    label_of: &DeviceIdentity,
    fault: FaultInjection,
    timeouts: SessionTimeouts,
) -> Outcome {
    let (to_device, from_station) = mpsc::unbounded_channel();
    let (to_station, from_device) = mpsc::unbounded_channel();
    let mut device_radio = DeviceRadio { mtu, to_station, from_station, impairment: impairment.clone() };
    let station_radio = StationRadio { mtu, to_device, from_device, impairment };
    let agent = tokio::spawn(async move {
        let mut core = AgentCore::new(device, None);
        let mut keystore = MemoryKeystore::default();
        let _ = serve_connection(&mut device_radio, &mut core, &mut keystore, fault).await;
        keystore.0
    });
    let mut link = BleLink::new(station_radio, "AA:BB:CC:DD:EE:FF".into()).expect("valid MTU");
    let payload = label_of.onboarding_payload();
    let delivery = KeyDelivery {
        device_id: payload.device_id,
        key_id: [7; 16],
        key: SecretKey::from_bytes([7; 32]),
        kind: KeyKind::E4SymmetricClientKey,
        issued_at: 1,
        station_id: [5; 16],
    };
    let session_id = SessionId(random_session_id());
    let (session, first) = StationSession::start(
        &credentials(station_root),
        &payload,
        Request::Deliver(delivery),
        session_id,
        timeouts,
        Instant::now(),
    )
    .expect("start");
    let run = run_session(&mut link, session, first, |_| {}).await;
    drop(link);
    let stored = agent.await.expect("agent task");
    Outcome { result: run.result, dropped: run.dropped, stored }
}

fn random_session_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id).expect("random");
    id
}

fn device(name: &str, root_seed: u8) -> DeviceIdentity {
    DeviceIdentity::generate(name.parse().expect("a valid name"), "SN-BLE", root(root_seed).1, false).expect("identity")
}

async fn provisions_at_mtu(mtu: usize) {
    let identity = device(&format!("ble-device-{mtu}"), 1);
    let impairment = Impairment::new(mtu as u64 * 7919, 15, 10);
    let outcome = session_over_ble(mtu, impairment, 1, identity.clone(), &identity).await;
    assert_eq!(outcome.result.expect("provisioned"), SessionOutcome::Confirmed { key_id: [7; 16] });
    assert_eq!(outcome.stored.expect("stored").key, SecretKey::from_bytes([7; 32]));
}

#[tokio::test]
async fn ble_provisions_at_minimum_mtu_23_with_lost_and_repeated_notifications() {
    provisions_at_mtu(23).await;
}

#[tokio::test]
async fn ble_provisions_at_mtu_185_with_lost_and_repeated_notifications() {
    provisions_at_mtu(185).await;
}

#[tokio::test]
async fn ble_provisions_at_mtu_247_with_lost_and_repeated_notifications() {
    provisions_at_mtu(247).await;
}

#[tokio::test]
async fn adversarial_ble_radio_label_with_another_devices_key_is_aborted() {
    let genuine = device("ble-twin", 1);
    let cloned_label = device("ble-twin", 1);
    let outcome = session_over_ble(185, Impairment::new(3, 0, 0), 1, genuine, &cloned_label).await;
    assert!(
        matches!(outcome.result, Err(SessionOrLinkError::Session(SessionError::DeviceAuthenticationFailed))),
        "{:?}",
        outcome.result.err()
    );
    assert!(outcome.stored.is_none());
}

#[tokio::test]
async fn adversarial_ble_radio_station_with_foreign_root_is_refused() {
    let identity = device("ble-pinned", 1);
    let outcome = session_over_ble(185, Impairment::new(5, 0, 0), 2, identity.clone(), &identity).await;
    assert!(
        matches!(
            outcome.result,
            Err(SessionOrLinkError::Session(SessionError::RefusedByDevice { reason: AbortReason::BadCertificate }))
        ),
        "{:?}",
        outcome.result.err()
    );
    assert!(outcome.stored.is_none());
}

#[tokio::test]
async fn ble_corrupted_fragment_ends_the_session_without_provisioning() {
    for countdown in [0usize, 1, 3, 5] {
        let identity = device("ble-corrupt", 1);
        let impairment = Impairment::new(11, 0, 0);
        *impairment.corrupt_once.lock().expect("corrupt") = Some(countdown);
        let outcome = session_over_ble_with(
            23,
            impairment,
            1,
            identity.clone(),
            &identity,
            FaultInjection::None,
            short_timeouts(),
        )
        .await;
        // A corrupted message is dropped; the session then runs out of time.
        assert!(outcome.result.is_err(), "corrupting fragment {countdown} must fail the session");
        if let Some(stored) = outcome.stored {
            // Corruption after the device stored the key may only cost the confirmation.
            assert_eq!(stored.key, SecretKey::from_bytes([7; 32]));
        }
    }
}

#[tokio::test]
async fn field_ble_a_reply_of_another_session_is_dropped_and_the_session_completes() {
    for mtu in [23, 185] {
        let identity = device(&format!("ble-stray-{mtu}"), 1);
        let impairment = Impairment::new(mtu as u64 * 31, 10, 10);
        let outcome = session_over_ble_with(
            mtu,
            impairment,
            1,
            identity.clone(),
            &identity,
            FaultInjection::StrayBeforeReply,
            SessionTimeouts::default(),
        )
        .await;
        assert_eq!(outcome.result.expect("provisioned"), SessionOutcome::Confirmed { key_id: [7; 16] }, "MTU {mtu}");
        assert_eq!(outcome.dropped, 1, "the other session's reply was dropped, MTU {mtu}");
        assert_eq!(outcome.stored.expect("stored").key, SecretKey::from_bytes([7; 32]));
    }
}
