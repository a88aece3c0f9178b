//! Parsing framed messages into requests (OP_MSG, legacy OP_QUERY, both
//! optionally inside OP_COMPRESSED) and encoding replies (OP_MSG, OP_REPLY).

use bson::Document;

use super::{Compressor, Frame, Header, MAX_MESSAGE_SIZE, Reader, WireError, opcode};
use crate::error::CommandError;

/// OP_MSG flag bits (the wire protocol reserves bits 0-15 as "required":
/// a receiver must reject bits it does not know there).
pub mod flags {
    pub const CHECKSUM_PRESENT: u32 = 1;
    pub const MORE_TO_COME: u32 = 1 << 1;
    pub const EXHAUST_ALLOWED: u32 = 1 << 16;
    pub const KNOWN_REQUIRED: u32 = CHECKSUM_PRESENT | MORE_TO_COME;
    pub const REQUIRED_MASK: u32 = 0xffff;
}

/// Which kind of message carried a command: it decides the reply's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestKind {
    /// OP_MSG; `more_to_come` means the client wants no reply (w:0 style).
    Msg { more_to_come: bool },
    /// Legacy OP_QUERY on `<db>.<collection>`; commands use `<db>.$cmd`.
    Query { collection: String },
}

/// One parsed request: the command document (document sequences already
/// merged in as arrays) and how to answer it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub request_id: i32,
    pub kind: RequestKind,
    /// The database: `$db` for OP_MSG, the namespace prefix for OP_QUERY.
    pub db: Option<String>,
    pub command: Document,
    /// Set when the request came in OP_COMPRESSED; the reply uses it too.
    pub compressor: Option<Compressor>,
    /// A document of the message broke a limit (nesting, size): the
    /// request is answered with this error and not run; the connection
    /// stays open.
    pub rejected: Option<CommandError>,
}

impl Request {
    pub fn parse(frame: &Frame) -> Result<Request, WireError> {
        match frame.header.op_code {
            opcode::OP_COMPRESSED => {
                let mut r = Reader::new(&frame.body);
                let original = r.i32("OP_COMPRESSED originalOpcode")?;
                let size = r.i32("OP_COMPRESSED uncompressedSize")?;
                let compressor = Compressor::from_id(r.u8("OP_COMPRESSED compressorId")?)?;
                if original != opcode::OP_MSG && original != opcode::OP_QUERY {
                    return Err(WireError::BadCompressedOpcode(original));
                }
                if size < 0 || size as usize > MAX_MESSAGE_SIZE - Header::LEN {
                    return Err(WireError::BadUncompressedSize(size));
                }
                let body = compressor.decompress(r.rest(), size as usize)?;
                let header = Header {
                    length: (Header::LEN + body.len()) as i32,
                    op_code: original,
                    ..frame.header
                };
                let mut req = Self::parse_uncompressed(header, &body)?;
                req.compressor = Some(compressor);
                Ok(req)
            }
            _ => Self::parse_uncompressed(frame.header, &frame.body),
        }
    }

    fn parse_uncompressed(header: Header, body: &[u8]) -> Result<Request, WireError> {
        match header.op_code {
            opcode::OP_MSG => parse_op_msg(header, body),
            opcode::OP_QUERY => parse_op_query(header, body),
            other => Err(WireError::UnsupportedOpcode(other)),
        }
    }
}

fn parse_op_msg(header: Header, body: &[u8]) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let flag_bits = r.u32("OP_MSG flagBits")?;
    let unknown = flag_bits & flags::REQUIRED_MASK & !flags::KNOWN_REQUIRED;
    if unknown != 0 {
        return Err(WireError::UnknownRequiredFlags(unknown));
    }
    let mut sections_end = body.len();
    if flag_bits & flags::CHECKSUM_PRESENT != 0 {
        if body.len() < 8 {
            return Err(WireError::Truncated {
                what: "OP_MSG checksum",
                needed: 8,
                available: body.len(),
            });
        }
        sections_end = body.len() - 4;
        let t = &body[sections_end..];
        let expected = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let mut hdr = Vec::with_capacity(Header::LEN);
        header.write(&mut hdr);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&hdr), &body[..sections_end]);
        if computed != expected {
            return Err(WireError::ChecksumMismatch { expected, computed });
        }
    }
    let mut r = Reader::new(&body[4..sections_end]);
    let mut command: Option<Document> = None;
    let mut rejected: Option<CommandError> = None;
    let mut bodies = 0usize;
    let mut sequences: Vec<(String, Vec<bson::Bson>)> = Vec::new();
    while r.remaining() > 0 {
        match r.u8("OP_MSG section kind")? {
            0 => {
                bodies += 1;
                command = Some(match r.checked_document("OP_MSG body section")? {
                    Ok(d) => d,
                    Err(e) => {
                        rejected.get_or_insert(e);
                        Document::new()
                    }
                });
            }
            1 => {
                let size = r.i32("OP_MSG document sequence size")?;
                if size < 4 || (size as usize - 4) > r.remaining() {
                    return Err(WireError::BadSequenceSize(size));
                }
                let bytes = r.bytes(size as usize - 4, "OP_MSG document sequence")?;
                let mut s = Reader::new(bytes);
                let id = s.cstring("OP_MSG document sequence identifier")?.to_owned();
                let mut docs = Vec::new();
                while s.remaining() > 0 {
                    match s.checked_document("OP_MSG document sequence")? {
                        Ok(d) => docs.push(bson::Bson::Document(d)),
                        Err(e) => {
                            rejected.get_or_insert(e);
                        }
                    }
                }
                sequences.push((id, docs));
            }
            kind => return Err(WireError::UnknownSectionKind(kind)),
        }
    }
    let mut command = match (bodies, command) {
        (1, Some(c)) => c,
        (n, _) => return Err(WireError::BodySectionCount(n)),
    };
    for (id, docs) in sequences {
        if command.contains_key(&id) {
            return Err(WireError::DuplicateSequence(id));
        }
        command.insert(id, bson::Bson::Array(docs));
    }
    let db = command.get_str("$db").ok().map(str::to_owned);
    Ok(Request {
        request_id: header.request_id,
        kind: RequestKind::Msg {
            more_to_come: flag_bits & flags::MORE_TO_COME != 0,
        },
        db,
        command,
        compressor: None,
        rejected,
    })
}

fn parse_op_query(header: Header, body: &[u8]) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let _flags = r.i32("OP_QUERY flags")?;
    let full_name = r.cstring("OP_QUERY fullCollectionName")?.to_owned();
    let _skip = r.i32("OP_QUERY numberToSkip")?;
    let _n_return = r.i32("OP_QUERY numberToReturn")?;
    let mut rejected = None;
    let mut query = match r.checked_document("OP_QUERY query")? {
        Ok(d) => d,
        Err(e) => {
            rejected = Some(e);
            Document::new()
        }
    };
    if r.remaining() > 0
        && let Err(e) = r.checked_document("OP_QUERY returnFieldsSelector")?
    {
        rejected.get_or_insert(e);
    }
    if r.remaining() > 0 {
        return Err(WireError::TrailingBytes(r.remaining()));
    }
    // Drivers wrap commands sent with a read preference as {$query: {...}}.
    if let Ok(inner) = query.get_document("$query") {
        query = inner.clone();
    }
    let (db, collection) = match full_name.split_once('.') {
        Some((db, coll)) => (db.to_owned(), coll.to_owned()),
        None => (full_name.clone(), String::new()),
    };
    Ok(Request {
        request_id: header.request_id,
        kind: RequestKind::Query { collection },
        db: Some(db),
        command: query,
        compressor: None,
        rejected,
    })
}

/// A reply to one request, encoded as the request's kind requires.
pub struct Reply;

impl Reply {
    /// Encodes `doc` as the answer to `req` (OP_MSG for OP_MSG, OP_REPLY for
    /// OP_QUERY), compressed with the request's compressor if it had one.
    pub fn encode(req: &Request, response_id: i32, doc: &Document) -> Result<Vec<u8>, WireError> {
        let mut payload = Vec::with_capacity(256);
        let op_code = match req.kind {
            RequestKind::Msg { .. } => {
                payload.extend_from_slice(&0u32.to_le_bytes());
                payload.push(0);
                write_doc(doc, &mut payload)?;
                opcode::OP_MSG
            }
            RequestKind::Query { .. } => {
                // responseFlags: AwaitCapable, as mongod sets on command replies.
                payload.extend_from_slice(&8i32.to_le_bytes());
                payload.extend_from_slice(&0i64.to_le_bytes());
                payload.extend_from_slice(&0i32.to_le_bytes());
                payload.extend_from_slice(&1i32.to_le_bytes());
                write_doc(doc, &mut payload)?;
                opcode::OP_REPLY
            }
        };
        let mut out = Vec::with_capacity(payload.len() + 32);
        match req.compressor {
            Some(c) if c != Compressor::Noop => {
                let z = c.compress(&payload).map_err(|e| WireError::Decompress {
                    compressor: c.name(),
                    reason: format!("compressing the reply: {e}"),
                })?;
                let len = Header::LEN + 9 + z.len();
                header(len, response_id, req.request_id, opcode::OP_COMPRESSED)?.write(&mut out);
                out.extend_from_slice(&op_code.to_le_bytes());
                out.extend_from_slice(&(payload.len() as i32).to_le_bytes());
                out.push(c.id());
                out.extend_from_slice(&z);
            }
            _ => {
                header(
                    Header::LEN + payload.len(),
                    response_id,
                    req.request_id,
                    op_code,
                )?
                .write(&mut out);
                out.extend_from_slice(&payload);
            }
        }
        Ok(out)
    }
}

fn header(
    len: usize,
    request_id: i32,
    response_to: i32,
    op_code: i32,
) -> Result<Header, WireError> {
    if len > MAX_MESSAGE_SIZE {
        return Err(WireError::LengthTooLarge(len as i64));
    }
    Ok(Header {
        length: len as i32,
        request_id,
        response_to,
        op_code,
    })
}

fn write_doc(doc: &Document, out: &mut Vec<u8>) -> Result<(), WireError> {
    doc.to_writer(out).map_err(|e| WireError::InvalidDocument {
        what: "reply",
        reason: e.to_string(),
    })
}

/// Encodes an OP_MSG request; used by tests and by anything that talks to a
/// server with raw frames.
pub fn encode_op_msg(
    request_id: i32,
    flag_bits: u32,
    body: &Document,
    sequences: &[(&str, Vec<Document>)],
) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&flag_bits.to_le_bytes());
    payload.push(0);
    body.to_writer(&mut payload)
        .expect("a Document always serializes into a Vec");
    for (id, docs) in sequences {
        let mut seq = Vec::new();
        seq.extend_from_slice(id.as_bytes());
        seq.push(0);
        for d in docs {
            d.to_writer(&mut seq)
                .expect("a Document always serializes into a Vec");
        }
        payload.push(1);
        payload.extend_from_slice(&((seq.len() + 4) as i32).to_le_bytes());
        payload.extend_from_slice(&seq);
    }
    let checksum = flag_bits & flags::CHECKSUM_PRESENT != 0;
    let len = Header::LEN + payload.len() + if checksum { 4 } else { 0 };
    let mut out = Vec::with_capacity(len);
    Header {
        length: len as i32,
        request_id,
        response_to: 0,
        op_code: opcode::OP_MSG,
    }
    .write(&mut out);
    out.extend_from_slice(&payload);
    if checksum {
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use bytes::BytesMut;

    fn frame(bytes: &[u8]) -> Frame {
        Frame::decode(&mut BytesMut::from(bytes)).unwrap().unwrap()
    }

    #[test]
    fn op_msg_with_sequences_and_checksum() {
        let body = doc! {"insert": "c", "$db": "d"};
        let docs = vec![doc! {"_id": 1}, doc! {"_id": 2}];
        for flags in [0, flags::CHECKSUM_PRESENT] {
            let bytes = encode_op_msg(5, flags, &body, &[("documents", docs.clone())]);
            let req = Request::parse(&frame(&bytes)).unwrap();
            assert_eq!(req.db.as_deref(), Some("d"));
            assert_eq!(req.command.get_array("documents").unwrap().len(), 2);
        }
    }

    #[test]
    fn checksum_mismatch_is_named() {
        let mut bytes = encode_op_msg(5, flags::CHECKSUM_PRESENT, &doc! {"ping": 1}, &[]);
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        assert!(matches!(
            Request::parse(&frame(&bytes)),
            Err(WireError::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn unknown_required_flag_and_section_kind() {
        let bytes = encode_op_msg(5, 1 << 4, &doc! {"ping": 1}, &[]);
        assert_eq!(
            Request::parse(&frame(&bytes)),
            Err(WireError::UnknownRequiredFlags(1 << 4))
        );
        let mut bytes = encode_op_msg(5, 0, &doc! {"ping": 1}, &[]);
        bytes[20] = 7;
        assert_eq!(
            Request::parse(&frame(&bytes)),
            Err(WireError::UnknownSectionKind(7))
        );
    }

    #[test]
    fn duplicate_sequence_is_rejected() {
        let bytes = encode_op_msg(
            5,
            0,
            &doc! {"insert": "c", "documents": []},
            &[("documents", vec![])],
        );
        assert!(matches!(
            Request::parse(&frame(&bytes)),
            Err(WireError::DuplicateSequence(_))
        ));
    }

    #[test]
    fn compressed_op_msg_round_trip() {
        for c in Compressor::SUPPORTED {
            let plain = encode_op_msg(9, 0, &doc! {"ping": 1, "$db": "admin"}, &[]);
            let inner = &plain[Header::LEN..];
            let z = c.compress(inner).unwrap();
            let mut msg = Vec::new();
            Header {
                length: (Header::LEN + 9 + z.len()) as i32,
                request_id: 9,
                response_to: 0,
                op_code: opcode::OP_COMPRESSED,
            }
            .write(&mut msg);
            msg.extend_from_slice(&opcode::OP_MSG.to_le_bytes());
            msg.extend_from_slice(&(inner.len() as i32).to_le_bytes());
            msg.push(c.id());
            msg.extend_from_slice(&z);
            let req = Request::parse(&frame(&msg)).unwrap();
            assert_eq!(req.compressor, Some(c));
            assert_eq!(req.command.get_i32("ping").unwrap(), 1);
            let reply = Reply::encode(&req, 1, &doc! {"ok": 1.0}).unwrap();
            let f = frame(&reply);
            assert_eq!(f.header.op_code, opcode::OP_COMPRESSED);
            assert_eq!(f.header.response_to, 9);
        }
    }

    #[test]
    fn op_query_handshake() {
        let mut body = Vec::new();
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(b"admin.$cmd\0");
        body.extend_from_slice(&0i32.to_le_bytes());
        body.extend_from_slice(&(-1i32).to_le_bytes());
        doc! {"$query": {"isMaster": 1}}
            .to_writer(&mut body)
            .unwrap();
        let mut msg = Vec::new();
        Header {
            length: (16 + body.len()) as i32,
            request_id: 3,
            response_to: 0,
            op_code: opcode::OP_QUERY,
        }
        .write(&mut msg);
        msg.extend_from_slice(&body);
        let req = Request::parse(&frame(&msg)).unwrap();
        assert_eq!(req.db.as_deref(), Some("admin"));
        assert_eq!(
            req.kind,
            RequestKind::Query {
                collection: "$cmd".into()
            }
        );
        assert!(req.command.contains_key("isMaster"));
        let reply = Reply::encode(&req, 4, &doc! {"ok": 1.0}).unwrap();
        assert_eq!(frame(&reply).header.op_code, opcode::OP_REPLY);
    }

    /// `{find: "c", filter: {$and: [{$and: [ ... ]}]}}` nested `levels`
    /// deep, written as raw bytes (a `Document` that deep would recurse).
    fn deep_and_command(levels: usize) -> Vec<u8> {
        fn wrap(kind: u8, name: &str, inner: &[u8]) -> Vec<u8> {
            let mut out = Vec::with_capacity(inner.len() + name.len() + 7);
            let len = (4 + 1 + name.len() + 1 + inner.len() + 1) as i32;
            out.extend_from_slice(&len.to_le_bytes());
            out.push(kind);
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.extend_from_slice(inner);
            out.push(0);
            out
        }
        let mut cur = Vec::new();
        doc! {"x": 1}.to_writer(&mut cur).unwrap();
        for _ in 0..levels {
            let arr = wrap(0x03, "0", &cur);
            cur = wrap(0x04, "$and", &arr);
        }
        let mut body = Vec::new();
        doc! {"find": "c", "$db": "d"}.to_writer(&mut body).unwrap();
        body.pop();
        body.push(0x03);
        body.extend_from_slice(b"filter\0");
        body.extend_from_slice(&cur);
        body.push(0);
        let n = body.len() as i32;
        body[..4].copy_from_slice(&n.to_le_bytes());
        let mut msg = Vec::new();
        Header {
            length: (Header::LEN + 5 + body.len()) as i32,
            request_id: 11,
            response_to: 0,
            op_code: opcode::OP_MSG,
        }
        .write(&mut msg);
        msg.extend_from_slice(&0u32.to_le_bytes());
        msg.push(0);
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn too_deep_documents_reject_the_request_only() {
        let req = Request::parse(&frame(&deep_and_command(20_000))).unwrap();
        let e = req.rejected.expect("rejected");
        assert_eq!(e.code, crate::error::ErrorCode::Overflow);
        // 2 levels per $and: 99 of them and the filter stay within 200.
        let req = Request::parse(&frame(&deep_and_command(99))).unwrap();
        assert!(req.rejected.is_none());
        assert_eq!(req.db.as_deref(), Some("d"));
        let deep = Request::parse(&frame(&deep_and_command(100))).unwrap();
        assert!(deep.rejected.is_some());
        // A too-deep document in a sequence.
        let mut d = doc! {"x": 1};
        for _ in 0..201 {
            d = doc! {"x": d};
        }
        let bytes = encode_op_msg(
            5,
            0,
            &doc! {"insert": "c", "$db": "d"},
            &[("documents", vec![doc! {"_id": 1}, d])],
        );
        let req = Request::parse(&frame(&bytes)).unwrap();
        assert_eq!(
            req.rejected.unwrap().code,
            crate::error::ErrorCode::Overflow
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 12345u64;
        for len in 0..300usize {
            let mut body = Vec::new();
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                body.push((seed >> 33) as u8);
            }
            for op in [opcode::OP_MSG, opcode::OP_QUERY, opcode::OP_COMPRESSED, 1] {
                let f = Frame {
                    header: Header {
                        length: 16 + len as i32,
                        request_id: 1,
                        response_to: 0,
                        op_code: op,
                    },
                    body: body.clone().into(),
                };
                let _ = Request::parse(&f);
            }
        }
    }
}
