//! Decoding a label photograph or scan; a thin layer over [`crate::scan`] kept for
//! `keyfill provision --qr-image`.

use crate::scan::{ScanError, Scanner};
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QrImageError {
    #[error("cannot read image {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("no QR code found in {0}")]
    NotFound(String),
}

/// Decodes every QR code in the image at `path`; returns their texts.
pub fn decode_file(path: &std::path::Path) -> Result<Vec<String>, QrImageError> {
    let shown = path.display().to_string();
    let results = Scanner::default().scan_file(path).map_err(|error| match error {
        ScanError::Read { reason, .. } => QrImageError::Read { path: shown.clone(), reason },
    })?;
    if results.is_empty() {
        return Err(QrImageError::NotFound(shown));
    }
    Ok(results.into_iter().map(|result| result.text).collect())
}
