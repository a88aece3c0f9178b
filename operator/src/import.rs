//! `spec.import`: the source side (the `mongodb` driver) and the writes
//! into `main` (physical `DocOp`s through `Wal::write`). The controller
//! drives it collection by collection and records progress in status.
//!
//! Every write is keyed: collections and indexes by name, documents by
//! `_id`. So an attempt after a failure or an operator crash copies the same
//! things again without duplicating any, and whatever is already in `main`
//! unchanged is left out of the commit (a retry costs reads, not log).

use crate::crd::ImportSpec;
use argon_wal::{BranchState, DocOp, Namespace, Wal, WalError, WriteError};
use bson::{Bson, Document, RawDocumentBuf};
use futures::TryStreamExt;
use mongodb::{Client, Cursor};
use std::sync::Arc;

/// Most documents per commit.
pub const BATCH_DOCS: usize = 1000;
/// A batch closes once its documents reach this many bytes (so a batch is
/// at most this plus one document of up to 16 MiB). A commit of any size is
/// stored (one record, or chunk records and the commit record naming them),
/// so this bounds the operator's memory and the work an attempt repeats
/// after a failure, not a format; a put replacing a different document also
/// logs what it replaced, and a commit the engine still refuses as over
/// its memory budget (`WalOptions::max_commit_bytes`) is split (see
/// [`commit_documents`]).
pub const BATCH_BYTES: usize = 8 << 20;

const MAIN: &str = "main";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Something in `spec.import` (or the Secret it names) is wrong.
    #[error("{0}")]
    Invalid(String),

    #[error("source {context}: {source}")]
    Source {
        context: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },

    #[error("writing into main: {0}")]
    Wal(#[from] WalError),
}

fn source(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> ImportError {
    let context = context.into();
    move |e| ImportError::Source {
        context,
        source: Box::new(e),
    }
}

/// A resolver here refuses nothing: its only error is a failed read of
/// the head, which is the WAL's error like a failed commit.
fn written<T>(
    r: std::result::Result<(T, argon_wal::CommitInfo), WriteError<WalError>>,
) -> Result<T, ImportError> {
    match r {
        Ok((t, _)) => Ok(t),
        Err(WriteError::Wal(e) | WriteError::Rejected(e)) => Err(e.into()),
    }
}

/// A client for the source. The driver connects lazily: an unreachable
/// server shows up at the first command, within the URI's server selection
/// timeout.
pub async fn connect(uri: &str) -> Result<Client, ImportError> {
    // The driver's message, never the URI: it may hold a password.
    Client::with_uri_str(uri)
        .await
        .map_err(|e| ImportError::Invalid(format!("the source connection string is invalid: {e}")))
}

/// A source collection to copy.
#[derive(Clone, Debug)]
pub struct SourceCollection {
    pub ns: Namespace,
    pub options: Document,
}

/// The collections `spec` names, in database order then by name: every
/// collection of each database (views and `system.*` left out), or only
/// those in `spec.collections`. A database with nothing to copy, or a named
/// collection found nowhere, is an error naming it.
pub async fn plan(
    client: &Client,
    spec: &ImportSpec,
) -> Result<Vec<SourceCollection>, ImportError> {
    let mut databases: Vec<&str> = Vec::new();
    for db in &spec.databases {
        if db.is_empty() {
            return Err(ImportError::Invalid(
                "spec.import.databases has an empty name".into(),
            ));
        }
        if !databases.contains(&db.as_str()) {
            databases.push(db);
        }
    }
    let mut out = Vec::new();
    for db in databases {
        let listed: Vec<Document> = client
            .database(db)
            .list_collections()
            .await
            .map_err(source(format!(
                "listing the collections of database {db:?}"
            )))?
            .with_type::<Document>()
            .try_collect()
            .await
            .map_err(source(format!(
                "listing the collections of database {db:?}"
            )))?;
        let mut found: Vec<SourceCollection> = listed
            .iter()
            .filter_map(|c| {
                let name = c.get_str("name").ok()?;
                // FerretDB leaves `type` out for plain collections.
                let kind = c.get_str("type").unwrap_or("collection");
                if kind != "collection" || name.starts_with("system.") {
                    return None;
                }
                if !spec.collections.is_empty() && !spec.collections.iter().any(|n| n == name) {
                    return None;
                }
                Some(SourceCollection {
                    ns: Namespace::new(db, name),
                    options: c.get_document("options").cloned().unwrap_or_default(),
                })
            })
            .collect();
        if found.is_empty() {
            // MongoDB creates databases lazily: an absent one lists no collections.
            let reason = if spec.collections.is_empty() {
                format!("source database {db:?} does not exist or has no collections")
            } else {
                format!(
                    "source database {db:?} has none of the collections {:?}",
                    spec.collections
                )
            };
            return Err(ImportError::Invalid(reason));
        }
        found.sort_by(|a, b| a.ns.coll.cmp(&b.ns.coll));
        out.extend(found);
    }
    if let Some(missing) = spec
        .collections
        .iter()
        .find(|name| !out.iter().any(|c| &c.ns.coll == *name))
    {
        return Err(ImportError::Invalid(format!(
            "collection {missing:?} is in none of the source databases {:?}",
            spec.databases
        )));
    }
    Ok(out)
}

/// Creates the collection (with its options) and its secondary indexes in
/// `main`; returns how many secondary indexes the source has.
pub async fn create_collection(
    client: &Client,
    wal: &Wal,
    c: &SourceCollection,
) -> Result<usize, ImportError> {
    let what = format!("listing the indexes of {}", c.ns);
    let indexes: Vec<Document> = client
        .database(&c.ns.db)
        .collection::<Document>(&c.ns.coll)
        .list_indexes()
        .await
        .map_err(source(what.clone()))?
        .with_type::<Document>()
        .try_collect()
        .await
        .map_err(source(what))?;
    let indexes: Vec<Document> = indexes
        .into_iter()
        .filter(|spec| spec.get_str("name").is_ok_and(|n| n != "_id_"))
        .map(|mut spec| {
            // Old servers name the namespace in each spec; it would be the source's.
            spec.remove("ns");
            spec
        })
        .collect();
    let count = indexes.len();
    let ns = c.ns.clone();
    let options = c.options.clone();
    written(
        wal.write(MAIN, move |state: &BranchState| {
            let existing = state.collection(&ns)?;
            let mut ops = Vec::new();
            if existing.is_none() {
                ops.push(DocOp::CreateCollection {
                    ns: ns.clone(),
                    options: options.clone(),
                });
            }
            for spec in &indexes {
                let same = existing
                    .as_ref()
                    .is_some_and(|c| c.indexes().iter().any(|i| i == spec));
                if !same {
                    ops.push(DocOp::CreateIndex {
                        ns: ns.clone(),
                        spec: spec.clone(),
                    });
                }
            }
            Ok::<_, WalError>((ops, ()))
        })
        .await,
    )?;
    Ok(count)
}

/// The documents of a source collection, read once.
pub async fn documents(
    client: &Client,
    c: &SourceCollection,
) -> Result<Cursor<RawDocumentBuf>, ImportError> {
    client
        .database(&c.ns.db)
        .collection::<RawDocumentBuf>(&c.ns.coll)
        .find(bson::doc! {})
        .await
        .map_err(source(format!("reading {}", c.ns)))
}

/// Reads the next batch from `cursor` and commits it into `main`; returns
/// how many documents it copied (0 at the end).
pub async fn copy_batch(
    cursor: &mut Cursor<RawDocumentBuf>,
    wal: &Wal,
    ns: &Namespace,
) -> Result<usize, ImportError> {
    let mut batch: Vec<(Bson, Document)> = Vec::new();
    let mut bytes = 0;
    while batch.len() < BATCH_DOCS && bytes < BATCH_BYTES {
        let Some(raw) = cursor
            .try_next()
            .await
            .map_err(source(format!("reading {ns}")))?
        else {
            break;
        };
        bytes += raw.as_bytes().len();
        let doc = Document::try_from(raw).map_err(|e| {
            ImportError::Invalid(format!("a document of {ns} is not valid BSON: {e}"))
        })?;
        let Some(id) = doc.get("_id").cloned() else {
            return Err(ImportError::Invalid(format!(
                "a document of {ns} has no _id"
            )));
        };
        batch.push((id, doc));
    }
    let n = batch.len();
    if n > 0 {
        commit_documents(wal, ns, batch).await?;
    }
    Ok(n)
}

/// Puts `docs` into `ns` of `main`, in as few commits as the engine's
/// memory budget allows (halving a batch it refuses as too large).
async fn commit_documents(
    wal: &Wal,
    ns: &Namespace,
    docs: Vec<(Bson, Document)>,
) -> Result<(), ImportError> {
    let docs = docs
        .into_iter()
        .map(|(id, doc)| match argon_wal::rawdoc::encode(&doc) {
            Ok(raw) => Ok((id, raw)),
            Err(e) => Err(ImportError::Invalid(format!("document {id} of {ns}: {e}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut todo = vec![Arc::new(docs)];
    while let Some(batch) = todo.pop() {
        let docs = Arc::clone(&batch);
        let target = ns.clone();
        let result = wal
            .write(MAIN, move |state: &BranchState| {
                let existing = state.collection(&target)?;
                let mut ops: Vec<DocOp> = Vec::new();
                for (id, doc) in docs.iter() {
                    let held = match &existing {
                        Some(c) => c.get(id)?,
                        None => None,
                    };
                    // Byte for byte: MongoDB keeps field order.
                    if held.is_none_or(|d| d.as_bytes() != doc.as_bytes()) {
                        ops.push(DocOp::Put {
                            ns: target.clone(),
                            id: id.clone(),
                            doc: doc.clone(),
                        });
                    }
                }
                Ok::<_, WalError>((ops, ()))
            })
            .await;
        match result {
            Err(WriteError::Wal(WalError::CommitTooLarge { .. })) if batch.len() > 1 => {
                let (left, right) = batch.split_at(batch.len() / 2);
                // Popped last-in first: the left half commits first, keeping source order.
                todo.push(Arc::new(right.to_vec()));
                todo.push(Arc::new(left.to_vec()));
            }
            Err(WriteError::Wal(WalError::CommitTooLarge { bytes, limit })) => {
                let id = batch
                    .first()
                    .map(|(id, _)| id.to_string())
                    .unwrap_or_default();
                return Err(ImportError::Invalid(format!(
                    "document {id} of {ns} is too large for one commit ({bytes} bytes logged, limit {limit})"
                )));
            }
            other => written(other)?,
        }
    }
    Ok(())
}
