//! Open cursors: each reads one branch state, so later batches see the same
//! consistent point as the first. Idle cursors are reaped after
//! [`IDLE_TIMEOUT`].
//!
//! A cursor's source is a result already computed (a listing), a [`Scan`]
//! (a find without a sort, which reads the next batch from its state only
//! when asked, so a large result never sits in memory and `limit` stops the
//! scan), a [`SortedScan`] (a sorted find, merged from its spilled runs as
//! it pages) or a [`PipelineScan`] (an aggregate, whose pipeline runs a
//! batch at a time; see `pipeline`). A tailable cursor ([`Tail`]) reads the
//! branch's newest state at each `getMore` instead (see `tail`).

mod pipeline;
mod tail;

pub use pipeline::{PipelineScan, SnapshotLookup};
pub use tail::Tail;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use argon_wal::{BranchState, Namespace};
use bson::{Bson, Document};

use crate::current_op::CursorInfo;
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::collation::{self, Collation};
use crate::query::plan::{Access, Plan};
use crate::query::{Filter, Projection};
use crate::spill::Sorted;

/// MongoDB's default `cursorTimeoutMillis`.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// A reply batch stays under this many bytes of documents (MongoDB's 16 MiB
/// document limit, with room for the envelope).
pub(crate) const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024 - 64 * 1024;

/// MongoDB's first batch: 101 documents (or 16 MiB).
pub const FIRST_BATCH: usize = 101;

/// A find read lazily from its state through its plan (a collection scan,
/// `_id` lookups or an index scan, whose order may be the find's sort).
pub struct Scan {
    pub state: BranchState,
    pub ns: Namespace,
    pub filter: Filter,
    pub projection: Option<Projection>,
    /// Matching documents still to skip.
    pub skip: usize,
    /// Documents still to return (`None`: no limit).
    pub limit: Option<usize>,
    /// The plan and where it stands: the next batch resumes there.
    access: Access,
    done: bool,
}

impl Scan {
    pub fn new(
        state: BranchState,
        ns: Namespace,
        filter: Filter,
        projection: Option<Projection>,
        skip: usize,
        limit: Option<usize>,
    ) -> Scan {
        Scan::planned(state, ns, filter, projection, skip, limit, Plan::Collscan)
    }

    /// A scan that reads its candidates through `plan`.
    pub fn planned(
        state: BranchState,
        ns: Namespace,
        filter: Filter,
        projection: Option<Projection>,
        skip: usize,
        limit: Option<usize>,
        plan: Plan,
    ) -> Scan {
        Scan {
            state,
            ns,
            filter,
            projection,
            skip,
            limit,
            access: Access::new(plan),
            done: false,
        }
    }

    fn is_done(&self) -> bool {
        self.done || self.limit == Some(0)
    }

    /// Up to `n` documents (within the batch byte limit), checking the
    /// deadline as it goes.
    fn next_batch(&mut self, n: usize, deadline: Deadline) -> Result<Vec<Bson>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let Some(coll) = self.state.collection(&self.ns)? else {
            self.done = true;
            return Ok(out);
        };
        let (filter, projection, skip, limit) = (
            &self.filter,
            &self.projection,
            &mut self.skip,
            &mut self.limit,
        );
        let exhausted = self.access.run(&coll, deadline, |raw| {
            if out.len() >= n || *limit == Some(0) {
                return Ok(false);
            }
            let size = raw.as_bytes().len();
            if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
                return Ok(false);
            }
            let doc = argon_wal::rawdoc::parse(raw);
            if !filter.is_empty() && !filter.try_matches(&doc)? {
                return Ok(true);
            }
            if *skip > 0 {
                *skip -= 1;
                return Ok(true);
            }
            let doc = match projection {
                Some(p) => p.try_apply(&doc)?,
                None => doc,
            };
            bytes += size;
            out.push(Bson::Document(doc));
            if let Some(l) = limit {
                *l -= 1;
            }
            Ok(true)
        })?;
        if exhausted || self.limit == Some(0) {
            self.done = true;
        }
        Ok(out)
    }
}

/// A sorted find: the sort's output (in memory or merged from spilled
/// runs), with the find's skip, limit and projection applied as it is read.
pub struct SortedScan {
    sorted: Sorted,
    projection: Option<Projection>,
    skip: usize,
    limit: Option<usize>,
    /// The next document, read ahead so the cursor knows when it is done.
    peeked: Option<Document>,
    done: bool,
}

impl SortedScan {
    pub fn new(
        sorted: Sorted,
        projection: Option<Projection>,
        skip: usize,
        limit: Option<usize>,
    ) -> SortedScan {
        SortedScan {
            sorted,
            projection,
            skip,
            limit,
            peeked: None,
            done: false,
        }
    }

    fn next_doc(&mut self) -> Result<Option<Document>> {
        if let Some(d) = self.peeked.take() {
            return Ok(Some(d));
        }
        while self.skip > 0 {
            self.skip -= 1;
            if self.sorted.next_doc()?.is_none() {
                return Ok(None);
            }
        }
        self.sorted.next_doc()
    }

    fn next_batch(&mut self, n: usize) -> Result<Vec<Bson>> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < n && self.limit != Some(0) {
            let Some(doc) = self.next_doc()? else {
                self.done = true;
                break;
            };
            let size = crate::limits::document_size(&doc);
            if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
                self.peeked = Some(doc);
                break;
            }
            bytes += size;
            let doc = match &self.projection {
                Some(p) => p.try_apply(&doc)?,
                None => doc,
            };
            out.push(Bson::Document(doc));
            if let Some(l) = &mut self.limit {
                *l -= 1;
            }
        }
        if !self.done && self.limit != Some(0) && self.peeked.is_none() {
            // Look ahead: a cursor that has nothing left reports id 0 now.
            match self.next_doc()? {
                Some(d) => self.peeked = Some(d),
                None => self.done = true,
            }
        }
        Ok(out)
    }

    fn is_done(&self) -> bool {
        self.done || self.limit == Some(0)
    }
}

/// Where a cursor's documents come from.
pub enum Source {
    Docs(VecDeque<Document>),
    Scan(Box<Scan>),
    Sorted(Box<SortedScan>),
    Pipeline(Box<PipelineScan>),
}

impl Source {
    fn next_batch(&mut self, n: usize, deadline: Deadline) -> Result<Vec<Bson>> {
        match self {
            Source::Docs(docs) => Ok(take_batch(docs, n)),
            Source::Scan(scan) => scan.next_batch(n, deadline),
            // The sort is done; a batch reads its runs back (bounded work),
            // but a getMore past its maxTimeMS still fails as MongoDB's does.
            Source::Sorted(sorted) => {
                deadline.check()?;
                sorted.next_batch(n)
            }
            // A pipeline's batch may be long (a blocking stage reads its
            // whole input first): off the async worker. Finds stay inline
            // (block_in_place costs a few µs, much of a short request).
            Source::Pipeline(p) => off_the_runtime(|| p.next_batch(n, deadline)),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Source::Docs(docs) => docs.is_empty(),
            Source::Scan(scan) => scan.is_done(),
            Source::Sorted(sorted) => sorted.is_done(),
            Source::Pipeline(p) => p.is_done(),
        }
    }
}

pub struct Cursor {
    /// Its namespace as replies name it, and what listings show of it.
    pub info: CursorInfo,
    pub source: Source,
    pub last_used: Instant,
    /// What is left of the command's `maxTimeMS` for later batches.
    pub time_left: Option<Duration>,
    /// The collation the command ran under: later batches filter, sort and
    /// group under it too.
    pub collation: Collation,
    /// The command's `$text` query bound to its index: later batches match
    /// and score with it (`query::text`).
    pub text: crate::query::text::Binding,
}

#[derive(Default)]
pub struct CursorStore {
    cursors: Mutex<HashMap<i64, Cursor>>,
    /// Tailable cursors, which read a new state at each `getMore`.
    tails: Mutex<HashMap<i64, (Tail, CursorInfo)>>,
    next_id: AtomicI64,
}

impl CursorStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Cursor>> {
        // A panic while holding this lock cannot leave a cursor half-updated
        // in a way that matters more than losing the process; keep serving.
        self.cursors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the first batch from `docs`; if anything is left, opens a
    /// cursor for it. Returns the batch and the cursor id (0 = exhausted).
    pub fn open(
        &self,
        info: CursorInfo,
        docs: Vec<Document>,
        batch_size: Option<usize>,
        single_batch: bool,
    ) -> (Vec<Bson>, i64) {
        let source = Source::Docs(docs.into());
        // A computed result cannot fail or time out while it is paged.
        self.open_source(info, source, batch_size, single_batch, Deadline::NONE)
            .unwrap_or_default()
    }

    /// Reads the first batch of `scan`; if it is not done, opens a cursor
    /// that reads the rest on `getMore`.
    pub fn open_scan(
        &self,
        info: CursorInfo,
        scan: Scan,
        batch_size: Option<usize>,
        single_batch: bool,
        deadline: Deadline,
    ) -> Result<(Vec<Bson>, i64)> {
        self.open_source(
            info,
            Source::Scan(Box::new(scan)),
            batch_size,
            single_batch,
            deadline,
        )
    }

    /// Reads the first batch of a sorted find; opens a cursor for the rest,
    /// held to what is left of `deadline` (the find's `maxTimeMS`).
    pub fn open_sorted(
        &self,
        info: CursorInfo,
        sorted: SortedScan,
        batch_size: Option<usize>,
        single_batch: bool,
        deadline: Deadline,
    ) -> Result<(Vec<Bson>, i64)> {
        self.open_source(
            info,
            Source::Sorted(Box::new(sorted)),
            batch_size,
            single_batch,
            deadline,
        )
    }

    /// Runs an aggregate's pipeline for its first batch; opens a cursor
    /// that runs it further on `getMore`, within what is left of `deadline`.
    pub fn open_pipeline(
        &self,
        info: CursorInfo,
        pipeline: PipelineScan,
        batch_size: Option<usize>,
        single_batch: bool,
        deadline: Deadline,
    ) -> Result<(Vec<Bson>, i64)> {
        self.open_source(
            info,
            Source::Pipeline(Box::new(pipeline)),
            batch_size,
            single_batch,
            deadline,
        )
    }

    fn open_source(
        &self,
        mut info: CursorInfo,
        mut source: Source,
        batch_size: Option<usize>,
        single_batch: bool,
        deadline: Deadline,
    ) -> Result<(Vec<Bson>, i64)> {
        let batch = source.next_batch(batch_size.unwrap_or(FIRST_BATCH), deadline)?;
        if source.is_done() || single_batch {
            return Ok((batch, 0));
        }
        info.returned(batch.len());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(
            id,
            Cursor {
                info,
                source,
                last_used: Instant::now(),
                time_left: deadline.remaining(),
                collation: collation::active(),
                text: crate::query::text::active(),
            },
        );
        Ok((batch, id))
    }

    /// The next batch of cursor `id`, and the id to report (0 once
    /// exhausted). The cursor is taken out of the map while its batch is
    /// read, so a slow scan holds no lock other cursors need; a cursor whose
    /// batch fails (an error, its time limit) is closed, as in MongoDB.
    pub fn next_batch(
        &self,
        id: i64,
        batch_size: Option<usize>,
    ) -> Option<Result<(String, Vec<Bson>, i64)>> {
        let mut cursor = self.lock().remove(&id)?;
        let _collation = cursor.collation.enter();
        let _text = cursor.text.enter();
        let deadline = Deadline::after(cursor.time_left);
        let started = Instant::now();
        let batch = match cursor
            .source
            .next_batch(batch_size.unwrap_or(usize::MAX), deadline)
        {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        cursor.last_used = Instant::now();
        cursor.info.returned(batch.len());
        cursor.time_left = cursor
            .time_left
            .map(|t| t.saturating_sub(started.elapsed()));
        let ns = cursor.info.ns.clone();
        if cursor.source.is_done() {
            return Some(Ok((ns, batch, 0)));
        }
        self.lock().insert(id, cursor);
        Some(Ok((ns, batch, id)))
    }

    fn lock_tails(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Tail, CursorInfo)>> {
        self.tails.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a tailable cursor that returned `first` documents; its id
    /// (never 0: a tailable cursor stays open at the end of its collection).
    pub fn open_tail(&self, tail: Tail, mut info: CursorInfo, first: usize) -> i64 {
        info.returned(first);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock_tails().insert(id, (tail, info));
        id
    }

    /// Takes tailable cursor `id` out while a `getMore` reads it (`None`:
    /// not a tailable cursor).
    pub fn take_tail(&self, id: i64) -> Option<(Tail, CursorInfo)> {
        self.lock_tails().remove(&id)
    }

    /// Puts a tailable cursor back after a `getMore` that returned
    /// `returned` documents.
    pub fn return_tail(&self, id: i64, mut tail: Tail, mut info: CursorInfo, returned: usize) {
        tail.last_used = Instant::now();
        info.returned(returned);
        self.lock_tails().insert(id, (tail, info));
    }

    /// The open cursors no `getMore` reads now (one that does is out of
    /// the maps meanwhile), by id, for `$currentOp`'s `idleCursors`.
    pub fn idle(&self) -> Vec<(i64, CursorInfo)> {
        let mut idle: Vec<(i64, CursorInfo)> = self
            .lock()
            .iter()
            .map(|(id, c)| (*id, c.info.clone()))
            .collect();
        idle.extend(
            self.lock_tails()
                .iter()
                .map(|(id, (_, info))| (*id, info.clone())),
        );
        idle.sort_by_key(|(id, _)| *id);
        idle
    }

    /// Kills the given cursors; returns (killed, not found).
    /// The user who opened cursor `id` (`None` inside: opened before any
    /// login); `None`: no such cursor open and idle.
    pub fn opener(&self, id: i64) -> Option<Option<crate::auth::users::UserId>> {
        if let Some(c) = self.lock().get(&id) {
            return Some(c.info.client.user.clone());
        }
        self.lock_tails()
            .get(&id)
            .map(|(_, info)| info.client.user.clone())
    }

    pub fn kill(&self, ids: &[i64]) -> (Vec<i64>, Vec<i64>) {
        let mut cursors = self.lock();
        let mut tails = self.lock_tails();
        ids.iter()
            .partition(|id| cursors.remove(id).is_some() || tails.remove(id).is_some())
    }

    /// Drops cursors idle since before `now - IDLE_TIMEOUT`; returns how many.
    pub fn reap(&self, now: Instant) -> usize {
        let mut cursors = self.lock();
        let before = cursors.len();
        cursors.retain(|_, c| now.saturating_duration_since(c.last_used) < IDLE_TIMEOUT);
        let mut tails = self.lock_tails();
        let tails_before = tails.len();
        tails.retain(|_, (t, _)| now.saturating_duration_since(t.last_used) < IDLE_TIMEOUT);
        before - cursors.len() + tails_before - tails.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len() + self.lock_tails().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs work that may be long without holding up the other tasks of an
/// async worker: on a multi-threaded runtime the worker hands its queue to
/// another thread meanwhile (`block_in_place`), so other connections (and
/// drivers' monitoring `hello`s) are still answered.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// A cursor id that names no open cursor.
pub fn not_found(id: i64) -> CommandError {
    CommandError::new(
        ErrorCode::CursorNotFound,
        format!("cursor id {id} not found"),
    )
}

fn take_batch(docs: &mut VecDeque<Document>, n: usize) -> Vec<Bson> {
    let mut out = Vec::with_capacity(n.min(docs.len()));
    let mut bytes = 0usize;
    while out.len() < n {
        let Some(d) = docs.front() else { break };
        let size = d.to_vec().map(|v| v.len()).unwrap_or(0);
        if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
            break;
        }
        bytes += size;
        if let Some(d) = docs.pop_front() {
            out.push(Bson::Document(d));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon_wal::{CommitTime, DocOp};
    use bson::doc;

    fn info(ns: &str) -> CursorInfo {
        let client = crate::current_op::Client {
            connection_id: 1,
            address: "127.0.0.1:1".into(),
            app_name: None,
            user: None,
        };
        CursorInfo::new(ns.into(), client, "d", &doc! {"find": "c"})
    }

    fn docs(n: i32) -> Vec<Document> {
        (0..n).map(|i| doc! {"_id": i}).collect()
    }

    #[test]
    fn batches_then_exhausts() {
        let s = CursorStore::default();
        let (b, id) = s.open(info("d.c"), docs(5), Some(2), false);
        assert_eq!(b.len(), 2);
        assert_ne!(id, 0);
        let (_, b, id2) = s.next_batch(id, Some(2)).unwrap().unwrap();
        assert_eq!((b.len(), id2), (2, id));
        let (_, b, id3) = s.next_batch(id, Some(2)).unwrap().unwrap();
        assert_eq!((b.len(), id3), (1, 0));
        assert!(s.next_batch(id, None).is_none());
    }

    #[test]
    fn kill_and_reap() {
        let s = CursorStore::default();
        let (_, a) = s.open(info("d.c"), docs(5), Some(1), false);
        let (_, b) = s.open(info("d.c"), docs(5), Some(1), false);
        assert_eq!(s.kill(&[a, 999]), (vec![a], vec![999]));
        assert_eq!(s.reap(Instant::now()), 0);
        assert_eq!(
            s.reap(Instant::now() + IDLE_TIMEOUT + Duration::from_secs(1)),
            1
        );
        assert!(s.next_batch(b, None).is_none());
        let (_, none) = s.open(info("d.c"), docs(1), Some(5), false);
        assert_eq!(none, 0);
    }

    fn state_with(n: i32) -> (BranchState, Namespace) {
        let ns = Namespace::new("d", "c");
        let mut st = BranchState::empty(CommitTime(0));
        for i in 0..n {
            st.apply(&DocOp::Put {
                ns: ns.clone(),
                id: Bson::Int32(i),
                doc: argon_wal::rawdoc::encode(&doc! {"_id": i, "even": i % 2 == 0}).unwrap(),
            });
        }
        (st, ns)
    }

    #[test]
    fn a_scan_reads_batch_by_batch_with_skip_and_limit() {
        let (st, ns) = state_with(1000);
        let filter = Filter::parse(&doc! {"even": true}).unwrap();
        let scan = Scan::new(st, ns, filter, None, 10, Some(300));
        let s = CursorStore::default();
        let (first, id) = s
            .open_scan(info("d.c"), scan, None, false, Deadline::NONE)
            .unwrap();
        assert_eq!(first.len(), FIRST_BATCH);
        assert_eq!(first[0].as_document().unwrap().get_i32("_id").unwrap(), 20);
        let mut all = first;
        let mut id = id;
        while id != 0 {
            let (_, b, next) = s.next_batch(id, Some(50)).unwrap().unwrap();
            all.extend(b);
            id = next;
        }
        assert_eq!(all.len(), 300);
        assert_eq!(all[299].as_document().unwrap().get_i32("_id").unwrap(), 618);
        assert!(s.is_empty());
    }

    #[test]
    fn a_scan_that_ends_exactly_at_a_batch_reports_exhaustion_later() {
        let (st, ns) = state_with(4);
        let scan = Scan::new(st, ns, Filter::And(Vec::new()), None, 0, None);
        let s = CursorStore::default();
        let (first, id) = s
            .open_scan(info("d.c"), scan, Some(2), false, Deadline::NONE)
            .unwrap();
        assert_eq!((first.len(), id != 0), (2, true));
        let (_, b, id2) = s.next_batch(id, Some(2)).unwrap().unwrap();
        assert_eq!(b.len(), 2);
        if id2 != 0 {
            let (_, b, id3) = s.next_batch(id2, Some(2)).unwrap().unwrap();
            assert_eq!((b.len(), id3), (0, 0));
        }
    }
}
