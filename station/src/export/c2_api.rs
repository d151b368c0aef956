//! The slice of C2's HTTP/JSON gateway that key export needs: `GET /e4/health-check`,
//! `GET /e4/crypto-mode`, `GET /e4/clients` (paged) with `GET /e4/clients/count`, and
//! `POST /e4/client/{name}`.
//!
//! TLS only, with rustls and ring; `--ca FILE` replaces the system roots (like `curl --cacert`),
//! because a factory C2 normally sits behind a private CA. Failures are classified as transient
//! (worth retrying: connection errors, timeouts, 408, 429, 5xx, a client list that moved while it
//! was read) or permanent, and each says what happened and what to do in words; C2's own message
//! is bounded and scrubbed before it reaches a report.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use keyfill_formats::{DeviceName, SecretKey};
use reqwest::Url;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// C2 answers bigger than this are refused (a page of 100 names of 255 bytes fits easily).
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Clients asked per page of `GET /e4/clients`: C2 serves at most 100 whatever is asked, so a
/// page shorter than asked does not mean the end; the list ends with an empty page.
const PAGE: u64 = 100;
/// Longest piece of C2's error text kept in a report.
const MAX_REASON_CHARS: usize = 200;
/// Most client names read from C2 (about 100 MB of names at worst): a count above it is refused
/// rather than paged through without end.
const MAX_CLIENTS: u64 = 1_000_000;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum C2Error {
    #[error("C2 URL {url:?} is not usable: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("cannot read the CA file {path}: {reason}")]
    BadCa { path: String, reason: String },
    #[error("cannot set up the HTTPS client: {0}")]
    Client(String),
    /// No answer at all: refused, reset, unresolvable, timed out.
    #[error("C2 at {target} is unreachable: {why}; {}", .why.advice())]
    Unreachable { target: String, why: NoAnswer },
    /// TLS failed: C2's certificate is not one this station trusts.
    #[error(
        "C2's TLS certificate at {target} is not trusted: {why}; pass --ca FILE with the PEM certificate of the CA \
         that signed it"
    )]
    Untrusted { target: String, why: String },
    /// C2 (or a proxy in front of it) answered with an error status.
    #[error("C2 answered HTTP {status}{}: {message}; {}", describe_code(*.code), advice(*.status, *.code))]
    Status {
        status: u16,
        /// The gRPC code of a grpc-gateway error body; `None` for a plain-text answer.
        code: Option<i64>,
        message: String,
    },
    /// Client names appeared or vanished while the list was read page by page.
    #[error(
        "C2's client list changed while Keyfill read it ({counted_before} clients counted before, {listed} listed, \
         {counted_after} counted after): another tool is registering or removing clients; nothing was exported: \
         run the export again once C2's list is still"
    )]
    ListChanged { counted_before: u64, listed: u64, counted_after: u64 },
    #[error(
        "C2's answer is not what its API documents: {0}; check that --url is C2's HTTP gateway (not a proxy's \
         or another service's page) and that this C2 version is supported"
    )]
    Protocol(String),
}

impl C2Error {
    /// Whether trying the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            C2Error::Unreachable { .. } | C2Error::ListChanged { .. } => true,
            C2Error::Status { status, .. } => matches!(*status, 408 | 429 | 500..=599),
            _ => false,
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoAnswer {
    Refused,
    Reset,
    TimedOut,
    UnknownHost,
    Other(String),
}

impl NoAnswer {
    fn advice(&self) -> &'static str {
        match self {
            NoAnswer::Refused => "is C2 running, and is the port in --url right?",
            NoAnswer::Reset => "a proxy or firewall may be closing connections to C2; check the network path",
            NoAnswer::TimedOut => {
                "C2 may be overloaded or a firewall may drop the packets; raise --timeout if C2 is slow"
            }
            NoAnswer::UnknownHost => "check the host name in --url",
            NoAnswer::Other(_) => "check the network path to C2",
        }
    }
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoAnswer::Refused => f.write_str("connection refused"),
            NoAnswer::Reset => f.write_str("the connection was reset"),
            NoAnswer::TimedOut => f.write_str("no answer in time"),
            NoAnswer::UnknownHost => f.write_str("the host name does not resolve"),
            NoAnswer::Other(text) => f.write_str(text),
        }
    }
}

/// ` (invalid argument)`: the gRPC code of an error body, in words.
fn describe_code(code: Option<i64>) -> String {
    let name = match code {
        None => return String::new(),
        Some(1) => "cancelled",
        Some(2) => "unknown error",
        Some(3) => "invalid argument",
        Some(4) => "deadline exceeded",
        Some(5) => "not found",
        Some(6) => "already exists",
        Some(7) => "permission denied",
        Some(8) => "resource exhausted",
        Some(9) => "failed precondition",
        Some(12) => "unimplemented",
        Some(13) => "internal error",
        Some(14) => "unavailable",
        Some(16) => "unauthenticated",
        Some(other) => return format!(" (gRPC code {other})"),
    };
    format!(" ({name})")
}

/// What the operator can do about an error status.
fn advice(status: u16, code: Option<i64>) -> &'static str {
    match (status, code) {
        (400, _) => "C2 refused the request as invalid: the message above says what it refused",
        (401 | 403, _) => "access control in front of C2 refused this station: check its rules for this station",
        (404, None) | (405, None) => {
            "this is not a C2 API route: check that --url names C2's HTTP gateway, https://HOST:PORT"
        }
        (404, Some(_)) => "C2 has no such client",
        (408 | 429, _) => "C2 or a proxy in front of it is limiting requests: lower --concurrency or try later",
        (413, _) => "a proxy in front of C2 refused the request's size",
        (500..=599, _) => "C2 failed to do it: Keyfill retries such failures; if they persist, check C2's log",
        _ => "check C2's log and its version",
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

/// The gRPC code and message of a grpc-gateway error body, or (`None`, first line) of a
/// plain-text answer.
fn error_body(body: &[u8]) -> (Option<i64>, String) {
    let text = String::from_utf8_lossy(body);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        let field = |name| value.get(name).and_then(|m| m.as_str()).filter(|m| !m.is_empty()).map(str::to_owned);
        if let Some(message) = field("message").or_else(|| field("error")) {
            return (value.get("code").and_then(int64), message);
        }
    }
    (None, text.lines().next().unwrap_or_default().to_owned())
}

/// An int64 as grpc-gateway writes it: a JSON string of digits (a number is accepted too).
fn int64(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::String(text) => text.parse().ok(),
        serde_json::Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// Names the cause of a failed request in words: the error chain of the HTTP library is for
/// its developers, not for an operator.
fn no_answer(error: reqwest::Error, target: &str) -> C2Error {
    let target = target.to_owned();
    if error.is_timeout() {
        return C2Error::Unreachable { target, why: NoAnswer::TimedOut };
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut innermost = String::new();
    while let Some(cause) = source {
        let (tls, kinds) = look_inside(cause);
        if let Some(tls) = tls {
            return match tls {
                rustls::Error::InvalidCertificate(why) => C2Error::Untrusted { target, why: describe_certificate(why) },
                other => C2Error::Untrusted { target, why: format!("the TLS handshake failed ({other})") },
            };
        }
        use std::io::ErrorKind as Kind;
        for kind in kinds {
            let why = match kind {
                Kind::ConnectionRefused => NoAnswer::Refused,
                Kind::ConnectionReset | Kind::ConnectionAborted => NoAnswer::Reset,
                Kind::TimedOut => NoAnswer::TimedOut,
                _ => continue,
            };
            return C2Error::Unreachable { target, why };
        }
        let text = cause.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return C2Error::Unreachable { target, why: NoAnswer::UnknownHost };
        }
        innermost = text;
        source = cause.source();
    }
    C2Error::Unreachable { target, why: NoAnswer::Other(scrub(&innermost, None)) }
}

/// The TLS error inside `error`, and the kinds of the I/O errors it wraps: connectors nest one
/// `io::Error` inside another, whose `source` skips the inner one.
fn look_inside<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> (Option<&'a rustls::Error>, Vec<std::io::ErrorKind>) {
    let mut kinds = Vec::new();
    let mut current = error;
    // Bounded: a connector nests a handful of layers at most.
    for _ in 0..8 {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return (Some(tls), kinds);
        }
        let Some(io) = current.downcast_ref::<std::io::Error>() else { break };
        kinds.push(io.kind());
        match io.get_ref() {
            Some(inner) => current = inner,
            None => break,
        }
    }
    (None, kinds)
}

fn describe_certificate(error: &rustls::CertificateError) -> String {
    use rustls::CertificateError as Why;
    match error {
        Why::UnknownIssuer => "it is signed by a CA this station does not trust".into(),
        Why::NotValidForName | Why::NotValidForNameContext { .. } => "it does not name the host in --url".into(),
        Why::Expired | Why::ExpiredContext { .. } => "it has expired".into(),
        Why::NotValidYet | Why::NotValidYetContext { .. } => "it is not valid yet (check this station's clock)".into(),
        Why::Revoked => "it has been revoked".into(),
        other => format!("{other:?}"),
    }
}

/// Every byte but the unreserved ones (RFC 3986) percent-encoded, so that the path segment C2
/// decodes is the name, byte for byte. Written out rather than left to the URL library, whose
/// segment encoding drops tabs and line breaks without a word.
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
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

    /// `path` (already percent-encoded, relative) under the base URL, checked to have come out
    /// exactly as written.
    fn endpoint(&self, path: &str) -> Result<Url, C2Error> {
        let url = self
            .base
            .join(path)
            .map_err(|_| C2Error::BadUrl { url: self.base.to_string(), reason: "cannot carry a path" })?;
        if url.path() != format!("{}{path}", self.base.path()) {
            return Err(C2Error::Protocol(format!("the request path for {path:?} would not be sent as written")));
        }
        Ok(url)
    }

    /// `/e4/client/{name}`, the name percent-encoded byte for byte.
    fn client_url(&self, name: &DeviceName) -> Result<Url, C2Error> {
        self.endpoint(&format!("e4/client/{}", encode_segment(name.as_str())))
    }

    async fn read(&self, response: reqwest::Response, key: Option<&SecretKey>) -> Result<Vec<u8>, C2Error> {
        let status = response.status();
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| no_answer(e, &self.target()))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(C2Error::Protocol(format!("answer larger than {MAX_RESPONSE_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok(body)
        } else {
            let (code, message) = error_body(&body);
            let message = match scrub(&message, key) {
                message if message.is_empty() => status.canonical_reason().unwrap_or("no message").to_owned(),
                message => message,
            };
            Err(C2Error::Status { status: status.as_u16(), code, message })
        }
    }

    async fn get_json(&self, url: Url) -> Result<serde_json::Value, C2Error> {
        let response = self.http.get(url).send().await.map_err(|e| no_answer(e, &self.target()))?;
        let body = self.read(response, None).await?;
        serde_json::from_slice(&body).map_err(|e| C2Error::Protocol(format!("not JSON: {e}")))
    }

    /// `GET /e4/health-check`: C2's HTTP side answers briefly before its gRPC side is ready, so
    /// anything but `{"Code":"0",…}` is an error (transient when C2 says 5xx).
    pub async fn health(&self) -> Result<(), C2Error> {
        let value = self.get_json(self.endpoint("e4/health-check")?).await?;
        match value.get("Code").or_else(|| value.get("code")).and_then(int64) {
            Some(0) => Ok(()),
            _ => Err(C2Error::Protocol(format!("C2 reports itself unwell: {}", scrub(&value.to_string(), None)))),
        }
    }

    /// `GET /e4/crypto-mode`. grpc-gateway writes the enum by name; its numbers are accepted too.
    pub async fn crypto_mode(&self) -> Result<CryptoMode, C2Error> {
        let value = self.get_json(self.endpoint("e4/crypto-mode")?).await?;
        let mode = value.get("CryptoMode").or_else(|| value.get("cryptoMode"));
        match mode {
            Some(serde_json::Value::String(s)) if s == "CRYPTOMODE_SYMKEY" => Ok(CryptoMode::SymmetricKey),
            Some(serde_json::Value::String(s)) if s == "CRYPTOMODE_PUBKEY" => Ok(CryptoMode::PublicKey),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(1) => Ok(CryptoMode::SymmetricKey),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(2) => Ok(CryptoMode::PublicKey),
            _ => Err(C2Error::Protocol(format!("unknown crypto mode in {}", scrub(&value.to_string(), None)))),
        }
    }

    /// `GET /e4/clients/count`, an int64 written as a JSON string (`{"count":"126"}`).
    pub async fn client_count(&self) -> Result<u64, C2Error> {
        let value = self.get_json(self.endpoint("e4/clients/count")?).await?;
        value
            .get("count")
            .map_or(Some(0), int64) // grpc-gateway may omit a zero
            .and_then(|count| u64::try_from(count).ok())
            .ok_or_else(|| C2Error::Protocol(format!("no client count in {}", scrub(&value.to_string(), None))))
    }

    /// Every client name C2 holds. C2 serves at most 100 names a page whatever is asked, so pages
    /// are read until an empty one; the count is read before and after. A name seen twice, or
    /// counts that disagree with each other or with the names listed, mean the list moved while
    /// it was read: a missed name would be taken for a client C2 lacks, and overwritten.
    pub async fn client_names(&self) -> Result<HashSet<String>, C2Error> {
        let counted_before = self.client_count().await?;
        if counted_before > MAX_CLIENTS {
            return Err(C2Error::Protocol(format!(
                "C2 counts {counted_before} clients, more than the {MAX_CLIENTS} Keyfill reads to check for existing clients"
            )));
        }
        let mut names = HashSet::new();
        let mut listed: u64 = 0;
        let changed = |listed, counted_after| C2Error::ListChanged { counted_before, listed, counted_after };
        loop {
            if listed > counted_before {
                return Err(changed(listed, self.client_count().await?));
            }
            let mut url = self.endpoint("e4/clients")?;
            url.set_query(Some(&format!("offset={listed}&count={PAGE}")));
            let value = self.get_json(url).await?;
            // C2 writes `{"clients":[]}` for an empty page; grpc-gateway may also omit the field.
            let page = match value.get("clients") {
                None => return self.check_total(names, listed, counted_before).await,
                Some(serde_json::Value::Array(clients)) if clients.is_empty() => {
                    return self.check_total(names, listed, counted_before).await;
                }
                Some(serde_json::Value::Array(clients)) => clients,
                Some(_) => return Err(C2Error::Protocol("`clients` is not a list".into())),
            };
            for client in page {
                let name = client
                    .get("name")
                    .and_then(|n| n.as_str())
                    .ok_or_else(|| C2Error::Protocol("a client without a name".into()))?;
                if !names.insert(name.to_owned()) {
                    // A name seen on an earlier page: names shifted under the offsets.
                    return Err(changed(listed, self.client_count().await?));
                }
                listed += 1;
            }
        }
    }

    async fn check_total(
        &self,
        names: HashSet<String>,
        listed: u64,
        counted_before: u64,
    ) -> Result<HashSet<String>, C2Error> {
        let counted_after = self.client_count().await?;
        if counted_before != counted_after || listed != counted_after {
            return Err(C2Error::ListChanged { counted_before, listed, counted_after });
        }
        Ok(names)
    }

    /// `POST /e4/client/{name}` with the key: C2's NewClient, an upsert.
    pub async fn put_client_key(&self, name: &DeviceName, key: &SecretKey) -> Result<(), C2Error> {
        let url = self.client_url(name)?;
        let body = zeroize::Zeroizing::new(
            serde_json::json!({ "client": { "name": name.as_str() }, "key": STANDARD.encode(key.expose()) })
                .to_string(),
        );
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| no_answer(e, &self.target()))?;
        self.read(response, Some(key)).await.map(|_| ())
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
    fn c2_export_names_travel_byte_for_byte_in_one_path_segment() -> Result<(), Box<dyn std::error::Error>> {
        let ca = std::env::temp_dir().join(format!("keyfill-no-such-ca-{}", std::process::id()));
        let api = match C2Api::new("https://C2.example:8888/prefix", None, Duration::from_secs(1)) {
            Ok(api) => api,
            // A machine without system roots: the URL logic is what this test is about.
            Err(C2Error::Client(_)) => return Ok(()),
            Err(other) => return Err(other.into()),
        };
        assert!(matches!(C2Api::new("https://c2", Some(&ca), Duration::from_secs(1)), Err(C2Error::BadCa { .. })));
        assert_eq!(api.target(), "https://c2.example:8888/prefix");
        let name = DeviceName::parse("line 3 · cell 7 100%&=+;@\\~é")?;
        let url = api.client_url(&name)?;
        assert_eq!(
            url.as_str(),
            "https://c2.example:8888/prefix/e4/client/line%203%20%C2%B7%20cell%207%20100%25%26%3D%2B%3B%40%5C~%C3%A9"
        );
        assert_eq!(api.endpoint("e4/clients/count")?.as_str(), "https://c2.example:8888/prefix/e4/clients/count");
        Ok(())
    }

    #[test]
    fn c2_export_c2_errors_read_as_words() {
        let body = br#"{"error":"invalid key: all zero","code":3,"message":"invalid key: all zero","details":[]}"#;
        assert_eq!(error_body(body), (Some(3), "invalid key: all zero".to_owned()));
        assert_eq!(error_body(b"Not Found\n"), (None, "Not Found".to_owned()));
        assert_eq!(int64(&serde_json::json!("126")), Some(126));
        assert_eq!(int64(&serde_json::json!(126)), Some(126));

        let refused = C2Error::Status { status: 400, code: Some(3), message: "invalid key: all zero".into() };
        assert_eq!(
            refused.to_string(),
            "C2 answered HTTP 400 (invalid argument): invalid key: all zero; C2 refused the request as invalid: the \
             message above says what it refused"
        );
        let no_route = C2Error::Status { status: 404, code: None, message: "Not Found".into() };
        assert!(no_route.to_string().contains("check that --url names C2's HTTP gateway"), "{no_route}");
        let down = C2Error::Unreachable { target: "https://c2:8888".into(), why: NoAnswer::Refused };
        assert_eq!(
            down.to_string(),
            "C2 at https://c2:8888 is unreachable: connection refused; is C2 running, and is the port in --url right?"
        );
    }

    #[test]
    fn transient_failures_are_the_retryable_ones() {
        let status = |status| C2Error::Status { status, code: None, message: String::new() };
        assert!(status(503).is_transient() && status(500).is_transient() && status(429).is_transient());
        assert!(!status(400).is_transient() && !status(404).is_transient());
        assert!(C2Error::Unreachable { target: "https://c2".into(), why: NoAnswer::Refused }.is_transient());
        assert!(C2Error::ListChanged { counted_before: 1, listed: 2, counted_after: 2 }.is_transient());
        assert!(!C2Error::Untrusted { target: "https://c2".into(), why: "x".into() }.is_transient());
        assert!(!C2Error::Protocol("x".into()).is_transient());
    }
}
