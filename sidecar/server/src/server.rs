//! The accept loop and one task per connection (mini-redis style): a thin
//! `main` calls [`run`]; tests bind port 0 and call it in-process.
//!
//! A connection reads frames, parses each into a request, answers it
//! through `commands::handle`, and writes the reply. A malformed message is
//! logged with its reason and closes that connection only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, broadcast, mpsc};

use crate::commands::{self, Conn};
use crate::service::Service;
use crate::wire::{Frame, Reply, Request, RequestKind, WireError};

/// Most client connections served at once; more wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Serves MongoDB clients on `listener` until `shutdown` completes, then
/// waits for open connections to finish their current request.
pub async fn run(listener: TcpListener, service: Arc<Service>, shutdown: impl Future) {
    let (notify_shutdown, _) = broadcast::channel::<()>(1);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let reaper = tokio::spawn(reap_cursors(service.clone()));
    service
        .metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    let accept = async {
        loop {
            let permit = match limit.clone().acquire_owned().await {
                Ok(p) => p,
                Err(_) => return,
            };
            let (stream, peer) = match accept_with_backoff(&listener).await {
                Some(s) => s,
                None => return,
            };
            let service = service.clone();
            let shutdown_rx = notify_shutdown.subscribe();
            let done = done_tx.clone();
            tokio::spawn(async move {
                serve_connection(stream, peer, service, shutdown_rx).await;
                drop(permit);
                drop(done);
            });
        }
    };
    tokio::select! {
        _ = accept => tracing::error!("accept loop ended: the listener failed repeatedly"),
        _ = shutdown => tracing::info!("shutting down"),
    }
    service
        .metrics
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    reaper.abort();
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

/// Every few seconds: idle cursors and sessions, expired transactions.
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
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    service: Arc<Service>,
    mut shutdown: broadcast::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(service.next_connection_id(), peer);
    service.metrics.connections_total.inc();
    service.metrics.connections_open.inc();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut response_id = 0i32;
    let result: Result<(), ConnError> = async {
        loop {
            let frame = tokio::select! {
                f = read_frame(&mut stream, &mut buf) => f?,
                _ = shutdown.recv() => return Ok(()),
            };
            let Some(frame) = frame else { return Ok(()) };
            let request = Request::parse(&frame)?;
            let reply = commands::handle(&service, &mut conn, &request).await;
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
/// between messages.
async fn read_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, ConnError> {
    loop {
        if let Some(frame) = Frame::decode(buf)? {
            return Ok(Some(frame));
        }
        if stream.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ConnError::ClosedMidMessage(buf.len()))
            };
        }
    }
}
