//! One writer per branch among the sidecars sharing a store.
//!
//! Sidecars on one branch of a shared store would otherwise race for every
//! append: the one that just committed appends again at once, on a head it
//! already holds, while a loser must first read what it missed, so the same
//! pod keeps winning and the others starve. Instead, each branch has a
//! writer chosen by a lease in the store (`argon_wal::lease`): the other
//! sidecars forward that branch's write commands, and the statements of
//! transactions begun there, to the writer's peer listener, whose group
//! commit packs everyone's writes into its commits. Reads stay local (every
//! read catches up with the store, so a forwarded write is visible to the
//! next read through any sidecar).
//!
//! The lease only routes; it never decides correctness. Every commit is
//! still an optimistic append the store accepts once, so two sidecars that
//! both think they lead only slow each other down, and a write run here
//! after a failed forward cannot be applied twice when it carries a retry
//! key (the retry table in the log answers the second attempt).
//!
//! A sidecar takes part only with a peer address (`--peer-listen`, and
//! `--peer-advertise` when that address is not the one peers dial) and a
//! shared store; otherwise it writes every branch itself.

pub mod feed;
pub mod forward;
pub mod peer_auth;
pub mod peer_tls;
pub mod route;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use argon_wal::{Wal, WriterLease};
use bson::{Bson, Document, doc};

pub use forward::{ForwardError, Peer};

/// How often the holder renews and the others look at the lease.
const BEAT: Duration = Duration::from_millis(500);
/// A lease whose record has not changed for this long (by the observer's
/// own clock) belongs to a dead or cut-off holder and may be taken over.
const LEASE: Duration = Duration::from_secs(3);
/// After a peer could not be reached, writes run here for this long before
/// forwarding is tried again.
const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(2);
/// Branches idle this long stop being watched (a new write restarts it).
const IDLE: Duration = Duration::from_secs(300);

/// Where a branch's writes go.
#[derive(Clone)]
pub enum Route {
    /// Committed by this sidecar.
    Local,
    /// Forwarded to the branch's writer.
    Forward(Arc<Peer>),
}

/// This sidecar's view of one branch's lease.
struct BranchView {
    /// The record last read, and when it was first seen unchanged.
    lease: Option<WriterLease>,
    unchanged_since: Instant,
    peer: Option<Arc<Peer>>,
    unreachable_until: Option<Instant>,
    last_used: Instant,
}

pub struct Writers {
    /// This process's lease holder token.
    token: String,
    /// The address peers dial (`None`: this sidecar does not take part).
    advertise: Option<String>,
    wal: Wal,
    branches: Mutex<HashMap<String, BranchView>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The peer link's key (`peer_auth`), proved to every writer dialed.
    key: Option<peer_auth::PeerKey>,
    /// TLS to the writers dialed, when clients speak TLS (`peer_tls`).
    tls: Option<peer_tls::PeerTls>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Writers {
    pub fn new(
        wal: Wal,
        advertise: Option<String>,
        key: Option<peer_auth::PeerKey>,
        tls: Option<peer_tls::PeerTls>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Writers> {
        let advertise = advertise.filter(|_| wal.is_shared());
        Arc::new(Writers {
            token: process_token(),
            advertise,
            wal,
            branches: Mutex::new(HashMap::new()),
            metrics,
            key,
            tls,
        })
    }

    /// The key peer-listener connections must prove (`peer_auth`).
    pub fn key(&self) -> Option<&peer_auth::PeerKey> {
        self.key.as_ref()
    }

    /// Whether this sidecar elects writers at all.
    pub fn enabled(&self) -> bool {
        self.advertise.is_some()
    }

    /// Where a write to `branch` goes now. The first write to a branch
    /// reads (and if free, takes) its lease; later ones use the view the
    /// branch's watcher keeps fresh, without a store round trip.
    pub async fn route(self: &Arc<Self>, branch: &str) -> Route {
        if !self.enabled() {
            return Route::Local;
        }
        let known = {
            let mut branches = lock(&self.branches);
            branches.get_mut(branch).map(|v| {
                v.last_used = Instant::now();
                self.route_of(v)
            })
        };
        if let Some(route) = known {
            return route;
        }
        lock(&self.branches).insert(
            branch.to_string(),
            BranchView {
                lease: None,
                unchanged_since: Instant::now(),
                peer: None,
                unreachable_until: None,
                last_used: Instant::now(),
            },
        );
        self.beat(branch).await;
        tokio::spawn(watch(Arc::downgrade(self), branch.to_string()));
        lock(&self.branches)
            .get(branch)
            .map_or(Route::Local, |v| self.route_of(v))
    }

    fn route_of(&self, view: &BranchView) -> Route {
        match (&view.lease, &view.peer) {
            (Some(l), Some(peer)) if l.holder != self.token => {
                if view.unreachable_until.is_some_and(|t| Instant::now() < t) {
                    Route::Local
                } else {
                    Route::Forward(Arc::clone(peer))
                }
            }
            _ => Route::Local,
        }
    }

    /// The branch's writer when it is another sidecar that this one knows
    /// and can reach (from the view its watcher keeps; no store read, and
    /// never a claim: readers do not take leases).
    pub fn writer_of(&self, branch: &str) -> Option<Arc<Peer>> {
        let branches = lock(&self.branches);
        match self.route_of(branches.get(branch)?) {
            Route::Forward(peer) => Some(peer),
            Route::Local => None,
        }
    }

    /// A forward to `branch`'s writer did not reach it: write here for a
    /// while (and say so once), until the lease says who writes.
    pub fn unreachable(&self, branch: &str, error: &ForwardError) {
        self.metrics.forward_failures.inc();
        let mut branches = lock(&self.branches);
        if let Some(v) = branches.get_mut(branch) {
            if v.unreachable_until.is_none_or(|t| Instant::now() >= t) {
                tracing::warn!(%branch, %error, "the branch writer is unreachable; writing here meanwhile (appends may contend)");
            }
            v.unreachable_until = Some(Instant::now() + UNREACHABLE_BACKOFF);
        }
    }

    /// One look at the lease: take it if free or expired, renew it if ours.
    async fn beat(&self, branch: &str) {
        let Some(address) = self.advertise.clone() else {
            return;
        };
        let stored = match self.wal.writer_lease(branch).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(%branch, error = %e, "cannot read the writer lease");
                return;
            }
        };
        let now = Instant::now();
        let (observed, since) = {
            let mut branches = lock(&self.branches);
            let Some(v) = branches.get_mut(branch) else {
                return;
            };
            if v.lease != stored {
                v.lease = stored.clone();
                v.unchanged_since = now;
            }
            (v.lease.clone(), v.unchanged_since)
        };
        let next = match &observed {
            None => Some(WriterLease::claim(&self.token, &address, None)),
            Some(l) if l.holder == self.token => Some(l.renewed()),
            Some(l) if now.duration_since(since) >= LEASE => {
                Some(WriterLease::claim(&self.token, &address, Some(l)))
            }
            Some(_) => None,
        };
        if let Some(next) = next {
            match self
                .wal
                .swap_writer_lease(branch, observed.as_ref(), Some(&next))
                .await
            {
                Ok(true) => {
                    if observed.as_ref().is_none_or(|l| l.holder != self.token) {
                        tracing::info!(%branch, term = next.term, "this sidecar now writes the branch for the others");
                    }
                    self.observe(branch, Some(next));
                }
                Ok(false) => {
                    // Someone else wrote the record first: learn who now,
                    // so no write here races the new writer meanwhile.
                    if observed.as_ref().is_some_and(|l| l.holder == self.token) {
                        tracing::warn!(%branch, "lost the branch's writer lease; forwarding writes to its new writer");
                    }
                    if let Ok(now) = self.wal.writer_lease(branch).await {
                        self.observe(branch, now);
                    }
                }
                Err(e) => tracing::debug!(%branch, error = %e, "cannot write the writer lease"),
            }
        } else {
            self.observe(branch, observed);
        }
    }

    /// Records the lease as seen now and the peer it names.
    fn observe(&self, branch: &str, lease: Option<WriterLease>) {
        let mut branches = lock(&self.branches);
        let Some(v) = branches.get_mut(branch) else {
            return;
        };
        if v.lease != lease {
            v.lease = lease.clone();
            v.unchanged_since = Instant::now();
        }
        let leader = lease.filter(|l| l.holder != self.token);
        self.metrics
            .set_writer(branch, leader.is_none() && v.lease.is_some());
        v.peer = match (leader, v.peer.take()) {
            (Some(l), Some(p)) if p.address == l.address => Some(p),
            (Some(l), _) => {
                v.unreachable_until = None;
                Some(Arc::new(Peer::new(
                    &l.address,
                    self.key.clone(),
                    self.tls.clone(),
                )))
            }
            (None, _) => None,
        };
    }

    /// Gives up the leases this sidecar holds (at shutdown), so the others
    /// need not wait a lease period to take over.
    pub async fn release(&self) {
        let held: Vec<(String, WriterLease)> = lock(&self.branches)
            .iter()
            .filter_map(|(b, v)| {
                v.lease
                    .clone()
                    .filter(|l| l.holder == self.token)
                    .map(|l| (b.clone(), l))
            })
            .collect();
        for (branch, lease) in held {
            let _ = self
                .wal
                .swap_writer_lease(&branch, Some(&lease), None)
                .await;
        }
    }
}

/// Keeps one branch's view fresh (and its lease renewed, when held) while
/// the branch is written through this sidecar.
async fn watch(writers: Weak<Writers>, branch: String) {
    loop {
        tokio::time::sleep(BEAT).await;
        let Some(w) = writers.upgrade() else { return };
        let idle = lock(&w.branches)
            .get(&branch)
            .is_none_or(|v| v.last_used.elapsed() > IDLE);
        if idle {
            // A lease held here is released so another writer need not wait.
            let lease = lock(&w.branches)
                .remove(&branch)
                .and_then(|v| v.lease.filter(|l| l.holder == w.token));
            if let Some(l) = lease {
                let _ = w.wal.swap_writer_lease(&branch, Some(&l), None).await;
            }
            return;
        }
        w.beat(&branch).await;
    }
}

/// A token no other process uses: the holder name in leases.
fn process_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let host = std::env::var("HOSTNAME").unwrap_or_default();
    format!("{host}/{}/{:016x}", std::process::id(), h.finish())
}

/// The reply for a write whose forward was lost and that cannot safely run
/// again here (no retry key): its outcome is unknown, as after a network
/// error between a driver and mongod.
pub fn lost_reply(error: &ForwardError) -> Document {
    doc! {
        "ok": 0.0,
        "errmsg": format!("{error}; the write may or may not have been applied"),
        "code": 6,
        "codeName": "HostUnreachable",
    }
}

/// The reply for a transaction statement whose writer went away: the
/// driver retries the whole transaction (`TransientTransactionError`).
pub fn transaction_lost_reply(error: &ForwardError, commit: bool) -> Document {
    let label = if commit {
        "UnknownTransactionCommitResult"
    } else {
        "TransientTransactionError"
    };
    doc! {
        "ok": 0.0,
        "errmsg": format!("{error}; the transaction ran on that sidecar"),
        "code": if commit { 6 } else { 251 },
        "codeName": if commit { "HostUnreachable" } else { "NoSuchTransaction" },
        "errorLabels": [Bson::String(label.into())],
    }
}
