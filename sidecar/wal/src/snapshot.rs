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
use crate::types::{BranchId, CommitTime, Namespace, Seq};
use bson::{Bson, Document, RawDocument, doc};
use std::sync::Arc;
use tokio::sync::mpsc;

const MAGIC: &[u8; 8] = b"ARGSNAP2";
const W: &str = "snapshot";

/// The encoded bytes, in pieces of about `chunk_bytes`, each handed to
/// `sink` as soon as it is full: encoding never holds more than one piece
/// (plus one document, which may be larger), whatever the state's size.
/// The pieces concatenated are the snapshot (`decode` reads them so);
/// returns their total length.
struct ChunkWriter<'s> {
    piece: Vec<u8>,
    chunk_bytes: usize,
    /// CRC32C of everything after the magic, so far.
    crc: u32,
    /// Whether the magic is still at the front of `piece` (not in the CRC).
    magic_in_piece: bool,
    total: u64,
    sink: &'s mut dyn FnMut(Vec<u8>) -> Result<()>,
}

impl ChunkWriter<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.piece.extend_from_slice(b);
        if self.piece.len() >= self.chunk_bytes {
            self.flush()?;
        }
        Ok(())
    }

    fn doc(&mut self, d: &Document) -> Result<()> {
        d.to_writer(&mut self.piece)
            .map_err(|e| WalError::malformed(W, format!("cannot encode: {e}")))?;
        if self.piece.len() >= self.chunk_bytes {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let checked = if self.magic_in_piece {
            self.magic_in_piece = false;
            &self.piece[MAGIC.len()..]
        } else {
            &self.piece[..]
        };
        self.crc = crc32c::crc32c_append(self.crc, checked);
        self.total += self.piece.len() as u64;
        let full = std::mem::replace(&mut self.piece, Vec::with_capacity(self.chunk_bytes));
        (self.sink)(full)
    }

    fn finish(mut self) -> Result<u64> {
        self.flush()?;
        let crc = self.crc.to_le_bytes();
        self.total += crc.len() as u64;
        (self.sink)(crc.to_vec())?;
        Ok(self.total)
    }
}

/// The whole snapshot in one buffer (tests, benchmarks, small states; the
/// engine streams with [`encode_chunks`]).
pub fn encode(state: &BranchState) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_chunks(state, 1 << 20, &mut |piece| {
        out.extend_from_slice(&piece);
        Ok(())
    })?;
    Ok(out)
}

/// Encodes `state`, handing `sink` pieces of about `chunk_bytes` (the last
/// one is the 4-byte checksum); returns the snapshot's length. An error
/// from `sink` stops the encoding and is returned.
pub fn encode_chunks(
    state: &BranchState,
    chunk_bytes: usize,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<()>,
) -> Result<u64> {
    let chunk_bytes = chunk_bytes.max(MAGIC.len() + 1);
    let mut out = ChunkWriter {
        piece: Vec::with_capacity(chunk_bytes.min(1 << 20)),
        chunk_bytes,
        crc: 0,
        magic_in_piece: true,
        total: 0,
        sink,
    };
    out.piece.extend_from_slice(MAGIC);
    let colls = state.namespaces()?;
    out.doc(&doc! {
        "seq": state.seq().0 as i64, "time": state.time().0, "colls": colls.len() as i64,
        "retries": state.retries().len() as i64,
    })?;
    for (ns, c) in colls {
        out.doc(&doc! {
            "db": ns.db.as_str(), "coll": ns.coll.as_str(),
            "options": c.options().clone(),
            "indexes": c.indexes().iter().cloned().map(Bson::Document).collect::<Vec<_>>(),
            "docs": c.len()? as i64,
        })?;
        // Natural order: a capped collection's insertion order is rebuilt
        // from the order its documents are stored in.
        for d in c.iter_natural() {
            // The key is rebuilt from the document's `_id`; the engine
            // refuses a Put whose `doc._id` is not its `id`, so they agree.
            out.bytes(d?.as_bytes())?;
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
        out.doc(&d)?;
    }
    out.finish()
}

/// One snapshot in pieces, on its way between the encoder (a blocking
/// thread) and the store writing it, or between the store reading it and
/// the decoder: at most [`PIECES_IN_FLIGHT`] pieces of about
/// [`PIECE_BYTES`] wait at once, so storing or loading a snapshot costs a
/// few MiB beside the state, not the state's size again. A store makes a
/// snapshot visible only after [`SnapshotStream::next_piece`] says it is
/// complete; a decoder uses it only if the stream completes.
pub struct SnapshotStream {
    pub branch: BranchId,
    pub seq: Seq,
    pieces: mpsc::Receiver<Piece>,
}

/// What a producer sends.
enum Piece {
    Bytes(Vec<u8>),
    /// Every piece was sent.
    Done,
    Failed(WalError),
}

pub const PIECE_BYTES: usize = 1 << 20;
pub const PIECES_IN_FLIGHT: usize = 2;

/// The producing end of a [`SnapshotStream`] (a store reading one).
pub struct PieceSender {
    tx: mpsc::Sender<Piece>,
}

impl PieceSender {
    /// Sends a piece; `false` when the reader has gone (stop producing).
    pub async fn send(&self, piece: Vec<u8>) -> bool {
        self.tx.send(Piece::Bytes(piece)).await.is_ok()
    }

    /// [`PieceSender::send`] from a blocking thread.
    pub fn blocking_send(&self, piece: Vec<u8>) -> bool {
        self.tx.blocking_send(Piece::Bytes(piece)).is_ok()
    }

    /// Ends the stream: complete, or failed with `e`.
    pub async fn finish(self, outcome: Result<()>) {
        let _ = self.tx.send(Piece::end(outcome)).await;
    }

    /// [`PieceSender::finish`] from a blocking thread.
    pub fn blocking_finish(self, outcome: Result<()>) {
        let _ = self.tx.blocking_send(Piece::end(outcome));
    }
}

impl Piece {
    fn end(outcome: Result<()>) -> Piece {
        match outcome {
            Ok(()) => Piece::Done,
            Err(e) => Piece::Failed(e),
        }
    }
}

impl SnapshotStream {
    /// A stream of the snapshot at `seq` of `branch` and the sender that
    /// feeds it.
    pub fn channel(branch: BranchId, seq: Seq) -> (PieceSender, SnapshotStream) {
        let (tx, rx) = mpsc::channel(PIECES_IN_FLIGHT);
        (
            PieceSender { tx },
            SnapshotStream {
                branch,
                seq,
                pieces: rx,
            },
        )
    }

    /// Starts encoding `state` on a blocking thread (it walks the whole
    /// state: it must not hold a runtime worker). The state is an O(1)
    /// clone; the caller keeps using its own.
    pub fn encode(branch: BranchId, state: BranchState) -> SnapshotStream {
        let (tx, stream) = SnapshotStream::channel(branch, state.seq());
        tokio::task::spawn_blocking(move || {
            let encoded = encode_chunks(&state, PIECE_BYTES, &mut |piece| {
                if tx.blocking_send(piece) {
                    Ok(())
                } else {
                    Err(WalError::Closed("the snapshot's store stopped reading"))
                }
            });
            // The store may have gone (its error is its own to report).
            tx.blocking_finish(encoded.map(|_| ()));
        });
        stream
    }

    /// A stream of given pieces ending with `outcome` (an error stands for
    /// an encoder that failed after them): for stores' tests, and for a
    /// snapshot already encoded elsewhere.
    pub fn from_pieces(
        branch: BranchId,
        seq: Seq,
        pieces: Vec<Vec<u8>>,
        outcome: Result<()>,
    ) -> SnapshotStream {
        let (tx, rx) = mpsc::channel(pieces.len() + 1);
        for p in pieces {
            let _ = tx.try_send(Piece::Bytes(p));
        }
        let _ = tx.try_send(Piece::end(outcome));
        SnapshotStream {
            branch,
            seq,
            pieces: rx,
        }
    }

    /// The next piece; `None` once the snapshot is complete. An encoding
    /// error, or an encoder that stopped without finishing, is an error:
    /// the store must then not make the snapshot visible.
    pub async fn next_piece(&mut self) -> Result<Option<Vec<u8>>> {
        Self::settle(self.pieces.recv().await)
    }

    /// [`SnapshotStream::next_piece`] for a store writing on a blocking thread.
    pub fn blocking_next_piece(&mut self) -> Result<Option<Vec<u8>>> {
        Self::settle(self.pieces.blocking_recv())
    }

    fn settle(piece: Option<Piece>) -> Result<Option<Vec<u8>>> {
        match piece {
            Some(Piece::Bytes(b)) => Ok(Some(b)),
            Some(Piece::Done) => Ok(None),
            Some(Piece::Failed(e)) => Err(e),
            None => Err(WalError::Closed(
                "the snapshot encoder stopped before the end",
            )),
        }
    }
}

/// Reads a snapshot's documents from pieces as they arrive, checking the
/// CRC as it goes: it holds the document being read and at most one piece
/// ahead, never the whole snapshot.
struct Reader<'p> {
    buf: Vec<u8>,
    pos: usize,
    pull: &'p mut dyn FnMut() -> Result<Option<Vec<u8>>>,
    ended: bool,
    crc: u32,
    /// Bytes taken from the pieces so far.
    total: u64,
}

impl Reader<'_> {
    /// Whether `n` bytes are available at `pos` (pulling pieces as needed).
    fn ensure(&mut self, n: usize) -> Result<bool> {
        while self.buf.len() - self.pos < n && !self.ended {
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            match (self.pull)()? {
                Some(piece) => {
                    self.total += piece.len() as u64;
                    self.buf.extend_from_slice(&piece);
                }
                None => self.ended = true,
            }
        }
        Ok(self.buf.len() - self.pos >= n)
    }

    fn next_doc(&mut self) -> Result<Document> {
        let at = self.total - (self.buf.len() - self.pos) as u64;
        let raw = self.next_raw()?;
        Document::try_from(raw)
            .map_err(|e| WalError::malformed(W, format!("bad document at {at}: {e}")))
    }

    /// The next document's bytes, its length checked (not its elements).
    fn next_raw(&mut self) -> Result<&RawDocument> {
        let at = self.total - (self.buf.len() - self.pos) as u64;
        if !self.ensure(4)? {
            return Err(WalError::malformed(W, format!("truncated at {at}")));
        }
        let b = &self.buf[self.pos..self.pos + 4];
        let len = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l >= 5)
            .ok_or_else(|| WalError::malformed(W, format!("bad document length {len} at {at}")))?;
        if !self.ensure(len)? {
            return Err(WalError::malformed(
                W,
                format!("bad document length {len} at {at}"),
            ));
        }
        let bytes = &self.buf[self.pos..self.pos + len];
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.pos += len;
        RawDocument::from_bytes(bytes)
            .map_err(|e| WalError::malformed(W, format!("bad document at {at}: {e}")))
    }

    /// After the last document: exactly the CRC is left, and it matches.
    fn finish(&mut self) -> Result<u64> {
        if self.ensure(5)? || self.buf.len() - self.pos != 4 {
            return Err(WalError::malformed(W, "trailing bytes"));
        }
        let b = &self.buf[self.pos..];
        if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != self.crc {
            return Err(WalError::malformed(W, "checksum mismatch"));
        }
        Ok(self.total)
    }
}

/// Decodes a snapshot held in one buffer.
pub fn decode(bytes: &[u8]) -> Result<BranchState> {
    let mut once = Some(bytes.to_vec());
    decode_pieces(&mut || Ok(once.take())).map(|(state, _)| state)
}

/// Decodes a stream as it arrives, on a blocking thread; returns the state
/// and the snapshot's length. The state is used only if the stream
/// completes and its checksum matches.
pub async fn decode_stream(mut stream: SnapshotStream) -> Result<(BranchState, u64)> {
    tokio::task::spawn_blocking(move || decode_pieces(&mut || stream.blocking_next_piece()))
        .await
        .map_err(|_| WalError::Closed("snapshot decoder task failed"))?
}

fn decode_pieces(pull: &mut dyn FnMut() -> Result<Option<Vec<u8>>>) -> Result<(BranchState, u64)> {
    let mut r = Reader {
        buf: Vec::new(),
        pos: 0,
        pull,
        ended: false,
        crc: 0,
        total: 0,
    };
    if !r.ensure(MAGIC.len())? || &r.buf[..MAGIC.len()] != MAGIC {
        return Err(WalError::malformed(W, "missing ARGSNAP2 header"));
    }
    r.pos = MAGIC.len();
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
    let len = r.finish()?;
    Ok((state, len))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::record::DocOp;

    fn state_of(docs: usize, doc_bytes: usize) -> BranchState {
        let mut state = BranchState::empty(CommitTime(1));
        for i in 0..docs {
            let doc = doc! {"_id": i as i64, "pad": "x".repeat(doc_bytes)};
            state.apply(&DocOp::Put {
                ns: Namespace::new("db", if i % 2 == 0 { "even" } else { "odd" }),
                id: Bson::Int64(i as i64),
                doc: rawdoc::encode(&doc).unwrap(),
            });
        }
        state.at(Seq(9), CommitTime(9))
    }

    /// Pieces of any size concatenate to the one-buffer encoding, which
    /// decodes; no piece exceeds its size by more than one document.
    #[test]
    fn pieces_concatenate_to_the_snapshot() {
        let state = state_of(300, 700);
        let whole = encode(&state).unwrap();
        for chunk in [1, 9, 100, 4096, 1 << 20] {
            let mut pieces = Vec::new();
            let len = encode_chunks(&state, chunk, &mut |p| {
                pieces.push(p);
                Ok(())
            })
            .unwrap();
            assert_eq!(len, whole.len() as u64);
            assert!(
                pieces.iter().all(|p| p.len() < chunk.max(9) + 800),
                "{chunk}"
            );
            assert_eq!(pieces.concat(), whole, "chunk {chunk}");
        }
        let back = decode(&whole).unwrap();
        assert_eq!(back.seq(), Seq(9));
        assert_eq!(back.namespaces().unwrap().len(), 2);
    }

    /// A sink that fails stops the encoding: nothing after its error is
    /// produced, and the error is the sink's.
    #[test]
    fn a_failing_sink_stops_the_encoder() {
        let state = state_of(100, 1000);
        let mut calls = 0;
        let e = encode_chunks(&state, 4096, &mut |_| {
            calls += 1;
            if calls == 3 {
                Err(WalError::Closed("sink gone"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(e, WalError::Closed("sink gone")), "{e}");
        assert_eq!(calls, 3);
    }

    /// The upload hands over the encoding in pieces of about
    /// `PIECE_BYTES`, then ends.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_streams_the_encoding() {
        let state = state_of(64, 100_000);
        let whole = encode(&state).unwrap();
        let mut upload = SnapshotStream::encode(BranchId(3), state);
        assert_eq!((upload.branch, upload.seq), (BranchId(3), Seq(9)));
        let mut got = Vec::new();
        let mut pieces = 0;
        while let Some(p) = upload.next_piece().await.unwrap() {
            assert!(p.len() <= PIECE_BYTES + 100_100);
            got.extend_from_slice(&p);
            pieces += 1;
        }
        assert!(pieces > 4, "{pieces} pieces");
        assert_eq!(got, whole);
        let mut failed = SnapshotStream::from_pieces(
            BranchId(3),
            Seq(9),
            vec![vec![1]],
            Err(WalError::Closed("encoder failed")),
        );
        assert_eq!(failed.next_piece().await.unwrap(), Some(vec![1]));
        assert!(failed.next_piece().await.is_err());
    }

    /// Decoding from pieces of any size (down to one byte) gives the state;
    /// a damaged, truncated, padded or failed stream is an error, never a
    /// state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_decode_as_they_arrive() {
        let state = state_of(50, 3000);
        let whole = encode(&state).unwrap();
        for size in [1, 7, 4096, whole.len()] {
            let pieces = whole.chunks(size).map(<[u8]>::to_vec).collect();
            let stream = SnapshotStream::from_pieces(BranchId(1), Seq(9), pieces, Ok(()));
            let (back, len) = decode_stream(stream).await.unwrap();
            assert_eq!(len, whole.len() as u64);
            assert_eq!(encode(&back).unwrap(), whole, "pieces of {size}");
        }
        let stream_of = |bytes: Vec<u8>, outcome: Result<()>| {
            SnapshotStream::from_pieces(BranchId(1), Seq(9), vec![bytes], outcome)
        };
        let mut flipped = whole.clone();
        flipped[whole.len() / 2] ^= 0x01;
        let mut padded = whole.clone();
        padded.push(0);
        let cases = [
            ("flipped", stream_of(flipped, Ok(()))),
            (
                "truncated",
                stream_of(whole[..whole.len() - 1].to_vec(), Ok(())),
            ),
            (
                "cut mid-document",
                stream_of(whole[..whole.len() / 2].to_vec(), Ok(())),
            ),
            ("padded", stream_of(padded, Ok(()))),
            ("empty", stream_of(Vec::new(), Ok(()))),
            (
                "failed",
                stream_of(whole.clone(), Err(WalError::Closed("store failed"))),
            ),
        ];
        for (what, stream) in cases {
            assert!(decode_stream(stream).await.is_err(), "{what}");
        }
        // A producer that went away without finishing.
        let (tx, stream) = SnapshotStream::channel(BranchId(1), Seq(9));
        let producer = tokio::spawn(async move {
            tx.send(whole[..100].to_vec()).await;
        });
        assert!(decode_stream(stream).await.is_err());
        producer.await.unwrap();
    }
}
