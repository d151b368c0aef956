//! Export of device keys to C2, the fleet's key server.
//!
//! C2's `NewClient` is a silent upsert and its API shows neither keys nor versions, so what C2
//! holds is known only from what was sent to it. Each export keeps a ledger per C2 server: the
//! key delivered to it, and a key whose POST may not have arrived (written before the POST, so a
//! crash leaves a record the next run resumes from). From the ledger and C2's client list every
//! device gets one of four outcomes: **created** (C2 had no such client), **replaced** (C2 held
//! an earlier key this station delivered, e.g. before a confirmed rotation), **already
//! exported** (this station delivered this very key to this C2 before and C2 still lists the
//! client; nothing is sent, and since C2 cannot show a key, a change made in C2 since, such as a
//! C2-side rotation, is not seen) or **failed** with a reason. A client that C2 holds but this
//! station never exported to it (another tool registered it) is never overwritten unless asked.
//!
//! - [`c2_api`]: the HTTPS client for C2's gateway.
//! - [`select`]: which inventory keys may leave (provisioned, or rotated and confirmed).
//! - [`ledger`]: the ledger, in the inventory (`export c2`) or in a journal file (`import bundle`).
//! - [`engine`]: the run itself, concurrent and retrying.
//! - [`offline`]: writing an offline bundle (`keyfill export bundle`, and the desktop app).

pub mod c2_api;
pub mod engine;
pub mod ledger;
pub mod offline;
pub mod select;

use keyfill_formats::SecretKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use c2_api::{C2Api, C2Error, CryptoMode, NoAnswer};
pub use engine::{ExportProgress, ExportSettings, run_export, summary};
pub use ledger::{JournalLedger, Ledger};
pub use select::{DeviceFilter, exportable_items};

/// A device whose key is to be exported, or the reason it cannot be.
#[derive(Debug)]
pub struct ExportItem {
    pub device_id: String,
    /// The E4 client name, C2's key for the client.
    pub name: String,
    pub key_id: Option<String>,
    pub key: Result<SecretKey, String>,
}

/// How one device's export ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Replaced,
    /// This station delivered this very key to this C2 before and C2 still lists the client.
    /// Not "unchanged": C2 cannot show its key, so Keyfill cannot know it is still this one.
    /// Journals written before the rename say `unchanged`.
    #[serde(alias = "unchanged")]
    AlreadyExported,
    Failed,
}

impl Outcome {
    /// The stable word in JSON, the database and journals.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Replaced => "replaced",
            Outcome::AlreadyExported => "already_exported",
            Outcome::Failed => "failed",
        }
    }

    /// The words for people.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::AlreadyExported => "already exported",
            other => other.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Outcome::Created, Outcome::Replaced, Outcome::AlreadyExported, Outcome::Failed]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// What "already exported" can and cannot tell, for reports.
pub const ALREADY_EXPORTED_MEANS: &str = "already exported: this station delivered this same key to this C2 before and \
     C2 still lists the client, so nothing was sent; C2 cannot show a client's key, so a change made in C2 since (a \
     key rotated by C2, or replaced by another tool) would not show here";

/// The per-device result, as stored, printed and returned as JSON. Never holds key material.
#[derive(Debug, Clone, Serialize)]
pub struct ItemReport {
    pub device_id: String,
    pub name: String,
    pub key_id: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    /// POSTs made for this device in this run.
    pub attempts: u32,
}

/// What the ledger knows of one device at one C2 server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// The key this station delivered to this C2 and saw acknowledged.
    pub delivered_key_id: Option<String>,
    /// A key whose POST started but whose answer never came, and what it was meant to do.
    pub sending: Option<(String, Outcome)>,
}

/// What to do with one device, decided before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// This station delivered exactly this key to this C2 and C2 still lists the client.
    AlreadyExported,
    /// POST the key; the report says `outcome` if C2 acknowledges.
    Post { outcome: Outcome },
    /// C2 holds a key this station cannot account for.
    Refuse { reason: String },
}

/// Decides a device's plan from the ledger and C2's client list. `replace_foreign` allows
/// overwriting a client this station never exported to this C2.
pub fn plan(key_id: &str, registration: Option<&Registration>, in_c2: bool, replace_foreign: bool) -> Plan {
    let ours = registration.is_some_and(|r| r.delivered_key_id.is_some() || r.sending.is_some());
    if let Some(Registration { sending: Some((sending, outcome)), .. }) = registration
        && sending == key_id
    {
        // An interrupted POST of this key: send it again (NewClient is idempotent) and report
        // what it was meant to do.
        let outcome = if in_c2 { *outcome } else { Outcome::Created };
        return Plan::Post { outcome };
    }
    match registration {
        Some(r) if in_c2 && r.sending.is_none() && r.delivered_key_id.as_deref() == Some(key_id) => {
            Plan::AlreadyExported
        }
        _ if !in_c2 => Plan::Post { outcome: Outcome::Created },
        _ if ours || replace_foreign => Plan::Post { outcome: Outcome::Replaced },
        _ => Plan::Refuse {
            reason: "C2 already holds a client of this name that this station never exported to it (another \
                     station or tool registered it); pass --replace to overwrite its key"
                .into(),
        },
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(
        "C2 runs in {found} mode but Keyfill's keys are symmetric E4 client keys (CRYPTOMODE_SYMKEY); nothing was exported"
    )]
    CryptoModeMismatch { found: CryptoMode },
    #[error("cannot ask C2 {what}: {source}")]
    C2 { what: &'static str, source: C2Error },
    #[error(transparent)]
    Lookup(#[from] crate::db::devices::LookupError),
    #[error("the export ledger: {0}")]
    Ledger(String),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(key: &str) -> Registration {
        Registration { delivered_key_id: Some(key.into()), sending: None }
    }

    #[test]
    fn a_client_c2_lacks_is_created() {
        assert_eq!(plan("k1", None, false, false), Plan::Post { outcome: Outcome::Created });
        // Delivered once, since deleted in C2: created again.
        assert_eq!(plan("k1", Some(&delivered("k1")), false, false), Plan::Post { outcome: Outcome::Created });
    }

    #[test]
    fn the_same_key_again_is_already_exported_and_a_newer_one_replaces() {
        assert_eq!(plan("k1", Some(&delivered("k1")), true, false), Plan::AlreadyExported);
        assert_eq!(plan("k2", Some(&delivered("k1")), true, false), Plan::Post { outcome: Outcome::Replaced });
    }

    #[test]
    fn a_foreign_client_is_replaced_only_when_asked() {
        assert!(matches!(plan("k1", None, true, false), Plan::Refuse { .. }));
        assert_eq!(plan("k1", None, true, true), Plan::Post { outcome: Outcome::Replaced });
    }

    #[test]
    fn an_interrupted_post_is_resent_with_its_intended_outcome() {
        let interrupted = Registration { delivered_key_id: None, sending: Some(("k1".into(), Outcome::Created)) };
        assert_eq!(plan("k1", Some(&interrupted), true, false), Plan::Post { outcome: Outcome::Created });
        let replacing =
            Registration { delivered_key_id: Some("k0".into()), sending: Some(("k1".into(), Outcome::Replaced)) };
        assert_eq!(plan("k1", Some(&replacing), true, false), Plan::Post { outcome: Outcome::Replaced });
        // The interrupted key may be what C2 holds now: a different current key must be sent.
        assert_eq!(plan("k0", Some(&replacing), true, false), Plan::Post { outcome: Outcome::Replaced });
    }
}
