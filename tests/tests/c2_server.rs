//! The C2 test server itself, spoken to as a client would: HTTPS with only the test CA
//! trusted, over loopback. The `keyfill export c2` end-to-end tests rely on what is checked here.

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use keyfill_e2e::c2::{C2Server, CryptoMode};
use keyfill_e2e::contains_key;
use reqwest::{Method, Url};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An HTTPS client of one server, driven synchronously like the end-to-end tests.
struct Api {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

/// Status and body of an answer: its JSON (`Null` when it is not JSON) and its text.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
    text: String,
}

impl Api {
    /// A client that trusts only the server's CA, as read from its PEM file.
    fn new(server: &C2Server) -> Self {
        let ca = CertificateDer::from_pem_file(server.ca_file()).expect("the CA file holds a PEM certificate");
        Self::trusting(&server.url(), ca, reqwest::Client::builder().timeout(Duration::from_secs(20)))
    }

    /// A client of `base` whose only trusted root is `ca`.
    fn trusting(base: &str, ca: CertificateDer<'static>, builder: reqwest::ClientBuilder) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("the CA certificate is usable as a root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = builder.tls_backend_preconfigured(tls).build().expect("the reqwest client builds");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        Api { runtime, client, base: base.to_owned() }
    }

    /// Sends `method` to `path`, which is taken as it is (already percent-encoded).
    fn send(&self, method: Method, path: &str, body: Option<Value>) -> Result<Reply> {
        let url = Url::parse(&format!("{}{path}", self.base))?;
        self.send_url(method, url, body)
    }

    fn send_url(&self, method: Method, url: Url, body: Option<Value>) -> Result<Reply> {
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let text = response.text().await?;
            let body = serde_json::from_str(&text).unwrap_or(Value::Null);
            Ok(Reply { status, body, text })
        })
    }

    fn get(&self, path: &str) -> Result<Reply> {
        self.send(Method::GET, path, None)
    }

    /// `POST /e4/client/{name}` with `{"key": base64(key)}`, the name percent-encoded.
    fn post_key(&self, name: &str, key: &[u8]) -> Result<Reply> {
        self.send_url(Method::POST, self.client_url(name), Some(json!({ "key": STANDARD.encode(key) })))
    }

    fn client_request(&self, method: Method, name: &str, body: Option<Value>) -> Result<Reply> {
        self.send_url(method, self.client_url(name), body)
    }

    /// `/e4/client/{name}` with every byte of `name` but the unreserved ones percent-encoded
    /// (the URL library's own segment encoding silently drops tabs and line breaks).
    fn client_url(&self, name: &str) -> Url {
        let mut path = String::from("/e4/client/");
        for byte in name.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => path.push(char::from(byte)),
                _ => path.push_str(&format!("%{byte:02X}")),
            }
        }
        Url::parse(&format!("{}{path}", self.base)).expect("the URL parses")
    }
}

fn key(seed: u8) -> Vec<u8> {
    (0..32u8).map(|i| seed.wrapping_mul(31).wrapping_add(i).wrapping_add(1)).collect()
}

fn start(mode: CryptoMode) -> (tempfile::TempDir, C2Server) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = C2Server::start(dir.path(), mode).expect("the C2 test server starts");
    (dir, server)
}

/// Asserts a grpc-gateway v1 error body with `status` and gRPC `code`: `error` and `message`
/// both carry the message.
fn assert_gateway_error(reply: &Reply, status: u16, code: i64) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.body["code"], code, "{reply:?}");
    assert!(reply.body["message"].is_string(), "{reply:?}");
    assert_eq!(reply.body["error"], reply.body["message"], "{reply:?}");
    assert_eq!(reply.body["details"], json!([]), "{reply:?}");
}

/// Asserts the plain-text answer of grpc-gateway v1's mux (Go's `http.Error`).
fn assert_plain(reply: &Reply, status: u16, text: &str) {
    assert_eq!((reply.status, reply.text.as_str()), (status, text), "{reply:?}");
    assert_eq!(reply.body, Value::Null, "not JSON: {reply:?}");
}

#[test]
fn c2_export_test_server_reports_crypto_mode_and_health() -> Result<()> {
    let (_dir, server) = start(CryptoMode::PubKey);
    let api = Api::new(&server);

    let reply = api.get("/e4/crypto-mode")?;
    assert_eq!((reply.status, reply.body), (200, json!({ "CryptoMode": "CRYPTOMODE_PUBKEY" })));
    server.set_crypto_mode(CryptoMode::SymKey);
    let reply = api.get("/e4/crypto-mode")?;
    assert_eq!((reply.status, reply.body), (200, json!({ "CryptoMode": "CRYPTOMODE_SYMKEY" })));

    let reply = api.get("/e4/health-check")?;
    assert_eq!((reply.status, reply.body), (200, json!({ "Code": "0", "Status": "OK" })));
    Ok(())
}

#[test]
fn c2_export_test_server_contract_upserts_keys() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);

    let reply = api.post_key("sensor-1", &key(1))?;
    assert_eq!((reply.status, reply.body), (200, json!({})));
    assert_eq!(server.clients()?.get("sensor-1"), Some(&key(1)));

    // An upsert: the key is replaced without complaint, as C2 does.
    let reply = api.post_key("sensor-1", &key(2))?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(server.clients()?.get("sensor-1"), Some(&key(2)));

    // grpc-gateway's own body shape; the name in the path wins over the body's.
    let body = json!({ "client": { "name": "someone-else" }, "key": STANDARD.encode(key(3)) });
    let reply = api.client_request(Method::POST, "sensor-2", Some(body))?;
    assert_eq!(reply.status, 200, "{reply:?}");
    // An `id` beside the key is ignored: C2 derives the id from the name.
    let body = json!({ "key": STANDARD.encode(key(4)), "id": "00112233445566778899aabbccddeeff" });
    let reply = api.client_request(Method::POST, "sensor-3", Some(body))?;
    assert_eq!((reply.status, reply.body), (200, json!({})));

    let clients = server.clients()?;
    assert_eq!(clients.keys().collect::<Vec<_>>(), ["sensor-1", "sensor-2", "sensor-3"]);
    assert_eq!(clients["sensor-2"], key(3));
    assert_eq!(clients["sensor-3"], key(4));
    assert_eq!(api.get("/e4/clients/count")?.body, json!({ "count": "3" }));

    // In public-key mode the 32 bytes are an Ed25519 public key: any 32 non-zero bytes pass.
    server.set_crypto_mode(CryptoMode::PubKey);
    assert_eq!(api.post_key("sensor-4", &key(5))?.status, 200);

    // The E4 id is stored beside the name: SHA3-256(name)[..16].
    let id = keyfill_formats::DeviceId::from_name("sensor-1").to_hex();
    assert!(String::from_utf8(server.dump()?)?.contains(&id), "the dump holds the E4 id");

    let posts: Vec<_> = server.requests().into_iter().filter(|(method, _, _)| method == "POST").collect();
    assert_eq!(posts[0], ("POST".to_owned(), "/e4/client/sensor-1".to_owned(), 200));
    assert_eq!(posts.len(), 5);
    Ok(())
}

#[test]
fn c2_export_test_server_validates_like_c2() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);

    let invalid_bodies = [
        json!({ "key": "not base64!" }),
        // Only standard, padded base64: not URL-safe, not unpadded.
        json!({ "key": URL_SAFE_NO_PAD.encode([0xfb; 32]) }),
        json!({ "key": STANDARD.encode(key(1)).trim_end_matches('=') }),
        json!({ "key": STANDARD.encode([7u8; 31]) }),
        json!({ "key": STANDARD.encode([7u8; 33]) }),
        json!({ "key": STANDARD.encode([7u8; 64]) }),
        json!({ "key": STANDARD.encode([0u8; 32]) }),
        json!({}),
        json!("a string"),
    ];
    for body in invalid_bodies {
        let reply = api.client_request(Method::POST, "device", Some(body.clone()))?;
        assert_gateway_error(&reply, 400, 3);
        assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}: {reply:?}");
    }
    let reply = api.send(Method::POST, "/e4/client/device", None)?;
    assert_gateway_error(&reply, 400, 3);

    // C2 enforces no length over HTTP; the name column holds 256 characters, so longer names
    // fail in storage.
    assert_eq!(api.post_key(&"n".repeat(256), &key(1))?.status, 200);
    assert_eq!(api.post_key(&"鍵".repeat(86), &key(2))?.status, 200, "86 characters, 258 bytes");
    assert_gateway_error(&api.post_key(&"n".repeat(300), &key(3))?, 500, 13);
    // PostgreSQL text holds no NUL either.
    assert_gateway_error(&api.post_key("nul\0inside", &key(3))?, 500, 13);

    // Invalid UTF-8 in the path and an empty name.
    assert_gateway_error(
        &api.send(Method::POST, "/e4/client/%FF%FE", Some(json!({ "key": STANDARD.encode(key(4)) })))?,
        400,
        3,
    );
    assert_gateway_error(
        &api.send(Method::POST, "/e4/client/", Some(json!({ "key": STANDARD.encode(key(4)) })))?,
        400,
        3,
    );

    assert_eq!(server.clients()?.len(), 2, "nothing invalid was stored");
    Ok(())
}

#[test]
fn c2_export_test_server_round_trips_encoded_names() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);

    let names = [
        "line 3 bay 7",
        "température-Zürich",
        "центр",
        "ключ 🔑",
        "100%?#&=+",
        "a%2Fb",
        "back\\slash",
        "tab\tinside",
        "..x",
    ];
    for (index, name) in names.iter().enumerate() {
        let reply = api.post_key(name, &key(index as u8))?;
        assert_eq!(reply.status, 200, "{name}: {reply:?}");
    }
    let stored = server.clients()?;
    for (index, name) in names.iter().enumerate() {
        assert_eq!(stored.get(*name), Some(&key(index as u8)), "{name}");
    }
    assert_eq!(stored.len(), names.len());

    // Other percent-escapes are decoded into the name.
    let reply = api.send(Method::POST, "/e4/client/x%20y%09z", Some(json!({ "key": STANDARD.encode(key(9)) })))?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(server.clients()?.contains_key("x y\tz"));
    // A '/' in a name, sent raw or as `%2F`, reaches no route: a plain-text 404, nothing stored.
    for path in ["/e4/client/x/y", "/e4/client/x%2Fy", "/e4/client/x%2fy"] {
        let reply = api.send(Method::POST, path, Some(json!({ "key": STANDARD.encode(key(9)) })))?;
        assert_plain(&reply, 404, "Not Found\n");
    }
    assert_plain(&api.client_request(Method::PATCH, "a/b", Some(json!({})))?, 404, "Not Found\n");
    assert!(!server.clients()?.keys().any(|name| name.contains('/')));

    // The request log holds decoded paths, and the request lines as sent.
    assert!(server.requests().contains(&("POST".to_owned(), "/e4/client/x y\tz".to_owned(), 200)));
    assert!(server.request_lines().contains(&"POST /e4/client/x%20y%09z".to_owned()), "{:?}", server.request_lines());

    // Listing returns the decoded names; PATCH and DELETE address them the same way.
    let listed = api.get("/e4/clients?offset=0&count=100")?.body;
    assert!(listed["clients"].as_array().expect("clients").contains(&json!({ "name": "ключ 🔑" })), "{listed}");
    assert_eq!(api.client_request(Method::PATCH, "a%2Fb", Some(json!({})))?.status, 200);
    assert_ne!(server.clients()?["a%2Fb"], key(5));
    assert_eq!(api.client_request(Method::DELETE, "line 3 bay 7", None)?.status, 200);
    assert!(!server.clients()?.contains_key("line 3 bay 7"));
    Ok(())
}

#[test]
fn c2_export_test_server_paginates_clients() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);
    let names: Vec<String> = (0..250).map(|i| format!("client-{i:03}")).collect();
    // Posted in reverse so that the order of answers is the server's doing.
    for name in names.iter().rev() {
        assert_eq!(api.post_key(name, &key(3))?.status, 200);
    }

    let page = |query: &str| -> Result<Vec<String>> {
        let reply = api.get(&format!("/e4/clients{query}"))?;
        assert_eq!(reply.status, 200, "{reply:?}");
        let clients = reply.body["clients"].as_array().context("clients array")?;
        Ok(clients.iter().map(|client| client["name"].as_str().unwrap_or_default().to_owned()).collect())
    };
    assert_eq!(page("?offset=0&count=100")?, names[..100]);
    assert_eq!(page("?offset=100&count=100")?, names[100..200]);
    assert_eq!(page("?offset=200&count=100")?, names[200..]);
    assert_eq!(page("?offset=250&count=100")?, Vec::<String>::new());
    // The cap: at most 100 names a page whatever count asks, so a short page is no end.
    assert_eq!(page("?offset=0&count=1000")?, names[..100]);
    assert_eq!(page("?offset=120&count=250")?, names[120..220]);
    assert_eq!(page("?offset=249&count=7")?, names[249..]);
    assert_eq!(page("?offset=10&count=5")?, names[10..15]);
    // Without a count (or with 0, which proto3 cannot tell apart) the list is empty, and still there.
    for query in ["", "?offset=5000", "?offset=10", "?offset=10&count=0"] {
        let reply = api.get(&format!("/e4/clients{query}"))?;
        assert_eq!((reply.status, reply.body), (200, json!({ "clients": [] })), "{query}");
    }
    // A negative count (or offset) reaches the database, which fails.
    for bad in ["?offset=0&count=-5", "?offset=-1&count=10"] {
        assert_gateway_error(&api.get(&format!("/e4/clients{bad}"))?, 500, 13);
    }
    for bad in ["?offset=abc&count=10", "?offset=0&count=1.5"] {
        assert_gateway_error(&api.get(&format!("/e4/clients{bad}"))?, 400, 3);
    }
    assert_eq!(api.get("/e4/clients/count")?.body, json!({ "count": "250" }));

    // Told to, the server registers a client before each page past the first: the list moves.
    server.add_a_client_during_each_listing();
    assert_eq!(page("?offset=0&count=100")?, names[..100]);
    let second = page("?offset=100&count=100")?;
    assert_eq!(second, names[99..199], "every name moved one place on");
    assert_eq!(api.get("/e4/clients/count")?.body, json!({ "count": "251" }));
    server.clear_faults();
    assert_eq!(page("?offset=100&count=100")?, second);
    Ok(())
}

#[test]
fn c2_export_test_server_rotates_and_removes_clients() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);
    api.post_key("rotated", &key(1))?;

    // C2's NewClientKey over the API, then through the handle.
    let reply = api.client_request(Method::PATCH, "rotated", Some(json!({})))?;
    assert_eq!((reply.status, reply.body), (200, json!({})));
    let after_patch = server.clients()?["rotated"].clone();
    assert_ne!(after_patch, key(1));
    assert_eq!(after_patch.len(), 32);
    server.rotate_client_key("rotated")?;
    assert_ne!(server.clients()?["rotated"], after_patch);
    assert!(server.rotate_client_key("absent").is_err());
    assert_gateway_error(&api.client_request(Method::PATCH, "absent", Some(json!({})))?, 404, 5);
    assert_eq!(api.client_request(Method::PATCH, "absent", Some(json!({})))?.body["message"], "client not found");
    // PUT resets a client's topics: 200 for a known client, 404 for an unknown one.
    assert_eq!(api.client_request(Method::PUT, "rotated", Some(json!({})))?.body, json!({}));
    assert_gateway_error(&api.client_request(Method::PUT, "absent", Some(json!({})))?, 404, 5);

    // Seeded by another tool.
    server.insert_client("seeded", &key(7))?;
    assert_eq!(server.clients()?["seeded"], key(7));

    let reply = api.client_request(Method::DELETE, "rotated", None)?;
    assert_eq!((reply.status, reply.body), (200, json!({})));
    assert!(!server.clients()?.contains_key("rotated"));
    assert_gateway_error(&api.client_request(Method::DELETE, "rotated", None)?, 404, 5);
    assert_eq!(api.get("/e4/clients/count")?.body, json!({ "count": "1" }));
    Ok(())
}

#[test]
fn c2_export_test_server_injects_post_faults() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);

    server.fail_next_posts(2, 503);
    assert_gateway_error(&api.post_key("a", &key(1))?, 503, 14);
    assert_gateway_error(&api.post_key("b", &key(2))?, 503, 14);
    assert!(server.clients()?.is_empty(), "failed POSTs store nothing");
    assert_eq!(api.post_key("a", &key(1))?.status, 200, "only the next two POSTs fail");

    server.fail_next_posts(1, 500);
    assert_gateway_error(&api.post_key("a", &key(9))?, 500, 13);
    assert_eq!(server.clients()?["a"], key(1));
    // Other requests are not counted.
    assert_eq!(api.get("/e4/clients/count")?.status, 200);

    server.reject_client("refused", 500, "refused by policy");
    let reply = api.post_key("refused", &key(3))?;
    assert_gateway_error(&reply, 500, 13);
    assert_eq!(reply.body["message"], "refused by policy");
    assert_gateway_error(&api.post_key("refused", &key(3))?, 500, 13);
    assert_eq!(api.post_key("welcome", &key(4))?.status, 200, "other clients are not refused");
    server.reject_client("conflict", 409, "already there");
    assert_gateway_error(&api.post_key("conflict", &key(5))?, 409, 6);

    server.clear_faults();
    assert_eq!(api.post_key("refused", &key(3))?.status, 200);
    assert_eq!(server.clients()?.keys().collect::<Vec<_>>(), ["a", "refused", "welcome"]);

    let statuses: Vec<u16> = server.requests().iter().filter(|r| r.0 == "POST").map(|r| r.2).collect();
    assert_eq!(statuses, [503, 503, 200, 500, 500, 500, 200, 409, 200]);
    Ok(())
}

#[test]
fn c2_export_test_server_delays_post_answers_after_storing() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);
    server.set_post_delay(Duration::from_millis(1500));

    // A client that gives up while the answer is delayed: C2 has the key nonetheless.
    let impatient = Api::trusting(
        &server.url(),
        CertificateDer::from_pem_file(server.ca_file())?,
        reqwest::Client::builder().timeout(Duration::from_millis(300)),
    );
    assert!(impatient.post_key("slow", &key(1)).is_err(), "the client timed out");
    assert_eq!(server.clients()?.get("slow"), Some(&key(1)), "stored before the delayed answer");

    let started = Instant::now();
    assert_eq!(api.post_key("slow", &key(2))?.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500), "answered after {:?}", started.elapsed());
    assert_eq!(api.get("/e4/clients/count")?.status, 200, "only POSTs are delayed");

    server.clear_faults();
    let started = Instant::now();
    assert_eq!(api.post_key("slow", &key(3))?.status, 200);
    assert!(started.elapsed() < Duration::from_millis(1500), "still delayed: {:?}", started.elapsed());
    Ok(())
}

#[test]
fn c2_export_test_server_pause_refuses_connections_and_resume_reopens_the_port() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    assert_eq!(api.post_key("before", &key(1))?.status, 200);

    server.pause();
    let refused = TcpStream::connect_timeout(&address, Duration::from_secs(2)).expect_err("nothing listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // The client's kept-alive connection was closed too: no request gets through.
    assert!(api.post_key("during", &key(2)).is_err());
    assert!(api.get("/e4/health-check").is_err());

    server.resume();
    let url_before = server.url();
    assert_eq!(api.post_key("after", &key(3))?.status, 200, "same client, same URL");
    assert_eq!(server.url(), url_before);
    assert_eq!(server.clients()?.keys().collect::<Vec<_>>(), ["after", "before"]);

    // Pausing twice and resuming twice are harmless. (A fresh client: the old one may try its
    // kept-alive connection, closed by the pause, before it notices; keyfill must expect that.)
    server.pause();
    server.pause();
    server.resume();
    server.resume();
    assert_eq!(Api::new(&server).get("/e4/health-check")?.status, 200);
    Ok(())
}

#[test]
fn c2_export_test_server_never_stores_keys_in_clear() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);
    let keys: Vec<Vec<u8>> = (10..20).map(key).collect();
    for (index, key) in keys.iter().enumerate() {
        assert_eq!(api.post_key(&format!("leak-check-{index}"), key)?.status, 200);
    }
    server.insert_client("seeded-by-tool", &key(42))?;
    api.client_request(Method::PATCH, "leak-check-0", Some(json!({})))?;

    let dump = server.dump()?;
    assert!(dump.windows(b"leak-check-3".len()).any(|w| w == b"leak-check-3"), "the dump is not empty");
    let stored = server.clients()?;
    let seeded = key(42);
    for key in keys.iter().chain([&seeded]).chain(stored.values()) {
        assert!(!contains_key(&dump, key), "a key is stored in a readable form");
    }
    Ok(())
}

#[test]
fn c2_export_test_server_speaks_tls_only_and_only_with_its_ca() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);

    // The certificate names localhost too (resolved here, so /etc/hosts does not matter).
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
    let ca = CertificateDer::from_pem_file(server.ca_file())?;
    let by_name = Api::trusting(
        &format!("https://localhost:{}", server.port()),
        ca,
        reqwest::Client::builder().resolve("localhost", address),
    );
    assert_eq!(by_name.get("/e4/health-check")?.status, 200);

    // Plain HTTP on the same port fails.
    let plain_url = Url::parse(&format!("http://127.0.0.1:{}/e4/health-check", server.port()))?;
    assert!(api.send_url(Method::GET, plain_url, None).is_err(), "plain HTTP must fail");

    // A client trusting another CA refuses the server's certificate.
    let other_ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?.cert.der().clone();
    let stranger = Api::trusting(&server.url(), other_ca, reqwest::Client::builder());
    let error = stranger.get("/e4/health-check").expect_err("an untrusted certificate must be refused");
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
    Ok(())
}

#[test]
fn c2_export_test_server_answers_bad_requests_like_c2() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let api = Api::new(&server);

    // grpc-gateway v1's mux: an unknown route is a plain-text 404; a known path with another
    // method a plain-text 405. No key can be read back.
    assert_plain(&api.get("/e4/nothing-here")?, 404, "Not Found\n");
    assert_plain(&api.get("")?, 404, "Not Found\n");
    assert_plain(&api.client_request(Method::GET, "device", None)?, 405, "Method Not Allowed\n");
    assert_plain(&api.send(Method::POST, "/e4/clients", Some(json!({})))?, 405, "Method Not Allowed\n");
    // PUT is C2's ResetClientTopics: the route exists, the client does not.
    assert_gateway_error(&api.client_request(Method::PUT, "device", Some(json!({})))?, 404, 5);

    let oversized = json!({ "key": STANDARD.encode(key(1)), "padding": "x".repeat(70 * 1024) });
    assert_gateway_error(&api.client_request(Method::POST, "device", Some(oversized))?, 413, 8);
    let oversized_unknown_route = json!({ "padding": "x".repeat(200 * 1024) });
    assert_gateway_error(&api.send(Method::POST, "/e4/elsewhere", Some(oversized_unknown_route))?, 413, 8);
    assert!(server.clients()?.is_empty());

    let log = server.requests();
    assert_eq!(log[0], ("GET".to_owned(), "/e4/nothing-here".to_owned(), 404));
    assert_eq!(log.iter().map(|r| r.2).collect::<Vec<_>>(), [404, 404, 405, 405, 404, 413, 413]);
    Ok(())
}

#[test]
fn c2_export_test_server_drops_its_database() -> Result<()> {
    let (_dir, server) = start(CryptoMode::SymKey);
    let database_url = server.database_url().to_owned();
    server.insert_client("gone-soon", &key(1))?;
    drop(server);
    let output = std::process::Command::new("psql").args([database_url.as_str(), "-c", "SELECT 1"]).output()?;
    assert!(!output.status.success(), "the database outlived its server");
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"), "{output:?}");
    Ok(())
}
