//! Crash consistency of provisioning: the station or the device dies inside a database commit,
//! inside the keystore write, or at a random moment after any message, and the station settles
//! the device on the same link at its first attempt, the invariants holding after every crash
//! (see `keyfill_e2e::crash`). `KEYFILL_CRASH_RUNS` sets the number of runs (CI: a few);
//! `KEYFILL_CRASH_SEED` replays a campaign; `scripts/crash-campaign N` runs the full count.

use anyhow::{Context, Result};
use keyfill_e2e::BROKER;
use keyfill_e2e::crash::{
    AGENT_POINTS, Fault, ProvisioningCampaign, ROTATION_POINTS, Rng, RotationCampaign, RotationFault, STATION_POINTS,
};

fn runs(default: usize) -> usize {
    std::env::var("KEYFILL_CRASH_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn seed() -> u64 {
    std::env::var("KEYFILL_CRASH_SEED").ok().and_then(|n| n.parse().ok()).unwrap_or_else(keyfill_e2e::rand_u64)
}

/// Every named point once, station and device, whatever the random campaign draws.
#[test]
fn crash_every_named_point_of_a_provisioning_settles_on_the_same_link() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut campaign = ProvisioningCampaign::new(dir.path())?;
    let mut index = 0;
    // The points a provisioning passes when all goes well.
    for point in
        STATION_POINTS.iter().filter(|p| p.starts_with("commit:pending") || p.starts_with("commit:provisioned"))
    {
        index += 1;
        campaign.run_with(index, vec![Fault::StationAt(point)]).with_context(|| format!("station at {point}"))?;
    }
    // The points it passes when the key never left (the reply lost) or left unconfirmed.
    for (point, lost) in [
        ("commit:failed:before", 2),
        ("commit:failed:after", 2),
        ("commit:unconfirmed:before", 6),
        ("commit:unconfirmed:after", 6),
    ] {
        index += 1;
        let faults = vec![Fault::StationAtAfterLoss { point, lost }];
        campaign.run_with(index, faults).with_context(|| format!("station at {point}"))?;
    }
    for point in AGENT_POINTS {
        index += 1;
        campaign.run_with(index, vec![Fault::AgentAt(point)]).with_context(|| format!("device at {point}"))?;
    }
    // A reconciliation interrupted at each of its commits, after a provisioning killed with the
    // key on the device.
    for point in ["commit:reconciled:before", "commit:reconciled:after"] {
        index += 1;
        let faults = vec![Fault::KillStation { after: 6, delay: Default::default() }, Fault::StationAt(point)];
        campaign.run_with(index, faults).with_context(|| format!("reconciliation at {point}"))?;
    }
    println!("{:?}", campaign.tally);
    Ok(())
}

#[test]
fn crash_random_kills_of_station_and_device_during_provisioning_keep_the_invariants() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut campaign = ProvisioningCampaign::new(dir.path())?;
    for index in 0..runs(8) {
        let done = campaign.run(index, &mut rng).with_context(|| format!("campaign seed {seed}, run {index}"))?;
        println!("{done}");
    }
    println!("seed {seed}: {:?}", campaign.tally);
    Ok(())
}

/// Every named point of a rotation once, station and device.
#[test]
fn crash_every_named_point_of_a_rotation_settles_at_the_next_rotate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut campaign = RotationCampaign::new(dir.path(), BROKER)?;
    let mut index = 0;
    for point in ROTATION_POINTS {
        index += 1;
        campaign.run_with(index, RotationFault::StationAt(point)).with_context(|| format!("station at {point}"))?;
    }
    for point in AGENT_POINTS {
        index += 1;
        campaign.run_with(index, RotationFault::AgentAt(point)).with_context(|| format!("device at {point}"))?;
    }
    println!("{:?}", campaign.tally);
    Ok(())
}

#[test]
fn crash_random_kills_of_station_and_device_during_rotation_keep_the_invariants() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let seed = seed();
    let mut rng = Rng::new(seed);
    let mut campaign = RotationCampaign::new(dir.path(), BROKER)?;
    let runs = std::env::var("KEYFILL_CRASH_ROTATION_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(6);
    for index in 0..runs {
        let done = campaign.run(index, &mut rng).with_context(|| format!("campaign seed {seed}, rotation {index}"))?;
        println!("{done}");
    }
    println!("seed {seed}: {:?}", campaign.tally);
    Ok(())
}
