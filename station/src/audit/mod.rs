//! The tamper-evident audit log: every security-relevant event, hash-chained per station and
//! signed by the station's signing key (the key certified by the factory root that also signs
//! bundles and reports, each under its own label). The hashing is in
//! [`keyfill_formats::audit`]; the rows in [`crate::db::audit`]; [`verify`] tells whether a
//! chain was edited, shortened, or had entries removed, moved or added; [`checkpoint`] keeps
//! signed checkpoints in files, off the database.

pub mod checkpoint;
pub mod export;
pub mod pending;
pub mod verify;

use crate::bundle::{BundleSigner, SignerError};
use keyfill_formats::cert::BundleSignerCertificate;
use std::sync::Arc;

/// The key a station signs its audit entries and checkpoints with. Cloning shares it.
#[derive(Debug, Clone)]
pub struct AuditKey {
    signer: Arc<BundleSigner>,
    public_hex: Arc<str>,
}

impl AuditKey {
    pub fn new(signer: Arc<BundleSigner>) -> Self {
        let public_hex = hex::encode(signer.certificate().body.signing_public).into();
        AuditKey { signer, public_hex }
    }

    /// A key certified by a factory root made up for the purpose, for code that records events
    /// where no station is unlocked (tests, benchmarks). Its entries verify only against that
    /// root.
    pub fn throwaway(station_id: [u8; 16]) -> Result<Self, SignerError> {
        let root_pkcs8 = BundleSigner::generate_pkcs8()?;
        let root = ring::signature::Ed25519KeyPair::from_pkcs8(&root_pkcs8).map_err(|_| SignerError::BadKey)?;
        let pkcs8 = BundleSigner::generate_pkcs8()?;
        let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
        let certificate = crate::bundle::certify_bundle_signer(&root, station_id, "throwaway", public, 0, u64::MAX)?;
        Ok(AuditKey::new(Arc::new(BundleSigner::new(&pkcs8, certificate)?)))
    }

    /// As [`AuditKey::throwaway`], with the made-up root's public key.
    #[cfg(test)]
    pub(crate) fn throwaway_with_root(station_id: [u8; 16]) -> Result<(Self, [u8; 32]), SignerError> {
        use ring::signature::KeyPair;
        let root_pkcs8 = BundleSigner::generate_pkcs8()?;
        let root = ring::signature::Ed25519KeyPair::from_pkcs8(&root_pkcs8).map_err(|_| SignerError::BadKey)?;
        let pkcs8 = BundleSigner::generate_pkcs8()?;
        let public = BundleSigner::public_key_of_pkcs8(&pkcs8)?;
        let certificate = crate::bundle::certify_bundle_signer(&root, station_id, "throwaway", public, 0, u64::MAX)?;
        let root_public = root.public_key().as_ref().try_into().map_err(|_| SignerError::BadKey)?;
        Ok((AuditKey::new(Arc::new(BundleSigner::new(&pkcs8, certificate)?)), root_public))
    }

    /// The public key, as hex: how an entry names the key that signed it.
    pub fn public_hex(&self) -> &str {
        &self.public_hex
    }

    pub fn certificate(&self) -> &BundleSignerCertificate {
        self.signer.certificate()
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignerError> {
        self.signer.sign(message)
    }
}

/// An entry's name: its station and its number in the station's chain. Logs, JSON output and
/// `keyfill audit export` name an entry so.
pub fn entry_id(station_id: &str, seq: i64) -> String {
    format!("{station_id}:{seq}")
}

/// Records that `actor`'s station was unlocked, after the failed unlocks noted in its home
/// since the last one ([`pending`]), which are then forgotten.
pub async fn record_unlock(
    inventory: &crate::db::Inventory,
    home: &std::path::Path,
    actor: &crate::db::events::Actor,
) -> Result<(), crate::db::DbError> {
    use crate::db::audit::{Recorder, append};
    let (attempts, counted) = pending::read(home);
    let _gate = inventory.write_gate().await;
    let mut tx = inventory.pool().begin().await?;
    for attempt in &attempts {
        let recorder = Recorder { station_id: &actor.station_id, operator: &attempt.account, key: &actor.audit };
        let detail = format!("{} (noted in the station home, recorded at the next unlock)", attempt.reason);
        let kind = attempt.kind.as_deref().unwrap_or("unlock_failed");
        append(&mut tx, &recorder, attempt.at, None, kind, &detail).await?;
    }
    if counted > 0 {
        let detail = format!("{counted} more failed unlocks, counted only: the station home's note of them was full");
        append(&mut tx, &actor.recorder(), crate::db::now_millis(), None, "unlock_failed", &detail).await?;
    }
    append(&mut tx, &actor.recorder(), crate::db::now_millis(), None, "unlocked", "the master key was unlocked")
        .await?;
    tx.commit().await?;
    pending::clear(home);
    Ok(())
}
