//! The mongodb store: the shared WAL in a MongoDB database, through the
//! `mongodb` crate, using only commands FerretDB also supports (single
//! document inserts, finds with sort/limit, unique indexes, a `$group`).
//!
//! Collections (documents are the encodings in `record.rs`):
//! - `projects`: `{_id: name, k, name, created}`
//! - `branches`: the branch catalog log, `{k: "catalog", project, seq, time, event}`,
//!   unique on `{project, seq}`
//! - `commits`: `{k: "commit", project, branch, seq, time, actor, nops, bytes, body | chunks}`,
//!   unique on `{project, branch, seq}`, and `{project, branch, time}`
//! - `chunks`: a large commit's body in pieces, `{_id: "<writer>:<n>", k:
//!   "chunk", project, branch, seq, writer, n, data}` (4 MiB of body each),
//!   read by `_id` through the commit record that names the writer
//! - `chunk_sets`: `{_id: writer, project, branch, seq, count, ...}`, one per
//!   chunk set whose commit is not known to have landed: written before the
//!   chunks, removed once the commit record is in (or the set is removed as
//!   an orphan). Small, so recovery scans it, never `chunks`.
//! - `heads`: `{_id: {project, branch}, seq}`, each branch incarnation's
//!   published head: an append moves it up (`$max`) after its commit record
//!   is in and before it returns, so every acknowledged commit is at or
//!   below it. Readers catch up to it; one small document per branch, where
//!   a query of `commits` costs a scan of the collection on FerretDB's
//!   SQLite backend (tens of ms at 30,000 commits)
//! - `snapshots`: `{project, branch, seq, chunk, of, data}`, a snapshot in
//!   chunks under MongoDB's 16 MiB document limit, unique on
//!   `{project, branch, seq, chunk}`; complete when all `of` are there
//!
//! Invariant: uniqueness of `(branch, seq)` and of catalog `seq` comes from the
//! unique indexes alone (duplicate key, code 11000), so any number of handles in
//! any number of pods may append: exactly one wins each seq. Durability is
//! the server's write concern (`w: majority, j: true` is requested), and
//! reads use read concern `majority`, so a catch-up never applies a commit
//! that a failover could roll back (and the engine refuses a read with a
//! hole: `engine.rs: check_next`).
//!
//! Large commits (see `record.rs`): the writer inserts its `chunk_sets`
//! entry, then the chunks, then the commit record, which claims the seq.
//! A commit record is inserted only after all its chunks are (each with
//! `w: majority`), and readers fetch chunks only through a commit record,
//! so a reader sees a whole commit or none. Chunk `_id`s start with the
//! writer's unique id, so a loser's chunks are never the winner's. Orphans
//! (a set no commit record names) are removed by the store itself:
//! - the loser of the seq race deletes its chunks at once (`Conflict`);
//! - on open, [`MongoStore::remove_orphans`] checks each `chunk_sets` entry:
//!   the commit at its `(branch, seq)` names it → committed, only the entry
//!   goes; another commit holds that seq → orphan (the seq can never be
//!   this writer's: the unique index refuses it), chunks and entry go; no
//!   commit there yet → kept while younger than [`ORPHAN_AGE`], removed
//!   after. That last rule is safe against a writer still in flight because
//!   a writer never inserts its commit record later than [`ABANDON_AFTER`]
//!   after it began its chunk set (it gives up and removes its chunks
//!   instead), and `ORPHAN_AGE` is far longer than that plus any clock skew
//!   between pods (the age comes from the writer's id, made on its clock).
//!
//! Outages: the driver reconnects by itself; until it does, every call
//! fails within the server-selection timeout (5 s unless the URI sets
//! `serverSelectionTimeoutMS`) with `WalError::Mongo`, which the engine
//! treats as an unknown outcome for an append (`Head::verified`).

use crate::error::{Result, WalError};
use crate::record::{self, CatalogRecord, ChunkRef, EncodedCommit, ProjectRecord, StoredBody};
use crate::snapshot::SnapshotStream;
use crate::store::{CommitPage, LogStats, LogStore, PAGE_BYTES, StoreFuture};

/// Seconds since `writer` was made (by its maker's clock); zero for one
/// from the future.
fn age_of(writer: ObjectId) -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(writer.timestamp().to_system_time())
        .unwrap_or_default()
}
use crate::lease::WriterLease;
use crate::types::{BranchId, CommitInfo, CommitTime, Seq};
use bson::oid::ObjectId;
use bson::{Bson, Document, RawDocumentBuf, doc, spec::BinarySubtype};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, ReadConcern, WriteConcern};
use mongodb::{Client, Collection, IndexModel};
use std::sync::Arc;

const DUPLICATE_KEY: i32 = 11000;
/// How long a call waits for a reachable server when the URI does not say:
/// during an outage writers get an error in this time, not a hang.
const SERVER_SELECTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Snapshot chunk size: well under the 16 MiB document limit.
const CHUNK: usize = 4 << 20;
/// A writer that began a chunk set longer ago than this does not insert its
/// commit record: it removes its chunks and fails the append (its outcome
/// is known: nothing was committed). See the module doc.
pub const ABANDON_AFTER: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// A chunk set whose seq no commit holds is an orphan once its writer id is
/// older than this (by the remover's clock). Far above [`ABANDON_AFTER`]:
/// the margin covers clock skew between pods.
pub const ORPHAN_AGE: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// Chunks per reply when reading a chunk set (each up to 4 MiB).
const CHUNKS_PER_BATCH: u32 = 2;

pub struct MongoStore {
    database: String,
    db: mongodb::Database,
    projects: Collection<Document>,
    catalog: Collection<Document>,
    commits: Collection<Document>,
    chunks: Collection<RawDocumentBuf>,
    chunk_sets: Collection<Document>,
    snapshots: Collection<Document>,
    /// Writer leases, `_id` = `<project>/<branch name>` (see `lease`).
    leases: Collection<Document>,
    /// Published heads, `_id` = `{project, branch}`, `seq` (see
    /// `LogStore::published_head`).
    heads: Collection<Document>,
}

/// What [`MongoStore::remove_orphans`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Chunk sets whose commit landed (their entry removed, chunks kept).
    pub committed: usize,
    /// Chunk sets removed as orphans, with their chunks.
    pub removed: usize,
    /// Chunk sets left alone: no commit at their seq yet and young enough
    /// that a writer may still be in flight.
    pub kept: usize,
}

fn chunk_id(writer: &ObjectId, n: u32) -> String {
    format!("{}:{n}", writer.to_hex())
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MongoStore({})", self.database)
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(we)) => we.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(im) => im
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == DUPLICATE_KEY)),
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// For an ordered insert refused on a duplicate key: how many documents
/// before it were inserted (the index of the first error); `None` for any
/// other failure.
fn accepted_before_duplicate(e: &mongodb::error::Error) -> Option<usize> {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(im) => {
            let first = im.write_errors.as_ref()?.iter().min_by_key(|w| w.index)?;
            (first.code == DUPLICATE_KEY).then_some(first.index)
        }
        ErrorKind::Write(WriteFailure::WriteError(we)) if we.code == DUPLICATE_KEY => Some(0),
        ErrorKind::Command(c) if c.code == DUPLICATE_KEY => Some(0),
        _ => None,
    }
}

async fn unique_index(coll: &Collection<Document>, keys: Document, name: &str) -> Result<()> {
    let model = IndexModel::builder()
        .keys(keys)
        .options(
            IndexOptions::builder()
                .unique(true)
                .name(name.to_string())
                .build(),
        )
        .build();
    coll.create_index(model)
        .await
        .map_err(|e| WalError::mongo(format!("creating index {name}"), e))?;
    Ok(())
}

fn lease_id(project: &str, branch: &str) -> String {
    format!("{project}/{branch}")
}

/// The fields a lease record is matched on and written with.
fn lease_fields(l: &WriterLease) -> Document {
    doc! {"holder": &l.holder, "address": &l.address, "term": l.term, "beat": l.beat}
}

fn lease_from(d: &Document) -> Result<WriterLease> {
    const W: &str = "writer lease";
    let field = |k: &str| -> Result<String> {
        d.get_str(k)
            .map(str::to_string)
            .map_err(|e| WalError::malformed(W, format!("field {k}: {e}")))
    };
    Ok(WriterLease {
        holder: field("holder")?,
        address: field("address")?,
        term: record::get_i64(d, W, "term")?,
        beat: record::get_i64(d, W, "beat")?,
    })
}

fn info_from(d: &Document) -> Result<CommitInfo> {
    Ok(CommitInfo {
        seq: Seq(record::get_u64(d, "commit", "seq")?),
        time: CommitTime(record::get_i64(d, "commit", "time")?),
    })
}

/// The `heads` document of a branch incarnation.
fn head_id(project: &str, branch: BranchId) -> Document {
    doc! {"project": project, "branch": branch.0 as i64}
}

impl MongoStore {
    /// Connects to `uri` and uses (creating collections and indexes in)
    /// `database`.
    pub async fn connect(uri: &str, database: &str) -> Result<Arc<MongoStore>> {
        // Never the URI itself in an error: it may carry a password, and
        // this message reaches logs, events and CR status.
        let context = || format!("connecting to {}", redact_uri(uri));
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| WalError::mongo(context(), e))?;
        if options.server_selection_timeout.is_none() {
            options.server_selection_timeout = Some(SERVER_SELECTION_TIMEOUT);
        }
        if options.connect_timeout.is_none() {
            options.connect_timeout = Some(CONNECT_TIMEOUT);
        }
        let client = Client::with_options(options).map_err(|e| WalError::mongo(context(), e))?;
        Self::with_client(&client, database).await
    }

    pub async fn with_client(client: &Client, database: &str) -> Result<Arc<MongoStore>> {
        let db = client.database_with_options(
            database,
            mongodb::options::DatabaseOptions::builder()
                .write_concern(
                    WriteConcern::builder()
                        .w(Acknowledgment::Majority)
                        .journal(true)
                        .build(),
                )
                .read_concern(ReadConcern::majority())
                .build(),
        );
        let store = MongoStore {
            database: database.to_string(),
            db: db.clone(),
            projects: db.collection("projects"),
            catalog: db.collection("branches"),
            commits: db.collection("commits"),
            chunks: db.collection("chunks"),
            chunk_sets: db.collection("chunk_sets"),
            snapshots: db.collection("snapshots"),
            leases: db.collection("leases"),
            heads: db.collection("heads"),
        };
        unique_index(
            &store.commits,
            doc! {"project": 1, "branch": 1, "seq": 1},
            "project_branch_seq",
        )
        .await?;
        store
            .commits
            .create_index(
                IndexModel::builder()
                    .keys(doc! {"project": 1, "branch": 1, "time": 1})
                    .options(
                        IndexOptions::builder()
                            .name("project_branch_time".to_string())
                            .build(),
                    )
                    .build(),
            )
            .await
            .map_err(|e| WalError::mongo("creating index project_branch_time", e))?;
        unique_index(&store.catalog, doc! {"project": 1, "seq": 1}, "project_seq").await?;
        unique_index(
            &store.snapshots,
            doc! {"project": 1, "branch": 1, "seq": 1, "chunk": 1},
            "project_branch_seq_chunk",
        )
        .await?;
        let report = store.remove_orphans(ORPHAN_AGE).await?;
        if report.removed > 0 {
            tracing::info!(
                removed = report.removed,
                kept = report.kept,
                "removed orphan chunk sets"
            );
        }
        Ok(Arc::new(store))
    }

    /// Removes every chunk set no commit record names and never will (see
    /// the module doc): its seq is held by another commit, or none and it
    /// is older than `older_than`. Runs on open; safe to run any time.
    pub async fn remove_orphans(&self, older_than: std::time::Duration) -> Result<OrphanReport> {
        let sets: Vec<Document> = self
            .chunk_sets
            .find(doc! {})
            .await
            .map_err(|e| WalError::mongo("reading chunk sets", e))?
            .try_collect()
            .await
            .map_err(|e| WalError::mongo("reading chunk sets", e))?;
        let mut report = OrphanReport::default();
        for set in sets {
            const W: &str = "chunk set";
            let writer = set
                .get_object_id("_id")
                .map_err(|e| WalError::malformed(W, format!("field _id: {e}")))?;
            let project = set
                .get_str("project")
                .map_err(|e| WalError::malformed(W, format!("field project: {e}")))?;
            let branch = record::get_i64(&set, W, "branch")?;
            let seq = record::get_i64(&set, W, "seq")?;
            let count = u32::try_from(record::get_i64(&set, W, "count")?)
                .map_err(|_| WalError::malformed(W, "field count is out of range"))?;
            let holder = self
                .commits
                .find_one(doc! {"project": project, "branch": branch, "seq": seq})
                .projection(doc! {"chunks": 1})
                .await
                .map_err(|e| WalError::mongo("reading the commit of a chunk set", e))?;
            let named = |c: &Document| {
                c.get_document("chunks")
                    .and_then(|c| c.get_object_id("writer"))
                    .is_ok_and(|w| w == writer)
            };
            match holder {
                Some(c) if named(&c) => {
                    self.forget_set(writer).await?;
                    report.committed += 1;
                }
                Some(_) => {
                    self.remove_set(writer, count).await?;
                    report.removed += 1;
                }
                None if age_of(writer) > older_than => {
                    self.remove_set(writer, count).await?;
                    report.removed += 1;
                }
                None => report.kept += 1,
            }
        }
        Ok(report)
    }

    /// Drops a set's `chunk_sets` entry (its commit landed).
    async fn forget_set(&self, writer: ObjectId) -> Result<()> {
        self.chunk_sets
            .delete_one(doc! {"_id": writer})
            .await
            .map_err(|e| WalError::mongo("removing a chunk set entry", e))?;
        Ok(())
    }

    /// Deletes a set's chunks, then its entry (so a failure half way is
    /// found again by the next scan).
    async fn remove_set(&self, writer: ObjectId, count: u32) -> Result<()> {
        let ids: Vec<Bson> = (0..count)
            .map(|n| Bson::String(chunk_id(&writer, n)))
            .collect();
        self.chunks
            .delete_many(doc! {"_id": {"$in": ids}})
            .await
            .map_err(|e| WalError::mongo("removing orphan chunks", e))?;
        self.forget_set(writer).await
    }

    /// The chunks and the commit record of a large commit (see the module doc).
    async fn append_chunked(
        &self,
        project: &str,
        commit: &EncodedCommit,
        chunks: &ChunkRef,
        record: RawDocumentBuf,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let context = || {
            format!(
                "appending commit {} of branch {}",
                commit.seq, commit.branch
            )
        };
        self.chunk_sets
            .insert_one(doc! {
                "_id": chunks.writer, "project": project, "branch": commit.branch.0 as i64,
                "seq": commit.seq.0 as i64, "count": i64::from(chunks.count),
                "bytes": chunks.bytes as i64,
            })
            .await
            .map_err(|e| WalError::mongo(context(), e))?;
        for n in 0..chunks.count {
            let id = chunk_id(&chunks.writer, n);
            let d = commit.chunk_record(project, n, Some(&id))?;
            self.chunks
                .insert_one(d)
                .await
                .map_err(|e| WalError::mongo(context(), e))?;
        }
        // Measured both ways: on this process's monotonic clock, and as the
        // age of the writer id (made when the commit was encoded, on the
        // wall clock an orphan remover reads it with).
        if started.elapsed() > ABANDON_AFTER || age_of(chunks.writer) > ABANDON_AFTER {
            // Too late to claim the seq: an orphan remover may already
            // count this set as dead. Nothing was committed.
            let _ = self.remove_set(chunks.writer, chunks.count).await;
            return Err(WalError::Abandoned {
                seconds: started.elapsed().as_secs(),
            });
        }
        match self.insert_commit(commit, record).await {
            Ok(()) => {
                // Best effort: a leftover entry is found committed on the next scan.
                if let Err(e) = self.forget_set(chunks.writer).await {
                    tracing::warn!(error = %e, "could not remove a committed chunk set's entry");
                }
                Ok(())
            }
            Err(e @ WalError::Conflict { .. }) => {
                // The loser removes its own chunks; if it cannot, the next
                // scan finds the seq held by another commit.
                if let Err(e) = self.remove_set(chunks.writer, chunks.count).await {
                    tracing::warn!(error = %e, "could not remove a losing commit's chunks");
                }
                Err(e)
            }
            // Unknown outcome: the set stays until a scan decides.
            Err(e) => Err(e),
        }
    }

    /// A stored commit record as a commit (its body from its chunks when
    /// it has them), and its body's size.
    async fn decode_record(
        &self,
        d: &RawDocumentBuf,
        pre_images: bool,
    ) -> Result<(crate::record::Commit, u64)> {
        let rec = record::commit_record(d)?;
        match &rec.body {
            StoredBody::Inline(body) => Ok((
                record::decode_commit(&rec, body, pre_images)?,
                body.len() as u64,
            )),
            StoredBody::Chunked(chunks) => {
                let body = self.read_body(chunks).await?;
                Ok((
                    record::decode_commit(&rec, &body, pre_images)?,
                    chunks.bytes,
                ))
            }
        }
    }

    /// Commits with `after < seq <= upto` by one range query (index-backed
    /// on MongoDB).
    async fn read_range(
        &self,
        project: &str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
        pre_images: bool,
    ) -> Result<CommitPage> {
        if upto <= after {
            return Ok(CommitPage::default());
        }
        // Read as raw BSON: replay decodes commits from their bytes. The
        // cursor is read as the page fills (the driver fetches a batch
        // at a time), so a page of large commits stops at PAGE_BYTES
        // instead of holding `limit` of them.
        let mut cursor = self
            .commits
            .clone_with_type::<RawDocumentBuf>()
            .find(doc! {
                "project": project, "branch": branch.0 as i64,
                "seq": {"$gt": after.0 as i64, "$lte": upto.0 as i64},
            })
            .sort(doc! {"seq": 1})
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| WalError::mongo("reading commits", e))?;
        let mut page = CommitPage::default();
        let (mut bytes, mut index) = (0u64, 0usize);
        while let Some(d) = cursor
            .try_next()
            .await
            .map_err(|e| WalError::mongo("reading commits", e))?
        {
            if page.commits.len() >= limit || bytes >= PAGE_BYTES {
                page.more = true;
                break;
            }
            index += 1;
            if index == 2 && crate::failpoints::fire(crate::failpoints::MONGO_READ_GAP) {
                continue;
            }
            let (commit, size) = self.decode_record(&d, pre_images).await?;
            bytes += size;
            page.commits.push(commit);
        }
        page.more |= page.commits.len() >= limit;
        Ok(page)
    }

    /// Moves `branch`'s published head up to `seq` (never down).
    async fn publish(&self, project: &str, branch: BranchId, seq: Seq) -> Result<()> {
        let seq = i64::try_from(seq.0)
            .map_err(|_| WalError::malformed("head", format!("seq {seq} out of range")))?;
        let filter = doc! {"_id": head_id(project, branch)};
        let update = doc! {"$max": {"seq": seq}};
        let upsert = mongodb::options::UpdateOptions::builder()
            .upsert(true)
            .build();
        let context = || format!("publishing the head of branch {branch} at {seq}");
        match self
            .heads
            .update_one(filter.clone(), update.clone())
            .with_options(upsert)
            .await
        {
            Ok(_) => Ok(()),
            // Two first publishers raced to insert the document: the other
            // one's is there now.
            Err(e) if is_duplicate_key(&e) => self
                .heads
                .update_one(filter, update)
                .await
                .map(|_| ())
                .map_err(|e| WalError::mongo(context(), e)),
            Err(e) => Err(WalError::mongo(context(), e)),
        }
    }

    /// Inserts a commit record: the one write that claims its seq.
    async fn insert_commit(&self, commit: &EncodedCommit, record: RawDocumentBuf) -> Result<()> {
        match self
            .commits
            .clone_with_type::<RawDocumentBuf>()
            .insert_one(record)
            .await
        {
            Ok(_) if crate::failpoints::fire(
                crate::failpoints::MONGO_APPEND_AFTER_INSERT_BEFORE_ACK,
            ) =>
            {
                Err(WalError::mongo(
                    format!("appending commit {} of branch {}", commit.seq, commit.branch),
                    std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "failpoint mongo-append-after-insert-before-ack: connection lost before the reply",
                    )
                    .into(),
                ))
            }
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(WalError::Conflict {
                branch: commit.branch,
                seq: commit.seq,
            }),
            Err(e) => Err(WalError::mongo(
                format!(
                    "appending commit {} of branch {}",
                    commit.seq, commit.branch
                ),
                e,
            )),
        }
    }

    /// A chunked commit's body, from the chunks its record names.
    async fn read_body(&self, chunks: &ChunkRef) -> Result<Vec<u8>> {
        let ids: Vec<Bson> = (0..chunks.count)
            .map(|n| Bson::String(chunk_id(&chunks.writer, n)))
            .collect();
        let mut body = record::Reassembly::new(chunks)?;
        let mut cursor = self
            .chunks
            .find(doc! {"_id": {"$in": ids}})
            .batch_size(CHUNKS_PER_BATCH)
            .await
            .map_err(|e| WalError::mongo("reading a commit's chunks", e))?;
        while let Some(d) = cursor
            .try_next()
            .await
            .map_err(|e| WalError::mongo("reading a commit's chunks", e))?
        {
            body.add(&record::chunk_record(&d)?)?;
        }
        body.finish()
    }

    async fn edge(
        &self,
        project: &str,
        branch: BranchId,
        direction: i32,
    ) -> Result<Option<CommitInfo>> {
        let found = self
            .commits
            .find_one(doc! {"project": project, "branch": branch.0 as i64})
            .sort(doc! {"seq": direction})
            .projection(doc! {"seq": 1, "time": 1})
            .await
            .map_err(|e| WalError::mongo("reading the log's first/last commit", e))?;
        found.as_ref().map(info_from).transpose()
    }

    /// Inserts one snapshot chunk; `of` (the chunk count) is only on chunk
    /// 0, written last (0 on the others: a reader that expects it on every
    /// chunk sees a mismatch and skips the snapshot instead of failing).
    async fn put_snapshot_chunk(
        &self,
        project: &str,
        branch: BranchId,
        seq: Seq,
        chunk: i64,
        of: i64,
        data: Vec<u8>,
    ) -> Result<()> {
        let d = doc! {
            "project": project, "branch": branch.0 as i64, "seq": seq.0 as i64,
            "chunk": chunk, "of": of,
            "data": Bson::Binary(bson::Binary { subtype: BinarySubtype::Generic, bytes: data }),
        };
        match self.snapshots.insert_one(d).await {
            Ok(_) => Ok(()),
            // Another handle stored the same snapshot (same point, same state).
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(WalError::mongo("writing a snapshot chunk", e)),
        }
    }

    /// Whether the snapshot at `seq` has all its chunks (read without
    /// their data): chunk 0 carries the count (chunks written before
    /// streaming carry it on every chunk; 0 on the others now).
    async fn complete(&self, project: &str, branch: BranchId, seq: i64) -> Result<bool> {
        let chunks: Vec<Document> = self
            .snapshots
            .find(doc! {"project": project, "branch": branch.0 as i64, "seq": seq})
            .projection(doc! {"chunk": 1, "of": 1, "_id": 0})
            .sort(doc! {"chunk": 1})
            .await
            .map_err(|e| WalError::mongo("reading snapshot chunks", e))?
            .try_collect()
            .await
            .map_err(|e| WalError::mongo("reading snapshot chunks", e))?;
        let mut of = None;
        for (next, c) in chunks.iter().enumerate() {
            let total = record::get_u64(c, "snapshot", "of")? as usize;
            let of = *of.get_or_insert(total);
            if (total != of && total != 0)
                || record::get_u64(c, "snapshot", "chunk")? as usize != next
            {
                return Ok(false);
            }
        }
        Ok(of == Some(chunks.len()))
    }

    /// Streams the chunks' data in order, two chunks per reply.
    fn stream_chunks(&self, project: &str, branch: BranchId, seq: i64) -> SnapshotStream {
        let (tx, stream) = SnapshotStream::channel(branch, Seq(seq as u64));
        let snapshots = self.snapshots.clone();
        let filter = doc! {"project": project, "branch": branch.0 as i64, "seq": seq};
        tokio::spawn(async move {
            let sent = async {
                let mut cursor = snapshots
                    .find(filter)
                    .sort(doc! {"chunk": 1})
                    .batch_size(CHUNKS_PER_BATCH)
                    .await
                    .map_err(|e| WalError::mongo("reading snapshot chunks", e))?;
                while let Some(c) = cursor
                    .try_next()
                    .await
                    .map_err(|e| WalError::mongo("reading snapshot chunks", e))?
                {
                    let data = match c.get("data") {
                        Some(Bson::Binary(b)) => b.bytes.clone(),
                        _ => return Err(WalError::malformed("snapshot", "chunk without data")),
                    };
                    if !tx.send(data).await {
                        break;
                    }
                }
                Ok(())
            }
            .await;
            tx.finish(sent).await;
        });
        stream
    }
}

impl LogStore for MongoStore {
    fn describe(&self) -> String {
        format!("mongodb store in database {:?}", self.database)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn writer_lease<'a>(
        &'a self,
        project: &'a str,
        branch: &'a str,
    ) -> StoreFuture<'a, Option<WriterLease>> {
        Box::pin(async move {
            let found = self
                .leases
                .find_one(doc! {"_id": lease_id(project, branch)})
                .await
                .map_err(|e| WalError::mongo("reading a writer lease", e))?;
            found.as_ref().map(lease_from).transpose()
        })
    }

    fn swap_writer_lease<'a>(
        &'a self,
        project: &'a str,
        branch: &'a str,
        expected: Option<&'a WriterLease>,
        new: Option<&'a WriterLease>,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let id = lease_id(project, branch);
            const WHAT: &str = "swapping a writer lease";
            match (expected, new) {
                (None, None) => Ok(self.writer_lease(project, branch).await?.is_none()),
                (None, Some(new)) => {
                    let mut d = lease_fields(new);
                    d.insert("_id", id);
                    match self.leases.insert_one(d).await {
                        Ok(_) => Ok(true),
                        Err(e) if is_duplicate_key(&e) => Ok(false),
                        Err(e) => Err(WalError::mongo(WHAT, e)),
                    }
                }
                (Some(old), new) => {
                    let mut filter = lease_fields(old);
                    filter.insert("_id", id);
                    let matched = match new {
                        Some(new) => {
                            self.leases
                                .update_one(filter, doc! {"$set": lease_fields(new)})
                                .await
                                .map_err(|e| WalError::mongo(WHAT, e))?
                                .matched_count
                        }
                        None => {
                            self.leases
                                .delete_one(filter)
                                .await
                                .map_err(|e| WalError::mongo(WHAT, e))?
                                .deleted_count
                        }
                    };
                    Ok(matched == 1)
                }
            }
        })
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.db
                .run_command(doc! {"ping": 1})
                .await
                .map_err(|e| WalError::mongo("pinging the store", e))?;
            Ok(())
        })
    }

    fn ensure_project<'a>(&'a self, project: &'a ProjectRecord) -> StoreFuture<'a, ProjectRecord> {
        Box::pin(async move {
            let mut d = record::project_to_doc(project);
            d.insert("_id", project.name.as_str());
            match self.projects.insert_one(d).await {
                Ok(_) => Ok(project.clone()),
                Err(e) if is_duplicate_key(&e) => {
                    let found = self
                        .projects
                        .find_one(doc! {"_id": project.name.as_str()})
                        .await
                        .map_err(|e| WalError::mongo("reading the project record", e))?
                        .ok_or_else(|| {
                            WalError::malformed("project", "duplicate key but no record")
                        })?;
                    record::project_from_doc(&found)
                }
                Err(e) => Err(WalError::mongo("writing the project record", e)),
            }
        })
    }

    fn append_commit<'a>(
        &'a self,
        project: &'a str,
        commit: &'a EncodedCommit,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let record = commit.record(project)?;
            match commit.chunks() {
                None => self.insert_commit(commit, record).await?,
                Some(chunks) => self.append_chunked(project, commit, chunks, record).await?,
            }
            // Before the append is acknowledged (see `published_head`); a
            // failure here is an unknown outcome like a lost reply.
            self.publish(project, commit.branch, commit.seq).await
        })
    }

    fn published_head<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
    ) -> StoreFuture<'a, Option<Seq>> {
        Box::pin(async move {
            let found = self
                .heads
                .find_one(doc! {"_id": head_id(project, branch)})
                .await
                .map_err(|e| WalError::mongo("reading a branch's published head", e))?;
            found
                .map(|d| {
                    let seq = record::get_i64(&d, "head", "seq")?;
                    u64::try_from(seq)
                        .map(Seq)
                        .map_err(|_| WalError::malformed("head", format!("seq {seq}")))
                })
                .transpose()
        })
    }

    fn publish_head<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        seq: Seq,
    ) -> StoreFuture<'a, ()> {
        Box::pin(self.publish(project, branch, seq))
    }

    fn read_commits<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage> {
        Box::pin(self.read_range(project, branch, after, upto, limit, false))
    }

    fn read_commits_with_pre_images<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage> {
        Box::pin(self.read_range(project, branch, after, upto, limit, true))
    }

    fn commit_info<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        seq: Seq,
    ) -> StoreFuture<'a, Option<CommitInfo>> {
        Box::pin(async move {
            let filter = doc! {"project": project, "branch": branch.0 as i64, "seq": seq.0 as i64};
            let found = self
                .commits
                .find_one(filter)
                .projection(doc! {"seq": 1, "time": 1})
                .await
                .map_err(|e| WalError::mongo("reading a commit's time", e))?;
            found.as_ref().map(info_from).transpose()
        })
    }

    fn commit_at_or_before<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        at: CommitTime,
    ) -> StoreFuture<'a, Option<CommitInfo>> {
        Box::pin(async move {
            let found = self
                .commits
                .find_one(
                    doc! {"project": project, "branch": branch.0 as i64, "time": {"$lte": at.0}},
                )
                .sort(doc! {"seq": -1})
                .projection(doc! {"seq": 1, "time": 1})
                .await
                .map_err(|e| WalError::mongo("finding the commit at a time", e))?;
            found.as_ref().map(info_from).transpose()
        })
    }

    fn log_stats<'a>(&'a self, project: &'a str, branch: BranchId) -> StoreFuture<'a, LogStats> {
        Box::pin(async move {
            let first = self.edge(project, branch, 1).await?;
            let last = self.edge(project, branch, -1).await?;
            // Summed here, not with `$group: {$sum: "$bytes"}`: FerretDB 1.24
            // answers 0 for `$sum` over an int64 field path.
            let mut cursor = self
                .commits
                .find(doc! {"project": project, "branch": branch.0 as i64})
                .projection(doc! {"_id": 0, "bytes": 1})
                .await
                .map_err(|e| WalError::mongo("summing the log", e))?;
            let (mut commits, mut bytes) = (0u64, 0u64);
            while let Some(d) = cursor
                .try_next()
                .await
                .map_err(|e| WalError::mongo("summing the log", e))?
            {
                commits += 1;
                bytes += record::get_u64(&d, "commit", "bytes")?;
            }
            Ok(LogStats {
                first,
                last,
                commits,
                bytes,
            })
        })
    }

    fn append_catalog<'a>(
        &'a self,
        project: &'a str,
        records: &'a [CatalogRecord],
    ) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            let Some(first) = records.first() else {
                return Ok(0);
            };
            let docs = records
                .iter()
                .map(|rec| record::catalog_to_doc(project, rec));
            // Ordered: the server stops at the first taken seq, so what it
            // accepted is a prefix, and the index of its error says how long.
            match self.catalog.insert_many(docs).ordered(true).await {
                Ok(_) => Ok(records.len()),
                Err(e) => match accepted_before_duplicate(&e) {
                    Some(0) => Err(WalError::CatalogConflict {
                        project: project.to_string(),
                        seq: first.seq,
                    }),
                    Some(n) => Ok(n.min(records.len())),
                    None => Err(WalError::mongo("appending catalog records", e)),
                },
            }
        })
    }

    fn read_catalog<'a>(
        &'a self,
        project: &'a str,
        after: Seq,
    ) -> StoreFuture<'a, Vec<CatalogRecord>> {
        Box::pin(async move {
            let docs: Vec<Document> = self
                .catalog
                .find(doc! {"project": project, "seq": {"$gt": after.0 as i64}})
                .sort(doc! {"seq": 1})
                .await
                .map_err(|e| WalError::mongo("reading the branch catalog", e))?
                .try_collect()
                .await
                .map_err(|e| WalError::mongo("reading the branch catalog", e))?;
            docs.iter().map(record::catalog_from_doc).collect()
        })
    }

    fn put_snapshot<'a>(
        &'a self,
        project: &'a str,
        mut snap: SnapshotStream,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            // Chunks 1.. are inserted as they fill, chunk 0 last, carrying
            // `of`: `latest_snapshot` finds a snapshot by its chunk 0, so
            // it sees only complete ones, and memory holds two chunks (the
            // first and the one filling), not the snapshot.
            let (branch, seq) = (snap.branch, snap.seq);
            let mut first: Option<Vec<u8>> = None;
            let mut filling = Vec::with_capacity(CHUNK);
            let mut next_chunk = 1i64;
            let mut len = 0u64;
            loop {
                let piece = snap.next_piece().await?;
                let done = piece.is_none();
                if let Some(piece) = piece {
                    len += piece.len() as u64;
                    filling.extend_from_slice(&piece);
                }
                while filling.len() >= CHUNK || (done && !filling.is_empty()) {
                    let rest = filling.split_off(filling.len().min(CHUNK));
                    let full = std::mem::replace(&mut filling, rest);
                    if first.is_none() {
                        first = Some(full);
                    } else {
                        self.put_snapshot_chunk(project, branch, seq, next_chunk, 0, full)
                            .await?;
                        next_chunk += 1;
                    }
                }
                if done {
                    break;
                }
            }
            self.put_snapshot_chunk(
                project,
                branch,
                seq,
                0,
                next_chunk,
                first.unwrap_or_default(),
            )
            .await?;
            Ok(len)
        })
    }

    fn latest_snapshot<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
    ) -> StoreFuture<'a, Option<SnapshotStream>> {
        Box::pin(async move {
            if upto <= after {
                return Ok(None);
            }
            let heads: Vec<Document> = self
                .snapshots
                .find(doc! {
                    "project": project, "branch": branch.0 as i64, "chunk": 0,
                    "seq": {"$gt": after.0 as i64, "$lte": upto.0 as i64},
                })
                .sort(doc! {"seq": -1})
                .projection(doc! {"seq": 1})
                .limit(4)
                .await
                .map_err(|e| WalError::mongo("finding snapshots", e))?
                .try_collect()
                .await
                .map_err(|e| WalError::mongo("finding snapshots", e))?;
            // Newest complete one wins; an incomplete one is a writer that
            // died mid-way (before streaming, chunk 0 came first).
            for h in heads {
                let seq = record::get_i64(&h, "snapshot", "seq")?;
                if self.complete(project, branch, seq).await? {
                    return Ok(Some(self.stream_chunks(project, branch, seq)));
                }
            }
            Ok(None)
        })
    }
}

/// `mongodb://user:secret@host/x` → `mongodb://***@host/x`: what an error
/// message may show of a connection string.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &uri[..s], &uri[at..]),
        _ => uri.to_owned(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_uri;

    #[test]
    fn credentials_never_show() {
        assert_eq!(redact_uri("mongodb://u:p@h:1/x"), "mongodb://***@h:1/x");
        assert_eq!(redact_uri("mongodb://h:1/x"), "mongodb://h:1/x");
    }
}
