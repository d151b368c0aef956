//! Decoding a label photograph or scan; a thin layer over [`crate::scan`] kept for
//! `keyfill provision --qr-image`, with the same image limits.

use crate::scan::{ImageFileError, ScanError, Scanner};
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum QrImageError {
    #[error(transparent)]
    Image(#[from] ImageFileError),
    #[error("no QR code found in {0}")]
    NotFound(String),
}

/// Decodes every QR code in the image at `path`; returns their texts.
pub fn decode_file(path: &std::path::Path) -> Result<Vec<String>, QrImageError> {
    let shown = path.display().to_string();
    let results = Scanner::default().scan_file(path).map_err(|error| match error {
        ScanError::Image(error) => QrImageError::Image(error),
    })?;
    if results.is_empty() {
        return Err(QrImageError::NotFound(shown));
    }
    Ok(results.into_iter().map(|result| result.text).collect())
}
