//! Provisioning over BLE with the real binaries: the station's btleplug adapter talks D-Bus to
//! a simulated BlueZ (python-dbusmock, `tests/ble/mock_bluez.py`) whose Keyfill GATT service
//! relays to a real `keyfill-agent serve --ble-relay`. No radio exists on this machine; the
//! framing under loss, repetition and corruption is covered by `station/tests/ble_link.rs`.

use anyhow::Result;
use keyfill_e2e::bluez::SimulatedBluez;
use keyfill_e2e::{Agent, Database, Station};
use std::path::Path;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn provision_over_ble(
    station: &Station,
    bluez: &SimulatedBluez,
    target: Option<&str>,
    payload: &str,
) -> Result<std::process::Output> {
    let mut args = vec!["provision", "--ble"];
    if let Some(target) = target {
        args.push(target);
    }
    args.extend(["--card-wait", "15", "--qr", payload, "--json"]);
    station.run_env(&args, &[("DBUS_SYSTEM_BUS_ADDRESS", &bluez.bus_address)])
}

fn provisions(dir: &Path, db: Database, name: &str, address: &str, by_address: bool) -> Result<()> {
    let station = Station::init(dir, db)?;
    let mut agent = Agent::init(dir, name, &station.factory_root_file(), &[])?;
    let bluez = SimulatedBluez::start(dir, name, address)?;
    agent.serve_relay(&bluez.relay_address, &["--ble-mtu", "23"])?;
    let target = by_address.then_some(address);
    let output = provision_over_ble(&station, &bluez, target, &agent.payload)?;
    assert!(output.status.success(), "{}", stderr(&output));
    let record: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(record["state"], "provisioned");
    assert_eq!(record["transport"], "ble");
    assert_eq!(record["port"], address);
    assert_eq!(agent.status()?["key_id"], record["key_id"]);
    Ok(())
}

#[test]
fn ble_btleplug_provisions_through_simulated_bluez_sqlite_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    provisions(dir.path(), Database::sqlite(dir.path()), "ble-sensor-7", "AA:BB:CC:00:00:07", false)
}

#[test]
fn ble_btleplug_provisions_through_simulated_bluez_postgres_by_address() -> Result<()> {
    let dir = tempfile::tempdir()?;
    provisions(dir.path(), Database::postgres()?, "ble-sensor-8", "AA:BB:CC:00:00:08", true)
}

#[test]
fn adversarial_ble_label_with_another_devices_key_is_aborted() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let label_source = Agent::init(&dir.join("a"), "ble-twin", &station.factory_root_file(), &[])?;
    let mut actual = Agent::init(&dir.join("b"), "ble-twin", &station.factory_root_file(), &[])?;
    let bluez = SimulatedBluez::start(dir, "ble-twin", "AA:BB:CC:00:00:09")?;
    actual.serve_relay(&bluez.relay_address, &[])?;
    let output = provision_over_ble(&station, &bluez, None, &label_source.payload)?;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("could not prove"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(station.state_of("ble-twin")?.as_deref(), Some("failed"));
    assert!(actual.key_bytes()?.is_none());
    Ok(())
}

#[test]
fn adversarial_ble_station_with_foreign_root_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let genuine = Station::init(&dir.join("genuine"), Database::sqlite(dir))?;
    std::fs::create_dir_all(dir.join("rogue"))?;
    let rogue = Station::init(&dir.join("rogue"), Database::sqlite(&dir.join("rogue")))?;
    let mut agent = Agent::init(dir, "ble-pinned", &genuine.factory_root_file(), &[])?;
    let bluez = SimulatedBluez::start(dir, "ble-pinned", "AA:BB:CC:00:00:0A")?;
    agent.serve_relay(&bluez.relay_address, &[])?;
    let output = provision_over_ble(&rogue, &bluez, None, &agent.payload)?;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("BadCertificate"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(agent.key_bytes()?.is_none());
    Ok(())
}

/// Real radios: run `keyfill-agent --state DIR serve --ble` on a machine with a BLE controller
/// (BlueZ running), and on a second machine (or a second controller) run this test with
/// `KEYFILL_BLE_DEVICE=<name or address>` and `KEYFILL_BLE_PAYLOAD=<the agent's QR payload>`,
/// after `keyfill init` in `KEYFILL_HOME` with the factory root the agent pins.
#[test]
#[ignore = "needs two real Bluetooth LE controllers and a running bluetoothd; see the doc comment"]
fn ble_real_radio_provisioning() -> Result<()> {
    let device = std::env::var("KEYFILL_BLE_DEVICE")?;
    let payload = std::env::var("KEYFILL_BLE_PAYLOAD")?;
    let output = std::process::Command::new(keyfill_e2e::binary("keyfill"))
        .args(["provision", "--ble", &device, "--qr", &payload])
        .output()?;
    assert!(output.status.success(), "{}", stderr(&output));
    Ok(())
}
