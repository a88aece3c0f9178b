//! The fields a command accepts, the way MongoDB's IDL declares them: each
//! command names every field it takes; any other is refused with 40415
//! (`BSON field 'find.foo' is an unknown field`), and a field MongoDB has
//! but Argon does not implement is refused by name with 115. Nothing is
//! accepted and then dropped, so an application never gets `ok: 1` for an
//! option that had no effect.
//!
//! Also here: `collation` (parsed by `query::collation`) and `hint`
//! (validated against the collection's indexes; `query::plan` follows it).

use argon_wal::CollectionState;
use bson::{Bson, Document};

use super::GENERIC_FIELDS;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::collation::Collation;

/// One command's (or one statement's) fields.
pub(crate) struct Fields {
    /// How errors name the fields: `find`, `update.updates`.
    pub what: &'static str,
    /// Fields it takes (the command's own name is always taken).
    pub known: &'static [&'static str],
    /// MongoDB's fields that Argon refuses (115), by name.
    pub unsupported: &'static [&'static str],
    /// Whether the generic fields (`$db`, `lsid`, `comment`, ...) apply:
    /// true for a command, false for a statement inside one.
    pub generic: bool,
}

impl Fields {
    /// Fails on the first field that is unknown (40415) or unsupported (115).
    pub fn check(&self, doc: &Document, command: Option<&str>) -> Result<()> {
        for key in doc.keys() {
            let k = key.as_str();
            if Some(k) == command
                || self.known.contains(&k)
                || (self.generic && GENERIC_FIELDS.contains(&k))
            {
                continue;
            }
            if self.unsupported.contains(&k) {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!("BSON field '{}.{k}' is not supported by Argon", self.what),
                ));
            }
            return Err(CommandError::new(
                ErrorCode::Location40415,
                format!("BSON field '{}.{k}' is an unknown field.", self.what),
            ));
        }
        Ok(())
    }
}

/// One index specification of `createIndexes` (checked in
/// `catalog::validate_index`, which answers an unknown field with MongoDB's
/// 197 rather than 40415). Kept and honoured: `unique`, `sparse` and
/// `partialFilterExpression` by the WAL's key rules; `hidden` keeps the
/// index out of the planner's choice (`query::plan::choose`); `background` MongoDB itself
/// ignores since 4.2; `expireAfterSeconds` by the TTL monitor (`ttl`).
pub(crate) const INDEX_SPEC: Fields = Fields {
    what: "createIndexes.indexes",
    known: &[
        "key",
        "name",
        "v",
        "ns",
        "collation",
        "unique",
        "sparse",
        "partialFilterExpression",
        "hidden",
        "background",
        // TTL: checked in `catalog::validate_index`, honoured by `ttl`.
        "expireAfterSeconds",
    ],
    // `weights`, `default_language`, `language_override` and
    // `textIndexVersion` belong to text indexes, `2dsphereIndexVersion`,
    // `bits`, `min` and `max` to geo indexes (`catalog::validate_index`
    // takes them there; on another index they are invalid, 197).
    unsupported: &[
        "bucketSize",
        "wildcardProjection",
        "storageEngine",
        "clustered",
        "prepareUnique",
    ],
    generic: false,
};

/// `create` of a collection (a view's fields are `view::create`'s).
pub(crate) const CREATE: Fields = Fields {
    what: "create",
    known: &[
        "collation",
        "validator",
        "validationLevel",
        "validationAction",
        "capped",
        "size",
        "max",
    ],
    unsupported: &[
        "storageEngine",
        "indexOptionDefaults",
        "timeseries",
        "expireAfterSeconds",
        "clusteredIndex",
        "changeStreamPreAndPostImages",
        "encryptedFields",
        "idIndex",
        "autoIndexId",
        "flags",
        "recordPreImages",
        "temp",
    ],
    generic: true,
};

/// `collMod` (see `coll_mod`).
pub(crate) const COLL_MOD: Fields = Fields {
    what: "collMod",
    known: &[
        "validator",
        "validationLevel",
        "validationAction",
        "index",
        // A capped collection's limits (`capped`).
        "cappedSize",
        "cappedMax",
    ],
    unsupported: &[
        "viewOn",
        "pipeline",
        "expireAfterSeconds",
        "changeStreamPreAndPostImages",
        "timeseries",
        "clusteredIndex",
        "recordPreImages",
        "dryRun",
        "collectionUUID",
    ],
    generic: true,
};

/// `collMod.index`: which index, and the change.
pub(crate) const COLL_MOD_INDEX: Fields = Fields {
    what: "collMod.index",
    known: &["name", "keyPattern", "hidden", "expireAfterSeconds"],
    unsupported: &["unique", "prepareUnique", "forceNonUnique"],
    generic: false,
};

pub(crate) const FIND: Fields = Fields {
    what: "find",
    known: &[
        "filter",
        "projection",
        "sort",
        "hint",
        "skip",
        "limit",
        "batchSize",
        "singleBatch",
        "allowDiskUse",
        "collation",
        "let",
        // One server holds every document: a result is never partial.
        "allowPartialResults",
        // On a capped collection (`read::tailable`, `cursor::Tail`).
        "tailable",
        "awaitData",
        // Index key bounds with a hint (`query::plan::min_max`).
        "min",
        "max",
        // The plan's index keys instead of the documents
        // (`query::find_meta`).
        "returnKey",
    ],
    unsupported: &[
        "showRecordId",
        "oplogReplay",
        "noCursorTimeout",
        "readOnce",
        "requestResumeToken",
        "resumeAfter",
        "$_requestResumeToken",
        "$_resumeAfter",
    ],
    generic: true,
};

pub(crate) const GET_MORE: Fields = Fields {
    what: "getMore",
    known: &["collection", "batchSize"],
    // Replica-set internals. An awaitData getMore waits its `maxTimeMS`.
    unsupported: &[
        "term",
        "lastKnownCommittedOpTime",
        "includeQueryStatsMetrics",
    ],
    generic: true,
};

pub(crate) const KILL_CURSORS: Fields = Fields {
    what: "killCursors",
    known: &["cursors"],
    unsupported: &[],
    generic: true,
};

pub(crate) const COUNT: Fields = Fields {
    what: "count",
    known: &["query", "limit", "skip", "hint", "collation", "fields"],
    unsupported: &[],
    generic: true,
};

pub(crate) const DISTINCT: Fields = Fields {
    what: "distinct",
    known: &["key", "query", "hint", "collation"],
    unsupported: &[],
    generic: true,
};

pub(crate) const AGGREGATE: Fields = Fields {
    what: "aggregate",
    known: &[
        "pipeline",
        "cursor",
        "allowDiskUse",
        "hint",
        "collation",
        "let",
        // For `$out` / `$merge` (`crate::validation`).
        "bypassDocumentValidation",
        // `explain: true`: the plan instead of the result (`explain`).
        "explain",
    ],
    unsupported: &[],
    generic: true,
};

pub(crate) const INSERT: Fields = Fields {
    what: "insert",
    known: &["documents", "ordered", "bypassDocumentValidation"],
    unsupported: &[],
    generic: true,
};

pub(crate) const UPDATE: Fields = Fields {
    what: "update",
    known: &["updates", "ordered", "bypassDocumentValidation", "let"],
    unsupported: &[],
    generic: true,
};

pub(crate) const UPDATE_STATEMENT: Fields = Fields {
    what: "update.updates",
    known: &[
        "q",
        "u",
        "upsert",
        "multi",
        "arrayFilters",
        "hint",
        "collation",
        "sort",
        "upsertSupplied",
        // Constants for a pipeline update (`$$name`), per statement.
        "c",
    ],
    unsupported: &[],
    generic: false,
};

pub(crate) const DELETE: Fields = Fields {
    what: "delete",
    known: &["deletes", "ordered", "let"],
    unsupported: &[],
    generic: true,
};

pub(crate) const DELETE_STATEMENT: Fields = Fields {
    what: "delete.deletes",
    known: &["q", "limit", "hint", "collation"],
    unsupported: &[],
    generic: false,
};

pub(crate) const FIND_AND_MODIFY: Fields = Fields {
    what: "findAndModify",
    known: &[
        "query",
        "fields",
        "sort",
        "remove",
        "update",
        "new",
        "upsert",
        "bypassDocumentValidation",
        "collation",
        "arrayFilters",
        "hint",
        "let",
    ],
    unsupported: &[],
    generic: true,
};

pub(crate) const BULK_WRITE: Fields = Fields {
    what: "bulkWrite",
    known: &[
        "ops",
        "nsInfo",
        "ordered",
        "errorsOnly",
        "cursor",
        "let",
        "bypassDocumentValidation",
    ],
    unsupported: &[],
    generic: true,
};

pub(crate) const BULK_CURSOR: Fields = Fields {
    what: "bulkWrite.cursor",
    // Every result is in the first batch (at most maxWriteBatchSize).
    known: &["batchSize"],
    unsupported: &[],
    generic: false,
};

pub(crate) const BULK_NS_INFO: Fields = Fields {
    what: "bulkWrite.nsInfo",
    known: &["ns"],
    unsupported: &["collectionUUID", "encryptionInformation"],
    generic: false,
};

pub(crate) const BULK_INSERT: Fields = Fields {
    what: "bulkWrite.ops",
    known: &["insert", "document"],
    unsupported: &[],
    generic: false,
};

pub(crate) const BULK_UPDATE: Fields = Fields {
    what: "bulkWrite.ops",
    known: &[
        "update",
        "filter",
        "updateMods",
        "upsert",
        "multi",
        "arrayFilters",
        "hint",
        "collation",
        "sort",
        "constants",
    ],
    unsupported: &[],
    generic: false,
};

pub(crate) const BULK_DELETE: Fields = Fields {
    what: "bulkWrite.ops",
    known: &["delete", "filter", "multi", "hint", "collation"],
    unsupported: &[],
    generic: false,
};

/// Every command's (and statement's) declared fields: what
/// `docs/compatibility.md` reads the refused ones from.
const ALL: &[&Fields] = &[
    &FIND,
    &GET_MORE,
    &KILL_CURSORS,
    &COUNT,
    &DISTINCT,
    &AGGREGATE,
    &INSERT,
    &UPDATE,
    &UPDATE_STATEMENT,
    &DELETE,
    &DELETE_STATEMENT,
    &FIND_AND_MODIFY,
    &BULK_WRITE,
    &BULK_CURSOR,
    &BULK_NS_INFO,
    &BULK_INSERT,
    &BULK_UPDATE,
    &BULK_DELETE,
    &CREATE,
    &COLL_MOD,
    &COLL_MOD_INDEX,
    &INDEX_SPEC,
];

/// The fields of `command` and of its statements (`update.updates`...)
/// that Argon refuses by name (115), as `what.field`.
pub(crate) fn refused_fields(command: &str) -> Vec<String> {
    ALL.iter()
        .filter(|f| f.what == command || f.what.split('.').next() == Some(command))
        .flat_map(|f| f.unsupported.iter().map(move |u| format!("{}.{u}", f.what)))
        .collect()
}

/// `collation` of a command or statement, validated (`query::collation`):
/// `None` when it names none, so the collection's default applies.
pub(crate) fn collation(doc: &Document) -> Result<Option<Collation>> {
    Collation::from_field(doc.get("collation"))
}

/// `hint`: an index name or key pattern of `coll` (or `{$natural: ±1}`);
/// code 2 when the collection has no such index, as MongoDB answers. The
/// planner (`query::plan::choose`) then follows it.
pub(crate) fn check_hint(hint: Option<&Bson>, coll: Option<&CollectionState>) -> Result<()> {
    let hint = match hint {
        None | Some(Bson::Null) => return Ok(()),
        Some(h) => h,
    };
    let found = |pred: &dyn Fn(&Document) -> bool| -> bool {
        // A missing collection has no documents: any hint gives the same
        // empty answer (MongoDB does not check it either).
        coll.is_none_or(|c| c.indexes().iter().any(pred))
    };
    let ok = match hint {
        Bson::String(name) if name.is_empty() => true,
        Bson::String(name) => found(&|i: &Document| i.get_str("name").ok() == Some(name.as_str())),
        Bson::Document(keys) if keys.is_empty() => true,
        Bson::Document(keys) if keys.contains_key("$natural") => {
            natural_direction(keys, "hint")?;
            true
        }
        Bson::Document(keys) => {
            // As mongod's planner: a key pattern two indexes share (they
            // differ in collation or filter) names neither.
            let matched: Vec<&str> = coll
                .map(|c| {
                    c.indexes()
                        .iter()
                        .filter(|i| {
                            i.get_document("key")
                                .is_ok_and(|k| same_key_pattern(k, keys))
                        })
                        .map(|i| i.get_str("name").unwrap_or_default())
                        .collect()
                })
                .unwrap_or_default();
            if let [first, second, ..] = matched[..] {
                return Err(CommandError::bad_value(format!(
                    "Hint matched multiple indexes, must hint by index name. Matched: {first} and {second}"
                )));
            }
            coll.is_none() || !matched.is_empty()
        }
        other => {
            return Err(CommandError::failed_to_parse(format!(
                "BSON field 'hint' is the wrong type '{}', expected types '[string, object]'",
                crate::query::expr::type_name(other)
            )));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(CommandError::bad_value(
            "hint provided does not correspond to an existing index",
        ))
    }
}

/// The direction of a `{$natural: ±1}` sort or hint (`what`): `true`
/// forward. MongoDB's BadValue for another value or another field beside
/// it.
pub(crate) fn natural_direction(spec: &Document, what: &str) -> Result<bool> {
    if spec.len() != 1 {
        return Err(CommandError::bad_value(format!(
            "Cannot include '$natural' in compound {what}: {spec}"
        )));
    }
    match spec.get("$natural").and_then(crate::query::compare::as_f64) {
        Some(1.0) => Ok(true),
        Some(-1.0) => Ok(false),
        _ => Err(CommandError::bad_value(format!(
            "$natural {what} cannot be set to a value other than -1 or 1."
        ))),
    }
}

/// A find's `sort: {$natural: ±1}` is a hint, as MongoDB's canonical query
/// makes it: the hint to plan with (`None` when the sort is not
/// `$natural`, and the caller keeps both as sent). It must agree with a
/// hint given beside it.
pub(crate) fn natural_sort(sort: Option<&Document>, hint: Option<&Bson>) -> Result<Option<Bson>> {
    let Some(sort) = sort.filter(|s| s.contains_key("$natural")) else {
        return Ok(None);
    };
    let forward = natural_direction(sort, "sort")?;
    match hint {
        None | Some(Bson::Null) => {}
        Some(Bson::String(s)) if s.is_empty() => {}
        Some(Bson::Document(h)) if h.is_empty() => {}
        Some(Bson::Document(h)) if h.contains_key("$natural") => {
            if natural_direction(h, "hint")? != forward {
                return Err(CommandError::bad_value(
                    "$natural hint must be in the same direction as $natural sort order",
                ));
            }
        }
        Some(_) => {
            return Err(CommandError::bad_value(
                "index hint not allowed with $natural sort order",
            ));
        }
    }
    Ok(Some(Bson::Document(
        bson::doc! {"$natural": if forward { 1 } else { -1 }},
    )))
}

/// Key patterns are equal field by field, in order, with `1`, `1.0` and
/// `1i64` the same direction.
fn same_key_pattern(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b.iter())
            .all(|((ka, va), (kb, vb))| ka == kb && crate::query::compare::equal(va, vb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn unknown_and_unsupported_fields() {
        let f = Fields {
            what: "find",
            known: &["filter"],
            unsupported: &["min"],
            generic: true,
        };
        assert!(
            f.check(&doc! {"find": "c", "filter": {}, "$db": "x"}, Some("find"))
                .is_ok()
        );
        let e = f
            .check(&doc! {"find": "c", "foo": 1}, Some("find"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::Location40415);
        assert_eq!(e.message, "BSON field 'find.foo' is an unknown field.");
        let e = f
            .check(&doc! {"find": "c", "min": {}}, Some("find"))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::CommandNotSupported);
        // A statement takes no generic field.
        let s = Fields {
            what: "update.updates",
            known: &["q"],
            unsupported: &[],
            generic: false,
        };
        assert!(s.check(&doc! {"q": {}, "$db": "x"}, None).is_err());
    }

    #[test]
    fn collations_parse_or_fail_by_name() {
        assert_eq!(collation(&doc! {}).unwrap(), None);
        assert!(
            collation(&doc! {"collation": {"locale": "simple"}})
                .unwrap()
                .unwrap()
                .is_simple()
        );
        assert!(
            !collation(&doc! {"collation": {"locale": "en_US", "strength": 2}})
                .unwrap()
                .unwrap()
                .is_simple()
        );
        let e = collation(&doc! {"collation": {"locale": "xx"}}).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadValue);
        assert!(collation(&doc! {"collation": {"locale": "simple", "strength": 2}}).is_err());
        assert!(collation(&doc! {"collation": {}}).is_err());
        assert!(collation(&doc! {"collation": 1}).is_err());
        assert!(collation(&doc! {"collation": {"locale": 5}}).is_err());
    }

    #[test]
    fn hints_name_an_index() {
        assert!(check_hint(Some(&Bson::from("_id_")), None).is_ok());
        assert!(check_hint(Some(&Bson::Int32(5)), None).is_err());
        assert!(check_hint(Some(&Bson::Document(doc! {"$natural": 1})), None).is_ok());
        assert!(check_hint(Some(&Bson::Document(doc! {"$natural": -1.0})), None).is_ok());
        for bad in [
            doc! {"$natural": 2},
            doc! {"$natural": 0},
            doc! {"$natural": "x"},
            doc! {"$natural": 1, "a": 1},
        ] {
            let e = check_hint(Some(&Bson::Document(bad.clone())), None).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadValue, "{bad}");
        }
    }

    #[test]
    fn a_natural_sort_is_a_hint_that_agrees_with_the_given_one() {
        let nat = |d: i32| Bson::Document(doc! {"$natural": d});
        assert_eq!(natural_sort(None, None).unwrap(), None);
        assert_eq!(natural_sort(Some(&doc! {"a": 1}), None).unwrap(), None);
        assert_eq!(
            natural_sort(Some(&doc! {"$natural": -1}), None).unwrap(),
            Some(nat(-1))
        );
        assert_eq!(
            natural_sort(Some(&doc! {"$natural": 1}), Some(&nat(1))).unwrap(),
            Some(nat(1))
        );
        for (sort, hint) in [
            (doc! {"$natural": 1}, Some(nat(-1))),
            (doc! {"$natural": 1}, Some(Bson::String("a_1".into()))),
            (doc! {"$natural": 1, "a": 1}, None),
            (doc! {"$natural": 3}, None),
        ] {
            let e = natural_sort(Some(&sort), hint.as_ref()).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadValue, "{sort} {hint:?}");
        }
    }
}
