//! The embedded store: a local directory of append-only segment files.
//!
//! ```text
//! <dir>/LOCK                                   exclusive lock (flock) while open
//! <dir>/log/00000000000000000001.seg           segments: "ARGWAL02" then batches
//! <dir>/log/ACKED-UPTO                         only after a failed write/fsync (see below)
//! <dir>/snapshots/<project>/<branch>/<seq>.snap
//! ```
//! A frame is `len: u32 LE | crc32c(len bytes): u32 LE | crc32c(payload): u32 LE | payload`,
//! where the payload is one BSON record from `record.rs` (commit, chunk,
//! catalog record or project record). A *batch* (one group commit: its
//! frames written in order, one `fdatasync`) is a batch-header frame, whose
//! 20-byte payload is `"ARGB" | frames: u32 | body length: u64 |
//! crc32c(body): u32`, then the body: that many record frames. A large
//! commit's chunk records are the frames right before its commit record, in
//! the same batch, so they become durable and visible with it or not at
//! all: the embedded store never has orphan chunks, and a writer that
//! loses the race for a seq is refused before any of its frames is written. Segments written before batches existed start with
//! "ARGWAL01" and hold bare frames; they are read as before, and the store
//! never appends to one (it starts a new segment on open).
//!
//! Invariants:
//! - A record is in the in-memory index (so readable) only after the fsync
//!   that made it durable; `append_*` returns only then.
//! - One writer thread owns the active segment. It takes every request that
//!   is waiting, checks uniqueness against the index and the batch, writes the
//!   accepted frames (a chunked commit's chunk frames first, then its commit
//!   frame) and makes them durable with one `fdatasync` (group commit).
//!   Chunk data is written from the commit's shared body, never copied
//!   into a batch buffer.
//! - In an intact batch, chunk frames come as runs `n = 0, 1, …` of one
//!   writer, each run followed at once by the commit record that names that
//!   writer and count (checked on open; anything else is corruption).
//! - After a failed write or fsync the store is *poisoned*: it never retries
//!   the fsync (after a failed fsync the kernel may have dropped the dirty
//!   pages and a retry can succeed without them: "fsyncgate"), it answers
//!   every later append with an error, and it records the acknowledged end
//!   of the log in `log/ACKED-UPTO`. Only reopening clears it: recovery cuts
//!   the segment back to that end, so a batch that was never acknowledged
//!   does not come back (`writer_loop`, `apply_acked_marker`).
//! - On open, a damaged *last batch* of the last segment is a torn write that
//!   was never acknowledged and is cut off whole: one that runs past the end
//!   of the file, or whose body checksum fails and that ends exactly at the
//!   end of the file (pages of one write reach the disk in any order, so the
//!   damage may sit in the middle of the batch), or a damaged batch header
//!   after which no intact batch follows. Damage anywhere else is an error
//!   naming the file and byte offset; `Recovery::KeepPrefix` keeps
//!   everything before it and moves the rest aside (never deletes it).
//!   The price of the rule: bit rot in the very last batch of the log looks
//!   like a torn write and is cut off too.
//!
//! One handle per directory: `open` takes an exclusive `flock` on `LOCK`, so
//! a second open, from this process or another, fails with `WalError::Locked`.
//! Share the `Arc<EmbeddedStore>` to give several `Wal` handles one store;
//! they then race through the same uniqueness checks as separate pods do.

use crate::error::{Result, WalError};
use crate::record::{
    self, CatalogRecord, ChunkRef, Commit, EncodedCommit, ProjectRecord, StoredBody,
};
use crate::snapshot::{PIECE_BYTES, PieceSender, SnapshotStream};
use crate::store::{CommitPage, LogStats, LogStore, PAGE_BYTES, StoreFuture};
use crate::types::{BranchId, CommitInfo, CommitTime, Seq};
use bson::oid::ObjectId;
use bson::{Document, RawDocument};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use tokio::sync::oneshot;

/// Segments of batches (every segment this version starts).
const MAGIC: &[u8; 8] = b"ARGWAL02";
/// Segments of bare frames (read, never appended to).
const MAGIC_V1: &[u8; 8] = b"ARGWAL01";
const FRAME_HEADER: usize = 12;
const BATCH_MAGIC: &[u8; 4] = b"ARGB";
const BATCH_PAYLOAD: usize = 20;
/// A batch header: one frame with a 20-byte payload.
const BATCH_HEADER: usize = FRAME_HEADER + BATCH_PAYLOAD;
/// Written after a failed write or fsync: `<segment> <acknowledged end>`.
const ACKED_MARKER: &str = "ACKED-UPTO";
/// Largest single read when replay reads consecutive records.
const READ_RUN_BYTES: u64 = 4 << 20;
/// Roll to a new segment past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// A record larger than this is refused (and a header claiming more is corrupt).
const MAX_RECORD: usize = 64 << 20;
/// Most requests packed into one fsync.
const MAX_BATCH: usize = 4096;
/// Small frames are gathered into writes of this size; larger parts (chunk
/// data) are written from where they are.
const WRITE_BUFFER: usize = 1 << 20;
const POISONED: &str = "an earlier write or fsync failed; reopen the store to recover";
/// Makes snapshot temp-file names unique within the process.
static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What to do when a record in the middle of the log is damaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Recovery {
    /// Refuse to open, naming the file and offset (the default: never drop
    /// acknowledged data silently).
    #[default]
    Strict,
    /// Keep every record before the damage; move the damaged rest of that
    /// segment and every later segment aside (`*.corrupt`) and open.
    KeepPrefix,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct EmbeddedOptions {
    pub recovery: Recovery,
}

#[derive(Clone, Copy, Debug)]
struct Loc {
    segment: u64,
    /// Offset of the frame header.
    offset: u64,
    len: u32,
    seq: Seq,
    time: CommitTime,
    /// A chunked commit's chunk frames, which lie right before its record.
    chunks: Option<Span>,
}

/// The chunk frames of one commit: `count` frames from `first`, `bytes` in all.
#[derive(Clone, Copy, Debug)]
struct Span {
    first: u64,
    count: u32,
    bytes: u64,
}

#[derive(Default)]
struct Index {
    /// Per `(project, branch)`: commits in seq order.
    commits: HashMap<(String, BranchId), Vec<Loc>>,
    catalog: HashMap<String, Vec<Loc>>,
    projects: HashMap<String, ProjectRecord>,
    /// Per `(project, branch)`: snapshot files by seq.
    snapshots: HashMap<(String, BranchId), BTreeMap<Seq, PathBuf>>,
}

/// Inserts keeping seq order (appends are almost always at the end).
fn insert_loc(v: &mut Vec<Loc>, loc: Loc) {
    match v.last() {
        Some(last) if last.seq >= loc.seq => {
            let at = v.partition_point(|l| l.seq < loc.seq);
            v.insert(at, loc);
        }
        _ => v.push(loc),
    }
}

fn contains_seq(v: Option<&Vec<Loc>>, seq: Seq) -> bool {
    v.is_some_and(|v| v.binary_search_by(|l| l.seq.cmp(&seq)).is_ok())
}

struct Shared {
    dir: PathBuf,
    index: Mutex<Index>,
    /// Read handles of every segment.
    segments: Mutex<BTreeMap<u64, Arc<File>>>,
    poisoned: AtomicBool,
}

impl Shared {
    fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the lock leaves the index consistent (every
        // mutation is a single insert), so a poisoned lock is still usable.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn segment_path(&self, n: u64) -> PathBuf {
        segment_path(&self.dir, n)
    }

    /// Calls `each` with the checked payload of every record in `locs`,
    /// in order. Records that lie back to back in one segment (a branch's
    /// commits usually do) are read with one `pread`: replay reads
    /// thousands of small records.
    fn read_payloads(
        &self,
        locs: &[Loc],
        mut each: impl FnMut(&Loc, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut i = 0;
        let mut buf = Vec::new();
        while i < locs.len() {
            let first = locs[i];
            let mut end = i + 1;
            let mut run_bytes = FRAME_HEADER as u64 + u64::from(first.len);
            // Consecutive records are separated by at most a batch header.
            while end < locs.len()
                && locs[end].segment == first.segment
                && locs[end].offset >= first.offset + run_bytes
                && locs[end].offset - (first.offset + run_bytes) <= BATCH_HEADER as u64
                && run_bytes < READ_RUN_BYTES
            {
                run_bytes = locs[end].offset - first.offset
                    + FRAME_HEADER as u64
                    + u64::from(locs[end].len);
                end += 1;
            }
            let file = {
                let segs = self.segments.lock().unwrap_or_else(|e| e.into_inner());
                segs.get(&first.segment).cloned()
            };
            let file = file.ok_or_else(|| WalError::Corrupt {
                file: self.segment_path(first.segment),
                offset: first.offset,
                reason: "segment is missing".into(),
            })?;
            buf.resize(run_bytes as usize, 0);
            file.read_exact_at(&mut buf, first.offset)
                .map_err(|e| WalError::io(self.segment_path(first.segment), e))?;
            for loc in &locs[i..end] {
                let total = FRAME_HEADER + loc.len as usize;
                let at = (loc.offset - first.offset) as usize;
                match parse_frame(&buf[at..at + total]) {
                    Frame::Ok { payload, .. } => each(loc, payload)?,
                    other => {
                        return Err(WalError::Corrupt {
                            file: self.segment_path(loc.segment),
                            offset: loc.offset,
                            reason: other.reason(),
                        });
                    }
                }
            }
            i = end;
        }
        Ok(())
    }

    fn read_frame(&self, loc: &Loc) -> Result<Document> {
        let file = {
            let segs = self.segments.lock().unwrap_or_else(|e| e.into_inner());
            segs.get(&loc.segment).cloned()
        };
        let path = self.segment_path(loc.segment);
        let file = file.ok_or_else(|| WalError::Corrupt {
            file: path.clone(),
            offset: loc.offset,
            reason: "segment is missing".into(),
        })?;
        let mut buf = vec![0u8; FRAME_HEADER + loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| WalError::io(&path, e))?;
        match parse_frame(&buf) {
            Frame::Ok { payload, .. } => {
                Document::from_reader(payload).map_err(|e| WalError::Corrupt {
                    file: path,
                    offset: loc.offset,
                    reason: format!("record is not BSON: {e}"),
                })
            }
            other => Err(WalError::Corrupt {
                file: path,
                offset: loc.offset,
                reason: other.reason(),
            }),
        }
    }
}

impl Shared {
    fn file(&self, segment: u64, offset: u64) -> Result<Arc<File>> {
        let segs = self.segments.lock().unwrap_or_else(|e| e.into_inner());
        segs.get(&segment)
            .cloned()
            .ok_or_else(|| WalError::Corrupt {
                file: self.segment_path(segment),
                offset,
                reason: "segment is missing".into(),
            })
    }

    /// Reads the checked payload of the frame at `offset` into `buf`.
    fn read_frame_into<'b>(
        &self,
        file: &File,
        segment: u64,
        offset: u64,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8]> {
        let path = || self.segment_path(segment);
        let mut header = [0u8; FRAME_HEADER];
        file.read_exact_at(&mut header, offset)
            .map_err(|e| WalError::io(path(), e))?;
        let len = u32_at(&header, 0) as usize;
        if len > MAX_RECORD {
            return Err(WalError::Corrupt {
                file: path(),
                offset,
                reason: Frame::BadHeader.reason(),
            });
        }
        buf.resize(FRAME_HEADER + len, 0);
        file.read_exact_at(buf, offset)
            .map_err(|e| WalError::io(path(), e))?;
        match parse_frame(buf) {
            Frame::Ok { payload, .. } => Ok(payload),
            other => Err(WalError::Corrupt {
                file: path(),
                offset,
                reason: other.reason(),
            }),
        }
    }

    /// A chunked commit: its record, then its chunk frames (read one at a
    /// time into one buffer), reassembled and decoded without pre-images.
    fn read_chunked(&self, loc: &Loc, span: Span, pre_images: bool) -> Result<Commit> {
        let corrupt = |offset: u64, e: WalError| WalError::Corrupt {
            file: self.segment_path(loc.segment),
            offset,
            reason: e.to_string(),
        };
        let file = self.file(loc.segment, loc.offset)?;
        let mut buf = Vec::new();
        let payload = self.read_frame_into(&file, loc.segment, loc.offset, &mut buf)?;
        let raw = RawDocument::from_bytes(payload)
            .map_err(|e| corrupt(loc.offset, WalError::malformed("commit", e.to_string())))?;
        let rec = record::commit_record(raw).map_err(|e| corrupt(loc.offset, e))?;
        let StoredBody::Chunked(chunks) = &rec.body else {
            return Err(corrupt(
                loc.offset,
                WalError::malformed("commit", "indexed with chunks but has a body"),
            ));
        };
        let mut body = record::Reassembly::new(chunks).map_err(|e| corrupt(loc.offset, e))?;
        let mut chunk_buf = Vec::new();
        let mut at = span.first;
        for _ in 0..span.count {
            let payload = self.read_frame_into(&file, loc.segment, at, &mut chunk_buf)?;
            let step = (FRAME_HEADER + payload.len()) as u64;
            RawDocument::from_bytes(payload)
                .map_err(|e| WalError::malformed("chunk", e.to_string()))
                .and_then(record::chunk_record)
                .and_then(|c| body.add(&c))
                .map_err(|e| corrupt(at, e))?;
            at += step;
        }
        let body = body.finish().map_err(|e| corrupt(loc.offset, e))?;
        record::decode_commit(&rec, &body, pre_images)
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join("log").join(format!("{n:020}.seg"))
}

enum Frame<'a> {
    Ok { payload: &'a [u8], total: usize },
    ShortHeader,
    BadHeader,
    ShortPayload,
    BadPayload { total: usize },
}

impl Frame<'_> {
    fn reason(&self) -> String {
        match self {
            Frame::Ok { .. } => "ok".into(),
            Frame::ShortHeader => "record header is cut short".into(),
            Frame::BadHeader => "record header checksum mismatch".into(),
            Frame::ShortPayload => "record runs past the end of the segment".into(),
            Frame::BadPayload { .. } => "record payload checksum mismatch".into(),
        }
    }
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends a batch: its header frame, then `body` (the batch's record frames).
#[cfg(test)]
fn batch_frame(frames: u32, body: &[u8], out: &mut Vec<u8>) {
    batch_header(frames, body.len() as u64, crc32c::crc32c(body), out);
    out.extend_from_slice(body);
}

/// Appends a batch's header frame: `frames` records in `len` bytes with checksum `crc`.
fn batch_header(frames: u32, len: u64, crc: u32, out: &mut Vec<u8>) {
    let mut header = Vec::with_capacity(BATCH_PAYLOAD);
    header.extend_from_slice(BATCH_MAGIC);
    header.extend_from_slice(&frames.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&crc.to_le_bytes());
    frame(&header, out);
}

/// A parsed batch header: `(frames, body length, body checksum)`.
fn parse_batch_header(b: &[u8]) -> std::result::Result<(u32, u64, u32), String> {
    match parse_frame(b) {
        Frame::Ok { payload, .. }
            if payload.len() == BATCH_PAYLOAD && payload.starts_with(BATCH_MAGIC) =>
        {
            let mut len = [0u8; 8];
            len.copy_from_slice(&payload[8..16]);
            Ok((
                u32_at(payload, 4),
                u64::from_le_bytes(len),
                u32_at(payload, 16),
            ))
        }
        Frame::Ok { .. } => Err("expected a batch header, found another record".into()),
        other => Err(format!("batch header: {}", other.reason())),
    }
}

/// Whether an intact batch (header and body checksums right) starts
/// anywhere in `bytes[from..]`: then damage before `from` is not a torn
/// tail, because something was written after it.
fn intact_batch_after(bytes: &[u8], from: usize) -> bool {
    (from..bytes.len().saturating_sub(BATCH_HEADER - 1)).any(|p| {
        let rest = &bytes[p..];
        // Cheap filter first: the header's length field is always 20.
        u32_at(rest, 0) as usize == BATCH_PAYLOAD
            && matches!(parse_batch_header(rest), Ok((_, len, crc))
            if usize::try_from(len).is_ok_and(|len| {
                rest.len() >= BATCH_HEADER + len
                    && crc32c::crc32c(&rest[BATCH_HEADER..BATCH_HEADER + len]) == crc
            }))
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses the frame at the start of `b`.
fn parse_frame(b: &[u8]) -> Frame<'_> {
    if b.len() < FRAME_HEADER {
        return Frame::ShortHeader;
    }
    let len_bytes = &b[..4];
    if crc32c::crc32c(len_bytes) != u32_at(b, 4) {
        return Frame::BadHeader;
    }
    let len = u32_at(b, 0) as usize;
    if len > MAX_RECORD {
        return Frame::BadHeader;
    }
    let total = FRAME_HEADER + len;
    if b.len() < total {
        return Frame::ShortPayload;
    }
    let payload = &b[FRAME_HEADER..total];
    if crc32c::crc32c(payload) != u32_at(b, 8) {
        return Frame::BadPayload { total };
    }
    Frame::Ok { payload, total }
}

enum Payload {
    Commit {
        project: String,
        branch: BranchId,
        seq: Seq,
        time: CommitTime,
        chunks: Option<ChunkRef>,
    },
    /// One chunk of a commit's body (only ever read back through its commit).
    Chunk {
        writer: ObjectId,
        n: u32,
    },
    Catalog {
        project: String,
        seq: Seq,
    },
    Project(ProjectRecord),
}

struct AppendReq {
    payload: Vec<u8>,
    /// A chunked commit's chunk records, written right before `payload`.
    chunks: Option<ChunkFrames>,
    what: Payload,
    ack: oneshot::Sender<Result<ProjectRecordOrUnit>>,
}

/// Chunk records by parts: each one's metadata prefix and where its data
/// lies in the shared body (its payload is `prefix | data | 0`).
struct ChunkFrames {
    body: Arc<Vec<u8>>,
    frames: Vec<(Vec<u8>, std::ops::Range<usize>)>,
}

/// One frame of a batch as it is written: its header, then the payload's
/// parts in order (unused parts are empty).
struct OutFrame<'a> {
    header: [u8; FRAME_HEADER],
    parts: [&'a [u8]; 3],
}

impl<'a> OutFrame<'a> {
    fn new(parts: [&'a [u8]; 3]) -> OutFrame<'a> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = (len as u32).to_le_bytes();
        let crc = parts.iter().fold(0, |crc, p| crc32c::crc32c_append(crc, p));
        let mut header = [0u8; FRAME_HEADER];
        header[..4].copy_from_slice(&len);
        header[4..8].copy_from_slice(&crc32c::crc32c(&len).to_le_bytes());
        header[8..].copy_from_slice(&crc.to_le_bytes());
        OutFrame { header, parts }
    }

    fn len(&self) -> u64 {
        (FRAME_HEADER + self.parts.iter().map(|p| p.len()).sum::<usize>()) as u64
    }
}

/// `ensure_project` answers with the stored record; other appends with `()`.
enum ProjectRecordOrUnit {
    Unit,
    Project(ProjectRecord),
}

pub struct EmbeddedStore {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<AppendReq>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: File,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EmbeddedStore({})", self.shared.dir.display())
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| WalError::io(dir, e))
}

fn create_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

fn new_segment(dir: &Path, n: u64) -> Result<File> {
    let path = segment_path(dir, n);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| WalError::io(&path, e))?;
    f.write_all(MAGIC).map_err(|e| WalError::io(&path, e))?;
    f.sync_all().map_err(|e| WalError::io(&path, e))?;
    fsync_dir(&dir.join("log"))?;
    Ok(f)
}

impl EmbeddedStore {
    /// `read_commits`' page, with or without the ops' pre-images.
    async fn read_page(
        &self,
        project: &str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
        pre_images: bool,
    ) -> Result<CommitPage> {
        let (locs, more): (Vec<Loc>, bool) = {
            let index = self.shared.index();
            match index.commits.get(&(project.to_string(), branch)) {
                Some(v) => {
                    let start = v.partition_point(|l| l.seq <= after);
                    let in_range = v[start..].partition_point(|l| l.seq <= upto);
                    // At most `limit`, and about PAGE_BYTES of records.
                    let mut bytes = 0u64;
                    let page: Vec<Loc> = v[start..start + in_range]
                        .iter()
                        .take(limit)
                        .take_while(|l| {
                            let fits = bytes < PAGE_BYTES;
                            bytes += u64::from(l.len) + l.chunks.map_or(0, |c| c.bytes);
                            fits
                        })
                        .copied()
                        .collect();
                    let more = page.len() < in_range;
                    (page, more)
                }
                None => (Vec::new(), false),
            }
        };
        let mut out = Vec::with_capacity(locs.len());
        // Runs of one-record commits are read together; a chunked one
        // on its own (its chunks one at a time).
        for run in locs.chunk_by(|a, b| a.chunks.is_none() && b.chunks.is_none()) {
            if let [
                loc @ Loc {
                    chunks: Some(span), ..
                },
            ] = run
            {
                out.push(self.shared.read_chunked(loc, *span, pre_images)?);
                continue;
            }
            self.shared.read_payloads(run, |loc, payload| {
                let corrupt = |reason: String| WalError::Corrupt {
                    file: self.shared.segment_path(loc.segment),
                    offset: loc.offset,
                    reason,
                };
                let raw = RawDocument::from_bytes(payload)
                    .map_err(|e| corrupt(format!("record is not BSON: {e}")))?;
                let rec = record::commit_record(raw)?;
                match rec.body {
                    StoredBody::Inline(body) => {
                        out.push(record::decode_commit(&rec, body, pre_images)?);
                        Ok(())
                    }
                    StoredBody::Chunked(_) => Err(corrupt(
                        "a chunked commit indexed without its chunks".into(),
                    )),
                }
            })?;
        }
        Ok(CommitPage { commits: out, more })
    }

    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<Arc<EmbeddedStore>> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    pub fn open_with(
        dir: impl AsRef<Path>,
        options: EmbeddedOptions,
    ) -> Result<Arc<EmbeddedStore>> {
        let dir = dir.as_ref().to_path_buf();
        create_dir(&dir)?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| WalError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(WalError::Locked { dir }),
            Err(std::fs::TryLockError::Error(e)) => return Err(WalError::io(&lock_path, e)),
        }
        create_dir(&dir.join("log"))?;
        create_dir(&dir.join("snapshots"))?;

        let mut index = Index::default();
        let mut segments = BTreeMap::new();
        apply_acked_marker(&dir)?;
        let numbers = list_segments(&dir)?;
        let mut last = 0;
        let mut last_batched = true;
        let mut stop = false;
        for (i, &n) in numbers.iter().enumerate() {
            let path = segment_path(&dir, n);
            if stop {
                quarantine(&path, ".corrupt")?;
                continue;
            }
            let is_last = i + 1 == numbers.len();
            let recovered = recover_segment(&path, n, is_last, &mut index)?;
            last_batched = recovered.batched;
            match recovered.end {
                SegmentEnd::Clean => {}
                SegmentEnd::Corrupt { offset, reason } => match options.recovery {
                    Recovery::Strict => {
                        return Err(WalError::Corrupt {
                            file: path,
                            offset,
                            reason,
                        });
                    }
                    Recovery::KeepPrefix => {
                        tracing::error!(file = %path.display(), offset, %reason,
                            "corrupt record: keeping the log before it, moving the rest aside");
                        cut_aside(&path, offset)?;
                        stop = true;
                    }
                },
            }
            let f = File::open(&path).map_err(|e| WalError::io(&path, e))?;
            segments.insert(n, Arc::new(f));
            last = n;
        }
        if stop {
            fsync_dir(&dir.join("log"))?;
        }
        let active = if last == 0 || !last_batched {
            // A new log, or one whose last segment holds bare frames: batches
            // go to a segment of their own.
            last += 1;
            let f = new_segment(&dir, last)?;
            let path = segment_path(&dir, last);
            segments.insert(
                last,
                Arc::new(File::open(&path).map_err(|e| WalError::io(&path, e))?),
            );
            f
        } else {
            let path = segment_path(&dir, last);
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|e| WalError::io(&path, e))?
        };
        load_snapshot_index(&dir, &mut index)?;

        let shared = Arc::new(Shared {
            dir: dir.clone(),
            index: Mutex::new(index),
            segments: Mutex::new(segments),
            poisoned: AtomicBool::new(false),
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("argon-wal-writer".into())
            .spawn(move || writer_loop(writer_shared, rx, active, last))
            .map_err(|e| WalError::io(&dir, e))?;
        Ok(Arc::new(EmbeddedStore {
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            _lock: lock,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// True after a failed write or fsync: every append fails until the
    /// store is reopened.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::SeqCst)
    }

    async fn submit(
        &self,
        payload: Vec<u8>,
        chunks: Option<ChunkFrames>,
        what: Payload,
    ) -> Result<ProjectRecordOrUnit> {
        let largest = chunks
            .iter()
            .flat_map(|c| c.frames.iter().map(|(p, r)| p.len() + r.len() + 1))
            .fold(payload.len(), usize::max);
        if largest > MAX_RECORD {
            return Err(WalError::CommitTooLarge {
                bytes: largest,
                limit: MAX_RECORD,
            });
        }
        let (ack, rx) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
            let tx = tx
                .as_ref()
                .ok_or(WalError::Closed("embedded store is shut down"))?;
            tx.send(AppendReq {
                payload,
                chunks,
                what,
                ack,
            })
            .map_err(|_| WalError::Closed("embedded store writer has stopped"))?;
        }
        rx.await
            .map_err(|_| WalError::Closed("embedded store writer has stopped"))?
    }

    fn snapshot_dir(&self, project: &str, branch: BranchId) -> PathBuf {
        self.shared
            .dir
            .join("snapshots")
            .join(project)
            .join(branch.0.to_string())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Close the channel, then wait for the writer to finish what it holds,
        // so the LOCK is released only after the last fsync.
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let log = dir.join("log");
    let mut out = Vec::new();
    for entry in fs::read_dir(&log).map_err(|e| WalError::io(&log, e))? {
        let entry = entry.map_err(|e| WalError::io(&log, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(num) = name.strip_suffix(".seg")
            && let Ok(n) = num.parse::<u64>()
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

enum SegmentEnd {
    Clean,
    Corrupt { offset: u64, reason: String },
}

struct Recovered {
    end: SegmentEnd,
    /// False for a segment of bare frames (never appended to again).
    batched: bool,
}

/// Scans one segment into the index. Cuts a torn tail off the last segment.
fn recover_segment(path: &Path, n: u64, is_last: bool, index: &mut Index) -> Result<Recovered> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| WalError::io(path, e))?;
    let clean = |end| Recovered { end, batched: true };
    if bytes.len() < MAGIC.len() {
        if is_last && (MAGIC.starts_with(&bytes) || MAGIC_V1.starts_with(&bytes)) {
            // Crashed while creating the segment: rewrite its header.
            let mut f = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| WalError::io(path, e))?;
            f.write_all(MAGIC)
                .and_then(|_| f.sync_all())
                .map_err(|e| WalError::io(path, e))?;
            return Ok(clean(SegmentEnd::Clean));
        }
        return Ok(clean(SegmentEnd::Corrupt {
            offset: 0,
            reason: "segment header is cut short".into(),
        }));
    }
    let magic = &bytes[..MAGIC.len()];
    if magic == MAGIC_V1 {
        return Ok(Recovered {
            end: recover_frames(path, &bytes, n, is_last, index)?,
            batched: false,
        });
    }
    if magic != MAGIC {
        return Ok(clean(SegmentEnd::Corrupt {
            offset: 0,
            reason: "not an Argon WAL segment (bad magic)".into(),
        }));
    }
    let mut pos = MAGIC.len();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        // Whether damage at `pos` is the torn last batch, and why it is damage.
        let (torn, reason) = match parse_batch_header(rest) {
            Ok((frames, len, crc)) => {
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|len| (pos + BATCH_HEADER).checked_add(len));
                match end {
                    None => (false, "batch length is impossible".to_string()),
                    Some(end) if end > bytes.len() => {
                        (is_last, "batch runs past the end of the segment".into())
                    }
                    Some(end) if crc32c::crc32c(&bytes[pos + BATCH_HEADER..end]) != crc => (
                        is_last && end == bytes.len(),
                        "batch checksum mismatch".into(),
                    ),
                    Some(end) => {
                        // Intact batch: its records must all decode.
                        if let Some(bad) =
                            index_batch(&bytes[..end], pos + BATCH_HEADER, frames, n, index)
                        {
                            return Ok(clean(bad));
                        }
                        pos = end;
                        continue;
                    }
                }
            }
            Err(reason) => {
                // A header cut short, zeros, or garbage after which nothing
                // intact was written: the header's page did not make it.
                let torn = is_last
                    && (rest.len() < BATCH_HEADER
                        || rest.iter().all(|b| *b == 0)
                        || !intact_batch_after(&bytes, pos + 1));
                (torn, reason)
            }
        };
        if torn {
            cut_torn_tail(path, pos, &reason)?;
            return Ok(clean(SegmentEnd::Clean));
        }
        return Ok(clean(SegmentEnd::Corrupt {
            offset: pos as u64,
            reason,
        }));
    }
    Ok(clean(SegmentEnd::Clean))
}

/// Indexes the `frames` records of an intact batch, `bytes[from..]`; the
/// damage if one does not decode (the batch checksum matched, so this is
/// a writer bug or a bad record, never a torn write).
fn index_batch(
    bytes: &[u8],
    from: usize,
    frames: u32,
    n: u64,
    index: &mut Index,
) -> Option<SegmentEnd> {
    let mut pos = from;
    let mut seen = 0u32;
    let mut run = ChunkRun::default();
    while pos < bytes.len() {
        let (payload, total) = match parse_frame(&bytes[pos..]) {
            Frame::Ok { payload, total } => (payload, total),
            other => {
                return Some(SegmentEnd::Corrupt {
                    offset: pos as u64,
                    reason: other.reason(),
                });
            }
        };
        let indexed = decode_record(payload).and_then(|what| {
            let span = run.step(&what, pos as u64)?;
            index_record(index, &what, n, pos as u64, payload.len() as u32, span);
            Ok(())
        });
        if let Err(reason) = indexed {
            return Some(SegmentEnd::Corrupt {
                offset: pos as u64,
                reason,
            });
        }
        seen += 1;
        pos += total;
    }
    if let Some(reason) = run.open() {
        return Some(SegmentEnd::Corrupt {
            offset: from.saturating_sub(BATCH_HEADER) as u64,
            reason,
        });
    }
    (seen != frames).then(|| SegmentEnd::Corrupt {
        offset: from.saturating_sub(BATCH_HEADER) as u64,
        reason: format!("batch holds {seen} records, its header says {frames}"),
    })
}

/// Chunk frames seen since the last commit record of a batch: the run a
/// chunked commit record must close (see the module invariants).
#[derive(Default)]
struct ChunkRun {
    open: Option<(ObjectId, u64, u32)>,
}

impl ChunkRun {
    /// Takes the record at `pos`; for a chunked commit, where its chunks are.
    fn step(&mut self, what: &Payload, pos: u64) -> std::result::Result<Option<Span>, String> {
        match (what, self.open) {
            (Payload::Chunk { writer, n: 0 }, None) => {
                self.open = Some((*writer, pos, 1));
                Ok(None)
            }
            (Payload::Chunk { writer, n }, Some((w, first, count)))
                if *writer == w && *n == count =>
            {
                self.open = Some((w, first, count + 1));
                Ok(None)
            }
            (Payload::Chunk { writer, n }, _) => {
                Err(format!("chunk {n} of writer {writer} is out of order"))
            }
            (
                Payload::Commit {
                    chunks: Some(c), ..
                },
                Some((w, first, count)),
            ) if c.writer == w && c.count == count => {
                self.open = None;
                Ok(Some(Span {
                    first,
                    count,
                    bytes: pos - first,
                }))
            }
            (
                Payload::Commit {
                    chunks: Some(c), ..
                },
                _,
            ) => Err(format!(
                "the commit names {} chunks of writer {} that do not precede it",
                c.count, c.writer
            )),
            (_, Some((w, _, count))) => Err(format!(
                "{count} chunks of writer {w} are not followed by their commit"
            )),
            (_, None) => Ok(None),
        }
    }

    /// Why the batch may not end here, if a run is open.
    fn open(&self) -> Option<String> {
        self.open.map(|(w, _, count)| {
            format!("{count} chunks of writer {w} end the batch without their commit")
        })
    }
}

fn decode_record(payload: &[u8]) -> std::result::Result<Payload, String> {
    RawDocument::from_bytes(payload)
        .map_err(|e| e.to_string())
        .and_then(|d| decode_payload(d).map_err(|e| e.to_string()))
        .map_err(|reason| format!("record does not decode: {reason}"))
}

fn cut_torn_tail(path: &Path, pos: usize, reason: &str) -> Result<()> {
    tracing::warn!(file = %path.display(), offset = pos, %reason,
        "cutting off a torn tail (an unacknowledged write)");
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    f.set_len(pos as u64)
        .and_then(|_| f.sync_all())
        .map_err(|e| WalError::io(path, e))
}

/// A segment of bare frames ("ARGWAL01", before batches): a damaged record
/// at the very end of the last segment is torn; anything else is damage.
fn recover_frames(
    path: &Path,
    bytes: &[u8],
    n: u64,
    is_last: bool,
    index: &mut Index,
) -> Result<SegmentEnd> {
    let mut pos = MAGIC_V1.len();
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let frame = parse_frame(rest);
        let torn = is_last
            && match &frame {
                Frame::Ok { .. } => false,
                Frame::ShortHeader | Frame::ShortPayload => true,
                // A torn write leaves zeros or a prefix; a checksum failure
                // is a torn tail only when nothing follows it.
                Frame::BadHeader => rest.iter().all(|b| *b == 0),
                Frame::BadPayload { total } => *total == rest.len(),
            };
        let (payload, total) = match frame {
            Frame::Ok { payload, total } => (payload, total),
            other if torn => {
                cut_torn_tail(path, pos, &other.reason())?;
                return Ok(SegmentEnd::Clean);
            }
            other => {
                return Ok(SegmentEnd::Corrupt {
                    offset: pos as u64,
                    reason: other.reason(),
                });
            }
        };
        match decode_record(payload) {
            // Chunk records exist only inside batches.
            Ok(
                Payload::Chunk { .. }
                | Payload::Commit {
                    chunks: Some(_), ..
                },
            ) => {
                return Ok(SegmentEnd::Corrupt {
                    offset: pos as u64,
                    reason: "a chunk record outside a batch".into(),
                });
            }
            Ok(what) => index_record(index, &what, n, pos as u64, payload.len() as u32, None),
            Err(reason) => {
                return Ok(SegmentEnd::Corrupt {
                    offset: pos as u64,
                    reason,
                });
            }
        }
        pos += total;
    }
    Ok(SegmentEnd::Clean)
}

/// After a poisoned run (a failed write or fsync), `log/ACKED-UPTO` names
/// the end of the last acknowledged batch: cut the segment back to it, so
/// what was written but never acknowledged (and perhaps never durable)
/// does not come back; then forget the marker.
fn apply_acked_marker(dir: &Path) -> Result<()> {
    let marker = dir.join("log").join(ACKED_MARKER);
    let text = match fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(WalError::io(&marker, e)),
    };
    let parsed = text.split_once(' ').and_then(|(seg, end)| {
        Some((
            seg.trim().parse::<u64>().ok()?,
            end.trim().parse::<u64>().ok()?,
        ))
    });
    match parsed {
        Some((seg, end)) => {
            let path = segment_path(dir, seg);
            match fs::metadata(&path) {
                Ok(m) if m.len() > end => {
                    tracing::warn!(file = %path.display(), offset = end,
                        "cutting off what a failed write or fsync left (never acknowledged)");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| WalError::io(&path, e))?;
                    f.set_len(end)
                        .and_then(|_| f.sync_all())
                        .map_err(|e| WalError::io(&path, e))?;
                }
                _ => {}
            }
        }
        // A marker torn by a crash: recovery's own rules still apply.
        None => {
            tracing::warn!(file = %marker.display(), "ignoring an unreadable ACKED-UPTO marker")
        }
    }
    fs::remove_file(&marker).map_err(|e| WalError::io(&marker, e))?;
    fsync_dir(&dir.join("log"))
}

/// Best effort, from the writer thread after a failed write or fsync.
fn write_acked_marker(dir: &Path, segment: u64, end: u64) {
    let log = dir.join("log");
    let marker = log.join(ACKED_MARKER);
    let written = File::create(&marker)
        .and_then(|mut f| {
            f.write_all(format!("{segment} {end}\n").as_bytes())?;
            f.sync_all()
        })
        .map_err(|e| WalError::io(&marker, e))
        .and_then(|()| fsync_dir(&log));
    if let Err(e) = written {
        tracing::error!(error = %e, "could not record the acknowledged end of the log");
    }
}

/// Copies `path[offset..]` to `path.corrupt-at-<offset>`, then truncates `path` at `offset`.
fn cut_aside(path: &Path, offset: u64) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| WalError::io(path, e))?;
    let aside = PathBuf::from(format!("{}.corrupt-at-{offset}", path.display()));
    let tail = bytes.get(offset as usize..).unwrap_or(&[]);
    fs::write(&aside, tail)
        .and_then(|_| File::open(&aside)?.sync_all())
        .map_err(|e| WalError::io(&aside, e))?;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| WalError::io(path, e))?;
    f.set_len(offset)
        .and_then(|_| f.sync_all())
        .map_err(|e| WalError::io(path, e))
}

fn quarantine(path: &Path, suffix: &str) -> Result<()> {
    let to = PathBuf::from(format!("{}{suffix}", path.display()));
    tracing::error!(from = %path.display(), to = %to.display(), "moving a segment after corruption aside");
    fs::rename(path, &to).map_err(|e| WalError::io(path, e))
}

/// What a record is, for the index. A commit's body is not decoded here
/// (opening reads metadata only; the frame checksum covers the bytes, and a
/// body is decoded when it is read).
fn decode_payload(d: &RawDocument) -> Result<Payload> {
    let kind = match d.get("k") {
        Ok(Some(bson::RawBsonRef::String(k))) => k,
        _ => return Err(WalError::malformed("record", "field k is not a string")),
    };
    match kind {
        "commit" => {
            let c = record::commit_record(d)?;
            Ok(Payload::Commit {
                project: c.project.to_string(),
                branch: c.branch,
                seq: c.seq,
                time: c.time,
                chunks: match c.body {
                    StoredBody::Inline(_) => None,
                    StoredBody::Chunked(r) => Some(r),
                },
            })
        }
        "chunk" => {
            let c = record::chunk_record(d)?;
            Ok(Payload::Chunk {
                writer: c.writer,
                n: c.n,
            })
        }
        "catalog" => {
            let d =
                Document::try_from(d).map_err(|e| WalError::malformed("catalog", e.to_string()))?;
            let r = record::catalog_from_doc(&d)?;
            Ok(Payload::Catalog {
                project: record::project_of(&d)?.to_string(),
                seq: r.seq,
            })
        }
        "project" => {
            let d =
                Document::try_from(d).map_err(|e| WalError::malformed("project", e.to_string()))?;
            Ok(Payload::Project(record::project_from_doc(&d)?))
        }
        other => Err(WalError::malformed(
            "record",
            format!("unknown kind {other:?}"),
        )),
    }
}

fn index_record(
    index: &mut Index,
    what: &Payload,
    segment: u64,
    offset: u64,
    len: u32,
    chunks: Option<Span>,
) {
    match what {
        Payload::Commit {
            project,
            branch,
            seq,
            time,
            ..
        } => insert_loc(
            index.commits.entry((project.clone(), *branch)).or_default(),
            Loc {
                segment,
                offset,
                len,
                seq: *seq,
                time: *time,
                chunks,
            },
        ),
        // Reached only through their commit's `Span`.
        Payload::Chunk { .. } => {}
        Payload::Catalog { project, seq } => insert_loc(
            index.catalog.entry(project.clone()).or_default(),
            Loc {
                segment,
                offset,
                len,
                seq: *seq,
                time: CommitTime(0),
                chunks: None,
            },
        ),
        Payload::Project(p) => {
            index
                .projects
                .entry(p.name.clone())
                .or_insert_with(|| p.clone());
        }
    }
}

/// Writes the upload's pieces to `tmp` as they come and makes the file
/// durable (the caller renames it into place: a durable rename).
fn write_snapshot_file(tmp: &Path, snap: &mut SnapshotStream) -> Result<u64> {
    let mut f = File::create(tmp).map_err(|e| WalError::io(tmp, e))?;
    let mut len = 0u64;
    while let Some(piece) = snap.blocking_next_piece()? {
        f.write_all(&piece).map_err(|e| WalError::io(tmp, e))?;
        len += piece.len() as u64;
    }
    f.sync_all().map_err(|e| WalError::io(tmp, e))?;
    Ok(len)
}

/// Sends a snapshot file in pieces until the end or until the reader goes.
fn read_snapshot_file(path: &Path, tx: &PieceSender) -> Result<()> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| WalError::io(path, e))?;
    loop {
        let mut piece = Vec::with_capacity(PIECE_BYTES);
        let n = (&mut f)
            .take(PIECE_BYTES as u64)
            .read_to_end(&mut piece)
            .map_err(|e| WalError::io(path, e))?;
        if n == 0 || !tx.blocking_send(piece) {
            return Ok(());
        }
    }
}

fn load_snapshot_index(dir: &Path, index: &mut Index) -> Result<()> {
    let root = dir.join("snapshots");
    let read = |p: &Path| -> Result<Vec<fs::DirEntry>> {
        fs::read_dir(p)
            .map_err(|e| WalError::io(p, e))?
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| WalError::io(p, e))
    };
    for project in read(&root)? {
        let Ok(pname) = project.file_name().into_string() else {
            continue;
        };
        for branch in read(&project.path())? {
            let Some(bid) = branch
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            for snap in read(&branch.path())? {
                let name = snap.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.ends_with(".tmp") {
                    // An interrupted snapshot write: never renamed, so never used.
                    let _ = fs::remove_file(snap.path());
                    continue;
                }
                if let Some(seq) = name
                    .strip_suffix(".snap")
                    .and_then(|s| s.parse::<u64>().ok())
                {
                    index
                        .snapshots
                        .entry((pname.clone(), BranchId(bid)))
                        .or_default()
                        .insert(Seq(seq), snap.path());
                }
            }
        }
    }
    Ok(())
}

fn writer_loop(
    shared: Arc<Shared>,
    rx: mpsc::Receiver<AppendReq>,
    mut active: File,
    mut number: u64,
) {
    let mut size = active.metadata().map(|m| m.len()).unwrap_or(0);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        if shared.poisoned.load(Ordering::SeqCst) {
            for r in batch {
                let _ = r.ack.send(Err(WalError::Closed(POISONED)));
            }
            continue;
        }
        // Uniqueness: against the index and against earlier requests in this batch.
        let mut accepted: Vec<AppendReq> = Vec::with_capacity(batch.len());
        {
            let index = shared.index();
            let mut seen_commits = HashSet::new();
            let mut seen_catalog = HashSet::new();
            let mut seen_projects: HashMap<String, ProjectRecord> = HashMap::new();
            for r in batch {
                let verdict = match &r.what {
                    Payload::Commit {
                        project,
                        branch,
                        seq,
                        ..
                    } => {
                        let key = (project.clone(), *branch);
                        if contains_seq(index.commits.get(&key), *seq)
                            || !seen_commits.insert((key, *seq))
                        {
                            Err(WalError::Conflict {
                                branch: *branch,
                                seq: *seq,
                            })
                        } else {
                            Ok(())
                        }
                    }
                    Payload::Catalog { project, seq } => {
                        if contains_seq(index.catalog.get(project), *seq)
                            || !seen_catalog.insert((project.clone(), *seq))
                        {
                            Err(WalError::CatalogConflict {
                                project: project.clone(),
                                seq: *seq,
                            })
                        } else {
                            Ok(())
                        }
                    }
                    Payload::Chunk { .. } => Err(WalError::malformed(
                        "chunk",
                        "chunks are appended with their commit",
                    )),
                    Payload::Project(p) => {
                        let existing = index
                            .projects
                            .get(&p.name)
                            .or_else(|| seen_projects.get(&p.name));
                        match existing {
                            Some(e) => {
                                let _ = r.ack.send(Ok(ProjectRecordOrUnit::Project(e.clone())));
                                continue;
                            }
                            None => {
                                seen_projects.insert(p.name.clone(), p.clone());
                                Ok(())
                            }
                        }
                    }
                };
                match verdict {
                    Ok(()) => accepted.push(r),
                    Err(e) => {
                        let _ = r.ack.send(Err(e));
                    }
                }
            }
        }
        if accepted.is_empty() {
            continue;
        }
        // The batch's frames, by parts, and where each record lands.
        let mut frames: Vec<OutFrame<'_>> = Vec::new();
        let mut placed: Vec<(u64, Option<Span>)> = Vec::with_capacity(accepted.len());
        let mut body_len = 0u64;
        let at = |body_len: u64| size + BATCH_HEADER as u64 + body_len;
        for r in &accepted {
            let span = r.chunks.as_ref().map(|c| {
                let first = at(body_len);
                for (prefix, range) in &c.frames {
                    let f = OutFrame::new([prefix, &c.body[range.clone()], &[0]]);
                    body_len += f.len();
                    frames.push(f);
                }
                Span {
                    first,
                    count: c.frames.len() as u32,
                    bytes: at(body_len) - first,
                }
            });
            placed.push((at(body_len), span));
            let f = OutFrame::new([&r.payload, &[], &[]]);
            body_len += f.len();
            frames.push(f);
        }
        let path = shared.segment_path(number);
        let written = write_batch(&mut active, &frames, body_len);
        drop(frames);
        match written {
            Ok(()) => {}
            Err(Failure::Crash(what)) => {
                // A failpoint standing for the process dying here: nothing
                // more reaches the disk and nobody is told anything.
                shared.poisoned.store(true, Ordering::SeqCst);
                for r in accepted {
                    let _ = r.ack.send(Err(WalError::Closed(what)));
                }
                continue;
            }
            Err(Failure::Io(e)) => {
                // Never retry the fsync: after a failed one the kernel may
                // have dropped the dirty pages, and a retry could succeed
                // without them. Poison, record where acknowledged data ends
                // (recovery cuts the log back to it), and answer errors.
                tracing::error!(file = %path.display(), error = %e, "WAL write or fsync failed; refusing further appends until reopened");
                shared.poisoned.store(true, Ordering::SeqCst);
                write_acked_marker(&shared.dir, number, size);
                for r in accepted {
                    let _ = r.ack.send(Err(WalError::io(
                        &path,
                        std::io::Error::new(e.kind(), e.to_string()),
                    )));
                }
                continue;
            }
        }
        size += BATCH_HEADER as u64 + body_len;
        {
            let mut index = shared.index();
            for (r, (offset, span)) in accepted.iter().zip(placed) {
                index_record(
                    &mut index,
                    &r.what,
                    number,
                    offset,
                    r.payload.len() as u32,
                    span,
                );
            }
        }
        for r in accepted {
            let reply = match r.what {
                Payload::Project(p) => ProjectRecordOrUnit::Project(p),
                _ => ProjectRecordOrUnit::Unit,
            };
            let _ = r.ack.send(Ok(reply));
        }
        if size >= SEGMENT_BYTES {
            match roll(&shared, number + 1) {
                Ok(f) => {
                    active = f;
                    number += 1;
                    size = MAGIC.len() as u64;
                }
                Err(e) => {
                    // Keep appending to the current segment; a later roll may work.
                    tracing::warn!(error = %e, "could not start a new WAL segment");
                }
            }
        }
    }
}

enum Failure {
    Io(std::io::Error),
    /// A failpoint that stands for the process dying at this point.
    Crash(&'static str),
}

/// The batch header, then every frame's header and parts, in order, through
/// one buffer (small frames are gathered, chunk data goes straight from the
/// commit's body), then one `fdatasync`.
fn write_batch(
    active: &mut File,
    frames: &[OutFrame<'_>],
    body_len: u64,
) -> std::result::Result<(), Failure> {
    use crate::failpoints::{
        self, EMBEDDED_BEFORE_FSYNC, EMBEDDED_FSYNC_ERROR, EMBEDDED_TORN_WRITE,
    };
    let pieces = || {
        frames
            .iter()
            .flat_map(|f| std::iter::once(&f.header[..]).chain(f.parts.iter().copied()))
    };
    let crc = pieces().fold(0, crc32c::crc32c_append);
    let mut header = Vec::with_capacity(BATCH_HEADER);
    batch_header(frames.len() as u32, body_len, crc, &mut header);
    if failpoints::fire(EMBEDDED_TORN_WRITE) {
        // Out-of-order writeback cut short: the first half and the last
        // eighth of the batch reached the disk, zeros between.
        let mut torn = header;
        pieces().for_each(|p| torn.extend_from_slice(p));
        let keep_tail = torn.len() - torn.len() / 8;
        let half = torn.len() / 2;
        torn[half..keep_tail].fill(0);
        let _ = active.write_all(&torn).and_then(|_| active.sync_data());
        return Err(Failure::Crash(
            "failpoint embedded-torn-write: the store stopped",
        ));
    }
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, &mut *active);
    out.write_all(&header).map_err(Failure::Io)?;
    for p in pieces() {
        out.write_all(p).map_err(Failure::Io)?;
    }
    out.flush().map_err(Failure::Io)?;
    drop(out);
    if failpoints::fire(EMBEDDED_BEFORE_FSYNC) {
        return Err(Failure::Crash(
            "failpoint embedded-before-fsync: the store stopped",
        ));
    }
    if failpoints::fire(EMBEDDED_FSYNC_ERROR) {
        return Err(Failure::Io(std::io::Error::other(
            "failpoint embedded-fsync-error: fdatasync failed (EIO)",
        )));
    }
    active.sync_data().map_err(Failure::Io)
}

fn roll(shared: &Shared, n: u64) -> Result<File> {
    let f = new_segment(&shared.dir, n)?;
    let path = shared.segment_path(n);
    let read = File::open(&path).map_err(|e| WalError::io(&path, e))?;
    shared
        .segments
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(n, Arc::new(read));
    Ok(f)
}

fn encode_doc(d: &Document, what: &'static str) -> Result<Vec<u8>> {
    d.to_vec()
        .map_err(|e| WalError::malformed(what, format!("cannot encode: {e}")))
}

impl LogStore for EmbeddedStore {
    fn describe(&self) -> String {
        format!("embedded store at {}", self.shared.dir.display())
    }

    fn health(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.is_poisoned() {
                return Err(WalError::Closed(POISONED));
            }
            let stopped = self.tx.lock().unwrap_or_else(|e| e.into_inner()).is_none()
                || self
                    .writer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_none_or(|h| h.is_finished());
            if stopped {
                return Err(WalError::Closed("embedded store writer has stopped"));
            }
            Ok(())
        })
    }

    fn ensure_project<'a>(&'a self, project: &'a ProjectRecord) -> StoreFuture<'a, ProjectRecord> {
        Box::pin(async move {
            if let Some(p) = self.shared.index().projects.get(&project.name) {
                return Ok(p.clone());
            }
            let payload = encode_doc(&record::project_to_doc(project), "project")?;
            match self
                .submit(payload, None, Payload::Project(project.clone()))
                .await?
            {
                ProjectRecordOrUnit::Project(p) => Ok(p),
                ProjectRecordOrUnit::Unit => Ok(project.clone()),
            }
        })
    }

    fn append_commit<'a>(
        &'a self,
        project: &'a str,
        commit: &'a EncodedCommit,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let payload = commit.record(project)?.into_bytes();
            let chunks = match commit.chunks() {
                None => None,
                Some(c) => Some(ChunkFrames {
                    body: Arc::clone(commit.body()),
                    frames: (0..c.count)
                        .map(|n| {
                            let (prefix, _) = commit.chunk_record_parts(project, n, None)?;
                            Ok((prefix, commit.chunk_range(n)))
                        })
                        .collect::<Result<_>>()?,
                }),
            };
            self.submit(
                payload,
                chunks,
                Payload::Commit {
                    project: project.to_string(),
                    branch: commit.branch,
                    seq: commit.seq,
                    time: commit.time,
                    chunks: commit.chunks().cloned(),
                },
            )
            .await
            .map(|_| ())
        })
    }

    fn read_commits<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage> {
        Box::pin(self.read_page(project, branch, after, upto, limit, false))
    }

    fn read_commits_with_pre_images<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        after: Seq,
        upto: Seq,
        limit: usize,
    ) -> StoreFuture<'a, CommitPage> {
        Box::pin(self.read_page(project, branch, after, upto, limit, true))
    }

    fn commit_info<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        seq: Seq,
    ) -> StoreFuture<'a, Option<CommitInfo>> {
        Box::pin(async move {
            let index = self.shared.index();
            Ok(index
                .commits
                .get(&(project.to_string(), branch))
                .and_then(|v| v.binary_search_by(|l| l.seq.cmp(&seq)).ok().map(|i| &v[i]))
                .map(|l| CommitInfo {
                    seq: l.seq,
                    time: l.time,
                }))
        })
    }

    fn commit_at_or_before<'a>(
        &'a self,
        project: &'a str,
        branch: BranchId,
        at: CommitTime,
    ) -> StoreFuture<'a, Option<CommitInfo>> {
        Box::pin(async move {
            let index = self.shared.index();
            Ok(index
                .commits
                .get(&(project.to_string(), branch))
                .and_then(|v| {
                    // Times are nondecreasing in seq order (engine invariant).
                    let n = v.partition_point(|l| l.time <= at);
                    n.checked_sub(1).map(|i| CommitInfo {
                        seq: v[i].seq,
                        time: v[i].time,
                    })
                }))
        })
    }

    fn log_stats<'a>(&'a self, project: &'a str, branch: BranchId) -> StoreFuture<'a, LogStats> {
        Box::pin(async move {
            let index = self.shared.index();
            let Some(v) = index.commits.get(&(project.to_string(), branch)) else {
                return Ok(LogStats::default());
            };
            let info = |l: &Loc| CommitInfo {
                seq: l.seq,
                time: l.time,
            };
            Ok(LogStats {
                first: v.first().map(info),
                last: v.last().map(info),
                commits: v.len() as u64,
                bytes: v
                    .iter()
                    .map(|l| u64::from(l.len) + l.chunks.map_or(0, |c| c.bytes))
                    .sum(),
            })
        })
    }

    fn append_catalog<'a>(
        &'a self,
        project: &'a str,
        records: &'a [CatalogRecord],
    ) -> StoreFuture<'a, usize> {
        Box::pin(async move {
            // One by one: this process is the store's only writer, so a
            // taken seq can only be the first's (another handle of it).
            for (i, rec) in records.iter().enumerate() {
                let payload = encode_doc(&record::catalog_to_doc(project, rec), "catalog")?;
                let appended = self
                    .submit(
                        payload,
                        None,
                        Payload::Catalog {
                            project: project.to_string(),
                            seq: rec.seq,
                        },
                    )
                    .await;
                match appended {
                    Ok(_) => {}
                    Err(WalError::CatalogConflict { .. }) if i > 0 => return Ok(i),
                    Err(e) => return Err(e),
                }
            }
            Ok(records.len())
        })
    }

    fn read_catalog<'a>(
        &'a self,
        project: &'a str,
        after: Seq,
    ) -> StoreFuture<'a, Vec<CatalogRecord>> {
        Box::pin(async move {
            let locs: Vec<Loc> = {
                let index = self.shared.index();
                match index.catalog.get(project) {
                    Some(v) => {
                        let start = v.partition_point(|l| l.seq <= after);
                        v[start..].to_vec()
                    }
                    None => Vec::new(),
                }
            };
            locs.iter()
                .map(|loc| record::catalog_from_doc(&self.shared.read_frame(loc)?))
                .collect()
        })
    }

    fn put_snapshot<'a>(
        &'a self,
        project: &'a str,
        mut snap: SnapshotStream,
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let dir = self.snapshot_dir(project, snap.branch);
            let (branch, seq) = (snap.branch, snap.seq);
            let unique = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let (path, len) = tokio::task::spawn_blocking(move || -> Result<(PathBuf, u64)> {
                create_dir(&dir)?;
                let path = dir.join(format!("{:020}.snap", seq.0));
                if let Ok(there) = fs::metadata(&path) {
                    // Snapshots at one point are equal: the one there will
                    // do (dropping the upload stops its encoder).
                    return Ok((path, there.len()));
                }
                // Unique per writer: two handles may snapshot the same point at once.
                let tmp = dir.join(format!("{:020}.{}.{unique}.tmp", seq.0, std::process::id()));
                let len = match write_snapshot_file(&tmp, &mut snap) {
                    Ok(len) => len,
                    Err(e) => {
                        // Never renamed: no reader saw it.
                        let _ = fs::remove_file(&tmp);
                        return Err(e);
                    }
                };
                fs::rename(&tmp, &path).map_err(|e| WalError::io(&path, e))?;
                fsync_dir(&dir)?;
                Ok((path, len))
            })
            .await
            .map_err(|_| WalError::Closed("snapshot writer task failed"))??;
            self.shared
                .index()
                .snapshots
                .entry((project.to_string(), branch))
                .or_default()
                .insert(seq, path);
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
            let found = {
                let index = self.shared.index();
                index
                    .snapshots
                    .get(&(project.to_string(), branch))
                    .and_then(|m| m.range(after.next()..=upto).next_back())
                    .map(|(s, p)| (*s, p.clone()))
            };
            let Some((seq, path)) = found else {
                return Ok(None);
            };
            let (tx, stream) = SnapshotStream::channel(branch, seq);
            tokio::task::spawn_blocking(move || {
                let read = read_snapshot_file(&path, &tx);
                tx.blocking_finish(read);
            });
            Ok(Some(stream))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn commit(seq: u64) -> Commit {
        Commit {
            branch: BranchId(1),
            seq: Seq(seq),
            time: CommitTime(seq as i64),
            actor: "t".into(),
            ops: Vec::new(),
            seal: None,
            retries: Vec::new(),
        }
    }

    fn encoded(seq: u64) -> EncodedCommit {
        EncodedCommit::new(commit(seq)).unwrap()
    }

    /// Record frames of commits `seqs`, as a batch body.
    fn body(seqs: std::ops::RangeInclusive<u64>) -> (u32, Vec<u8>) {
        let mut out = Vec::new();
        let mut n = 0;
        for s in seqs {
            let d = record::commit_to_doc("p", &commit(s)).unwrap();
            // Padding in the actor spreads the batch over several pages.
            let mut d = d;
            d.insert("pad", "x".repeat(3000));
            frame(&d.to_vec().unwrap(), &mut out);
            n += 1;
        }
        (n, out)
    }

    /// Three acknowledged commits, then `tail` appended to the segment;
    /// the head seq after reopening (or the error).
    async fn reopen_with_tail(tail: &[u8]) -> Result<Option<Seq>> {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            for s in 1..=3 {
                store.append_commit("p", &encoded(s)).await.unwrap();
            }
        }
        let seg = segment_path(dir.path(), 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(tail).unwrap();
        drop(f);
        let store = EmbeddedStore::open(dir.path())?;
        let stats = store.log_stats("p", BranchId(1)).await?;
        Ok(stats.last.map(|l| l.seq))
    }

    #[tokio::test]
    async fn a_torn_multi_frame_batch_is_cut_whole() {
        let (n, b) = body(4..=7);
        let mut whole = Vec::new();
        batch_frame(n, &b, &mut whole);
        assert!(whole.len() > 3 * 4096, "spans pages");
        // Whole: all four commits are there.
        assert_eq!(reopen_with_tail(&whole).await.unwrap(), Some(Seq(7)));
        // Cut short anywhere: gone whole (not the first frames of it).
        for cut in [10, BATCH_HEADER + 100, whole.len() / 2, whole.len() - 1] {
            let got = reopen_with_tail(&whole[..cut]).await.unwrap();
            assert_eq!(got, Some(Seq(3)), "cut at {cut}");
        }
        // A hole of zeros in the middle (pages written out of order).
        let mut holed = whole.clone();
        holed[4096..8192].fill(0);
        assert_eq!(reopen_with_tail(&holed).await.unwrap(), Some(Seq(3)));
        // The header's page lost, the rest written: still torn.
        let mut headless = whole.clone();
        headless[..BATCH_HEADER].fill(0);
        assert_eq!(reopen_with_tail(&headless).await.unwrap(), Some(Seq(3)));
    }

    #[tokio::test]
    async fn damage_followed_by_an_intact_batch_is_corruption() {
        let (n, b) = body(4..=5);
        let mut first = Vec::new();
        batch_frame(n, &b, &mut first);
        let (n2, b2) = body(6..=6);
        let mut second = Vec::new();
        batch_frame(n2, &b2, &mut second);
        // A damaged batch with an intact one after it was not torn: it was
        // written, fsynced and followed by more.
        let mut tail = first.clone();
        tail[..BATCH_HEADER].fill(0);
        tail.extend_from_slice(&second);
        let e = reopen_with_tail(&tail).await.unwrap_err();
        assert!(matches!(e, WalError::Corrupt { .. }), "{e}");
        let mut tail = first.clone();
        let mid = BATCH_HEADER + 50;
        tail[mid] ^= 0xff;
        tail.extend_from_slice(&second);
        let e = reopen_with_tail(&tail).await.unwrap_err();
        assert!(
            matches!(&e, WalError::Corrupt { reason, .. } if reason.contains("checksum")),
            "{e}"
        );
    }

    /// Commit `seq` with enough documents for a body of tens of KiB.
    fn large(seq: u64) -> Commit {
        let ns = crate::types::Namespace::new("db", "c");
        let mut c = commit(seq);
        c.ops = (0..60)
            .map(|i| crate::record::LoggedOp {
                op: crate::record::DocOp::Put {
                    ns: ns.clone(),
                    id: bson::Bson::Int32(i),
                    doc: crate::rawdoc::encode(
                        &bson::doc! {"_id": i, "seq": seq as i64, "pad": "z".repeat(700)},
                    )
                    .unwrap(),
                },
                pre_image: Some(crate::rawdoc::encode(&bson::doc! {"_id": i}).unwrap()),
            })
            .collect();
        c
    }

    /// `large(seq)` in chunks of 4 KiB.
    fn chunked(seq: u64) -> EncodedCommit {
        EncodedCommit::with_sizes(large(seq), 1024, 4096).unwrap()
    }

    fn without_pre_images(mut c: Commit) -> Commit {
        c.ops.iter_mut().for_each(|o| o.pre_image = None);
        c
    }

    #[tokio::test]
    async fn a_chunked_commit_round_trips_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let e = chunked(2);
        let count = e.chunks().unwrap().count;
        assert!(count > 5, "{count} chunks");
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.append_commit("p", &encoded(1)).await.unwrap();
            store.append_commit("p", &e).await.unwrap();
            store.append_commit("p", &encoded(3)).await.unwrap();
            // The loser of seq 2 is refused before anything is written.
            let before = std::fs::metadata(segment_path(dir.path(), 1))
                .unwrap()
                .len();
            let lost = store.append_commit("p", &chunked(2)).await.unwrap_err();
            assert!(matches!(lost, WalError::Conflict { .. }), "{lost}");
            assert_eq!(
                std::fs::metadata(segment_path(dir.path(), 1))
                    .unwrap()
                    .len(),
                before
            );
            let got = store
                .read_commits("p", BranchId(1), Seq(0), Seq::MAX, 10)
                .await
                .unwrap();
            assert_eq!(got.len(), 3);
            assert!(!got.more);
            assert_eq!(got[1], without_pre_images(large(2)));
        }
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let got = store
            .read_commits("p", BranchId(1), Seq(1), Seq(2), 10)
            .await
            .unwrap();
        assert_eq!(got.commits, vec![without_pre_images(large(2))]);
        let stats = store.log_stats("p", BranchId(1)).await.unwrap();
        assert_eq!(stats.commits, 3);
        assert!(stats.bytes > e.body_len() as u64, "{stats:?}");
    }

    /// The bytes of one batch holding the chunked commit 4.
    async fn chunked_batch() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let before = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len() as usize;
        store.append_commit("p", &chunked(4)).await.unwrap();
        drop(store);
        std::fs::read(segment_path(dir.path(), 1)).unwrap()[before..].to_vec()
    }

    #[tokio::test]
    async fn a_torn_chunked_commit_is_cut_whole() {
        let batch = chunked_batch().await;
        assert!(batch.len() > 10 * 4096);
        assert_eq!(reopen_with_tail(&batch).await.unwrap(), Some(Seq(4)));
        // Cut anywhere (in its chunks, before its commit record): gone
        // whole, never a commit without its chunks or chunks alone.
        for cut in [
            BATCH_HEADER + 10,
            batch.len() / 3,
            batch.len() - 200,
            batch.len() - 1,
        ] {
            assert_eq!(
                reopen_with_tail(&batch[..cut]).await.unwrap(),
                Some(Seq(3)),
                "cut at {cut}"
            );
        }
        let mut holed = batch.clone();
        holed[8192..12288].fill(0);
        assert_eq!(reopen_with_tail(&holed).await.unwrap(), Some(Seq(3)));
    }

    #[tokio::test]
    async fn chunks_without_their_commit_are_corruption() {
        // An intact batch (right checksums) whose chunk records are not
        // followed by the commit naming them: a writer bug, refused on open.
        let e = chunked(4);
        let mut body = Vec::new();
        let mut n = 0;
        for k in 0..e.chunks().unwrap().count {
            let (prefix, data) = e.chunk_record_parts("p", k, None).unwrap();
            let mut payload = prefix;
            payload.extend_from_slice(data);
            payload.push(0);
            frame(&payload, &mut body);
            n += 1;
        }
        let (m, plain) = super::tests::body(4..=4);
        body.extend_from_slice(&plain);
        let mut tail = Vec::new();
        batch_frame(n + m, &body, &mut tail);
        let (n2, b2) = super::tests::body(5..=5);
        batch_frame(n2, &b2, &mut tail);
        let err = reopen_with_tail(&tail).await.unwrap_err();
        assert!(
            matches!(&err, WalError::Corrupt { reason, .. } if reason.contains("not followed by their commit")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn old_segments_of_bare_frames_are_read_and_never_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        let mut v1 = MAGIC_V1.to_vec();
        for s in 1..=2 {
            let d = record::commit_to_doc("p", &commit(s)).unwrap();
            frame(&d.to_vec().unwrap(), &mut v1);
        }
        std::fs::write(segment_path(dir.path(), 1), &v1).unwrap();
        {
            let store = EmbeddedStore::open(dir.path()).unwrap();
            store.append_commit("p", &encoded(3)).await.unwrap();
            let got = store
                .read_commits("p", BranchId(1), Seq(0), Seq::MAX, 10)
                .await;
            assert_eq!(got.unwrap().len(), 3);
        }
        assert_eq!(std::fs::read(segment_path(dir.path(), 1)).unwrap(), v1);
        assert!(segment_path(dir.path(), 2).exists());
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let stats = store.log_stats("p", BranchId(1)).await.unwrap();
        assert_eq!(stats.commits, 3);
    }
}
