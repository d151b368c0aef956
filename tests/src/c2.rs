//! A stand-in for C2, E4's key server, for the end-to-end tests of `keyfill export c2`.
//!
//! [`C2Server`] speaks C2's HTTP/JSON gateway (grpc-gateway in front of C2's gRPC API) over real
//! HTTPS on loopback, with a certificate from a test CA it generates, and keeps its clients in a
//! fresh PostgreSQL database of its own. It mimics the C2 behaviours an exporter depends on:
//!
//! - `POST /e4/client/{name}` is an upsert that silently replaces an existing key, validated as
//!   C2 does (name of 1 to 255 bytes, key of 32 non-zero bytes, base64 as protojson reads it);
//! - `PATCH /e4/client/{name}` is C2's NewClientKey: C2 rotates the key on its own;
//! - `GET /e4/clients` pages names; `GET /e4/clients/count` answers int64 as a JSON string;
//! - errors are grpc-gateway bodies `{"code","message","details"}` with its HTTP status mapping,
//!   and routing errors are answered like grpc-gateway v2 (404 code 5, 501 code 12);
//! - keys at rest are sealed with AES-SIV (the client name as associated data) under a key held
//!   only in memory, so a leak scan of the database must find nothing;
//! - HTTP/1.1 only (C2's server disables HTTP/2), and every request runs to completion even when
//!   the client hangs up, as with Go's net/http.
//!
//! The end-to-end tests are synchronous and run `keyfill` as a subprocess, so the server runs on a
//! thread with its own tokio runtime and the handle is synchronous. The handle also injects faults
//! (failing or delayed POSTs, refused clients, a server that stops accepting connections) and
//! inspects state (decrypted keys, the request log, a raw dump of the database for leak scans).

use crate::Database;
use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use anyhow::{Context, Result, anyhow, bail};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use keyfill_formats::DeviceId;
use keyfill_formats::ids::{MAX_NAME_LEN, valid_name};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// Largest request body the server accepts (413 beyond).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read and discarded before answering 413: closing a socket
/// with unread data makes the kernel send a reset, and the client would see that instead of the
/// answer (Go's net/http drains for the same reason).
const OVERSIZED_BODY_DRAIN_BYTES: usize = 1024 * 1024;
/// Page size of `GET /e4/clients` when the request names none.
const DEFAULT_PAGE_SIZE: i64 = 100;
/// Largest page `GET /e4/clients` serves.
const MAX_PAGE_SIZE: i64 = 1000;
/// Length of a symmetric E4 client key, and of the Ed25519 public key C2 keeps in public-key mode.
const CLIENT_KEY_LEN: usize = 32;
/// AES-SIV key length: two AES-256 keys (MAC and CTR).
const SEALING_KEY_LEN: usize = 64;

/// The E4 mode a C2 instance runs in, as `GET /e4/crypto-mode` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoMode {
    /// Clients hold 32-byte symmetric keys (`CRYPTOMODE_SYMKEY`).
    SymKey,
    /// Clients hold Ed25519 keys; C2 stores their 32-byte public keys (`CRYPTOMODE_PUBKEY`).
    PubKey,
}

impl CryptoMode {
    fn gateway_name(self) -> &'static str {
        match self {
            CryptoMode::SymKey => "CRYPTOMODE_SYMKEY",
            CryptoMode::PubKey => "CRYPTOMODE_PUBKEY",
        }
    }
}

/// A running C2 test server. Dropping it stops the server and drops its database.
pub struct C2Server {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    /// Dropping it tells the listener to close everything and the server thread to end.
    listener_control: Option<mpsc::UnboundedSender<ListenerCommand>>,
    thread: Option<std::thread::JoinHandle<()>>,
    address: SocketAddr,
    ca_file: PathBuf,
    /// Declared last so that it is dropped (DROP DATABASE) after the server thread has ended.
    database: Database,
}

impl fmt::Debug for C2Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: the shared state holds the sealing key.
        f.debug_struct("C2Server")
            .field("url", &self.url())
            .field("ca_file", &self.ca_file)
            .field("database", &self.database.url())
            .finish_non_exhaustive()
    }
}

impl C2Server {
    /// Starts a server in `mode` on an ephemeral loopback port, writing its CA to `dir/ca.pem`.
    pub fn start(dir: &Path, mode: CryptoMode) -> Result<Self> {
        let database = Database::postgres()?;
        let pki = TestPki::generate()?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &pki.ca_pem).with_context(|| format!("cannot write {}", ca_file.display()))?;
        let tls = pki.acceptor()?;

        let (listener_control, commands) = mpsc::unbounded_channel();
        let (ready, started) = std::sync::mpsc::channel();
        let setup = ServerSetup { database_url: database.url().to_owned(), mode, tls, commands };
        let thread = std::thread::Builder::new()
            .name("c2-test-server".into())
            .spawn(move || run_server_thread(setup, ready))
            .context("cannot spawn the C2 test server thread")?;
        let started = started.recv().context("the C2 test server thread ended while starting")??;
        Ok(C2Server {
            shared: started.shared,
            runtime: started.runtime,
            listener_control: Some(listener_control),
            thread: Some(thread),
            address: started.address,
            ca_file,
            database,
        })
    }

    /// Base URL, `https://127.0.0.1:PORT` (the certificate is also valid for `localhost`).
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// The TCP port the server listens on (kept across pause and resume).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// PEM file of the test CA that issued the server certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.ca_file.clone()
    }

    /// URL of the PostgreSQL database behind the server (dropped with the server).
    pub fn database_url(&self) -> &str {
        self.database.url()
    }

    /// Changes what `GET /e4/crypto-mode` reports and how POSTed keys are described.
    pub fn set_crypto_mode(&self, mode: CryptoMode) {
        self.shared.controls().mode = mode;
    }

    /// The next `n` client POSTs, whatever their content, are answered `status` without storing.
    pub fn fail_next_posts(&self, n: usize, status: u16) {
        let status = http_status(status);
        let mut controls = self.shared.controls();
        controls.failing_posts = n;
        controls.failing_status = status;
    }

    /// Every POST for client `name` is answered `status` with `message` until faults are cleared.
    pub fn reject_client(&self, name: &str, status: u16, message: &str) {
        let rejection = GatewayError::injected(http_status(status), message);
        self.shared.controls().rejected_clients.insert(name.to_owned(), rejection);
    }

    /// Clears every injected fault: failing POSTs, rejected clients and the POST delay.
    pub fn clear_faults(&self) {
        let mut controls = self.shared.controls();
        let mode = controls.mode;
        *controls = Controls { mode, ..Controls::default() };
    }

    /// Client POSTs are stored at once but answered only after `delay` (to kill a client while
    /// C2 holds a key the client never saw acknowledged).
    pub fn set_post_delay(&self, delay: Duration) {
        self.shared.controls().post_delay = delay;
    }

    /// Stops listening and closes every open connection: clients get connection refused.
    pub fn pause(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        self.command_listener(ListenerCommand::Pause(done));
        wait.recv().expect("the C2 test server stopped while pausing");
    }

    /// Listens again on the same port; panics if the port cannot be bound again.
    pub fn resume(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        self.command_listener(ListenerCommand::Resume(done));
        let bound = wait.recv().expect("the C2 test server stopped while resuming");
        if let Err(error) = bound {
            panic!("the C2 test server cannot listen on {} again: {error}", self.address);
        }
    }

    /// Gives client `name` a fresh random key, as C2's NewClientKey (`PATCH`) does.
    pub fn rotate_client_key(&self, name: &str) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        let rotated = self.on_runtime(async move { shared.store.replace_with_random_key(&name).await })??;
        if !rotated {
            bail!("C2 test server: no client to rotate");
        }
        Ok(())
    }

    /// Every stored client with its decrypted key, by name.
    pub fn clients(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let shared = Arc::clone(&self.shared);
        self.on_runtime(async move { shared.store.all_keys().await })?
    }

    /// Stores a client as if another tool had registered it, without the API's validation.
    pub fn insert_client(&self, name: &str, key: &[u8]) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let (name, key) = (name.to_owned(), key.to_vec());
        self.on_runtime(async move { shared.store.upsert(&name, &key).await })?
    }

    /// Every request answered so far, in answer order: (method, percent-decoded path, status).
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.shared.requests().clone()
    }

    /// Every row of every table of the server's database as JSON text, for leak scans.
    pub fn dump(&self) -> Result<Vec<u8>> {
        let shared = Arc::clone(&self.shared);
        self.on_runtime(async move { shared.store.dump().await })?
    }

    fn command_listener(&self, command: ListenerCommand) {
        let control = self.listener_control.as_ref().expect("the listener control lives as long as the server");
        control.send(command).expect("the C2 test server's listener has stopped");
    }

    /// Runs `task` on the server's runtime and waits for it; works from any thread, even one
    /// that is itself inside a tokio runtime.
    fn on_runtime<T: Send + 'static>(&self, task: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = done.send(task.await);
        });
        wait.recv().map_err(|_| anyhow!("the C2 test server's runtime has stopped"))
    }
}

impl Drop for C2Server {
    fn drop(&mut self) {
        drop(self.listener_control.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Converts a status given by a test, which is a programming error if it is not one.
fn http_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|_| panic!("{status} is not an HTTP status"))
}

// ---------------------------------------------------------------------------------------------
// Server thread

struct ServerSetup {
    database_url: String,
    mode: CryptoMode,
    tls: TlsAcceptor,
    commands: mpsc::UnboundedReceiver<ListenerCommand>,
}

struct Started {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    address: SocketAddr,
}

/// Body of the server thread: owns the runtime, so that it is dropped on this thread and never
/// inside a caller's async context.
fn run_server_thread(setup: ServerSetup, ready: std::sync::mpsc::Sender<Result<Started>>) {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(anyhow!(error).context("cannot build the C2 test server runtime")));
            return;
        }
    };
    runtime.block_on(async move {
        let ServerSetup { database_url, mode, tls, commands } = setup;
        let (shared, listener, address) = match prepare(&database_url, mode).await {
            Ok(prepared) => prepared,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let router = router(Arc::clone(&shared));
        let started = Started { shared: Arc::clone(&shared), runtime: tokio::runtime::Handle::current(), address };
        if ready.send(Ok(started)).is_err() {
            return;
        }
        Listener { address, tls, router, listener: Some(listener), connections: JoinSet::new() }.run(commands).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), shared.store.pool.close()).await;
    });
}

/// Connects the database, creates the schema and binds an ephemeral loopback port.
async fn prepare(database_url: &str, mode: CryptoMode) -> Result<(Arc<Shared>, TcpListener, SocketAddr)> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .context("cannot connect to the C2 test database")?;
    let store = ClientStore { pool, sealer: KeySealer::random()? };
    store.create_schema().await?;
    let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).context("cannot listen on loopback")?;
    let address = listener.local_addr()?;
    let controls = Controls { mode, ..Controls::default() };
    let shared = Shared { store, controls: Mutex::new(controls), requests: Mutex::default() };
    Ok((Arc::new(shared), listener, address))
}

/// State shared by the request handlers and the test-side handle.
struct Shared {
    store: ClientStore,
    controls: Mutex<Controls>,
    requests: Mutex<Vec<(String, String, u16)>>,
}

impl Shared {
    // A panicking test thread must not make every later request fail: ignore poisoning.
    fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn requests(&self) -> MutexGuard<'_, Vec<(String, String, u16)>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the tests have asked the server to do differently.
#[derive(Debug)]
struct Controls {
    mode: CryptoMode,
    failing_posts: usize,
    failing_status: StatusCode,
    rejected_clients: HashMap<String, GatewayError>,
    post_delay: Duration,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            mode: CryptoMode::SymKey,
            failing_posts: 0,
            failing_status: StatusCode::SERVICE_UNAVAILABLE,
            rejected_clients: HashMap::new(),
            post_delay: Duration::ZERO,
        }
    }
}

impl Controls {
    /// Consumes one injected POST failure, if any is left.
    fn take_post_failure(&mut self) -> Option<GatewayError> {
        if self.failing_posts == 0 {
            return None;
        }
        self.failing_posts -= 1;
        Some(GatewayError::injected(self.failing_status, "injected failure: the C2 test server was told to fail"))
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// The test CA and the server certificate it issued.
struct TestPki {
    ca_pem: String,
    server_certificate: rustls_pki_types::CertificateDer<'static>,
    server_key: rustls_pki_types::PrivateKeyDer<'static>,
}

impl TestPki {
    fn generate() -> Result<Self> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Keyfill C2 test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params.subject_alt_names.push(SanType::IpAddress(Ipv4Addr::LOCALHOST.into()));
        server_params.distinguished_name.push(DnType::CommonName, "Keyfill C2 test server");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_certificate = server_params.signed_by(&server_key, &*ca)?;

        Ok(TestPki {
            ca_pem: ca.pem(),
            server_certificate: server_certificate.der().clone(),
            server_key: rustls_pki_types::PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        })
    }

    fn acceptor(self) -> Result<TlsAcceptor> {
        // The ring provider explicitly: a process-wide default may be absent or be another one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![self.server_certificate], self.server_key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

// ---------------------------------------------------------------------------------------------
// Listener: accepts connections, and stops and starts listening on request

enum ListenerCommand {
    Pause(std::sync::mpsc::Sender<()>),
    Resume(std::sync::mpsc::Sender<std::io::Result<()>>),
}

struct Listener {
    address: SocketAddr,
    tls: TlsAcceptor,
    router: Router,
    /// `None` while paused: the port is closed, so connecting is refused.
    listener: Option<TcpListener>,
    /// Every open connection, so that pausing can close them all.
    connections: JoinSet<()>,
}

impl Listener {
    /// Serves until the handle is dropped (its command channel closes).
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<ListenerCommand>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(ListenerCommand::Pause(done)) => {
                        self.pause().await;
                        let _ = done.send(());
                    }
                    Some(ListenerCommand::Resume(done)) => {
                        let _ = done.send(self.resume());
                    }
                    None => break,
                },
                accepted = accept(self.listener.as_ref()) => match accepted {
                    Ok(stream) => {
                        self.connections.spawn(serve_connection(self.tls.clone(), stream, self.router.clone()));
                    }
                    Err(error) => {
                        // Accept errors (a peer that reset, fd exhaustion) are transient.
                        eprintln!("C2 test server: accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                Some(_) = self.connections.join_next(), if !self.connections.is_empty() => {}
            }
        }
        self.pause().await;
    }

    /// Closes the port and every connection, idle keep-alive ones included, before returning,
    /// so that a client cannot go on using an old connection.
    async fn pause(&mut self) {
        self.listener = None;
        self.connections.abort_all();
        while self.connections.join_next().await.is_some() {}
    }

    fn resume(&mut self) -> std::io::Result<()> {
        if self.listener.is_none() {
            self.listener = Some(bind(self.address)?);
        }
        Ok(())
    }
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Pausing closes connections from our side, leaving TIME_WAIT entries on the port that
    // would otherwise keep it from being bound again.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(128)
}

async fn accept(listener: Option<&TcpListener>) -> std::io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(stream, _)| stream),
        None => std::future::pending().await,
    }
}

async fn serve_connection(tls: TlsAcceptor, stream: TcpStream, router: Router) {
    // A failed handshake (plain HTTP, a client that does not trust the CA) just ends the
    // connection: the client sees the failure.
    let Ok(stream) = tls.accept(stream).await else { return };
    let service = hyper::service::service_fn(move |request| run_to_completion(router.clone(), request));
    // No timer, hence no header-read timeout: hyper's would close idle keep-alive connections
    // after 30 s, which C2 (Go's net/http without an IdleTimeout) does not do.
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// Handles `request` on a task of its own, so that it completes (and stores what it stores)
/// even when the client hangs up before the answer, as a Go server does.
async fn run_to_completion(router: Router, request: hyper::Request<Incoming>) -> Result<Response, Infallible> {
    let handler = tokio::spawn(TowerToHyperService::new(router).call(request));
    Ok(match handler.await {
        Ok(Ok(response)) => response,
        Ok(Err(infallible)) => match infallible {},
        Err(_) => GatewayError::internal("the request handler failed").into_response(),
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP API

fn router(shared: Arc<Shared>) -> Router {
    let client = post(new_client).patch(new_client_key).delete(remove_client);
    let empty_name = post(empty_client_name).patch(empty_client_name).delete(empty_client_name);
    Router::new()
        .route("/e4/crypto-mode", get(crypto_mode))
        .route("/e4/health-check", get(health_check))
        // grpc-gateway binds an empty last segment to {name}; C2 then rejects the empty name.
        .route("/e4/client/", empty_name)
        .route("/e4/client/{name}", client)
        .route("/e4/clients", get(list_clients))
        .route("/e4/clients/count", get(count_clients))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(buffer_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), record_request))
        .with_state(shared)
}

/// Outermost layer: logs every answer, routing errors and oversized bodies included.
async fn record_request(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = percent_decode(request.uri().path());
    let response = next.run(request).await;
    shared.requests().push((method, path, response.status().as_u16()));
    response
}

/// Reads the whole body up front, on every route and fallback, so the size limit holds everywhere.
async fn buffer_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match read_bounded(body).await {
        Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Err(error) => error.into_response(),
    }
}

async fn read_bounded(mut body: Body) -> Result<Bytes, GatewayError> {
    let mut buffered = Vec::new();
    let mut received = 0usize;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|error| GatewayError::invalid_argument(format!("unreadable body: {error}")))?;
        let Ok(data) = frame.into_data() else { continue };
        received = received.saturating_add(data.len());
        if received <= MAX_BODY_BYTES {
            buffered.extend_from_slice(&data);
        } else if received > MAX_BODY_BYTES + OVERSIZED_BODY_DRAIN_BYTES {
            break;
        }
    }
    if received > MAX_BODY_BYTES {
        return Err(GatewayError::body_too_large());
    }
    Ok(buffered.into())
}

async fn crypto_mode(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let mode = shared.controls().mode;
    Json(json!({ "CryptoMode": mode.gateway_name() }))
}

async fn health_check() -> Json<Value> {
    // int64 fields are JSON strings in grpc-gateway output.
    Json(json!({ "Code": "0", "Status": "OK" }))
}

/// `POST /e4/client/{name}`: C2's NewClient, an upsert.
async fn new_client(
    State(shared): State<Arc<Shared>>,
    name: Result<ClientName, GatewayError>,
    body: Bytes,
) -> Response {
    let outcome = register_client(&shared, name, &body).await;
    let delay = shared.controls().post_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    outcome.map(|()| empty_message()).into_response()
}

async fn register_client(
    shared: &Shared,
    name: Result<ClientName, GatewayError>,
    body: &[u8],
) -> Result<(), GatewayError> {
    // Injected failures come first: they stand for C2 (or a proxy) failing before it looks.
    if let Some(failure) = shared.controls().take_post_failure() {
        return Err(failure);
    }
    let ClientName(name) = name?;
    if let Some(rejection) = shared.controls().rejected_clients.get(&name) {
        return Err(rejection.clone());
    }
    let request: NewClientRequest = parse_body(body)?;
    let mode = shared.controls().mode;
    let key = decode_client_key(request.key.as_deref(), mode)?;
    shared.store.upsert(&name, &key).await.map_err(GatewayError::storage)
}

/// `PATCH /e4/client/{name}`: C2's NewClientKey, C2 rotating a key on its own.
async fn new_client_key(
    State(shared): State<Arc<Shared>>,
    ClientName(name): ClientName,
    body: Bytes,
) -> Result<Json<Value>, GatewayError> {
    let _: NewClientKeyRequest = parse_body(&body)?;
    if shared.store.replace_with_random_key(&name).await.map_err(GatewayError::storage)? {
        Ok(empty_message())
    } else {
        Err(GatewayError::client_not_found())
    }
}

/// `DELETE /e4/client/{name}`: C2's RemoveClient.
async fn remove_client(
    State(shared): State<Arc<Shared>>,
    ClientName(name): ClientName,
) -> Result<Json<Value>, GatewayError> {
    if shared.store.remove(&name).await.map_err(GatewayError::storage)? {
        Ok(empty_message())
    } else {
        Err(GatewayError::client_not_found())
    }
}

async fn empty_client_name() -> GatewayError {
    GatewayError::invalid_name(0)
}

/// `GET /e4/clients?offset=N&count=M`: one page of client names in byte order.
async fn list_clients(
    State(shared): State<Arc<Shared>>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>, GatewayError> {
    let Query(query) = query.map_err(|rejection| GatewayError::invalid_argument(rejection.body_text()))?;
    let (offset, count) = query.page()?;
    let names = shared.store.names(offset, count).await.map_err(GatewayError::storage)?;
    let clients: Vec<Value> = names.into_iter().map(|name| json!({ "name": name })).collect();
    Ok(Json(json!({ "clients": clients })))
}

/// `GET /e4/clients/count`.
async fn count_clients(State(shared): State<Arc<Shared>>) -> Result<Json<Value>, GatewayError> {
    let count = shared.store.count().await.map_err(GatewayError::storage)?;
    Ok(Json(json!({ "count": count.to_string() })))
}

async fn route_not_found() -> GatewayError {
    GatewayError::new(GrpcCode::NotFound, "Not Found")
}

async fn method_not_allowed() -> GatewayError {
    // grpc-gateway v2 answers a known path with another method this way (501, code 12).
    GatewayError::new(GrpcCode::Unimplemented, "Method Not Allowed")
}

/// The JSON of an empty protobuf message.
fn empty_message() -> Json<Value> {
    Json(json!({}))
}

/// A client name from the URL path, percent-decoded (so `%2F` is part of the name) and valid.
struct ClientName(String);

impl<S: Send + Sync> FromRequestParts<S> for ClientName {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let UrlPath(name) = UrlPath::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| GatewayError::invalid_argument(format!("invalid name: {}", rejection.body_text())))?;
        if !valid_name(&name) {
            return Err(GatewayError::invalid_name(name.len()));
        }
        if name.contains('\0') {
            // C2 would take it, but PostgreSQL text cannot hold NUL: say so rather than fail with 500.
            return Err(GatewayError::invalid_argument("invalid name: the test server cannot store NUL"));
        }
        Ok(ClientName(name))
    }
}

/// Body of NewClient. grpc-gateway fills `client.name` from the path over whatever the body
/// says, so the body's client is read and ignored; unknown fields are refused, as protojson does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClientRequest {
    #[serde(default, rename = "client")]
    _client: Option<IgnoredAny>,
    #[serde(default)]
    key: Option<String>,
}

/// Body of NewClientKey: `{}` (or the path's client again).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClientKeyRequest {
    #[serde(default, rename = "client")]
    _client: Option<IgnoredAny>,
}

/// Parses a JSON body; an empty body is the empty message, as grpc-gateway treats it.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, GatewayError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|error| GatewayError::invalid_argument(format!("invalid body: {error}")))
}

/// Decodes and checks a client key as C2 does. protojson reads `bytes` as standard or URL-safe
/// base64, padded or not, choosing by the characters present, so this does too.
fn decode_client_key(encoded: Option<&str>, mode: CryptoMode) -> Result<[u8; CLIENT_KEY_LEN], GatewayError> {
    let encoded = encoded.unwrap_or_default();
    let url_safe = encoded.contains(['-', '_']);
    let padded = encoded.len().is_multiple_of(4);
    let engine = match (url_safe, padded) {
        (false, true) => &STANDARD,
        (false, false) => &STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    let bytes =
        engine.decode(encoded).map_err(|error| GatewayError::invalid_argument(format!("invalid key: {error}")))?;
    let what = match mode {
        CryptoMode::SymKey => "a symmetric key",
        CryptoMode::PubKey => "an Ed25519 public key",
    };
    let key: [u8; CLIENT_KEY_LEN] = bytes.as_slice().try_into().map_err(|_| {
        GatewayError::invalid_argument(format!("invalid key: {what} is {CLIENT_KEY_LEN} bytes, got {}", bytes.len()))
    })?;
    if key.iter().all(|byte| *byte == 0) {
        return Err(GatewayError::invalid_argument("invalid key: all zero"));
    }
    Ok(key)
}

/// Query of `GET /e4/clients`; int64 fields arrive as decimal strings.
#[derive(Debug, Deserialize)]
struct PageQuery {
    offset: Option<String>,
    count: Option<String>,
}

impl PageQuery {
    fn page(&self) -> Result<(i64, i64), GatewayError> {
        let offset = parse_int64("offset", self.offset.as_deref())?.unwrap_or(0);
        // proto3 cannot tell count=0 from no count; both get the default page.
        let count =
            parse_int64("count", self.count.as_deref())?.filter(|count| *count != 0).unwrap_or(DEFAULT_PAGE_SIZE);
        if offset < 0 {
            return Err(GatewayError::invalid_argument("offset must not be negative"));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&count) {
            return Err(GatewayError::invalid_argument(format!("count must be between 1 and {MAX_PAGE_SIZE}")));
        }
        Ok((offset, count))
    }
}

fn parse_int64(field: &str, text: Option<&str>) -> Result<Option<i64>, GatewayError> {
    text.map(|text| {
        text.parse::<i64>().map_err(|_| GatewayError::invalid_argument(format!("{field}: {text:?} is not an int64")))
    })
    .transpose()
}

/// Decodes `%XX` escapes; anything else, malformed escapes included, is kept as it is.
fn percent_decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)).map(|(high, low)| high << 4 | low),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit).to_digit(16).and_then(|value| u8::try_from(value).ok())
}

// ---------------------------------------------------------------------------------------------
// Errors, as grpc-gateway writes them

/// The gRPC status codes this server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GrpcCode {
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// grpc-gateway's HTTPStatusFromCode.
    fn http_status(self) -> StatusCode {
        match self {
            GrpcCode::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            GrpcCode::Unknown | GrpcCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            GrpcCode::InvalidArgument => StatusCode::BAD_REQUEST,
            GrpcCode::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            GrpcCode::NotFound => StatusCode::NOT_FOUND,
            GrpcCode::AlreadyExists => StatusCode::CONFLICT,
            GrpcCode::PermissionDenied => StatusCode::FORBIDDEN,
            GrpcCode::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            GrpcCode::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            GrpcCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            GrpcCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        }
    }

    /// The code grpc-gateway would have mapped to `status`, for injected failures.
    fn for_http_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 => GrpcCode::InvalidArgument,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::NotFound,
            409 => GrpcCode::AlreadyExists,
            429 => GrpcCode::ResourceExhausted,
            499 => GrpcCode::Cancelled,
            501 => GrpcCode::Unimplemented,
            503 => GrpcCode::Unavailable,
            504 => GrpcCode::DeadlineExceeded,
            500 => GrpcCode::Internal,
            _ => GrpcCode::Unknown,
        }
    }
}

/// An error answer: `{"code":<grpc code>,"message":"...","details":[]}` with an HTTP status.
#[derive(Debug, Clone)]
struct GatewayError {
    status: StatusCode,
    code: GrpcCode,
    message: String,
}

impl GatewayError {
    fn new(code: GrpcCode, message: impl Into<String>) -> Self {
        GatewayError { status: code.http_status(), code, message: message.into() }
    }

    fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(GrpcCode::InvalidArgument, message)
    }

    fn invalid_name(len: usize) -> Self {
        Self::invalid_argument(format!("invalid name: {len} bytes, a client name has 1 to {MAX_NAME_LEN}"))
    }

    fn client_not_found() -> Self {
        Self::new(GrpcCode::NotFound, "client not found")
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(GrpcCode::Internal, message)
    }

    fn storage(error: anyhow::Error) -> Self {
        // Query errors name statements, never bound values, so no key can leak through here.
        eprintln!("C2 test server: storage error: {error:#}");
        Self::internal(format!("storage error: {error}"))
    }

    fn body_too_large() -> Self {
        // grpc-gateway has no limit of its own; 413 is what a fronting proxy would answer.
        GatewayError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: GrpcCode::ResourceExhausted,
            message: format!("request body larger than {MAX_BODY_BYTES} bytes"),
        }
    }

    fn injected(status: StatusCode, message: &str) -> Self {
        GatewayError { status, code: GrpcCode::for_http_status(status), message: message.to_owned() }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = json!({ "code": self.code as i32, "message": self.message, "details": [] });
        (self.status, Json(body)).into_response()
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

/// Clients in PostgreSQL, keys sealed.
struct ClientStore {
    pool: PgPool,
    sealer: KeySealer,
}

impl ClientStore {
    async fn create_schema(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE clients (
                name TEXT PRIMARY KEY,
                e4_id BYTEA NOT NULL UNIQUE,
                sealed_key BYTEA NOT NULL,
                updated_at BIGINT NOT NULL,
                version BIGINT NOT NULL
            )",
        )
        .execute(&self.pool)
        .await
        .context("cannot create the clients table")?;
        Ok(())
    }

    /// Creates the client or replaces its key, as C2's NewClient does.
    async fn upsert(&self, name: &str, key: &[u8]) -> Result<()> {
        let sealed = self.sealer.seal(name, key)?;
        sqlx::query(
            "INSERT INTO clients (name, e4_id, sealed_key, updated_at, version) VALUES ($1, $2, $3, $4, 1)
             ON CONFLICT (name) DO UPDATE SET sealed_key = EXCLUDED.sealed_key,
                 updated_at = EXCLUDED.updated_at, version = clients.version + 1",
        )
        .bind(name)
        .bind(DeviceId::from_name(name).0.to_vec())
        .bind(sealed)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .context("cannot store the client")?;
        Ok(())
    }

    /// Gives an existing client a fresh random key; false if there is no such client.
    async fn replace_with_random_key(&self, name: &str) -> Result<bool> {
        let sealed = self.sealer.seal(name, &random_client_key()?)?;
        let updated =
            sqlx::query("UPDATE clients SET sealed_key = $2, updated_at = $3, version = version + 1 WHERE name = $1")
                .bind(name)
                .bind(sealed)
                .bind(unix_now())
                .execute(&self.pool)
                .await
                .context("cannot rotate the client key")?;
        Ok(updated.rows_affected() == 1)
    }

    /// Removes a client; false if there was none.
    async fn remove(&self, name: &str) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM clients WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .context("cannot remove the client")?;
        Ok(deleted.rows_affected() == 1)
    }

    /// A page of names, in byte order (`COLLATE "C"`: the database's locale must not decide).
    async fn names(&self, offset: i64, count: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM clients ORDER BY name COLLATE \"C\" OFFSET $1 LIMIT $2")
            .bind(offset)
            .bind(count)
            .fetch_all(&self.pool)
            .await
            .context("cannot list clients")?;
        rows.iter().map(|row| row.try_get("name").context("name column")).collect()
    }

    async fn count(&self) -> Result<i64> {
        let row =
            sqlx::query("SELECT count(*) FROM clients").fetch_one(&self.pool).await.context("cannot count clients")?;
        row.try_get(0).context("count column")
    }

    async fn all_keys(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let rows = sqlx::query("SELECT name, sealed_key FROM clients")
            .fetch_all(&self.pool)
            .await
            .context("cannot read clients")?;
        let mut keys = BTreeMap::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            let sealed: Vec<u8> = row.try_get("sealed_key")?;
            let key = self.sealer.open(&name, &sealed)?;
            keys.insert(name, key);
        }
        Ok(keys)
    }

    /// Every row of every table of the public schema, as `row_to_json` text (bytea as hex).
    async fn dump(&self) -> Result<Vec<u8>> {
        let tables = sqlx::query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await
        .context("cannot list tables")?;
        let mut dump = Vec::new();
        for table in tables {
            let table: String = table.try_get(0)?;
            let quoted = table.replace('"', "\"\"");
            let rows = sqlx::query(&format!("SELECT row_to_json(t)::text FROM \"{quoted}\" t"))
                .fetch_all(&self.pool)
                .await
                .with_context(|| format!("cannot dump {table}"))?;
            for row in rows {
                let json: String = row.try_get(0)?;
                dump.extend_from_slice(json.as_bytes());
                dump.push(b'\n');
            }
        }
        Ok(dump)
    }
}

/// AES-SIV sealing of keys at rest, as C2 does, under a key that lives only in this process.
struct KeySealer {
    key: [u8; SEALING_KEY_LEN],
}

impl KeySealer {
    fn random() -> Result<Self> {
        let mut key = [0u8; SEALING_KEY_LEN];
        SystemRandom::new().fill(&mut key).map_err(|_| anyhow!("no randomness for the sealing key"))?;
        Ok(KeySealer { key })
    }

    fn cipher(&self) -> Result<Aes256Siv> {
        Aes256Siv::new_from_slice(&self.key).map_err(|_| anyhow!("AES-SIV key length"))
    }

    /// Seals `key` bound to the client's name, so a sealed key cannot be moved to another client.
    fn seal(&self, name: &str, key: &[u8]) -> Result<Vec<u8>> {
        self.cipher()?.encrypt([name.as_bytes()], key).map_err(|_| anyhow!("AES-SIV sealing failed"))
    }

    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        self.cipher()?
            .decrypt([name.as_bytes()], sealed)
            .map_err(|_| anyhow!("the sealed key of {name:?} does not open"))
    }
}

fn random_client_key() -> Result<[u8; CLIENT_KEY_LEN]> {
    let mut key = [0u8; CLIENT_KEY_LEN];
    // All zero is invalid in E4; with 256 random bits it does not happen, but never store one.
    while key.iter().all(|byte| *byte == 0) {
        SystemRandom::new().fill(&mut key).map_err(|_| anyhow!("no randomness for a client key"))?;
    }
    Ok(key)
}

fn unix_now() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_secs()).unwrap_or_default();
    i64::try_from(seconds).unwrap_or(i64::MAX)
}
