//! Sample data: a station with a few days of work behind it, for screenshots and demos.

use super::{FakeState, fake_hex};
use keyfill_station::db::devices::{Device, DeviceState};
use keyfill_station::db::events::LoggedEvent;
use keyfill_station::db::now_millis;

/// A station with a few days of work behind it, for screenshots and demos.
pub fn demo_state(passphrase: &str) -> FakeState {
    let mut state = FakeState::new(passphrase);
    // Three runs of the MES's work orders; the last one still has devices to key.
    state.orders = vec![("WO-2026-101".into(), 80), ("WO-2026-102".into(), 80), ("WO-2026-103".into(), 100)];
    let day = 86_400_000;
    let start = now_millis() - 3 * day;
    let models = ["TH-200", "TH-200", "GW-10", "VL-4"];
    for n in 0..240usize {
        let at = start + (n as i64) * 1_075_000;
        let name = format!("sensor-{:04}", 1000 + n);
        let state_of = match n % 23 {
            7 => DeviceState::Failed,
            15 => DeviceState::Pending,
            _ => DeviceState::Provisioned,
        };
        let (transport, port) = match n % 5 {
            3 => ("pcsc", "ACS ACR1252 Dual Reader"),
            4 => ("ble", "E4:5F:01:2A:9C:3B"),
            _ => ("serial", "/dev/ttyUSB0"),
        };
        let id = keyfill_formats::DeviceId::from_name(&name).to_hex();
        let device = Device {
            id: id.clone(),
            name: name.clone(),
            serial_number: format!("SN-24-{:06}", 310_000 + n * 7),
            credential_mode: if n % 9 == 4 { "secret".into() } else { "identity".into() },
            identity_public_key: None,
            sealed_setup_secret: None,
            model: Some(models[n % models.len()].into()),
            state: state_of,
            transport: Some(transport.into()),
            port: Some(port.into()),
            key_id: Some(fake_hex(n as u64 + 1_000)),
            failure: match state_of {
                DeviceState::Failed => Some("no answer from the device within 10 s while handshake".into()),
                DeviceState::Pending => Some("unconfirmed: link closed".into()),
                DeviceState::Provisioned => None,
            },
            created_at: at,
            updated_at: at + 900,
            provisioned_at: (state_of == DeviceState::Provisioned).then_some(at + 900),
            rotation: match (state_of, n) {
                (DeviceState::Provisioned, 0..120) => Some("active".into()),
                // A few rotations the devices never confirmed: held back from exports until a
                // watch for first contact settles them.
                (DeviceState::Provisioned, 200..) if n % 17 == 0 => Some("rotation_failed".into()),
                _ => None,
            },
            rotation_attempts: match (state_of, n) {
                (DeviceState::Provisioned, 0..120) => Some(1),
                (DeviceState::Provisioned, 200..) if n % 17 == 0 => Some(6),
                _ => None,
            },
            // Keyed in runs of 250 under the MES's work orders.
            order_id: Some(format!("WO-2026-{:03}", 101 + n / 80)),
        };
        state.devices.push(device.clone());
        let operator = if n % 3 == 0 { "maria" } else { "jonas" };
        let mut push = |kind: &str, detail: String, offset: i64| {
            let id = state.history.len() as i64 + 1;
            state.history.push(LoggedEvent {
                id,
                at: at + offset,
                device_id: Some(device.id.clone()),
                device_name: Some(device.name.clone()),
                station_id: "5f0c1e2d3a4b5c6d7e8f901a2b3c4d5e".into(),
                operator: operator.into(),
                kind: kind.into(),
                detail,
            });
        };
        let key = device.key_id.clone().unwrap_or_default();
        push("key_generated", format!("key {key} over {transport} {port}"), 100);
        match state_of {
            DeviceState::Provisioned => push("provisioned", format!("key {key} confirmed"), 900),
            DeviceState::Failed => push("failed", "no answer from the device within 10 s while handshake".into(), 900),
            DeviceState::Pending => push("unconfirmed", "link closed".into(), 900),
        }
    }
    state.summary.operator = "maria".into();
    state
}
