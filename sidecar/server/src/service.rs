//! The state every connection shares: the WAL, the default branch, open
//! cursors, retryable-write memory and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use argon_wal::{BranchState, ReadPoint, Wal};
use bson::{Bson, Document};

use crate::cursor::CursorStore;
use crate::error::{CommandError, ErrorCode, Result};
use crate::metrics::Metrics;
use crate::session::Sessions;
use crate::target::{Target, commit_time};
use crate::wal_error::from_wal;

pub struct Service {
    pub wal: Wal,
    /// The branch of databases named without `~branch`.
    pub default_branch: String,
    pub cursors: CursorStore,
    pub sessions: Sessions,
    /// `maxTimeMS` for commands that give none, in ms (0: no limit).
    default_max_time_ms: AtomicU64,
    /// Memory of one blocking sort before it spills (MongoDB's 100 MiB).
    blocking_sort_bytes: AtomicU64,
    pub metrics: Arc<Metrics>,
    pub started: Instant,
    /// `--read-only`: every write and branch change is refused.
    pub read_only: bool,
    /// Who writes each branch among the sidecars sharing the store.
    pub writers: Arc<crate::writer::Writers>,
    /// Transactions pinned to a branch writer elsewhere.
    pub pins: crate::writer::route::Pins,
    next_connection: AtomicI64,
    /// `--auth`: commands need an authenticated user (`auth::authorize`).
    auth_required: AtomicBool,
    /// `--confine-to-branch`: only the default branch is served.
    confined_to_branch: AtomicBool,
    /// The project's users, refreshed from the catalog log.
    pub users: crate::auth::users::Directory,
    /// `configureFailPoint`'s fail points (`--enable-test-commands` only).
    pub fail_points: crate::commands::fail_point::FailPoints,
    /// The commands running now (`currentOp`, `killOp`).
    pub operations: crate::current_op::Operations,
}

impl Service {
    pub fn new(wal: Wal, default_branch: impl Into<String>, metrics: Arc<Metrics>) -> Arc<Service> {
        Arc::new(Service {
            wal: wal.clone(),
            default_branch: default_branch.into(),
            cursors: CursorStore::default(),
            sessions: Sessions::default(),
            default_max_time_ms: AtomicU64::new(0),
            blocking_sort_bytes: AtomicU64::new(crate::limits::MAX_BLOCKING_STAGE_BYTES as u64),
            writers: crate::writer::Writers::new(wal.clone(), None, None, None, metrics.clone()),
            pins: crate::writer::route::Pins::default(),
            metrics,
            started: Instant::now(),
            read_only: false,
            next_connection: AtomicI64::new(0),
            auth_required: AtomicBool::new(false),
            confined_to_branch: AtomicBool::new(false),
            users: Default::default(),
            fail_points: Default::default(),
            operations: Default::default(),
        })
    }

    /// Takes part in choosing each branch's writer among the sidecars of a
    /// shared store, taking forwarded writes at `advertise` (`host:port` of
    /// the peer listener). No effect on an embedded store. Before the
    /// service is shared.
    /// Peer-listener connections and the writers dialed prove `key`
    /// (`writer::peer_auth`); writers are dialed over `tls` when given
    /// (`writer::peer_tls`).
    pub fn elect_writers(
        self: &mut Arc<Service>,
        advertise: String,
        key: crate::writer::peer_auth::PeerKey,
        tls: Option<crate::writer::peer_tls::PeerTls>,
    ) {
        if let Some(s) = Arc::get_mut(self) {
            s.writers = crate::writer::Writers::new(
                s.wal.clone(),
                Some(advertise),
                Some(key),
                tls,
                s.metrics.clone(),
            );
        }
    }

    /// A service that refuses every write and branch change (a read-only
    /// branch endpoint, `ArgonBranch.spec.readOnly`).
    pub fn new_read_only(
        wal: Wal,
        default_branch: impl Into<String>,
        metrics: Arc<Metrics>,
    ) -> Arc<Service> {
        let mut svc = Service::new(wal, default_branch, metrics);
        if let Some(s) = Arc::get_mut(&mut svc) {
            s.read_only = true;
        }
        svc
    }

    /// The `maxTimeMS` of commands that give none (`None`: no limit).
    pub fn default_max_time(&self) -> Option<std::time::Duration> {
        match self.default_max_time_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    pub fn set_default_max_time(&self, limit: Option<std::time::Duration>) {
        let ms = limit.map_or(0, |d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        self.default_max_time_ms.store(ms, Ordering::Relaxed);
    }

    /// Memory one blocking sort may use before it spills to disk.
    pub fn blocking_sort_bytes(&self) -> usize {
        usize::try_from(self.blocking_sort_bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    pub fn set_blocking_sort_bytes(&self, bytes: u64) {
        self.blocking_sort_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Whether commands need an authenticated user (`serve --auth`).
    pub fn auth_required(&self) -> bool {
        self.auth_required.load(Ordering::Relaxed)
    }

    /// Turns authentication on (or off) and loads the project's users.
    pub async fn set_auth_required(&self, on: bool) -> Result<()> {
        self.users.refresh(&self.wal).await?;
        self.auth_required.store(on, Ordering::Relaxed);
        Ok(())
    }

    /// Whether only the default branch is served (`serve --confine-to-branch`).
    pub fn confined_to_branch(&self) -> bool {
        self.confined_to_branch.load(Ordering::Relaxed)
    }

    pub fn set_confined_to_branch(&self, on: bool) {
        self.confined_to_branch.store(on, Ordering::Relaxed);
    }

    pub fn next_connection_id(&self) -> i64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn target(&self, db: &str) -> Result<Target> {
        let mut target = Target::parse(db, &self.default_branch)?;
        target.server_read_only = self.read_only;
        Ok(target)
    }

    /// The state a read sees: the target's past point if it names one, else
    /// `readConcern.atClusterTime` if given (snapshot reads), else head.
    pub async fn read_state(&self, target: &Target, cmd: &Document) -> Result<BranchState> {
        let mut at = match target.at {
            Some(seq) => ReadPoint::Seq(seq),
            None => ReadPoint::Head,
        };
        if let Ok(rc) = cmd.get_document("readConcern")
            && let Some(ts) = rc.get("atClusterTime")
        {
            let level = rc.get_str("level").unwrap_or("");
            if level != "snapshot" {
                return Err(CommandError::new(
                    ErrorCode::InvalidOptions,
                    "atClusterTime is only allowed with readConcern level \"snapshot\"",
                ));
            }
            if target.at.is_some() {
                return Err(CommandError::new(
                    ErrorCode::InvalidOptions,
                    format!(
                        "database {:?} already names a point; do not also give atClusterTime",
                        target.raw
                    ),
                ));
            }
            at = ReadPoint::Time(commit_time(ts)?);
        }
        // Causal reads: a session's read after a write it saw (through any
        // sidecar) sees that write.
        if let Ok(rc) = cmd.get_document("readConcern")
            && let Some(ts) = rc.get("afterClusterTime")
            && matches!(at, ReadPoint::Head)
        {
            let after = commit_time(ts)?;
            self.wal
                .sync(&target.branch, Some(after))
                .await
                .map_err(from_wal)?;
        }
        self.wal.read(&target.branch, at).await.map_err(from_wal)
    }
}

/// `operationTime` for a reply: the commit time of the state or commit it reflects.
pub fn operation_time(t: argon_wal::CommitTime) -> Bson {
    Bson::Timestamp(crate::target::cluster_time(t))
}

impl Service {
    /// The name that addresses the default branch (for commands on `admin`
    /// that list databases).
    pub fn default_branch_db(&self) -> String {
        format!("admin~{}", self.default_branch)
    }
}
