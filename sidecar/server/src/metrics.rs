//! Prometheus metrics and the HTTP endpoint that serves them with the
//! health checks: `/metrics`; `/healthz`, liveness: the process answers
//! (nothing else is checked, so a store outage never gets the pod
//! restarted); `/readyz`, readiness: the server accepts connections *and*
//! the WAL can commit now: its store answers and is not poisoned, and no
//! branch committer has stopped (`Wal::health`). A 503 names the reason.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use argon_wal::Wal;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub code_name: String,
}

/// How a past read was served: `store` or `replay` (two values).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PastReadLabels {
    pub served_by: String,
}

/// A branch name as a label: names are bounded by the project's catalog.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BranchLabels {
    pub branch: String,
}

fn branch(name: &str) -> BranchLabels {
    BranchLabels {
        branch: name.to_owned(),
    }
}

/// Buckets of the replication-lag histogram, in seconds (1 ms to 10 s).
fn lag_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// The server's metrics. Cheap to share (`Arc` inside each metric).
pub struct Metrics {
    registry: Registry,
    pub commands: Family<CommandLabels, Counter>,
    pub command_errors: Family<ErrorLabels, Counter>,
    pub connections_open: Gauge<i64, AtomicI64>,
    pub connections_total: Counter,
    pub connections_refused: Counter,
    pub protocol_errors: Counter,
    pub commits: Counter,
    /// WAL commits this process appended, and the writes they carried, by branch.
    pub branch_commits: Family<BranchLabels, Counter>,
    pub branch_commit_writes: Family<BranchLabels, Counter>,
    /// Appends lost to another process's commit at the same seq.
    pub append_conflicts: Family<BranchLabels, Counter>,
    /// Write commands (and transaction statements) sent to the branch's
    /// writer, and forwards that failed.
    pub forwarded: Family<BranchLabels, Counter>,
    pub forward_failures: Counter,
    /// 1 while this sidecar holds the branch's writer lease.
    pub branch_writer: Family<BranchLabels, Gauge<i64, AtomicI64>>,
    /// Reads of past points, by how they were served (`store`: a view of
    /// the materialized store; `replay`: the log folded into memory).
    pub past_reads: Family<PastReadLabels, Counter>,
    /// The materialized store's bytes on disk as last measured, and 1 while
    /// it is at its bound (`--cache-disk-bytes`); read from the store at
    /// each scrape (`encode`).
    pub cache_disk_bytes: Gauge<i64, AtomicI64>,
    pub cache_full: Gauge<i64, AtomicI64>,
    /// How old another process's commit is when this one applies it.
    pub replication_lag: Family<BranchLabels, Histogram, fn() -> Histogram>,
    pub ready: AtomicBool,
    /// The WAL whose health `/readyz` reports (set once it is open).
    wal: OnceLock<Wal>,
}

/// How long `/readyz` waits for the store to answer a ping: under the
/// kubelet's default probe timeout (1 s), so a probe gets the 503 and its
/// reason rather than timing out itself.
const READY_PROBE_TIMEOUT: Duration = Duration::from_millis(800);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("argon_sidecar");
        let commands = Family::<CommandLabels, Counter>::default();
        let command_errors = Family::<ErrorLabels, Counter>::default();
        let connections_open = Gauge::<i64, AtomicI64>::default();
        let connections_total = Counter::default();
        let connections_refused = Counter::default();
        let protocol_errors = Counter::default();
        let commits = Counter::default();
        let branch_commits = Family::<BranchLabels, Counter>::default();
        let branch_commit_writes = Family::<BranchLabels, Counter>::default();
        let append_conflicts = Family::<BranchLabels, Counter>::default();
        let forwarded = Family::<BranchLabels, Counter>::default();
        let forward_failures = Counter::default();
        let past_reads = Family::<PastReadLabels, Counter>::default();
        let cache_disk_bytes = Gauge::<i64, AtomicI64>::default();
        let cache_full = Gauge::<i64, AtomicI64>::default();
        let branch_writer = Family::<BranchLabels, Gauge<i64, AtomicI64>>::default();
        let replication_lag =
            Family::<BranchLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                lag_histogram,
            );
        registry.register(
            "branch_commits",
            "WAL commits this sidecar appended, by branch",
            branch_commits.clone(),
        );
        registry.register(
            "branch_commit_writes",
            "Writes carried by the commits this sidecar appended, by branch",
            branch_commit_writes.clone(),
        );
        registry.register(
            "append_conflicts",
            "Appends lost to another writer's commit at the same seq (retried), by branch",
            append_conflicts.clone(),
        );
        registry.register(
            "forwarded",
            "Write commands and transaction statements forwarded to the branch's writer",
            forwarded.clone(),
        );
        registry.register(
            "forward_failures",
            "Forwards to a branch writer that failed (unreachable or no reply)",
            forward_failures.clone(),
        );
        registry.register(
            "branch_writer",
            "1 while this sidecar holds the branch's writer lease",
            branch_writer.clone(),
        );
        registry.register(
            "past_reads",
            "Reads of a past point (time travel), by how they were served: store (the materialized store, --cache-dir) or replay (the log folded into memory)",
            past_reads.clone(),
        );
        registry.register(
            "cache_disk_bytes",
            "Bytes the materialized store (--cache-dir) takes on disk, as last measured",
            cache_disk_bytes.clone(),
        );
        registry.register(
            "cache_full",
            "1 while the materialized store is at its disk bound (--cache-disk-bytes): nothing more is applied to it and past reads of points it does not hold replay the log",
            cache_full.clone(),
        );
        registry.register(
            "replication_lag_seconds",
            "Age of another process's commit when this sidecar applies it, by branch",
            replication_lag.clone(),
        );
        registry.register("commands", "Commands received, by name", commands.clone());
        registry.register(
            "command_errors",
            "Commands answered with ok: 0, by codeName",
            command_errors.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        registry.register(
            "connections",
            "Client connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed on arrival: the server had its maximum number open",
            connections_refused.clone(),
        );
        registry.register(
            "protocol_errors",
            "Connections closed for a malformed message",
            protocol_errors.clone(),
        );
        registry.register(
            "wal_commits",
            "Writes acknowledged after a durable WAL commit",
            commits.clone(),
        );
        Metrics {
            registry,
            commands,
            command_errors,
            connections_open,
            connections_total,
            connections_refused,
            protocol_errors,
            commits,
            branch_commits,
            branch_commit_writes,
            append_conflicts,
            forwarded,
            forward_failures,
            past_reads,
            cache_disk_bytes,
            cache_full,
            branch_writer,
            replication_lag,
            ready: AtomicBool::new(false),
            wal: OnceLock::new(),
        }
    }
}

impl argon_wal::WalObserver for Metrics {
    fn append_conflict(&self, name: &str, _attempt: u32) {
        self.append_conflicts.get_or_create(&branch(name)).inc();
    }

    fn committed(&self, name: &str, writes: usize) {
        self.branch_commits.get_or_create(&branch(name)).inc();
        self.branch_commit_writes
            .get_or_create(&branch(name))
            .inc_by(writes as u64);
    }

    fn past_read(&self, _branch: &str, stored: bool) {
        let served_by = if stored { "store" } else { "replay" };
        self.past_reads
            .get_or_create(&PastReadLabels {
                served_by: served_by.to_owned(),
            })
            .inc();
    }

    fn foreign_commit(&self, name: &str, age_ms: i64) {
        self.replication_lag
            .get_or_create(&branch(name))
            .observe(age_ms.max(0) as f64 / 1000.0);
    }
}

impl Metrics {
    pub fn set_writer(&self, name: &str, holds: bool) {
        self.branch_writer
            .get_or_create(&branch(name))
            .set(i64::from(holds));
    }

    pub fn forwarded_to_writer(&self, name: &str) {
        self.forwarded.get_or_create(&branch(name)).inc();
    }

    /// Makes `/readyz` report `wal`'s health, and `/metrics` its materialized
    /// store's disk use, from now on.
    pub fn watch_wal(&self, wal: Wal) {
        let _ = self.wal.set(wal);
    }

    /// `Ok` when ready; else why not, for the 503's body.
    pub async fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("not accepting connections".into());
        }
        let Some(wal) = self.wal.get() else {
            return Ok(());
        };
        match tokio::time::timeout(READY_PROBE_TIMEOUT, wal.health()).await {
            Ok(Ok(())) => Ok(()),
            // The store's own words: no URI (and so no credential) in them.
            Ok(Err(e)) => Err(format!("WAL store unavailable: {e}")),
            Err(_) => Err(format!(
                "WAL store unavailable: no answer within {READY_PROBE_TIMEOUT:?}"
            )),
        }
    }

    pub fn encode(&self) -> String {
        if let Some(store) = self.wal.get().and_then(|w| w.materialized()) {
            let disk = store.disk_status();
            self.cache_disk_bytes
                .set(i64::try_from(disk.bytes).unwrap_or(i64::MAX));
            self.cache_full.set(i64::from(disk.full));
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// The command name used as a label: known names only, so a client
    /// cannot grow the label set without bound.
    pub fn record_command(&self, name: &str, known: bool) {
        let command = if known {
            name.to_owned()
        } else {
            "unknown".to_owned()
        };
        self.commands
            .get_or_create(&CommandLabels { command })
            .inc();
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, peer): (_, SocketAddr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener accept failed");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = service_fn(move |req| answer(req, metrics.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "metrics connection ended");
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body, ctype) = match req.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            metrics.encode(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned(), "text/plain"),
        "/readyz" => match metrics.readiness().await {
            Ok(()) => (StatusCode::OK, "ready\n".to_owned(), "text/plain"),
            Err(reason) => {
                tracing::debug!(%reason, "not ready");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                    "text/plain",
                )
            }
        },
        _ => (
            StatusCode::NOT_FOUND,
            "not found\n".to_owned(),
            "text/plain",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}
