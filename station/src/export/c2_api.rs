//! The slice of C2's HTTP/JSON gateway that key export needs: `GET /e4/crypto-mode`,
//! `GET /e4/clients` (paginated) and `POST /e4/client/{name}`.
//!
//! TLS only, with rustls and ring; `--ca FILE` replaces the system roots (like `curl --cacert`),
//! because a factory C2 normally sits behind a private CA. Failures are classified as transient
//! (worth retrying: connection errors, timeouts, 408, 429, 5xx) or permanent, and C2's error text
//! is bounded and scrubbed before it reaches a report.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyfill_formats::SecretKey;
use reqwest::Url;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// C2 answers bigger than this are refused (a page of 1,000 names of 255 bytes fits easily).
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Clients asked per page of `GET /e4/clients`.
const PAGE: usize = 1000;
/// Longest piece of C2's error text kept in a report.
const MAX_REASON_CHARS: usize = 200;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum C2Error {
    #[error("C2 URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot read the CA file {path}: {reason}")]
    BadCa { path: String, reason: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Client(String),
    #[error("C2 is unreachable: {0}")]
    Unreachable(String),
    #[error("C2 answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("C2's answer is not what its API documents: {0}")]
    Protocol(String),
}

impl C2Error {
    /// Whether trying the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            C2Error::Unreachable(_) => true,
            C2Error::Status { status, .. } => matches!(*status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// C2's crypto mode (`GET /e4/crypto-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoMode {
    SymmetricKey,
    PublicKey,
}

impl std::fmt::Display for CryptoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CryptoMode::SymmetricKey => "CRYPTOMODE_SYMKEY",
            CryptoMode::PublicKey => "CRYPTOMODE_PUBKEY",
        })
    }
}

/// A connection to one C2 server.
#[derive(Debug, Clone)]
pub struct C2Api {
    base: Url,
    http: reqwest::Client,
}

fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, C2Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let bad = |reason: String| C2Error::BadCa { path: path.display().to_string(), reason };
            use rustls_pki_types::pem::PemObject;
            let certificates: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| bad(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(e.to_string()))?;
            if certificates.is_empty() {
                return Err(bad("no PEM certificate in it".into()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| bad(e.to_string()))?;
            }
        }
        None => {
            let loaded = rustls_native_certs::load_native_certs();
            for certificate in loaded.certs {
                // A system store may hold certificates rustls cannot use; the others still count.
                let _ = roots.add(certificate);
            }
            if roots.is_empty() {
                return Err(C2Error::Client("no system CA certificates found; pass --ca FILE".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| C2Error::Client(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Keeps C2's error text short, printable, and free of the key that was sent.
fn scrub(text: &str, key: Option<&SecretKey>) -> String {
    let mut text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if let Some(key) = key {
        for encoding in [STANDARD.encode(key.expose()), hex::encode(key.expose()), hex::encode_upper(key.expose())] {
            text = text.replace(&encoding, "<redacted>");
        }
    }
    let trimmed = text.trim();
    match trimmed.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_owned(),
    }
}

/// The `message` of a grpc-gateway error body, or the raw text.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.into_owned())
}

fn unreachable(error: reqwest::Error) -> C2Error {
    // reqwest's Display omits the cause (refused, TLS alert, certificate); the chain names it.
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    C2Error::Unreachable(text)
}

impl C2Api {
    /// `url` is `https://HOST[:PORT]` (a path prefix is kept); `ca` replaces the system roots.
    pub fn new(url: &str, ca: Option<&Path>, timeout: Duration) -> Result<Self, C2Error> {
        let mut base = Url::parse(url).map_err(|_| C2Error::BadUrl { url: url.into(), reason: "not a URL" })?;
        if base.scheme() != "https" {
            return Err(C2Error::BadUrl { url: url.into(), reason: "keys travel to C2 only over https://" });
        }
        if base.host_str().is_none() || base.query().is_some() || !base.username().is_empty() {
            return Err(C2Error::BadUrl { url: url.into(), reason: "expected https://HOST[:PORT][/PREFIX]" });
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(ca)?)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| C2Error::Client(e.to_string()))?;
        Ok(C2Api { base, http })
    }

    /// The server as recorded in the export ledger: scheme, host, port (explicit) and prefix.
    pub fn target(&self) -> String {
        let port = self.base.port_or_known_default().unwrap_or(443);
        let host = self.base.host_str().unwrap_or_default().to_ascii_lowercase();
        format!("https://{host}:{port}{}", self.base.path().trim_end_matches('/'))
    }

    fn endpoint(&self, segments: &[&str]) -> Result<Url, C2Error> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| C2Error::BadUrl { url: self.base.to_string(), reason: "cannot carry a path" })?;
            path.pop_if_empty();
            // Each segment is percent-encoded: a name with '/' or spaces stays one segment.
            path.extend(segments);
        }
        Ok(url)
    }

    async fn read(response: reqwest::Response, key: Option<&SecretKey>) -> Result<Vec<u8>, C2Error> {
        let status = response.status();
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(C2Error::Protocol(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok(body)
        } else {
            Err(C2Error::Status { status: status.as_u16(), message: scrub(&error_message(&body), key) })
        }
    }

    async fn get_json(&self, url: Url) -> Result<serde_json::Value, C2Error> {
        let response = self.http.get(url).send().await.map_err(unreachable)?;
        let body = Self::read(response, None).await?;
        serde_json::from_slice(&body).map_err(|e| C2Error::Protocol(format!("not JSON: {e}")))
    }

    /// `GET /e4/crypto-mode`. grpc-gateway writes the enum by name; its numbers are accepted too.
    pub async fn crypto_mode(&self) -> Result<CryptoMode, C2Error> {
        let value = self.get_json(self.endpoint(&["e4", "crypto-mode"])?).await?;
        let mode = value.get("CryptoMode").or_else(|| value.get("cryptoMode"));
        match mode {
            Some(serde_json::Value::String(s)) if s == "CRYPTOMODE_SYMKEY" => Ok(CryptoMode::SymmetricKey),
            Some(serde_json::Value::String(s)) if s == "CRYPTOMODE_PUBKEY" => Ok(CryptoMode::PublicKey),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1) => Ok(CryptoMode::SymmetricKey),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(2) => Ok(CryptoMode::PublicKey),
            _ => Err(C2Error::Protocol(format!("unknown crypto mode in {}", scrub(&value.to_string(), None)))),
        }
    }

    /// Every client name C2 holds, page by page (`GET /e4/clients?offset=N&count=M`).
    pub async fn client_names(&self) -> Result<std::collections::HashSet<String>, C2Error> {
        let mut names = std::collections::HashSet::new();
        loop {
            let mut url = self.endpoint(&["e4", "clients"])?;
            url.query_pairs_mut()
                .append_pair("offset", &names.len().to_string())
                .append_pair("count", &PAGE.to_string());
            let value = self.get_json(url).await?;
            // grpc-gateway omits an empty repeated field: `{}` is an empty page.
            let page = match value.get("clients") {
                None => Vec::new(),
                Some(serde_json::Value::Array(clients)) => clients.clone(),
                Some(_) => return Err(C2Error::Protocol("`clients` is not a list".into())),
            };
            let before = names.len();
            for client in &page {
                let name = client
                    .get("name")
                    .and_then(|n| n.as_str())
                    .ok_or_else(|| C2Error::Protocol("a client without a name".into()))?;
                names.insert(name.to_owned());
            }
            // A short page ends the list; a page of names already seen would loop forever.
            if page.len() < PAGE || names.len() == before {
                return Ok(names);
            }
        }
    }

    /// `POST /e4/client/{name}` with the key: C2's NewClient, an upsert.
    pub async fn put_client_key(&self, name: &str, key: &SecretKey) -> Result<(), C2Error> {
        let url = self.endpoint(&["e4", "client", name])?;
        let body = zeroize::Zeroizing::new(
            serde_json::json!({ "client": { "name": name }, "key": STANDARD.encode(key.expose()) }).to_string(),
        );
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(unreachable)?;
        Self::read(response, Some(key)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_key_and_bounds_the_text() {
        let key = SecretKey::from_bytes([7; 32]);
        let text = format!("bad key {} or {}\n", STANDARD.encode(key.expose()), hex::encode(key.expose()));
        let scrubbed = scrub(&text, Some(&key));
        assert_eq!(scrubbed, "bad key <redacted> or <redacted>");
        assert_eq!(scrub(&"x".repeat(500), None).chars().count(), MAX_REASON_CHARS + 1);
    }

    #[test]
    fn only_https_urls_are_accepted() {
        let timeout = Duration::from_secs(1);
        assert!(matches!(C2Api::new("http://c2:8888", None, timeout), Err(C2Error::BadUrl { .. })));
        assert!(matches!(C2Api::new("c2:8888", None, timeout), Err(C2Error::BadUrl { .. })));
    }

    #[test]
    fn names_stay_one_path_segment() -> Result<(), C2Error> {
        let ca = std::env::temp_dir().join(format!("keyfill-no-such-ca-{}", std::process::id()));
        let api = match C2Api::new("https://C2.example:8888/prefix", None, Duration::from_secs(1)) {
            Ok(api) => api,
            // A machine without system roots: the URL logic is what this test is about.
            Err(C2Error::Client(_)) => return Ok(()),
            Err(other) => return Err(other),
        };
        assert!(matches!(C2Api::new("https://c2", Some(&ca), Duration::from_secs(1)), Err(C2Error::BadCa { .. })));
        assert_eq!(api.target(), "https://c2.example:8888/prefix");
        let url = api.endpoint(&["e4", "client", "line 3/cell 7"])?;
        assert_eq!(url.as_str(), "https://c2.example:8888/prefix/e4/client/line%203%2Fcell%207");
        Ok(())
    }

    #[test]
    fn transient_failures_are_the_retryable_ones() {
        let status = |status| C2Error::Status { status, message: String::new() };
        assert!(status(503).is_transient() && status(500).is_transient() && status(429).is_transient());
        assert!(!status(400).is_transient() && !status(404).is_transient());
        assert!(C2Error::Unreachable("refused".into()).is_transient());
        assert!(!C2Error::Protocol("x".into()).is_transient());
    }
}
