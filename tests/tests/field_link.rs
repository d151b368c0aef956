//! A serial link as the factory floor has it: replies that come after the station gave up, a
//! station killed in the middle of a session, data from an earlier session still on the line.
//! The real `keyfill` and `keyfill-agent` binaries talk through a relay (`keyfill_e2e::relay`)
//! that holds, delays or drops messages, and kills the station at an exact message, so every
//! case is driven by the messages themselves, never by timers.

use anyhow::{Context, Result, bail};
use keyfill_e2e::relay::{Action, Direction, Relay};
use keyfill_e2e::{Agent, Database, Station};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The wording that blames the device or its label: only a genuine proof failure may use it.
fn blames_the_device(text: &str) -> bool {
    text.contains("wrong device") || text.contains("cloned label") || text.contains("set the device aside")
}

struct Line {
    station: Station,
    relay: Relay,
}

impl Line {
    fn new(dir: &Path, db: Database) -> Result<Self> {
        Ok(Line { station: Station::init(dir, db)?, relay: Relay::new(dir)? })
    }

    fn port(&self) -> String {
        self.relay.station_port().to_string_lossy().into_owned()
    }

    fn device(&self, dir: &Path, name: &str) -> Result<Agent> {
        let mut agent = Agent::init(dir, name, &self.station.factory_root_file(), &[])?;
        agent.serve(self.relay.device_port(), &[])?;
        Ok(agent)
    }

    fn provision(&self, agent: &Agent) -> Result<Output> {
        self.station.run(&["provision", "--serial", &self.port(), "--qr", &agent.payload])
    }

    /// A provisioning that gives up on the device after 2 s.
    fn provision_impatiently(&self, agent: &Agent) -> Result<Output> {
        let port = self.port();
        self.station
            .run_env(&["provision", "--serial", &port, "--qr", &agent.payload], &[("KEYFILL_REPLY_TIMEOUT", "2")])
    }

    fn reconcile(&self) -> Result<Output> {
        self.station.run(&["devices", "reconcile", "--serial", &self.port()])
    }

    /// Starts `keyfill ARGS`, lets the relay kill it when the `kill_at`-th message of the run
    /// reaches the relay (that message is then delivered all the same: it was on the wire), and
    /// returns once the station is dead.
    fn kill_station_at(&self, args: &[&str], kill_at: usize) -> Result<()> {
        let slot: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let killer = slot.clone();
        self.relay.set_policy(move |seen| {
            if seen.index == kill_at
                && let Ok(mut slot) = killer.lock()
                && let Some(mut child) = slot.take()
            {
                let _ = child.kill();
                let _ = child.wait();
            }
            Action::Forward
        });
        let child = self.station.command(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
        *slot.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let mut slot = slot.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                match slot.as_mut() {
                    None => break,
                    Some(child) => {
                        if let Some(status) = child.try_wait()? {
                            bail!("the station ended by itself ({status}) before message {kill_at}");
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("message {kill_at} never came");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.relay.set_policy(|_| Action::Forward);
        // Let the device answer whatever reached it, into the dead station's port.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}

/// One late-reply case: the device's handshake reply reaches the station's port only after the
/// station gave up; `during_retry` delivers it after the retry's first message instead of
/// before the retry opens the port.
fn late_reply_then_retry(dir: &Path, during_retry: bool) -> Result<()> {
    let line = Line::new(dir, Database::sqlite(dir))?;
    let agent = line.device(dir, "late-answer")?;
    // The device's first message, its handshake reply, is held back.
    line.relay.set_policy(|seen| if seen.index == 2 { Action::Hold } else { Action::Forward });
    let first = line.provision_impatiently(&agent)?;
    assert!(!first.status.success(), "the held reply must time the session out");
    let text = stderr(&first);
    assert!(text.contains("no answer from the device within"), "{text}");
    assert!(text.contains("while waiting for the handshake reply"), "{text}");
    assert!(!blames_the_device(&text), "{text}");
    assert_eq!(line.station.state_of("late-answer")?.as_deref(), Some("failed"), "the key never left");
    assert_eq!(line.relay.held(), 1);

    if during_retry {
        // The retry's first message goes out; the late reply lands just behind it.
        line.relay.set_policy(|seen| if seen.index == 1 { Action::ReleaseHeldThenForward } else { Action::Forward });
    } else {
        line.relay.set_policy(|_| Action::Forward);
        assert_eq!(line.relay.release_held()?, 1);
        std::thread::sleep(Duration::from_millis(200));
    }
    let retry = line.provision(&agent)?;
    assert!(retry.status.success(), "the retry must succeed first time: {}", stderr(&retry));
    assert_eq!(line.station.state_of("late-answer")?.as_deref(), Some("provisioned"));
    assert_eq!(agent.status()?["provisioned"], true);
    if during_retry {
        assert_eq!(line.relay.held(), 0, "the late reply reached the station during the retry");
        assert!(stderr(&retry).contains("dropped a message that is not this session's"), "{}", stderr(&retry));
    }
    Ok(())
}

#[test]
fn field_serial_a_reply_after_the_station_gave_up_does_not_spoil_the_immediate_retry() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (case, during_retry) in [("before", false), ("during", true)] {
        let case_dir = dir.path().join(case);
        std::fs::create_dir_all(&case_dir)?;
        late_reply_then_retry(&case_dir, during_retry).with_context(|| format!("late reply {case} the retry"))?;
    }
    Ok(())
}

#[test]
fn field_serial_a_link_confused_by_an_earlier_session_is_a_link_problem_not_a_wrong_device() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let line = Line::new(dir, Database::sqlite(dir))?;
    let agent = line.device(dir, "confused-link")?;
    line.relay.set_policy(|seen| if seen.index == 2 { Action::Hold } else { Action::Forward });
    assert!(!line.provision_impatiently(&agent)?.status.success());
    // The retry hears only the earlier session's reply: everything the device says is lost.
    line.relay.set_policy(move |seen| match (seen.index, seen.direction) {
        (1, _) => Action::ReleaseHeldThenForward,
        (_, Direction::ToStation) => Action::Drop,
        _ => Action::Forward,
    });
    let confused = line.provision_impatiently(&agent)?;
    assert!(!confused.status.success());
    let text = stderr(&confused);
    assert!(text.contains("the link carried data from an earlier session (1 message(s) dropped)"), "{text}");
    assert!(text.contains("what to do: The link carried data from an earlier session: retry"), "{text}");
    assert!(!blames_the_device(&text), "{text}");
    // The advice is right: a retry on the same link succeeds.
    line.relay.set_policy(|_| Action::Forward);
    let retry = line.provision(&agent)?;
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert_eq!(line.station.state_of("confused-link")?.as_deref(), Some("provisioned"));
    Ok(())
}

/// What the follow-up command must conclude after the station was killed at message `kill_at`
/// of a provisioning session: messages 1-4 are the handshake and `DeviceReady`, 5 the key
/// delivery, 6 the confirmation. From message 5 on, the device holds the key.
fn device_holds_key_after(kill_at: usize) -> bool {
    kill_at >= 5
}

fn killed_provisioning_then_follow_up(line: &Line, dir: &Path, kill_at: usize, follow_up: &str) -> Result<()> {
    let name = format!("killed-at-{kill_at}-{follow_up}");
    let agent = line.device(dir, &name)?;
    let port = line.port();
    line.kill_station_at(&["provision", "--serial", &port, "--qr", &agent.payload], kill_at)?;
    assert_eq!(line.station.state_of(&name)?.as_deref(), Some("pending"), "killed mid-session: {name}");
    let holds = device_holds_key_after(kill_at);
    assert_eq!(agent.status()?["provisioned"], holds, "{name}");
    match follow_up {
        "provision" => {
            let output = line.provision(&agent)?;
            assert!(output.status.success(), "{name}: {}", stderr(&output));
            let expected =
                if holds { "reconciled: the device already held its key" } else { "confirmed by the device" };
            assert!(stdout(&output).contains(expected), "{name}: {}", stdout(&output));
            assert_eq!(line.station.state_of(&name)?.as_deref(), Some("provisioned"), "{name}");
            let history = line.station.history_kinds(&name)?;
            assert!(history.contains(&"reconciled".to_owned()), "{name}: {history:?}");
        }
        _ => {
            let output = line.reconcile()?;
            assert!(output.status.success(), "{name}: {}", stderr(&output));
            let (expected, state) = if holds {
                ("holds its key: provisioned", "provisioned")
            } else {
                ("does not hold its key: failed", "failed")
            };
            assert!(stdout(&output).contains(expected), "{name}: {}", stdout(&output));
            assert_eq!(line.station.state_of(&name)?.as_deref(), Some(state), "{name}");
        }
    }
    Ok(())
}

#[test]
fn field_serial_station_killed_between_any_two_messages_then_provision_or_reconcile_settles_first_time() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let sqlite_dir = dir.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir)?;
    let line = Line::new(&sqlite_dir, Database::sqlite(&sqlite_dir))?;
    for kill_at in 1..=6 {
        for follow_up in ["provision", "reconcile"] {
            killed_provisioning_then_follow_up(&line, &sqlite_dir, kill_at, follow_up)?;
        }
    }
    drop(line);
    let postgres_dir = dir.path().join("postgres");
    std::fs::create_dir_all(&postgres_dir)?;
    let line = Line::new(&postgres_dir, Database::postgres()?)?;
    for (kill_at, follow_up) in [(2, "provision"), (5, "reconcile")] {
        killed_provisioning_then_follow_up(&line, &postgres_dir, kill_at, follow_up)?;
    }
    Ok(())
}

#[test]
fn field_serial_reconciliation_killed_between_any_two_messages_settles_at_the_next_reconcile() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let line = Line::new(dir, Database::sqlite(dir))?;
    let port = line.port();
    // One pending device that holds its key, one that does not.
    for (name, kill_provision_at, verdict) in
        [("pending-holds", 6, "holds its key: provisioned"), ("pending-lacks", 4, "does not hold its key: failed")]
    {
        let agent = line.device(dir, name)?;
        line.kill_station_at(&["provision", "--serial", &port, "--qr", &agent.payload], kill_provision_at)?;
        // A reconciliation: init, reply, finish, ready, query, status reply.
        for kill_at in 1..=6 {
            line.kill_station_at(&["devices", "reconcile", "--serial", &port, name], kill_at)?;
            assert_eq!(line.station.state_of(name)?.as_deref(), Some("pending"), "{name} killed at {kill_at}");
        }
        let output = line.reconcile()?;
        assert!(output.status.success(), "{name}: {}", stderr(&output));
        assert!(stdout(&output).contains(verdict), "{name}: {}", stdout(&output));
    }
    Ok(())
}
