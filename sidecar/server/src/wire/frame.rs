//! Framing: finding one whole message in a byte buffer.
//!
//! As in mini-redis, "not enough bytes yet" is `Ok(None)`, not an error; only
//! a header that can never become valid is a [`WireError`].

use bytes::{Bytes, BytesMut};

use super::WireError;

/// The largest message accepted or sent (MongoDB's `maxMessageSizeBytes`).
pub const MAX_MESSAGE_SIZE: usize = crate::limits::MAX_MESSAGE_SIZE;

/// The 16-byte standard message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: i32,
    pub request_id: i32,
    pub response_to: i32,
    pub op_code: i32,
}

impl Header {
    pub const LEN: usize = 16;

    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < Self::LEN {
            return None;
        }
        let word = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Header {
            length: word(0),
            request_id: word(4),
            response_to: word(8),
            op_code: word(12),
        })
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.request_id.to_le_bytes());
        out.extend_from_slice(&self.response_to.to_le_bytes());
        out.extend_from_slice(&self.op_code.to_le_bytes());
    }
}

/// One framed message: its header and the bytes after the header (the
/// read buffer's own bytes, split off without a copy: a message may be
/// 48 MB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    pub body: Bytes,
}

impl Frame {
    /// Takes one whole message off the front of `buf`, or returns `Ok(None)`
    /// when `buf` does not hold one yet (nothing is consumed then). Nothing
    /// is reserved for the length the header claims: the reader grows the
    /// buffer as bytes arrive.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(header) = Header::parse(buf) else {
            // Reject an impossible length as soon as its 4 bytes are in, so a
            // client cannot make us wait for 2 GB that will never be accepted.
            if buf.len() >= 4 {
                let len = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                check_length(len)?;
            }
            return Ok(None);
        };
        let len = check_length(header.length)?;
        if buf.len() < len {
            return Ok(None);
        }
        let body = buf.split_to(len).freeze().slice(Header::LEN..);
        Ok(Some(Frame { header, body }))
    }
}

/// How many more bytes the message at the front of `buf` needs (at least
/// one when not even its header is complete, none when it is whole).
pub fn missing_bytes(buf: &[u8]) -> usize {
    if buf.len() < 4 {
        return Header::LEN - buf.len();
    }
    let len = i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let len = usize::try_from(len).unwrap_or(0).max(Header::LEN);
    len.saturating_sub(buf.len())
}

fn check_length(len: i32) -> Result<usize, WireError> {
    if len < Header::LEN as i32 {
        return Err(WireError::LengthTooSmall(len));
    }
    if len as usize > MAX_MESSAGE_SIZE {
        return Err(WireError::LengthTooLarge(len as i64));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: i32, rest: &[u8]) -> BytesMut {
        let mut v = Vec::new();
        Header {
            length: len,
            request_id: 7,
            response_to: 0,
            op_code: 2013,
        }
        .write(&mut v);
        v.extend_from_slice(rest);
        BytesMut::from(&v[..])
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let mut b = BytesMut::from(&[1u8, 0][..]);
        assert_eq!(Frame::decode(&mut b), Ok(None));
        let mut b = message(20, &[1, 2]);
        assert_eq!(Frame::decode(&mut b), Ok(None));
        assert_eq!(b.len(), 18, "nothing consumed");
        assert!(
            b.capacity() < 1000,
            "nothing reserved for the claimed length"
        );
        assert_eq!(missing_bytes(&b), 2);
        let mut b = message(40_000_000, &[1, 2]);
        assert_eq!(Frame::decode(&mut b), Ok(None));
        assert!(
            b.capacity() < 1000,
            "nothing reserved for the claimed length"
        );
    }

    #[test]
    fn whole_message_is_taken_and_the_rest_kept() {
        let mut b = message(20, &[1, 2, 3, 4, 9, 9]);
        let f = Frame::decode(&mut b).unwrap().unwrap();
        assert_eq!(f.header.request_id, 7);
        assert_eq!(f.body, vec![1, 2, 3, 4]);
        assert_eq!(&b[..], &[9, 9]);
    }

    #[test]
    fn bad_lengths_are_errors_early() {
        let mut b = BytesMut::from(&3i32.to_le_bytes()[..]);
        assert_eq!(Frame::decode(&mut b), Err(WireError::LengthTooSmall(3)));
        let mut b = BytesMut::from(&(60_000_000i32).to_le_bytes()[..]);
        assert!(matches!(
            Frame::decode(&mut b),
            Err(WireError::LengthTooLarge(_))
        ));
        let mut b = BytesMut::from(&(-1i32).to_le_bytes()[..]);
        assert!(matches!(
            Frame::decode(&mut b),
            Err(WireError::LengthTooSmall(-1))
        ));
    }
}
