//! The headless line mode as a line controller runs it (docs/line.md): `keyfill line` with four
//! lanes, each a serial link pinned to a port (a pseudo-terminal behind a stable name, as
//! `/dev/serial/by-id` is) and a label source (three handheld scanners on pseudo-terminals, one
//! drop folder), keying a work order from the local PostgreSQL; one device failing, one label
//! not on the order, one line of garbage, one label read twice; then SIGTERM while a session is
//! under way: the session finishes and is recorded, the line exits 0, and its JSON Lines events
//! say all of it in order.

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::bluez::SimulatedBluez;
use keyfill_e2e::farm::{Farm, FarmDevice};
use keyfill_e2e::relay::{Action, Direction, Relay};
use keyfill_e2e::{Agent, Database, PtyPair, Station};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const ORDER: &str = "WO-LINE-1";
const LANES: usize = 4;
const ROUNDS: usize = 3;

/// A running `keyfill line`: its events as they come, and all seen so far.
struct LineRun {
    child: Child,
    events: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    /// Events a wait already returned, by position.
    taken: std::collections::HashSet<usize>,
    stderr: PathBuf,
}

impl LineRun {
    fn start(station: &Station, config: &Path, stderr: PathBuf) -> Result<Self> {
        Self::start_env(station, config, stderr, &[])
    }

    fn start_env(station: &Station, config: &Path, stderr: PathBuf, env: &[(&str, &str)]) -> Result<Self> {
        let mut command = station.command(&["--log-format", "json", "line", "--config", &config.to_string_lossy()]);
        command.envs(env.iter().copied());
        command.stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr)?);
        let mut child = command.spawn().context("cannot start keyfill line")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|error| serde_json::json!({ "unparsable": line, "error": error.to_string() }));
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        Ok(LineRun { child, events, seen: Vec::new(), taken: Default::default(), stderr })
    }

    /// Waits for the first event not yet waited for that `wanted` accepts.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = (0..self.seen.len()).find(|&i| !self.taken.contains(&i) && wanted(&self.seen[i]));
            if let Some(index) = found {
                self.taken.insert(index);
                return Ok(self.seen[index].clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.seen.push(event),
                Err(_) => bail!("no {what} within 60 s; events so far:\n{}", self.transcript()),
            }
        }
    }

    /// The terminal event of device `name`: provisioned, already provisioned or failed.
    fn outcome(&mut self, name: &str) -> Result<Value> {
        self.wait_for(&format!("outcome of {name}"), |e| {
            e["device"]["name"] == name
                && ["provisioned", "already_provisioned", "failed"].contains(&e["event"].as_str().unwrap_or(""))
        })
    }

    fn transcript(&self) -> String {
        self.seen.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let status = std::process::Command::new("kill").args([signal, &self.child.id().to_string()]).status()?;
        ensure!(status.success(), "kill {signal} failed");
        Ok(())
    }

    /// Waits for the process to exit and collects the events it wrote before.
    fn wait_exit(&mut self) -> Result<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                while let Ok(event) = self.events.recv_timeout(Duration::from_millis(500)) {
                    self.seen.push(event);
                }
                return status.code().context("killed by a signal");
            }
            ensure!(Instant::now() < deadline, "keyfill line did not exit; events:\n{}", self.transcript());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LineRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Points the lane's port name at `target`, atomically, as udev re-points a by-id link.
fn repoint(link: &Path, target: &Path) -> Result<()> {
    let temporary = link.with_extension("new");
    let _ = std::fs::remove_file(&temporary);
    std::os::unix::fs::symlink(target, &temporary)?;
    std::fs::rename(&temporary, link)?;
    Ok(())
}

/// A handheld scanner in serial mode: what it reads comes out of its port as a line.
struct Scanner {
    pty: PtyPair,
    input: std::fs::File,
}

impl Scanner {
    fn new(dir: &Path, lane: usize) -> Result<Self> {
        let pty = PtyPair::named(dir, &format!("scanner-{lane}"), &format!("scanner-{lane}-gun"))?;
        let input = std::fs::OpenOptions::new().write(true).open(&pty.device_side)?;
        Ok(Scanner { pty, input })
    }

    fn scan(&mut self, text: &str) -> Result<()> {
        // Scanners end a read with CR (some with CR LF).
        self.input.write_all(format!("{text}\r\n").as_bytes())?;
        self.input.flush()?;
        Ok(())
    }
}

/// Drops a label file the way an MES does: written under a partial name, then renamed.
fn drop_label(folder: &Path, name: &str, text: &str) -> Result<()> {
    let partial = folder.join(format!("{name}.part"));
    std::fs::write(&partial, text)?;
    std::fs::rename(&partial, folder.join(name))?;
    Ok(())
}

fn factory_root(station: &Station) -> Result<[u8; 32]> {
    hex::decode(std::fs::read_to_string(station.factory_root_file())?.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("factory root"))
}

fn run_ok(station: &Station, args: &[&str]) -> Result<std::process::Output> {
    let output = station.run(args)?;
    ensure!(output.status.success(), "keyfill {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(output)
}

fn line_config(dir: &Path, lanes: &[(String, String)]) -> Result<PathBuf> {
    let mut text = format!("order = \"{ORDER}\"\n");
    for (index, (link, labels)) in lanes.iter().enumerate() {
        text.push_str(&format!("\n[[lane]]\nname = \"lane-{}\"\n{link}\n{labels}\n", index + 1));
    }
    let path = dir.join("line.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn line_four_lanes_key_an_order_and_stop_cleanly_on_sigterm() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::postgres()?)?;
    let root = factory_root(&station)?;
    // Devices 0..12 keyed three per lane; device 12 is on no order.
    let farm = Farm::start(dir, "line", LANES * ROUNDS + 1, root)?;
    // A device that trusts another factory: it refuses this station.
    let rogue = Farm::start(dir, "rogue", 1, [7; 32])?;
    // The device under way when SIGTERM comes: a real agent behind a relay that holds its
    // confirmation until the test lets it go.
    let relay = Relay::new(dir)?;
    let mut held_device = Agent::init(dir, "line-held", &station.factory_root_file(), &[])?;
    held_device.serve(relay.device_port(), &[])?;

    let mut csv = String::from("order_id,device_name,model,serial_number\n");
    for (index, device) in farm.devices[..LANES * ROUNDS].iter().enumerate() {
        csv.push_str(&format!("{ORDER},{},,SN-{index}\n", device.name));
    }
    csv.push_str(&format!("{ORDER},rogue-00000,,SN-0\n{ORDER},line-held,,{}\n", serial_of(&held_device)?));
    std::fs::write(dir.join("order.csv"), csv)?;
    run_ok(&station, &["orders", "import", &dir.join("order.csv").to_string_lossy()])?;

    let mut scanners = (1..LANES).map(|lane| Scanner::new(dir, lane)).collect::<Result<Vec<_>>>()?;
    let folder = dir.join("drop");
    std::fs::create_dir(&folder)?;
    let links: Vec<PathBuf> = (1..=LANES).map(|lane| dir.join(format!("lane-{lane}.tty"))).collect();
    for (link, device) in links.iter().zip(&farm.devices) {
        repoint(link, &device.port)?;
    }
    let mut lanes: Vec<(String, String)> = scanners
        .iter()
        .zip(&links)
        .map(|(scanner, link)| {
            (
                format!("serial = {:?}", link.display().to_string()),
                format!("scanner = {:?}", scanner.pty.station_side.display().to_string()),
            )
        })
        .collect();
    lanes.push((
        format!("serial = {:?}", links[3].display().to_string()),
        format!("folder = {:?}", folder.display().to_string()),
    ));
    let config = line_config(dir, &lanes)?;

    let mut line = LineRun::start(&station, &config, dir.join("line.log"))?;
    line.wait_for("line_started", |e| e["event"] == "line_started")?;
    for lane in 1..=LANES {
        line.wait_for("lane_ready", |e| e["event"] == "lane_ready" && e["lane"] == format!("lane-{lane}"))?;
    }

    // Three rounds: each lane's fixture gets its next device, then its label is read.
    let device_of = |lane: usize, round: usize| -> &FarmDevice { &farm.devices[round * LANES + lane] };
    for round in 0..ROUNDS {
        for (lane, link) in links.iter().enumerate() {
            let device = device_of(lane, round);
            repoint(link, &device.port)?;
            match scanners.get_mut(lane) {
                Some(scanner) => scanner.scan(&device.payload)?,
                None => drop_label(&folder, &format!("{}.txt", device.name), &device.payload)?,
            }
        }
        for lane in 0..LANES {
            let device = device_of(lane, round);
            let outcome = line.outcome(&device.name)?;
            assert_eq!(outcome["event"], "provisioned", "{outcome}");
            assert_eq!(outcome["lane"], format!("lane-{}", lane + 1));
            assert_eq!(
                outcome["key_id"].as_str(),
                device.keystore.key_id().as_deref(),
                "the device holds the key recorded"
            );
        }
    }

    // Lane 1: a device that refuses this station fails, the lane goes on; a label read twice is
    // not keyed again. Lane 2: a label on no order is refused before any link. Lane 3: garbage.
    repoint(&links[0], &rogue.devices[0].port)?;
    scanners[0].scan(&rogue.devices[0].payload)?;
    let failed = line.outcome("rogue-00000")?;
    assert_eq!(failed["event"], "failed", "{failed}");
    assert_eq!(failed["state"], "failed", "the key never left the station: {failed}");
    assert!(failed["advice"].as_str().is_some_and(|a| !a.is_empty()), "{failed}");
    repoint(&links[0], &device_of(0, 0).port)?;
    scanners[0].scan(&device_of(0, 0).payload)?;
    let again = line.outcome(&device_of(0, 0).name)?;
    assert_eq!(again["event"], "already_provisioned", "{again}");
    let stray = &farm.devices[LANES * ROUNDS];
    scanners[1].scan(&stray.payload)?;
    let refused = line.outcome(&stray.name)?;
    assert_eq!(refused["event"], "failed");
    assert!(refused["error"].as_str().is_some_and(|e| e.contains(ORDER)), "{refused}");
    assert!(refused["state"].is_null(), "nothing recorded for a device on no order: {refused}");
    assert!(stray.keystore.key_id().is_none());
    scanners[2].scan("hello \u{1b}[31mworld")?;
    let rejected = line.wait_for("label_rejected", |e| e["event"] == "label_rejected")?;
    assert_eq!(rejected["lane"], "lane-3");

    // SIGTERM while lane 4's session waits for the device's confirmation.
    // The station's third message is the key (after the handshake's two and the device's
    // acceptance of the station); the device's answer to it, its confirmation, is held.
    let mut to_device = 0;
    relay.set_policy(move |seen| match seen.direction {
        Direction::ToDevice => {
            to_device += 1;
            Action::Forward
        }
        Direction::ToStation if to_device >= 3 => Action::Hold,
        Direction::ToStation => Action::Forward,
    });
    repoint(&links[3], relay.station_port())?;
    drop_label(&folder, "held.txt", &held_device.payload)?;
    line.wait_for("key sent", |e| {
        e["event"] == "step" && e["step"] == "key_sent" && e["device"]["name"] == "line-held"
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.held() == 0 {
        ensure!(Instant::now() < deadline, "the device never confirmed");
        std::thread::sleep(Duration::from_millis(20));
    }
    line.signal("-TERM")?;
    let stopping = line.wait_for("stopping", |e| e["event"] == "stopping")?;
    assert_eq!(stopping["signal"], "SIGTERM");
    assert_eq!(stopping["in_flight"], 1, "{stopping}");
    // A label read after the stop request is not started.
    scanners[0].scan(&farm.devices[1].payload)?;
    std::thread::sleep(Duration::from_millis(300));
    relay.set_policy(|_| Action::Forward);
    relay.release_held()?;
    let finished = line.outcome("line-held")?;
    assert_eq!(finished["event"], "provisioned", "the session under way finishes: {finished}");
    let code = line.wait_exit()?;
    assert_eq!(code, 0, "a stop is a clean exit; events:\n{}", line.transcript());

    check_event_stream(&line)?;
    let kinds: Vec<&str> = line.seen.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds.last(), Some(&"line_stopped"));
    assert_eq!(kinds.iter().filter(|k| **k == "lane_stopped").count(), LANES);
    assert_eq!(kinds.iter().filter(|k| **k == "order_complete").count(), 1, "{kinds:?}");
    let stopped = line.seen.last().context("events")?;
    assert_eq!(stopped["provisioned"], LANES * ROUNDS + 1);
    assert_eq!(stopped["failed"], 2);
    assert_eq!(stopped["rejected"], 1);
    let after_stop = line.seen.iter().skip_while(|e| e["event"] != "stopping");
    assert!(
        !after_stop.clone().any(|e| e["event"] == "label_read" && e["device"]["name"] == farm.devices[1].name),
        "nothing new starts after the stop request"
    );

    // The records: every device of the order keyed once and holding the recorded key; the
    // refused one failed; nothing pending; the drop folder's files moved to done/.
    let records = station.devices()?;
    let record = |name: &str| records.iter().find(|d| d["name"] == name);
    for device in &farm.devices[..LANES * ROUNDS] {
        let found = record(&device.name).with_context(|| format!("{} recorded", device.name))?;
        assert_eq!(found["state"], "provisioned");
        assert_eq!(found["key_id"].as_str(), device.keystore.key_id().as_deref());
        assert_eq!(found["order"], ORDER);
    }
    assert_eq!(record("line-held").context("held")?["state"], "provisioned");
    assert_eq!(record("rogue-00000").context("rogue")?["state"], "failed");
    assert!(record(&stray.name).is_none());
    assert!(records.iter().all(|d| d["state"] != "pending"));
    assert!(folder.join("done").join("held.txt").exists());
    assert_eq!(std::fs::read_dir(folder.join("done"))?.count(), ROUNDS + 1);

    // Every provisioned event's id is in the station's log, with the device.
    let log = std::fs::read_to_string(&line.stderr)?;
    for event in line.seen.iter().filter(|e| e["event"] == "provisioned") {
        let id = event["event_id"].as_str().context("event id")?;
        let logged = log.lines().find(|l| l.contains(id)).with_context(|| format!("{id} not in the log"))?;
        assert!(logged.contains(event["device"]["id"].as_str().context("id")?), "{logged}");
    }
    assert!(!log.contains('\u{1b}'), "scanned control characters reach no log");
    Ok(())
}

/// One schema, ids unique and in order, a lane on every lane event.
fn check_event_stream(line: &LineRun) -> Result<()> {
    let mut ids = std::collections::HashSet::new();
    let mut last_seq = 0;
    for event in &line.seen {
        ensure!(event["unparsable"].is_null(), "not JSON: {event}");
        ensure!(event["schema"] == "keyfill.line.v1", "{event}");
        let seq = event["seq"].as_u64().context("seq")?;
        ensure!(seq == last_seq + 1, "seq {seq} after {last_seq}");
        last_seq = seq;
        ensure!(ids.insert(event["event_id"].as_str().context("event_id")?.to_owned()), "duplicate id: {event}");
        let lane_event =
            !matches!(event["event"].as_str(), Some("line_started" | "stopping" | "line_stopped" | "order_complete"));
        ensure!(!lane_event || event["lane"].is_string(), "no lane: {event}");
    }
    Ok(())
}

fn serial_of(agent: &Agent) -> Result<String> {
    let payload = keyfill_formats::qr::OnboardingPayload::parse(&agent.payload)?;
    Ok(payload.serial_number)
}

#[test]
fn line_lane_problems_are_reported_and_the_line_still_stops() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let folder = dir.join("drop");
    std::fs::create_dir(&folder)?;
    let lanes = [
        ("serial = \"/dev/keyfill-no-such-port\"".to_owned(), "scanner = \"/dev/keyfill-no-such-scanner\"".to_owned()),
        ("usb = \"0403:6001:KEYFILL-ABSENT\"".to_owned(), format!("folder = {:?}", folder.display().to_string())),
        ("pcsc = \"Keyfill No Such Reader\"".to_owned(), "camera = \"/dev/keyfill-no-such-camera\"".to_owned()),
    ];
    let config = line_config(dir, &lanes)?;

    // The order must exist and be open.
    let output = station.run(&["line", "--config", &config.to_string_lossy()])?;
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains(&format!("work order {ORDER} is not in this station's database")), "{text}");

    std::fs::write(dir.join("order.csv"), format!("order_id,device_name,model,serial_number\n{ORDER},line-x,,SN-X\n"))?;
    run_ok(&station, &["orders", "import", &dir.join("order.csv").to_string_lossy()])?;
    let checked = run_ok(&station, &["line", "--config", &config.to_string_lossy(), "--check"])?;
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(text.contains("lane-2: USB 0403:6001 serial KEYFILL-ABSENT, labels from folder"), "{text}");

    let mut line = LineRun::start(&station, &config, dir.join("line.log"))?;
    let problem = line.wait_for("lane_problem", |e| e["event"] == "lane_problem" && e["lane"] == "lane-1")?;
    assert!(
        problem["problem"]
            .as_str()
            .is_some_and(|p| p.contains("cannot open the scanner at /dev/keyfill-no-such-scanner")),
        "{problem}"
    );
    assert!(problem["advice"].as_str().is_some_and(|a| a.contains("USB serial (CDC) mode")), "{problem}");
    line.wait_for("lane_ready", |e| e["event"] == "lane_ready" && e["lane"] == "lane-2")?;
    let camera = line.wait_for("camera problem", |e| e["event"] == "lane_problem" && e["lane"] == "lane-3")?;
    assert!(
        camera["problem"].as_str().is_some_and(|p| p.contains("cannot open camera /dev/keyfill-no-such-camera")),
        "{camera}"
    );

    // A label on a lane whose adapter is not plugged in: the station's side is named, not the
    // device; nothing was recorded; the file goes to failed/ for a retry.
    let name = "line-x";
    let identity = keyfill_agent::identity::DeviceIdentity::generate(name.parse()?, "SN-X", [1; 32], false)?;
    drop_label(&folder, "x.txt", &identity.onboarding_payload().encode()?)?;
    let failed = line.outcome(name)?;
    let error = failed["error"].as_str().context("error")?;
    assert!(error.contains("USB serial adapter USB 0403:6001 serial KEYFILL-ABSENT is not plugged in"), "{failed}");
    assert!(failed["state"].is_null(), "{failed}");
    assert!(folder.join("failed").join("x.txt").exists());
    // A file that is no label at all.
    drop_label(&folder, "photo.gif", "GIF89a")?;
    let rejected = line.wait_for("label_rejected", |e| e["event"] == "label_rejected")?;
    assert!(rejected["reason"].as_str().is_some_and(|r| r.starts_with("not a label file")), "{rejected}");

    line.signal("-INT")?;
    let stopping = line.wait_for("stopping", |e| e["event"] == "stopping")?;
    assert_eq!(stopping["signal"], "SIGINT");
    assert_eq!(stopping["in_flight"], 0);
    assert_eq!(line.wait_exit()?, 0);
    check_event_stream(&line)?;
    assert_eq!(line.seen.last().map(|e| e["event"].clone()), Some("line_stopped".into()));
    Ok(())
}

#[test]
fn line_config_mistakes_are_named_before_anything_starts() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let config = dir.path().join("line.toml");
    std::fs::write(
        &config,
        "order = \"WO-1\"\n[[lane]]\nname = \"a\"\nserial = \"/dev/x\"\npcsc = \"r\"\nfolder = \"/f\"\n",
    )?;
    let output = station.run(&["line", "--config", &config.to_string_lossy()])?;
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("lane 1: a: give exactly one link of serial, usb, pcsc or ble_adapter (found 2)"), "{text}");
    std::fs::write(&config, vec![b'#'; 70 * 1024])?;
    let output = station.run(&["line", "--config", &config.to_string_lossy()])?;
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("larger than 65536 bytes"), "{text}");
    Ok(())
}

#[test]
fn line_ble_lane_keys_through_its_named_adapter() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let mut agent = Agent::init(dir, "line-ble-1", &station.factory_root_file(), &[])?;
    let bluez = SimulatedBluez::start(dir, "line-ble-1", "AA:BB:CC:00:00:21")?;
    agent.serve_relay(&bluez.relay_address, &["--ble-mtu", "23"])?;
    let absent = keyfill_agent::identity::DeviceIdentity::generate("line-ble-2".parse()?, "SN-E2E", [1; 32], false)?;
    std::fs::write(
        dir.join("order.csv"),
        format!("order_id,device_name,model,serial_number\n{ORDER},line-ble-1,,SN-E2E\n{ORDER},line-ble-2,,SN-E2E\n"),
    )?;
    run_ok(&station, &["orders", "import", &dir.join("order.csv").to_string_lossy()])?;
    let folders = [dir.join("drop-1"), dir.join("drop-2")];
    for folder in &folders {
        std::fs::create_dir(folder)?;
    }
    let lanes: Vec<(String, String)> = ["hci0", "hci7"]
        .iter()
        .zip(&folders)
        .map(|(adapter, folder)| {
            (
                format!("ble_adapter = \"{adapter}\"\ncard_wait_secs = 15"),
                format!("folder = {:?}", folder.display().to_string()),
            )
        })
        .collect();
    let config = line_config(dir, &lanes)?;
    let mut line = LineRun::start_env(
        &station,
        &config,
        dir.join("line.log"),
        &[("DBUS_SYSTEM_BUS_ADDRESS", &bluez.bus_address)],
    )?;
    drop_label(&folders[0], "ble-1.txt", &agent.payload)?;
    drop_label(&folders[1], "ble-2.txt", &absent.onboarding_payload().encode()?)?;
    let keyed = line.outcome("line-ble-1")?;
    assert_eq!(keyed["event"], "provisioned", "{keyed}");
    assert_eq!(keyed["lane"], "lane-1");
    assert_eq!(agent.status()?["key_id"], keyed["key_id"]);
    let failed = line.outcome("line-ble-2")?;
    assert_eq!(failed["event"], "failed", "{failed}");
    let error = failed["error"].as_str().context("error")?;
    assert!(error.contains("no Bluetooth adapter hci7") && error.contains("hci0"), "{failed}");
    assert!(failed["state"].is_null(), "nothing recorded: {failed}");
    line.signal("-TERM")?;
    assert_eq!(line.wait_exit()?, 0);
    let record = station.devices()?.into_iter().find(|d| d["name"] == "line-ble-1").context("recorded")?;
    assert_eq!(record["transport"], "ble");
    Ok(())
}

#[test]
fn line_pcsc_lane_keys_the_card_on_its_named_reader() -> Result<()> {
    let lease = keyfill_e2e::pcscd::lease()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let mut agent = Agent::init(dir, "line-card-1", &station.factory_root_file(), &[])?;
    let reader = lease.reader().clone();
    agent.serve_vpcd(&reader.vpcd_address(), &[])?;
    std::fs::write(
        dir.join("order.csv"),
        format!("order_id,device_name,model,serial_number\n{ORDER},line-card-1,,SN-E2E\n"),
    )?;
    run_ok(&station, &["orders", "import", &dir.join("order.csv").to_string_lossy()])?;
    let folder = dir.join("drop");
    std::fs::create_dir(&folder)?;
    let lanes = [(
        format!("pcsc = {:?}\ncard_wait_secs = 10", reader.name),
        format!("folder = {:?}", folder.display().to_string()),
    )];
    let config = line_config(dir, &lanes)?;
    let mut line = LineRun::start(&station, &config, dir.join("line.log"))?;
    drop_label(&folder, "card.txt", &agent.payload)?;
    let keyed = line.outcome("line-card-1")?;
    assert_eq!(keyed["event"], "provisioned", "{keyed}");
    assert_eq!(agent.status()?["key_id"], keyed["key_id"]);
    let complete = line.wait_for("order_complete", |e| e["event"] == "order_complete")?;
    assert_eq!(complete["provisioned"], 1);
    line.signal("-TERM")?;
    assert_eq!(line.wait_exit()?, 0);
    let record = station.devices()?.into_iter().next().context("recorded")?;
    assert_eq!(record["transport"], "pcsc");
    assert_eq!(record["port"], reader.name.as_str());
    Ok(())
}
