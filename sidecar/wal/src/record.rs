//! What the log holds, and its one encoding as BSON documents.
//!
//! Both stores keep exactly these documents: the embedded store frames their
//! bytes in segment files, the mongodb store inserts them. A commit's
//! operations travel as one opaque BSON binary (`body`), so user documents
//! with field names MongoDB (or FerretDB) would refuse as stored fields
//! (`$`-prefixed, dotted) round-trip unchanged, and both stores hold the
//! same bytes.

use crate::error::{Result, WalError};
use crate::rawdoc;
use crate::retry::{RetryKey, RetryRecord};
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, Namespace, Seq};
use bson::raw::{RawArrayBuf, RawBsonRef, cstr};
use bson::{Bson, Document, RawDocument, RawDocumentBuf, doc, spec::BinarySubtype};

/// One physical, fully resolved change. Filters and update operators were
/// resolved by the writer; replay applies these as they are.
#[derive(Clone, Debug, PartialEq)]
pub enum DocOp {
    /// Insert or replace: `doc` is the full post-image, as BSON bytes
    /// (`rawdoc::encode` makes one from a `Document`).
    Put {
        ns: Namespace,
        id: Bson,
        doc: RawDocumentBuf,
    },
    Delete {
        ns: Namespace,
        id: Bson,
    },
    /// Idempotent on state: an existing collection keeps its options.
    CreateCollection {
        ns: Namespace,
        options: Document,
    },
    DropCollection {
        ns: Namespace,
    },
    DropDatabase {
        db: String,
    },
    /// `spec` has `name` and `key` (and `unique`…); replaces an index of the same name.
    CreateIndex {
        ns: Namespace,
        spec: Document,
    },
    DropIndex {
        ns: Namespace,
        name: String,
    },
    /// Moves `from` to `to`, replacing `to` if it exists.
    RenameCollection {
        from: Namespace,
        to: Namespace,
    },
}

/// An op as logged: `Put` and `Delete` also carry the document as it was
/// before (filled by the engine), for diff and audit. Replay ignores it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedOp {
    pub op: DocOp,
    pub pre_image: Option<RawDocumentBuf>,
}

/// Why an incarnation takes no more commits. A seal is an ordinary commit
/// (it takes the next seq), so a writer on another handle that has not yet
/// heard of the reset or delete loses the optimistic race for that seq,
/// catches up, sees the seal and moves on: no write lands on a dead
/// incarnation unnoticed.
#[derive(Clone, Debug, PartialEq)]
pub enum Seal {
    /// `request`: the caller's identity for this reset (an operator's
    /// `spec.reset`), so a retried request is recognised as applied.
    Reset {
        to: Seq,
        backup: Option<BranchName>,
        request: Option<String>,
    },
    Delete,
}

/// One commit: one record, so it is atomic.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    pub branch: BranchId,
    pub seq: Seq,
    pub time: CommitTime,
    pub actor: String,
    pub ops: Vec<LoggedOp>,
    pub seal: Option<Seal>,
    /// The retryable writes this commit applied, with their replies (see
    /// `retry`); a commit may hold several (group commit) or only these
    /// (a retryable write that changed nothing).
    pub retries: Vec<RetryRecord>,
}

impl Commit {
    pub fn info(&self) -> CommitInfo {
        CommitInfo {
            seq: self.seq,
            time: self.time,
        }
    }
}

/// A change to the project's branch catalog. The catalog is itself a log
/// numbered 1, 2, 3… with the same optimistic append as commits, so
/// concurrent branch operations from several handles are totally ordered.
#[derive(Clone, Debug, PartialEq)]
pub enum CatalogEvent {
    /// `main`: an incarnation with no parent.
    CreateRoot {
        id: BranchId,
        name: BranchName,
    },
    /// A branch forked from `parent` (an incarnation) at `fork_seq`, whose
    /// state there has time `fork_time`.
    CreateBranch {
        id: BranchId,
        name: BranchName,
        parent: BranchId,
        fork_seq: Seq,
        fork_time: CommitTime,
    },
    /// `name` now points at `id`, whose history is `previous` up to `to`;
    /// `previous` was sealed at `sealed_at`. An optional backup branch `backup`
    /// (id `backup_id`) forks from `previous` at `sealed_at`.
    Reset {
        name: BranchName,
        id: BranchId,
        previous: BranchId,
        to: Seq,
        sealed_at: CommitInfo,
        backup: Option<(BranchName, BranchId)>,
        /// The seal's `request` (see `Seal::Reset`).
        request: Option<String>,
    },
    Delete {
        name: BranchName,
        id: BranchId,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct CatalogRecord {
    pub seq: Seq,
    pub time: CommitTime,
    pub event: CatalogEvent,
}

/// The project record: written once, when the project is first opened.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectRecord {
    pub name: String,
    pub created: CommitTime,
}

/// A stored snapshot of materialized state (bytes from `snapshot.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotRecord {
    pub branch: BranchId,
    pub seq: Seq,
    pub bytes: Vec<u8>,
}

// ---- encoding ----------------------------------------------------------------

fn seq_to_bson(s: Seq) -> Bson {
    Bson::Int64(s.0 as i64)
}

pub(crate) fn get_i64(d: &Document, what: &'static str, key: &str) -> Result<i64> {
    match d.get(key) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(other) => Err(WalError::malformed(
            what,
            format!("field {key} is {:?}, not an integer", other.element_type()),
        )),
        None => Err(WalError::malformed(what, format!("field {key} is missing"))),
    }
}

pub(crate) fn get_u64(d: &Document, what: &'static str, key: &str) -> Result<u64> {
    let v = get_i64(d, what, key)?;
    u64::try_from(v).map_err(|_| WalError::malformed(what, format!("field {key} is negative")))
}

fn get_seq(d: &Document, what: &'static str, key: &str) -> Result<Seq> {
    get_u64(d, what, key).map(Seq)
}

fn get_str<'a>(d: &'a Document, what: &'static str, key: &str) -> Result<&'a str> {
    d.get_str(key)
        .map_err(|e| WalError::malformed(what, format!("field {key}: {e}")))
}

fn get_doc<'a>(d: &'a Document, what: &'static str, key: &str) -> Result<&'a Document> {
    d.get_document(key)
        .map_err(|e| WalError::malformed(what, format!("field {key}: {e}")))
}

fn get_name(d: &Document, what: &'static str, key: &str) -> Result<BranchName> {
    BranchName::parse(get_str(d, what, key)?)
        .map_err(|e| WalError::malformed(what, format!("field {key}: {e}")))
}

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

fn ns_doc(ns: &Namespace) -> (Bson, Bson) {
    (Bson::String(ns.db.clone()), Bson::String(ns.coll.clone()))
}

/// The elements of a small record document, read once (`RawDocument::get`
/// walks the document again for every field it is asked for).
fn raw_fields<'a>(
    d: &'a RawDocument,
    what: &'static str,
) -> Result<Vec<(&'a str, RawBsonRef<'a>)>> {
    d.iter()
        .map(|el| el.map(|(k, v)| (k.as_str(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| WalError::malformed(what, format!("bad field: {e}")))
}

/// Encodes one op. User documents (`doc`, `pre`) are appended as the bytes
/// they already are; only the small metadata goes through `Document`.
fn op_to_raw(op: &LoggedOp) -> Result<RawDocumentBuf> {
    let (meta, doc) = match &op.op {
        DocOp::Put { ns, id, doc } => {
            let (db, coll) = ns_doc(ns);
            (
                doc! {"op": "put", "db": db, "coll": coll, "id": id.clone()},
                Some(doc),
            )
        }
        DocOp::Delete { ns, id } => {
            let (db, coll) = ns_doc(ns);
            (
                doc! {"op": "delete", "db": db, "coll": coll, "id": id.clone()},
                None,
            )
        }
        DocOp::CreateCollection { ns, options } => {
            let (db, coll) = ns_doc(ns);
            (
                doc! {"op": "createCollection", "db": db, "coll": coll, "options": options.clone()},
                None,
            )
        }
        DocOp::DropCollection { ns } => {
            let (db, coll) = ns_doc(ns);
            (doc! {"op": "dropCollection", "db": db, "coll": coll}, None)
        }
        DocOp::DropDatabase { db } => (doc! {"op": "dropDatabase", "db": db.clone()}, None),
        DocOp::CreateIndex { ns, spec } => {
            let (db, coll) = ns_doc(ns);
            (
                doc! {"op": "createIndex", "db": db, "coll": coll, "spec": spec.clone()},
                None,
            )
        }
        DocOp::DropIndex { ns, name } => {
            let (db, coll) = ns_doc(ns);
            (
                doc! {"op": "dropIndex", "db": db, "coll": coll, "name": name.clone()},
                None,
            )
        }
        DocOp::RenameCollection { from, to } => {
            let (db, coll) = ns_doc(from);
            let (to_db, to_coll) = ns_doc(to);
            (
                doc! {"op": "renameCollection", "db": db, "coll": coll, "toDb": to_db, "toColl": to_coll},
                None,
            )
        }
    };
    let mut out = RawDocumentBuf::try_from(&meta)
        .map_err(|e| WalError::malformed("commit op", format!("cannot encode: {e}")))?;
    if let Some(d) = doc {
        out.append(cstr!("doc"), d);
    }
    if let Some(pre) = &op.pre_image {
        out.append(cstr!("pre"), pre);
    }
    Ok(out)
}

/// Decodes one op, copying its documents' bytes (no parse: replay decodes
/// every commit it folds).
fn op_from_raw(d: &RawDocument) -> Result<LoggedOp> {
    const W: &str = "commit op";
    let fields = raw_fields(d, W)?;
    let field = |k: &str| -> Result<Option<RawBsonRef<'_>>> {
        Ok(fields.iter().find(|(name, _)| *name == k).map(|(_, v)| *v))
    };
    let raw_doc = |k: &str| -> Result<Option<&RawDocument>> {
        match field(k)? {
            Some(RawBsonRef::Document(v)) => Ok(Some(v)),
            Some(_) => Err(WalError::malformed(
                W,
                format!("field {k} is not a document"),
            )),
            None => Ok(None),
        }
    };
    let need_doc = |k: &str| {
        raw_doc(k)?.ok_or_else(|| WalError::malformed(W, format!("field {k} is missing")))
    };
    let parsed = |k: &str| -> Result<Document> {
        let v = need_doc(k)?;
        Document::try_from(v).map_err(|e| WalError::malformed(W, format!("field {k}: {e}")))
    };
    let string = |k: &str| -> Result<String> {
        match field(k)? {
            Some(RawBsonRef::String(v)) => Ok(v.to_string()),
            Some(_) => Err(WalError::malformed(W, format!("field {k} is not a string"))),
            None => Err(WalError::malformed(W, format!("field {k} is missing"))),
        }
    };
    let ns = |db: &str, coll: &str| -> Result<Namespace> {
        Ok(Namespace::new(string(db)?, string(coll)?))
    };
    let id = || -> Result<Bson> {
        let v = field("id")?.ok_or_else(|| WalError::malformed(W, "field id is missing"))?;
        Bson::try_from(v).map_err(|e| WalError::malformed(W, format!("field id: {e}")))
    };
    // Copied, not walked: replay never reads a pre-image, and diff and
    // audit parse it leniently (`rawdoc::parse`).
    let pre_image = raw_doc("pre")?.map(ToOwned::to_owned);
    let kind = string("op")?;
    let op = match kind.as_str() {
        "put" => DocOp::Put {
            ns: ns("db", "coll")?,
            id: id()?,
            doc: rawdoc::owned(need_doc("doc")?, W)?,
        },
        "delete" => DocOp::Delete {
            ns: ns("db", "coll")?,
            id: id()?,
        },
        "createCollection" => DocOp::CreateCollection {
            ns: ns("db", "coll")?,
            options: parsed("options")?,
        },
        "dropCollection" => DocOp::DropCollection {
            ns: ns("db", "coll")?,
        },
        "dropDatabase" => DocOp::DropDatabase { db: string("db")? },
        "createIndex" => DocOp::CreateIndex {
            ns: ns("db", "coll")?,
            spec: parsed("spec")?,
        },
        "dropIndex" => DocOp::DropIndex {
            ns: ns("db", "coll")?,
            name: string("name")?,
        },
        "renameCollection" => DocOp::RenameCollection {
            from: ns("db", "coll")?,
            to: ns("toDb", "toColl")?,
        },
        other => return Err(WalError::malformed(W, format!("unknown op {other:?}"))),
    };
    Ok(LoggedOp { op, pre_image })
}

fn seal_to_doc(seal: &Seal) -> Document {
    match seal {
        Seal::Reset {
            to,
            backup,
            request,
        } => {
            let mut d = doc! {"kind": "reset", "to": seq_to_bson(*to)};
            if let Some(b) = backup {
                d.insert("backup", b.as_str());
            }
            if let Some(r) = request {
                d.insert("request", r.as_str());
            }
            d
        }
        Seal::Delete => doc! {"kind": "delete"},
    }
}

fn seal_from_doc(d: &Document) -> Result<Seal> {
    const W: &str = "seal";
    match get_str(d, W, "kind")? {
        "reset" => Ok(Seal::Reset {
            to: get_seq(d, W, "to")?,
            backup: match d.get("backup") {
                Some(_) => Some(get_name(d, W, "backup")?),
                None => None,
            },
            request: match d.get("request") {
                Some(_) => Some(get_str(d, W, "request")?.to_string()),
                None => None,
            },
        }),
        "delete" => Ok(Seal::Delete),
        other => Err(WalError::malformed(W, format!("unknown seal {other:?}"))),
    }
}

/// Encodes a commit as the document both stores keep:
/// `{k: "commit", project, branch, seq, time, actor, nops, body: <binary BSON {ops, seal?}>}`.
pub fn commit_to_doc(project: &str, c: &Commit) -> Result<Document> {
    let mut ops = RawArrayBuf::new();
    for o in &c.ops {
        ops.push(op_to_raw(o)?);
    }
    let mut body = RawDocumentBuf::new();
    body.append(cstr!("ops"), ops);
    if let Some(seal) = &c.seal {
        let seal = RawDocumentBuf::try_from(&seal_to_doc(seal))
            .map_err(|e| WalError::malformed("commit", format!("cannot encode: {e}")))?;
        body.append(cstr!("seal"), seal);
    }
    if !c.retries.is_empty() {
        let mut retries = RawArrayBuf::new();
        for r in &c.retries {
            retries.push(retry_to_raw(r));
        }
        body.append(cstr!("retries"), retries);
    }
    let body_bytes = body.into_bytes();
    Ok(doc! {
        "k": "commit",
        "project": project,
        "branch": c.branch.0 as i64,
        "seq": seq_to_bson(c.seq),
        "time": c.time.0,
        "actor": c.actor.as_str(),
        "nops": c.ops.len() as i64,
        "bytes": body_bytes.len() as i64,
        "body": binary(body_bytes),
    })
}

pub fn commit_from_doc(d: &Document) -> Result<Commit> {
    let raw = RawDocumentBuf::try_from(d)
        .map_err(|e| WalError::malformed("commit", format!("cannot encode: {e}")))?;
    commit_from_raw(&raw)
}

/// Decodes a commit from its stored bytes without parsing it into a
/// `Document` (replay decodes every commit it folds).
pub fn commit_from_raw(d: &RawDocument) -> Result<Commit> {
    const W: &str = "commit";
    let fields = raw_fields(d, W)?;
    let field = |k: &str| {
        fields
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| *v)
            .ok_or_else(|| WalError::malformed(W, format!("field {k} is missing")))
    };
    let int = |k: &str| -> Result<i64> {
        match field(k)? {
            RawBsonRef::Int64(v) => Ok(v),
            RawBsonRef::Int32(v) => Ok(i64::from(v)),
            other => Err(WalError::malformed(
                W,
                format!("field {k} is {:?}, not an integer", other.element_type()),
            )),
        }
    };
    let uint = |k: &str| -> Result<u64> {
        u64::try_from(int(k)?).map_err(|_| WalError::malformed(W, format!("field {k} is negative")))
    };
    let body_bytes = match field("body")? {
        RawBsonRef::Binary(b) => b.bytes,
        _ => return Err(WalError::malformed(W, "field body is not binary")),
    };
    let actor = match field("actor")? {
        RawBsonRef::String(s) => s.to_string(),
        _ => return Err(WalError::malformed(W, "field actor is not a string")),
    };
    let body = RawDocument::from_bytes(body_bytes)
        .map_err(|e| WalError::malformed(W, format!("body is not BSON: {e}")))?;
    let ops = match body.get("ops") {
        Ok(Some(RawBsonRef::Array(ops))) => ops,
        Ok(Some(_)) => return Err(WalError::malformed(W, "field ops is not an array")),
        Ok(None) => return Err(WalError::malformed(W, "field ops is missing")),
        Err(e) => return Err(WalError::malformed(W, format!("body: {e}"))),
    };
    let ops = ops
        .into_iter()
        .map(|o| match o {
            Ok(RawBsonRef::Document(od)) => op_from_raw(od),
            Ok(_) => Err(WalError::malformed(W, "an op is not a document")),
            Err(e) => Err(WalError::malformed(W, format!("ops: {e}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let seal = match body.get("seal") {
        Ok(Some(RawBsonRef::Document(s))) => {
            let s = Document::try_from(s)
                .map_err(|e| WalError::malformed(W, format!("field seal: {e}")))?;
            Some(seal_from_doc(&s)?)
        }
        Ok(Some(_)) => return Err(WalError::malformed(W, "field seal is not a document")),
        Ok(None) => None,
        Err(e) => return Err(WalError::malformed(W, format!("body: {e}"))),
    };
    let retries = match body.get("retries") {
        Ok(Some(RawBsonRef::Array(a))) => a
            .into_iter()
            .map(|r| match r {
                Ok(RawBsonRef::Document(r)) => retry_from_raw(r),
                Ok(_) => Err(WalError::malformed(W, "a retry record is not a document")),
                Err(e) => Err(WalError::malformed(W, format!("retries: {e}"))),
            })
            .collect::<Result<Vec<_>>>()?,
        Ok(Some(_)) => return Err(WalError::malformed(W, "field retries is not an array")),
        Ok(None) => Vec::new(),
        Err(e) => return Err(WalError::malformed(W, format!("body: {e}"))),
    };
    Ok(Commit {
        branch: BranchId(uint("branch")?),
        seq: Seq(uint("seq")?),
        time: CommitTime(int("time")?),
        actor,
        ops,
        seal,
        retries,
    })
}

/// `{s: <session bytes>, t: <txnNumber>, r: <reply>}`, `r` absent when the
/// reply was too large to log.
fn retry_to_raw(r: &RetryRecord) -> RawDocumentBuf {
    let mut d = RawDocumentBuf::new();
    d.append(
        cstr!("s"),
        bson::raw::RawBinaryRef {
            subtype: BinarySubtype::Generic,
            bytes: &r.key.session,
        },
    );
    d.append(cstr!("t"), r.key.txn_number);
    if let Some(reply) = &r.reply {
        d.append(cstr!("r"), reply.clone());
    }
    d
}

fn retry_from_raw(d: &RawDocument) -> Result<RetryRecord> {
    const W: &str = "retry";
    let session = match d.get("s") {
        Ok(Some(RawBsonRef::Binary(b))) => b.bytes.to_vec(),
        _ => return Err(WalError::malformed(W, "field s is not binary")),
    };
    let txn_number = match d.get("t") {
        Ok(Some(RawBsonRef::Int64(t))) => t,
        _ => return Err(WalError::malformed(W, "field t is not a long")),
    };
    let reply = match d.get("r") {
        Ok(Some(RawBsonRef::Document(r))) => Some(r.to_owned()),
        Ok(None) => None,
        _ => return Err(WalError::malformed(W, "field r is not a document")),
    };
    Ok(RetryRecord {
        key: RetryKey {
            session,
            txn_number,
        },
        reply,
    })
}

fn event_to_doc(e: &CatalogEvent) -> Document {
    match e {
        CatalogEvent::CreateRoot { id, name } => {
            doc! {"kind": "createRoot", "id": id.0 as i64, "name": name.as_str()}
        }
        CatalogEvent::CreateBranch {
            id,
            name,
            parent,
            fork_seq,
            fork_time,
        } => doc! {
            "kind": "createBranch", "id": id.0 as i64, "name": name.as_str(),
            "parent": parent.0 as i64, "forkSeq": seq_to_bson(*fork_seq), "forkTime": fork_time.0,
        },
        CatalogEvent::Reset {
            name,
            id,
            previous,
            to,
            sealed_at,
            backup,
            request,
        } => {
            let mut d = doc! {
                "kind": "reset", "id": id.0 as i64, "name": name.as_str(),
                "previous": previous.0 as i64, "to": seq_to_bson(*to),
                "sealedSeq": seq_to_bson(sealed_at.seq), "sealedTime": sealed_at.time.0,
            };
            if let Some((bname, bid)) = backup {
                d.insert("backupName", bname.as_str());
                d.insert("backupId", bid.0 as i64);
            }
            if let Some(r) = request {
                d.insert("request", r.as_str());
            }
            d
        }
        CatalogEvent::Delete { name, id } => {
            doc! {"kind": "delete", "id": id.0 as i64, "name": name.as_str()}
        }
    }
}

fn event_from_doc(d: &Document) -> Result<CatalogEvent> {
    const W: &str = "catalog event";
    let id = BranchId(get_u64(d, W, "id")?);
    let name = get_name(d, W, "name")?;
    Ok(match get_str(d, W, "kind")? {
        "createRoot" => CatalogEvent::CreateRoot { id, name },
        "createBranch" => CatalogEvent::CreateBranch {
            id,
            name,
            parent: BranchId(get_u64(d, W, "parent")?),
            fork_seq: get_seq(d, W, "forkSeq")?,
            fork_time: CommitTime(get_i64(d, W, "forkTime")?),
        },
        "reset" => CatalogEvent::Reset {
            name,
            id,
            previous: BranchId(get_u64(d, W, "previous")?),
            to: get_seq(d, W, "to")?,
            sealed_at: CommitInfo {
                seq: get_seq(d, W, "sealedSeq")?,
                time: CommitTime(get_i64(d, W, "sealedTime")?),
            },
            backup: match d.get("backupName") {
                Some(_) => Some((
                    get_name(d, W, "backupName")?,
                    BranchId(get_u64(d, W, "backupId")?),
                )),
                None => None,
            },
            request: match d.get("request") {
                Some(_) => Some(get_str(d, W, "request")?.to_string()),
                None => None,
            },
        },
        "delete" => CatalogEvent::Delete { name, id },
        other => return Err(WalError::malformed(W, format!("unknown kind {other:?}"))),
    })
}

/// `{k: "catalog", project, seq, time, event: {...}}`
pub fn catalog_to_doc(project: &str, r: &CatalogRecord) -> Document {
    doc! {
        "k": "catalog",
        "project": project,
        "seq": seq_to_bson(r.seq),
        "time": r.time.0,
        "event": event_to_doc(&r.event),
    }
}

pub fn catalog_from_doc(d: &Document) -> Result<CatalogRecord> {
    const W: &str = "catalog";
    Ok(CatalogRecord {
        seq: get_seq(d, W, "seq")?,
        time: CommitTime(get_i64(d, W, "time")?),
        event: event_from_doc(get_doc(d, W, "event")?)?,
    })
}

/// `{k: "project", name, created}`
pub fn project_to_doc(p: &ProjectRecord) -> Document {
    doc! {"k": "project", "name": p.name.as_str(), "created": p.created.0}
}

pub fn project_from_doc(d: &Document) -> Result<ProjectRecord> {
    const W: &str = "project";
    Ok(ProjectRecord {
        name: get_str(d, W, "name")?.to_string(),
        created: CommitTime(get_i64(d, W, "created")?),
    })
}

/// The record kind tag (`k`) of an encoded record.
pub fn kind_of(d: &Document) -> Result<&str> {
    get_str(d, "record", "k")
}

pub(crate) fn project_of(d: &Document) -> Result<&str> {
    get_str(d, "record", "project")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_round_trips_with_odd_field_names() {
        let c = Commit {
            branch: BranchId(4),
            seq: Seq(7),
            time: CommitTime(1234),
            actor: "t".into(),
            ops: vec![
                LoggedOp {
                    op: DocOp::Put {
                        ns: Namespace::new("db", "c"),
                        id: Bson::Int32(1),
                        doc: crate::rawdoc::encode(&doc! {"_id": 1, "$weird": {"a.b": 1}}).unwrap(),
                    },
                    pre_image: Some(crate::rawdoc::encode(&doc! {"_id": 1}).unwrap()),
                },
                LoggedOp {
                    op: DocOp::RenameCollection {
                        from: Namespace::new("db", "c"),
                        to: Namespace::new("db2", "d"),
                    },
                    pre_image: None,
                },
            ],
            seal: Some(Seal::Reset {
                to: Seq(3),
                backup: Some(BranchName::parse("bk").unwrap()),
                request: Some("uid/abc".into()),
            }),
            retries: vec![
                RetryRecord {
                    key: RetryKey {
                        session: vec![1, 2, 3],
                        txn_number: 9,
                    },
                    reply: Some(crate::rawdoc::encode(&doc! {"n": 1, "$odd.name": 2}).unwrap()),
                },
                RetryRecord {
                    key: RetryKey {
                        session: vec![],
                        txn_number: -1,
                    },
                    reply: None,
                },
            ],
        };
        let d = commit_to_doc("p", &c).unwrap();
        assert_eq!(commit_from_doc(&d).unwrap(), c);
    }
}
