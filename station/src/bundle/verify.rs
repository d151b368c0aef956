//! Everything checked before a bundle is decrypted. A [`VerifiedBundle`] can only be made here,
//! so decryption cannot be reached without these checks.

use super::OpenBundleError;
use super::signer::{self, Distrust};
use keyfill_formats::bundle::{BundleFile, to_hex};
use keyfill_formats::cert;

/// How far in the importer's future a bundle's creation time may lie (clock skew between an
/// air-gapped station and the importer).
pub const MAX_CREATION_SKEW_MS: u64 = 24 * 3600 * 1000;

/// A bundle whose signer certificate, signature and manifest have been checked.
#[derive(Debug)]
pub(crate) struct VerifiedBundle<'a> {
    file: BundleFile<'a>,
}

impl<'a> VerifiedBundle<'a> {
    pub(crate) fn file(&self) -> &BundleFile<'a> {
        &self.file
    }
}

/// Checks, in order: the signer certificate against the pinned root (root key id, signature),
/// the bundle signature with the certified key, that the manifest names the certified station,
/// that the certificate was valid at the bundle's creation time, and that the creation time is
/// not in the future.
pub(crate) fn verify<'a>(
    file: BundleFile<'a>,
    factory_root: &[u8; 32],
    now_ms: u64,
) -> Result<VerifiedBundle<'a>, OpenBundleError> {
    let certificate = &file.signer_certificate;
    signer::verify_certificate(certificate, factory_root).map_err(|distrust| match distrust {
        Distrust::OtherRoot => OpenBundleError::SignerOtherRoot {
            found: to_hex(&certificate.body.root_key_id),
            expected: to_hex(&cert::root_key_id(factory_root)),
        },
        Distrust::BadSignature => OpenBundleError::SignerUntrusted,
    })?;
    let body = &certificate.body;
    if !signer::signature_valid(&body.signing_public, &file.signing_input(), &file.signature) {
        return Err(OpenBundleError::BadSignature);
    }
    // From here on the manifest is the signer's own statement.
    let manifest = &file.manifest;
    if manifest.station_id != body.station_id || manifest.station_name != body.station_name {
        return Err(OpenBundleError::StationMismatch {
            manifest_station: to_hex(&manifest.station_id),
            certified_station: to_hex(&body.station_id),
        });
    }
    let created_at = manifest.created_at_ms / 1000;
    if !body.valid_at(created_at) {
        return Err(OpenBundleError::SignerNotValidAtCreation {
            created_at,
            not_before: body.not_before,
            not_after: body.not_after,
        });
    }
    if manifest.created_at_ms > now_ms.saturating_add(MAX_CREATION_SKEW_MS) {
        return Err(OpenBundleError::CreatedInFuture { created_at_ms: manifest.created_at_ms, now_ms });
    }
    Ok(VerifiedBundle { file })
}
