//! The metadata a find's projection reads beside the document, as
//! MongoDB's query stages attach it: `{$meta: "indexKey"}` (and
//! `returnKey`) the index key the plan reached the document under,
//! `{$meta: "geoNearDistance"}` and `{$meta: "geoNearPoint"}` the
//! distance to a `$near`/`$nearSphere` query's point and the location
//! measured to, `{$meta: "sortKey"}` the values the find's `sort` ordered
//! the document by. (`textScore` is `query::text`'s, bound for the
//! command; a pipeline carries its metadata instead, `query::meta`.)
//!
//! Argon's scans hand on documents, not metadata: each value is computed
//! again from the document, with what the command fixed once its plan was
//! chosen ([`FindMetadata::of`]), so it is the same whether the document
//! comes from a scan, a blocking sort or a later batch.

use bson::{Bson, Document};

use super::geo::{self, Near};
use super::plan::{Plan, index_key::IndexKeyOf};
use super::{Filter, SortSpec};
use crate::error::{CommandError, ErrorCode, Result};

/// A find-only `$meta` of a projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindMeta {
    IndexKey,
    GeoNearDistance,
    GeoNearPoint,
    SortKey,
}

impl FindMeta {
    /// The `$meta` argument, when it names one of these.
    pub fn parse(arg: &Bson) -> Option<FindMeta> {
        match arg {
            Bson::String(s) => match s.as_str() {
                "indexKey" => Some(FindMeta::IndexKey),
                "geoNearDistance" => Some(FindMeta::GeoNearDistance),
                "geoNearPoint" => Some(FindMeta::GeoNearPoint),
                "sortKey" => Some(FindMeta::SortKey),
                _ => None,
            },
            _ => None,
        }
    }

    /// MongoDB's check before the query runs: the geo metadata exists only
    /// under a `$near`/`$nearSphere` query (40218, as for `textScore`
    /// without `$text`). `query` is the command's filter as sent.
    pub fn check_available(self, query: Option<&Document>) -> Result<()> {
        let what = match self {
            // Needs the command's sort, which the handler checks.
            FindMeta::IndexKey | FindMeta::SortKey => return Ok(()),
            FindMeta::GeoNearDistance => "$geoNear distance",
            FindMeta::GeoNearPoint => "$geoNear point",
        };
        if query.is_some_and(geo::mentions_near) {
            return Ok(());
        }
        Err(CommandError::new(
            ErrorCode::Location40218,
            format!("query requires {what} metadata, but it is not available"),
        ))
    }
}

/// MongoDB's check of a find's `{$meta: "sortKey"}`: it needs a sort.
pub fn check_sort_key(metas: &[FindMeta], sort: Option<&SortSpec>) -> Result<()> {
    if metas.contains(&FindMeta::SortKey) && sort.is_none_or(SortSpec::is_empty) {
        return Err(CommandError::bad_value(
            "cannot use sortKey $meta projection without a sort",
        ));
    }
    Ok(())
}

/// What a find fixed for its metadata: the plan's index key rule, its
/// `$near` (path and query) and its sort.
#[derive(Debug, Clone, Default)]
pub struct FindMetadata {
    index_key: IndexKeyOf,
    near: Option<(String, Near)>,
    sort: Option<SortSpec>,
}

impl FindMetadata {
    pub fn of(plan: &Plan, filter: &Filter) -> FindMetadata {
        FindMetadata {
            index_key: IndexKeyOf::of(plan),
            near: geo::near_of(filter).map(|(path, near)| (path.to_owned(), near.clone())),
            sort: None,
        }
    }

    /// The metadata with the find's `sort` (what `sortKey` reads).
    pub fn sorted_by(mut self, sort: Option<&SortSpec>) -> FindMetadata {
        self.sort = sort.cloned();
        self
    }

    /// `doc`'s index key under the plan (`returnKey`): `None` for a
    /// collection scan.
    pub fn index_key(&self, doc: &Document) -> Option<Document> {
        self.index_key.key(doc)
    }

    /// The value of `meta` for `doc`; `None` (the field left out) when the
    /// document has none, as a collection scan has no index key.
    pub fn value(&self, meta: FindMeta, doc: &Document) -> Option<Bson> {
        match meta {
            FindMeta::IndexKey => self.index_key(doc).map(Bson::Document),
            // mongod's `serializeSortKey`: an array, one value per key.
            FindMeta::SortKey => self.sort.as_ref().map(|s| Bson::Array(s.key(doc))),
            FindMeta::GeoNearDistance | FindMeta::GeoNearPoint => {
                let (path, near) = self.near.as_ref()?;
                let values = super::path::resolve(doc, path).values;
                if meta == FindMeta::GeoNearDistance {
                    near.distance(&values).map(Bson::Double)
                } else {
                    near.nearest(&values).cloned()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn geo_metadata_needs_a_near_query() {
        let near = doc! {"loc": {"$near": [0, 0]}};
        assert!(
            FindMeta::GeoNearDistance
                .check_available(Some(&near))
                .is_ok()
        );
        assert!(FindMeta::IndexKey.check_available(None).is_ok());
        for m in [FindMeta::GeoNearDistance, FindMeta::GeoNearPoint] {
            let e = m.check_available(Some(&doc! {"a": 1})).unwrap_err();
            assert_eq!(e.code, ErrorCode::Location40218);
        }
        let e = FindMeta::GeoNearPoint.check_available(None).unwrap_err();
        assert_eq!(
            e.message,
            "query requires $geoNear point metadata, but it is not available"
        );
        assert_eq!(
            FindMeta::parse(&Bson::from("indexKey")),
            Some(FindMeta::IndexKey)
        );
        assert_eq!(FindMeta::parse(&Bson::from("textScore")), None);
        assert_eq!(FindMeta::parse(&Bson::Int32(1)), None);
    }

    #[test]
    fn distances_in_the_query_units() {
        let filter = Filter::parse_query(&doc! {"loc": {"$near": [0, 0]}}).unwrap();
        let m = FindMetadata::of(&Plan::Collscan, &filter);
        let d = doc! {"_id": 1, "loc": [3, 4]};
        assert_eq!(
            m.value(FindMeta::GeoNearDistance, &d),
            Some(Bson::Double(5.0))
        );
        assert_eq!(
            m.value(FindMeta::GeoNearPoint, &d),
            Some(bson::bson!([3, 4]))
        );
        assert_eq!(m.value(FindMeta::IndexKey, &d), None);
        assert_eq!(m.value(FindMeta::GeoNearDistance, &doc! {"_id": 2}), None);
    }

    #[test]
    fn sort_key_is_the_values_sorted_by() {
        let sort = SortSpec::parse(&doc! {"a": 1, "b": -1}).unwrap();
        let m = FindMetadata::default().sorted_by(Some(&sort));
        let d = doc! {"_id": 1, "a": [3, 1, 2], "b": [3, 1, 2]};
        assert_eq!(m.value(FindMeta::SortKey, &d), Some(bson::bson!([1, 3])));
        assert_eq!(
            m.value(FindMeta::SortKey, &doc! {"_id": 2}),
            Some(bson::bson!([null, null]))
        );
        assert_eq!(FindMetadata::default().value(FindMeta::SortKey, &d), None);
        assert_eq!(
            FindMeta::parse(&Bson::from("sortKey")),
            Some(FindMeta::SortKey)
        );
        let e = check_sort_key(&[FindMeta::SortKey], None).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadValue);
        assert_eq!(
            e.message,
            "cannot use sortKey $meta projection without a sort"
        );
        assert!(check_sort_key(&[FindMeta::SortKey], Some(&sort)).is_ok());
        assert!(check_sort_key(&[FindMeta::IndexKey], None).is_ok());
    }
}
