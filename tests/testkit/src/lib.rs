//! Test support for Argon: the real servers every integration test runs against.
//!
//! Each server (etcd + kube-apiserver, FerretDB) starts as a child process on a
//! free loopback port in its own temporary directory, is polled until it
//! answers, and is killed when its handle drops. Children are spawned with
//! `PR_SET_PDEATHSIG`, so even a test binary killed with SIGKILL leaves no
//! server behind. When a test panics, each server it owned prints the tail of
//! its log to stderr.
//!
//! Binaries come from the cache that `tests/infra/bootstrap` fills; see
//! [`assets`] for how they are found.

pub mod assets;
pub mod clients;
pub mod ferretdb;
pub mod kube_apiserver;
pub mod process;
pub mod tls;

pub use ferretdb::FerretDb;
pub use kube_apiserver::KubeApiServer;

use std::time::Duration;

/// Polls `check` until it returns `Ok(true)` or `timeout` passes; the last
/// error (or "still false") is returned on timeout so failures explain themselves.
///
/// One check gets at most `CHECK_LIMIT` (and never past the deadline): a
/// request that stalls (an HTTP client's read timeout is minutes) is
/// retried like a failed one instead of holding the whole wait.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    const CHECK_LIMIT: Duration = Duration::from_secs(10);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let limit = left.clamp(Duration::from_millis(100), CHECK_LIMIT);
        let last = match tokio::time::timeout(limit, check()).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => String::from("condition still false"),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("a check did not return within {limit:?}"),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1. The port is released before it is returned,
/// so callers that race for it retry on "address in use" (servers here do).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
