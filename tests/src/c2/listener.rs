//! Accepting connections, and stopping and starting to listen on request.

use super::*;

pub(super) enum ListenerCommand {
    Pause(std::sync::mpsc::Sender<()>),
    Resume(std::sync::mpsc::Sender<std::io::Result<()>>),
}

pub(super) struct Listener {
    pub(super) address: SocketAddr,
    pub(super) tls: TlsAcceptor,
    pub(super) router: Router,
    /// `None` while paused: the port is closed, so connecting is refused.
    pub(super) listener: Option<TcpListener>,
    /// Every open connection, so that pausing can close them all.
    pub(super) connections: JoinSet<()>,
}

impl Listener {
    /// Serves until the handle is dropped (its command channel closes).
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<ListenerCommand>) {
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
    pub(super) async fn pause(&mut self) {
        self.listener = None;
        self.connections.abort_all();
        while self.connections.join_next().await.is_some() {}
    }

    pub(super) fn resume(&mut self) -> std::io::Result<()> {
        if self.listener.is_none() {
            self.listener = Some(bind(self.address)?);
        }
        Ok(())
    }
}

pub(super) fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
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
