//! Provisioning through the real PC/SC stack: pcscd with vsmartcard's vpcd reader driver, the
//! real `keyfill-agent` as the virtual card, the real `keyfill` station.

use anyhow::Result;
use keyfill_e2e::pcscd::{self, Lease, VirtualReader};
use keyfill_e2e::{Agent, Database, Station};
use keyfill_formats::apdu::{self, sw};
use std::path::Path;
use std::time::Duration;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn provision(station: &Station, reader: &VirtualReader, payload: &str) -> Result<std::process::Output> {
    station.run(&["provision", "--pcsc", &reader.name, "--card-wait", "10", "--qr", payload])
}

fn setup(
    dir: &Path,
    db: Database,
    name: &str,
    agent_args: &[&str],
    lease: &Lease,
) -> Result<(Station, Agent, VirtualReader)> {
    let station = Station::init(dir, db)?;
    let mut agent = Agent::init(dir, name, &station.factory_root_file(), &[])?;
    let reader = lease.reader().clone();
    agent.serve_vpcd(&reader.vpcd_address(), agent_args)?;
    Ok((station, agent, reader))
}

#[test]
fn pcsc_provision_end_to_end_sqlite_and_postgres() -> Result<()> {
    let lease = pcscd::lease()?;
    let dir = tempfile::tempdir()?;
    for (label, db) in [("sqlite", Database::sqlite(dir.path())), ("postgres", Database::postgres()?)] {
        let dir = dir.path().join(label);
        std::fs::create_dir_all(&dir)?;
        let (station, agent, reader) = setup(&dir, db, &format!("card-{label}"), &[], &lease)?;
        let output = provision(&station, &reader, &agent.payload)?;
        assert!(output.status.success(), "{label}: {}", stderr(&output));
        let device = station.devices()?.into_iter().next().expect("one device");
        assert_eq!(device["state"], "provisioned");
        assert_eq!(device["transport"], "pcsc");
        assert_eq!(device["port"], reader.name.as_str());
        assert_eq!(agent.status()?["key_id"], device["key_id"]);
    }
    Ok(())
}

#[test]
fn pcsc_card_removed_mid_session_is_recorded_then_recovered() -> Result<()> {
    let lease = pcscd::lease()?;
    let dir = tempfile::tempdir()?;
    let fault = ["--fault", "pull-card-on-delivery"];
    let (station, agent, reader) = setup(dir.path(), Database::sqlite(dir.path()), "pulled-card", &fault, &lease)?;
    let output = provision(&station, &reader, &agent.payload)?;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("card was removed"), "{}", stderr(&output));
    assert_eq!(station.state_of("pulled-card")?.as_deref(), Some("pending"), "the key had left: only the card can say");
    assert!(agent.key_bytes()?.is_none());

    // The card is presented again: provisioning asks it first, learns it holds nothing, re-keys.
    std::thread::sleep(Duration::from_millis(1500));
    let output = provision(&station, &reader, &agent.payload)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(station.state_of("pulled-card")?.as_deref(), Some("provisioned"));
    let kinds = station.history_kinds("pulled-card")?;
    assert_eq!(kinds, ["key_generated", "unconfirmed", "reconciled", "key_generated", "provisioned"]);
    Ok(())
}

#[test]
fn adversarial_pcsc_malformed_oversized_and_corrupted_apdus_get_status_words_and_provisioning_still_works() -> Result<()>
{
    let lease = pcscd::lease()?;
    let dir = tempfile::tempdir()?;
    let (station, agent, reader) = setup(dir.path(), Database::sqlite(dir.path()), "robust-card", &[], &lease)?;
    {
        let context = pcsc::Context::establish(pcsc::Scope::User)?;
        let name = std::ffi::CString::new(reader.name.clone())?;
        let mut card = None;
        for _ in 0..50 {
            match context.connect(&name, pcsc::ShareMode::Shared, pcsc::Protocols::ANY) {
                Ok(connected) => {
                    card = Some(connected);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let card = card.expect("the virtual card is in the reader");
        let mut status_buffer = [0u8; 258];
        let mut status = |command: &[u8]| -> u16 {
            let response = card.transmit(command, &mut status_buffer).expect("transmit");
            let n = response.len();
            u16::from_be_bytes([response[n - 2], response[n - 1]])
        };
        assert_eq!(status(&[0x80, 0x10, 0, 0, 1, 0xAA]), sw::CONDITIONS_NOT_SATISFIED, "exchange before SELECT");
        assert_eq!(status(&[0x00, 0xA4, 0x04, 0x00, 3, 1, 2, 3]), sw::APPLICATION_NOT_FOUND, "unknown AID");
        assert_eq!(status(&apdu::select_keyfill().encode()?), sw::OK);
        assert_eq!(status(&[0x80, 0x10, 0, 0, 9, 1, 2]), sw::WRONG_LENGTH, "Lc larger than the data");
        assert_eq!(status(&[0x80, 0x77, 0, 0]), sw::INS_NOT_SUPPORTED);
        assert_eq!(status(&[0x42, 0x10, 0, 0]), sw::CLA_NOT_SUPPORTED);
        assert_eq!(status(&[0x80, 0x10, 1, 0, 1, 0]), sw::WRONG_P1P2);
        // A corrupted wire message is dropped: no answer, no crash.
        let mut buffer = [0u8; 258];
        let response = card.transmit(&[0x80, 0x10, 0, 0, 4, 0x83, 0x02, 0x7F, 0x00], &mut buffer)?.to_vec();
        assert_eq!(response, [0x90, 0x00]);
        // A message of another protocol version is answered with the protocol's abort.
        let response = card.transmit(&[0x80, 0x10, 0, 0, 4, 0x83, 0x01, 0x05, 0x06], &mut buffer)?.to_vec();
        assert_eq!(&response[response.len() - 2..], &[0x90, 0x00]);
        let abort = keyfill_formats::message::WireMessage::decode(&response[..response.len() - 2])?;
        assert_eq!(
            abort.body,
            keyfill_formats::message::WireBody::Abort {
                reason: keyfill_formats::message::AbortReason::UnsupportedVersion
            }
        );
        // A chained message longer than any wire message is refused.
        for _ in 0..6 {
            let mut chunk = vec![0x90, 0x10, 0, 0, 255];
            chunk.extend([0x55; 255]);
            let last = status(&chunk);
            if last != sw::OK {
                assert_eq!(last, sw::WRONG_LENGTH);
            }
        }
        let _ = card.disconnect(pcsc::Disposition::ResetCard);
    }
    let output = provision(&station, &reader, &agent.payload)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(station.state_of("robust-card")?.as_deref(), Some("provisioned"));
    Ok(())
}

#[test]
fn adversarial_pcsc_label_with_another_devices_key_is_aborted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let label_source = Agent::init(&dir.path().join("a"), "twin", &station.factory_root_file(), &[])?;
    let mut actual = Agent::init(&dir.path().join("b"), "twin", &station.factory_root_file(), &[])?;
    let lease = pcscd::lease()?;
    let reader = lease.reader().clone();
    actual.serve_vpcd(&reader.vpcd_address(), &[])?;
    let output = provision(&station, &reader, &label_source.payload)?;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("could not prove"), "{}", stderr(&output));
    assert_eq!(station.state_of("twin")?.as_deref(), Some("failed"));
    assert!(actual.key_bytes()?.is_none());
    Ok(())
}

#[test]
fn adversarial_pcsc_station_with_foreign_root_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let genuine = Station::init(&dir.path().join("genuine"), Database::sqlite(dir.path()))?;
    std::fs::create_dir_all(dir.path().join("rogue"))?;
    let rogue = Station::init(&dir.path().join("rogue"), Database::sqlite(&dir.path().join("rogue")))?;
    let mut agent = Agent::init(dir.path(), "pinned-card", &genuine.factory_root_file(), &[])?;
    let lease = pcscd::lease()?;
    let reader = lease.reader().clone();
    agent.serve_vpcd(&reader.vpcd_address(), &[])?;
    let output = provision(&rogue, &reader, &agent.payload)?;
    assert!(!output.status.success());
    assert!(stderr(&output).contains("BadCertificate"), "{}", stderr(&output));
    assert!(agent.key_bytes()?.is_none());
    assert_eq!(rogue.state_of("pinned-card")?.as_deref(), Some("failed"));
    Ok(())
}

#[test]
fn pcsc_and_serial_links_provision_concurrently_and_independently() -> Result<()> {
    let lease = pcscd::lease()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let root = station.factory_root_file();
    let mut on_serial = Agent::init(&dir.join("s"), "line-serial", &root, &[])?;
    let mut on_card = Agent::init(&dir.join("c"), "line-card", &root, &[])?;
    let mut impostor = Agent::init(&dir.join("i"), "line-twin", &root, &[])?;
    let twin_label = Agent::init(&dir.join("t"), "line-twin", &root, &[])?;
    let pty = keyfill_e2e::PtyPair::new(dir)?;
    on_serial.serve(&pty.device_side, &[])?;
    on_card.serve_vpcd(&lease.readers[0].vpcd_address(), &[])?;
    impostor.serve_vpcd(&lease.readers[1].vpcd_address(), &[])?;
    let port = pty.station_side.to_string_lossy().into_owned();
    let output = station.run(&[
        "provision",
        "--serial",
        &port,
        "--pcsc",
        &lease.readers[0].name,
        "--pcsc",
        &lease.readers[1].name,
        "--card-wait",
        "10",
        "--qr",
        &on_serial.payload,
        "--qr",
        &on_card.payload,
        "--qr",
        &twin_label.payload,
        "--json",
    ])?;
    assert!(!output.status.success(), "one of three must fail");
    let report: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    let states: Vec<&str> = report.iter().filter_map(|d| d["state"].as_str()).collect();
    assert_eq!(states, ["provisioned", "provisioned", "error"], "{report:?}");
    let devices = station.devices()?;
    let find = |name: &str| devices.iter().find(|d| d["name"] == name).cloned().expect("listed");
    assert_eq!(find("line-serial")["transport"], "serial");
    assert_eq!(find("line-serial")["port"], port.as_str());
    assert_eq!(find("line-card")["transport"], "pcsc");
    assert_eq!(find("line-card")["port"], lease.readers[0].name.as_str());
    assert_eq!(find("line-twin")["state"], "failed");
    assert!(impostor.key_bytes()?.is_none());
    Ok(())
}

#[test]
fn field_pcsc_a_reply_of_another_session_is_dropped_and_provisioning_succeeds_first_time() -> Result<()> {
    let lease = pcscd::lease()?;
    let dir = tempfile::tempdir()?;
    // The card queues a reply of another session ahead of each real handshake reply, as a card
    // that still held the answer to an abandoned exchange would.
    let fault = ["--fault", "stray-before-reply"];
    let (station, agent, reader) = setup(dir.path(), Database::sqlite(dir.path()), "stray-card", &fault, &lease)?;
    let output = provision(&station, &reader, &agent.payload)?;
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("dropped a message that is not this session's"), "{}", stderr(&output));
    assert_eq!(station.state_of("stray-card")?.as_deref(), Some("provisioned"));
    assert_eq!(agent.status()?["provisioned"], true);
    Ok(())
}
