//! A stand-in for C2, E4's key server, for the end-to-end tests of `keyfill export c2`.
//!
//! [`C2Server`] speaks C2's HTTP/JSON gateway (grpc-gateway v1 in front of C2's gRPC API) over
//! real HTTPS on loopback, with a certificate from a test CA it generates, and keeps its clients in
//! a fresh PostgreSQL database of its own. It behaves as a running C2 was seen to behave
//! (`E4.md`, "C2 gateway behaviour a client must handle"):
//!
//! - `POST /e4/client/{name}` is an upsert answering 200 `{}` whether the client existed or not;
//!   the key must be standard, padded base64 of exactly 32 bytes, not all zero (else 400); the
//!   path's name wins over the body's and unknown body fields (an `id`) are ignored; an empty name
//!   is 400; a name is not limited to 255 bytes, but the name column holds 256 characters, so a
//!   longer one fails in storage with 500, as C2 on PostgreSQL does;
//! - `PATCH /e4/client/{name}` is C2's NewClientKey: C2 rotates the key on its own; `PUT` resets
//!   the client's topics; both, and `DELETE`, answer 404 (code 5) for an unknown client;
//!   `GET /e4/client/{name}` is 405: no key can be read back;
//! - `GET /e4/clients?offset=N&count=M` serves at most [`PAGE_CAP`] names a page, sorted,
//!   whatever `count` asks; without a count the answer is `{"clients":[]}`; a negative count is
//!   500; `GET /e4/clients/count` and the health check answer int64s as JSON strings;
//! - errors are grpc-gateway v1 bodies `{"error","code","message","details"}` with its HTTP status
//!   mapping; an unknown route, and a name holding `/` (even sent as `%2F`), is a plain-text 404,
//!   and a known path with another method a plain-text 405, as grpc-gateway v1's mux answers;
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
use base64::engine::general_purpose::STANDARD;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use keyfill_formats::DeviceId;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
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

mod api;
mod errors;
mod listener;
mod pki;
mod server;
mod store;

use api::*;
use errors::*;
use listener::*;
use pki::*;
use server::*;
use store::*;

/// Largest request body the server accepts (413 beyond).
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read and discarded before answering 413: closing a socket
/// with unread data makes the kernel send a reset, and the client would see that instead of the
/// answer (Go's net/http drains for the same reason).
pub(super) const OVERSIZED_BODY_DRAIN_BYTES: usize = 1024 * 1024;
/// Most names one page of `GET /e4/clients` holds, whatever `count` asks (C2's own cap).
pub const PAGE_CAP: i64 = 100;
/// Characters the name column holds (C2's PostgreSQL schema).
pub(super) const NAME_COLUMN_CHARS: usize = 256;
/// Length of a symmetric E4 client key, and of the Ed25519 public key C2 keeps in public-key mode.
pub(super) const CLIENT_KEY_LEN: usize = 32;
/// AES-SIV key length: two AES-256 keys (MAC and CTR).
pub(super) const SEALING_KEY_LEN: usize = 64;

/// A C2 gone wrong, or a peer pretending to be C2, as [`C2Server::misbehave`] makes it answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Every answer waits this long before its first byte.
    Stall(Duration),
    /// Every answer is 200 with a body that is not JSON.
    Garbage,
    /// Every answer is 200 with a body of this many bytes, the start of a JSON client list that
    /// never ends.
    HugeBody(usize),
}

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

    /// Clears every injected fault: failing POSTs, rejected clients, the POST delay, clients
    /// added while paging and misbehaviour.
    pub fn clear_faults(&self) {
        let mut controls = self.shared.controls();
        let (mode, added_while_paging) = (controls.mode, controls.added_while_paging);
        *controls = Controls { mode, added_while_paging, ..Controls::default() };
    }

    /// From now on every request is answered as `how` says (and nothing is stored), until
    /// [`C2Server::clear_faults`].
    pub fn misbehave(&self, how: Misbehaviour) {
        self.shared.controls().misbehaviour = Some(how);
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
        self.shared.requests().iter().map(|r| (r.method.clone(), r.decoded_path.clone(), r.status)).collect()
    }

    /// Every request line received so far, in answer order, exactly as sent: `METHOD TARGET`,
    /// the target (path and query) still percent-encoded.
    pub fn request_lines(&self) -> Vec<String> {
        self.shared.requests().iter().map(|r| format!("{} {}", r.method, r.target)).collect()
    }

    /// From now on, every `GET /e4/clients` past the first page first registers one more client
    /// that sorts before every other name, as another tool registering clients while an exporter
    /// pages through the list would; cleared by [`C2Server::clear_faults`].
    pub fn add_a_client_during_each_listing(&self) {
        self.shared.controls().add_client_while_paging = true;
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
