//! `Doc`: a document as a read returns it — owned, cheap to clone, and a
//! view of bytes that already exist (a branch state's shared allocation or
//! a slice of the materialized store's cache), never a copy.
//!
//! Why owned: a read from the store cannot lend a reference into it (the
//! KV hands out refcounted slices), so every read API returns `Doc`s; the
//! in-memory state returns the same type, and callers cannot tell (or
//! come to depend on) which one served them.

use crate::rawdoc;
use bson::{Document, RawDocument};
use std::sync::Arc;

/// A validated BSON document. Derefs to [`RawDocument`].
#[derive(Clone)]
pub struct Doc {
    bytes: Bytes,
    /// Where the document starts in `bytes`.
    start: usize,
}

#[derive(Clone)]
enum Bytes {
    /// A branch state's entry (`state::StoredDoc`'s allocation).
    Shared(Arc<[u8]>),
    /// A value of the materialized store.
    Stored(fjall::Slice),
}

impl Doc {
    /// The document at `start..` of `bytes`; `None` unless those bytes are
    /// one well-formed BSON document (checked once, here).
    pub(crate) fn shared(bytes: Arc<[u8]>, start: usize) -> Option<Doc> {
        RawDocument::from_bytes(bytes.get(start..)?).ok()?;
        Some(Doc {
            bytes: Bytes::Shared(bytes),
            start,
        })
    }

    /// The document at `start..` of a store value, checked as `shared`.
    pub(crate) fn stored(bytes: fjall::Slice, start: usize) -> Option<Doc> {
        RawDocument::from_bytes(bytes.get(start..)?).ok()?;
        Some(Doc {
            bytes: Bytes::Stored(bytes),
            start,
        })
    }

    fn slice(&self) -> &[u8] {
        let all: &[u8] = match &self.bytes {
            Bytes::Shared(b) => b,
            Bytes::Stored(b) => b,
        };
        all.get(self.start..).unwrap_or_default()
    }

    pub fn as_raw(&self) -> &RawDocument {
        // Checked when the `Doc` was made; the bytes are immutable.
        RawDocument::from_bytes(self.slice()).expect("a Doc's bytes were checked when it was made")
    }

    pub fn to_document(&self) -> Document {
        rawdoc::parse(self.as_raw())
    }
}

impl std::ops::Deref for Doc {
    type Target = RawDocument;
    fn deref(&self) -> &RawDocument {
        self.as_raw()
    }
}

impl AsRef<RawDocument> for Doc {
    fn as_ref(&self) -> &RawDocument {
        self.as_raw()
    }
}

impl std::borrow::Borrow<RawDocument> for Doc {
    fn borrow(&self) -> &RawDocument {
        self.as_raw()
    }
}

impl PartialEq for Doc {
    fn eq(&self, other: &Self) -> bool {
        self.slice() == other.slice()
    }
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn a_doc_is_made_only_of_one_well_formed_document() {
        let d = rawdoc::encode(&doc! {"_id": 1, "a": "x"}).unwrap();
        let mut bytes = vec![9u8, 9];
        bytes.extend_from_slice(d.as_bytes());
        let shared: Arc<[u8]> = bytes.clone().into();
        let doc = Doc::shared(shared.clone(), 2).unwrap();
        assert_eq!(doc.to_document(), doc! {"_id": 1, "a": "x"});
        assert!(Doc::shared(shared.clone(), 1).is_none(), "a prefix byte");
        assert!(Doc::shared(shared, 99).is_none(), "past the end");
        let stored = Doc::stored(fjall::Slice::from(bytes.as_slice()), 2).unwrap();
        assert_eq!(stored, doc);
        bytes.pop();
        assert!(
            Doc::stored(fjall::Slice::from(bytes.as_slice()), 2).is_none(),
            "truncated"
        );
    }
}
