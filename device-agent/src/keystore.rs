//! Where the device keeps its provisioned key.
//!
//! [`FileKeystore`] replaces its file atomically: write a temporary file (mode 0600), fsync it,
//! rename it over the old one, fsync the directory. After a crash at any instant the file holds
//! either the complete old record or the complete new one, never a mix.

use keyfill_formats::SecretKey;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A key the device holds, with where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Id of the current client key (random when provisioned, derived from the key once rotated).
    pub key_id: [u8; 16],
    /// The current E4 client key.
    pub key: SecretKey,
    pub station_id: [u8; 16],
    /// Unix seconds, as stated by the station.
    pub issued_at: u64,
    /// E4 state beyond the client key.
    pub e4: E4Keys,
}

/// A client key received in a SetIdKey and confirmed, not yet in use: the current key stays
/// valid until a command arrives under this one or the grace period ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextKey {
    pub key: SecretKey,
    /// Timestamp of the SetIdKey that carried it.
    pub command_timestamp: u64,
    /// When the device received it (Unix seconds).
    pub received_at: u64,
}

/// Everything E4 commands set besides the client key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct E4Keys {
    pub next: Option<NextKey>,
    pub topic_keys: BTreeMap<[u8; 16], SecretKey>,
    pub pub_keys: BTreeMap<[u8; 16], [u8; 32]>,
    pub c2_key: Option<[u8; 32]>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<NextKeyFile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    topic_keys: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub_keys: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    c2_key: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct NextKeyFile {
    key: String,
    command_timestamp: u64,
    received_at: u64,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.key.zeroize();
        if let Some(next) = self.next.as_mut() {
            next.key.zeroize();
        }
        self.topic_keys.values_mut().for_each(Zeroize::zeroize);
    }
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
        crate::crash::point("write:temporary-written");
        file.sync_all()?;
        drop(file);
        crate::crash::point("write:temporary-synced");
        fs::rename(&temporary, path)?;
        crate::crash::point("write:renamed");
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
        let next = match &file.next {
            Some(next) => Some(NextKey {
                key: SecretKey::from_bytes(
                    hex_field(&next.key).ok_or_else(|| self.corrupt("next key is not 32 hex bytes"))?,
                ),
                command_timestamp: next.command_timestamp,
                received_at: next.received_at,
            }),
            None => None,
        };
        let mut topic_keys = BTreeMap::new();
        for (hash, key) in &file.topic_keys {
            let hash = hex_field(hash).ok_or_else(|| self.corrupt("topic hash is not 16 hex bytes"))?;
            let key = hex_field(key).ok_or_else(|| self.corrupt("topic key is not 32 hex bytes"))?;
            topic_keys.insert(hash, SecretKey::from_bytes(key));
        }
        let mut pub_keys = BTreeMap::new();
        for (id, key) in &file.pub_keys {
            let id = hex_field(id).ok_or_else(|| self.corrupt("client id is not 16 hex bytes"))?;
            pub_keys.insert(id, hex_field(key).ok_or_else(|| self.corrupt("public key is not 32 hex bytes"))?);
        }
        let c2_key = match &file.c2_key {
            Some(key) => Some(hex_field(key).ok_or_else(|| self.corrupt("C2 key is not 32 hex bytes"))?),
            None => None,
        };
        Ok(Some(StoredKey {
            key_id: hex_field(&file.key_id).ok_or_else(|| self.corrupt("key_id is not 16 hex bytes"))?,
            key: SecretKey::from_bytes(key),
            station_id: hex_field(&file.station_id).ok_or_else(|| self.corrupt("station_id is not 16 hex bytes"))?,
            issued_at: file.issued_at,
            e4: E4Keys { next, topic_keys, pub_keys, c2_key },
        }))
    }

    fn store(&mut self, key: &StoredKey) -> Result<(), KeystoreError> {
        let file = KeyFile {
            version: 1,
            key_id: hex::encode(key.key_id),
            key: hex::encode(key.key.expose()),
            station_id: hex::encode(key.station_id),
            issued_at: key.issued_at,
            next: key.e4.next.as_ref().map(|next| NextKeyFile {
                key: hex::encode(next.key.expose()),
                command_timestamp: next.command_timestamp,
                received_at: next.received_at,
            }),
            topic_keys: key.e4.topic_keys.iter().map(|(h, k)| (hex::encode(h), hex::encode(k.expose()))).collect(),
            pub_keys: key.e4.pub_keys.iter().map(|(id, k)| (hex::encode(id), hex::encode(k))).collect(),
            c2_key: key.e4.c2_key.map(hex::encode),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| self.corrupt(e.to_string()))?;
        let result = write_atomically(&self.path, &text).map_err(|e| self.io(e));
        zeroize::Zeroize::zeroize(&mut text);
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
        let mut first = StoredKey {
            key_id: [1; 16],
            key: SecretKey::from_bytes([2; 32]),
            station_id: [3; 16],
            issued_at: 9,
            e4: E4Keys::default(),
        };
        first.e4.next = Some(NextKey { key: SecretKey::from_bytes([5; 32]), command_timestamp: 7, received_at: 8 });
        first.e4.topic_keys.insert([6; 16], SecretKey::from_bytes([7; 32]));
        first.e4.pub_keys.insert([8; 16], [9; 32]);
        first.e4.c2_key = Some([10; 32]);
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
