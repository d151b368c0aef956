//! Attacks on the serial link, with the real `keyfill` and `keyfill-agent`: a man in the middle
//! (the relay of the field tests) that flips bits in, truncates, downgrades or replays messages,
//! and impostor devices that replay a recorded transcript, answer one byte a second, or flood
//! the line. Each states its expected outcome: refused with a typed error, nothing recorded or
//! recorded `failed`, never `provisioned` with a key the device does not hold, and nothing lost:
//! a clean attempt afterwards provisions the device at once.

use anyhow::{Context, Result, bail};
use keyfill_e2e::relay::{Action, Direction, Relay, Seen};
use keyfill_e2e::{Agent, Database, PtyPair, Station};
use keyfill_formats::frame::{self, FrameDecoder};
use keyfill_formats::message::{HandshakeMode, WireBody, WireMessage};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sessions that are meant to fail give up after a second.
const IMPATIENT: [(&str, &str); 2] = [("KEYFILL_REPLY_TIMEOUT", "1"), ("KEYFILL_CONFIRM_TIMEOUT", "1")];

struct Line {
    station: Station,
    relay: Relay,
}

impl Line {
    fn new(dir: &Path) -> Result<Self> {
        Ok(Line { station: Station::init(dir, Database::sqlite(dir))?, relay: Relay::new(dir)? })
    }

    fn device(&self, dir: &Path, name: &str) -> Result<Agent> {
        let mut agent = Agent::init(dir, name, &self.station.factory_root_file(), &[])?;
        agent.serve(self.relay.device_port(), &[])?;
        Ok(agent)
    }

    fn provision(&self, agent: &Agent, env: &[(&str, &str)]) -> Result<Output> {
        let port = self.relay.station_port().to_string_lossy().into_owned();
        self.station.run_env(&["provision", "--serial", &port, "--qr", &agent.payload], env)
    }

    /// The station's record and the device agree: a `provisioned` record names the key the
    /// device holds.
    fn assert_consistent(&self, agent: &Agent, name: &str, case: &str) -> Result<()> {
        let state = self.station.state_of(name)?;
        if state.as_deref() == Some("provisioned") {
            let record = self.station.devices()?.into_iter().find(|d| d["name"] == name).context("listed")?;
            let held = agent.status()?["key_id"].clone();
            if record["key_id"] != held {
                bail!("{case}: provisioned with {} but the device holds {held}", record["key_id"]);
            }
        }
        Ok(())
    }

    /// After the attack, a clean attempt provisions the device at once.
    fn assert_recovers(&self, agent: &Agent, name: &str, case: &str) -> Result<()> {
        self.relay.set_policy(|_| Action::Forward);
        let output = self.provision(agent, &[])?;
        let already = stderr(&output).contains("is already provisioned");
        if !output.status.success() && !already {
            bail!("{case}: the clean attempt failed: {}", stderr(&output));
        }
        self.assert_consistent(agent, name, case)?;
        if self.station.state_of(name)?.as_deref() != Some("provisioned") {
            bail!("{case}: not provisioned after the clean attempt");
        }
        Ok(())
    }
}

fn flipped(payload: &[u8], at: usize) -> Vec<u8> {
    let mut out = payload.to_vec();
    let at = at.min(out.len() - 1);
    out[at] ^= 0x10;
    out
}

#[test]
fn adversarial_serial_bit_flips_and_truncation_of_every_message_never_provision_a_wrong_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let line = Line::new(dir)?;
    let mut case_number = 0;
    // Messages 1-6: init, reply, finish, ready, key delivery, confirmation.
    for index in 1..=6 {
        for mutation in ["flip-header", "flip-session", "flip-body", "flip-last", "truncate"] {
            case_number += 1;
            let case = format!("message {index}, {mutation}");
            let name = format!("mitm-{case_number:02}");
            let agent = line.device(dir, &name)?;
            let mut done = false;
            line.relay.set_policy(move |seen: &Seen| {
                if done || seen.index != index {
                    return Action::Forward;
                }
                done = true;
                let bytes = &seen.payload;
                Action::Replace(match mutation {
                    "flip-header" => flipped(bytes, 0),
                    "flip-session" => flipped(bytes, 5),
                    "flip-body" => flipped(bytes, bytes.len() / 2),
                    "flip-last" => flipped(bytes, bytes.len() - 1),
                    _ => bytes[..bytes.len() / 2].to_vec(),
                })
            });
            let output = line.provision(&agent, &IMPATIENT)?;
            assert!(!output.status.success(), "{case}: a tampered session must not succeed");
            assert!(!stderr(&output).contains("panicked"), "{case}: {}", stderr(&output));
            line.assert_consistent(&agent, &name, &case)?;
            line.assert_recovers(&agent, &name, &case)?;
        }
    }
    Ok(())
}

#[test]
fn adversarial_serial_downgraded_version_or_mode_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let line = Line::new(dir)?;
    for downgrade in ["protocol version 1", "setup-secret mode"] {
        let name = format!("downgrade-{}", downgrade.split(' ').next().unwrap_or("x"));
        let agent = line.device(dir, &name)?;
        line.relay.set_policy(move |seen: &Seen| {
            if seen.index != 1 {
                return Action::Forward;
            }
            let Ok(init) = WireMessage::decode(&seen.payload) else { return Action::Forward };
            let WireBody::HandshakeInit { noise, .. } = init.body else { return Action::Forward };
            Action::Replace(if downgrade == "protocol version 1" {
                // [1, 1, mode, noise]: the first version's handshake init, without a session.
                let mut bytes = vec![0x84, 0x01, 0x01, 0x01, 0x58, noise.len() as u8];
                bytes.extend_from_slice(&noise);
                bytes
            } else {
                let mode = HandshakeMode::SetupSecret;
                WireMessage::new(init.session, WireBody::HandshakeInit { mode, noise }).encode().unwrap_or_default()
            })
        });
        let output = line.provision(&agent, &IMPATIENT)?;
        assert!(!output.status.success(), "{downgrade}: must be refused");
        if downgrade == "setup-secret mode" {
            assert!(stderr(&output).contains("(WrongDevice)"), "{downgrade}: {}", stderr(&output));
        }
        assert_eq!(line.station.state_of(&name)?.as_deref(), Some("failed"), "{downgrade}: the key never left");
        assert!(agent.key_bytes()?.is_none(), "{downgrade}: the device took no key");
        line.assert_recovers(&agent, &name, downgrade)?;
    }
    Ok(())
}

/// An impostor on the device's side of a pseudo-terminal pair.
struct FakeDevice {
    port: std::fs::File,
    decoder: FrameDecoder,
}

impl FakeDevice {
    fn open(pty: &PtyPair) -> Result<Self> {
        let port = std::fs::OpenOptions::new().read(true).write(true).open(&pty.device_side)?;
        Ok(FakeDevice { port, decoder: FrameDecoder::new() })
    }

    /// The next whole message the station sent.
    fn receive(&mut self) -> Result<Vec<u8>> {
        let mut buffer = [0u8; 512];
        loop {
            let n = self.port.read(&mut buffer)?;
            if n == 0 {
                bail!("the station's side closed");
            }
            if let Some(Ok(message)) = self.decoder.push(&buffer[..n]).into_iter().next() {
                return Ok(message);
            }
        }
    }

    fn send(&mut self, message: &[u8]) -> Result<()> {
        self.port.write_all(&frame::encode(message)?)?;
        Ok(self.port.flush()?)
    }
}

/// The messages of one complete provisioning, as the relay recorded them.
fn recorded_session(line: &Line, dir: &Path, name: &str) -> Result<(Agent, Vec<Seen>)> {
    let agent = line.device(dir, name)?;
    line.relay.set_policy(|_| Action::Forward);
    let output = line.provision(&agent, &[])?;
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = line.relay.seen();
    let session: Vec<Seen> = seen[seen.len().saturating_sub(6)..].to_vec();
    assert_eq!(session.len(), 6);
    Ok((agent, session))
}

#[test]
fn adversarial_serial_replayed_transcript_is_refused_both_ways() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let line = Line::new(dir)?;
    let (mut recorded_device, session) = recorded_session(&line, dir, "recorded")?;
    let from = |direction| session.iter().filter(move |m| m.direction == direction).map(|m| m.payload.clone());

    // The station's side replayed to the same device after a factory reset: it stores nothing.
    recorded_device.stop();
    let reset = std::process::Command::new(keyfill_e2e::binary("keyfill-agent"))
        .arg("--state")
        .arg(&recorded_device.state)
        .args(["reset", "--yes"])
        .output()?;
    assert!(reset.status.success());
    let replay_dir = dir.join("replay-to-device");
    std::fs::create_dir_all(&replay_dir)?;
    let pty = PtyPair::new(&replay_dir)?;
    recorded_device.serve(&pty.device_side, &[])?;
    {
        let mut attacker = std::fs::OpenOptions::new().read(true).write(true).open(&pty.station_side)?;
        for message in from(Direction::ToDevice) {
            attacker.write_all(&frame::encode(&message)?)?;
            attacker.flush()?;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(recorded_device.key_bytes()?.is_none(), "a replayed station must not deliver a key");
    recorded_device.stop();

    // The device's side replayed to a new session of a station that has not met the device,
    // verbatim and relabelled with the new session's id: it provisions nothing.
    for relabel in [false, true] {
        let station_dir = dir.join(if relabel { "relabelled" } else { "verbatim" });
        std::fs::create_dir_all(&station_dir)?;
        let station = Station {
            home: line.station.home.clone(),
            db: Database::sqlite(&station_dir),
            transcript: Default::default(),
            env: Vec::new(),
        };
        let pty = PtyPair::new(&station_dir)?;
        let mut impostor = FakeDevice::open(&pty)?;
        let replies: Vec<Vec<u8>> = from(Direction::ToStation).collect();
        let answering = std::thread::spawn(move || -> Result<()> {
            let init = WireMessage::decode(&impostor.receive()?)?;
            for reply in replies {
                let mut message = WireMessage::decode(&reply)?;
                if relabel {
                    message.session = init.session;
                }
                impostor.send(&message.encode()?)?;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        });
        let port = pty.station_side.to_string_lossy().into_owned();
        let output =
            station.run_env(&["provision", "--serial", &port, "--qr", &recorded_device.payload], &IMPATIENT)?;
        assert!(!output.status.success(), "relabelled {relabel}: a replayed device must not be provisioned");
        let said = stderr(&output);
        if relabel {
            assert!(said.contains("could not prove it holds the key"), "{said}");
        } else {
            assert!(said.contains("earlier session"), "{said}");
        }
        let _ = answering.join();
        assert_eq!(station.state_of("recorded")?.as_deref(), Some("failed"), "the key never left");
    }
    Ok(())
}

#[test]
fn adversarial_serial_slow_loris_and_garbage_flood_are_bounded_by_the_timeouts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let honest = Agent::init(dir, "bounded", &station.factory_root_file(), &[])?;
    for attack in ["one byte a second", "garbage flood"] {
        let attack_dir = dir.join(attack.replace(' ', "-"));
        std::fs::create_dir_all(&attack_dir)?;
        let pty = PtyPair::new(&attack_dir)?;
        let mut impostor = FakeDevice::open(&pty)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let attacking = std::thread::spawn(move || -> Result<u64> {
            let init = WireMessage::decode(&impostor.receive()?)?;
            let mut sent = 0u64;
            let reply = WireMessage::new(init.session, WireBody::HandshakeReply { noise: vec![0x42; 48] }).encode()?;
            let framed = frame::encode(&reply)?;
            let mut noise = keyfill_e2e::crash::Rng::new(0x5eed);
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                if attack == "one byte a second" {
                    let Some(&byte) = framed.get(sent as usize) else { break };
                    impostor.port.write_all(&[byte])?;
                    sent += 1;
                    std::thread::sleep(Duration::from_secs(1));
                } else {
                    let chunk: Vec<u8> = (0..4096).map(|_| noise.next_u64() as u8).collect();
                    if impostor.port.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                }
            }
            Ok(sent)
        });
        let started = Instant::now();
        let port = pty.station_side.to_string_lossy().into_owned();
        let env = [("KEYFILL_REPLY_TIMEOUT", "2"), ("KEYFILL_CONFIRM_TIMEOUT", "2")];
        let output = station.run_env(&["provision", "--serial", &port, "--qr", &honest.payload], &env)?;
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(!output.status.success(), "{attack}");
        let said = stderr(&output);
        assert!(said.contains("no answer from the device") || said.contains("earlier session"), "{attack}: {said}");
        assert!(!said.contains("panicked"), "{attack}: {said}");
        // A liveness bound, not a performance figure: the station moves on.
        assert!(took < Duration::from_secs(30), "{attack}: the station took {took:?}");
        assert_eq!(station.state_of("bounded")?.as_deref(), Some("failed"), "{attack}: the key never left");
        drop(pty);
        let _ = attacking.join();
    }
    Ok(())
}
