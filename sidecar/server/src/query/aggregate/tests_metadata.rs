//! Document metadata through the pipeline's operators (`query::meta`):
//! attached by `$sort` and `$sample`, kept by the stages that pass a
//! document on (a spilled sort included), none after the stages that make
//! new documents.

use super::*;
use bson::{bson, doc};

fn run(stages: Bson, docs: Vec<Document>) -> Result<Vec<Document>> {
    let Bson::Array(stages) = stages else {
        panic!("a pipeline")
    };
    Pipeline::parse(&stages)?.run(docs, &InMemory(Vec::new()))
}

fn input() -> Vec<Document> {
    (0..20)
        .map(|i| doc! {"_id": i, "a": (i * 7) % 20, "tags": ["x", "y"]})
        .collect()
}

#[test]
fn sort_key_kept_through_passing_stages() {
    let got = run(
        bson!([
            {"$sort": {"a": -1}},
            {"$unwind": "$tags"},
            {"$match": {"tags": "y"}},
            {"$project": {"a": 1}},
            {"$skip": 1},
            {"$limit": 3},
            {"$replaceWith": {"k": {"$meta": "sortKey"}, "a": "$a"}},
        ]),
        input(),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            doc! {"k": [18], "a": 18},
            doc! {"k": [17], "a": 17},
            doc! {"k": [16], "a": 16},
        ]
    );
}

#[test]
fn a_spilled_sort_keeps_each_documents_metadata() {
    let stages = bson!([
        {"$sample": {"size": 20}},
        {"$sort": {"a": 1}},
        {"$project": {"r": {"$meta": "randVal"}, "k": {"$meta": "sortKey"}, "a": 1}},
    ]);
    let Bson::Array(stages) = stages else {
        unreachable!()
    };
    let p = Pipeline::parse(&stages).unwrap();
    let tiny = StageBudget::new(256, true);
    let spilled = p.run_within(input(), &InMemory(Vec::new()), tiny).unwrap();
    assert_eq!(spilled.len(), 20);
    let mut rand_vals = Vec::new();
    for (i, d) in spilled.iter().enumerate() {
        let a = d.get_i32("a").unwrap();
        assert_eq!(a, i as i32, "{d}");
        assert_eq!(d.get_array("k").unwrap(), &vec![Bson::Int32(a)]);
        let r = d.get_f64("r").unwrap();
        assert!((0.0..1.0).contains(&r), "{d}");
        rand_vals.push(r.to_bits());
    }
    rand_vals.sort_unstable();
    rand_vals.dedup();
    assert_eq!(rand_vals.len(), 20, "one random value per document");
}

#[test]
fn new_documents_have_none() {
    for stages in [
        bson!([{"$sort": {"a": 1}}, {"$group": {"_id": "$a"}}, {"$project": {"k": {"$meta": "sortKey"}}}]),
        bson!([{"$sort": {"a": 1}}, {"$bucketAuto": {"groupBy": "$a", "buckets": 2}}, {"$project": {"k": {"$meta": "sortKey"}}}]),
        bson!([{"$sample": {"size": 3}}, {"$facet": {"f": [{"$limit": 1}]}}, {"$project": {"k": {"$meta": "randVal"}}}]),
        bson!([{"$sort": {"a": 1}}, {"$count": "n"}, {"$addFields": {"k": {"$meta": "sortKey"}}}]),
    ] {
        for d in run(stages.clone(), input()).unwrap() {
            assert!(!d.contains_key("k"), "{stages}: {d}");
        }
    }
    // `$bucket` is `$group` then `$sort` by the bucket.
    let got = run(
        bson!([{"$bucket": {"groupBy": "$a", "boundaries": [0, 10, 20]}}, {"$addFields": {"k": {"$meta": "sortKey"}}}]),
        input(),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            doc! {"_id": 0, "count": 10, "k": [0]},
            doc! {"_id": 10, "count": 10, "k": [10]},
        ]
    );
}

#[test]
fn metadata_in_group_keys_and_accumulators() {
    let got = run(
        bson!([
            {"$sort": {"a": 1}},
            {"$limit": 3},
            {"$group": {"_id": {"$meta": "sortKey"}, "all": {"$push": {"$meta": "sortKey"}}}},
            {"$sort": {"_id": 1}},
        ]),
        input(),
    )
    .unwrap();
    assert_eq!(
        got,
        vec![
            doc! {"_id": [0], "all": [[0]]},
            doc! {"_id": [1], "all": [[1]]},
            doc! {"_id": [2], "all": [[2]]},
        ]
    );
}

#[test]
fn a_sub_pipeline_starts_bare_and_the_outer_document_keeps_its_own() {
    let got = run(
        bson!([
            {"$sort": {"a": -1}},
            {"$limit": 1},
            {"$unionWith": {"pipeline": [{"$documents": [{"x": 1}]}]}},
            {"$project": {"_id": 0, "k": {"$meta": "sortKey"}, "x": 1}},
        ]),
        input(),
    )
    .unwrap();
    assert_eq!(got, vec![doc! {"k": [19]}, doc! {"x": 1}]);
    let got = run(
        bson!([
            {"$sort": {"a": -1}},
            {"$limit": 1},
            {"$lookup": {"pipeline": [{"$documents": [{"x": 2}, {"x": 1}]}, {"$sort": {"x": 1}}, {"$project": {"_id": 0, "k": {"$meta": "sortKey"}}}], "as": "l"}},
            {"$project": {"_id": 0, "k": {"$meta": "sortKey"}, "l": 1}},
        ]),
        input(),
    )
    .unwrap();
    assert_eq!(got, vec![doc! {"l": [{"k": [1]}, {"k": [2]}], "k": [19]}]);
}

#[test]
fn a_spilled_facet_hands_each_documents_metadata_down() {
    let stages = bson!([
        {"$sort": {"a": -1}},
        {"$facet": {
            "keys": [{"$project": {"_id": 0, "k": {"$meta": "sortKey"}}}, {"$limit": 3}],
            "again": [{"$sort": {"_id": 1}}, {"$limit": 1}, {"$project": {"_id": 0, "k": {"$meta": "sortKey"}}}],
        }},
    ]);
    let Bson::Array(stages) = stages else {
        unreachable!()
    };
    let p = Pipeline::parse(&stages).unwrap();
    for budget in [StageBudget::new(256, true), StageBudget::new(1 << 20, true)] {
        let got = p
            .run_within(input(), &InMemory(Vec::new()), budget)
            .unwrap();
        assert_eq!(
            got,
            vec![doc! {"keys": [{"k": [19]}, {"k": [18]}, {"k": [17]}], "again": [{"k": [0]}]}]
        );
    }
}

#[test]
fn a_facet_inherits_what_its_input_lost() {
    let e = run(
        bson!([
            {"$setWindowFields": {"sortBy": {"a": 1}, "output": {"n": {"$sum": 1}}}},
            {"$facet": {"f": [{"$project": {"k": {"$meta": "sortKey"}}}]}},
        ]),
        input(),
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::CommandNotSupported);
    assert!(e.message.contains("$setWindowFields"), "{}", e.message);
}
