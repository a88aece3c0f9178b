//! Document metadata, `{$meta: "<name>"}`: the names MongoDB knows, the
//! values a running pipeline carries beside each document, and which of
//! them Argon produces.
//!
//! As mongod's `DocumentMetadataFields`, metadata is not part of the
//! document: a stage attaches it (the pipeline's input the `$text` score
//! and the index key, `$geoNear` the distance and point, `$sort` the sort
//! key, `$sample` the random value), the stages that pass a document on
//! keep it (`$match`, `$project`, `$addFields`, `$unset`, `$replaceRoot`,
//! `$skip`, `$limit`, `$sort`, `$unwind`, `$lookup`, `$redact`), and the
//! stages that make new documents start them bare (`$group`, `$bucket`,
//! `$count`, `$facet`...), so `{$meta: ...}` there is missing, as in mongod.
//!
//! Operators pass documents, not metadata, so the metadata of the document
//! a stage is working on is held for the thread running the pipeline
//! ([`enter`]), like the `$text` binding (`query::text`): an operator that
//! returns a document leaves its metadata current ([`set`]); one that
//! holds documents keeps each one's metadata with it ([`take`], and back
//! with [`set`]); expressions read it ([`value`]). Which stages keep it and
//! which metadata a stage may read is decided once, when the pipeline is
//! parsed (`aggregate::meta_flow`).
//!
//! A find does not run a pipeline: its documents are never reshaped before
//! its projection, so what it reads is computed from the document itself
//! (`query::find_meta`, `query::text`).

use std::cell::RefCell;
use std::marker::PhantomData;

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// A `$meta` argument mongod 8.0 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetaName {
    TextScore,
    RandVal,
    SortKey,
    GeoNearDistance,
    GeoNearPoint,
    IndexKey,
    RecordId,
    SearchScore,
    SearchHighlights,
    SearchScoreDetails,
    SearchSequenceToken,
    VectorSearchScore,
    Score,
    ScoreDetails,
}

impl MetaName {
    const ALL: [MetaName; 14] = [
        MetaName::TextScore,
        MetaName::RandVal,
        MetaName::SortKey,
        MetaName::GeoNearDistance,
        MetaName::GeoNearPoint,
        MetaName::IndexKey,
        MetaName::RecordId,
        MetaName::SearchScore,
        MetaName::SearchHighlights,
        MetaName::SearchScoreDetails,
        MetaName::SearchSequenceToken,
        MetaName::VectorSearchScore,
        MetaName::Score,
        MetaName::ScoreDetails,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MetaName::TextScore => "textScore",
            MetaName::RandVal => "randVal",
            MetaName::SortKey => "sortKey",
            MetaName::GeoNearDistance => "geoNearDistance",
            MetaName::GeoNearPoint => "geoNearPoint",
            MetaName::IndexKey => "indexKey",
            MetaName::RecordId => "recordId",
            MetaName::SearchScore => "searchScore",
            MetaName::SearchHighlights => "searchHighlights",
            MetaName::SearchScoreDetails => "searchScoreDetails",
            MetaName::SearchSequenceToken => "searchSequenceToken",
            MetaName::VectorSearchScore => "vectorSearchScore",
            MetaName::Score => "score",
            MetaName::ScoreDetails => "scoreDetails",
        }
    }

    /// `{$meta: arg}` as mongod parses it: 17307 for a non-string, 17308
    /// for a name it does not know.
    pub fn parse(arg: &Bson) -> Result<MetaName> {
        let Bson::String(s) = arg else {
            return Err(CommandError::new(
                ErrorCode::Location17307,
                "$meta only supports string arguments",
            ));
        };
        MetaName::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                CommandError::new(
                    ErrorCode::Location17308,
                    format!("Unsupported argument to $meta: {s}"),
                )
            })
    }

    /// [`MetaName::parse`], refusing by name (115) what Argon never
    /// produces: record ids (it stores documents by `_id`, with no
    /// record id that a later read could resolve) and Atlas Search's
    /// scores.
    pub fn parse_produced(arg: &Bson) -> Result<MetaName> {
        let name = MetaName::parse(arg)?;
        match name {
            MetaName::TextScore
            | MetaName::RandVal
            | MetaName::SortKey
            | MetaName::GeoNearDistance
            | MetaName::GeoNearPoint
            | MetaName::IndexKey => Ok(name),
            _ => Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                format!("$meta \"{}\" is not supported by Argon", name.as_str()),
            )),
        }
    }
}

/// The metadata of one document in a pipeline (absent: not attached).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub text_score: Option<f64>,
    pub rand_val: Option<f64>,
    /// The values the last `$sort` ordered the document by, one per key.
    pub sort_key: Option<Vec<Bson>>,
    pub geo_near_distance: Option<f64>,
    pub geo_near_point: Option<Bson>,
    pub index_key: Option<Document>,
}

impl Metadata {
    /// `{$meta: name}` of the document: `None` (missing) when not attached.
    pub fn value(&self, name: MetaName) -> Option<Bson> {
        match name {
            MetaName::TextScore => self.text_score.map(Bson::Double),
            MetaName::RandVal => self.rand_val.map(Bson::Double),
            // mongod's `serializeSortKey`: always an array, one value per
            // key (a missing value is null, as the sort compared it).
            MetaName::SortKey => self.sort_key.clone().map(Bson::Array),
            MetaName::GeoNearDistance => self.geo_near_distance.map(Bson::Double),
            MetaName::GeoNearPoint => self.geo_near_point.clone(),
            MetaName::IndexKey => self.index_key.clone().map(Bson::Document),
            _ => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Metadata::default()
    }

    /// As a document, for a stage that holds documents as BSON (a sort
    /// that may spill): [`Metadata::from_document`] reads it back.
    pub fn to_document(&self) -> Document {
        let mut d = Document::new();
        for name in MetaName::ALL {
            if let Some(v) = self.value(name) {
                d.insert(name.as_str(), v);
            }
        }
        d
    }

    /// What [`Metadata::to_document`] wrote; anything else is a damaged
    /// held document (the sort wrote it, no user does).
    pub fn from_document(d: &Document) -> Result<Metadata> {
        let mut m = Metadata::default();
        for (k, v) in d {
            let name =
                MetaName::parse(&Bson::String(k.clone())).map_err(|_| crate::spill::damaged())?;
            match (name, v) {
                (MetaName::TextScore, Bson::Double(x)) => m.text_score = Some(*x),
                (MetaName::RandVal, Bson::Double(x)) => m.rand_val = Some(*x),
                (MetaName::SortKey, Bson::Array(a)) => m.sort_key = Some(a.clone()),
                (MetaName::GeoNearDistance, Bson::Double(x)) => m.geo_near_distance = Some(*x),
                (MetaName::GeoNearPoint, p) => m.geo_near_point = Some(p.clone()),
                (MetaName::IndexKey, Bson::Document(k)) => m.index_key = Some(k.clone()),
                _ => return Err(crate::spill::damaged()),
            }
        }
        Ok(m)
    }
}

thread_local! {
    /// The metadata of the document the running pipeline is on; `None`
    /// outside a pipeline (a find).
    static CURRENT: RefCell<Option<Metadata>> = const { RefCell::new(None) };
}

/// A pipeline running on this thread until dropped (one batch).
#[must_use = "the pipeline's metadata lives only while the scope is held"]
pub struct Scope {
    previous: Option<Metadata>,
    /// Not `Send`: a scope never crosses an `.await`.
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Starts carrying metadata on this thread, with none attached.
pub fn enter() -> Scope {
    let previous = CURRENT.with(|c| c.replace(Some(Metadata::default())));
    Scope {
        previous,
        _thread_bound: PhantomData,
    }
}

/// Attaches `m` to the document the pipeline is on (nothing outside a
/// pipeline).
pub fn set(m: Metadata) {
    CURRENT.with(|c| {
        if let Some(current) = c.borrow_mut().as_mut() {
            *current = m;
        }
    });
}

/// The current document's metadata, leaving none attached.
pub fn take() -> Metadata {
    CURRENT.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    })
}

/// Changes the current document's metadata (nothing outside a pipeline).
pub fn update(f: impl FnOnce(&mut Metadata)) {
    CURRENT.with(|c| {
        if let Some(current) = c.borrow_mut().as_mut() {
            f(current);
        }
    });
}

/// The current document's metadata, or `None` outside a pipeline.
pub fn current() -> Option<Metadata> {
    CURRENT.with(|c| c.borrow().clone())
}

/// `{$meta: name}` of `doc`. In a pipeline, the metadata attached to it
/// (missing when none, as mongod's `ExpressionMeta`); in a find, the text
/// score computed from the document (the other metadata a find reads is
/// its projection's, `query::find_meta`; an expression nested deeper is
/// refused by name). `randVal` exists only after `$sample`.
pub fn value(name: MetaName, doc: &Document) -> Result<Option<Bson>> {
    let in_pipeline = CURRENT.with(|c| c.borrow().as_ref().map(|m| m.value(name)));
    match (in_pipeline, name) {
        (Some(v), _) => Ok(v),
        (None, MetaName::TextScore) => Ok(Some(Bson::Double(super::text::score(doc)?))),
        (None, MetaName::RandVal) => Ok(None),
        (None, other) => Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            format!(
                "{{$meta: \"{}\"}} inside an expression of a find is not supported by Argon; project it as a field of its own",
                other.as_str()
            ),
        )),
    }
}

/// Every `{$meta: name}` in a specification (a stage, a projection, a
/// sort), whatever its depth; a `$meta` that does not parse is left to
/// the parser that reads it.
pub fn mentioned(v: &Bson, out: &mut Vec<MetaName>) {
    // Iterative: a specification may nest as deep as BSON allows.
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Bson::Document(d) => {
                if let Some(arg) = d.get("$meta")
                    && let Ok(name) = MetaName::parse(arg)
                    && !out.contains(&name)
                {
                    out.push(name);
                }
                stack.extend(d.values());
            }
            Bson::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    #[test]
    fn names_as_mongod_parses_them() {
        for name in MetaName::ALL {
            assert_eq!(MetaName::parse(&Bson::from(name.as_str())).unwrap(), name);
        }
        let e = MetaName::parse(&Bson::Int32(1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Location17307);
        let e = MetaName::parse(&Bson::from("nope")).unwrap_err();
        assert_eq!(e.code, ErrorCode::Location17308);
        assert_eq!(e.message, "Unsupported argument to $meta: nope");
        // Case matters, as in mongod.
        assert!(MetaName::parse(&Bson::from("TextScore")).is_err());
        for refused in [
            "recordId",
            "searchScore",
            "vectorSearchScore",
            "scoreDetails",
        ] {
            let e = MetaName::parse_produced(&Bson::from(refused)).unwrap_err();
            assert_eq!(e.code, ErrorCode::CommandNotSupported, "{refused}");
            assert!(e.message.contains(refused));
        }
        assert_eq!(
            MetaName::parse_produced(&Bson::from("sortKey")).unwrap(),
            MetaName::SortKey
        );
    }

    #[test]
    fn held_metadata_reads_back() {
        let m = Metadata {
            text_score: Some(1.5),
            rand_val: Some(0.25),
            sort_key: Some(vec![Bson::Null, Bson::Int32(3)]),
            geo_near_distance: Some(2.0),
            geo_near_point: Some(bson!([1, 2])),
            index_key: Some(doc! {"a": 1}),
        };
        assert_eq!(Metadata::from_document(&m.to_document()).unwrap(), m);
        assert!(
            Metadata::from_document(&Metadata::default().to_document())
                .unwrap()
                .is_empty()
        );
        assert!(Metadata::from_document(&doc! {"textScore": "x"}).is_err());
        assert!(Metadata::from_document(&doc! {"bogus": 1}).is_err());
        assert_eq!(m.value(MetaName::SortKey), Some(bson!([null, 3])));
        assert_eq!(m.value(MetaName::RecordId), None);
    }

    #[test]
    fn carried_only_inside_a_pipeline() {
        let d = doc! {"_id": 1};
        set(Metadata {
            rand_val: Some(0.5),
            ..Metadata::default()
        });
        assert_eq!(current(), None);
        assert_eq!(value(MetaName::RandVal, &d).unwrap(), None);
        assert_eq!(
            value(MetaName::SortKey, &d).unwrap_err().code,
            ErrorCode::CommandNotSupported
        );
        {
            let _scope = enter();
            assert_eq!(value(MetaName::SortKey, &d).unwrap(), None);
            update(|m| m.rand_val = Some(0.5));
            assert_eq!(
                value(MetaName::RandVal, &d).unwrap(),
                Some(Bson::Double(0.5))
            );
            let held = take();
            assert_eq!(value(MetaName::RandVal, &d).unwrap(), None);
            set(held);
            assert_eq!(
                value(MetaName::RandVal, &d).unwrap(),
                Some(Bson::Double(0.5))
            );
        }
        assert_eq!(current(), None);
    }

    #[test]
    fn mentions_at_any_depth() {
        let mut deep = bson!({"$meta": "sortKey"});
        for _ in 0..1_000 {
            deep = bson!({"a": [deep]});
        }
        let mut out = Vec::new();
        mentioned(&deep, &mut out);
        assert_eq!(out, vec![MetaName::SortKey]);
        let mut out = Vec::new();
        mentioned(
            &bson!({"x": {"$meta": 1}, "y": {"$meta": "nope"}}),
            &mut out,
        );
        assert!(out.is_empty());
    }
}
