//! Protected messages: `timestamp (u64 LE) ‖ SIV tag (16) ‖ ciphertext`, AES-CMAC-SIV
//! (RFC 5297) keyed with the 32-byte E4 key twice, the 8 timestamp bytes as the only
//! associated-data component, no nonce.

use crate::secret::SecretKey;
use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use thiserror::Error;
use zeroize::Zeroizing;

pub const TIMESTAMP_LEN: usize = 8;
pub const TAG_LEN: usize = 16;
/// Largest protected message accepted (an MQTT payload bound for Keyfill's own traffic).
pub const MAX_PROTECTED_LEN: usize = 1 << 20;

#[derive(Debug, Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum E4Error {
    #[error("protected message of {len} bytes is shorter than timestamp and tag")]
    TooShort { len: usize },
    #[error("protected message of {len} bytes exceeds {MAX_PROTECTED_LEN}")]
    TooLong { len: usize },
    #[error("message timestamp {timestamp} is more than {max_age} s old (now {now})")]
    TooOld { timestamp: u64, now: u64, max_age: u64 },
    #[error("message timestamp {timestamp} is in the future (now {now}, allowed skew {skew} s)")]
    InFuture { timestamp: u64, now: u64, skew: u64 },
    #[error("message failed authentication (wrong key, or altered)")]
    Unauthentic,
    #[error("the all-zero key is not a valid E4 key")]
    ZeroKey,
}

/// Which timestamps a receiver accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// Oldest accepted message age, in seconds.
    pub max_age: u64,
    /// How far in the future a timestamp may be, in seconds.
    pub future_skew: u64,
}

impl TimestampPolicy {
    /// The Go client: at most 10 minutes old, never in the future.
    pub const GO_CLIENT: TimestampPolicy = TimestampPolicy { max_age: super::MAX_AGE_SECS, future_skew: 0 };
    /// The C client: 10 minutes either way.
    pub const C_CLIENT: TimestampPolicy =
        TimestampPolicy { max_age: super::MAX_AGE_SECS, future_skew: super::MAX_AGE_SECS };
    /// A Keyfill device: at most 10 minutes old, and up to `max_future_skew` seconds ahead of its
    /// clock, so that a device whose clock lags the station's still takes its commands. The
    /// agent's default is [`super::DEFAULT_FUTURE_SKEW_SECS`] (the C client's window); it
    /// refuses values above [`super::MAX_FUTURE_SKEW_SECS`].
    pub const fn device(max_future_skew: u64) -> TimestampPolicy {
        TimestampPolicy { max_age: super::MAX_AGE_SECS, future_skew: max_future_skew }
    }

    /// Accept any timestamp (known-answer tests only).
    pub const ANY: TimestampPolicy = TimestampPolicy { max_age: u64::MAX, future_skew: u64::MAX };

    fn check(&self, timestamp: u64, now: u64) -> Result<(), E4Error> {
        if timestamp > now && timestamp - now > self.future_skew {
            return Err(E4Error::InFuture { timestamp, now, skew: self.future_skew });
        }
        if now > timestamp && now - timestamp > self.max_age {
            return Err(E4Error::TooOld { timestamp, now, max_age: self.max_age });
        }
        Ok(())
    }
}

fn cipher(key: &SecretKey) -> Result<Aes256Siv, E4Error> {
    if key.is_all_zero() {
        return Err(E4Error::ZeroKey);
    }
    let mut doubled = Zeroizing::new([0u8; 64]);
    doubled[..32].copy_from_slice(key.expose());
    doubled[32..].copy_from_slice(key.expose());
    Ok(Aes256Siv::new(doubled.as_ref().into()))
}

/// Protects `plaintext` under `key` at `timestamp` (Unix seconds).
pub fn protect(key: &SecretKey, timestamp: u64, plaintext: &[u8]) -> Result<Vec<u8>, E4Error> {
    let stamp = timestamp.to_le_bytes();
    let sealed = cipher(key)?.encrypt([&stamp[..]], plaintext).map_err(|_| E4Error::Unauthentic)?;
    let mut out = Vec::with_capacity(TIMESTAMP_LEN + sealed.len());
    out.extend_from_slice(&stamp);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// The timestamp of a protected message, unauthenticated.
pub fn protected_timestamp(protected: &[u8]) -> Result<u64, E4Error> {
    let stamp: [u8; TIMESTAMP_LEN] = protected
        .get(..TIMESTAMP_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(E4Error::TooShort { len: protected.len() })?;
    Ok(u64::from_le_bytes(stamp))
}

/// Checks the timestamp against `now` under `policy`, then authenticates and decrypts.
pub fn unprotect(
    key: &SecretKey,
    protected: &[u8],
    now: u64,
    policy: TimestampPolicy,
) -> Result<Zeroizing<Vec<u8>>, E4Error> {
    if protected.len() < TIMESTAMP_LEN + TAG_LEN {
        return Err(E4Error::TooShort { len: protected.len() });
    }
    if protected.len() > MAX_PROTECTED_LEN {
        return Err(E4Error::TooLong { len: protected.len() });
    }
    let timestamp = protected_timestamp(protected)?;
    policy.check(timestamp, now)?;
    let (stamp, sealed) = protected.split_at(TIMESTAMP_LEN);
    cipher(key)?.decrypt([stamp], sealed).map(Zeroizing::new).map_err(|_| E4Error::Unauthentic)
}
