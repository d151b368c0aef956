//! Decoding a label photograph or scan with rqrr.

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
    let image = image::open(path).map_err(|e| QrImageError::Read { path: shown.clone(), reason: e.to_string() })?;
    let gray = image.to_luma8();
    // rqrr can panic on some inputs inside grid detection; contain it so bad input is an error.
    let texts = std::panic::catch_unwind(move || {
        let mut prepared = rqrr::PreparedImage::prepare(gray);
        prepared
            .detect_grids()
            .into_iter()
            .filter_map(|grid| grid.decode().ok().map(|(_, text)| text))
            .collect::<Vec<_>>()
    })
    .unwrap_or_default();
    if texts.is_empty() { Err(QrImageError::NotFound(shown)) } else { Ok(texts) }
}
