//! The Devices screen's model: every device in memory, and the rows that pass the current
//! filter. A filter is computed once when it changes, never per frame, and narrowing a search
//! (typing one more character) only re-checks the rows already shown, so 100,000 devices stay
//! smooth. Rows are shown newest first.
//!
//! Building the index (a lowercase haystack per device, the id map, the counts) is the costly
//! part: [`DeviceIndex::build`] runs on the station side, never on the UI thread, which only
//! swaps the finished index in.

use keyfill_station::db::devices::{Device, DeviceState};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};

thread_local! {
    static BUILDS: Cell<u64> = const { Cell::new(0) };
}

/// How many indexes [`DeviceIndex::build`] built on the calling thread: the UI thread's stays
/// 0, which the GUI tests check.
pub fn builds_on_this_thread() -> u64 {
    BUILDS.with(Cell::get)
}

/// What the operator filters on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceQuery {
    /// Case-insensitive text in the name, id, serial number, port or model.
    pub text: String,
    pub state: Option<DeviceState>,
    /// `serial`, `pcsc` or `ble`.
    pub transport: Option<String>,
    /// The work order the device was keyed under.
    pub order: Option<String>,
}

impl DeviceQuery {
    fn needle(&self) -> String {
        self.text.trim().to_lowercase()
    }

    /// Whether every row `self` shows is among the rows `previous` shows.
    fn narrows(&self, previous: &DeviceQuery) -> bool {
        self.state == previous.state
            && self.transport == previous.transport
            && self.order == previous.order
            && self.needle().contains(&previous.needle())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub pending: usize,
    pub provisioned: usize,
    pub failed: usize,
}

impl StateCounts {
    fn add(&mut self, state: DeviceState, delta: isize) {
        let slot = match state {
            DeviceState::Pending => &mut self.pending,
            DeviceState::Provisioned => &mut self.provisioned,
            DeviceState::Failed => &mut self.failed,
        };
        *slot = slot.saturating_add_signed(delta);
    }
}

#[derive(Debug, Default)]
pub struct DeviceIndex {
    devices: Vec<Device>,
    /// Lowercase searchable text of each device, built once.
    haystacks: Vec<String>,
    by_id: HashMap<String, usize>,
    query: DeviceQuery,
    /// Indices into `devices` that pass `query`, descending (newest first).
    visible: Vec<usize>,
    counts: StateCounts,
    /// Every work order the devices were keyed under, for the filter.
    orders: BTreeSet<String>,
}

fn haystack(device: &Device) -> String {
    let mut text = String::with_capacity(96);
    for part in [
        Some(device.name.as_str()),
        Some(device.id.as_str()),
        Some(device.serial_number.as_str()),
        device.port.as_deref(),
        device.model.as_deref(),
        device.order_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        text.push_str(&part.to_lowercase());
        text.push('\u{1f}');
    }
    text
}

impl DeviceIndex {
    /// Every device of `devices`, unfiltered. Linear in the devices, with an allocation per
    /// device: call it off the UI thread.
    pub fn build(devices: Vec<Device>) -> Self {
        BUILDS.with(|builds| builds.set(builds.get() + 1));
        let mut index = DeviceIndex {
            haystacks: devices.iter().map(haystack).collect(),
            by_id: devices.iter().enumerate().map(|(index, d)| (d.id.clone(), index)).collect(),
            ..DeviceIndex::default()
        };
        for device in &devices {
            index.counts.add(device.state, 1);
        }
        index.orders = devices.iter().filter_map(|d| d.order_id.clone()).collect();
        index.devices = devices;
        index.refilter();
        index
    }

    /// A device's record changed, or a new device arrived.
    pub fn upsert(&mut self, device: Device) {
        if let Some(order) = &device.order_id
            && !self.orders.contains(order)
        {
            self.orders.insert(order.clone());
        }
        let index = match self.by_id.get(&device.id) {
            Some(&index) => {
                self.counts.add(self.devices[index].state, -1);
                self.counts.add(device.state, 1);
                self.haystacks[index] = haystack(&device);
                self.devices[index] = device;
                index
            }
            None => {
                self.counts.add(device.state, 1);
                self.by_id.insert(device.id.clone(), self.devices.len());
                self.haystacks.push(haystack(&device));
                self.devices.push(device);
                self.devices.len() - 1
            }
        };
        let shown = self.matches(index, &self.query.needle());
        // `visible` is descending: find where `index` is or would be.
        match (self.visible.binary_search_by(|probe| index.cmp(probe)), shown) {
            (Ok(_), true) | (Err(_), false) => {}
            (Ok(at), false) => {
                self.visible.remove(at);
            }
            (Err(at), true) => self.visible.insert(at, index),
        }
    }

    /// As [`DeviceIndex::upsert`], unless the index already holds a newer record of the device
    /// (a change that arrived while this index was being built from a later read).
    pub fn upsert_if_newer(&mut self, device: Device) {
        let newer_held = self.by_id(&device.id).is_some_and(|held| held.updated_at > device.updated_at);
        if !newer_held {
            self.upsert(device);
        }
    }

    pub fn set_query(&mut self, query: DeviceQuery) {
        if query == self.query {
            return;
        }
        let narrows = query.narrows(&self.query);
        self.query = query;
        if narrows {
            let needle = self.query.needle();
            let visible = std::mem::take(&mut self.visible);
            self.visible = visible.into_iter().filter(|&index| self.matches(index, &needle)).collect();
        } else {
            self.refilter();
        }
    }

    pub fn query(&self) -> &DeviceQuery {
        &self.query
    }

    fn refilter(&mut self) {
        let needle = self.query.needle();
        self.visible = (0..self.devices.len()).rev().filter(|&index| self.matches(index, &needle)).collect();
    }

    fn matches(&self, index: usize, needle: &str) -> bool {
        let device = &self.devices[index];
        self.query.state.is_none_or(|state| device.state == state)
            && self.query.transport.as_deref().is_none_or(|wanted| device.transport.as_deref() == Some(wanted))
            && self.query.order.as_deref().is_none_or(|wanted| device.order_id.as_deref() == Some(wanted))
            && (needle.is_empty() || self.haystacks[index].contains(needle))
    }

    /// The devices shown, newest first, as indices for [`DeviceIndex::device`].
    pub fn visible(&self) -> &[usize] {
        &self.visible
    }

    pub fn device(&self, index: usize) -> Option<&Device> {
        self.devices.get(index)
    }

    pub fn by_id(&self, id: &str) -> Option<&Device> {
        self.by_id.get(id).and_then(|&index| self.devices.get(index))
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn counts(&self) -> StateCounts {
        self.counts
    }

    /// The work orders devices were keyed under, in order.
    pub fn orders(&self) -> impl Iterator<Item = &str> {
        self.orders.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn device(n: usize, state: DeviceState, transport: &str) -> Device {
        Device {
            id: format!("{n:032x}"),
            name: format!("sensor-{n:05}"),
            serial_number: format!("SN-{n:05}"),
            credential_mode: "identity".into(),
            identity_public_key: None,
            sealed_setup_secret: None,
            model: Some("TH-1".into()),
            state,
            transport: Some(transport.into()),
            port: Some("/dev/ttyUSB0".into()),
            key_id: None,
            failure: None,
            created_at: n as i64,
            updated_at: n as i64,
            provisioned_at: None,
            rotation: None,
            rotation_attempts: None,
            order_id: None,
        }
    }

    fn names(index: &DeviceIndex) -> Vec<String> {
        index.visible().iter().filter_map(|&i| index.device(i)).map(|d| d.name.clone()).collect()
    }

    #[test]
    fn gui_device_index_filters_by_text_state_and_transport_newest_first() {
        let mut index = DeviceIndex::build(vec![
            device(1, DeviceState::Provisioned, "serial"),
            device(2, DeviceState::Failed, "pcsc"),
            device(3, DeviceState::Provisioned, "ble"),
        ]);
        assert_eq!(names(&index), ["sensor-00003", "sensor-00002", "sensor-00001"]);
        index.set_query(DeviceQuery { state: Some(DeviceState::Provisioned), ..DeviceQuery::default() });
        assert_eq!(names(&index), ["sensor-00003", "sensor-00001"]);
        index.set_query(DeviceQuery { transport: Some("pcsc".into()), ..DeviceQuery::default() });
        assert_eq!(names(&index), ["sensor-00002"]);
        index.set_query(DeviceQuery { text: "SN-00001".into(), ..DeviceQuery::default() });
        assert_eq!(names(&index), ["sensor-00001"]);
        let mut ordered = device(4, DeviceState::Provisioned, "serial");
        ordered.order_id = Some("WO-7".into());
        index.upsert(ordered);
        index.set_query(DeviceQuery { order: Some("WO-7".into()), ..DeviceQuery::default() });
        assert_eq!(names(&index), ["sensor-00004"]);
        assert_eq!(index.orders().collect::<Vec<_>>(), ["WO-7"]);
        assert_eq!(index.counts(), StateCounts { pending: 0, provisioned: 3, failed: 1 });
    }

    #[test]
    fn gui_device_index_narrowing_and_widening_agree_with_a_full_filter() {
        let mut index = DeviceIndex::build((0..500).map(|n| device(n, DeviceState::Provisioned, "serial")).collect());
        for text in ["sensor-001", "sensor-0012", "sensor-00123", "sensor-0012", ""] {
            index.set_query(DeviceQuery { text: text.into(), ..DeviceQuery::default() });
            let expected: Vec<usize> = (0..500).rev().filter(|n| format!("sensor-{n:05}").contains(text)).collect();
            assert_eq!(index.visible(), expected.as_slice(), "{text:?}");
        }
    }

    #[test]
    fn gui_device_index_upsert_keeps_the_filter_and_the_counts() {
        let mut index = DeviceIndex::build(vec![
            device(1, DeviceState::Pending, "serial"),
            device(2, DeviceState::Pending, "serial"),
        ]);
        index.set_query(DeviceQuery { state: Some(DeviceState::Pending), ..DeviceQuery::default() });
        index.upsert(device(1, DeviceState::Provisioned, "serial"));
        assert_eq!(names(&index), ["sensor-00002"]);
        index.upsert(device(3, DeviceState::Pending, "serial"));
        assert_eq!(names(&index), ["sensor-00003", "sensor-00002"]);
        assert_eq!(index.counts(), StateCounts { pending: 2, provisioned: 1, failed: 0 });
    }

    #[test]
    fn gui_device_index_keeps_the_newer_record_when_a_change_raced_a_load() {
        let mut fresh = device(1, DeviceState::Provisioned, "serial");
        fresh.updated_at = 20;
        let mut index = DeviceIndex::build(vec![fresh]);
        let mut stale = device(1, DeviceState::Pending, "serial");
        stale.updated_at = 10;
        index.upsert_if_newer(stale);
        assert_eq!(index.counts(), StateCounts { pending: 0, provisioned: 1, failed: 0 });
        let mut newer = device(1, DeviceState::Failed, "serial");
        newer.updated_at = 30;
        index.upsert_if_newer(newer);
        assert_eq!(index.counts(), StateCounts { pending: 0, provisioned: 0, failed: 1 });
    }

    #[test]
    fn gui_device_index_filters_100k_devices_quickly() {
        let states = [DeviceState::Provisioned, DeviceState::Pending, DeviceState::Failed];
        let mut index = DeviceIndex::build((0..100_000).map(|n| device(n, states[n % 3], "serial")).collect());
        let started = std::time::Instant::now();
        for text in ["s", "se", "sen", "sensor-0", "sensor-09", "sensor-099", "sensor-0999", ""] {
            index.set_query(DeviceQuery { text: text.into(), ..DeviceQuery::default() });
        }
        index.set_query(DeviceQuery { state: Some(DeviceState::Failed), ..DeviceQuery::default() });
        let elapsed = started.elapsed();
        assert_eq!(index.visible().len(), 33_333);
        eprintln!("9 filter changes over 100,000 devices: {elapsed:?}");
        // Generous for a debug build on a loaded 2-core machine; typically a few tens of ms.
        assert!(elapsed < std::time::Duration::from_secs(3), "{elapsed:?}");
    }
}
