//! A `LogStore` decorator over a real store counting the reads that carry
//! documents (tests observe what an engine path asks the store for).

use argon_wal::record::{CatalogRecord, EncodedCommit, ProjectRecord};
use argon_wal::snapshot::SnapshotStream;
use argon_wal::store::{CommitPage, StoreFuture};
use argon_wal::{BranchId, CommitInfo, CommitTime, LogStats, LogStore, Seq};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The embedded store, counting the reads that carry documents.
pub struct Counting {
    inner: Arc<dyn LogStore>,
    /// `read_commits` calls asking for more than one commit.
    pages: AtomicUsize,
    /// Commits returned by `read_commits`.
    commits_read: AtomicUsize,
    snapshots: AtomicUsize,
    /// Commits returned by `read_commits_with_pre_images` (a diff from the log).
    commits_with_pre_images: AtomicUsize,
    /// `append_catalog` calls.
    catalog_appends: AtomicUsize,
    /// `commit_at_or_before` calls (how a branch's head is found in the store).
    head_lookups: AtomicUsize,
    /// How long each head lookup takes at least: the embedded store answers
    /// at once, so concurrent callers would otherwise never overlap.
    head_latency: std::time::Duration,
}

impl Counting {
    pub fn new(inner: Arc<dyn LogStore>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            pages: AtomicUsize::new(0),
            commits_read: AtomicUsize::new(0),
            snapshots: AtomicUsize::new(0),
            commits_with_pre_images: AtomicUsize::new(0),
            catalog_appends: AtomicUsize::new(0),
            head_lookups: AtomicUsize::new(0),
            head_latency: std::time::Duration::ZERO,
        })
    }

    /// Counting, with every head lookup taking `latency` (as a store across
    /// a network does).
    pub fn with_head_latency(
        inner: Arc<dyn LogStore>,
        latency: std::time::Duration,
    ) -> Arc<Counting> {
        let mut counting = Arc::into_inner(Counting::new(inner)).expect("just made");
        counting.head_latency = latency;
        Arc::new(counting)
    }

    /// `append_catalog` calls so far (each one store round trip).
    pub fn catalog_appends(&self) -> usize {
        self.catalog_appends.load(Ordering::SeqCst)
    }

    /// `commit_at_or_before` calls so far.
    pub fn head_lookups(&self) -> usize {
        self.head_lookups.load(Ordering::SeqCst)
    }

    /// `(pages, commits read, snapshots read)` so far.
    pub fn reads(&self) -> (usize, usize, usize) {
        (
            self.pages.load(Ordering::SeqCst),
            self.commits_read.load(Ordering::SeqCst),
            self.snapshots.load(Ordering::SeqCst),
        )
    }

    /// Commits read with their pre-images so far.
    pub fn commits_with_pre_images(&self) -> usize {
        self.commits_with_pre_images.load(Ordering::SeqCst)
    }
}

impl LogStore for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn health(&self) -> StoreFuture<'_, ()> {
        self.inner.health()
    }
    fn ensure_project<'a>(&'a self, p: &'a ProjectRecord) -> StoreFuture<'a, ProjectRecord> {
        self.inner.ensure_project(p)
    }
    fn append_commit<'a>(&'a self, p: &'a str, c: &'a EncodedCommit) -> StoreFuture<'a, ()> {
        self.inner.append_commit(p, c)
    }
    fn read_commits<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage> {
        Box::pin(async move {
            if limit > 1 {
                self.pages.fetch_add(1, Ordering::SeqCst);
            }
            let page = self
                .inner
                .read_commits(project, branch, after, upto, limit)
                .await?;
            self.commits_read.fetch_add(page.len(), Ordering::SeqCst);
            Ok(page)
        })
    }
    fn read_commits_with_pre_images<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage> {
        Box::pin(async move {
            let page = self
                .inner
                .read_commits_with_pre_images(project, branch, after, upto, limit)
                .await?;
            self.commits_with_pre_images
                .fetch_add(page.len(), Ordering::SeqCst);
            Ok(page)
        })
    }
    fn commit_info<'a>(
        &'a self,
        p: &'a str,
        b: BranchId,
        s: Seq,
    ) -> StoreFuture<'a, Option<CommitInfo>> {
        self.inner.commit_info(p, b, s)
    }
    fn commit_at_or_before<'a>(
        &'a self,
        p: &'a str,
        b: BranchId,
        t: CommitTime,
    ) -> StoreFuture<'a, Option<CommitInfo>> {
        self.head_lookups.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.head_latency).await;
            self.inner.commit_at_or_before(p, b, t).await
        })
    }
    fn log_stats<'a>(&'a self, p: &'a str, b: BranchId) -> StoreFuture<'a, LogStats> {
        self.inner.log_stats(p, b)
    }
    fn append_catalog<'a>(&'a self, p: &'a str, r: &'a [CatalogRecord]) -> StoreFuture<'a, usize> {
        self.catalog_appends.fetch_add(1, Ordering::SeqCst);
        self.inner.append_catalog(p, r)
    }
    fn read_catalog<'a>(&'a self, p: &'a str, after: Seq) -> StoreFuture<'a, Vec<CatalogRecord>> {
        self.inner.read_catalog(p, after)
    }
    fn put_snapshot<'a>(&'a self, p: &'a str, s: SnapshotStream) -> StoreFuture<'a, u64> {
        self.inner.put_snapshot(p, s)
    }
    fn latest_snapshot<'a>(
        &'a self,
        p: &'a str,
        b: BranchId,
        after: Seq,
        upto: Seq,
    ) -> StoreFuture<'a, Option<SnapshotStream>> {
        self.snapshots.fetch_add(1, Ordering::SeqCst);
        self.inner.latest_snapshot(p, b, after, upto)
    }
}
