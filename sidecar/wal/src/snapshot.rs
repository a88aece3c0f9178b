//! Snapshot encoding: a whole `BranchState` as bytes, stored beside the log.
//!
//! Layout: `"ARGSNAP2"`, then a run of BSON documents, then the CRC32C of
//! everything after the magic (u32 little-endian):
//!   `{seq, time, colls: n}`
//!   n × (`{db, coll, options, indexes, docs: m}` then the m documents
//!   themselves, as their stored bytes)
//!   then, when the header has `retries: r`, r × `{s, t, q, tm, k[, r]}`:
//!   the retry table (session, txnNumber, seq, time, where the reply is:
//!   `k` 0 inline in `r`, 1 in the log, 2 lost). A header without it is a
//!   state with no retry history.
//! `ARGSNAP1` (each document wrapped as `{d: <doc>}`) is no longer read: a
//! snapshot is only an optimisation, and one the engine cannot decode is
//! replaced by replay.
//! A snapshot is self-contained (a fork's snapshot includes what it inherited),
//! so reading from one never needs the ancestry.

use crate::error::{Result, WalError};
use crate::rawdoc;
use crate::record::{get_i64, get_u64};
use crate::retry::{RetryEntry, StoredReply};
use crate::state::{BranchState, MemoryCollection};
use crate::types::{CommitTime, Namespace, Seq};
use bson::{Bson, Document, RawDocument, doc};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"ARGSNAP2";
const W: &str = "snapshot";

fn push_doc(out: &mut Vec<u8>, d: &Document) -> Result<()> {
    d.to_writer(&mut *out)
        .map_err(|e| WalError::malformed(W, format!("cannot encode: {e}")))
}

pub fn encode(state: &BranchState) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(MAGIC);
    let colls = state.namespaces()?;
    push_doc(
        &mut out,
        &doc! {
            "seq": state.seq().0 as i64, "time": state.time().0, "colls": colls.len() as i64,
            "retries": state.retries().len() as i64,
        },
    )?;
    for (ns, c) in colls {
        push_doc(
            &mut out,
            &doc! {
                "db": ns.db.as_str(), "coll": ns.coll.as_str(),
                "options": c.options().clone(),
                "indexes": c.indexes().iter().cloned().map(Bson::Document).collect::<Vec<_>>(),
                "docs": c.len()? as i64,
            },
        )?;
        // Natural order: a capped collection's insertion order is rebuilt
        // from the order its documents are stored in.
        for d in c.iter_natural() {
            // The key is rebuilt from the document's `_id`; the engine
            // refuses a Put whose `doc._id` is not its `id`, so they agree.
            out.extend_from_slice(d?.as_bytes());
        }
    }
    for (session, e) in state.retries().iter() {
        let mut d = doc! {
            "s": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: session.clone() },
            "t": e.txn_number,
            "q": e.seq.0 as i64,
            "tm": e.time.0,
        };
        match &e.reply {
            StoredReply::Inline(r) => {
                d.insert("k", 0);
                d.insert(
                    "r",
                    Document::try_from(r.as_ref().as_ref())
                        .map_err(|e| WalError::malformed(W, format!("retry reply: {e}")))?,
                );
            }
            StoredReply::InLog => {
                d.insert("k", 1);
            }
            StoredReply::Lost => {
                d.insert("k", 2);
            }
        }
        push_doc(&mut out, &d)?;
    }
    let crc = crc32c::crc32c(&out[MAGIC.len()..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn next_doc(&mut self) -> Result<Document> {
        let at = self.pos;
        let raw = self.next_raw()?;
        Document::try_from(raw)
            .map_err(|e| WalError::malformed(W, format!("bad document at {at}: {e}")))
    }

    /// The next document's bytes, its length checked (not its elements).
    fn next_raw(&mut self) -> Result<&RawDocument> {
        let rest = &self.bytes[self.pos..];
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| WalError::malformed(W, format!("truncated at {}", self.pos)))?;
        let len = i32::from_le_bytes(len_bytes);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= 5 && *l <= rest.len())
            .ok_or_else(|| {
                WalError::malformed(W, format!("bad document length {len} at {}", self.pos))
            })?;
        let d = RawDocument::from_bytes(&rest[..len])
            .map_err(|e| WalError::malformed(W, format!("bad document at {}: {e}", self.pos)))?;
        self.pos += len;
        Ok(d)
    }
}

pub fn decode(bytes: &[u8]) -> Result<BranchState> {
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(WalError::malformed(W, "missing ARGSNAP2 header"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let body = &body[MAGIC.len()..];
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != want {
        return Err(WalError::malformed(W, "checksum mismatch"));
    }
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let header = r.next_doc()?;
    let seq = Seq(get_u64(&header, W, "seq")?);
    let time = CommitTime(get_i64(&header, W, "time")?);
    let ncolls = get_u64(&header, W, "colls")?;
    let mut state = BranchState::empty(time).at(seq, time);
    for _ in 0..ncolls {
        let meta = r.next_doc()?;
        let field = |k: &str| {
            meta.get_str(k)
                .map(str::to_string)
                .map_err(|e| WalError::malformed(W, format!("collection {k}: {e}")))
        };
        let ns = Namespace::new(field("db")?, field("coll")?);
        let options = meta
            .get_document("options")
            .map_err(|e| WalError::malformed(W, format!("options: {e}")))?
            .clone();
        let indexes = meta
            .get_array("indexes")
            .map_err(|e| WalError::malformed(W, format!("indexes: {e}")))?
            .iter()
            .map(|i| match i {
                Bson::Document(d) => Ok(d.clone()),
                _ => Err(WalError::malformed(W, "an index spec is not a document")),
            })
            .collect::<Result<Vec<_>>>()?;
        let ndocs = get_u64(&meta, W, "docs")?;
        let mut docs = Vec::with_capacity(usize::try_from(ndocs).unwrap_or(0).min(1 << 20));
        for _ in 0..ndocs {
            docs.push(rawdoc::owned(r.next_raw()?, W)?);
        }
        state.insert_collection(ns, MemoryCollection::from_parts(options, indexes, docs));
    }
    let nretries = match header.get("retries") {
        None => 0,
        Some(_) => get_u64(&header, W, "retries")?,
    };
    for _ in 0..nretries {
        let d = r.next_doc()?;
        let session = match d.get("s") {
            Some(Bson::Binary(b)) => b.bytes.clone(),
            _ => return Err(WalError::malformed(W, "retry entry without a session")),
        };
        let reply = match get_i64(&d, W, "k")? {
            0 => {
                let reply = d
                    .get_document("r")
                    .map_err(|e| WalError::malformed(W, format!("retry reply: {e}")))?;
                StoredReply::Inline(Arc::new(rawdoc::encode(reply)?))
            }
            1 => StoredReply::InLog,
            2 => StoredReply::Lost,
            k => return Err(WalError::malformed(W, format!("retry entry kind {k}"))),
        };
        state.retries_mut().insert(
            session,
            RetryEntry {
                txn_number: get_i64(&d, W, "t")?,
                seq: Seq(get_u64(&d, W, "q")?),
                time: CommitTime(get_i64(&d, W, "tm")?),
                reply,
            },
        );
    }
    if r.pos != body.len() {
        return Err(WalError::malformed(W, "trailing bytes"));
    }
    Ok(state)
}
