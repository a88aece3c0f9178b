//! Text search: text indexes (`index`), `$text` queries (`query`), the
//! tokenizer (`tokenize`: words, case and diacritic folding, stop words,
//! stems) and the languages (`language`). The tokenizer, the languages and
//! the reading of a stored spec live in `argon_wal::indexkey::text`, which
//! keys text indexes with them: one derivation of terms for keys and
//! queries.
//!
//! Plans: a `$text` whose collection's text index has a key map is read
//! through it (`plan::text`: the documents keyed under a positive term);
//! each candidate, like every document of a scan, is matched and scored
//! here by tokenizing it. Results and scores are MongoDB's.
//!
//! Like `query::collation`, the compiled query is scoped to the thread
//! evaluating a command ([`Binding::enter`]): the handler binds it where it
//! has the collection's catalog (the same places the collation is
//! resolved), filters (`Filter::Text`) match through it, and
//! `{$meta: "textScore"}` (find projection and sort, aggregation
//! expressions and `$sort`) scores through it. A cursor keeps the binding
//! for its later batches, as it keeps its collation.

pub mod index;
pub mod query;

pub use argon_wal::indexkey::text::{language, tokenize};

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

use argon_wal::CollectionState;
use bson::{Bson, Document};

use super::filter::{Filter, Pred};
use crate::error::{CommandError, ErrorCode, Result};
pub use index::TextIndex;
pub use query::{Compiled, TextQuery};

thread_local! {
    static ACTIVE: RefCell<Option<Arc<Compiled>>> = const { RefCell::new(None) };
}

/// A command's `$text` query bound to its collection's text index, or
/// none (the command has no `$text`).
#[derive(Debug, Clone, Default)]
pub struct Binding(Option<Arc<Compiled>>);

/// The binding entered on this thread until dropped.
#[must_use = "the binding applies only while the scope is held"]
pub struct Scope {
    previous: Option<Arc<Compiled>>,
    /// Not `Send`: a scope never crosses an `.await`.
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ACTIVE.with(|a| *a.borrow_mut() = previous);
    }
}

impl Binding {
    pub fn none() -> Binding {
        Binding(None)
    }

    /// The compiled query, when the command has a `$text`.
    pub fn compiled(&self) -> Option<&Arc<Compiled>> {
        self.0.as_ref()
    }

    pub fn enter(&self) -> Scope {
        let previous = ACTIVE.with(|a| a.replace(self.0.clone()));
        Scope {
            previous,
            _thread_bound: PhantomData,
        }
    }
}

/// The binding entered on this thread (a cursor keeps it).
pub fn active() -> Binding {
    Binding(ACTIVE.with(|a| a.borrow().clone()))
}

/// Binds `filter`'s `$text` (if any) to the text index of `coll`:
/// MongoDB's 27 without one, and its error when a compound text index's
/// prefix fields have no equality in the query.
pub fn bind(filter: &Filter, coll: Option<&CollectionState>) -> Result<Binding> {
    let Some(query) = filter.text_query() else {
        return Ok(Binding::none());
    };
    let index = coll
        .and_then(|c| TextIndex::of_collection(c.indexes()))
        .ok_or_else(|| {
            CommandError::new(
                ErrorCode::IndexNotFound,
                "text index required for $text query",
            )
        })?;
    if let Some(c) = coll
        && !or_clauses_indexed(filter, c.indexes())
    {
        return Err(CommandError::new(
            ErrorCode::NoQueryExecutionPlans,
            "error processing query: planner returned error :: caused by :: Failed to produce a solution for TEXT under OR - other non-TEXT clauses under OR have to be indexed as well.",
        ));
    }
    for field in &index.prefix {
        if !has_equality(filter, field) {
            return Err(CommandError::bad_value(format!(
                "error processing query: planner returned error :: caused by :: failed to use text index to satisfy $text query (if text index is compound, are equality predicates given for all prefix fields?) (missing equality on {field})"
            )));
        }
    }
    Ok(Binding(Some(Arc::new(Compiled::new(query, index)?))))
}

/// MongoDB answers a `$text` under `$or` from the text index and the
/// other clauses from their own indexes, so it needs every other clause of
/// that `$or` indexed (a predicate on the first field of a plain index, or
/// a conjunction with one); else 291. Argon scans, but gives the same
/// answer: what MongoDB refuses is refused.
fn or_clauses_indexed(filter: &Filter, indexes: &[Document]) -> bool {
    match filter {
        Filter::And(fs) => fs.iter().all(|f| or_clauses_indexed(f, indexes)),
        Filter::Or(fs) if fs.iter().any(|f| f.text_query().is_some()) => fs.iter().all(|f| {
            f.text_query().is_some() && or_clauses_indexed(f, indexes) || indexed(f, indexes)
        }),
        _ => true,
    }
}

/// Whether an index can serve `clause` (MongoDB's planner, simplified: a
/// positive predicate on the leading field of a plain, visible, complete
/// index).
fn indexed(clause: &Filter, indexes: &[Document]) -> bool {
    match clause {
        Filter::Field { path, pred } => {
            !matches!(
                pred,
                Pred::Ne(_) | Pred::Nin(_) | Pred::Not(_) | Pred::Exists(false)
            ) && indexes.iter().any(|spec| {
                !spec.contains_key("partialFilterExpression")
                    && !spec.get_bool("hidden").unwrap_or(false)
                    && spec
                        .get_document("key")
                        .ok()
                        .and_then(|k| k.iter().next())
                        .is_some_and(|(field, v)| field == path && !matches!(v, Bson::String(_)))
            })
        }
        Filter::And(fs) => fs.iter().any(|f| indexed(f, indexes)),
        Filter::Or(fs) => fs.iter().all(|f| indexed(f, indexes)),
        _ => false,
    }
}

/// Whether the top level of `filter` (or its `$and`s) pins `field` by
/// equality, as a compound text index's prefix needs.
fn has_equality(filter: &Filter, field: &str) -> bool {
    match filter {
        Filter::And(fs) => fs.iter().any(|f| has_equality(f, field)),
        Filter::Field { path, pred } => {
            path == field
                && match pred {
                    Pred::Eq(_) => true,
                    Pred::In(items) => !items.is_empty(),
                    Pred::And(ps) => ps.iter().any(|p| matches!(p, Pred::Eq(_))),
                    _ => false,
                }
        }
        _ => false,
    }
}

fn unbound() -> CommandError {
    // Every path that runs a `$text` filter binds it first; reaching this
    // is a bug, reported as MongoDB reports a `$text` it cannot serve.
    CommandError::new(
        ErrorCode::IndexNotFound,
        "text index required for $text query",
    )
}

/// Whether `doc` matches the bound `$text` query.
pub fn matches(doc: &Document) -> Result<bool> {
    ACTIVE.with(|a| match a.borrow().as_ref() {
        Some(c) => c.matches(doc),
        None => Err(unbound()),
    })
}

/// `{$meta: "textScore"}` of `doc`: MongoDB's 40218 when the query has no
/// `$text`.
pub fn score(doc: &Document) -> Result<f64> {
    ACTIVE.with(|a| match a.borrow().as_ref() {
        Some(c) => c.score(doc),
        None => Err(no_score()),
    })
}

pub fn no_score() -> CommandError {
    CommandError::new(
        ErrorCode::Location40218,
        "query requires text score metadata, but it is not available",
    )
}

/// `$text` where MongoDB does not take it (a validator, a `$pull`
/// condition, `$elemMatch`, a `$lookup` sub-pipeline...).
pub fn not_allowed() -> CommandError {
    CommandError::bad_value("$text is not allowed in this context")
}

/// `$text` in an aggregation `$match` other than the pipeline's first
/// stage (MongoDB's 17313).
pub fn not_first_stage() -> CommandError {
    CommandError::new(
        ErrorCode::Location17313,
        "$match with $text is only allowed as the first pipeline stage",
    )
}

/// Whether a filter document has a `$text` anywhere in it.
pub fn mentions_text(filter: &Document) -> bool {
    fn any(v: &Bson) -> bool {
        match v {
            Bson::Document(d) => mentions_text(d),
            Bson::Array(items) => items.iter().any(any),
            _ => false,
        }
    }
    filter.iter().any(|(k, v)| k == "$text" || any(v))
}

/// Whether a specification (a projection, a sort, a stage) asks for
/// `{$meta: "textScore"}` anywhere in it.
pub fn mentions_score(v: &Bson) -> bool {
    let mut read = Vec::new();
    super::meta::mentioned(v, &mut read);
    read.contains(&super::meta::MetaName::TextScore)
}

/// A write's document under the collection's text index (its language
/// override fields): MongoDB refuses what it cannot index (17261, 17262).
pub fn check_document(coll: Option<&CollectionState>, doc: &Document) -> Result<()> {
    match coll.and_then(|c| TextIndex::of_collection(c.indexes())) {
        Some(index) => index.check_document(doc),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{Projection, SortSpec};
    use bson::doc;

    fn binding(search: &str) -> Binding {
        let (key, options) = index::fix_spec(
            &doc! {"key": {"title": "text", "body": "text"}, "weights": {"title": 10}},
        )
        .unwrap();
        let mut stored = doc! {"v": 2, "key": key, "name": "t"};
        stored.extend(options);
        let q = TextQuery::parse(&Bson::Document(doc! {"$search": search})).unwrap();
        Binding(Some(Arc::new(
            Compiled::new(&q, TextIndex::from_spec(&stored).unwrap()).unwrap(),
        )))
    }

    #[test]
    fn filters_parse_text_only_where_mongodb_takes_it() {
        let q = doc! {"$text": {"$search": "x"}};
        assert!(Filter::parse_query(&q).unwrap().text_query().is_some());
        assert!(Filter::parse_query(&doc! {"$and": [q.clone(), {"a": 1}]}).is_ok());
        assert!(Filter::parse_query(&doc! {"$or": [q.clone(), {"a": 1}]}).is_ok());
        for (f, code) in [
            (doc! {"$and": [q.clone(), q.clone()]}, 2),
            (doc! {"$nor": [q.clone()]}, 2),
            (doc! {"a": {"$elemMatch": q.clone()}}, 2),
            (doc! {"$text": "x"}, 2),
            (doc! {"$text": {"$search": "x", "$language": 3}}, 14),
        ] {
            assert_eq!(
                Filter::parse_query(&f).unwrap_err().code.code(),
                code,
                "{f}"
            );
        }
        // Elsewhere (validators, $pull, partial filters): not allowed.
        assert_eq!(
            Filter::parse(&q).unwrap_err().message,
            not_allowed().message
        );
    }

    #[test]
    fn scores_in_projection_and_sort_through_the_binding() {
        let docs = [
            doc! {"_id": 1, "title": "coffee", "body": "tea"},
            doc! {"_id": 2, "title": "tea", "body": "coffee coffee"},
            doc! {"_id": 3, "title": "cake"},
        ];
        let f = Filter::parse_query(&doc! {"$text": {"$search": "coffee"}}).unwrap();
        let p =
            Projection::parse_find(&doc! {"score": {"$meta": "textScore"}, "body": 0}, &doc! {})
                .unwrap();
        // Unbound: matching is an error, never a silent miss; a score is 40218.
        assert!(f.try_matches(&docs[0]).is_err());
        assert_eq!(p.try_apply(&docs[0]).unwrap_err().code.code(), 40218);
        let b = binding("coffee");
        let _scope = b.enter();
        let matched: Vec<&Document> = docs.iter().filter(|d| f.matches(d)).collect();
        assert_eq!(matched.len(), 2);
        let out = p.try_apply(&docs[0]).unwrap();
        // title weight 10, "coffee" alone (stem differs, no 1.1): 10.
        assert_eq!(out, doc! {"_id": 1, "title": "coffee", "score": 10.0});
        let out = p.try_apply(&docs[1]).unwrap();
        // body: "coffee coffee", freq 1.5 × coeff 1.0.
        assert_eq!(out.get_f64("score").unwrap(), 1.5);
        let mut sorted: Vec<Document> = docs.to_vec();
        SortSpec::parse(&doc! {"s": {"$meta": "textScore"}})
            .unwrap()
            .sort(&mut sorted);
        let ids: Vec<i32> = sorted.iter().map(|d| d.get_i32("_id").unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        let e =
            crate::query::expr::Expr::parse(&Bson::Document(doc! {"$meta": "textScore"})).unwrap();
        assert_eq!(e.eval(&docs[2]).unwrap(), Some(Bson::Double(0.0)));
    }

    #[test]
    fn every_language_builds() {
        for name in [
            "danish",
            "dutch",
            "english",
            "finnish",
            "french",
            "german",
            "hungarian",
            "italian",
            "norwegian",
            "portuguese",
            "romanian",
            "russian",
            "spanish",
            "swedish",
            "turkish",
            "none",
        ] {
            let l = language::lookup(name).unwrap();
            assert_eq!(l.name, name);
            let _ = tokenize::terms("Ünïcödé wörds running", l, tokenize::Sensitivity::default());
        }
    }

    #[test]
    fn text_under_or_needs_the_other_clauses_indexed() {
        let indexes = vec![
            doc! {"key": {"_id": 1}, "name": "_id_"},
            doc! {"key": {"a": 1, "b": 1}, "name": "a_1_b_1"},
            doc! {"key": {"h": 1}, "name": "h_1", "hidden": true},
        ];
        let ok = |f: Document| or_clauses_indexed(&Filter::parse_query(&f).unwrap(), &indexes);
        let t = doc! {"$text": {"$search": "x"}};
        assert!(ok(doc! {"$or": [t.clone(), {"a": 1}]}));
        assert!(ok(
            doc! {"$or": [t.clone(), {"_id": {"$gt": 1}}, {"a": 2, "z": 1}]}
        ));
        assert!(ok(
            doc! {"$or": [{"z": 1}, {"a": 1}], "$text": {"$search": "x"}}
        ));
        assert!(!ok(doc! {"$or": [t.clone(), {"z": 1}]}));
        assert!(!ok(doc! {"$or": [t.clone(), {"b": 1}]}));
        assert!(!ok(doc! {"$or": [t.clone(), {"h": 1}]}));
        assert!(!ok(doc! {"$or": [t.clone(), {"a": {"$ne": 1}}]}));
        assert!(!ok(doc! {"$and": [{"$or": [t, {"z": 1}]}]}));
    }

    #[test]
    fn mentions() {
        assert!(mentions_text(&doc! {"$and": [{"$text": {"$search": "x"}}]}));
        assert!(!mentions_text(&doc! {"text": 1}));
        assert!(mentions_score(&Bson::Document(
            doc! {"a": {"b": {"$meta": "textScore"}}}
        )));
        assert!(!mentions_score(&Bson::Document(
            doc! {"a": {"$meta": "indexKey"}}
        )));
    }
}
