//! Prometheus metrics (reconciles, errors, durations, branches per phase,
//! leadership) and the HTTP endpoint serving them with `/healthz` (the
//! process is up) and `/readyz` (it reached the apiserver and runs either
//! the controllers or the standby loop of leader election).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, service::service_fn};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    branches: Family<PhaseLabels, Gauge<i64, AtomicI64>>,
    leader: Gauge<i64, AtomicI64>,
    in_flight: Gauge<i64, AtomicI64>,
    events_dropped: Counter,
    /// When this instance first started a reconciliation, and when one
    /// last ended (monotonic): two replicas' windows must not overlap.
    activity: Mutex<(Option<Instant>, Option<Instant>)>,
    /// Phase of every branch this instance has reconciled, by `namespace/name`.
    phases: Mutex<HashMap<String, String>>,
    ready: AtomicBool,
    /// When the webhook's certificate comes from a Secret: ready only once one is served.
    webhook_cert: std::sync::OnceLock<std::sync::Arc<crate::certs::ServingCert>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("argon_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let branches = Family::<PhaseLabels, Gauge<i64, AtomicI64>>::default();
        let leader = Gauge::<i64, AtomicI64>::default();
        let in_flight = Gauge::<i64, AtomicI64>::default();
        let events_dropped = Counter::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a reconciliation took",
            duration.clone(),
        );
        registry.register("branches", "ArgonBranches by phase", branches.clone());
        registry.register(
            "leader",
            "1 while this instance holds the leader lease (or runs without election)",
            leader.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciliations running now (0 on a standby or a replica that stepped down)",
            in_flight.clone(),
        );
        registry.register(
            "events_dropped",
            "Kubernetes events not published because the queue of events waiting to be sent was full",
            events_dropped.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            branches,
            leader,
            in_flight,
            events_dropped,
            activity: Mutex::new((None, None)),
            phases: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
            webhook_cert: std::sync::OnceLock::new(),
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// Starts timing one reconciliation; it is recorded when the guard drops.
    pub fn reconcile(self: &Arc<Self>, controller: &'static str) -> ReconcileGuard {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.in_flight.inc();
        let start = Instant::now();
        self.activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .get_or_insert(start);
        ReconcileGuard {
            metrics: self.clone(),
            labels,
            start,
        }
    }

    /// Reconciliations running now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// When the first reconciliation started and the last one ended
    /// (dropped, however it ended) on this instance.
    pub fn activity(&self) -> (Option<Instant>, Option<Instant>) {
        *self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn failure(&self, controller: &str, label: String) {
        self.failures
            .get_or_create(&ErrorLabels {
                controller: controller.into(),
                error: label,
            })
            .inc();
    }

    /// Reconciliations started by `controller` on this instance.
    pub fn reconciles(&self, controller: &str) -> u64 {
        self.reconciles
            .get_or_create(&ControllerLabels {
                controller: controller.into(),
            })
            .get()
    }

    /// Records a branch's phase (`None`: the branch is gone).
    pub fn set_phase(&self, key: &str, phase: Option<&str>) {
        let mut phases = self.phases.lock().unwrap_or_else(|e| e.into_inner());
        let old = match phase {
            Some(p) => phases.insert(key.to_string(), p.to_string()),
            None => phases.remove(key),
        };
        if old.as_deref() == phase {
            return;
        }
        if let Some(old) = old {
            self.branches
                .get_or_create(&PhaseLabels { phase: old })
                .dec();
        }
        if let Some(p) = phase {
            self.branches
                .get_or_create(&PhaseLabels { phase: p.into() })
                .inc();
        }
    }

    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.get()
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    pub fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && self.webhook_cert.get().is_none_or(|c| c.is_loaded())
    }

    /// Readiness also waits for the webhook to have a certificate to serve.
    pub fn require_webhook_cert(&self, cert: std::sync::Arc<crate::certs::ServingCert>) {
        let _ = self.webhook_cert.set(cert);
    }
}

/// Records a reconciliation's duration when dropped, however it ended.
pub struct ReconcileGuard {
    metrics: Arc<Metrics>,
    labels: ControllerLabels,
    start: Instant,
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
        self.metrics.in_flight.dec();
        self.metrics
            .activity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1 = Some(Instant::now());
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
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
                tracing::debug!(error = %e, "metrics connection ended");
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
        "/readyz" if metrics.is_ready() => (StatusCode::OK, "ready\n".to_owned(), "text/plain"),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready\n".to_owned(),
            "text/plain",
        ),
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
