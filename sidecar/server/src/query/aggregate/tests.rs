//! The pipeline's tests: each stage, the limits, and the blocking stages
//! with a tiny budget (spilled) giving what they give in memory.

use super::*;
use crate::query::path;
use bson::{bson, doc};

fn no_lookup() -> InMemory {
    InMemory(vec![doc! {"_id": "x", "k": 1}])
}

/// The hash join finds exactly what a scan with `$eq` finds, across
/// numeric types, arrays, nested paths, nulls, missing fields and the
/// values it does not index.
#[test]
fn lookup_hash_join_matches_the_scan() {
    let values = vec![
        bson!(1),
        bson!(1.0),
        bson!(1i64),
        bson!(2),
        bson!("a"),
        bson!([1, 3]),
        bson!([[1, 3]]),
        bson!({"x": 1}),
        Bson::Null,
        bson!(9007199254740993i64),
        bson!(9007199254740992.0),
        Bson::Decimal128("1".parse().unwrap()),
    ];
    let mut foreign: Vec<Document> = values
        .iter()
        .enumerate()
        .map(|(i, v)| doc! {"_id": i as i32, "f": v.clone(), "n": {"g": v.clone()}})
        .collect();
    foreign.push(doc! {"_id": 100});
    // `_id`s a point lookup must find (or leave to the scan).
    foreign.push(doc! {"_id": Bson::Null});
    foreign.push(doc! {"_id": "a"});
    foreign.push(doc! {"_id": {"x": 1}});
    foreign.push(doc! {"_id": Bson::Decimal128("2".parse().unwrap())});
    let without_decimal: Vec<Document> = foreign
        .iter()
        .filter(|d| !matches!(d.get("f"), Some(Bson::Decimal128(_))))
        .cloned()
        .collect();
    let local: Vec<Document> = values
        .iter()
        .map(|v| doc! {"l": v.clone()})
        .chain([doc! {}])
        .collect();
    for foreign in [foreign, without_decimal] {
        for field in ["f", "n.g", "_id"] {
            let out = Pipeline::parse(&[bson!({"$lookup": {"from": "o", "localField": "l", "foreignField": field, "as": "m"}})])
                .unwrap()
                .run(local.clone(), &InMemory(foreign.clone()))
                .unwrap();
            for (l, o) in local.iter().zip(&out) {
                let r = path::resolve(l, "l");
                let keys: Vec<Bson> = if r.values.is_empty() {
                    vec![Bson::Null]
                } else {
                    r.values
                        .iter()
                        .flat_map(|v| match v {
                            Bson::Array(a) => a.clone(),
                            v => vec![(*v).clone()],
                        })
                        .collect()
                };
                let expected: Vec<Bson> = foreign
                    .iter()
                    .filter(|f| {
                        let r = path::resolve(f, field);
                        keys.iter()
                            .any(|k| crate::query::filter::Pred::Eq(k.clone()).matches(&r))
                    })
                    .map(|f| Bson::Document(f.clone()))
                    .collect();
                assert_eq!(o.get_array("m").unwrap(), &expected, "{l} on {field}");
            }
        }
    }
}

fn run(p: Bson, docs: Vec<Document>) -> Result<Vec<Document>> {
    let Bson::Array(stages) = p else {
        panic!("pipeline must be an array")
    };
    Pipeline::parse(&stages)?.run(docs, &no_lookup())
}

fn sample() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "k": 1, "v": 10, "tags": ["a", "b"]},
        doc! {"_id": 2, "k": 2, "v": 5, "tags": []},
        doc! {"_id": 3, "k": 1, "v": 1.5},
    ]
}

/// Found by the `query` fuzz target and `tests/query_fuzz.rs`: a
/// `$lookup` `as` (or `$unwind` `includeArrayIndex`) path of 200
/// components put its value below 200 levels, past the nesting limit.
#[test]
fn long_paths_of_lookup_and_unwind_are_held_to_the_nesting_limit() {
    let deep = vec!["a"; 200].join(".");
    let e = run(
        bson!([{"$lookup": {"from": "c", "localField": "k", "foreignField": "k", "as": &deep}}]),
        sample(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Overflow);
    assert!(e.message.contains("$lookup"), "{}", e.message);
    // An index is a scalar: 200 levels hold it.
    let out = run(
        bson!([{"$unwind": {"path": "$tags", "includeArrayIndex": &deep}}]),
        vec![doc! {"tags": [{"t": {"u": 1}}]}],
    );
    assert!(out.is_ok());
    let fits = vec!["a"; 150].join(".");
    let out = run(
        bson!([{"$lookup": {"from": "c", "localField": "k", "foreignField": "k", "as": &fits}}]),
        sample(),
    )
    .unwrap();
    assert_eq!(out.len(), 3);
}

#[test]
fn match_sort_skip_limit_project_count() {
    let out = run(bson!([{"$match": {"v": {"$gt": 1}}}, {"$sort": {"v": 1}}, {"$skip": 1}, {"$limit": 1}, {"$project": {"v": 1, "_id": 0}}]), sample()).unwrap();
    assert_eq!(out, vec![doc! {"v": 5}]);
    let out = run(bson!([{"$match": {"k": 1}}, {"$count": "n"}]), sample()).unwrap();
    assert_eq!(out, vec![doc! {"n": 2}]);
}

#[test]
fn group_accumulators() {
    let out = run(
        bson!([{"$group": {"_id": "$k", "total": {"$sum": "$v"}, "n": {"$sum": 1}, "avg": {"$avg": "$v"}, "mx": {"$max": "$v"}, "ids": {"$push": "$_id"}}}, {"$sort": {"_id": 1}}]),
        sample(),
    )
    .unwrap();
    assert_eq!(
        out[0],
        doc! {"_id": 1, "total": 11.5, "n": 2, "avg": 5.75, "mx": 10, "ids": [1, 3]}
    );
    assert_eq!(out[1].get_i32("total").unwrap(), 5);
}

#[test]
fn unwind_add_fields_lookup() {
    let out = run(
        bson!([{"$unwind": "$tags"}, {"$addFields": {"double": {"$multiply": ["$v", 2]}}}]),
        sample(),
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].get_str("tags").unwrap(), "b");
    assert_eq!(out[1].get_i32("double").unwrap(), 20);
    let out = run(
        bson!([{"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": true}}]),
        sample(),
    )
    .unwrap();
    assert_eq!(out.len(), 4);
    let out = run(
        bson!([{"$lookup": {"from": "o", "localField": "k", "foreignField": "k", "as": "j"}}]),
        sample(),
    )
    .unwrap();
    assert_eq!(out[0].get_array("j").unwrap().len(), 1);
    assert_eq!(out[1].get_array("j").unwrap().len(), 0);
}

#[test]
fn limits_hold() {
    // $addFields with a numeric component names a field of each element.
    let out = run(
        bson!([{"$addFields": {"tags.400000000": 1}}]),
        vec![doc! {"_id": 1, "tags": ["a", {"b": 1}]}],
    )
    .unwrap();
    assert_eq!(
        out[0],
        doc! {"_id": 1, "tags": [{"400000000": 1}, {"b": 1, "400000000": 1}]}
    );
    // Doubling the document every stage stops at 16 MiB.
    let stages: Vec<Bson> = (0..40)
        .map(|_| bson!({"$project": {"a": "$$ROOT", "b": "$$ROOT"}}))
        .collect();
    let e = run(
        Bson::Array(stages),
        vec![doc! {"_id": 1, "s": "x".repeat(1000)}],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BSONObjectTooLarge);
    // Nesting a document one level per stage stops at 200 levels.
    let stages: Vec<Bson> = (0..300)
        .map(|_| bson!({"$project": {"a": "$$ROOT"}}))
        .collect();
    let e = run(Bson::Array(stages), vec![doc! {"_id": 1}]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Overflow);
    let stages: Vec<Bson> = (0..1001).map(|_| bson!({"$limit": 1})).collect();
    assert_eq!(
        run(Bson::Array(stages), vec![]).unwrap_err().code.code(),
        7749501
    );
    let stages: Vec<Bson> = (0..1000).map(|_| bson!({"$limit": 1})).collect();
    assert!(run(Bson::Array(stages), vec![]).is_ok());
    // $push stops at 16 MiB.
    let docs: Vec<Document> = (0..40)
        .map(|i| doc! {"_id": i, "s": "x".repeat(1 << 20)})
        .collect();
    let e = run(
        bson!([{"$group": {"_id": null, "all": {"$push": "$s"}}}]),
        docs.clone(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
    assert!(e.message.contains("$push"));
    // $unwind copies a large document per element, one at a time: a
    // $limit after it reads only what it passes on.
    let wide = doc! {"_id": 1, "s": "x".repeat(1 << 20), "a": (0..500).map(Bson::Int32).collect::<Vec<_>>()};
    let out = run(bson!([{"$unwind": "$a"}, {"$limit": 2}]), vec![wide]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].get_i32("a").unwrap(), 1);
    // $range in a pipeline.
    let e = run(
        bson!([{"$project": {"r": {"$range": [0, 1_000_000_000]}}}]),
        vec![doc! {"_id": 1}],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
}

#[test]
fn bad_stages() {
    assert_eq!(
        run(bson!([{"$nope": {}}]), vec![]).unwrap_err().code,
        ErrorCode::Location40324
    );
    assert!(run(bson!([{"$limit": 0}]), vec![]).is_err());
    assert!(run(bson!([{"$group": {"_id": 1, "x": {"$bad": 1}}}]), vec![]).is_err());
}

// ---- blocking stages within a budget ----------------------------------------------

/// A budget far below the data: every blocking stage spills.
fn tiny() -> StageBudget {
    StageBudget::new(2048, true)
}

fn pipeline(p: Bson) -> Pipeline {
    let Bson::Array(stages) = p else {
        panic!("pipeline must be an array")
    };
    Pipeline::parse(&stages).expect("a valid pipeline")
}

/// Documents with repeated keys of mixed numeric types, nulls, missing
/// fields and strings, and padding so that they fill many budgets.
fn wide_sample(n: i32) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let k = match i % 7 {
                0 => Bson::Int32(i % 50),
                1 => Bson::Double(f64::from(i % 50)),
                2 => Bson::Int64(i64::from(i % 50)),
                3 => Bson::Null,
                4 => Bson::String(format!("s{}", i % 13)),
                5 => Bson::Decimal128(format!("{}", i % 50).parse().expect("a decimal")),
                _ => Bson::Document(doc! {"a": i % 5, "b": [i % 3]}),
            };
            let mut d = doc! {"_id": i, "k": k, "v": i % 11, "w": f64::from(i) / 4.0, "pad": "p".repeat(40)};
            if i % 9 == 0 {
                d.remove("v");
            }
            d
        })
        .collect()
}

fn by_id(mut docs: Vec<Document>) -> Vec<Document> {
    docs.sort_by(|a, b| {
        crate::query::compare::compare(a.get("_id").expect("an _id"), b.get("_id").expect("an _id"))
    });
    docs
}

#[test]
fn sort_spilled_is_the_sort_in_memory() {
    let docs = wide_sample(3000);
    for p in [
        bson!([{"$sort": {"k": 1}}]),
        bson!([{"$sort": {"v": -1, "w": 1}}]),
        bson!([{"$sort": {"k": -1}}, {"$limit": 7}]),
        bson!([{"$sort": {"v": 1}}, {"$skip": 40}, {"$limit": 25}, {"$project": {"pad": 0}}]),
        bson!([{"$match": {"v": {"$gt": 3}}}, {"$sort": {"w": -1}}, {"$limit": 1}]),
    ] {
        let p = pipeline(p);
        let memory = p.run(docs.clone(), &no_lookup()).unwrap();
        let spilled = p.run_within(docs.clone(), &no_lookup(), tiny()).unwrap();
        assert!(!memory.is_empty());
        assert_eq!(spilled, memory, "{p:?}");
    }
}

#[test]
fn group_spilled_is_the_group_in_memory() {
    let docs = wide_sample(3000);
    let every = bson!({
        "_id": "$k",
        "sum": {"$sum": "$v"}, "one": {"$sum": 1}, "avg": {"$avg": "$v"},
        "min": {"$min": "$v"}, "max": {"$max": "$w"},
        "first": {"$first": "$_id"}, "last": {"$last": "$_id"},
        "push": {"$push": "$v"}, "set": {"$addToSet": "$v"}, "n": {"$count": {}},
    });
    for p in [
        bson!([{"$group": every.clone()}]),
        bson!([{"$group": {"_id": "$_id", "w": {"$sum": "$w"}}}]),
        bson!([{"$group": {"_id": null, "set": {"$addToSet": "$k"}, "n": {"$sum": 1}}}]),
        bson!([{"$group": every}, {"$sort": {"_id": 1}}, {"$group": {"_id": {"$gt": ["$one", 60]}, "ids": {"$push": "$_id"}}}]),
    ] {
        let p = pipeline(p);
        let memory = p.run(docs.clone(), &no_lookup()).unwrap();
        let spilled = p.run_within(docs.clone(), &no_lookup(), tiny()).unwrap();
        assert!(!memory.is_empty());
        // Spilled groups come out in key order; their contents are the same.
        assert_eq!(by_id(spilled), by_id(memory), "{p:?}");
    }
    // Keys equal across numeric types (and Decimal128) are one group.
    let out =
        pipeline(bson!([{"$group": {"_id": "$k", "n": {"$sum": 1}}}, {"$match": {"_id": 7}}]))
            .run_within(docs, &no_lookup(), tiny())
            .unwrap();
    assert_eq!(out.len(), 1, "{out:?}");
}

#[test]
fn sort_by_count_and_count_spill_too() {
    let docs = wide_sample(2000);
    for p in [
        bson!([{"$sortByCount": "$v"}]),
        bson!([{"$unwind": {"path": "$pad"}}, {"$count": "n"}]),
        bson!([{"$sortByCount": "$k"}, {"$limit": 3}]),
    ] {
        let p = pipeline(p);
        let memory = p.run(docs.clone(), &no_lookup()).unwrap();
        let spilled = p.run_within(docs.clone(), &no_lookup(), tiny()).unwrap();
        // Counts are sorted; ties keep first-seen order in memory but key
        // order when spilled, so compare the counts and the sets.
        let counts = |d: &[Document]| {
            d.iter()
                .map(|d| d.get("count").or(d.get("n")).cloned())
                .collect::<Vec<_>>()
        };
        assert_eq!(counts(&spilled), counts(&memory), "{p:?}");
        if memory.len() > 3 {
            assert_eq!(by_id(spilled), by_id(memory), "{p:?}");
        }
    }
}

#[test]
fn no_disk_use_fails_with_292_naming_the_stage() {
    let docs = wide_sample(500);
    let no_disk = StageBudget::new(16 << 10, false);
    for (p, what) in [
        (bson!([{"$sort": {"k": 1}}]), "Sort"),
        (bson!([{"$group": {"_id": "$_id"}}]), "$group"),
        (bson!([{"$sortByCount": "$_id"}]), "$group"),
    ] {
        let e = pipeline(p)
            .run_within(docs.clone(), &no_lookup(), no_disk)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed);
        assert!(e.message.contains(what), "{}", e.message);
    }
    // What fits needs no disk: a top-k sort keeps k documents, a group few keys.
    for p in [
        bson!([{"$sort": {"k": 1}}, {"$limit": 3}]),
        bson!([{"$group": {"_id": "$v", "n": {"$sum": 1}}}]),
        bson!([{"$match": {"_id": {"$lt": 5}}}, {"$sort": {"k": 1}}]),
    ] {
        assert!(
            pipeline(p)
                .run_within(docs.clone(), &no_lookup(), no_disk)
                .is_ok()
        );
    }
}

/// A tiny budget makes `$lookup` a nested-loop join; `_id` joins are
/// point lookups; all give what the hash join gives.
#[test]
fn lookup_joins_agree_and_stay_bounded() {
    let foreign: Vec<Document> = (0..300)
        .map(|i| doc! {"_id": i % 100 + if i >= 100 { 1000 * (i / 100) } else { 0 }, "f": i % 17, "g": [i % 5, "x"]})
        .collect();
    let local = wide_sample(120);
    for p in [
        bson!([{"$lookup": {"from": "o", "localField": "v", "foreignField": "f", "as": "m"}}]),
        bson!([{"$lookup": {"from": "o", "localField": "v", "foreignField": "g", "as": "m"}}]),
        bson!([{"$lookup": {"from": "o", "localField": "v", "foreignField": "_id", "as": "m"}}]),
        bson!([{"$lookup": {"from": "o", "localField": "k", "foreignField": "_id", "as": "m.n"}}]),
    ] {
        let p = pipeline(p);
        let hashed = p.run(local.clone(), &InMemory(foreign.clone())).unwrap();
        let looped = p
            .run_within(
                local.clone(),
                &InMemory(foreign.clone()),
                StageBudget::new(64, false),
            )
            .unwrap();
        assert_eq!(looped, hashed, "{p:?}");
        let joined = |d: &Document| matches!(path::get_field(d, "m.n").or(path::get_field(d, "m")), Some(Bson::Array(a)) if !a.is_empty());
        assert!(hashed.iter().any(joined), "{p:?}");
    }
    // What one document joins is held to 16 MiB + 16 KiB.
    let big: Vec<Document> = (0..20)
        .map(|i| doc! {"_id": i, "f": 1, "s": "y".repeat(1 << 20)})
        .collect();
    let e = pipeline(
        bson!([{"$lookup": {"from": "big", "localField": "k", "foreignField": "f", "as": "m"}}]),
    )
    .run(vec![doc! {"k": 1}], &InMemory(big))
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Location4568);
    assert!(e.message.contains("big"), "{}", e.message);
}

/// An input that makes documents as they are pulled and counts them.
struct Counted {
    made: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    left: usize,
}

impl Op for Counted {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let i = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as i64;
        Ok(Some(doc! {"_id": i, "k": i % 10}))
    }
}

fn counted(n: usize) -> (Box<dyn Op>, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (
        Box::new(Counted {
            made: made.clone(),
            left: n,
        }),
        made,
    )
}

/// Streaming stages pull only what they pass on: the first documents come
/// without the rest being read, and `$limit` stops the input.
#[test]
fn streaming_stages_pull_only_what_they_need() {
    let (input, made) = counted(1_000_000);
    let mut op = pipeline(bson!([{"$match": {"k": 3}}, {"$addFields": {"x": 1}}, {"$unwind": {"path": "$x", "preserveNullAndEmptyArrays": true}}, {"$skip": 2}, {"$limit": 5}]))
        .stream(input, tiny());
    let lookup = no_lookup();
    let mut cx = Cx::new(&lookup, Deadline::NONE);
    let first = op.next(&mut cx).unwrap().unwrap();
    assert_eq!(first.get_i64("_id").unwrap(), 23);
    assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 24);
    while op.next(&mut cx).unwrap().is_some() {}
    assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 64);
    // A blocking stage reads its whole input, then streams its output.
    let (input, made) = counted(5000);
    let mut op = pipeline(bson!([{"$sort": {"k": -1}}, {"$limit": 3}])).stream(input, tiny());
    assert_eq!(op.next(&mut cx).unwrap().unwrap().get_i64("k").unwrap(), 9);
    assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 5000);
}

#[test]
fn the_deadline_stops_a_pipeline() {
    let (input, _) = counted(usize::MAX);
    let mut op = pipeline(bson!([{"$group": {"_id": "$k"}}])).stream(input, tiny());
    let lookup = no_lookup();
    let mut cx = Cx::new(
        &lookup,
        Deadline::after(Some(std::time::Duration::from_millis(20))),
    );
    let e = op.next(&mut cx).unwrap_err();
    assert_eq!(e.code, ErrorCode::MaxTimeMSExpired);
}

#[test]
fn a_leading_match_can_be_taken_by_the_input() {
    let mut p = pipeline(bson!([{"$match": {"_id": 3}}, {"$project": {"k": 1}}]));
    let f = p.take_leading_match().unwrap();
    assert_eq!(f.id_equality(), Some(&Bson::Int32(3)));
    assert!(p.take_leading_match().is_none());
    assert_eq!(
        p.run(vec![doc! {"_id": 3, "k": 1, "z": 2}], &no_lookup())
            .unwrap(),
        vec![doc! {"_id": 3, "k": 1}]
    );
}

/// `$lookup`'s arguments: an unknown one fails to parse, `let` needs a
/// `pipeline`, the equality fields come together, a `$documents`
/// pipeline without `from` is refused by name (see
/// `tests_sub_pipelines` for the sub-pipeline form running).
#[test]
fn lookup_refuses_what_it_does_not_run() {
    use crate::error::ErrorCode;
    let parse = |l: Bson| Pipeline::parse(&[bson!({"$lookup": l})]).map(|_| ());
    for form in [
        bson!({"from": "o", "localField": "a", "foreignField": "b", "as": "m", "bogus": 1}),
        bson!({"from": "o", "localField": "a", "foreignField": "b", "as": "m", "let": {"x": 1}}),
        bson!({"from": "o", "localField": "a", "as": "m", "pipeline": []}),
        bson!({"from": "o", "as": "m"}),
        bson!({"from": "o", "pipeline": []}),
        bson!({"from": 1, "as": "m", "pipeline": []}),
        bson!({"from": "o", "as": "m", "pipeline": {}}),
        bson!({"from": "o", "as": "m", "let": 1, "pipeline": []}),
    ] {
        assert_eq!(
            parse(form.clone()).unwrap_err().code,
            ErrorCode::FailedToParse,
            "{form}"
        );
    }
    assert!(parse(bson!({"as": "m", "pipeline": [{"$documents": [{"a": 1}]}]})).is_ok());
    // Without `from`, the pipeline must make its own documents.
    for form in [
        bson!({"as": "m", "pipeline": []}),
        bson!({"as": "m", "pipeline": [{"$match": {}}]}),
        bson!({"as": "m", "pipeline": [{"$match": {}}, {"$documents": []}]}),
    ] {
        assert_eq!(
            parse(form.clone()).unwrap_err().code,
            ErrorCode::FailedToParse,
            "{form}"
        );
    }
    assert!(parse(bson!({"from": "o", "localField": "a", "foreignField": "b", "as": "m"})).is_ok());
    assert!(parse(bson!({"from": "o", "as": "m", "pipeline": []})).is_ok());
}
