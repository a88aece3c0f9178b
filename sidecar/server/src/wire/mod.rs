//! The MongoDB wire protocol: framing (`frame`), message parsing and encoding
//! (`message`), and OP_COMPRESSED (`compression`).
//!
//! Framing only finds message boundaries; parsing turns one framed message into
//! a [`message::Request`]. Both return [`WireError`] for malformed input, which
//! closes that connection only.

pub mod compression;
pub mod frame;
pub mod message;

pub use compression::Compressor;
pub use frame::{Frame, Header, MAX_MESSAGE_SIZE, missing_bytes};
pub use message::{Reply, Request, RequestKind};

/// The opcodes this server reads or writes.
pub mod opcode {
    pub const OP_REPLY: i32 = 1;
    pub const OP_QUERY: i32 = 2004;
    pub const OP_COMPRESSED: i32 = 2012;
    pub const OP_MSG: i32 = 2013;
}

/// Why a message could not be framed or parsed. The text names what is wrong;
/// it is logged and the connection that sent it is closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("message length {0} is smaller than the 16-byte header")]
    LengthTooSmall(i32),
    #[error("message length {0} exceeds the maximum of {MAX_MESSAGE_SIZE} bytes")]
    LengthTooLarge(i64),
    #[error("unsupported opcode {0}")]
    UnsupportedOpcode(i32),
    #[error("{what} is truncated: needed {needed} bytes, {available} available")]
    Truncated {
        what: &'static str,
        needed: usize,
        available: usize,
    },
    #[error("invalid BSON document in {what}: {reason}")]
    InvalidDocument { what: &'static str, reason: String },
    #[error("unterminated C string in {0}")]
    UnterminatedCString(&'static str),
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    #[error("OP_MSG has unknown required flag bits {0:#x}")]
    UnknownRequiredFlags(u32),
    #[error("OP_MSG checksum mismatch: trailer {expected:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { expected: u32, computed: u32 },
    #[error("OP_MSG has {0} body sections; exactly one kind-0 section is required")]
    BodySectionCount(usize),
    #[error("OP_MSG has an unknown section kind {0}")]
    UnknownSectionKind(u8),
    #[error("OP_MSG document sequence {0:?} duplicates a field of the command body")]
    DuplicateSequence(String),
    #[error("OP_MSG document sequence size {0} is invalid")]
    BadSequenceSize(i32),
    #[error("OP_COMPRESSED uses unknown compressor id {0}")]
    UnknownCompressor(u8),
    #[error("OP_COMPRESSED wraps opcode {0}, which cannot be compressed")]
    BadCompressedOpcode(i32),
    #[error("OP_COMPRESSED declares uncompressed size {0}, outside 0..={MAX_MESSAGE_SIZE}")]
    BadUncompressedSize(i32),
    #[error("OP_COMPRESSED payload does not decompress with {compressor}: {reason}")]
    Decompress {
        compressor: &'static str,
        reason: String,
    },
    #[error("OP_COMPRESSED payload decompressed to {actual} bytes, header declared {declared}")]
    UncompressedSizeMismatch { declared: usize, actual: usize },
    #[error("{0} trailing bytes after the last field")]
    TrailingBytes(usize),
}

/// A little-endian reader over a byte slice that reports what it was reading
/// when the input runs out.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.remaining() < n {
            return Err(WireError::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn cstring(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::UnterminatedCString(what))?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| WireError::InvalidUtf8(what))?;
        self.pos += end + 1;
        Ok(s)
    }

    /// One BSON document, held to the message limits before it is parsed
    /// (see [`crate::limits::check_message_document`]): the outer error is a
    /// malformed message, the inner one a limit that fails this request only.
    /// The document's bytes are consumed either way.
    pub(crate) fn checked_document(
        &mut self,
        what: &'static str,
    ) -> Result<Result<bson::Document, crate::error::CommandError>, WireError> {
        let bytes = self.document_bytes(what)?;
        if let Err(e) = crate::limits::check_message_document(bytes) {
            return Ok(Err(e));
        }
        bson::Document::from_reader(bytes)
            .map(Ok)
            .map_err(|e| WireError::InvalidDocument {
                what,
                reason: e.to_string(),
            })
    }

    /// The bytes of one BSON document: its own length prefix says how long it is.
    fn document_bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let rest = self.rest();
        if rest.len() < 5 {
            return Err(WireError::Truncated {
                what,
                needed: 5,
                available: rest.len(),
            });
        }
        let len = i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len < 5 {
            return Err(WireError::InvalidDocument {
                what,
                reason: format!("document length {len} is smaller than 5"),
            });
        }
        self.bytes(len as usize, what)
    }
}
