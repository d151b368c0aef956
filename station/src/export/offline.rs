//! Writing an offline bundle, as `keyfill export bundle` and the desktop app both do: the keys
//! selected like an online export, sealed to the C2 operator's key and signed by the station's
//! bundle-signing key, written to a new file, verified as written, and recorded in the event log.

use super::ExportError;
use super::select::{DeviceFilter, exportable_items};
use crate::bundle::{
    BundleEntry, Manifest, OpenBundleError, RecipientPublicKey, SealBundleError, seal_bundle, verify_bundle,
};
use crate::db::bundle_events::{BundledKey, record_bundle_written};
use crate::db::{DbError, now_millis};
use crate::home::{HomeError, StationHome};
use crate::provision::Station;
use keyfill_formats::bundle::MAX_ENTRIES;
use keyfill_formats::{DeviceId, DeviceName};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;
use zeroize::Zeroizing;

/// What to put in a bundle and where.
#[derive(Debug)]
pub struct BundleRequest {
    pub recipient: RecipientPublicKey,
    /// A new file: an existing one is never replaced (the C2 side may not have imported it).
    pub out: PathBuf,
    pub filter: DeviceFilter,
    /// The factory root's PKCS#8, needed once by a home without a bundle-signing key whose root
    /// is kept offline.
    pub offline_root_pkcs8: Option<Zeroizing<Vec<u8>>>,
}

/// A device in the bundle: ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledDevice {
    pub device_id: String,
    pub name: String,
    pub key_id: String,
}

/// A selected device whose key could not go into the bundle, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOut {
    pub device_id: String,
    pub name: String,
    pub reason: String,
}

/// A bundle written and verified.
#[derive(Debug)]
pub struct WrittenBundle {
    pub manifest: Manifest,
    pub included: Vec<BundledDevice>,
    pub excluded: Vec<LeftOut>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteBundleError {
    #[error("{0} exists; a bundle never replaces a file")]
    Exists(PathBuf),
    #[error("no key to put in a bundle: {}", if .excluded.is_empty() { "nothing is provisioned" } else { "every device selected was left out" })]
    NothingToBundle { excluded: Vec<LeftOut> },
    #[error("{count} keys are more than a bundle holds ({MAX_ENTRIES}); split the export by date or by device")]
    TooMany { count: usize, excluded: Vec<LeftOut> },
    #[error("no bundle-signing key: {0}")]
    Signer(#[source] HomeError),
    #[error("cannot build the bundle: {0}")]
    Seal(#[source] SealBundleError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the bundle just written does not verify: {0}")]
    Verify(#[source] OpenBundleError),
    #[error("the bundle was written to {path}, but the event log failed: {source}")]
    Record { path: PathBuf, source: DbError },
    #[error("the bundle could not be made: {0}")]
    Stopped(String),
    #[error(transparent)]
    Select(#[from] ExportError),
}

impl WriteBundleError {
    /// The devices left out, when the refusal came after the selection.
    pub fn excluded(&self) -> &[LeftOut] {
        match self {
            WriteBundleError::NothingToBundle { excluded } | WriteBundleError::TooMany { excluded, .. } => excluded,
            _ => &[],
        }
    }
}

/// One line for operators: `bundle ID from station NAME (ID), created T: N key(s) confirmed T1 .. T2`.
pub fn describe_manifest(manifest: &Manifest) -> String {
    let time = |ms: u64| crate::time::rfc3339(i64::try_from(ms).unwrap_or(i64::MAX));
    format!(
        "bundle {} from station {} ({}), created {}: {} key(s) confirmed {} .. {}",
        hex::encode(manifest.bundle_id),
        manifest.station_name,
        hex::encode(manifest.station_id),
        time(manifest.created_at_ms),
        manifest.count,
        time(manifest.earliest_provisioned_at_ms),
        time(manifest.latest_provisioned_at_ms)
    )
}

/// The C2 operator's public key given as 64 hex digits, or as the path of its `.pub` file.
pub fn recipient_from_text(text: &str) -> Result<RecipientPublicKey, crate::bundle::KeyFileError> {
    let text = text.trim();
    match text.parse::<RecipientPublicKey>() {
        Ok(key) => Ok(key),
        Err(_) => crate::bundle::read_recipient_public_key(Path::new(text)),
    }
}

/// Selects, seals, writes, verifies and records a bundle.
pub async fn write_bundle(
    station: &Station,
    home: &StationHome,
    request: BundleRequest,
) -> Result<WrittenBundle, WriteBundleError> {
    if request.out.exists() {
        return Err(WriteBundleError::Exists(request.out));
    }
    let (entries, excluded) = split(exportable_items(station, &request.filter).await?);
    if entries.is_empty() {
        return Err(WriteBundleError::NothingToBundle { excluded });
    }
    if entries.len() as u64 > MAX_ENTRIES {
        return Err(WriteBundleError::TooMany { count: entries.len(), excluded });
    }
    let included: Vec<BundledDevice> = entries
        .iter()
        .map(|e| BundledDevice {
            device_id: e.device_id.to_hex(),
            name: e.name.as_str().to_owned(),
            key_id: hex::encode(e.key_id),
        })
        .collect();
    // Milliseconds of CPU even for the largest bundle: not worth a blocking thread.
    let sealed = seal_and_write(station, home, &request, &entries);
    drop(entries);
    let manifest = sealed?;
    let keys: Vec<BundledKey> =
        included.iter().map(|d| BundledKey { device_id: d.device_id.clone(), key_id: d.key_id.clone() }).collect();
    record_bundle_written(
        station.inventory.pool(),
        &station.actor,
        &hex::encode(manifest.bundle_id),
        &request.recipient.to_hex(),
        &keys,
        &request.out,
    )
    .await
    .map_err(|source| WriteBundleError::Record { path: request.out.clone(), source })?;
    Ok(WrittenBundle { manifest, included, excluded })
}

type Selected = Vec<(super::ExportItem, Option<super::select::KeyFacts>)>;

/// Bundle entries for the exportable keys; the others with their reasons.
fn split(selected: Selected) -> (Vec<BundleEntry>, Vec<LeftOut>) {
    let mut entries = Vec::new();
    let mut excluded = Vec::new();
    for (item, facts) in selected {
        let key_id: Option<[u8; 16]> = item.key_id.as_deref().and_then(|k| hex::decode(k).ok()?.try_into().ok());
        // An inventory written by an earlier version may hold a name C2 cannot address.
        let name = match DeviceName::parse(&item.name) {
            Ok(name) => name,
            Err(error) => {
                let reason = format!("its name cannot be sent to C2: {error}");
                excluded.push(LeftOut { device_id: item.device_id, name: item.name, reason });
                continue;
            }
        };
        match (item.key, facts, key_id, DeviceId::from_hex(&item.device_id)) {
            (Ok(key), Some(facts), Some(key_id), Some(device_id)) => entries.push(BundleEntry {
                device_id,
                name,
                key_id,
                key,
                provisioned_at_ms: u64::try_from(facts.confirmed_at).unwrap_or(0),
                from_rotation: facts.rotated,
            }),
            (Err(reason), ..) => excluded.push(LeftOut { device_id: item.device_id, name: item.name, reason }),
            _ => excluded.push(LeftOut {
                device_id: item.device_id,
                name: item.name,
                reason: "its key has no usable id".into(),
            }),
        }
    }
    (entries, excluded)
}

fn seal_and_write(
    station: &Station,
    home: &StationHome,
    request: &BundleRequest,
    entries: &[BundleEntry],
) -> Result<Manifest, WriteBundleError> {
    let signer = home
        .bundle_signer(&station.unlocked, request.offline_root_pkcs8.as_deref().map(Vec::as_slice))
        .map_err(WriteBundleError::Signer)?;
    let now = u64::try_from(now_millis()).unwrap_or(0);
    let bytes = seal_bundle(&signer, &request.recipient, entries, now).map_err(WriteBundleError::Seal)?;
    write_new(&request.out, &bytes)?;
    let summary = verify_bundle(&bytes, &station.unlocked.info.factory_root, now).map_err(WriteBundleError::Verify)?;
    Ok(summary.manifest)
}

/// Writes `bytes` to `out`, which must not exist, through a temporary file beside it, so an
/// interrupted write never leaves a partial bundle under the chosen name.
fn write_new(out: &Path, bytes: &[u8]) -> Result<(), WriteBundleError> {
    let failed = |source| WriteBundleError::Write { path: out.to_path_buf(), source };
    let folder = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
    let temporary = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        // A hard link fails if `out` appeared meanwhile, where a rename would replace it.
        std::fs::hard_link(&temporary, out)?;
        std::fs::remove_file(&temporary)?;
        std::fs::File::open(folder)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(WriteBundleError::Exists(out.to_path_buf())),
        other => other.map_err(failed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c2_export_bundle_file_is_never_written_over_an_existing_file() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let out = dir.path().join("keys.kfb");
        write_new(&out, b"first")?;
        assert!(matches!(write_new(&out, b"second"), Err(WriteBundleError::Exists(_))));
        assert_eq!(std::fs::read(&out)?, b"first");
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "no temporary file left behind");
        Ok(())
    }
}
