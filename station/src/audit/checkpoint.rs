//! Checkpoint files: the latest signed checkpoint of every chain, with the certificates of the
//! keys that signed them, written to be kept away from the database (with the auditor, on
//! write-once media). A chain later found shorter than a kept checkpoint was cut, even if
//! whoever cut it also rewrote the database's own checkpoints and head records.

use crate::db::audit::{SignerRow, StoredCheckpoint};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

pub const FORMAT: &str = "keyfill.audit.checkpoints.v1";
/// A checkpoint file larger than this is not one (a checkpoint is about 400 bytes).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CheckpointFileError {
    #[error("cannot read the checkpoint file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the checkpoint file {path} is larger than 16 MiB: it is not a checkpoint file")]
    TooLarge { path: PathBuf },
    #[error("{path} is not a Keyfill checkpoint file ({reason})")]
    Malformed { path: PathBuf, reason: String },
    #[error("cannot write the checkpoint file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A checkpoint file's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFile {
    pub format: String,
    pub checkpoints: Vec<StoredCheckpoint>,
    /// The certificates of the keys that signed the checkpoints.
    pub signers: Vec<KeptSigner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptSigner {
    pub public_key: String,
    pub station_id: String,
    pub certificate: String,
}

impl CheckpointFile {
    pub fn new(checkpoints: Vec<StoredCheckpoint>, signers: &[SignerRow]) -> Self {
        let signers = signers
            .iter()
            .filter(|signer| checkpoints.iter().any(|c| c.signer == signer.public_key))
            .map(|signer| KeptSigner {
                public_key: signer.public_key.clone(),
                station_id: signer.station_id.clone(),
                certificate: signer.certificate.clone(),
            })
            .collect();
        CheckpointFile { format: FORMAT.to_owned(), checkpoints, signers }
    }

    /// The kept certificates as signer rows, to be trusted as the database's are: only if the
    /// factory root signed them.
    pub fn signer_rows(&self) -> Vec<SignerRow> {
        self.signers
            .iter()
            .map(|kept| SignerRow {
                public_key: kept.public_key.clone(),
                station_id: kept.station_id.clone(),
                certificate: kept.certificate.clone(),
            })
            .collect()
    }

    pub fn read(path: &Path) -> Result<Self, CheckpointFileError> {
        use std::io::Read;
        let read_error = |source| CheckpointFileError::Read { path: path.to_path_buf(), source };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read_error)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(CheckpointFileError::TooLarge { path: path.to_path_buf() });
        }
        let malformed = |reason: String| CheckpointFileError::Malformed { path: path.to_path_buf(), reason };
        let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if file.format != FORMAT {
            return Err(malformed(format!("format {:?}, expected {FORMAT}", keyfill_formats::printable(&file.format))));
        }
        Ok(file)
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointFileError> {
        let write_error = |source| CheckpointFileError::Write { path: path.to_path_buf(), source };
        let json = serde_json::to_vec_pretty(self).map_err(|e| write_error(std::io::Error::other(e)))?;
        keyfill_agent::keystore::write_atomically(path, &json).map_err(write_error)
    }
}
