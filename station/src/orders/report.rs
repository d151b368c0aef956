//! A work order's reconciliation report, signed for the MES.
//!
//! The signature is a JWS (RFC 7515) in compact serialisation with EdDSA over Ed25519 (RFC 8037),
//! made by the station's signing key (the key that signs its bundles, certified by the factory
//! root). Its protected header carries the public key as a JWK and the key's certificate, so that
//! any JOSE library checks the signature, and a Keyfill station (`keyfill orders verify-report`)
//! also checks the certificate against the factory root.

use super::OrderError;
use crate::bundle::{BundleSigner, signer_certificate_trusted};
use crate::db::orders::{self, ItemState, Unexpected};
use crate::db::{DbError, meta};
use crate::provision::Station;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyfill_formats::cert::BundleSignerCertificate;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub const REPORT_FORMAT: &str = "keyfill-order-report-v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub expected: i64,
    pub provisioned: i64,
    pub failed: i64,
    /// Keys sent and not yet confirmed.
    pub pending: i64,
    /// Not yet keyed at all.
    pub not_started: i64,
    pub unexpected: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportDevice {
    pub name: String,
    pub device_id: String,
    pub serial_number: String,
    pub model: Option<String>,
    pub batch: Option<String>,
    pub link: Option<String>,
    /// `provisioned`, `failed`, `pending` or `not_started`.
    pub state: String,
    pub key_id: Option<String>,
    pub provisioned_at: Option<String>,
    /// The station that recorded the device's key.
    pub station_id: Option<String>,
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnexpectedDevice {
    pub name: String,
    pub device_id: String,
    pub state: String,
    pub key_id: Option<String>,
    pub provisioned_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderReport {
    pub format: String,
    pub order: String,
    /// `open` or `closed`.
    pub state: String,
    pub source: String,
    pub imported_at: String,
    pub closed_at: Option<String>,
    /// Why the order was closed with devices outstanding.
    pub close_reason: Option<String>,
    pub generated_at: String,
    pub station_id: String,
    pub station_name: String,
    pub counts: Counts,
    pub devices: Vec<ReportDevice>,
    pub unexpected: Vec<UnexpectedDevice>,
}

/// RFC 3339 UTC with milliseconds, as every Keyfill report writes times.
fn rfc3339(millis: i64) -> String {
    crate::time::rfc3339(millis)
}

fn device(item: ItemState) -> ReportDevice {
    ReportDevice {
        state: item.state.clone().unwrap_or_else(|| "not_started".into()),
        name: item.device_name,
        device_id: item.device_id,
        serial_number: item.serial_number,
        model: item.model,
        batch: item.batch,
        link: item.link,
        key_id: item.key_id.filter(|_| item.state.is_some()),
        provisioned_at: item.provisioned_at.map(rfc3339),
        station_id: item.station_id,
        failure: item.failure.filter(|_| item.state.as_deref() != Some("provisioned")),
    }
}

/// The order's reconciliation as the database holds it now.
pub async fn build(station: &Station, id: &str) -> Result<OrderReport, OrderError> {
    let pool = station.inventory.pool();
    let order = orders::get(pool, id).await?.ok_or_else(|| OrderError::NotFound(id.to_owned()))?;
    let items = orders::items(pool, id).await?;
    let unexpected: Vec<Unexpected> = orders::unexpected(pool, id).await?;
    let devices: Vec<ReportDevice> = items.into_iter().map(device).collect();
    let count = |state: &str| devices.iter().filter(|d| d.state == state).count() as i64;
    let counts = Counts {
        expected: devices.len() as i64,
        provisioned: count("provisioned"),
        failed: count("failed"),
        pending: count("pending"),
        not_started: count("not_started"),
        unexpected: unexpected.len() as i64,
    };
    let station_id = station.actor.station_id.clone();
    Ok(OrderReport {
        format: REPORT_FORMAT.into(),
        order: order.id,
        state: order.state,
        source: order.source,
        imported_at: rfc3339(order.imported_at),
        closed_at: order.closed_at.map(rfc3339),
        close_reason: order.close_reason,
        generated_at: rfc3339(crate::db::now_millis()),
        station_name: meta::station_name(pool, &station_id).await.map_err(OrderError::Db)?,
        station_id,
        counts,
        devices,
        unexpected: unexpected
            .into_iter()
            .map(|d| UnexpectedDevice {
                name: d.name,
                device_id: d.device_id,
                state: d.state,
                key_id: d.key_id,
                provisioned_at: d.provisioned_at.map(rfc3339),
            })
            .collect(),
    })
}

/// The report as CSV: one row per expected device, then one per unexpected device.
pub fn to_csv(report: &OrderReport) -> Result<Vec<u8>, DbError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let error = |e: csv::Error| DbError::Inconsistent(format!("cannot write the CSV report: {e}"));
    writer
        .write_record([
            "order",
            "expected",
            "device_name",
            "device_id",
            "serial_number",
            "model",
            "batch",
            "state",
            "key_id",
            "provisioned_at",
            "station_id",
        ])
        .map_err(error)?;
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    for device in &report.devices {
        writer
            .write_record([
                report.order.as_str(),
                "yes",
                &device.name,
                &device.device_id,
                &device.serial_number,
                &text(&device.model),
                &text(&device.batch),
                &device.state,
                &text(&device.key_id),
                &text(&device.provisioned_at),
                &text(&device.station_id),
            ])
            .map_err(error)?;
    }
    for device in &report.unexpected {
        writer
            .write_record([
                report.order.as_str(),
                "no",
                &device.name,
                &device.device_id,
                "",
                "",
                "",
                &device.state,
                &text(&device.key_id),
                &text(&device.provisioned_at),
                "",
            ])
            .map_err(error)?;
    }
    writer.into_inner().map_err(|e| DbError::Inconsistent(format!("cannot write the CSV report: {e}")))
}

#[derive(Debug, Serialize, Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    /// `json` or `csv`: what the payload is.
    cty: String,
    jwk: Jwk,
    /// Hex of the key's certificate from the factory root (Keyfill's bundle-signer
    /// certificate, docs/formats.md).
    keyfill_signer_certificate: String,
}

/// Signs `payload` (the report's exact bytes, of content type `json` or `csv`) as a compact JWS.
pub fn sign(payload: &[u8], content_type: &str, signer: &BundleSigner) -> Result<String, crate::bundle::SignerError> {
    let certificate = signer.certificate();
    let header = Header {
        alg: "EdDSA".into(),
        cty: content_type.into(),
        jwk: Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(certificate.body.signing_public),
        },
        keyfill_signer_certificate: hex::encode(certificate.encode()),
    };
    let header = serde_json::to_vec(&header).map_err(|_| crate::bundle::SignerError::BadKey)?;
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let signature = signer.sign(input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportSignatureError {
    #[error("not a compact JWS (three base64url parts joined by dots)")]
    Malformed,
    #[error("the JWS header is not Keyfill's (EdDSA, an Ed25519 JWK and the signer's certificate): {0}")]
    Header(String),
    #[error("the signer's certificate is not signed by this factory root")]
    Untrusted,
    #[error("the JWK is not the key the certificate certifies")]
    KeyMismatch,
    #[error("the signature does not verify: the report was altered, or not signed by its certified signer")]
    BadSignature,
}

/// A verified report: its payload, content type and signer.
#[derive(Debug)]
pub struct Verified {
    pub payload: Vec<u8>,
    pub content_type: String,
    pub certificate: BundleSignerCertificate,
}

/// Checks a compact JWS made by [`sign`] against `factory_root`.
pub fn verify(jws: &str, factory_root: &[u8; 32]) -> Result<Verified, ReportSignatureError> {
    let jws = jws.trim();
    let parts: Vec<&str> = jws.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts.as_slice() else {
        return Err(ReportSignatureError::Malformed);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| ReportSignatureError::Malformed);
    let header: Header = serde_json::from_slice(&decode(header_b64)?)
        .map_err(|e| ReportSignatureError::Header(keyfill_formats::printable(&e.to_string()).into_owned()))?;
    if header.alg != "EdDSA" || header.jwk.kty != "OKP" || header.jwk.crv != "Ed25519" {
        return Err(ReportSignatureError::Header("alg must be EdDSA with an Ed25519 OKP key".into()));
    }
    let certificate_bytes = hex::decode(&header.keyfill_signer_certificate)
        .map_err(|_| ReportSignatureError::Header("the certificate is not hex".into()))?;
    let certificate = BundleSignerCertificate::decode(&certificate_bytes)
        .map_err(|e| ReportSignatureError::Header(format!("certificate: {e}")))?;
    if !signer_certificate_trusted(&certificate, factory_root) {
        return Err(ReportSignatureError::Untrusted);
    }
    if decode(&header.jwk.x)? != certificate.body.signing_public {
        return Err(ReportSignatureError::KeyMismatch);
    }
    let signature = decode(signature_b64)?;
    let input = format!("{header_b64}.{payload_b64}");
    UnparsedPublicKey::new(&ED25519, certificate.body.signing_public)
        .verify(input.as_bytes(), &signature)
        .map_err(|_| ReportSignatureError::BadSignature)?;
    Ok(Verified { payload: decode(payload_b64)?, content_type: header.cty, certificate })
}
