//! Soak run of rotation: many rotations of one device over Mosquitto, the real `keyfill rotate`
//! once per rotation against one long-lived `keyfill-agent mqtt`, restarted at random; the
//! agent's resident memory and descriptors sampled throughout and held to the bounds in
//! `keyfill_e2e::soak`.
//!
//! CI runs a reduced count; `scripts/soak` the full one (1,000, docs/assurance.md). Count:
//! `KEYFILL_SOAK_ROTATIONS`; seed: `KEYFILL_SOAK_SEED`.

use anyhow::{Context, Result, ensure};
use keyfill_e2e::crash::Rng;
use keyfill_e2e::soak::{Reading, Series, check_agent_lives, count, restart_interval, seed};
use keyfill_e2e::{BROKER, Database, provisioned_device, unique_name};
use std::time::{Duration, Instant};

#[test]
fn soak_rotation_of_one_device_keeps_the_agent_flat() -> Result<()> {
    let total = count("KEYFILL_SOAK_ROTATIONS", 30);
    let seed = seed();
    println!("soak seed {seed}: {total} rotations");
    let mut rng = Rng::new(seed ^ 0x5eed);
    let dir = tempfile::tempdir()?;
    let name = unique_name("soak-rotation");
    let (station, mut agent) = provisioned_device(dir.path(), Database::sqlite(dir.path()), &name)?;
    agent.mqtt(BROKER, &[])?;
    let mut lives: Vec<Series> = vec![Series::default()];
    let sample_every = (total / 40).max(1);
    let mut next_restart = restart_interval(&mut rng, total);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let mut last_key = serde_json::Value::Null;
    for done in 0..total {
        let began = Instant::now();
        let output = station.run(&["rotate", &name, "--broker", BROKER, "--first-wait", "1", "--max-attempts", "6"])?;
        slowest = slowest.max(began.elapsed());
        ensure!(output.status.success(), "seed {seed}, rotation {done}: {}", String::from_utf8_lossy(&output.stderr));
        let record: serde_json::Value =
            serde_json::from_slice(&station.run(&["devices", "show", &name, "--json"])?.stdout)?;
        ensure!(record["rotation"] == "active" && record["key_id"] != last_key, "rotation {done}: {record}");
        last_key = record["key_id"].clone();
        agent.wait_for_key(&last_key).with_context(|| format!("rotation {done}"))?;
        if (done + 1) % sample_every == 0 {
            let pid = agent.pid().context("the agent runs")?;
            lives.last_mut().context("a life")?.readings.push(Reading::of(pid, done + 1)?);
        }
        if done + 1 == next_restart && done + 1 < total {
            agent.mqtt(BROKER, &[])?;
            lives.push(Series::default());
            next_restart += restart_interval(&mut rng, total);
        }
    }
    let took = started.elapsed();
    agent.stop();
    println!(
        "soak: {total} rotations in {:.0} s ({:.2}/s), slowest {} ms, {} agent restarts",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        slowest.as_millis(),
        lives.len() - 1
    );
    check_agent_lives(&lives)?;
    ensure!(slowest < Duration::from_secs(30), "a rotation took {slowest:?}");
    Ok(())
}
