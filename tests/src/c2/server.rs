//! The server thread: its runtime, the state the handlers share, and the fault controls.

use super::*;

pub(super) struct ServerSetup {
    pub(super) database_url: String,
    pub(super) mode: CryptoMode,
    pub(super) tls: TlsAcceptor,
    pub(super) commands: mpsc::UnboundedReceiver<ListenerCommand>,
}

pub(super) struct Started {
    pub(super) shared: Arc<Shared>,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) address: SocketAddr,
}

/// Body of the server thread: owns the runtime, so that it is dropped on this thread and never
/// inside a caller's async context.
pub(super) fn run_server_thread(setup: ServerSetup, ready: std::sync::mpsc::Sender<Result<Started>>) {
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
pub(super) struct Shared {
    pub(super) store: ClientStore,
    pub(super) controls: Mutex<Controls>,
    pub(super) requests: Mutex<Vec<RequestRecord>>,
}

/// One answered request.
pub(super) struct RequestRecord {
    pub(super) method: String,
    /// Path and query as they arrived, percent-encoding included.
    pub(super) target: String,
    /// The path percent-decoded.
    pub(super) decoded_path: String,
    pub(super) status: u16,
}

impl Shared {
    // A panicking test thread must not make every later request fail: ignore poisoning.
    pub(super) fn controls(&self) -> MutexGuard<'_, Controls> {
        self.controls.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn requests(&self) -> MutexGuard<'_, Vec<RequestRecord>> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the tests have asked the server to do differently.
#[derive(Debug)]
pub(super) struct Controls {
    pub(super) mode: CryptoMode,
    pub(super) failing_posts: usize,
    pub(super) failing_status: StatusCode,
    pub(super) rejected_clients: HashMap<String, GatewayError>,
    pub(super) post_delay: Duration,
    pub(super) add_client_while_paging: bool,
    /// Clients added while paging so far, to name the next one.
    pub(super) added_while_paging: usize,
    /// How every answer is spoiled, if it is.
    pub(super) misbehaviour: Option<Misbehaviour>,
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            mode: CryptoMode::SymKey,
            failing_posts: 0,
            failing_status: StatusCode::SERVICE_UNAVAILABLE,
            rejected_clients: HashMap::new(),
            post_delay: Duration::ZERO,
            add_client_while_paging: false,
            added_while_paging: 0,
            misbehaviour: None,
        }
    }
}

impl Controls {
    /// Consumes one injected POST failure, if any is left.
    pub(super) fn take_post_failure(&mut self) -> Option<GatewayError> {
        if self.failing_posts == 0 {
            return None;
        }
        self.failing_posts -= 1;
        Some(GatewayError::injected(self.failing_status, "injected failure: the C2 test server was told to fail"))
    }

    /// The name of a client to register before serving a page past the first, if asked to.
    pub(super) fn take_client_to_add(&mut self, offset: i64) -> Option<String> {
        if !self.add_client_while_paging || offset == 0 {
            return None;
        }
        self.added_while_paging += 1;
        // "!" sorts before letters and digits: every name already listed moves one place on.
        Some(format!("!added-while-paging-{}", self.added_while_paging))
    }
}
