//! The device agent's memory: heap per provisioning session, counted by a counting global
//! allocator around every call into the agent's state machine, and the resident memory of an
//! idle `keyfill-agent serve`.
//!
//! ```sh
//! cargo bench -p keyfill-e2e --bench agent_footprint
//! ```
//! The station's side of each session runs in the same thread, outside the counted calls. Per
//! call into the agent, what it keeps is the change in live heap once the messages it returns
//! have been handed to the link (as the real driver writes them out and frees them); the peak
//! of a session is the most it holds plus the transient peak of the call it is in. The Noise
//! handshake state is measured alone, by building it, and subtracted for the figure the target
//! is stated in: at most 8 KiB of heap per session beyond the Noise state.

use keyfill_agent::core::{AgentCore, AgentOutput};
use keyfill_agent::identity::DeviceIdentity;
use keyfill_formats::SecretKey;
use keyfill_formats::cert::{self, CertificateBody, StationCertificate};
use keyfill_formats::message::{HandshakeMode, KeyDelivery, KeyKind, SessionId};
use keyfill_station::protocol::{Request, SessionTimeouts, StationCredentials, StationSession};
use peak_alloc::PeakAlloc;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const SESSIONS: usize = 200;
const NOW_UNIX: u64 = 1_800_000_000;

/// What the agent holds across calls, and the most it held at any moment.
#[derive(Default)]
struct Footprint {
    held: isize,
    peak: isize,
}

impl Footprint {
    /// Runs one call into the agent and accounts for it; returns the messages for the link.
    fn call(&mut self, call: impl FnOnce() -> Vec<AgentOutput>) -> Vec<AgentOutput> {
        let before = HEAP.current_usage() as isize;
        HEAP.reset_peak_usage();
        let outputs = call();
        let transient = HEAP.peak_usage() as isize - before;
        let handed_over: isize = outputs
            .iter()
            .map(|output| match output {
                AgentOutput::Transmit(bytes) => bytes.capacity() as isize,
                _ => 0,
            })
            .sum::<isize>()
            + (outputs.capacity() * std::mem::size_of::<AgentOutput>()) as isize;
        let after = HEAP.current_usage() as isize;
        self.peak = self.peak.max(self.held + transient);
        self.held += after - before - handed_over;
        outputs
    }
}

fn credentials(root: &Ed25519KeyPair, root_public: &[u8; 32]) -> StationCredentials {
    let static_private = SecretKey::from_bytes([0x42; 32]);
    let body = CertificateBody {
        station_id: [9; 16],
        station_name: "footprint".into(),
        noise_static: keyfill_agent::identity::x25519_public_key(&static_private),
        not_before: NOW_UNIX - 10,
        not_after: NOW_UNIX + 1000,
        root_key_id: cert::root_key_id(root_public),
    };
    let tbs = body.encode();
    let signature = root.sign(&CertificateBody::signing_input(&tbs)).as_ref().try_into().expect("64 bytes");
    StationCredentials::in_memory(static_private, StationCertificate { body, tbs, signature }.encode())
}

/// One provisioning between a fresh agent and the station; the agent's footprint of it.
fn session(credentials: &StationCredentials, identity: &DeviceIdentity, number: u64) -> Result<Footprint, String> {
    let mut agent = AgentCore::new(identity.clone(), None);
    let now = Instant::now();
    let delivery = KeyDelivery {
        device_id: identity.device_id,
        key_id: [number as u8; 16],
        key: SecretKey::from_bytes([0x77; 32]),
        kind: KeyKind::E4SymmetricClientKey,
        issued_at: NOW_UNIX,
        station_id: [9; 16],
    };
    let (mut station, first) = StationSession::start(
        credentials,
        &identity.onboarding_payload(),
        Request::Deliver(delivery),
        SessionId(number.to_be_bytes()),
        SessionTimeouts::default(),
        now,
    )
    .map_err(|e| e.to_string())?;
    let mut footprint = Footprint::default();
    let mut to_device = vec![first];
    for _ in 0..10 {
        let mut to_station = Vec::new();
        for message in to_device.drain(..) {
            let mut outputs = footprint.call(|| agent.handle_message(&message, now, NOW_UNIX));
            while !outputs.is_empty() {
                let mut next = Vec::new();
                for output in outputs {
                    match output {
                        AgentOutput::Transmit(bytes) => to_station.push(bytes),
                        AgentOutput::Persist(record) => next.extend(footprint.call(|| agent.persisted(Ok(record)))),
                        AgentOutput::Event(_) => {}
                    }
                }
                outputs = next;
            }
        }
        for message in to_station {
            let step = station.handle_message(&message, now).map_err(|e| e.to_string())?;
            to_device.extend(step.transmit);
            if step.outcome.is_some() {
                return Ok(footprint);
            }
        }
    }
    Err("the session did not settle".into())
}

/// Heap of the Noise handshake state the agent builds for a session, alone.
fn noise_state_bytes() -> Result<usize, String> {
    let before = HEAP.current_usage();
    let params = HandshakeMode::Identity.noise_pattern().parse().map_err(|e| format!("{e:?}"))?;
    let state = snow::Builder::new(params)
        .prologue(&[0u8; 32])
        .and_then(|b| b.local_private_key(&[0x11; 32]))
        .and_then(|b| b.build_responder())
        .map_err(|e| e.to_string())?;
    let bytes = HEAP.current_usage().saturating_sub(before);
    drop(state);
    Ok(bytes)
}

fn idle_resident_kib() -> Result<u64, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root_file = dir.path().join("factory-root.pub");
    std::fs::write(&root_file, format!("{}\n", hex::encode([0x21u8; 32]))).map_err(|e| e.to_string())?;
    let mut agent = keyfill_e2e::Agent::init(dir.path(), "idle-agent", &root_file, &[]).map_err(|e| e.to_string())?;
    let pty = keyfill_e2e::PtyPair::new(dir.path()).map_err(|e| e.to_string())?;
    agent.serve(&pty.device_side, &[]).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = agent.pid().ok_or("the agent is not serving")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or("no VmRSS")?;
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| "unreadable VmRSS".into())
}

fn main() -> ExitCode {
    let root = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).expect("a valid seed");
    let root_public: [u8; 32] = root.public_key().as_ref().try_into().expect("32 bytes");
    let credentials = credentials(&root, &root_public);
    let name = "footprint-device".parse().expect("a valid name");
    let identity = match DeviceIdentity::generate(name, "SN-1", root_public, false) {
        Ok(identity) => identity,
        Err(error) => {
            eprintln!("no identity: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut peaks = Vec::with_capacity(SESSIONS);
    let mut kept = Vec::with_capacity(SESSIONS);
    for number in 0..SESSIONS as u64 {
        match session(&credentials, &identity, number + 1) {
            Ok(footprint) => {
                peaks.push(footprint.peak);
                kept.push(footprint.held);
            }
            Err(error) => {
                eprintln!("session {number}: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    peaks.sort_unstable();
    kept.sort_unstable();
    let noise = match noise_state_bytes() {
        Ok(bytes) => bytes as isize,
        Err(error) => {
            eprintln!("cannot measure the Noise state: {error}");
            return ExitCode::FAILURE;
        }
    };
    let median_peak = peaks[SESSIONS / 2];
    let worst_peak = peaks[SESSIONS - 1];
    println!("device agent heap per provisioning session, {SESSIONS} sessions (counting allocator)");
    println!("  peak:   median {median_peak} B, worst {worst_peak} B");
    println!("  Noise handshake state alone: {noise} B");
    println!(
        "  beyond the Noise state: median {} B, worst {} B (target ≤ 8192 B)",
        median_peak - noise,
        worst_peak - noise
    );
    println!(
        "  kept after the session (stored key record): median {} B, worst {} B",
        kept[SESSIONS / 2],
        kept[SESSIONS - 1]
    );
    match idle_resident_kib() {
        Ok(kib) => println!("idle `keyfill-agent serve --serial`: {kib} KiB resident (VmRSS after 2 s)"),
        Err(error) => {
            eprintln!("idle resident memory: {error}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
