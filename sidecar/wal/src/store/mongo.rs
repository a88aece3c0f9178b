//! The mongodb store: the shared WAL in a MongoDB database, through the
//! `mongodb` crate, using only commands FerretDB also supports (single
//! document inserts, finds with sort/limit, unique indexes, a `$group`).
//!
//! Collections (documents are the encodings in `record.rs`):
//! - `projects`: `{_id: name, k, name, created}`
//! - `branches`: the branch catalog log, `{k: "catalog", project, seq, time, event}`,
//!   unique on `{project, seq}`
//! - `commits`: `{k: "commit", project, branch, seq, time, actor, nops, bytes, body}`,
//!   unique on `{project, branch, seq}`, and `{project, branch, time}`
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
//! Outages: the driver reconnects by itself; until it does, every call
//! fails within the server-selection timeout (5 s unless the URI sets
//! `serverSelectionTimeoutMS`) with `WalError::Mongo`, which the engine
//! treats as an unknown outcome for an append (`Head::verified`).

use crate::error::{Result, WalError};
use crate::record::{self, CatalogRecord, Commit, ProjectRecord, SnapshotRecord};
use crate::store::{LogStats, LogStore, StoreFuture};
use crate::types::{BranchId, CommitInfo, CommitTime, Seq};
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

pub struct MongoStore {
    database: String,
    db: mongodb::Database,
    projects: Collection<Document>,
    catalog: Collection<Document>,
    commits: Collection<Document>,
    snapshots: Collection<Document>,
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

fn info_from(d: &Document) -> Result<CommitInfo> {
    Ok(CommitInfo {
        seq: Seq(record::get_u64(d, "commit", "seq")?),
        time: CommitTime(record::get_i64(d, "commit", "time")?),
    })
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
            snapshots: db.collection("snapshots"),
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
        Ok(Arc::new(store))
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

    /// Reassembles snapshot `seq` if all its chunks are there.
    async fn assemble(&self, project: &str, branch: BranchId, seq: i64) -> Result<Option<Vec<u8>>> {
        let chunks: Vec<Document> = self
            .snapshots
            .find(doc! {"project": project, "branch": branch.0 as i64, "seq": seq})
            .sort(doc! {"chunk": 1})
            .await
            .map_err(|e| WalError::mongo("reading snapshot chunks", e))?
            .try_collect()
            .await
            .map_err(|e| WalError::mongo("reading snapshot chunks", e))?;
        let Some(first) = chunks.first() else {
            return Ok(None);
        };
        let of = record::get_u64(first, "snapshot", "of")? as usize;
        if chunks.len() != of {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            if record::get_u64(c, "snapshot", "chunk")? as usize != i {
                return Ok(None);
            }
            match c.get("data") {
                Some(Bson::Binary(b)) => bytes.extend_from_slice(&b.bytes),
                _ => return Err(WalError::malformed("snapshot", "chunk without data")),
            }
        }
        Ok(Some(bytes))
    }
}

impl LogStore for MongoStore {
    fn describe(&self) -> String {
        format!("mongodb store in database {:?}", self.database)
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

    fn append_commit<'a>(&'a self, project: &'a str, commit: &'a Commit) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let d = record::commit_to_doc(project, commit)?;
            match self.commits.insert_one(d).await {
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
        })
    }

    fn read_commits<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, Vec<Commit>> {
        Box::pin(async move {
            if upto <= after {
                return Ok(Vec::new());
            }
            // Read as raw BSON: replay decodes commits from their bytes.
            let docs: Vec<RawDocumentBuf> = self
                .commits
                .clone_with_type::<RawDocumentBuf>()
                .find(doc! {
                    "project": project, "branch": branch.0 as i64,
                    "seq": {"$gt": after.0 as i64, "$lte": upto.0 as i64},
                })
                .sort(doc! {"seq": 1})
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await
                .map_err(|e| WalError::mongo("reading commits", e))?
                .try_collect()
                .await
                .map_err(|e| WalError::mongo("reading commits", e))?;
            let mut docs = docs;
            if docs.len() >= 2 && crate::failpoints::fire(crate::failpoints::MONGO_READ_GAP) {
                docs.remove(1);
            }
            docs.iter().map(|d| record::commit_from_raw(d)).collect()
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
        rec: &'a CatalogRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            match self
                .catalog
                .insert_one(record::catalog_to_doc(project, rec))
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => Err(WalError::CatalogConflict {
                    project: project.to_string(),
                    seq: rec.seq,
                }),
                Err(e) => Err(WalError::mongo("appending a catalog record", e)),
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
        snap: &'a SnapshotRecord,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let chunks: Vec<&[u8]> = if snap.bytes.is_empty() {
                vec![&[][..]]
            } else {
                snap.bytes.chunks(CHUNK).collect()
            };
            let of = chunks.len() as i64;
            for (i, data) in chunks.into_iter().enumerate() {
                let d = doc! {
                    "project": project, "branch": snap.branch.0 as i64, "seq": snap.seq.0 as i64,
                    "chunk": i as i64, "of": of,
                    "data": Bson::Binary(bson::Binary { subtype: BinarySubtype::Generic, bytes: data.to_vec() }),
                };
                match self.snapshots.insert_one(d).await {
                    Ok(_) => {}
                    // Another handle stored the same snapshot (same point, same state).
                    Err(e) if is_duplicate_key(&e) => {}
                    Err(e) => return Err(WalError::mongo("writing a snapshot chunk", e)),
                }
            }
            Ok(())
        })
    }

    fn latest_snapshot<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
    ) -> StoreFuture<'a, Option<SnapshotRecord>> {
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
            // Newest complete one wins; an incomplete one is a writer that died mid-way.
            for h in heads {
                let seq = record::get_i64(&h, "snapshot", "seq")?;
                if let Some(bytes) = self.assemble(project, branch, seq).await? {
                    return Ok(Some(SnapshotRecord {
                        branch,
                        seq: Seq(seq as u64),
                        bytes,
                    }));
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
