//! Writing an offline bundle, as `keyfill export bundle` and the desktop app both do: the keys
//! selected like an online export, read from the inventory a page at a time, sealed to the C2
//! operator's key and signed by the station's bundle-signing key in parts of
//! [`PART_ENTRIES`] keys, written to a new file part by part, verified as written, and recorded
//! in the event log. Memory stays bounded by one part and a few ids per key, whatever the count.

use super::ExportError;
use super::select::{DeviceFilter, ExportablePages, KeyFacts};
use crate::bundle::{
    BundleEntry, OpenBundleError, PartSealer, RecipientPublicKey, SealBundleError, SeriesManifest, SeriesReader,
};
use crate::db::bundle_events::{BundleEvents, BundledKey};
use crate::db::{DbError, now_millis};
use crate::home::{HomeError, StationHome};
use crate::provision::Station;
use keyfill_formats::bundle::MAX_ENTRIES;
use keyfill_formats::{DeviceId, DeviceName};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;
use zeroize::Zeroizing;

/// Keys per part: about 10 MiB of ciphertext with typical names, so that writing, verifying
/// and importing hold one such part at a time.
pub const PART_ENTRIES: usize = 100_000;

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
    /// Keys per part, 1..=`MAX_ENTRIES`: [`PART_ENTRIES`] unless a test wants many parts.
    pub keys_per_part: usize,
}

/// A device in the bundle: ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledDevice {
    pub device_id: String,
    pub name: String,
    pub key_id: String,
}

/// A device in the bundle, as the writer keeps it for the event log and the report: a few
/// dozen bytes, where [`BundledDevice`]'s strings would take three times as many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludedKey {
    pub device_id: DeviceId,
    pub name: DeviceName,
    pub key_id: [u8; 16],
}

impl IncludedKey {
    // A function rather than a closure: the GUI spawns the export, whose future must be `Send`
    // for every lifetime, which a closure over references does not prove to the compiler.
    fn to_bundled_key(&self) -> BundledKey {
        BundledKey { device_id: self.device_id.to_hex(), key_id: hex::encode(self.key_id) }
    }

    pub fn to_bundled_device(&self) -> BundledDevice {
        BundledDevice {
            device_id: self.device_id.to_hex(),
            name: self.name.as_str().to_owned(),
            key_id: hex::encode(self.key_id),
        }
    }
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
    pub manifest: SeriesManifest,
    /// In device-id order, as in the file.
    pub included: Vec<IncludedKey>,
    pub excluded: Vec<LeftOut>,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WriteBundleError {
    #[error("{0} exists; a bundle never replaces a file")]
    Exists(PathBuf),
    #[error("no key to put in a bundle: {}", if .excluded.is_empty() { "nothing is provisioned" } else { "every device selected was left out" })]
    NothingToBundle { excluded: Vec<LeftOut> },
    #[error("no bundle-signing key: {0}")]
    Signer(#[source] HomeError),
    #[error("cannot build the bundle: {0}")]
    Seal(#[source] SealBundleError),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the bundle just written does not verify: {0}")]
    Verify(#[source] OpenBundleError),
    #[error("cannot record the bundle in the event log, so none was written: {0}")]
    Events(#[source] DbError),
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
            WriteBundleError::NothingToBundle { excluded } => excluded,
            _ => &[],
        }
    }
}

/// One line for operators: `bundle ID from station NAME (ID), created T: N key(s) confirmed T1 .. T2`,
/// and the number of parts when there are several.
pub fn describe_manifest(manifest: &SeriesManifest) -> String {
    let time = |ms: u64| crate::time::rfc3339(i64::try_from(ms).unwrap_or(i64::MAX));
    let parts = if manifest.parts > 1 { format!(" in {} parts", manifest.parts) } else { String::new() };
    format!(
        "bundle {} from station {} ({}), created {}: {} key(s) confirmed {} .. {}{parts}",
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
    let keys_per_part = request.keys_per_part.clamp(1, MAX_ENTRIES as usize);
    let signer = home
        .bundle_signer(&station.unlocked, request.offline_root_pkcs8.as_deref().map(Vec::as_slice))
        .map_err(WriteBundleError::Signer)?;
    let now = u64::try_from(now_millis()).unwrap_or(0);
    let mut sealer = PartSealer::new(&signer, &request.recipient, now).map_err(WriteBundleError::Seal)?;
    let mut file = NewFile::create(&request.out)?;
    // Recorded while the bundle is made, committed only once it is written and verified.
    let mut events = BundleEvents::start(
        &station.inventory,
        &station.actor,
        &hex::encode(sealer.bundle_id()),
        &request.recipient.to_hex(),
    );
    let mut recorded = 0;
    let mut part: Vec<BundleEntry> = Vec::new();
    let mut included: Vec<IncludedKey> = Vec::new();
    let mut excluded = Vec::new();
    let started = std::time::Instant::now();
    let mut pages = ExportablePages::new(station, &request.filter);
    while let Some(page) = pages.next_page().await? {
        for (item, facts) in page {
            let entry = match entry_of(item, facts) {
                Ok(entry) => entry,
                Err(left) => {
                    excluded.push(left);
                    continue;
                }
            };
            if included.last().is_some_and(|previous| previous.device_id.0 >= entry.device_id.0) {
                let detail = "the inventory did not list devices in id order".into();
                return Err(ExportError::Db(DbError::Inconsistent(detail)).into());
            }
            if part.len() == keys_per_part {
                // More keys follow, so this part is not the last.
                file.write(&sealer.seal(&part, false).map_err(WriteBundleError::Seal)?)?;
                part.clear();
            }
            included.push(IncludedKey { device_id: entry.device_id, name: entry.name.clone(), key_id: entry.key_id });
            part.push(entry);
        }
        let keys = included[recorded..].iter().map(IncludedKey::to_bundled_key).collect();
        events.add(keys).await.map_err(WriteBundleError::Events)?;
        recorded = included.len();
    }
    if part.is_empty() {
        return Err(WriteBundleError::NothingToBundle { excluded });
    }
    file.write(&sealer.seal(&part, true).map_err(WriteBundleError::Seal)?)?;
    drop(part);
    file.commit()?;
    tracing::debug!(
        keys = included.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "bundle sealed and written"
    );
    let manifest = verify_written(&request.out, &station.unlocked.info.factory_root, now)?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "bundle read back and verified");
    events
        .commit(&request.out)
        .await
        .map_err(|source| WriteBundleError::Record { path: request.out.clone(), source })?;
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "bundle recorded in the event log");
    Ok(WrittenBundle { manifest, included, excluded })
}

/// The bundle entry for an exportable key; the device and the reason otherwise.
fn entry_of(item: super::ExportItem, facts: Option<KeyFacts>) -> Result<BundleEntry, LeftOut> {
    let key_id: Option<[u8; 16]> = item.key_id.as_deref().and_then(|k| hex::decode(k).ok()?.try_into().ok());
    // An inventory written by an earlier version may hold a name C2 cannot address.
    let name = match DeviceName::parse(&item.name) {
        Ok(name) => name,
        Err(error) => {
            let reason = format!("its name cannot be sent to C2: {error}");
            return Err(LeftOut { device_id: item.device_id, name: item.name, reason });
        }
    };
    match (item.key, facts, key_id, DeviceId::from_hex(&item.device_id)) {
        (Ok(key), Some(facts), Some(key_id), Some(device_id)) => Ok(BundleEntry {
            device_id,
            name,
            key_id,
            key,
            provisioned_at_ms: u64::try_from(facts.confirmed_at).unwrap_or(0),
            from_rotation: facts.rotated,
        }),
        (Err(reason), ..) => Err(LeftOut { device_id: item.device_id, name: item.name, reason }),
        _ => Err(LeftOut { device_id: item.device_id, name: item.name, reason: "its key has no usable id".into() }),
    }
}

/// Reads the file back and verifies every part, as an importer without the private key would.
fn verify_written(out: &Path, factory_root: &[u8; 32], now: u64) -> Result<SeriesManifest, WriteBundleError> {
    let opened = std::fs::File::open(out).map_err(|source| WriteBundleError::Write { path: out.into(), source })?;
    let mut reader = SeriesReader::new(BufReader::new(opened), factory_root, now);
    while reader.next_verified().map_err(WriteBundleError::Verify)?.is_some() {}
    Ok(reader.finish().map_err(WriteBundleError::Verify)?.manifest)
}

/// A bundle file being written: a temporary file beside `out` until [`NewFile::commit`] links
/// it under its name, so an interrupted or failed export never leaves a partial bundle there.
/// Dropped uncommitted, it removes the temporary file.
struct NewFile {
    out: PathBuf,
    temporary: PathBuf,
    writer: Option<BufWriter<std::fs::File>>,
}

impl NewFile {
    fn create(out: &Path) -> Result<Self, WriteBundleError> {
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
        let temporary = folder_of(out).join(format!(".{name}.{}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temporary)
            .map_err(|source| WriteBundleError::Write { path: out.into(), source })?;
        Ok(NewFile { out: out.into(), temporary, writer: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    fn failed(&self) -> impl FnOnce(std::io::Error) -> WriteBundleError + '_ {
        |source| WriteBundleError::Write { path: self.out.clone(), source }
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WriteBundleError> {
        match self.writer.as_mut() {
            Some(writer) => {
                writer.write_all(bytes).map_err(|source| WriteBundleError::Write { path: self.out.clone(), source })
            }
            None => Err(WriteBundleError::Stopped("the file was already committed".into())),
        }
    }

    fn commit(mut self) -> Result<(), WriteBundleError> {
        let writer = self.writer.take().ok_or_else(|| WriteBundleError::Stopped("committed twice".into()))?;
        let file = writer.into_inner().map_err(|e| e.into_error()).map_err(self.failed())?;
        file.sync_all().map_err(self.failed())?;
        drop(file);
        // A hard link fails if `out` appeared meanwhile, where a rename would replace it.
        match std::fs::hard_link(&self.temporary, &self.out) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(WriteBundleError::Exists(self.out.clone()));
            }
            other => other.map_err(self.failed())?,
        }
        std::fs::remove_file(&self.temporary).map_err(self.failed())?;
        std::fs::File::open(folder_of(&self.out)).and_then(|f| f.sync_all()).map_err(self.failed())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        // Removed after a commit too: the bundle lives on under its own name.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

fn folder_of(out: &Path) -> &Path {
    out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes `bytes` to `out`, which must not exist, as [`write_bundle`] writes a bundle.
#[cfg(test)]
fn write_new(out: &Path, bytes: &[u8]) -> Result<(), WriteBundleError> {
    let mut file = NewFile::create(out)?;
    file.write(bytes)?;
    file.commit()
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
