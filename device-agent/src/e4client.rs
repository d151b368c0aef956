//! The device's E4 client as a sans-IO state machine: control-topic messages and `now` in;
//! keystore writes, publications and events out.
//!
//! Rotation (SetIdKey) keeps the device reachable: the new key is stored as *next* and
//! confirmed under the new key, while commands under the old key are still accepted. The first
//! command under the new key, or the end of the grace period, makes the new key current and
//! erases the old one. Every change is persisted before anything that depends on it is
//! published, so after a power loss the keystore still opens commands under at least one key
//! the station holds.

use crate::keystore::{NextKey, StoredKey};
use keyfill_formats::e4::keyfill::{Confirmation, HELLO_PLAINTEXT, confirm_topic, hello_topic, rotated_key_id};
use keyfill_formats::e4::{self, Command, E4Error, KeyMode, TimestampPolicy};
use keyfill_formats::{DeviceId, SecretKey};
use thiserror::Error;
use zeroize::Zeroizing;

/// How long the old key stays valid after a SetIdKey, unless the new key is used first.
pub const DEFAULT_GRACE_SECS: u64 = 24 * 3600;

/// What the driver must do, in order. A failed `Persist` must stop the batch.
#[derive(Debug, PartialEq, Eq)]
pub enum E4Output {
    /// Write the whole state durably before the next output.
    Persist(Box<StoredKey>),
    /// Publish (the MQTT adapter uses QoS 1; every publication is idempotent).
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    Event(E4Event),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum E4Event {
    /// A SetIdKey stored the next key; its confirmation follows.
    NextKeyStored {
        command_timestamp: u64,
    },
    /// A repeated SetIdKey for the key already held as next or current.
    RotationConfirmedAgain {
        command_timestamp: u64,
    },
    /// The next key became current; the old key is erased.
    KeyPromoted {
        by_command: bool,
    },
    CommandApplied {
        command: &'static str,
    },
    /// A command that authenticates under a held key but is stamped outside this device's
    /// window: the device's clock and the station's disagree (or the command waited on the broker
    /// for longer than the window). Nothing is applied.
    OutsideClockWindow {
        command_timestamp: u64,
        now: u64,
        window: TimestampPolicy,
    },
    Rejected {
        reason: String,
    },
}

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum E4ClientError {
    #[error("E4 topics are 1..=512 bytes")]
    InvalidTopic,
    #[error("no E4 key for topic {0:?}")]
    NoTopicKey(String),
    #[error(transparent)]
    E4(#[from] E4Error),
}

/// What an [`E4Event::OutsideClockWindow`] means, for the device's log.
pub fn describe_clock_refusal(command_timestamp: u64, now: u64, window: TimestampPolicy) -> String {
    if command_timestamp > now {
        format!(
            "E4 command refused: stamped {} s ahead of this device's clock, more than the {} s accepted; \
             this device's clock is probably behind the station's: set it (NTP). Every command is \
             refused until the clocks agree",
            command_timestamp - now,
            window.future_skew
        )
    } else {
        format!(
            "E4 command refused: stamped {} s before this device's clock, older than the {} s accepted; \
             it waited on the broker that long (a retained command from an earlier attempt), or this \
             device's clock is ahead of the station's: check it (NTP)",
            now - command_timestamp,
            window.max_age
        )
    }
}

/// The E4 client of one device.
#[derive(Debug)]
pub struct E4Client {
    device_id: DeviceId,
    state: StoredKey,
    grace_secs: u64,
    policy: TimestampPolicy,
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::RemoveTopic { .. } => "RemoveTopic",
        Command::ResetTopics => "ResetTopics",
        Command::SetIdKey { .. } | Command::SetIdKeyPair { .. } => "SetIdKey",
        Command::SetTopicKey { .. } => "SetTopicKey",
        Command::RemovePubKey { .. } => "RemovePubKey",
        Command::ResetPubKeys => "ResetPubKeys",
        Command::SetPubKey { .. } => "SetPubKey",
        Command::SetC2Key { .. } => "SetC2Key",
    }
}

impl E4Client {
    /// A client that accepts commands up to [`e4::DEFAULT_FUTURE_SKEW_SECS`] ahead of its clock.
    pub fn new(device_id: DeviceId, state: StoredKey, grace_secs: u64) -> Self {
        E4Client { device_id, state, grace_secs, policy: TimestampPolicy::device(e4::DEFAULT_FUTURE_SKEW_SECS) }
    }

    /// Accepts commands up to `secs` ahead of this device's clock instead (0 is E4's Go client);
    /// at most [`e4::MAX_FUTURE_SKEW_SECS`], larger values are capped.
    pub fn with_max_future_skew(mut self, secs: u64) -> Self {
        self.policy = TimestampPolicy::device(secs.min(e4::MAX_FUTURE_SKEW_SECS));
        self
    }

    /// The timestamps this client accepts.
    pub fn timestamp_policy(&self) -> TimestampPolicy {
        self.policy
    }

    pub fn state(&self) -> &StoredKey {
        &self.state
    }

    pub fn control_topic(&self) -> String {
        self.device_id.control_topic()
    }

    /// When the grace period of a pending next key ends (Unix seconds).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.state.e4.next.as_ref().map(|next| next.received_at.saturating_add(self.grace_secs))
    }

    pub fn handle_timeout(&mut self, now: u64) -> Vec<E4Output> {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => self.promote(false),
            _ => Vec::new(),
        }
    }

    fn promote(&mut self, by_command: bool) -> Vec<E4Output> {
        let Some(next) = self.state.e4.next.take() else { return Vec::new() };
        self.state.key_id = rotated_key_id(&next.key);
        self.state.key = next.key;
        vec![E4Output::Persist(Box::new(self.state.clone())), E4Output::Event(E4Event::KeyPromoted { by_command })]
    }

    /// The hello a device publishes on first use, under its current key.
    pub fn hello(&self, now: u64) -> Result<E4Output, E4ClientError> {
        Ok(E4Output::Publish {
            topic: hello_topic(&self.device_id),
            payload: e4::protect(&self.state.key, now, HELLO_PLAINTEXT)?,
        })
    }

    fn confirmation(&self, key: &SecretKey, command_timestamp: u64, now: u64) -> Result<E4Output, E4ClientError> {
        let plaintext = Confirmation::for_key(key, command_timestamp).encode();
        Ok(E4Output::Publish { topic: confirm_topic(&self.device_id), payload: e4::protect(key, now, &plaintext)? })
    }

    /// Feeds one message received on the control topic.
    pub fn handle_control(&mut self, protected: &[u8], now: u64) -> Vec<E4Output> {
        let rejected = |reason: String| vec![E4Output::Event(E4Event::Rejected { reason })];
        let command_timestamp = match e4::protected_timestamp(protected) {
            Ok(timestamp) => timestamp,
            Err(error) => return rejected(error.to_string()),
        };
        // Under the current key first; then under the next key, which promotes it.
        let (plaintext, under_next) = match e4::unprotect(&self.state.key, protected, now, self.policy) {
            Ok(plaintext) => (plaintext, false),
            Err(E4Error::Unauthentic) => match &self.state.e4.next {
                Some(next) => match e4::unprotect(&next.key, protected, now, self.policy) {
                    Ok(plaintext) => (plaintext, true),
                    Err(error) => return rejected(error.to_string()),
                },
                None => return rejected(E4Error::Unauthentic.to_string()),
            },
            Err(E4Error::InFuture { .. } | E4Error::TooOld { .. }) if self.opens_under_a_held_key(protected) => {
                let window = self.policy;
                return vec![E4Output::Event(E4Event::OutsideClockWindow { command_timestamp, now, window })];
            }
            Err(error) => return rejected(error.to_string()),
        };
        let command = match Command::decode(&plaintext, KeyMode::Symmetric) {
            Ok(command) => command,
            Err(error) => return rejected(error.to_string()),
        };
        let mut out = if under_next { self.promote(true) } else { Vec::new() };
        out.extend(self.apply(command, command_timestamp, now));
        out
    }

    /// Whether `protected` authenticates under the current or the next key, whatever its
    /// timestamp: tells a genuine command from the wrong clock apart from a forged one, so that
    /// only the former is reported as a clock problem.
    fn opens_under_a_held_key(&self, protected: &[u8]) -> bool {
        let opens = |key: &SecretKey| e4::unprotect(key, protected, 0, TimestampPolicy::ANY).is_ok();
        opens(&self.state.key) || self.state.e4.next.as_ref().is_some_and(|next| opens(&next.key))
    }

    fn apply(&mut self, command: Command, command_timestamp: u64, now: u64) -> Vec<E4Output> {
        let name = command_name(&command);
        let keys = &mut self.state.e4;
        match command {
            Command::SetIdKey { key } => return self.set_id_key(key, command_timestamp, now),
            Command::SetTopicKey { key, topic_hash } => {
                keys.topic_keys.insert(topic_hash, key);
            }
            Command::RemoveTopic { topic_hash } => {
                keys.topic_keys.remove(&topic_hash);
            }
            Command::ResetTopics => keys.topic_keys.clear(),
            Command::SetPubKey { public_key, client_id } => {
                keys.pub_keys.insert(client_id, public_key);
            }
            Command::RemovePubKey { client_id } => {
                keys.pub_keys.remove(&client_id);
            }
            Command::ResetPubKeys => keys.pub_keys.clear(),
            Command::SetC2Key { public_key } => keys.c2_key = Some(public_key),
            Command::SetIdKeyPair { .. } => {
                return vec![E4Output::Event(E4Event::Rejected {
                    reason: "public-key SetIdKey in a symmetric-key client".into(),
                })];
            }
        }
        vec![
            E4Output::Persist(Box::new(self.state.clone())),
            E4Output::Event(E4Event::CommandApplied { command: name }),
        ]
    }

    fn set_id_key(&mut self, key: SecretKey, command_timestamp: u64, now: u64) -> Vec<E4Output> {
        let already_next = self.state.e4.next.as_ref().is_some_and(|next| next.key.constant_time_eq(&key));
        let already_current = self.state.key.constant_time_eq(&key);
        let mut out = Vec::new();
        if already_next || already_current {
            out.push(E4Output::Event(E4Event::RotationConfirmedAgain { command_timestamp }));
        } else {
            self.state.e4.next = Some(NextKey { key: key.clone(), command_timestamp, received_at: now });
            out.push(E4Output::Persist(Box::new(self.state.clone())));
            out.push(E4Output::Event(E4Event::NextKeyStored { command_timestamp }));
        }
        match self.confirmation(&key, command_timestamp, now) {
            Ok(publish) => out.push(publish),
            Err(error) => out.push(E4Output::Event(E4Event::Rejected { reason: error.to_string() })),
        }
        out
    }

    fn topic_key(&self, topic: &str) -> Result<&SecretKey, E4ClientError> {
        if !e4::valid_topic(topic) {
            return Err(E4ClientError::InvalidTopic);
        }
        self.state.e4.topic_keys.get(&e4::topic_hash(topic)).ok_or_else(|| E4ClientError::NoTopicKey(topic.into()))
    }

    /// Protects an application message for `topic` with its topic key.
    pub fn protect_message(&self, topic: &str, plaintext: &[u8], now: u64) -> Result<Vec<u8>, E4ClientError> {
        Ok(e4::protect(self.topic_key(topic)?, now, plaintext)?)
    }

    /// Opens an application message received on `topic`.
    pub fn unprotect_message(
        &self,
        topic: &str,
        protected: &[u8],
        now: u64,
    ) -> Result<Zeroizing<Vec<u8>>, E4ClientError> {
        Ok(e4::unprotect(self.topic_key(topic)?, protected, now, self.policy)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keystore::E4Keys;

    const NOW: u64 = 1_800_000_000;

    fn client() -> E4Client {
        let state = StoredKey {
            key_id: [1; 16],
            key: SecretKey::from_bytes([1; 32]),
            station_id: [2; 16],
            issued_at: NOW,
            e4: E4Keys::default(),
        };
        E4Client::new(DeviceId::from_name("e4-device"), state, 3600)
    }

    fn command(key: &SecretKey, command: &Command, timestamp: u64) -> Vec<u8> {
        e4::protect(key, timestamp, &command.encode()).expect("protect")
    }

    fn publications(out: &[E4Output]) -> Vec<(String, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                E4Output::Publish { topic, payload } => Some((topic.clone(), payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn persisted(out: &[E4Output]) -> usize {
        out.iter().filter(|o| matches!(o, E4Output::Persist(_))).count()
    }

    #[test]
    fn e4_rotation_confirms_under_the_new_key_and_keeps_the_old_one_until_used() {
        let mut client = client();
        let old = SecretKey::from_bytes([1; 32]);
        let new = SecretKey::from_bytes([9; 32]);
        let out = client.handle_control(&command(&old, &Command::SetIdKey { key: new.clone() }, NOW), NOW);
        assert_eq!(persisted(&out), 1, "the next key is stored before the confirmation");
        assert!(matches!(out[0], E4Output::Persist(_)));
        let published = publications(&out);
        assert_eq!(published[0].0, format!("keyfill/confirm/{}", DeviceId::from_name("e4-device").to_hex()));
        let plaintext =
            e4::unprotect(&new, &published[0].1, NOW, TimestampPolicy::GO_CLIENT).expect("under the new key");
        let confirmation = Confirmation::decode(&plaintext).expect("confirmation");
        assert!(confirmation.names(&new));
        assert_eq!(confirmation.command_timestamp, NOW);

        // Still reachable under the old key; a repeat is idempotent.
        let topic = Command::SetTopicKey { key: SecretKey::from_bytes([4; 32]), topic_hash: [5; 16] };
        assert!(
            client
                .handle_control(&command(&old, &topic, NOW + 1), NOW + 1)
                .contains(&E4Output::Event(E4Event::CommandApplied { command: "SetTopicKey" }))
        );
        let again = client.handle_control(&command(&old, &Command::SetIdKey { key: new.clone() }, NOW + 2), NOW + 2);
        assert_eq!(persisted(&again), 0);
        assert_eq!(publications(&again).len(), 1);

        // A command under the new key promotes it and erases the old one.
        let promoted = client.handle_control(&command(&new, &Command::ResetPubKeys, NOW + 3), NOW + 3);
        assert!(promoted.contains(&E4Output::Event(E4Event::KeyPromoted { by_command: true })));
        assert!(client.state().key.constant_time_eq(&new));
        assert!(client.state().e4.next.is_none());
        assert_eq!(client.state().key_id, rotated_key_id(&new));
        let refused = client.handle_control(&command(&old, &Command::ResetTopics, NOW + 4), NOW + 4);
        assert!(matches!(refused.as_slice(), [E4Output::Event(E4Event::Rejected { .. })]));
        // The station's probe under the new key is confirmed again.
        let probe = client.handle_control(&command(&new, &Command::SetIdKey { key: new.clone() }, NOW + 5), NOW + 5);
        assert_eq!(publications(&probe).len(), 1);
    }

    #[test]
    fn e4_grace_period_end_promotes_the_next_key() {
        let mut client = client();
        let old = SecretKey::from_bytes([1; 32]);
        let new = SecretKey::from_bytes([8; 32]);
        client.handle_control(&command(&old, &Command::SetIdKey { key: new.clone() }, NOW), NOW);
        assert_eq!(client.poll_timeout(), Some(NOW + 3600));
        assert!(client.handle_timeout(NOW + 3599).is_empty());
        let out = client.handle_timeout(NOW + 3600);
        assert!(out.contains(&E4Output::Event(E4Event::KeyPromoted { by_command: false })));
        assert!(client.state().key.constant_time_eq(&new));
    }

    #[test]
    fn e4_stale_forged_and_malformed_commands_are_rejected() {
        let mut client = client();
        let old = SecretKey::from_bytes([1; 32]);
        let stale = command(&old, &Command::ResetTopics, NOW - 601);
        let forged = command(&SecretKey::from_bytes([3; 32]), &Command::ResetTopics, NOW);
        let garbage = e4::protect(&old, NOW, &[0x42, 1, 2]).expect("protect");
        for message in [forged, garbage, vec![1, 2, 3]] {
            let out = client.handle_control(&message, NOW);
            assert!(matches!(out.as_slice(), [E4Output::Event(E4Event::Rejected { .. })]), "{out:?}");
        }
        let out = client.handle_control(&stale, NOW);
        assert!(matches!(out.as_slice(), [E4Output::Event(E4Event::OutsideClockWindow { .. })]), "{out:?}");
    }

    #[test]
    fn field_device_60_s_behind_the_station_takes_its_rotation_command() {
        let mut client = client();
        let old = SecretKey::from_bytes([1; 32]);
        let new = SecretKey::from_bytes([9; 32]);
        // The station stamps at its clock, a minute ahead of the device's.
        let out = client.handle_control(&command(&old, &Command::SetIdKey { key: new.clone() }, NOW + 60), NOW);
        assert!(out.contains(&E4Output::Event(E4Event::NextKeyStored { command_timestamp: NOW + 60 })), "{out:?}");
        let published = publications(&out);
        assert_eq!(published.len(), 1, "confirmed");
        // Stamped with the device's clock; the station's window takes a minute in the past.
        let plaintext = e4::unprotect(&new, &published[0].1, NOW + 60, TimestampPolicy::C_CLIENT).expect("opens");
        assert_eq!(Confirmation::decode(&plaintext).map(|c| c.command_timestamp), Ok(NOW + 60));
    }

    #[test]
    fn field_device_11_minutes_behind_refuses_the_command_as_a_clock_problem_and_keeps_its_key() {
        let mut client = client();
        let before = client.state().clone();
        let old = SecretKey::from_bytes([1; 32]);
        let new = SecretKey::from_bytes([9; 32]);
        let out = client.handle_control(&command(&old, &Command::SetIdKey { key: new }, NOW + 660), NOW);
        assert_eq!(
            out,
            vec![E4Output::Event(E4Event::OutsideClockWindow {
                command_timestamp: NOW + 660,
                now: NOW,
                window: TimestampPolicy::device(600),
            })]
        );
        assert_eq!(client.state(), &before, "nothing stored, nothing confirmed");
    }

    #[test]
    fn field_future_skew_defaults_to_ten_minutes_is_configurable_and_capped() {
        let old = SecretKey::from_bytes([1; 32]);
        let applied = |client: &mut E4Client, ahead: u64| {
            let out = client.handle_control(&command(&old, &Command::ResetTopics, NOW + ahead), NOW);
            out.contains(&E4Output::Event(E4Event::CommandApplied { command: "ResetTopics" }))
        };
        let mut default = client();
        assert!(applied(&mut default, 600), "exactly 10 minutes ahead");
        assert!(!applied(&mut default, 601));
        let mut strict = client().with_max_future_skew(0);
        assert!(applied(&mut strict, 0));
        assert!(!applied(&mut strict, 1), "E4's Go client rule");
        let mut capped = client().with_max_future_skew(24 * 3600);
        assert_eq!(capped.timestamp_policy(), TimestampPolicy::device(e4::MAX_FUTURE_SKEW_SECS));
        assert!(!applied(&mut capped, e4::MAX_FUTURE_SKEW_SECS + 1));
        // The past window is unchanged.
        let out = default.handle_control(&command(&old, &Command::ResetTopics, NOW - 601), NOW);
        assert!(matches!(out.as_slice(), [E4Output::Event(E4Event::OutsideClockWindow { .. })]), "{out:?}");
    }

    #[test]
    fn field_a_forged_command_from_the_future_is_not_blamed_on_the_clock() {
        let mut client = client();
        let forged = command(&SecretKey::from_bytes([3; 32]), &Command::ResetTopics, NOW + 3600);
        let out = client.handle_control(&forged, NOW);
        assert!(matches!(out.as_slice(), [E4Output::Event(E4Event::Rejected { .. })]), "{out:?}");
    }

    #[test]
    fn field_grace_period_runs_on_the_device_clock_not_the_command_stamp() {
        let mut client = client();
        let old = SecretKey::from_bytes([1; 32]);
        let new = SecretKey::from_bytes([8; 32]);
        // Stamped 5 minutes ahead: the grace period still starts when the device received it.
        client.handle_control(&command(&old, &Command::SetIdKey { key: new }, NOW + 300), NOW);
        assert_eq!(client.poll_timeout(), Some(NOW + 3600));
    }

    #[test]
    fn e4_application_messages_use_topic_keys() {
        let mut client = client();
        let old = SecretKey::from_bytes([1; 32]);
        let topic_key = SecretKey::from_bytes([6; 32]);
        let set = Command::SetTopicKey { key: topic_key.clone(), topic_hash: e4::topic_hash("plant/line-3/temp") };
        client.handle_control(&command(&old, &set, NOW), NOW);
        let protected = client.protect_message("plant/line-3/temp", b"21.5", NOW).expect("protect");
        assert_eq!(
            e4::unprotect(&topic_key, &protected, NOW, TimestampPolicy::GO_CLIENT).expect("open").as_slice(),
            b"21.5"
        );
        assert_eq!(client.unprotect_message("plant/line-3/temp", &protected, NOW).expect("open").as_slice(), b"21.5");
        assert!(matches!(client.protect_message("other", b"x", NOW), Err(E4ClientError::NoTopicKey(_))));
    }
}
