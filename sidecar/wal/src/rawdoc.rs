//! Documents as their BSON bytes: how state, commits and snapshots hold
//! user documents.
//!
//! Why raw: a parsed `bson::Document` costs ~15× its BSON size in memory
//! (see DESIGN.md, "Memory") and building one is most of what replay used to
//! spend. State keeps the bytes; readers borrow a `&RawDocument` and parse
//! only what they look at.
//!
//! Invariant: every document that state holds went through `validate` (or
//! was produced by encoding a `Document`), so later reads of its elements
//! cannot fail. Pre-images read back from the log are copied unchecked
//! (replay ignores them); whoever reads one parses it leniently.

use crate::error::{Result, WalError};
use bson::raw::{RawArray, RawBsonRef};
use bson::{Bson, Document, RawDocument, RawDocumentBuf};

/// Encodes `doc` (what writers that build `Document`s call).
pub fn encode(doc: &Document) -> Result<RawDocumentBuf> {
    let raw = RawDocumentBuf::try_from(doc)
        .map_err(|e| WalError::InvalidOp(format!("document cannot be encoded as BSON: {e}")))?;
    Ok(exact(raw))
}

/// Checks every element of `doc`, recursively, so that parsing it later
/// cannot fail; `what` names it in the error.
pub fn validate(doc: &RawDocument, what: &'static str) -> Result<()> {
    fn walk_doc(d: &RawDocument, depth: usize) -> std::result::Result<(), String> {
        if depth > 200 {
            return Err("nested more than 200 levels".into());
        }
        for el in d {
            let (_, v) = el.map_err(|e| e.to_string())?;
            walk_value(v, depth)?;
        }
        Ok(())
    }
    fn walk_array(a: &RawArray, depth: usize) -> std::result::Result<(), String> {
        for v in a {
            walk_value(v.map_err(|e| e.to_string())?, depth)?;
        }
        Ok(())
    }
    fn walk_value(v: RawBsonRef<'_>, depth: usize) -> std::result::Result<(), String> {
        match v {
            RawBsonRef::Document(d) => walk_doc(d, depth + 1),
            RawBsonRef::Array(a) => walk_array(a, depth + 1),
            RawBsonRef::JavaScriptCodeWithScope(c) => walk_doc(c.scope, depth + 1),
            _ => Ok(()),
        }
    }
    walk_doc(doc, 0).map_err(|e| WalError::malformed(what, format!("bad document: {e}")))
}

/// An owned, exactly sized copy of `doc` after `validate`.
pub fn owned(doc: &RawDocument, what: &'static str) -> Result<RawDocumentBuf> {
    validate(doc, what)?;
    Ok(exact(doc.to_owned()))
}

/// Parses a stored document. Cannot fail for what this crate stored (see
/// the module invariant); an empty document stands in if it somehow does.
pub fn parse(doc: &RawDocument) -> Document {
    Document::try_from(doc).unwrap_or_default()
}

/// The document's `_id`, parsed (`None` when it has none).
pub fn id_of(doc: &RawDocument) -> Option<Bson> {
    let v = doc.get("_id").ok().flatten()?;
    Bson::try_from(v).ok()
}

/// Drops spare capacity: state keeps millions of these.
fn exact(raw: RawDocumentBuf) -> RawDocumentBuf {
    let mut bytes = raw.into_bytes();
    bytes.shrink_to_fit();
    // The bytes were a valid document a moment ago.
    RawDocumentBuf::from_bytes(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn round_trips_and_finds_the_id() {
        let d = doc! {"_id": 7, "a": {"b": [1, "x", {"c": null}]}};
        let raw = encode(&d).unwrap();
        assert_eq!(raw.as_bytes().len(), raw.clone().into_bytes().capacity());
        validate(&raw, "test").unwrap();
        assert_eq!(parse(&raw), d);
        assert_eq!(id_of(&raw), Some(Bson::Int32(7)));
        assert_eq!(id_of(&encode(&doc! {"a": 1}).unwrap()), None);
    }

    #[test]
    fn validate_names_a_bad_inner_element() {
        let mut bytes = encode(&doc! {"a": {"b": "xyz"}}).unwrap().into_bytes();
        // Corrupt the inner string's length prefix (the header stays valid).
        let at = bytes.len() - 10;
        bytes[at] = 0x7f;
        let raw = RawDocumentBuf::from_bytes(bytes).unwrap();
        let err = validate(&raw, "test").unwrap_err().to_string();
        assert!(err.contains("test"), "{err}");
    }
}
