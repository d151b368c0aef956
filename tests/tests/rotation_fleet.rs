//! One `keyfill rotate --all-provisioned` run over a thousand simulated devices (real agent E4
//! clients behind MQTT connections to Mosquitto). How long it takes is the `rotation_fleet`
//! benchmark's business: `cargo bench -p keyfill-e2e --bench rotation_fleet`.

use anyhow::Result;
use keyfill_e2e::fleet::rotate_fleet;

#[test]
fn rotation_of_a_thousand_simulated_devices_in_one_run() -> Result<()> {
    let run = rotate_fleet(1000, 256, &[])?;
    assert_eq!(run.active, 1000, "devices the station reports active; warnings: {:?}", run.warnings);
    assert_eq!(run.behind, 0, "devices that do not hold the key the station made active");
    // Every command and confirmation arrives: the run takes seconds and the first wait is 10 s,
    // so a device that needed a second command lost a message (as it did when the station left
    // more QoS 2 commands in flight than Mosquitto accepts).
    assert_eq!(run.retried, 0, "devices that needed a second command");
    Ok(())
}
