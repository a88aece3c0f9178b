//! The accept loop and one task per connection (mini-redis style): a thin
//! `main` calls [`run_with`]; tests bind port 0 and call [`run`] in-process.
//!
//! A connection reads frames, parses each into a request, answers it
//! through `commands::handle`, and writes the reply. A malformed message is
//! logged with its reason and closes that connection only; a message whose
//! documents break a limit (too deep, too large) gets an error reply and
//! the connection goes on. Connections beyond `max_connections` are closed
//! as they arrive, and a message that has started but does not complete
//! within `frame_timeout` closes its connection (an idle connection between
//! messages may stay). Read buffers grow with the bytes that arrive.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::commands::{self, Conn};
use crate::service::Service;
use crate::wire::{Frame, Reply, Request, RequestKind, WireError, missing_bytes};

/// Connection limits of a server (`serve --max-connections`,
/// `--frame-timeout-ms`).
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Most client connections served at once; a connection beyond them is
    /// closed when it arrives.
    pub max_connections: usize,
    /// How long a message may take to arrive once its first byte has.
    pub frame_timeout: Duration,
    /// The peer listener (`--peer-listen`): other sidecars forward writes
    /// here. Its connections run what they send here, never forward it on,
    /// and may run only forwarded commands.
    pub peer: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: crate::limits::DEFAULT_MAX_CONNECTIONS,
            frame_timeout: crate::limits::DEFAULT_FRAME_TIMEOUT,
            peer: false,
        }
    }
}

/// [`run_with`] and the default [`ServerOptions`].
pub async fn run(listener: TcpListener, service: Arc<Service>, shutdown: impl Future) {
    run_with(listener, service, ServerOptions::default(), shutdown).await
}

/// Serves MongoDB clients on `listener` until `shutdown` completes, then
/// waits for open connections to finish their current request.
pub async fn run_with(
    listener: TcpListener,
    service: Arc<Service>,
    options: ServerOptions,
    shutdown: impl Future,
) {
    run_with_tls(listener, service, options, None, shutdown).await
}

/// [`run_with`], every connection over TLS when `tls` is given (a client
/// that does not complete the handshake within `frame_timeout` is closed).
pub async fn run_with_tls(
    listener: TcpListener,
    service: Arc<Service>,
    options: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future,
) {
    let (notify_shutdown, _) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let limit = Arc::new(Semaphore::new(options.max_connections.max(1)));
    // The client listener owns readiness and the reaper; a peer listener
    // beside it shares both.
    let reaper = (!options.peer).then(|| tokio::spawn(reap_cursors(service.clone())));
    if !options.peer {
        service
            .metrics
            .ready
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    let accept = async {
        let mut last_refusal_log: Option<Instant> = None;
        let mut refused_unlogged = 0u64;
        loop {
            let (stream, peer) = match accept_with_backoff(&listener).await {
                Some(s) => s,
                None => return,
            };
            let permit = match limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    service.metrics.connections_refused.inc();
                    refused_unlogged += 1;
                    // One line per second at most, so a flood of connections
                    // cannot flood the log too.
                    if last_refusal_log
                        .is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1))
                    {
                        tracing::warn!(
                            %peer,
                            max_connections = options.max_connections,
                            refused = refused_unlogged,
                            "closing new connections: the server already has its maximum number of connections"
                        );
                        refused_unlogged = 0;
                        last_refusal_log = Some(Instant::now());
                    }
                    drop(stream);
                    continue;
                }
            };
            let service = service.clone();
            let shutdown_rx = notify_shutdown.subscribe();
            let done = done_tx.clone();
            let (frame_timeout, from_peer) = (options.frame_timeout, options.peer);
            let tls = tls.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                match tls {
                    None => {
                        serve_connection(
                            stream,
                            peer,
                            service,
                            shutdown_rx,
                            frame_timeout,
                            from_peer,
                        )
                        .await
                    }
                    Some(acceptor) => {
                        match tokio::time::timeout(frame_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => {
                                serve_connection(
                                    stream,
                                    peer,
                                    service,
                                    shutdown_rx,
                                    frame_timeout,
                                    from_peer,
                                )
                                .await
                            }
                            Ok(Err(e)) => {
                                service.metrics.protocol_errors.inc();
                                tracing::info!(%peer, error = %e, "TLS handshake failed");
                            }
                            Err(_) => {
                                service.metrics.protocol_errors.inc();
                                tracing::info!(%peer, "TLS handshake timed out");
                            }
                        }
                    }
                }
                drop(permit);
                drop(done);
            });
        }
    };
    tokio::select! {
        _ = accept => tracing::error!("accept loop ended: the listener failed repeatedly"),
        _ = shutdown => tracing::info!("shutting down"),
    }
    if let Some(reaper) = reaper {
        service
            .metrics
            .ready
            .store(false, std::sync::atomic::Ordering::Relaxed);
        reaper.abort();
    }
    drop(notify_shutdown);
    drop(done_tx);
    let _ = done_rx.recv().await;
}

async fn accept_with_backoff(listener: &TcpListener) -> Option<(TcpStream, SocketAddr)> {
    let mut backoff = Duration::from_millis(1);
    loop {
        match listener.accept().await {
            Ok(s) => return Some(s),
            Err(e) => {
                if backoff > Duration::from_secs(64) {
                    tracing::error!(error = %e, "accept failed");
                    return None;
                }
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

/// Every few seconds: idle cursors and sessions, expired transactions, and
/// the project's users.
async fn reap_cursors(service: Arc<Service>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let (aborted, ended) = service.sessions.reap(Instant::now());
        if aborted + ended > 0 {
            tracing::info!(
                aborted,
                ended,
                "aborted expired transactions, forgot idle sessions"
            );
        }
        // Users changed through another sidecar of the project (a dropped
        // user, revoked roles) reach this one's open connections here.
        if service.auth_required()
            && let Err(e) = service.users.refresh(&service.wal).await
        {
            tracing::warn!(error = %e, "cannot refresh the project's users");
        }
        let n = service.cursors.reap(Instant::now());
        if n > 0 {
            tracing::info!(reaped = n, "closed idle cursors");
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("malformed message: {0}")]
    Wire(#[from] WireError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed in the middle of a message ({0} bytes received)")]
    ClosedMidMessage(usize),
    #[error("a message stalled: {received} bytes of it arrived, the rest not within {timeout:?}")]
    Stalled { received: usize, timeout: Duration },
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    service: Arc<Service>,
    mut shutdown: broadcast::Receiver<()>,
    frame_timeout: Duration,
    from_peer: bool,
) {
    let mut conn = Conn::new(service.next_connection_id(), peer);
    conn.from_peer = from_peer;
    // Listed (`$currentOp`'s idleConnections) until it closes.
    let _listed = service.operations.connect(conn.client());
    service.metrics.connections_total.inc();
    service.metrics.connections_open.inc();
    let mut buf = BytesMut::new();
    let mut response_id = 0i32;
    let result: Result<(), ConnError> = async {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut stream, &mut buf, frame_timeout) => f?,
                _ = shutdown.recv() => return Ok(()),
            };
            let Some(frame) = frame else { return Ok(()) };
            let request = Request::parse(&frame)?;
            drop(frame);
            let reply = match &request.rejected {
                Some(e) => {
                    service
                        .metrics
                        .command_errors
                        .get_or_create(&crate::metrics::ErrorLabels {
                            code_name: e.code.name().to_owned(),
                        })
                        .inc();
                    tracing::debug!(conn = conn.id, error = %e, "request refused before parsing");
                    e.to_document()
                }
                None => match commands::handle(&service, &mut conn, &request).await {
                    Some(reply) => reply,
                    // A `failCommand` fail point's closeConnection: the
                    // client sees a network error, as from mongod.
                    None => return Ok(()),
                },
            };
            if matches!(request.kind, RequestKind::Msg { more_to_come: true }) {
                continue;
            }
            response_id = response_id.wrapping_add(1);
            let bytes = match Reply::encode(&request, response_id, &reply) {
                Ok(b) => b,
                Err(e) => {
                    let err = crate::error::CommandError::new(
                        crate::error::ErrorCode::BSONObjectTooLarge,
                        format!("the reply could not be encoded: {e}"),
                    );
                    Reply::encode(&request, response_id, &err.to_document())?
                }
            };
            stream.write_all(&bytes).await?;
            // A TLS stream may hold the last record until flushed (a plain
            // TCP stream's flush does nothing).
            stream.flush().await?;
        }
    }
    .await;
    service.metrics.connections_open.dec();
    match result {
        Ok(()) => tracing::debug!(conn = conn.id, %peer, "connection closed"),
        Err(ConnError::Io(e)) => {
            tracing::debug!(conn = conn.id, %peer, error = %e, "connection ended")
        }
        Err(e) => {
            service.metrics.protocol_errors.inc();
            tracing::warn!(conn = conn.id, %peer, reason = %e, "closing connection");
        }
    }
}

/// Reads until `buf` holds one whole frame. `Ok(None)` is a clean close
/// between messages. Waiting for a message's first byte has no time limit;
/// once it has arrived, the whole message must within `frame_timeout`. The
/// buffer grows by at most [`crate::limits::READ_CHUNK`] per read, so it
/// holds what arrived, not what a header claims; a large buffer is
/// released once its message is taken.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    frame_timeout: Duration,
) -> Result<Option<Frame>, ConnError> {
    let mut deadline = (!buf.is_empty()).then(|| tokio::time::Instant::now() + frame_timeout);
    loop {
        if let Some(frame) = Frame::decode(buf)? {
            if buf.is_empty() && buf.capacity() > crate::limits::READ_CHUNK {
                *buf = BytesMut::new();
            }
            return Ok(Some(frame));
        }
        let want = missing_bytes(buf).clamp(1, crate::limits::READ_CHUNK);
        buf.reserve(want);
        let read = match deadline {
            None => stream.read_buf(buf).await?,
            Some(d) => match tokio::time::timeout_at(d, stream.read_buf(buf)).await {
                Ok(n) => n?,
                Err(_) => {
                    return Err(ConnError::Stalled {
                        received: buf.len(),
                        timeout: frame_timeout,
                    });
                }
            },
        };
        if read == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ConnError::ClosedMidMessage(buf.len()))
            };
        }
        if deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + frame_timeout);
        }
    }
}
