//! Where the device keeps its provisioned key.
//!
//! [`FileKeystore`] replaces its file atomically: write a temporary file (mode 0600), fsync it,
//! rename it over the old one, fsync the directory. After a crash at any instant the file holds
//! either the complete old record or the complete new one, never a mix.

use keyfill_formats::SecretKey;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A key the device holds, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub key_id: [u8; 16],
    pub key: SecretKey,
    pub station_id: [u8; 16],
    /// Unix seconds, as stated by the station.
    pub issued_at: u64,
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeystoreError {
    #[error("keystore I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("keystore file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Durable storage for the device key. `store` must be durable when it returns `Ok`.
pub trait Keystore {
    fn load(&self) -> Result<Option<StoredKey>, KeystoreError>;
    fn store(&mut self, key: &StoredKey) -> Result<(), KeystoreError>;
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    key_id: String,
    key: String,
    station_id: String,
    issued_at: u64,
}

/// A keystore in one file, for Linux devices.
#[derive(Debug, Clone)]
pub struct FileKeystore {
    path: PathBuf,
}

impl FileKeystore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKeystore { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> KeystoreError {
        KeystoreError::Io { path: self.path.clone(), source }
    }

    fn corrupt(&self, reason: impl Into<String>) -> KeystoreError {
        KeystoreError::Corrupt { path: self.path.clone(), reason: reason.into() }
    }
}

fn hex_field<const N: usize>(text: &str) -> Option<[u8; N]> {
    hex::decode(text).ok()?.try_into().ok()
}

/// Writes `contents` to `path` atomically and durably, readable by the owner only.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let directory = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = directory.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        // A stale temporary file from a crash is removed; `create_new` then guarantees the file
        // is ours and born with mode 0600.
        match fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, path)?;
        File::open(directory)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

impl Keystore for FileKeystore {
    fn load(&self) -> Result<Option<StoredKey>, KeystoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| self.corrupt(e.to_string()))?;
        if file.version != 1 {
            return Err(self.corrupt(format!("unsupported version {}", file.version)));
        }
        let key = hex_field::<32>(&file.key).ok_or_else(|| self.corrupt("key is not 32 hex bytes"))?;
        Ok(Some(StoredKey {
            key_id: hex_field(&file.key_id).ok_or_else(|| self.corrupt("key_id is not 16 hex bytes"))?,
            key: SecretKey::from_bytes(key),
            station_id: hex_field(&file.station_id).ok_or_else(|| self.corrupt("station_id is not 16 hex bytes"))?,
            issued_at: file.issued_at,
        }))
    }

    fn store(&mut self, key: &StoredKey) -> Result<(), KeystoreError> {
        let mut file = KeyFile {
            version: 1,
            key_id: hex::encode(key.key_id),
            key: hex::encode(key.key.expose()),
            station_id: hex::encode(key.station_id),
            issued_at: key.issued_at,
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| self.corrupt(e.to_string()))?;
        let result = write_atomically(&self.path, &text).map_err(|e| self.io(e));
        zeroize::Zeroize::zeroize(&mut text);
        zeroize::Zeroize::zeroize(&mut file.key);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn store_is_atomic_and_private() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut store = FileKeystore::new(dir.path().join("key.json"));
        assert!(store.load()?.is_none());
        let first =
            StoredKey { key_id: [1; 16], key: SecretKey::from_bytes([2; 32]), station_id: [3; 16], issued_at: 9 };
        store.store(&first)?;
        let second = StoredKey { key_id: [4; 16], ..first.clone() };
        store.store(&second)?;
        assert_eq!(store.load()?, Some(second));
        let mode = fs::metadata(store.path())?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = fs::read_dir(dir.path())?.count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
        Ok(())
    }

    #[test]
    fn corrupt_file_is_a_typed_error() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("key.json");
        fs::write(&path, b"{ half a reco")?;
        assert!(matches!(FileKeystore::new(path).load(), Err(KeystoreError::Corrupt { .. })));
        Ok(())
    }
}
