//! Logical sessions (`lsid`) and the transaction each may hold.
//!
//! A session is created on first use and forgotten after
//! [`SESSION_TIMEOUT`] of disuse (MongoDB's `logicalSessionTimeoutMinutes`)
//! or on `endSessions`. Its transaction lives here between statements; the
//! rules of starting, continuing and committing one are in
//! `commands::transaction`. Memory is bounded: at most [`MAX_SESSIONS`]
//! sessions; a transaction older than [`TRANSACTION_LIFETIME`] is aborted
//! by the reaper, which drops its snapshot and its writes; one transaction
//! logs at most `limits::MAX_TRANSACTION_BYTES`, and all open transactions
//! together at most `limits::MAX_OPEN_TRANSACTION_BYTES` ([`TxnBudget`]:
//! each charges what it holds, and gives it back when it ends).
//!
//! A document an open transaction wrote is held by it ([`WriteLocks`])
//! until it ends: another transaction that writes it gets `WriteConflict`
//! at that statement, as on mongod (whose storage engine refuses the second
//! writer of a document at once); the commit-time check
//! (`Transaction::conflict_on`) still catches writes committed outside
//! transactions meanwhile.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use argon_wal::{BranchState, DocOp, IdKey, Namespace, Transaction};
use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// MongoDB's default `logicalSessionTimeoutMinutes` (30), reported by `hello`.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// MongoDB's default `transactionLifetimeLimitSeconds` (`serve
/// --transaction-lifetime-limit-seconds` sets another).
pub const TRANSACTION_LIFETIME: Duration = Duration::from_secs(60);
/// Sessions held at once; more are refused with `TooManyLogicalSessions`.
pub const MAX_SESSIONS: usize = 100_000;

/// A session id: the bytes of `lsid.id` (a UUID from drivers).
pub type SessionId = Vec<u8>;

/// The id of the session a command names, if it carries `lsid`.
pub fn session_id(cmd: &Document) -> Option<SessionId> {
    session_id_of(cmd.get_document("lsid").ok()?)
}

/// The id of an `lsid` document (`{id: UUID}`), as commands and
/// `endSessions` give it.
pub fn session_id_of(lsid: &Document) -> Option<SessionId> {
    Some(match lsid.get("id")? {
        Bson::Binary(b) => b.bytes.clone(),
        other => other.to_string().into_bytes(),
    })
}

/// Where a session's transaction stands. Numbers only grow: a statement
/// with a lower `txnNumber` than the session's is refused.
#[derive(Default)]
pub enum TxnState {
    #[default]
    None,
    Active(Box<ActiveTxn>),
    /// Committed: a repeated `commitTransaction` gets this reply again.
    Committed(Document),
    /// Aborted (explicitly, by an error, or by the lifetime limit): why.
    Aborted(String),
}

pub struct Session {
    pub txn_number: i64,
    pub txn: TxnState,
    last_used: Instant,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            txn_number: -1,
            txn: TxnState::None,
            last_used: Instant::now(),
        }
    }
}

/// Bytes logged by all open transactions of the process, held to
/// `limits::MAX_OPEN_TRANSACTION_BYTES`. Shared by every [`ActiveTxn`].
#[derive(Debug, Default)]
pub struct TxnBudget {
    used: AtomicUsize,
}

impl TxnBudget {
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Moves one transaction's charge from `from` to `to` bytes; refused
    /// (nothing changes) when the total would pass the limit.
    fn recharge(&self, from: usize, to: usize) -> Result<()> {
        if to <= from {
            self.used.fetch_sub(from - to, Ordering::Relaxed);
            return Ok(());
        }
        let limit = crate::limits::MAX_OPEN_TRANSACTION_BYTES;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let next = used - from + to;
                (next <= limit).then_some(next)
            })
            .map(|_| ())
            .map_err(|used| {
                CommandError::new(
                    ErrorCode::ExceededMemoryLimit,
                    format!(
                        "open transactions hold {used} bytes of writes; with this statement they would pass the limit of {limit} bytes for all of them"
                    ),
                )
            })
    }
}

/// Documents written by open transactions, each held by the one that wrote
/// it first until that transaction ends (its [`ActiveTxn`] drops). A
/// document is held as a 64-bit hash of (branch, namespace, `_id` key):
/// 16 bytes and a little table overhead per document, less than what
/// writing it logs, so the 1 GiB bound on open transactions' writes bounds
/// this too. Two documents whose hashes collide (one chance in 2^64 per
/// pair) only make a transaction retry.
#[derive(Debug, Default)]
pub struct WriteLocks {
    held: Mutex<HashMap<u64, u64>>,
    next_owner: AtomicU64,
}

impl WriteLocks {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        // Entries are inserted and removed whole; a panic cannot tear one.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hash a document is held by, and its namespace and `_id`, for a
/// write op (other ops hold nothing).
fn doc_lock<'a>(branch: &str, op: &'a DocOp) -> Option<(u64, &'a Namespace, &'a Bson)> {
    let (DocOp::Put { ns, id, .. } | DocOp::Delete { ns, id }) = op else {
        return None;
    };
    // Fixed keys: every transaction of the process hashes alike.
    let mut h = std::hash::DefaultHasher::new();
    (branch, ns, IdKey::from_bson(id)).hash(&mut h);
    Some((h.finish(), ns, id))
}

/// A transaction in progress: the branch it runs on and what it has done.
pub struct ActiveTxn {
    pub branch: String,
    pub started: Instant,
    /// What `$currentOp` shows of it while it is idle.
    pub listing: TxnListing,
    /// Handlers reach it through `Ctx::txn`; never held across an await.
    /// Shared, so `commitTransaction` hands it to the WAL without copying
    /// its writes (a statement after a failed commit copies on write).
    txn: Mutex<Arc<Transaction>>,
    budget: Arc<TxnBudget>,
    /// What this transaction has charged to `budget`.
    charged: AtomicUsize,
    locks: Arc<WriteLocks>,
    /// This transaction's id in `locks`.
    owner: u64,
    /// How many of its ops [`ActiveTxn::hold_writes`] went through. Only
    /// ops of statements that succeeded are held, and those are never
    /// rolled back, so the ops still hold every document held.
    held_ops: AtomicUsize,
}

/// What `$currentOp` lists of an idle transaction besides its number: set
/// when it starts (`commands::transaction`) and after each statement.
pub struct TxnListing {
    /// The `lsid` its statements carry.
    pub lsid: Document,
    /// The `readConcern` of its first statement (`{}` when none).
    pub read_concern: Document,
    /// The connection of its last statement.
    pub client: Option<crate::current_op::Client>,
    pub started_at: bson::DateTime,
    /// How long its statements ran, together.
    pub active: Duration,
}

impl Default for TxnListing {
    fn default() -> Self {
        TxnListing {
            lsid: Document::new(),
            read_concern: Document::new(),
            client: None,
            started_at: bson::DateTime::now(),
            active: Duration::ZERO,
        }
    }
}

/// [`ActiveTxn::lock`]: the transaction, copied on write if it is shared.
pub struct TxnGuard<'a>(MutexGuard<'a, Arc<Transaction>>);

impl std::ops::Deref for TxnGuard<'_> {
    type Target = Transaction;
    fn deref(&self) -> &Transaction {
        &self.0
    }
}

impl std::ops::DerefMut for TxnGuard<'_> {
    fn deref_mut(&mut self) -> &mut Transaction {
        Arc::make_mut(&mut self.0)
    }
}

impl ActiveTxn {
    /// `txn`: begun on the transaction's snapshot (`Wal::begin`); its
    /// writes are charged to `budget`.
    pub fn new(
        branch: String,
        txn: Transaction,
        budget: Arc<TxnBudget>,
        locks: Arc<WriteLocks>,
    ) -> ActiveTxn {
        let owner = locks.next_owner.fetch_add(1, Ordering::Relaxed);
        ActiveTxn {
            branch,
            started: Instant::now(),
            listing: TxnListing::default(),
            txn: Mutex::new(Arc::new(txn)),
            budget,
            charged: AtomicUsize::new(0),
            locks,
            owner,
            held_ops: AtomicUsize::new(0),
        }
    }

    /// Holds the documents the transaction wrote since the last call; one
    /// another open transaction holds is a `WriteConflict` (the caller
    /// aborts this transaction: mongod's first writer wins).
    pub fn hold_writes(&self) -> Result<()> {
        let txn = self.shared();
        let from = self.held_ops.load(Ordering::Relaxed);
        let mut all = self.locks.lock();
        let mut seen = from;
        let mut conflict = None;
        for op in txn.ops().skip(from) {
            seen += 1;
            let Some((key, ns, id)) = doc_lock(&self.branch, op) else {
                continue;
            };
            match all.get(&key) {
                Some(owner) if *owner != self.owner => {
                    conflict = Some(CommandError::new(
                        ErrorCode::WriteConflict,
                        format!(
                            "WriteConflict: document {id} of {}.{} was written by another transaction in progress; retry the transaction",
                            ns.db, ns.coll
                        ),
                    ));
                    break;
                }
                Some(_) => {}
                None => {
                    all.insert(key, self.owner);
                }
            }
        }
        self.held_ops.store(seen, Ordering::Relaxed);
        conflict.map_or(Ok(()), Err)
    }

    pub fn lock(&self) -> TxnGuard<'_> {
        // Statements of one session run one at a time (the session lock);
        // a panicking statement leaves at worst a half-recorded statement,
        // and the transaction is aborted on its error.
        TxnGuard(self.txn.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The transaction as it is now, shared (no copy of its writes).
    pub fn shared(&self) -> Arc<Transaction> {
        Arc::clone(&self.txn.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Charges the transaction's budget with `logged` bytes (what it holds
    /// after a statement): refused when all open transactions together
    /// would pass their limit.
    pub fn charge(&self, logged: usize) -> Result<()> {
        let from = self.charged.load(Ordering::Relaxed);
        self.budget.recharge(from, logged)?;
        self.charged.store(logged, Ordering::Relaxed);
        Ok(())
    }

    /// The snapshot plus the transaction's own writes.
    pub fn state(&self) -> BranchState {
        self.lock().state().clone()
    }

    pub fn expired(&self, now: Instant, lifetime: Duration) -> bool {
        now.saturating_duration_since(self.started) >= lifetime
    }
}

impl Drop for ActiveTxn {
    /// Committed, aborted, reaped or its session forgotten: its writes are
    /// no longer held here.
    fn drop(&mut self) {
        let charged = *self.charged.get_mut();
        let _ = self.budget.recharge(charged, 0);
        let held = *self.held_ops.get_mut();
        if held > 0 {
            let txn = self.shared();
            let mut all = self.locks.lock();
            for op in txn.ops().take(held) {
                if let Some((key, _, _)) = doc_lock(&self.branch, op)
                    && all.get(&key) == Some(&self.owner)
                {
                    all.remove(&key);
                }
            }
        }
    }
}

type SessionCell = Arc<tokio::sync::Mutex<Session>>;

pub struct Sessions {
    map: Mutex<HashMap<SessionId, SessionCell>>,
    lifetime_ms: AtomicU64,
    budget: Arc<TxnBudget>,
    locks: Arc<WriteLocks>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            map: Mutex::default(),
            lifetime_ms: AtomicU64::new(TRANSACTION_LIFETIME.as_millis() as u64),
            budget: Arc::default(),
            locks: Arc::default(),
        }
    }
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, SessionCell>> {
        // Entries are inserted and removed whole; a panic cannot tear one.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What all open transactions hold, shared by each [`ActiveTxn`].
    pub fn budget(&self) -> Arc<TxnBudget> {
        Arc::clone(&self.budget)
    }

    /// The documents open transactions hold, shared by each [`ActiveTxn`].
    pub fn write_locks(&self) -> Arc<WriteLocks> {
        Arc::clone(&self.locks)
    }

    /// How long a transaction may run before it is aborted.
    pub fn transaction_lifetime(&self) -> Duration {
        Duration::from_millis(self.lifetime_ms.load(Ordering::Relaxed))
    }

    pub fn set_transaction_lifetime(&self, lifetime: Duration) {
        self.lifetime_ms
            .store(lifetime.as_millis() as u64, Ordering::Relaxed);
    }

    /// The session `id`, created if new. Its async lock serializes the
    /// session's statements, as mongod does.
    pub fn get_or_create(&self, id: SessionId) -> Result<SessionCell> {
        let mut map = self.lock();
        if let Some(s) = map.get(&id) {
            return Ok(Arc::clone(s));
        }
        if map.len() >= MAX_SESSIONS {
            return Err(CommandError::new(
                ErrorCode::TooManyLogicalSessions,
                format!(
                    "cannot add a session: {MAX_SESSIONS} sessions are open; end unused ones with endSessions"
                ),
            ));
        }
        let cell = SessionCell::default();
        map.insert(id, Arc::clone(&cell));
        Ok(cell)
    }

    /// Forgets the sessions `ids` (their transactions abort).
    pub fn end(&self, ids: impl IntoIterator<Item = SessionId>) {
        let mut map = self.lock();
        for id in ids {
            map.remove(&id);
        }
    }

    /// Forgets every session (`killAllSessions`): their transactions abort.
    pub fn end_all(&self) {
        // Dropped outside the map's lock: a transaction's drop takes the
        // write-lock table's lock.
        let all = std::mem::take(&mut *self.lock());
        drop(all);
    }

    /// Aborts transactions past their lifetime and forgets idle sessions;
    /// returns (transactions aborted, sessions forgotten). A session busy
    /// with a statement is left for the next round.
    pub fn reap(&self, now: Instant) -> (usize, usize) {
        let lifetime = self.transaction_lifetime();
        let mut map = self.lock();
        let (mut aborted, before) = (0, map.len());
        map.retain(|_, cell| {
            let Ok(mut s) = cell.try_lock() else {
                return true;
            };
            if let TxnState::Active(t) = &s.txn
                && t.expired(now, lifetime)
            {
                s.txn = TxnState::Aborted(lifetime_exceeded(s.txn_number, lifetime));
                aborted += 1;
            }
            now.saturating_duration_since(s.last_used) < SESSION_TIMEOUT
        });
        (aborted, before - map.len())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The open transactions no statement runs in now (`$currentOp`'s
    /// `idleSessions`): a session busy with a statement is listed as that
    /// operation instead, and one past its lifetime is as good as aborted.
    pub fn idle_transactions(&self) -> Vec<crate::current_op::IdleTransaction> {
        let lifetime = self.transaction_lifetime();
        let now = Instant::now();
        self.lock()
            .values()
            .filter_map(|cell| {
                let s = cell.try_lock().ok()?;
                let TxnState::Active(t) = &s.txn else {
                    return None;
                };
                let client = t.listing.client.clone()?;
                if t.expired(now, lifetime) {
                    return None;
                }
                let open = now.saturating_duration_since(t.started);
                let expiry_ms = t
                    .listing
                    .started_at
                    .timestamp_millis()
                    .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
                Some(crate::current_op::IdleTransaction {
                    lsid: t.listing.lsid.clone(),
                    txn_number: s.txn_number,
                    client,
                    read_concern: t.listing.read_concern.clone(),
                    started_at: t.listing.started_at,
                    open,
                    active: t.listing.active.min(open),
                    expiry: bson::DateTime::from_millis(expiry_ms),
                })
            })
            .collect()
    }

    /// Every session held and when it was last used (`$listLocalSessions`);
    /// a session busy with a statement is in use now.
    pub fn list(&self) -> Vec<(SessionId, Instant)> {
        self.lock()
            .iter()
            .map(|(id, cell)| {
                let used = cell
                    .try_lock()
                    .map_or_else(|_| Instant::now(), |s| s.last_used);
                (id.clone(), used)
            })
            .collect()
    }
}

impl Session {
    pub fn touch(&mut self) {
        self.last_used = Instant::now();
    }
}

pub fn lifetime_exceeded(txn_number: i64, lifetime: Duration) -> String {
    format!(
        "transaction {txn_number} was aborted because it exceeded transactionLifetimeLimitSeconds ({}s)",
        lifetime.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon_wal::CommitTime;
    use bson::doc;

    #[test]
    fn session_ids_come_from_lsid() {
        let uuid = bson::Binary {
            subtype: bson::spec::BinarySubtype::Uuid,
            bytes: vec![7; 16],
        };
        assert_eq!(
            session_id(&doc! {"find": "c", "lsid": {"id": uuid}}),
            Some(vec![7; 16])
        );
        assert_eq!(session_id(&doc! {"find": "c"}), None);
    }

    #[tokio::test]
    async fn reaper_aborts_old_transactions_and_forgets_idle_sessions() {
        let sessions = Sessions::default();
        let cell = sessions.get_or_create(vec![1]).unwrap();
        {
            let mut s = cell.lock().await;
            s.txn_number = 3;
            s.txn = TxnState::Active(Box::new(ActiveTxn::new(
                "main".into(),
                Transaction::begin(
                    BranchState::empty(CommitTime(0)),
                    argon_wal::unique::every_document(),
                ),
                sessions.budget(),
                sessions.write_locks(),
            )));
        }
        let now = Instant::now();
        assert_eq!(sessions.reap(now), (0, 0));
        assert_eq!(sessions.reap(now + TRANSACTION_LIFETIME), (1, 0));
        assert!(matches!(cell.lock().await.txn, TxnState::Aborted(_)));
        assert_eq!(sessions.reap(now + SESSION_TIMEOUT * 2), (0, 1));
        assert!(sessions.is_empty());
    }

    #[test]
    fn the_first_writer_of_a_document_holds_it_until_it_ends() {
        let sessions = Sessions::default();
        let begin = |branch: &str| {
            ActiveTxn::new(
                branch.into(),
                Transaction::begin(
                    BranchState::empty(CommitTime(0)),
                    argon_wal::unique::every_document(),
                ),
                sessions.budget(),
                sessions.write_locks(),
            )
        };
        let ns = Namespace::new("db", "c");
        let write = |t: &ActiveTxn, id: i32| {
            t.lock().insert(&ns, &doc! {"_id": id}).unwrap();
            t.hold_writes()
        };
        let (a, b) = (begin("main"), begin("main"));
        write(&a, 1).unwrap();
        // Its own document again.
        a.lock().replace(&ns, &doc! {"_id": 1, "x": 1}).unwrap();
        a.hold_writes().unwrap();
        let e = write(&b, 1).unwrap_err();
        assert_eq!(e.code, ErrorCode::WriteConflict);
        // Another document, or the same one on another branch, is free.
        write(&b, 2).unwrap();
        write(&begin("dev"), 1).unwrap();
        // Number and double ids are the same _id.
        let c = begin("main");
        c.lock().insert(&ns, &doc! {"_id": 2.0}).unwrap();
        assert_eq!(c.hold_writes().unwrap_err().code, ErrorCode::WriteConflict);
        drop(c);
        assert_eq!(sessions.write_locks().len(), 2);
        drop(a);
        let d = begin("main");
        write(&d, 1).unwrap();
        drop((b, d));
        assert!(sessions.write_locks().is_empty());
    }

    #[test]
    fn open_transactions_share_one_budget_and_give_it_back() {
        let sessions = Sessions::default();
        let limit = crate::limits::MAX_OPEN_TRANSACTION_BYTES;
        let begin = || {
            ActiveTxn::new(
                "main".into(),
                Transaction::begin(
                    BranchState::empty(CommitTime(0)),
                    argon_wal::unique::every_document(),
                ),
                sessions.budget(),
                sessions.write_locks(),
            )
        };
        let (a, b) = (begin(), begin());
        a.charge(limit - 10).unwrap();
        let e = b.charge(11).unwrap_err();
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
        b.charge(10).unwrap();
        assert_eq!(sessions.budget().used(), limit);
        // A statement that shrinks a transaction (rolled back) gives back.
        a.charge(5).unwrap();
        assert_eq!(sessions.budget().used(), 15);
        drop(a);
        drop(b);
        assert_eq!(sessions.budget().used(), 0);
    }

    #[tokio::test]
    async fn idle_transactions_are_the_open_ones_no_statement_runs() {
        let sessions = Sessions::default();
        let cell = sessions.get_or_create(vec![1]).unwrap();
        {
            let mut s = cell.lock().await;
            s.txn_number = 2;
            let mut t = ActiveTxn::new(
                "main".into(),
                Transaction::begin(
                    BranchState::empty(CommitTime(0)),
                    argon_wal::unique::every_document(),
                ),
                sessions.budget(),
                sessions.write_locks(),
            );
            t.listing.client = Some(crate::current_op::Client {
                connection_id: 4,
                address: "127.0.0.1:1".into(),
                app_name: None,
                user: None,
            });
            s.txn = TxnState::Active(Box::new(t));
        }
        sessions.get_or_create(vec![2]).unwrap();
        let idle = sessions.idle_transactions();
        assert_eq!(idle.len(), 1);
        assert_eq!((idle[0].txn_number, idle[0].client.connection_id), (2, 4));
        let busy = cell.lock().await;
        assert!(sessions.idle_transactions().is_empty(), "a statement runs");
        drop(busy);
        sessions.set_transaction_lifetime(Duration::ZERO);
        assert!(sessions.idle_transactions().is_empty(), "past its lifetime");
    }
}
