//! Every limit a request is held to, in one place: the constants and the
//! check functions that the wire decoder, the query engine, the write path
//! and the connection loop call. Each limit is MongoDB's, with MongoDB's
//! error code and message, so a client sees what mongod would tell it.
//!
//! | limit | value | enforced in | code |
//! | --- | --- | --- | --- |
//! | nesting of a message's documents | 200 levels (`maxBSONDepth`) | `wire::message` before parsing, with [`raw_depth`] | Overflow (15) |
//! | size of a message's documents | 16 MiB + 16 KiB | `wire::message` | BSONObjectTooLarge (10334) |
//! | nesting of a stored document | 100 levels | `commands::write::put` via [`check_storage_depth`] | Overflow (15) |
//! | size of a document to insert (as sent) | 16 MiB | `commands::write::insert` via [`check_insert_size`] | BadValue (2) "object to insert too large" |
//! | size of a document an update produces | 16 MiB | `commands::write::put`, `query::update` via [`update_too_large`] | 17419 "Resulting document after update is larger than 16777216" |
//! | size of a document an upsert inserts | 16 MiB | `commands::write::put` via [`check_upsert_size`] | 17420 "Document to upsert is larger than 16777216" |
//! | statements in one insert, update or delete | 100,000 (`maxWriteBatchSize`) | `commands::write` via [`check_write_batch`] | InvalidLength (16) |
//! | bytes one commit logs (the documents a write writes and the pre-images they replace) | 512 MiB ([`MAX_COMMIT_BYTES`], `--max-commit-bytes`) | `argon_wal::Transaction`, set through `WalOptions::max_commit_bytes`; `commands::batch` cuts a larger write command into parts | a write command: committed in parts; a transaction statement: ExceededMemoryLimit (146) |
//! | bytes one multi-document transaction logs | 256 MiB ([`MAX_TRANSACTION_BYTES`]) | `commands::commit_write` via [`check_transaction_size`] | TransactionTooLarge (257) |
//! | bytes all open transactions log together | 1 GiB ([`MAX_OPEN_TRANSACTION_BYTES`]) | `session::TxnBudget`, charged after each statement | ExceededMemoryLimit (146) |
//! | query tree depth | 100 | `query::filter` | BadValue (2) |
//! | expression depth | 200 | `query::expr` | Overflow (15) |
//! | dotted path components | 200 (projection: 100) | `query::path`, `query::projection` | Overflow (15), 5729100 |
//! | array backfill by an update | 1,500,000 elements | `query::path::set` | CannotBackfillArray (34) |
//! | a document an update's backfills grow | 16 MiB, checked as it grows | `query::update` | 17419 (as above) |
//! | a value built by an expression or accumulator | 16 MiB | `query::expr`, `query::aggregate` | ExceededMemoryLimit (146) |
//! | a document built by a pipeline stage | 16 MiB, 200 levels | `query::aggregate`, `query::projection` | BSONObjectTooLarge (10334), Overflow (15) |
//! | memory of one blocking stage (sort, `$group`, `$lookup`'s hash table) | 100 MiB (`--max-blocking-sort-bytes`), then spill | `spill`, `query::aggregate` | QueryExceededMemoryLimitNoDiskUseAllowed (292) with `allowDiskUse: false` |
//! | documents one `$lookup` joins to one document | 16 MiB + 16 KiB | `query::aggregate::lookup` | 4568 |
//! | pipeline length | 1000 stages | `query::aggregate` | 7749501 |
//! | message size | 48,000,000 bytes (also OP_COMPRESSED's uncompressed size) | `wire` | closes the connection |
//! | connections | `--max-connections`, default 1000 | `server` | the excess connection is closed |
//! | a SASL payload (`saslStart`, `saslContinue`) | 8 KiB ([`MAX_SASL_PAYLOAD`]) | `commands::sasl` | AuthenticationFailed (18) |
//! | a stored SCRAM iteration count | 4096 ..= 1,000,000 | `auth::scram` | AuthenticationFailed (18) / BadValue (2) |
//! | users of a project | 10,000 ([`MAX_USERS`]) | `commands::users` | BadValue (2) |
//! | a stored user (roles, customData, keys) | 64 KiB ([`MAX_USER_BYTES`]) | `commands::users` | BadValue (2) |
//! | a partial frame | `--frame-timeout-ms`, default 60 s | `server` | the connection is closed |

use std::time::Duration;

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// MongoDB's `maxBSONDepth`: levels of nesting below a message's top-level
/// document (a flat document has none).
pub const MAX_BSON_DEPTH: usize = 200;

/// `BSONDepth::getMaxDepthForUserStorage()`: a stored document may have at
/// most this many levels, counting its top level; empty embedded documents
/// and arrays do not count.
pub const MAX_STORAGE_DEPTH: usize = 100;

/// `BSONObjMaxUserSize`: the largest document stored or built.
pub const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// `BSONObjMaxInternalSize`: the largest document in a message (a command
/// carries a little more than the document it inserts).
pub const MAX_MESSAGE_DOCUMENT_SIZE: usize = MAX_DOCUMENT_SIZE + 16 * 1024;

/// The largest message accepted or sent (`maxMessageSizeBytes`); also the
/// most an OP_COMPRESSED message may decompress to.
pub const MAX_MESSAGE_SIZE: usize = 48_000_000;

/// `maxWriteBatchSize`: the most statements one insert, update or delete
/// may carry (drivers split larger bulk writes by it, as `hello` says).
pub const MAX_WRITE_BATCH_SIZE: usize = 100_000;

/// The most bytes one commit may log by default (`serve
/// --max-commit-bytes`): the documents it writes and the pre-images they
/// replace or delete (`argon_wal::Transaction::logged_bytes`). Commits of
/// any size are stored (as several records); this bounds memory: building,
/// storing and applying a commit of B bytes holds about 3 B at its peak
/// (see `docs/architecture.md`, "Memory"), and each branch builds one
/// commit at a time. A write command that logs more is committed in
/// several parts (`commands::batch`), as MongoDB applies multi-document
/// writes document by document; one that fits is one atomic commit.
pub const MAX_COMMIT_BYTES: usize = 512 * 1024 * 1024;

/// The least `--max-commit-bytes` may be: a part of a write command must
/// hold its largest document op (a 16 MiB document and its 16 MiB
/// pre-image, `commands::batch::STATEMENT_HEADROOM`) and more.
pub const MIN_COMMIT_BYTES: usize = 64 * 1024 * 1024;

/// The most bytes one multi-document transaction may log (as
/// [`MAX_COMMIT_BYTES`]). Half of it, because a transaction is held twice
/// while it commits: its own writes, and their replay onto the head. MongoDB
/// (since 4.2) lets a transaction exceed 16 MB; this bound is Argon's
/// memory budget for one.
pub const MAX_TRANSACTION_BYTES: usize = MAX_COMMIT_BYTES / 2;

/// The most bytes all open transactions of the process may log together
/// (`session::TxnBudget`): with at most one commit being built per branch,
/// the bound on what writes in flight hold, whatever the number of sessions.
pub const MAX_OPEN_TRANSACTION_BYTES: usize = 1024 * 1024 * 1024;

/// Most null elements an update may add to an array to reach an index
/// (`kMaxPaddingAllowed` in MongoDB's path support).
pub const MAX_ARRAY_BACKFILL: usize = 1_500_000;

/// The largest value (array, string, document) an expression or an
/// accumulator builds.
pub const MAX_BUILT_VALUE_SIZE: usize = MAX_DOCUMENT_SIZE;

/// What one blocking stage (a sort, `$group`, `$lookup`'s hash table,
/// `distinct`) holds in memory before it spills (MongoDB's 100 MiB; `serve
/// --max-blocking-sort-bytes` sets it, `spill` enforces it).
pub const MAX_BLOCKING_STAGE_BYTES: usize = 100 * 1024 * 1024;

/// `BSONObjMaxInternalSize`: the most the documents one `$lookup` joins to
/// one document may add up to (code 4568).
pub const MAX_LOOKUP_MATCHED_SIZE: usize = MAX_MESSAGE_DOCUMENT_SIZE;

/// `kMaximumTreeDepth` of MongoDB's match expression parser.
pub const MAX_QUERY_TREE_DEPTH: usize = 100;

/// Nesting of an aggregation expression (bounded by the message's nesting
/// too; this is the engine's own guard).
pub const MAX_EXPRESSION_DEPTH: usize = MAX_BSON_DEPTH;

/// Components of a dotted path (MongoDB's `FieldPath`).
pub const MAX_PATH_COMPONENTS: usize = MAX_BSON_DEPTH;

/// Components of a projection path (MongoDB checks these against the
/// storage depth).
pub const MAX_PROJECTION_PATH_COMPONENTS: usize = MAX_STORAGE_DEPTH;

/// `internalPipelineLengthLimit`.
pub const MAX_PIPELINE_STAGES: usize = 1000;

/// `internalMaxSubPipelineViewDepth`: nesting of sub-pipelines
/// (`$lookup` pipelines, `$facet`), when they exist.
pub const MAX_SUB_PIPELINE_DEPTH: usize = 20;

/// The largest SCRAM message a client may send: real ones are under 200
/// bytes (a user name, a nonce, a proof).
pub const MAX_SASL_PAYLOAD: usize = 8 * 1024;

/// Iteration counts a stored SCRAM credential may have: RFC 7677's minimum,
/// and a ceiling so one login cannot occupy a core for long.
/// Kept in `argon_auth::scram`, which checks them.
pub const MIN_SCRAM_ITERATIONS: u32 = argon_auth::scram::MIN_ITERATIONS;
pub const MAX_SCRAM_ITERATIONS: u32 = argon_auth::scram::MAX_ITERATIONS;

/// Users one project may have (each is in every handle's memory).
pub const MAX_USERS: usize = 10_000;

/// The largest stored user document: every sidecar of the project holds
/// every user in memory, so one user's roles and `customData` stay small.
pub const MAX_USER_BYTES: usize = 64 * 1024;

/// Default of `serve --max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1000;

/// Default of `serve --frame-timeout-ms`: how long a started message may
/// take to arrive completely.
pub const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(60);

/// Stack of each server thread. Parsing and evaluating a request recurses
/// at most [`MAX_BSON_DEPTH`] levels (every limit above holds it there);
/// this leaves room for that even in a debug build, whose frames are
/// several times larger than a release build's.
pub const WORKER_STACK_SIZE: usize = 16 * 1024 * 1024;

/// Runs `f` on a thread with [`WORKER_STACK_SIZE`] of stack (tests that
/// go to the depth limits use it, as the server's threads have it).
pub fn with_worker_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match std::thread::Builder::new()
        .stack_size(WORKER_STACK_SIZE)
        .spawn(f)
        .map(|h| h.join())
    {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => panic!("cannot start a thread: {e}"),
    }
}

/// What a connection reads at most per system call, so a buffer grows with
/// the bytes that arrive, never with the length a header claims.
pub const READ_CHUNK: usize = 64 * 1024;

// ---- nesting of raw BSON ---------------------------------------------------

/// The outcome of [`raw_depth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawDepth {
    /// The document nests `n` levels below its top level, at most the limit.
    Within(usize),
    /// It nests deeper than the limit (the walk stopped there).
    Exceeds,
    /// The bytes are not a well-formed BSON document; the full parser
    /// reports what is wrong.
    Malformed,
}

struct Frame {
    end: usize,
    /// The frame of a code-with-scope value around its scope document
    /// (MongoDB counts it as a level of its own).
    code_with_scope: bool,
}

/// Measures how deeply the BSON document at the start of `bytes` nests,
/// without recursion: an explicit stack of open documents over the raw
/// bytes. Stops as soon as the nesting exceeds `max` levels below the top
/// level. Never panics, whatever the bytes.
pub fn raw_depth(bytes: &[u8], max: usize) -> RawDepth {
    match walk_raw(bytes, max) {
        Ok(d) => d,
        Err(Malformed) => RawDepth::Malformed,
    }
}

struct Malformed;

fn read_i32(bytes: &[u8], at: usize) -> Result<i32, Malformed> {
    let b = bytes
        .get(at..at.checked_add(4).ok_or(Malformed)?)
        .ok_or(Malformed)?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn walk_raw(bytes: &[u8], max: usize) -> Result<RawDepth, Malformed> {
    let len = read_i32(bytes, 0)?;
    let len = usize::try_from(len).map_err(|_| Malformed)?;
    if len < 5 || len > bytes.len() {
        return Err(Malformed);
    }
    let mut stack = vec![Frame {
        end: len,
        code_with_scope: false,
    }];
    let mut deepest = 0usize;
    let mut pos = 4usize;
    loop {
        let end = stack.last().ok_or(Malformed)?.end;
        if pos >= end {
            return Err(Malformed);
        }
        let kind = bytes[pos];
        pos += 1;
        if kind == 0 {
            if pos != end {
                return Err(Malformed);
            }
            stack.pop();
            while let Some(f) = stack.last() {
                if !f.code_with_scope {
                    break;
                }
                if pos != f.end {
                    return Err(Malformed);
                }
                stack.pop();
            }
            if stack.is_empty() {
                return Ok(RawDepth::Within(deepest));
            }
            continue;
        }
        // The field name.
        let name_len = bytes[pos..end]
            .iter()
            .position(|&b| b == 0)
            .ok_or(Malformed)?;
        pos += name_len + 1;
        let string_len = |at: usize| -> Result<usize, Malformed> {
            let n = read_i32(bytes, at)?;
            let n = usize::try_from(n).map_err(|_| Malformed)?;
            if n < 1 {
                return Err(Malformed);
            }
            Ok(4 + n)
        };
        let skip = match kind {
            0x01 | 0x09 | 0x11 | 0x12 => 8,
            0x02 | 0x0D | 0x0E => string_len(pos)?,
            0x05 => {
                let n = read_i32(bytes, pos)?;
                5 + usize::try_from(n).map_err(|_| Malformed)?
            }
            0x06 | 0x0A | 0x7F | 0xFF => 0,
            0x07 => 12,
            0x08 => 1,
            0x0B => {
                let first = bytes
                    .get(pos..end)
                    .ok_or(Malformed)?
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(Malformed)?;
                let second = bytes
                    .get(pos + first + 1..end)
                    .ok_or(Malformed)?
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(Malformed)?;
                first + 1 + second + 1
            }
            0x0C => string_len(pos)? + 12,
            0x10 => 4,
            0x13 => 16,
            0x03 | 0x04 | 0x0F => {
                let mut at = pos;
                if kind == 0x0F {
                    let total = read_i32(bytes, at)?;
                    let total = usize::try_from(total).map_err(|_| Malformed)?;
                    let cws_end = at.checked_add(total).ok_or(Malformed)?;
                    if total < 14 || cws_end > end {
                        return Err(Malformed);
                    }
                    stack.push(Frame {
                        end: cws_end,
                        code_with_scope: true,
                    });
                    at += 4;
                    at += string_len(at)?;
                }
                let n = read_i32(bytes, at)?;
                let n = usize::try_from(n).map_err(|_| Malformed)?;
                let doc_end = at.checked_add(n).ok_or(Malformed)?;
                let parent_end = stack.last().ok_or(Malformed)?.end;
                if n < 5 || doc_end > parent_end {
                    return Err(Malformed);
                }
                stack.push(Frame {
                    end: doc_end,
                    code_with_scope: false,
                });
                let depth = stack.len() - 1;
                if depth > max {
                    return Ok(RawDepth::Exceeds);
                }
                deepest = deepest.max(depth);
                pos = at + 4;
                continue;
            }
            _ => return Err(Malformed),
        };
        pos = pos.checked_add(skip).ok_or(Malformed)?;
        if pos > end {
            return Err(Malformed);
        }
    }
}

/// Checks one document of an incoming message (a command body or a
/// document-sequence item) before it is parsed: at most
/// [`MAX_MESSAGE_DOCUMENT_SIZE`] bytes and [`MAX_BSON_DEPTH`] levels.
/// Malformed bytes pass here; the parser names what is wrong with them.
pub fn check_message_document(bytes: &[u8]) -> Result<()> {
    let declared = read_i32(bytes, 0).unwrap_or(0);
    if declared > 0 && declared as usize > MAX_MESSAGE_DOCUMENT_SIZE {
        return Err(too_large_object(declared as usize));
    }
    match raw_depth(bytes, MAX_BSON_DEPTH) {
        RawDepth::Exceeds => Err(CommandError::new(
            ErrorCode::Overflow,
            format!("BSONObj exceeds maximum nested object depth of {MAX_BSON_DEPTH}"),
        )),
        RawDepth::Within(_) | RawDepth::Malformed => Ok(()),
    }
}

fn too_large_object(size: usize) -> CommandError {
    CommandError::new(
        ErrorCode::BSONObjectTooLarge,
        format!(
            "BSONObj size: {size} ({size:#x}) is invalid. Size must be between 0 and {MAX_MESSAGE_DOCUMENT_SIZE}(16MB)"
        ),
    )
}

// ---- stored documents --------------------------------------------------------

/// Levels of `doc`, counting its top level, as MongoDB's storage check
/// counts them: empty embedded documents and arrays add no level. Walks
/// with an explicit stack.
pub fn storage_depth(doc: &Document) -> usize {
    enum It<'a> {
        Doc(bson::document::Iter<'a>),
        Arr(std::slice::Iter<'a, Bson>),
    }
    let mut stack = vec![It::Doc(doc.iter())];
    let mut deepest = 1usize;
    while let Some(top) = stack.last_mut() {
        let next = match top {
            It::Doc(i) => i.next().map(|(_, v)| v),
            It::Arr(i) => i.next(),
        };
        match next {
            None => {
                stack.pop();
            }
            Some(Bson::Document(d)) if !d.is_empty() => {
                stack.push(It::Doc(d.iter()));
                deepest = deepest.max(stack.len());
            }
            Some(Bson::Array(a)) if !a.is_empty() => {
                stack.push(It::Arr(a.iter()));
                deepest = deepest.max(stack.len());
            }
            Some(_) => {}
        }
    }
    deepest
}

/// Whether a value nests more than `max` documents and arrays inside each
/// other. Iterative and stopping at `max + 1`, so it answers for a value
/// too deep for a recursive walk.
pub fn value_depth_exceeds(v: &Bson, max: usize) -> bool {
    enum It<'a> {
        Doc(bson::document::Iter<'a>),
        Arr(std::slice::Iter<'a, Bson>),
    }
    let mut stack = match v {
        Bson::Document(d) => vec![It::Doc(d.iter())],
        Bson::Array(a) => vec![It::Arr(a.iter())],
        _ => return false,
    };
    loop {
        if stack.len() > max {
            return true;
        }
        let Some(top) = stack.last_mut() else {
            return false;
        };
        let next = match top {
            It::Doc(i) => i.next().map(|(_, v)| v),
            It::Arr(i) => i.next(),
        };
        match next {
            None => {
                stack.pop();
            }
            Some(Bson::Document(d)) => stack.push(It::Doc(d.iter())),
            Some(Bson::Array(a)) => stack.push(It::Arr(a.iter())),
            Some(_) => {}
        }
    }
}

/// A document an insert carries, measured as sent (before an `_id` is
/// added), as mongod's `fixDocumentForInsert` measures it: at most
/// [`MAX_DOCUMENT_SIZE`] bytes, else `BadValue`.
pub fn check_insert_size(doc: &Document) -> Result<()> {
    let size = document_size(doc);
    if size > MAX_DOCUMENT_SIZE {
        return Err(CommandError::bad_value(format!(
            "object to insert too large. size in bytes: {size}, max size: {MAX_DOCUMENT_SIZE}"
        )));
    }
    Ok(())
}

/// MongoDB's error (17419) for an update whose result is larger than
/// [`MAX_DOCUMENT_SIZE`].
pub fn update_too_large() -> CommandError {
    CommandError::new(
        ErrorCode::Location17419,
        format!("Resulting document after update is larger than {MAX_DOCUMENT_SIZE}"),
    )
}

/// The document an update produced (`encoded_len` bytes).
pub fn check_update_size(encoded_len: usize) -> Result<()> {
    if encoded_len > MAX_DOCUMENT_SIZE {
        return Err(update_too_large());
    }
    Ok(())
}

/// The document an upsert inserts (`encoded_len` bytes): MongoDB's 17420.
pub fn check_upsert_size(encoded_len: usize) -> Result<()> {
    if encoded_len > MAX_DOCUMENT_SIZE {
        return Err(CommandError::new(
            ErrorCode::Location17420,
            format!("Document to upsert is larger than {MAX_DOCUMENT_SIZE}"),
        ));
    }
    Ok(())
}

/// A write command's statement count: 1 to [`MAX_WRITE_BATCH_SIZE`].
pub fn check_write_batch(statements: usize) -> Result<()> {
    if statements == 0 || statements > MAX_WRITE_BATCH_SIZE {
        return Err(CommandError::new(
            ErrorCode::InvalidLength,
            format!(
                "Write batch sizes must be between 1 and {MAX_WRITE_BATCH_SIZE}. Got {statements} operations."
            ),
        ));
    }
    Ok(())
}

/// A multi-document transaction's writes so far (`logged` bytes, see
/// [`MAX_TRANSACTION_BYTES`]).
pub fn check_transaction_size(logged: usize) -> Result<()> {
    if logged > MAX_TRANSACTION_BYTES {
        return Err(CommandError::new(
            ErrorCode::TransactionTooLarge,
            format!(
                "Total size of all transaction operations must be less than {MAX_TRANSACTION_BYTES}. Actual size is {logged}"
            ),
        ));
    }
    Ok(())
}

/// A document about to be stored (inserted, updated, upserted): at most
/// [`MAX_STORAGE_DEPTH`] levels. Its size is checked by the caller, which
/// knows which of MongoDB's errors applies (insert, update or upsert).
pub fn check_storage_depth(doc: &Document) -> Result<()> {
    if storage_depth(doc) > MAX_STORAGE_DEPTH {
        return Err(CommandError::new(
            ErrorCode::Overflow,
            format!("Document exceeds maximum nesting depth of {MAX_STORAGE_DEPTH}"),
        ));
    }
    Ok(())
}

// ---- documents and values built while answering ------------------------------

/// The BSON size of `v` as an element value (a document's or array's full
/// encoding, a string's length prefix and bytes, ...). Walks with an
/// explicit stack, so any nesting is fine.
pub fn bson_size(v: &Bson) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<&Bson> = vec![v];
    while let Some(v) = stack.pop() {
        total += match v {
            Bson::Document(d) => {
                for (k, e) in d {
                    total += 2 + k.len();
                    stack.push(e);
                }
                5
            }
            Bson::Array(a) => {
                for (i, e) in a.iter().enumerate() {
                    total += 2 + decimal_digits(i);
                    stack.push(e);
                }
                5
            }
            other => scalar_size(other),
        };
    }
    total
}

/// The BSON size of a document.
pub fn document_size(d: &Document) -> usize {
    let mut total = 5usize;
    for (k, v) in d {
        total += 2 + k.len() + bson_size(v);
    }
    total
}

fn decimal_digits(mut i: usize) -> usize {
    let mut n = 1;
    while i >= 10 {
        i /= 10;
        n += 1;
    }
    n
}

fn scalar_size(v: &Bson) -> usize {
    match v {
        Bson::Double(_) | Bson::DateTime(_) | Bson::Timestamp(_) | Bson::Int64(_) => 8,
        Bson::String(s) | Bson::Symbol(s) | Bson::JavaScriptCode(s) => 5 + s.len(),
        Bson::Binary(b) => 5 + b.bytes.len(),
        Bson::ObjectId(_) => 12,
        Bson::Boolean(_) => 1,
        Bson::RegularExpression(r) => r.pattern.as_str().len() + r.options.as_str().len() + 2,
        Bson::JavaScriptCodeWithScope(c) => 4 + 5 + c.code.len() + document_size(&c.scope),
        Bson::Int32(_) => 4,
        Bson::Decimal128(_) => 16,
        Bson::DbPointer(_) => 5 + 64 + 12,
        Bson::Null | Bson::Undefined | Bson::MinKey | Bson::MaxKey => 0,
        Bson::Document(_) | Bson::Array(_) => 5,
    }
}

/// A running size of something being built, failing once it passes its
/// limit, so the builder stops before the memory is spent.
#[derive(Debug, Clone)]
pub struct Budget {
    used: usize,
    limit: usize,
    what: &'static str,
    code: ErrorCode,
}

impl Budget {
    /// A value built by an expression or accumulator (`what` names it, as in
    /// "$concatArrays"): [`MAX_BUILT_VALUE_SIZE`], ExceededMemoryLimit.
    pub fn value(what: &'static str) -> Budget {
        Budget {
            used: 0,
            limit: MAX_BUILT_VALUE_SIZE,
            what,
            code: ErrorCode::ExceededMemoryLimit,
        }
    }

    /// A document a stage builds: [`MAX_DOCUMENT_SIZE`], BSONObjectTooLarge.
    pub fn document(what: &'static str) -> Budget {
        Budget {
            used: 0,
            limit: MAX_DOCUMENT_SIZE,
            what,
            code: ErrorCode::BSONObjectTooLarge,
        }
    }

    pub fn used(&self) -> usize {
        self.used
    }

    /// Adds `bytes`; an error once the total passes the limit.
    pub fn charge(&mut self, bytes: usize) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(self.exceeded(self.used));
        }
        Ok(())
    }

    /// Fails before building `bytes` more, if they would not fit.
    pub fn reserve(&self, bytes: usize) -> Result<()> {
        let total = self.used.saturating_add(bytes);
        if total > self.limit {
            return Err(self.exceeded(total));
        }
        Ok(())
    }

    pub fn exceeded(&self, total: usize) -> CommandError {
        let message = match self.code {
            ErrorCode::BSONObjectTooLarge => format!(
                "{} would build a document of at least {total} bytes; the maximum document size is {} bytes",
                self.what, self.limit
            ),
            _ => format!(
                "{} would use too much memory ({total} bytes) and cannot spill to disk. Memory limit: {} bytes",
                self.what, self.limit
            ),
        };
        CommandError::new(self.code, message)
    }
}

/// A document a pipeline stage produced: at most [`MAX_DOCUMENT_SIZE`]
/// bytes and [`MAX_BSON_DEPTH`] levels below its top, so no later stage or
/// reply works on (or recurses through) more. `stage` names the stage.
pub fn check_built_document(doc: &Document, stage: &'static str) -> Result<()> {
    let mut total = 5usize;
    // (value, depth of the value's container)
    let mut stack: Vec<(&Bson, usize)> = Vec::new();
    for (k, v) in doc {
        total += 2 + k.len();
        stack.push((v, 0));
    }
    while let Some((v, depth)) = stack.pop() {
        match v {
            Bson::Document(d) => {
                if depth + 1 > MAX_BSON_DEPTH {
                    return Err(too_deep_built(stage));
                }
                total += 5;
                for (k, e) in d {
                    total += 2 + k.len();
                    stack.push((e, depth + 1));
                }
            }
            Bson::Array(a) => {
                if depth + 1 > MAX_BSON_DEPTH {
                    return Err(too_deep_built(stage));
                }
                total += 5;
                for (i, e) in a.iter().enumerate() {
                    total += 2 + decimal_digits(i);
                    stack.push((e, depth + 1));
                }
            }
            other => total += scalar_size(other),
        }
        if total > MAX_DOCUMENT_SIZE {
            return Err(Budget::document(stage).exceeded(total));
        }
    }
    Ok(())
}

fn too_deep_built(stage: &str) -> CommandError {
    CommandError::new(
        ErrorCode::Overflow,
        format!(
            "{stage} would build a document that exceeds maximum nested object depth of {MAX_BSON_DEPTH}"
        ),
    )
}

// ---- parse-time limits ---------------------------------------------------------

/// A query (filter) nested `depth` levels (`$and`/`$or`/`$nor`,
/// `$elemMatch`, `$not`) is refused past [`MAX_QUERY_TREE_DEPTH`].
pub fn check_query_depth(depth: usize, at: &Document) -> Result<()> {
    if depth > MAX_QUERY_TREE_DEPTH {
        let mut shown = at.to_string();
        if shown.len() > 120 {
            let mut cut = 120;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
            shown.push_str("...");
        }
        return Err(CommandError::bad_value(format!(
            "exceeded maximum query tree depth of {MAX_QUERY_TREE_DEPTH} at {shown}"
        )));
    }
    Ok(())
}

/// An expression nested deeper than [`MAX_EXPRESSION_DEPTH`].
pub fn check_expression_depth(depth: usize) -> Result<()> {
    if depth > MAX_EXPRESSION_DEPTH {
        return Err(CommandError::new(
            ErrorCode::Overflow,
            format!("expression exceeds maximum nested object depth of {MAX_EXPRESSION_DEPTH}"),
        ));
    }
    Ok(())
}

/// A dotted path with more than [`MAX_PATH_COMPONENTS`] components.
pub fn check_path(path: &str) -> Result<()> {
    if path.bytes().filter(|&b| b == b'.').count() + 1 > MAX_PATH_COMPONENTS {
        return Err(CommandError::new(
            ErrorCode::Overflow,
            "FieldPath is too long",
        ));
    }
    Ok(())
}

/// A projection path with more than [`MAX_PROJECTION_PATH_COMPONENTS`].
pub fn check_projection_path(path: &str) -> Result<()> {
    if path.bytes().filter(|&b| b == b'.').count() + 1 > MAX_PROJECTION_PATH_COMPONENTS {
        return Err(CommandError::new(
            ErrorCode::Location5729100,
            "FieldPath is too long",
        ));
    }
    Ok(())
}

/// An update reaching index `index` of an array of `len` elements would
/// add `index - len` nulls first; more than [`MAX_ARRAY_BACKFILL`] is refused.
pub fn check_backfill(len: usize, index: usize) -> Result<()> {
    if index.saturating_sub(len) > MAX_ARRAY_BACKFILL {
        return Err(CommandError::new(
            ErrorCode::CannotBackfillArray,
            format!("can't backfill more than {MAX_ARRAY_BACKFILL} elements"),
        ));
    }
    Ok(())
}

/// A pipeline of more than [`MAX_PIPELINE_STAGES`] stages.
pub fn check_pipeline_length(stages: usize) -> Result<()> {
    if stages > MAX_PIPELINE_STAGES {
        return Err(CommandError::new(
            ErrorCode::Location7749501,
            format!("Pipeline length must be no longer than {MAX_PIPELINE_STAGES} stages."),
        ));
    }
    Ok(())
}

/// A sub-pipeline nested `depth` levels below the command's pipeline.
pub fn check_sub_pipeline_depth(depth: usize) -> Result<()> {
    if depth > MAX_SUB_PIPELINE_DEPTH {
        return Err(CommandError::new(
            ErrorCode::MaxSubPipelineDepthExceeded,
            format!(
                "Maximum number of nested sub-pipelines exceeded. Limit is {MAX_SUB_PIPELINE_DEPTH}"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn nested(levels: usize) -> Document {
        let mut d = doc! {"x": 1};
        for _ in 0..levels {
            d = doc! {"x": d};
        }
        d
    }

    fn bytes(d: &Document) -> Vec<u8> {
        let mut v = Vec::new();
        d.to_writer(&mut v).unwrap();
        v
    }

    /// Raw nesting without building a `Document` (which would recurse):
    /// `{"x": {"x": ... {"x": 1}}}` with `levels` embedded documents.
    fn raw_nested(levels: usize) -> Vec<u8> {
        let mut inner = bytes(&doc! {"x": 1});
        for _ in 0..levels {
            let mut outer = Vec::with_capacity(inner.len() + 8);
            let len = (4 + 1 + 2 + inner.len() + 1) as i32;
            outer.extend_from_slice(&len.to_le_bytes());
            outer.push(0x03);
            outer.extend_from_slice(b"x\0");
            outer.extend_from_slice(&inner);
            outer.push(0);
            inner = outer;
        }
        inner
    }

    #[test]
    fn raw_depth_counts_levels_below_the_top() {
        assert_eq!(raw_depth(&bytes(&doc! {}), 200), RawDepth::Within(0));
        assert_eq!(raw_depth(&bytes(&doc! {"a": 1}), 200), RawDepth::Within(0));
        assert_eq!(raw_depth(&bytes(&nested(1)), 200), RawDepth::Within(1));
        assert_eq!(raw_depth(&bytes(&nested(200)), 200), RawDepth::Within(200));
        assert_eq!(raw_depth(&bytes(&nested(201)), 200), RawDepth::Exceeds);
        let arrays = doc! {"a": [[1, [2]], {"b": [3]}], "s": "x", "n": null};
        assert_eq!(raw_depth(&bytes(&arrays), 200), RawDepth::Within(3));
        assert_eq!(raw_depth(&bytes(&arrays), 2), RawDepth::Exceeds);
    }

    #[test]
    fn raw_depth_walks_every_type() {
        let d = doc! {
            "d": 1.5, "s": "str", "o": {"k": [1, 2]}, "bin": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1, 2, 3] },
            "u": Bson::Undefined, "oid": bson::oid::ObjectId::new(), "b": true, "dt": bson::DateTime::now(),
            "n": null, "re": bson::Regex { pattern: "a.b".to_string().try_into().unwrap(), options: "i".to_string().try_into().unwrap() },
            "js": Bson::JavaScriptCode("x".into()), "sym": Bson::Symbol("y".into()),
            "cws": Bson::JavaScriptCodeWithScope(bson::JavaScriptCodeWithScope { code: "z".into(), scope: doc! {"q": {"r": 1}} }),
            "i": 1, "ts": bson::Timestamp { time: 1, increment: 2 }, "l": 5i64,
            "dec": bson::Decimal128::from_bytes([0; 16]), "min": Bson::MinKey, "max": Bson::MaxKey,
        };
        // cws counts its own level and its scope's: z -> scope -> {r}
        assert_eq!(raw_depth(&bytes(&d), 200), RawDepth::Within(3));
    }

    #[test]
    fn raw_depth_never_recurses_or_panics() {
        let deep = raw_nested(100_000);
        assert_eq!(raw_depth(&deep, 200), RawDepth::Exceeds);
        assert_eq!(raw_depth(&raw_nested(150), 200), RawDepth::Within(150));
        // Every truncation and corruption of a document is handled.
        let b = bytes(&doc! {"a": {"b": [1, "x"]}, "c": 2.0});
        for cut in 0..b.len() {
            let r = raw_depth(&b[..cut], 200);
            assert_eq!(r, RawDepth::Malformed, "cut at {cut}");
        }
        for i in 0..b.len() {
            for v in [0u8, 1, 0x7f, 0xff, 0x03] {
                let mut c = b.clone();
                c[i] = v;
                let _ = raw_depth(&c, 200);
            }
        }
        assert_eq!(raw_depth(&[], 200), RawDepth::Malformed);
        assert_eq!(
            raw_depth(&[255, 255, 255, 255, 0], 200),
            RawDepth::Malformed
        );
    }

    #[test]
    fn message_documents() {
        assert!(check_message_document(&bytes(&nested(200))).is_ok());
        let e = check_message_document(&raw_nested(20_000)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Overflow);
        let mut huge = (MAX_MESSAGE_DOCUMENT_SIZE as i32 + 1)
            .to_le_bytes()
            .to_vec();
        huge.push(0);
        assert_eq!(
            check_message_document(&huge).unwrap_err().code,
            ErrorCode::BSONObjectTooLarge
        );
    }

    #[test]
    fn storage_depth_as_mongodb_counts_it() {
        assert_eq!(storage_depth(&doc! {}), 1);
        assert_eq!(storage_depth(&doc! {"a": {}}), 1);
        assert_eq!(storage_depth(&doc! {"a": {"b": 1}}), 2);
        assert_eq!(storage_depth(&doc! {"a": [[]]}), 2);
        // nested(n) has n + 1 levels.
        assert!(check_storage_depth(&nested(99)).is_ok());
        assert_eq!(
            check_storage_depth(&nested(100)).unwrap_err().code,
            ErrorCode::Overflow
        );
    }

    #[test]
    fn document_sizes_fail_with_mongodbs_error_for_each_write() {
        // An insert measures the document as sent: 16 MiB is fine, one
        // byte more is BadValue.
        let at = |n: usize| doc! {"s": "x".repeat(n - 4 - 1 - 2 - 4 - 1 - 1)};
        assert_eq!(document_size(&at(MAX_DOCUMENT_SIZE)), MAX_DOCUMENT_SIZE);
        assert!(check_insert_size(&at(MAX_DOCUMENT_SIZE)).is_ok());
        let e = check_insert_size(&at(MAX_DOCUMENT_SIZE + 1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadValue);
        assert_eq!(
            e.message,
            "object to insert too large. size in bytes: 16777217, max size: 16777216"
        );
        assert!(check_update_size(MAX_DOCUMENT_SIZE).is_ok());
        assert_eq!(
            check_update_size(MAX_DOCUMENT_SIZE + 1)
                .unwrap_err()
                .code
                .code(),
            17419
        );
        assert_eq!(
            check_upsert_size(MAX_DOCUMENT_SIZE + 1)
                .unwrap_err()
                .code
                .code(),
            17420
        );
    }

    #[test]
    fn write_batches_hold_1_to_100000_statements() {
        assert!(check_write_batch(1).is_ok());
        assert!(check_write_batch(MAX_WRITE_BATCH_SIZE).is_ok());
        for n in [0, MAX_WRITE_BATCH_SIZE + 1] {
            let e = check_write_batch(n).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidLength);
            assert_eq!(e.code.code(), 16);
            assert_eq!(
                e.message,
                format!("Write batch sizes must be between 1 and 100000. Got {n} operations.")
            );
        }
        assert!(check_transaction_size(MAX_TRANSACTION_BYTES).is_ok());
        assert_eq!(
            check_transaction_size(MAX_TRANSACTION_BYTES + 1)
                .unwrap_err()
                .code,
            ErrorCode::TransactionTooLarge
        );
    }

    #[test]
    fn sizes_match_the_encoding() {
        for d in [
            doc! {},
            doc! {"a": 1, "b": "xyz", "c": [1, 2.5, null, {"d": true}], "e": 5i64},
            nested(30),
            doc! {"arr": (0..123).map(Bson::Int32).collect::<Vec<_>>()},
        ] {
            assert_eq!(document_size(&d), bytes(&d).len(), "{d}");
            assert_eq!(bson_size(&Bson::Document(d.clone())), bytes(&d).len());
        }
    }

    #[test]
    fn budgets_and_built_documents() {
        let mut b = Budget::value("$concat");
        assert!(b.charge(MAX_BUILT_VALUE_SIZE).is_ok());
        let e = b.charge(1).unwrap_err();
        assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
        assert!(e.message.contains("$concat"));
        assert!(
            Budget::value("x")
                .reserve(MAX_BUILT_VALUE_SIZE + 1)
                .is_err()
        );
        assert!(check_built_document(&nested(199), "$project").is_ok());
        assert_eq!(
            check_built_document(&nested(201), "$project")
                .unwrap_err()
                .code,
            ErrorCode::Overflow
        );
        let big = doc! {"s": "x".repeat(MAX_DOCUMENT_SIZE)};
        assert_eq!(
            check_built_document(&big, "$addFields").unwrap_err().code,
            ErrorCode::BSONObjectTooLarge
        );
        let _ = bson!(1);
    }

    #[test]
    fn parse_time_limits() {
        assert!(check_backfill(0, MAX_ARRAY_BACKFILL).is_ok());
        assert_eq!(
            check_backfill(0, 400_000_000).unwrap_err().code,
            ErrorCode::CannotBackfillArray
        );
        assert!(check_backfill(10, MAX_ARRAY_BACKFILL + 10).is_ok());
        assert!(check_pipeline_length(1000).is_ok());
        assert_eq!(
            check_pipeline_length(1001).unwrap_err().code.code(),
            7749501
        );
        assert!(check_path(&vec!["a"; 200].join(".")).is_ok());
        assert!(check_path(&vec!["a"; 201].join(".")).is_err());
        assert!(check_projection_path(&vec!["a"; 101].join(".")).is_err());
        assert!(check_query_depth(100, &doc! {}).is_ok());
        assert!(check_query_depth(101, &doc! {}).is_err());
        assert!(check_sub_pipeline_depth(21).is_err());
    }
}
