//! `$text` plans: the documents keyed in the collection's text index under
//! one of the query's positive terms (a phrase's words count as positive
//! terms), each once. The key map (`argon_wal::indexkey::text`) keys a
//! document under every distinct folded term of its indexed strings,
//! computed by the same code the evaluator (`query::text::Compiled`)
//! tokenizes with, and a document the evaluator matches holds a positive
//! term: so the candidates are a superset of the matches, and every
//! candidate is still matched (phrases, negations, case and diacritic
//! sensitivity, prefix fields) and scored by the evaluator.
//!
//! A query with no positive term (only negations or stop words) has no
//! interval and matches nothing, as MongoDB's. A compound text index's
//! prefix fields are bounded by the filter's equalities (`text::bind`
//! refused a query without one, with MongoDB's error); where those
//! equalities give no exact points (a `null`, an array...), or the index
//! keeps no key map, the plan is a collection scan with the same answer.

use argon_wal::CollectionState;
use bson::{Bson, Document, doc};

use super::bounds::{self, FieldBound, MAX_INTERVALS};
use super::{IndexPlan, Plan};
use crate::query::filter::Filter;
use crate::query::text::{Compiled, index::FTS};

/// An index-backed `$text` read: the scan of the term intervals, and what
/// explain shows of the query.
#[derive(Clone, Debug)]
pub struct TextPlan {
    pub scan: IndexPlan,
    /// How many (prefix, term) intervals the scan reads: one `IXSCAN` each
    /// in explain, as MongoDB's `TEXT_OR` has one per term.
    pub scans: usize,
    /// The prefix fields' equalities, as MongoDB's `indexPrefix`.
    pub index_prefix: Document,
    pub parsed: Document,
}

/// The text plan of `filter` over `coll`, if the text index can serve it:
/// `filter` has its `$text` in its top-level conjunction (under `$or`
/// MongoDB unions index scans; Argon scans), and the index has a key map.
pub fn plan(coll: &CollectionState, filter: &Filter, compiled: &Compiled) -> Option<Plan> {
    if !conjunctive_text(filter) {
        return None;
    }
    let spec = coll
        .indexes()
        .iter()
        .find(|s| s.get_document("key").is_ok_and(|k| k.contains_key(FTS)))?;
    let name = spec.get_str("name").ok()?;
    let shape = coll.index_shape(name)?;
    let key_pattern = spec.get_document("key").ok()?.clone();
    let prefix = &compiled.index().prefix;
    if !prefix.is_empty() && shape.decimal {
        return None;
    }
    let prefix_bounds = bounds::build(filter, prefix, shape.multikey);
    let mut prefixes: Vec<Vec<u8>> = vec![Vec::new()];
    let mut index_prefix = Document::new();
    for (path, field) in prefix.iter().zip(&prefix_bounds.fields) {
        let FieldBound::Points(points) = field else {
            return None;
        };
        if let Some(v) = equality(filter, path) {
            index_prefix.insert(path.clone(), v);
        }
        prefixes = prefixes
            .iter()
            .flat_map(|p| {
                points.iter().map(move |(bytes, _)| {
                    let mut k = p.clone();
                    k.extend_from_slice(bytes);
                    k
                })
            })
            .collect();
    }
    let terms: Vec<&String> = compiled.terms().collect();
    if prefixes.len().saturating_mul(terms.len()) > MAX_INTERVALS {
        return None;
    }
    let mut starts: Vec<Vec<u8>> = Vec::with_capacity(prefixes.len() * terms.len());
    for p in &prefixes {
        for t in &terms {
            let mut lo = p.clone();
            argon_wal::IndexKey::encode_value(&Bson::String((*t).clone()), &mut lo);
            starts.push(lo);
        }
    }
    // Disjoint (each key's encoding is prefix-free) and ascending, as an
    // index scan takes its intervals: every key starting with the prefix
    // values and the term, whatever its suffix fields hold.
    starts.sort();
    let scans = starts.len();
    let intervals = starts
        .into_iter()
        .map(|lo| {
            let hi = argon_wal::IndexKey::prefix_end(&lo);
            bounds::interval(lo, hi)
        })
        .collect();
    let paths: Vec<String> = key_pattern.keys().cloned().collect();
    Some(Plan::Text(Box::new(TextPlan {
        scan: IndexPlan {
            name: name.to_string(),
            key_pattern,
            bounds: bounds::Bounds {
                fields: vec![FieldBound::All; paths.len()],
                intervals,
            },
            paths,
            // A document has a key per term: always deduplicated.
            multikey: true,
            direction: argon_wal::ScanDirection::Forward,
            provides_sort: false,
            min_max: None,
        },
        scans,
        index_prefix,
        parsed: compiled.parsed_query(),
    })))
}

/// The value the top-level conjunction pins `path` to (the first
/// equality, else the `$in` list), for explain's `indexPrefix`.
fn equality(filter: &Filter, path: &str) -> Option<Bson> {
    use crate::query::filter::{InItem, Pred};
    let of = |pred: &Pred| match pred {
        Pred::Eq(v) => Some(v.clone()),
        Pred::In(items) => Some(Bson::Array(
            items
                .iter()
                .filter_map(|i| match i {
                    InItem::Value(v) => Some(v.clone()),
                    InItem::Regex(_) => None,
                })
                .collect(),
        )),
        _ => None,
    };
    match filter {
        Filter::And(fs) => fs.iter().find_map(|f| equality(f, path)),
        Filter::Field { path: p, pred } if p == path => match pred {
            Pred::And(ps) => ps.iter().find_map(of),
            pred => of(pred),
        },
        _ => None,
    }
}

/// Whether the filter's top-level conjunction holds its `$text` (so every
/// match satisfies it).
fn conjunctive_text(filter: &Filter) -> bool {
    match filter {
        Filter::Text(_) => true,
        Filter::And(fs) => fs.iter().any(conjunctive_text),
        _ => false,
    }
}

impl TextPlan {
    /// MongoDB's `TEXT_MATCH` over `TEXT_OR` over one `IXSCAN` per term
    /// (with empty `indexBounds`, as its explain shows a text scan's).
    pub fn explain(&self) -> Document {
        let p = &self.scan;
        let scans: Vec<Bson> = (0..self.scans)
            .map(|_| {
                Bson::Document(doc! {
                    "stage": "IXSCAN",
                    "keyPattern": p.key_pattern.clone(),
                    "indexName": p.name.clone(),
                    "isMultiKey": true,
                    "isUnique": false,
                    "isSparse": false,
                    "isPartial": false,
                    "indexVersion": 2,
                    "direction": "backward",
                    "indexBounds": {},
                })
            })
            .collect();
        let or = match scans.as_slice() {
            [one] => doc! {"stage": "TEXT_OR", "inputStage": one.clone()},
            _ => doc! {"stage": "TEXT_OR", "inputStages": scans},
        };
        doc! {
            "stage": "TEXT_MATCH",
            "indexPrefix": self.index_prefix.clone(),
            "indexName": p.name.clone(),
            "parsedTextQuery": self.parsed.clone(),
            "textIndexVersion": 3,
            "inputStage": or,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::Deadline;
    use crate::query::plan::Access;
    use crate::query::text::{TextIndex, TextQuery, index::fix_spec};
    use argon_wal::{BranchState, CommitTime, DocOp, Namespace};
    use std::collections::BTreeSet;

    /// Words in several languages, cases and diacritics, stop words among
    /// them, so stems, folds and languages all differ somewhere.
    const WORDS: &[&str] = &[
        "coffee", "Coffees", "café", "Cafe", "CAFÉS", "leche", "Leches", "running", "runs", "the",
        "le", "été", "Été", "niño", "Niño", "crème", "shop", "shopping", "tea", "baking", "cakes",
        "maison", "maisons", "casa", "casas", "über", "naïve", "don't", "co-op",
    ];
    const LANGUAGES: &[&str] = &["english", "french", "spanish", "none"];

    /// A small deterministic generator (xorshift): the property's cases
    /// are reproducible from the seed in a failure message.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
        fn sentence(&mut self, max: usize) -> String {
            let n = 1 + self.below(max);
            (0..n)
                .map(|_| self.pick(WORDS))
                .collect::<Vec<_>>()
                .join(if self.below(2) == 0 { " " } else { ", " })
        }
    }

    fn document(rng: &mut Rng, id: i32) -> Document {
        let mut d = doc! {"_id": id, "k": (id % 3), "t": rng.sentence(6)};
        if rng.below(3) > 0 {
            d.insert("language", rng.pick(LANGUAGES));
        }
        if rng.below(3) == 0 {
            d.insert(
                "n",
                doc! {"s": [rng.sentence(3), rng.sentence(2)], "language": rng.pick(LANGUAGES)},
            );
        }
        d
    }

    fn search(rng: &mut Rng) -> String {
        let mut parts = Vec::new();
        for _ in 0..1 + rng.below(3) {
            parts.push(match rng.below(6) {
                0 => format!("-{}", rng.pick(WORDS)),
                1 => format!("\"{} {}\"", rng.pick(WORDS), rng.pick(WORDS)),
                2 => format!("\"{}\"", rng.pick(WORDS)),
                _ => rng.pick(WORDS).to_string(),
            });
        }
        parts.join(" ")
    }

    fn state(key: Document, docs: &[Document]) -> (BranchState, Document) {
        let (key, options) = fix_spec(&doc! {"key": key, "weights": {"t": 3, "n.s": 1}}).unwrap();
        let mut spec = doc! {"v": 2, "key": key, "name": "text"};
        spec.extend(options);
        let ns = Namespace::new("d", "c");
        let mut s = BranchState::empty(CommitTime(0));
        s.apply(&DocOp::CreateIndex {
            ns: ns.clone(),
            spec: spec.clone(),
        });
        for d in docs {
            s.apply(&DocOp::Put {
                ns: ns.clone(),
                id: d.get("_id").cloned().unwrap(),
                doc: argon_wal::rawdoc::encode(d).unwrap(),
            });
        }
        (s, spec)
    }

    /// The property: over random documents and queries, the plan's
    /// candidates hold every document the evaluator matches over the whole
    /// collection (so the index answer, each candidate re-checked, is the
    /// scan's), for a plain and a compound (prefix) text index.
    #[test]
    fn candidates_are_a_superset_of_the_evaluators_matches() {
        for (key, with_prefix) in [
            (doc! {"t": "text", "n.s": "text"}, false),
            (doc! {"k": 1, "t": "text", "n.s": "text"}, true),
        ] {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
            let docs: Vec<Document> = (0..300).map(|i| document(&mut rng, i)).collect();
            let (s, spec) = state(key, &docs);
            let coll = s.collection(&Namespace::new("d", "c")).unwrap().unwrap();
            let index = TextIndex::from_spec(&spec).unwrap();
            let mut planned = 0;
            for case in 0..400 {
                let mut q = doc! {"$search": search(&mut rng)};
                if rng.below(3) == 0 {
                    q.insert("$language", rng.pick(LANGUAGES));
                }
                if rng.below(4) == 0 {
                    q.insert("$caseSensitive", true);
                }
                if rng.below(4) == 0 {
                    q.insert("$diacriticSensitive", true);
                }
                let mut f = doc! {"$text": q.clone()};
                if with_prefix {
                    f.insert("k", case % 3);
                }
                let filter = Filter::parse_query(&f).unwrap();
                let query = TextQuery::parse(&Bson::Document(q)).unwrap();
                let compiled = Compiled::new(&query, index.clone()).unwrap();
                let want: BTreeSet<i32> = docs
                    .iter()
                    .filter(|d| {
                        compiled.matches(d).unwrap()
                            && (!with_prefix || d.get_i32("k").unwrap() == case % 3)
                    })
                    .map(|d| d.get_i32("_id").unwrap())
                    .collect();
                let plan = plan(&coll, &filter, &compiled).expect("a text plan");
                planned += 1;
                let mut candidates = BTreeSet::new();
                let mut access = Access::new(plan);
                access
                    .run(&coll, Deadline::NONE, |raw| {
                        let id = raw.get_i32("_id").unwrap();
                        assert!(candidates.insert(id), "{id} given twice");
                        Ok(true)
                    })
                    .unwrap();
                assert!(
                    want.is_subset(&candidates),
                    "case {case} {f}: matches {want:?} not all among {candidates:?}"
                );
                if compiled.terms().next().is_none() {
                    assert!(candidates.is_empty(), "{f}: no positive term, no candidate");
                }
            }
            assert_eq!(planned, 400);
        }
    }

    #[test]
    fn no_plan_without_a_conjunctive_text_or_exact_prefix_points() {
        let docs = [doc! {"_id": 1, "k": 1, "t": "coffee"}];
        let (s, spec) = state(doc! {"k": 1, "t": "text"}, &docs);
        let coll = s.collection(&Namespace::new("d", "c")).unwrap().unwrap();
        let index = TextIndex::from_spec(&spec).unwrap();
        let q = doc! {"$search": "coffee"};
        let compiled = Compiled::new(
            &TextQuery::parse(&Bson::Document(q.clone())).unwrap(),
            index,
        )
        .unwrap();
        let plan_of = |f: Document| plan(&coll, &Filter::parse_query(&f).unwrap(), &compiled);
        assert!(plan_of(doc! {"k": 1, "$text": q.clone()}).is_some());
        assert!(plan_of(doc! {"k": {"$in": [1, 2]}, "$text": q.clone()}).is_some());
        // null and arrays match more than their keys: scanned.
        assert!(plan_of(doc! {"k": null, "$text": q.clone()}).is_none());
        assert!(plan_of(doc! {"k": [1], "$text": q.clone()}).is_none());
        assert!(plan_of(doc! {"k": 1, "$or": [{"$text": q.clone()}, {"_id": 1}]}).is_none());
    }
}
