//! What the log holds, and its one encoding as BSON documents.
//!
//! Both stores keep exactly these documents: the embedded store frames their
//! bytes in segment files, the mongodb store inserts them. A commit's
//! operations travel as one opaque BSON binary (`body`), so user documents
//! with field names MongoDB (or FerretDB) would refuse as stored fields
//! (`$`-prefixed, dotted) round-trip unchanged, and both stores hold the
//! same bytes. A commit whose body is larger than [`INLINE_BODY_BYTES`] is
//! stored as chunk records plus a commit record naming them
//! ([`EncodedCommit`]; see "large commits" below).

use crate::error::{Result, WalError};
use crate::rawdoc;
use crate::retry::{RetryKey, RetryRecord};
use crate::types::{BranchId, BranchName, CommitInfo, CommitTime, Namespace, Seq};
use bson::oid::ObjectId;
use bson::raw::{RawBsonRef, cstr};
use bson::{Bson, Document, RawDocument, RawDocumentBuf, doc, spec::BinarySubtype};
use std::sync::Arc;

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
    /// Replaces the options of an existing collection (`collMod`: its
    /// validator...); a no-op when the collection does not exist.
    SetCollectionOptions {
        ns: Namespace,
        options: Document,
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

/// One commit: atomic whether it is stored as one record or as chunk
/// records and the commit record that names them (see [`EncodedCommit`]).
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
    /// Users and protected branches: project-level, not branch data.
    Access(crate::access::AccessEvent),
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

/// The op's metadata (everything but its documents) as a small document.
fn op_meta(op: &DocOp) -> (Document, Option<&RawDocumentBuf>) {
    match op {
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
        DocOp::SetCollectionOptions { ns, options } => {
            let (db, coll) = ns_doc(ns);
            (
                doc! {"op": "setCollectionOptions", "db": db, "coll": coll, "options": options.clone()},
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
    }
}

// ---- BSON written straight into one buffer --------------------------------------
//
// A commit body is built in one `Vec`: each op's documents are appended as
// the bytes they already are, without an intermediate document per op or
// per array (a `RawArrayBuf` pushed into a `RawDocumentBuf` would copy the
// whole body once more).

const ELEMENT_DOCUMENT: u8 = 0x03;
const ELEMENT_ARRAY: u8 = 0x04;

/// Opens a document (or array) at the end of `out`; `end_doc` closes it.
fn begin_doc(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    start
}

/// Closes the document opened at `start`, writing its length.
fn end_doc(out: &mut Vec<u8>, start: usize) -> Result<()> {
    out.push(0);
    let len = i32::try_from(out.len() - start).map_err(|_| {
        WalError::malformed(
            "commit",
            format!("{} bytes cannot be one BSON document", out.len() - start),
        )
    })?;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// An element header: its type byte and its name (no NUL in `key`).
fn element(out: &mut Vec<u8>, kind: u8, key: &str) {
    out.push(kind);
    out.extend_from_slice(key.as_bytes());
    out.push(0);
}

/// The elements of an encoded document (without its length and terminator).
fn elements_of(d: &RawDocument) -> &[u8] {
    let b = d.as_bytes();
    &b[4..b.len() - 1]
}

/// Writes one op as a document at the end of `out`. User documents (`doc`,
/// `pre`) are appended as the bytes they already are; only the small
/// metadata goes through `Document`.
fn write_op(op: &LoggedOp, out: &mut Vec<u8>) -> Result<()> {
    let (meta, doc) = op_meta(&op.op);
    let meta = RawDocumentBuf::try_from(&meta)
        .map_err(|e| WalError::malformed("commit op", format!("cannot encode: {e}")))?;
    let start = begin_doc(out);
    out.extend_from_slice(elements_of(&meta));
    if let Some(d) = doc {
        element(out, ELEMENT_DOCUMENT, "doc");
        out.extend_from_slice(d.as_bytes());
    }
    if let Some(pre) = &op.pre_image {
        element(out, ELEMENT_DOCUMENT, "pre");
        out.extend_from_slice(pre.as_bytes());
    }
    end_doc(out, start)
}

/// Bytes `write_op` will take for `op`, near enough to size the buffer
/// once (so a large body is never reallocated and copied as it grows).
fn op_size_hint(op: &LoggedOp) -> usize {
    let doc = match &op.op {
        DocOp::Put { doc, .. } => doc.as_bytes().len(),
        _ => 0,
    };
    doc + op.pre_image.as_ref().map_or(0, |p| p.as_bytes().len()) + 128
}

/// Bytes a retry record takes in the body, near enough (its reply, its
/// session id, field names and the array index). Without it a retryable
/// write's small body outgrew its buffer, which then doubled: the body held
/// ~2× its length for as long as it lived (the feed keeps 32 MiB of bodies
/// per branch, so ~64 MiB in fact).
fn retry_size_hint(r: &RetryRecord) -> usize {
    r.key.session.len() + r.reply.as_ref().map_or(0, |d| d.as_bytes().len()) + 64
}

/// Bytes a seal takes in the body (a reset names a target, a backup
/// branch and a request id), near enough.
const SEAL_SIZE_HINT: usize = 512;

/// The body `{ops: [...], seal?, retries?}`: one BSON document. Takes the
/// ops by value and drops each once written, so encoding moves a commit's
/// documents into the body instead of holding them twice.
fn encode_body<I, B>(
    ops: I,
    hint: usize,
    seal: Option<&Seal>,
    retries: &[RetryRecord],
) -> Result<(Vec<u8>, usize)>
where
    I: IntoIterator<Item = B>,
    B: std::borrow::Borrow<LoggedOp>,
{
    let mut out = Vec::with_capacity(hint + 64);
    let start = begin_doc(&mut out);
    element(&mut out, ELEMENT_ARRAY, "ops");
    let array = begin_doc(&mut out);
    let mut n = 0usize;
    for op in ops {
        element(&mut out, ELEMENT_DOCUMENT, &n.to_string());
        write_op(op.borrow(), &mut out)?;
        n += 1;
    }
    end_doc(&mut out, array)?;
    if let Some(seal) = seal {
        let seal = RawDocumentBuf::try_from(&seal_to_doc(seal))
            .map_err(|e| WalError::malformed("commit", format!("cannot encode: {e}")))?;
        element(&mut out, ELEMENT_DOCUMENT, "seal");
        out.extend_from_slice(seal.as_bytes());
    }
    if !retries.is_empty() {
        element(&mut out, ELEMENT_ARRAY, "retries");
        let array = begin_doc(&mut out);
        for (i, r) in retries.iter().enumerate() {
            element(&mut out, ELEMENT_DOCUMENT, &i.to_string());
            out.extend_from_slice(retry_to_raw(r).as_bytes());
        }
        end_doc(&mut out, array)?;
    }
    end_doc(&mut out, start)?;
    Ok((out, n))
}

/// Decodes one op, copying its documents' bytes (no parse: replay decodes
/// every commit it folds).
fn op_from_raw(d: &RawDocument, pre_images: bool) -> Result<LoggedOp> {
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
    // Copied, not walked: diff and audit parse it leniently
    // (`rawdoc::parse`); replay never reads one, so it skips them.
    let pre_image = match pre_images {
        true => raw_doc("pre")?.map(ToOwned::to_owned),
        false => None,
    };
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
        "setCollectionOptions" => DocOp::SetCollectionOptions {
            ns: ns("db", "coll")?,
            options: parsed("options")?,
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

/// Encodes a commit as one record, its body inline:
/// `{k: "commit", project, branch, seq, time, actor, nops, bytes, body: <binary BSON {ops, seal?, retries?}>}`.
/// Every commit of a log written before chunk records is in this form, and
/// so is every commit whose body is at most [`INLINE_BODY_BYTES`]
/// ([`EncodedCommit`] decides).
pub fn commit_to_doc(project: &str, c: &Commit) -> Result<Document> {
    let hint = c.ops.iter().map(op_size_hint).sum();
    let (body_bytes, nops) = encode_body(&c.ops, hint, c.seal.as_ref(), &c.retries)?;
    Ok(doc! {
        "k": "commit",
        "project": project,
        "branch": c.branch.0 as i64,
        "seq": seq_to_bson(c.seq),
        "time": c.time.0,
        "actor": c.actor.as_str(),
        "nops": nops as i64,
        "bytes": body_bytes.len() as i64,
        "body": binary(body_bytes),
    })
}

pub fn commit_from_doc(d: &Document) -> Result<Commit> {
    let raw = RawDocumentBuf::try_from(d)
        .map_err(|e| WalError::malformed("commit", format!("cannot encode: {e}")))?;
    commit_from_raw(&raw)
}

/// Decodes a commit record whose body is inline, pre-images included
/// (a chunked one is read through its store, which reassembles the body).
pub fn commit_from_raw(d: &RawDocument) -> Result<Commit> {
    let rec = commit_record(d)?;
    match rec.body {
        StoredBody::Inline(body) => decode_commit(&rec, body, true),
        StoredBody::Chunked(_) => Err(WalError::malformed(
            "commit",
            "its body is in chunk records; read it through its store",
        )),
    }
}

// ---- large commits: chunk records --------------------------------------------
//
// A commit is one record unless its body is larger than
// [`INLINE_BODY_BYTES`]: then the body is cut into byte chunks of
// [`CHUNK_BYTES`], each stored as a chunk record
// `{k: "chunk", project, branch, seq, writer, n, data: <binary>}`, and the
// commit record carries `chunks: {writer, count, size, crc}` instead of
// `body`. Chunks are cut from the encoded body, not from ops, so every
// record stays under MongoDB's 16 MiB whatever the documents (a 16 MiB
// document and its 16 MiB pre-image span several chunks).
//
// Invariants (the stores keep them; see `store/embedded.rs`, `store/mongo.rs`):
// - A commit record is written only after all its chunk records are
//   durable, and a reader reads chunks only through a commit record that
//   names them: so readers and tailers see a whole commit or nothing.
// - `writer` is unique per append attempt (a fresh `ObjectId`), and the
//   commit record names it: the chunks of a writer that lost the race for
//   a seq can never be taken for the winner's, even at the same seq.
// - The seq is still claimed by the commit record alone (the stores'
//   uniqueness on `(project, branch, seq)`), once.

/// A commit body above this many bytes is stored in chunk records. Small
/// enough that the commits collection stays small (every catch-up queries
/// it), large enough that ordinary commits take one record.
pub const INLINE_BODY_BYTES: usize = 1 << 20;

/// Bytes of body per chunk record: with its metadata, far under MongoDB's
/// 16 MiB document limit.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Largest body a commit record may claim (a BSON document is at most
/// `i32::MAX` bytes); a claim above it is a damaged record.
const MAX_BODY_BYTES: u64 = i32::MAX as u64;

/// The chunk set a commit record names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    /// Unique per append attempt: whose chunks these are.
    pub writer: ObjectId,
    pub count: u32,
    /// Bytes of every chunk but the last (which holds the rest).
    pub size: u32,
    /// Bytes of the whole body.
    pub bytes: u64,
    /// CRC32C of the whole body: a reassembly from the wrong chunks fails.
    pub crc: u32,
}

impl ChunkRef {
    /// Bytes chunk `n` holds.
    pub fn len_of(&self, n: u32) -> u64 {
        if n + 1 < self.count {
            u64::from(self.size)
        } else {
            self.bytes - u64::from(self.size) * u64::from(self.count - 1)
        }
    }

    fn check(&self) -> Result<()> {
        let ok = self.count > 0
            && self.size > 0
            && self.bytes <= MAX_BODY_BYTES
            && self.bytes > u64::from(self.size) * u64::from(self.count - 1)
            && self.bytes <= u64::from(self.size) * u64::from(self.count);
        if ok {
            Ok(())
        } else {
            Err(WalError::malformed(
                "commit",
                format!("impossible chunk set {self:?}"),
            ))
        }
    }

    fn to_doc(&self) -> Document {
        doc! {
            "writer": self.writer,
            "count": i64::from(self.count),
            "size": i64::from(self.size),
            "bytes": self.bytes as i64,
            "crc": i64::from(self.crc),
        }
    }
}

/// A commit encoded for a store: its body built once (the ops are moved
/// into it), the commit record, and, when the body is large, the chunk
/// records that hold it.
#[derive(Clone, Debug)]
pub struct EncodedCommit {
    pub branch: BranchId,
    pub seq: Seq,
    pub time: CommitTime,
    actor: String,
    nops: usize,
    /// Shared, not copied, with a store's writer thread.
    body: Arc<Vec<u8>>,
    chunks: Option<ChunkRef>,
}

impl EncodedCommit {
    /// Encodes `c`, consuming its ops as their bytes are written into the body.
    pub fn new(c: Commit) -> Result<EncodedCommit> {
        Self::with_sizes(c, INLINE_BODY_BYTES, CHUNK_BYTES)
    }

    /// [`new`](Self::new) with other thresholds (tests cut small bodies).
    pub fn with_sizes(c: Commit, inline: usize, chunk: usize) -> Result<EncodedCommit> {
        let Commit {
            branch,
            seq,
            time,
            actor,
            ops,
            seal,
            retries,
        } = c;
        let hint = ops.iter().map(op_size_hint).sum::<usize>()
            + retries.iter().map(retry_size_hint).sum::<usize>()
            + seal.as_ref().map_or(0, |_| SEAL_SIZE_HINT);
        let (body, nops) = encode_body(ops, hint, seal.as_ref(), &retries)?;
        let chunks = (body.len() > inline).then(|| {
            let size = chunk.clamp(1, u32::MAX as usize);
            ChunkRef {
                writer: ObjectId::new(),
                count: body.len().div_ceil(size) as u32,
                size: size as u32,
                bytes: body.len() as u64,
                crc: crc32c::crc32c(&body),
            }
        });
        Ok(EncodedCommit {
            branch,
            seq,
            time,
            actor,
            nops,
            body: Arc::new(body),
            chunks,
        })
    }

    pub fn info(&self) -> CommitInfo {
        CommitInfo {
            seq: self.seq,
            time: self.time,
        }
    }

    /// Bytes of the encoded body (ops, pre-images, seal, retry records).
    pub fn body_len(&self) -> usize {
        self.body.len()
    }

    /// The chunk set, when the body is stored in chunk records.
    pub fn chunks(&self) -> Option<&ChunkRef> {
        self.chunks.as_ref()
    }

    /// The commit record: the body inline, or the chunk set it names.
    pub fn record(&self, project: &str) -> Result<RawDocumentBuf> {
        let mut d = doc! {
            "k": "commit",
            "project": project,
            "branch": self.branch.0 as i64,
            "seq": seq_to_bson(self.seq),
            "time": self.time.0,
            "actor": self.actor.as_str(),
            "nops": self.nops as i64,
            "bytes": self.body.len() as i64,
        };
        if let Some(c) = &self.chunks {
            d.insert("chunks", c.to_doc());
        }
        let mut raw = RawDocumentBuf::try_from(&d)
            .map_err(|e| WalError::malformed("commit", format!("cannot encode: {e}")))?;
        if self.chunks.is_none() {
            raw.append(
                cstr!("body"),
                bson::raw::RawBinaryRef {
                    subtype: BinarySubtype::Generic,
                    bytes: self.body.as_slice(),
                },
            );
        }
        Ok(raw)
    }

    /// The commit back from its body, as a reader of the log decodes it
    /// (pre-images left out): what the materialized store applies.
    pub fn decode(&self) -> Result<Commit> {
        let rec = CommitRecord {
            project: "",
            branch: self.branch,
            seq: self.seq,
            time: self.time,
            actor: &self.actor,
            body: StoredBody::Inline(&self.body),
        };
        decode_commit(&rec, &self.body, false)
    }

    /// The body bytes chunk `n` holds.
    pub fn chunk(&self, n: u32) -> &[u8] {
        &self.body[self.chunk_range(n)]
    }

    /// Where chunk `n` lies in [`body`](Self::body) (empty if there is none).
    pub fn chunk_range(&self, n: u32) -> std::ops::Range<usize> {
        match &self.chunks {
            Some(c) if n < c.count => {
                let start = n as usize * c.size as usize;
                start..(start + c.size as usize).min(self.body.len())
            }
            _ => 0..0,
        }
    }

    /// The encoded body, shared (a store thread may hold it while writing).
    pub fn body(&self) -> &Arc<Vec<u8>> {
        &self.body
    }

    /// Chunk record `n` in three parts, `prefix | data | [0]`, so a store
    /// can write (and checksum) it without copying the data: the data is
    /// the record's last element. `id`, if given, is its first field
    /// (`_id`, for a store that needs one).
    pub fn chunk_record_parts(
        &self,
        project: &str,
        n: u32,
        id: Option<&str>,
    ) -> Result<(Vec<u8>, &[u8])> {
        let c = self
            .chunks
            .as_ref()
            .ok_or_else(|| WalError::malformed("commit", "not a chunked commit"))?;
        let mut meta = Document::new();
        if let Some(id) = id {
            meta.insert("_id", id);
        }
        meta.insert("k", "chunk");
        meta.insert("project", project);
        meta.insert("branch", self.branch.0 as i64);
        meta.insert("seq", seq_to_bson(self.seq));
        meta.insert("writer", c.writer);
        meta.insert("n", i64::from(n));
        let meta = RawDocumentBuf::try_from(&meta)
            .map_err(|e| WalError::malformed("chunk", format!("cannot encode: {e}")))?;
        let data = self.chunk(n);
        let elements = elements_of(&meta);
        // length | elements | 0x05 "data\0" | i32 length | subtype | data | 0
        let total = 4 + elements.len() + 1 + 5 + 4 + 1 + data.len() + 1;
        let total = i32::try_from(total)
            .map_err(|_| WalError::malformed("chunk", "chunk too large for a record"))?;
        let mut prefix = Vec::with_capacity(4 + elements.len() + 11);
        prefix.extend_from_slice(&total.to_le_bytes());
        prefix.extend_from_slice(elements);
        element(&mut prefix, 0x05, "data");
        prefix.extend_from_slice(&(data.len() as i32).to_le_bytes());
        prefix.push(0); // binary subtype: generic
        Ok((prefix, data))
    }

    /// Chunk record `n` as one document (a copy of its data), with `id`
    /// as its `_id` if given.
    pub fn chunk_record(&self, project: &str, n: u32, id: Option<&str>) -> Result<RawDocumentBuf> {
        let (prefix, data) = self.chunk_record_parts(project, n, id)?;
        let mut bytes = Vec::with_capacity(prefix.len() + data.len() + 1);
        bytes.extend_from_slice(&prefix);
        bytes.extend_from_slice(data);
        bytes.push(0);
        RawDocumentBuf::from_bytes(bytes)
            .map_err(|e| WalError::malformed("chunk", format!("cannot encode: {e}")))
    }
}

/// Where a stored commit's body is.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredBody<'a> {
    Inline(&'a [u8]),
    Chunked(ChunkRef),
}

/// A commit record's fields, read without decoding its body.
#[derive(Clone, Debug, PartialEq)]
pub struct CommitRecord<'a> {
    pub project: &'a str,
    pub branch: BranchId,
    pub seq: Seq,
    pub time: CommitTime,
    pub actor: &'a str,
    pub body: StoredBody<'a>,
}

fn raw_int(v: RawBsonRef<'_>, what: &'static str, key: &str) -> Result<i64> {
    match v {
        RawBsonRef::Int64(v) => Ok(v),
        RawBsonRef::Int32(v) => Ok(i64::from(v)),
        other => Err(WalError::malformed(
            what,
            format!("field {key} is {:?}, not an integer", other.element_type()),
        )),
    }
}

fn raw_uint(v: RawBsonRef<'_>, what: &'static str, key: &str) -> Result<u64> {
    u64::try_from(raw_int(v, what, key)?)
        .map_err(|_| WalError::malformed(what, format!("field {key} is negative")))
}

fn raw_u32(v: RawBsonRef<'_>, what: &'static str, key: &str) -> Result<u32> {
    u32::try_from(raw_int(v, what, key)?)
        .map_err(|_| WalError::malformed(what, format!("field {key} is out of range")))
}

fn chunk_ref_from_raw(d: &RawDocument) -> Result<ChunkRef> {
    const W: &str = "commit chunks";
    let fields = raw_fields(d, W)?;
    let field = |k: &str| {
        fields
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| *v)
            .ok_or_else(|| WalError::malformed(W, format!("field {k} is missing")))
    };
    let r = ChunkRef {
        writer: match field("writer")? {
            RawBsonRef::ObjectId(o) => o,
            _ => return Err(WalError::malformed(W, "field writer is not an ObjectId")),
        },
        count: raw_u32(field("count")?, W, "count")?,
        size: raw_u32(field("size")?, W, "size")?,
        bytes: raw_uint(field("bytes")?, W, "bytes")?,
        crc: raw_u32(field("crc")?, W, "crc")?,
    };
    r.check()?;
    Ok(r)
}

/// Reads a commit record's fields; its body stays where it is.
pub fn commit_record(d: &RawDocument) -> Result<CommitRecord<'_>> {
    const W: &str = "commit";
    let fields = raw_fields(d, W)?;
    let find = |k: &str| fields.iter().find(|(name, _)| *name == k).map(|(_, v)| *v);
    let field =
        |k: &str| find(k).ok_or_else(|| WalError::malformed(W, format!("field {k} is missing")));
    let string = |k: &str| match field(k)? {
        RawBsonRef::String(s) => Ok(s),
        _ => Err(WalError::malformed(W, format!("field {k} is not a string"))),
    };
    let body = match (find("body"), find("chunks")) {
        (Some(RawBsonRef::Binary(b)), None) => StoredBody::Inline(b.bytes),
        (None, Some(RawBsonRef::Document(c))) => StoredBody::Chunked(chunk_ref_from_raw(c)?),
        (None, None) => return Err(WalError::malformed(W, "field body is missing")),
        _ => {
            return Err(WalError::malformed(
                W,
                "needs a binary body or a chunks document, not both",
            ));
        }
    };
    Ok(CommitRecord {
        project: string("project")?,
        branch: BranchId(raw_uint(field("branch")?, W, "branch")?),
        seq: Seq(raw_uint(field("seq")?, W, "seq")?),
        time: CommitTime(raw_int(field("time")?, W, "time")?),
        actor: string("actor")?,
        body,
    })
}

/// Decodes the commit `rec` names from its body bytes (`rec`'s inline
/// body, or its chunks reassembled). Without `pre_images` the ops' pre-images
/// are skipped, not copied: replay never reads them.
pub fn decode_commit(rec: &CommitRecord<'_>, body: &[u8], pre_images: bool) -> Result<Commit> {
    const W: &str = "commit";
    let body = RawDocument::from_bytes(body)
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
            Ok(RawBsonRef::Document(od)) => op_from_raw(od, pre_images),
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
        branch: rec.branch,
        seq: rec.seq,
        time: rec.time,
        actor: rec.actor.to_string(),
        ops,
        seal,
        retries,
    })
}

/// A chunk record's fields; `data` borrows from the record.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkRecord<'a> {
    pub project: &'a str,
    pub branch: BranchId,
    pub seq: Seq,
    pub writer: ObjectId,
    pub n: u32,
    pub data: &'a [u8],
}

pub fn chunk_record(d: &RawDocument) -> Result<ChunkRecord<'_>> {
    const W: &str = "chunk";
    let fields = raw_fields(d, W)?;
    let field = |k: &str| {
        fields
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| *v)
            .ok_or_else(|| WalError::malformed(W, format!("field {k} is missing")))
    };
    Ok(ChunkRecord {
        project: match field("project")? {
            RawBsonRef::String(s) => s,
            _ => return Err(WalError::malformed(W, "field project is not a string")),
        },
        branch: BranchId(raw_uint(field("branch")?, W, "branch")?),
        seq: Seq(raw_uint(field("seq")?, W, "seq")?),
        writer: match field("writer")? {
            RawBsonRef::ObjectId(o) => o,
            _ => return Err(WalError::malformed(W, "field writer is not an ObjectId")),
        },
        n: raw_u32(field("n")?, W, "n")?,
        data: match field("data")? {
            RawBsonRef::Binary(b) => b.bytes,
            _ => return Err(WalError::malformed(W, "field data is not binary")),
        },
    })
}

/// A commit body put back together from its chunks, which may arrive in
/// any order; complete only with every chunk, each of the right length,
/// and the body's checksum right.
#[derive(Debug)]
pub struct Reassembly {
    chunks: ChunkRef,
    body: Vec<u8>,
    seen: Vec<bool>,
}

impl Reassembly {
    pub fn new(chunks: &ChunkRef) -> Result<Reassembly> {
        chunks.check()?;
        Ok(Reassembly {
            body: vec![0; chunks.bytes as usize],
            seen: vec![false; chunks.count as usize],
            chunks: chunks.clone(),
        })
    }

    /// Places chunk `c` (which must be one of this set's).
    pub fn add(&mut self, c: &ChunkRecord<'_>) -> Result<()> {
        const W: &str = "chunk";
        let r = &self.chunks;
        if c.writer != r.writer || c.n >= r.count {
            return Err(WalError::malformed(
                W,
                format!("chunk {} of writer {} is not in set {r:?}", c.n, c.writer),
            ));
        }
        if c.data.len() as u64 != r.len_of(c.n) || self.seen[c.n as usize] {
            return Err(WalError::malformed(
                W,
                format!(
                    "chunk {} of writer {} has {} bytes or came twice",
                    c.n,
                    c.writer,
                    c.data.len()
                ),
            ));
        }
        let start = c.n as usize * r.size as usize;
        self.body[start..start + c.data.len()].copy_from_slice(c.data);
        self.seen[c.n as usize] = true;
        Ok(())
    }

    /// The body, once every chunk came and its checksum matches.
    pub fn finish(self) -> Result<Vec<u8>> {
        let missing = self.seen.iter().filter(|s| !**s).count();
        if missing > 0 {
            return Err(WalError::malformed(
                "commit",
                format!(
                    "{missing} of the {} chunks of writer {} are missing",
                    self.chunks.count, self.chunks.writer
                ),
            ));
        }
        if crc32c::crc32c(&self.body) != self.chunks.crc {
            return Err(WalError::malformed(
                "commit",
                format!(
                    "the chunks of writer {} do not add up to the body (checksum)",
                    self.chunks.writer
                ),
            ));
        }
        Ok(self.body)
    }
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
        CatalogEvent::Access(e) => crate::access::event_to_doc(e),
    }
}

fn event_from_doc(d: &Document) -> Result<CatalogEvent> {
    const W: &str = "catalog event";
    if crate::access::KINDS.contains(&get_str(d, W, "kind")?) {
        return Ok(CatalogEvent::Access(crate::access::event_from_doc(d)?));
    }
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
                LoggedOp {
                    op: DocOp::SetCollectionOptions {
                        ns: Namespace::new("db2", "d"),
                        options: doc! {"validator": {"$jsonSchema": {"required": ["a"]}}, "validationLevel": "moderate"},
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
        // A small commit encodes to the same single record either way.
        let encoded = EncodedCommit::new(c.clone()).unwrap();
        assert!(encoded.chunks().is_none());
        assert_eq!(
            encoded.record("p").unwrap().as_bytes(),
            RawDocumentBuf::try_from(&d).unwrap().as_bytes()
        );
    }

    /// The body is sized once: a retryable single-document write (the
    /// commonest commit) must not outgrow its buffer and hold twice its
    /// length (bodies live on in the feed of recent commits).
    #[test]
    fn a_small_body_is_sized_once() {
        let c = Commit {
            branch: BranchId(4),
            seq: Seq(7),
            time: CommitTime(1234),
            actor: "t".into(),
            ops: vec![LoggedOp {
                op: DocOp::Put {
                    ns: Namespace::new("wire_bench", "docs_c64"),
                    id: Bson::Int64(1),
                    doc: crate::rawdoc::encode(&doc! {"_id": 1i64, "pad": "x".repeat(960)})
                        .unwrap(),
                },
                pre_image: None,
            }],
            seal: None,
            retries: vec![RetryRecord {
                key: RetryKey {
                    session: vec![7; 40],
                    txn_number: 9,
                },
                reply: Some(crate::rawdoc::encode(&doc! {"n": 1, "ok": 1.0}).unwrap()),
            }],
        };
        let encoded = EncodedCommit::new(c).unwrap();
        let (len, cap) = (encoded.body.len(), encoded.body.capacity());
        assert!(
            cap >= len && cap - len <= 256,
            "body of {len} bytes in a buffer of {cap}"
        );
    }

    fn big_commit(docs: usize) -> Commit {
        let ns = Namespace::new("db", "c");
        Commit {
            branch: BranchId(4),
            seq: Seq(9),
            time: CommitTime(77),
            actor: "t".into(),
            ops: (0..docs as i32)
                .map(|i| LoggedOp {
                    op: DocOp::Put {
                        ns: ns.clone(),
                        id: Bson::Int32(i),
                        doc: crate::rawdoc::encode(&doc! {"_id": i, "pad": "x".repeat(300)})
                            .unwrap(),
                    },
                    pre_image: (i % 2 == 0).then(|| {
                        crate::rawdoc::encode(&doc! {"_id": i, "old": "y".repeat(200)}).unwrap()
                    }),
                })
                .collect(),
            seal: None,
            retries: vec![RetryRecord {
                key: RetryKey {
                    session: vec![7; 16],
                    txn_number: 3,
                },
                reply: Some(crate::rawdoc::encode(&doc! {"n": docs as i32}).unwrap()),
            }],
        }
    }

    /// Reads `e` back as a store would: the commit record, then its chunks
    /// (delivered in `order`).
    fn read_back(e: &EncodedCommit, order: &[u32], pre_images: bool) -> Result<Commit> {
        let record = e.record("p")?;
        let rec = commit_record(&record)?;
        let StoredBody::Chunked(chunks) = &rec.body else {
            panic!("expected a chunked commit");
        };
        let mut r = Reassembly::new(chunks)?;
        for n in order {
            let raw = e.chunk_record("p", *n, None)?;
            r.add(&chunk_record(&raw)?)?;
        }
        decode_commit(&rec, &r.finish()?, pre_images)
    }

    #[test]
    fn a_large_commit_is_cut_into_chunks_and_put_back_together() {
        let c = big_commit(40);
        let e = EncodedCommit::with_sizes(c.clone(), 1000, 1024).unwrap();
        let chunks = e.chunks().unwrap().clone();
        assert!(chunks.count > 5, "{chunks:?}");
        assert_eq!(chunks.bytes, e.body_len() as u64);
        // The record names the chunks and holds no body.
        let record = e.record("p").unwrap();
        assert!(record.get("body").unwrap().is_none());
        assert!(record.as_bytes().len() < 400);
        // Any order of arrival gives the same commit.
        let forward: Vec<u32> = (0..chunks.count).collect();
        let backward: Vec<u32> = (0..chunks.count).rev().collect();
        assert_eq!(read_back(&e, &forward, true).unwrap(), c);
        assert_eq!(read_back(&e, &backward, true).unwrap(), c);
        // Replay's decode skips pre-images.
        let replayed = read_back(&e, &forward, false).unwrap();
        assert!(replayed.ops.iter().all(|o| o.pre_image.is_none()));
        assert_eq!(replayed.ops.len(), c.ops.len());
        assert_eq!(replayed.retries, c.retries);
        // The zero-copy parts are the same record.
        for n in 0..chunks.count {
            let (prefix, data) = e.chunk_record_parts("p", n, None).unwrap();
            let mut joined = prefix.clone();
            joined.extend_from_slice(data);
            joined.push(0);
            assert_eq!(joined, e.chunk_record("p", n, None).unwrap().as_bytes());
            // With an `_id` first, the same record otherwise.
            let with_id = e.chunk_record("p", n, Some("x:1")).unwrap();
            assert_eq!(with_id.get_str("_id").unwrap(), "x:1");
            assert_eq!(chunk_record(&with_id).unwrap().data, data);
        }
    }

    #[test]
    fn a_wrong_or_incomplete_chunk_set_never_decodes() {
        let e = EncodedCommit::with_sizes(big_commit(20), 100, 1000).unwrap();
        let n = e.chunks().unwrap().count;
        let all: Vec<u32> = (0..n).collect();
        // One missing.
        let e1 = read_back(&e, &all[1..], true).unwrap_err();
        assert!(e1.to_string().contains("missing"), "{e1}");
        // One twice.
        let mut twice = all.clone();
        twice.push(0);
        assert!(read_back(&e, &twice, true).is_err());
        // Another writer's chunks for the same commit (a loser of the seq
        // race encodes the same ops under its own writer id).
        let other = EncodedCommit::with_sizes(big_commit(20), 100, 1000).unwrap();
        let record = e.record("p").unwrap();
        let rec = commit_record(&record).unwrap();
        let StoredBody::Chunked(chunks) = &rec.body else {
            panic!("chunked")
        };
        let mut r = Reassembly::new(chunks).unwrap();
        let raw = other.chunk_record("p", 0, None).unwrap();
        assert!(r.add(&chunk_record(&raw).unwrap()).is_err());
        // Right writer and lengths, wrong bytes: the checksum says so.
        let mut r = Reassembly::new(chunks).unwrap();
        for k in 0..n {
            let raw = e.chunk_record("p", k, None).unwrap();
            let mut c = chunk_record(&raw).unwrap();
            let mut flipped = c.data.to_vec();
            if k == 1 {
                flipped[0] ^= 1;
            }
            c.data = &flipped;
            r.add(&c).unwrap();
        }
        assert!(r.finish().unwrap_err().to_string().contains("checksum"));
        // A record claiming an impossible set is refused before any allocation.
        let mut bad = chunks.clone();
        bad.bytes = u64::MAX;
        assert!(Reassembly::new(&bad).is_err());
    }
}
