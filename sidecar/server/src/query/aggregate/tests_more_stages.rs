//! `$bucket`, `$bucketAuto`, `$redact` and `$graphLookup`: MongoDB's
//! documented examples, their error codes, and hostile specifications.

use super::*;
use crate::error::ErrorCode;
use bson::{bson, doc};

fn run(stages: Vec<Bson>, docs: Vec<Document>) -> Result<Vec<Document>> {
    Pipeline::parse(&stages)?.run(docs, &InMemory(Vec::new()))
}

fn run_with(
    stages: Vec<Bson>,
    docs: Vec<Document>,
    foreign: Vec<Document>,
) -> Result<Vec<Document>> {
    Pipeline::parse(&stages)?.run(docs, &InMemory(foreign))
}

fn code(r: Result<impl std::fmt::Debug>) -> i32 {
    r.expect_err("an error").code.code()
}

/// MongoDB's manual: artists bucketed by year born.
fn artists() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "last_name": "Bernard", "year_born": 1845, "price": 199.99},
        doc! {"_id": 2, "last_name": "Rippl-Ronai", "year_born": 1861, "price": 280.00},
        doc! {"_id": 3, "last_name": "Ostroumova", "year_born": 1871, "price": 76.04},
        doc! {"_id": 4, "last_name": "Van Gogh", "year_born": 1853, "price": 167.30},
        doc! {"_id": 5, "last_name": "Maurer", "year_born": 1868, "price": 483.00},
        doc! {"_id": 6, "last_name": "Munch", "year_born": 1863, "price": 385.00},
        doc! {"_id": 7, "last_name": "Redon", "year_born": 1840, "price": 159.00},
        doc! {"_id": 8, "last_name": "Lorenz", "year_born": 1895, "price": 118.42},
    ]
}

#[test]
fn bucket_groups_by_boundaries_as_the_manual_shows() {
    let out = run(
        vec![bson!({"$bucket": {
            "groupBy": "$year_born",
            "boundaries": [1840, 1850, 1860, 1870, 1880],
            "default": "Other",
            "output": {"count": {"$sum": 1}, "artists": {"$push": "$last_name"}},
        }})],
        artists(),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1840, "count": 2, "artists": ["Bernard", "Redon"]},
            doc! {"_id": 1850, "count": 1, "artists": ["Van Gogh"]},
            doc! {"_id": 1860, "count": 3, "artists": ["Rippl-Ronai", "Maurer", "Munch"]},
            doc! {"_id": 1870, "count": 1, "artists": ["Ostroumova"]},
            doc! {"_id": "Other", "count": 1, "artists": ["Lorenz"]},
        ]
    );
    // Without `output`: a count; a value outside without a default is 7158303.
    let out = run(
        vec![bson!({"$bucket": {"groupBy": "$price", "boundaries": [0, 200, 400], "default": "Other"}})],
        artists(),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 0, "count": 5},
            doc! {"_id": 200, "count": 2},
            doc! {"_id": "Other", "count": 1},
        ]
    );
    let e = run(
        vec![bson!({"$bucket": {"groupBy": "$price", "boundaries": [0, 200]}})],
        artists(),
    );
    assert_eq!(code(e), 7158303);
}

#[test]
fn bucket_specifications_fail_with_mongodb_codes() {
    let cases: Vec<(Bson, i32)> = vec![
        (bson!(1), 40201),
        (bson!({"groupBy": "year", "boundaries": [0, 1]}), 40202),
        (bson!({"groupBy": "$y", "boundaries": 5}), 40200),
        (bson!({"groupBy": "$y", "boundaries": ["$x", 1]}), 40191),
        (bson!({"groupBy": "$y", "boundaries": [1]}), 40192),
        (bson!({"groupBy": "$y", "boundaries": [1, "a"]}), 40193),
        (bson!({"groupBy": "$y", "boundaries": [2, 1]}), 40194),
        (bson!({"groupBy": "$y", "boundaries": [1, 1]}), 40194),
        (
            bson!({"groupBy": "$y", "boundaries": [0, 1], "default": "$x"}),
            40195,
        ),
        (
            bson!({"groupBy": "$y", "boundaries": [0, 1], "output": 1}),
            40196,
        ),
        (
            bson!({"groupBy": "$y", "boundaries": [0, 1], "bogus": 1}),
            40197,
        ),
        (bson!({"groupBy": "$y"}), 40198),
        (
            bson!({"groupBy": "$y", "boundaries": [0, 10], "default": 5}),
            40199,
        ),
        (
            bson!({"groupBy": "$y", "boundaries": [0, 1], "output": {"n": {"$nope": 1}}}),
            15952,
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(
            code(Pipeline::parse(&[bson!({"$bucket": spec.clone()})])),
            want,
            "{spec}"
        );
    }
    // A default of another type class, or at the top boundary, is fine.
    for default in [bson!("x"), bson!(10), bson!(-1)] {
        Pipeline::parse(&[
            bson!({"$bucket": {"groupBy": "$y", "boundaries": [0, 10], "default": default}}),
        ])
        .unwrap();
    }
}

/// A million boundaries parse and search in O(log n) per document.
#[test]
fn bucket_with_a_million_boundaries() {
    let boundaries: Vec<i32> = (0..1_000_000).map(|i| i * 2).collect();
    let docs: Vec<Document> = (0..1000).map(|i| doc! {"v": i * 1999}).collect();
    let out = run(
        vec![bson!({"$bucket": {"groupBy": "$v", "boundaries": boundaries, "default": "past"}})],
        docs,
    )
    .unwrap();
    assert_eq!(out.len(), 1000);
    assert_eq!(out[1], doc! {"_id": 1998, "count": 1});
    // 999 * 1999 = 1997001 < 1999998, the last boundary.
    assert_eq!(out[999], doc! {"_id": 1997000, "count": 1});
}

#[test]
fn bucket_auto_fills_even_buckets_as_the_manual_shows() {
    let docs: Vec<Document> = [1, 2, 2, 3, 4, 5, 6, 7, 8, 9]
        .iter()
        .map(|v| doc! {"p": *v})
        .collect();
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 3}})],
        docs.clone(),
    )
    .unwrap();
    // round(10 / 3) = 3 per bucket; the last takes the rest.
    assert_eq!(
        out,
        vec![
            doc! {"_id": {"min": 1, "max": 3}, "count": 3},
            doc! {"_id": {"min": 3, "max": 6}, "count": 3},
            doc! {"_id": {"min": 6, "max": 9}, "count": 4},
        ]
    );
    // Equal values never split: 2 stays with its twin.
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 5, "output": {"v": {"$push": "$p"}}}})],
        docs.clone(),
    )
    .unwrap();
    assert_eq!(out[0], doc! {"_id": {"min": 1, "max": 3}, "v": [1, 2, 2]});
    // `$first`/`$last` follow the input order within a bucket.
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 1, "output": {"f": {"$first": "$i"}, "l": {"$last": "$i"}, "lo": {"$min": "$p"}}}})],
        vec![doc! {"i": 0, "p": 5}, doc! {"i": 1, "p": 1}, doc! {"i": 2, "p": 9}, doc! {"i": 3, "p": 2}],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![doc! {"_id": {"min": 1, "max": 9}, "f": 0, "l": 3, "lo": 1}]
    );
    // More buckets than documents: one value per bucket.
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 100}})],
        docs.clone(),
    )
    .unwrap();
    assert_eq!(out.len(), 9);
    // Spilled (tiny budget) or in memory, the same buckets.
    let tiny = crate::spill::StageBudget::new(256, true);
    let p = Pipeline::parse(&[bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 3}})]).unwrap();
    let spilled = p
        .run_within(docs.clone(), &InMemory(Vec::new()), tiny)
        .unwrap();
    let memory = p.run(docs.clone(), &InMemory(Vec::new())).unwrap();
    assert_eq!(spilled, memory);
    let e = p.run_within(
        docs,
        &InMemory(Vec::new()),
        crate::spill::StageBudget::new(256, false),
    );
    assert_eq!(
        code(e),
        ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed.code()
    );
}

#[test]
fn bucket_auto_granularity_rounds_edges() {
    // MongoDB's manual: prices with granularity R20... here 1-2-5 and
    // POWERSOF2, whose edges are easy to check by hand.
    let docs: Vec<Document> = [1, 3, 7, 12, 30, 45]
        .iter()
        .map(|v| doc! {"p": *v})
        .collect();
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 3, "granularity": "1-2-5"}})],
        docs.clone(),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": {"min": 0.5, "max": 5.0}, "count": 2},
            doc! {"_id": {"min": 5.0, "max": 20.0}, "count": 2},
            doc! {"_id": {"min": 20.0, "max": 50.0}, "count": 2},
        ]
    );
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 3, "granularity": "POWERSOF2"}})],
        docs,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": {"min": 0.5, "max": 4}, "count": 2},
            doc! {"_id": {"min": 4, "max": 16}, "count": 2},
            doc! {"_id": {"min": 16, "max": 64}, "count": 2},
        ]
    );
    // Granularity needs non-negative numbers.
    for (v, want) in [
        (bson!("a"), 40258),
        (bson!(f64::NAN), 40259),
        (bson!(-1), 40260),
    ] {
        let e = run(
            vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 2, "granularity": "R5"}})],
            vec![doc! {"p": v}],
        );
        assert_eq!(code(e), want);
    }
}

#[test]
fn bucket_auto_specifications_fail_with_mongodb_codes() {
    let cases: Vec<(Bson, i32)> = vec![
        (bson!([]), 40240),
        (bson!({"groupBy": "p", "buckets": 2}), 40239),
        (bson!({"groupBy": "$", "buckets": 2}), 40239),
        (bson!({"groupBy": "$p", "buckets": "2"}), 40241),
        (bson!({"groupBy": "$p", "buckets": 2147483648i64}), 40242),
        (bson!({"groupBy": "$p", "buckets": 2.5}), 40242),
        (bson!({"groupBy": "$p", "buckets": 1e300}), 40242),
        (bson!({"groupBy": "$p", "buckets": 0}), 40243),
        (bson!({"groupBy": "$p", "buckets": -5}), 40243),
        (bson!({"groupBy": "$p", "buckets": 2, "output": []}), 40244),
        (bson!({"groupBy": "$p", "buckets": 2, "x": 1}), 40245),
        (bson!({"groupBy": "$p"}), 40246),
        (
            bson!({"groupBy": "$p", "buckets": 2, "granularity": 5}),
            40261,
        ),
        (
            bson!({"groupBy": "$p", "buckets": 2, "granularity": "R7"}),
            40257,
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(
            code(Pipeline::parse(&[bson!({"$bucketAuto": spec.clone()})])),
            want,
            "{spec}"
        );
    }
    // 2^31 - 1 buckets parse, and cost only the documents there are.
    let out = run(
        vec![bson!({"$bucketAuto": {"groupBy": "$p", "buckets": 2147483647}})],
        vec![doc! {"p": 1}, doc! {"p": 2}],
    )
    .unwrap();
    assert_eq!(out.len(), 2);
}

/// MongoDB's manual: a forecast document redacted by its `tags`.
#[test]
fn redact_descends_prunes_and_keeps() {
    let forecast = doc! {
        "_id": 1,
        "title": "123 Department Report",
        "tags": ["G", "STLW"],
        "year": 2014,
        "subsections": [
            {"subtitle": "Section 1: Overview", "tags": ["SI", "G"], "content": "Section 1: This is the content of section 1."},
            {"subtitle": "Section 2: Analysis", "tags": ["STLW"], "content": "Section 2: This is the content of section 2."},
            {"subtitle": "Section 3: Budgeting", "tags": ["TK"], "content": {"text": "Section 3: This is the content of section 3.", "tags": ["HCS"]}},
        ],
    };
    let stage = bson!({"$redact": {"$cond": {
        "if": {"$or": [{"$in": ["G", {"$ifNull": ["$tags", []]}]}, {"$in": ["STLW", {"$ifNull": ["$tags", []]}]}]},
        "then": "$$DESCEND",
        "else": "$$PRUNE",
    }}});
    let out = run(vec![stage], vec![forecast]).unwrap();
    assert_eq!(
        out,
        vec![doc! {
            "_id": 1,
            "title": "123 Department Report",
            "tags": ["G", "STLW"],
            "year": 2014,
            "subsections": [
                {"subtitle": "Section 1: Overview", "tags": ["SI", "G"], "content": "Section 1: This is the content of section 1."},
                {"subtitle": "Section 2: Analysis", "tags": ["STLW"], "content": "Section 2: This is the content of section 2."},
            ],
        }]
    );
    // $$KEEP keeps the level whole; a pruned top level drops the document.
    let stage = bson!({"$redact": {"$cond": [{"$eq": ["$level", 1]}, "$$KEEP", "$$PRUNE"]}});
    let out = run(
        vec![stage],
        vec![doc! {"level": 1, "a": {"level": 5}}, doc! {"level": 2}],
    )
    .unwrap();
    assert_eq!(out, vec![doc! {"level": 1, "a": {"level": 5}}]);
    // Arrays of arrays of documents are descended too.
    let stage = bson!({"$redact": {"$cond": [{"$eq": ["$x", 0]}, "$$PRUNE", "$$DESCEND"]}});
    let out = run(vec![stage], vec![doc! {"a": [[{"x": 0}, {"x": 1}], 5]}]).unwrap();
    assert_eq!(out, vec![doc! {"a": [[{"x": 1}], 5]}]);
}

#[test]
fn redact_refuses_other_results_and_root() {
    let e = run(vec![bson!({"$redact": "$x"})], vec![doc! {"x": 1}]);
    assert_eq!(code(e), 17053);
    // A string that looks like a variable in a document is not one.
    let e = run(vec![bson!({"$redact": "$x"})], vec![doc! {"x": "$$KEEP"}]);
    assert_eq!(code(e), 17053);
    // A `$literal` is not bound.
    let e = run(
        vec![bson!({"$redact": {"$literal": "$$KEEP"}})],
        vec![doc! {}],
    );
    assert_eq!(code(e), 17053);
    assert_eq!(
        code(Pipeline::parse(&[
            bson!({"$redact": {"$cond": [{"$eq": ["$$ROOT.a", 1]}, "$$KEEP", "$$PRUNE"]}})
        ])),
        115
    );
    assert_eq!(
        code(Pipeline::parse(&[bson!({"$redact": "$$NOPE"})])),
        17276
    );
}

/// 200 levels (the most a document holds) descend; the stack holds.
#[test]
fn redact_deep_documents() {
    let mut d = doc! {"leaf": 1};
    for _ in 0..190 {
        d = doc! {"a": d};
    }
    let out = run(vec![bson!({"$redact": "$$DESCEND"})], vec![d.clone()]).unwrap();
    assert_eq!(out, vec![d]);
}

fn employees() -> Vec<Document> {
    vec![
        doc! {"_id": 1, "name": "Dev"},
        doc! {"_id": 2, "name": "Eliot", "reportsTo": "Dev"},
        doc! {"_id": 3, "name": "Ron", "reportsTo": "Eliot"},
        doc! {"_id": 4, "name": "Andrew", "reportsTo": "Eliot"},
        doc! {"_id": 5, "name": "Asya", "reportsTo": "Ron"},
        doc! {"_id": 6, "name": "Dan", "reportsTo": "Andrew"},
    ]
}

fn names(d: &Document, field: &str) -> Vec<(String, Option<i64>)> {
    let mut out: Vec<(String, Option<i64>)> = d
        .get_array(field)
        .unwrap()
        .iter()
        .map(|e| {
            let e = e.as_document().unwrap();
            (
                e.get_str("name").unwrap().to_owned(),
                e.get_i64("depth").ok(),
            )
        })
        .collect();
    out.sort();
    out
}

/// MongoDB's manual: the reporting hierarchy of each employee.
#[test]
fn graph_lookup_walks_the_hierarchy() {
    let stage = bson!({"$graphLookup": {
        "from": "employees",
        "startWith": "$reportsTo",
        "connectFromField": "reportsTo",
        "connectToField": "name",
        "as": "reportingHierarchy",
        "depthField": "depth",
    }});
    let out = run_with(vec![stage], employees(), employees()).unwrap();
    assert_eq!(names(&out[0], "reportingHierarchy"), vec![]);
    assert_eq!(
        names(&out[4], "reportingHierarchy"),
        vec![
            ("Dev".to_owned(), Some(2)),
            ("Eliot".to_owned(), Some(1)),
            ("Ron".to_owned(), Some(0)),
        ]
    );
    // maxDepth 0: only the first round; restrictSearchWithMatch filters.
    let stage = bson!({"$graphLookup": {
        "from": "employees", "startWith": "$reportsTo", "connectFromField": "reportsTo",
        "connectToField": "name", "as": "h", "maxDepth": 0,
    }});
    let out = run_with(vec![stage], employees(), employees()).unwrap();
    assert_eq!(names(&out[4], "h"), vec![("Ron".to_owned(), None)]);
    let stage = bson!({"$graphLookup": {
        "from": "employees", "startWith": "$reportsTo", "connectFromField": "reportsTo",
        "connectToField": "name", "as": "h", "restrictSearchWithMatch": {"_id": {"$ne": 2}},
    }});
    let out = run_with(vec![stage], employees(), employees()).unwrap();
    assert_eq!(names(&out[4], "h"), vec![("Ron".to_owned(), None)]);
}

/// A cycle ends the search; a huge maxDepth changes nothing; an index too
/// big for the budget falls back to scans with the same answer.
#[test]
fn graph_lookup_terminates_on_cycles() {
    let ring: Vec<Document> = (0..50)
        .map(|i| doc! {"_id": i, "name": i, "next": (i + 1) % 50})
        .collect();
    // Decimal128 names cannot be hashed: every round scans instead.
    let scanned: Vec<Document> = (0..50)
        .map(|i| {
            let name: bson::Decimal128 = i.to_string().parse().unwrap();
            doc! {"_id": i, "name": name, "next": (i + 1) % 50}
        })
        .collect();
    for foreign in [ring, scanned] {
        for max_depth in [bson!(i64::MAX), bson!(1e18)] {
            let stage = bson!({"$graphLookup": {
                "from": "ring", "startWith": "$next", "connectFromField": "next",
                "connectToField": "name", "as": "h", "maxDepth": max_depth,
            }});
            let out = run_with(vec![stage], vec![doc! {"next": 0}], foreign.clone()).unwrap();
            assert_eq!(out[0].get_array("h").unwrap().len(), 50);
        }
    }
    // Arrays in connectFromField are followed element by element.
    let graph = vec![
        doc! {"_id": 1, "name": "a", "to": ["b", "c"]},
        doc! {"_id": 2, "name": "b", "to": ["a"]},
        doc! {"_id": 3, "name": "c", "to": []},
    ];
    let stage = bson!({"$graphLookup": {
        "from": "g", "startWith": "a", "connectFromField": "to", "connectToField": "name", "as": "h",
    }});
    let out = run_with(vec![stage], vec![doc! {}], graph).unwrap();
    assert_eq!(out[0].get_array("h").unwrap().len(), 3);
    // A missing start searches for null: documents whose connectToField
    // is null, never those without it.
    let foreign = vec![
        doc! {"_id": 1, "name": Bson::Null, "to": "x"},
        doc! {"_id": 2, "to": "y"},
        doc! {"_id": 3, "name": "x"},
    ];
    let stage = bson!({"$graphLookup": {
        "from": "g", "startWith": "$nope", "connectFromField": "to", "connectToField": "name", "as": "h",
    }});
    let out = run_with(vec![stage], vec![doc! {}], foreign).unwrap();
    let ids: Vec<&Bson> = out[0]
        .get_array("h")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().get("_id").unwrap())
        .collect();
    assert_eq!(ids, vec![&bson!(1), &bson!(3)]);
}

#[test]
fn graph_lookup_memory_is_bounded() {
    let big = "x".repeat(10_000);
    let chain: Vec<Document> = (0..100)
        .map(|i| doc! {"_id": i, "name": i, "next": i + 1, "pad": big.clone()})
        .collect();
    let stage = bson!({"$graphLookup": {
        "from": "c", "startWith": 0, "connectFromField": "next", "connectToField": "name", "as": "h",
    }});
    let e = Pipeline::parse(std::slice::from_ref(&stage))
        .unwrap()
        .run_within(
            vec![doc! {}],
            &InMemory(chain.clone()),
            crate::spill::StageBudget::new(200_000, true),
        );
    assert_eq!(code(e), 40099);
    let out = run_with(vec![stage], vec![doc! {}], chain).unwrap();
    assert_eq!(out[0].get_array("h").unwrap().len(), 100);
}

#[test]
fn graph_lookup_specifications_fail_with_mongodb_codes() {
    let base = doc! {"from": "e", "startWith": "$a", "connectFromField": "a", "connectToField": "b", "as": "h"};
    let with = |k: &str, v: Bson| {
        let mut d = base.clone();
        d.insert(k, v);
        Bson::Document(d)
    };
    let without = |k: &str| {
        let mut d = base.clone();
        d.remove(k);
        Bson::Document(d)
    };
    let cases: Vec<(Bson, i32)> = vec![
        (bson!(5), 9),
        (with("maxDepth", bson!("1")), 40100),
        (with("maxDepth", bson!(-1)), 40101),
        (with("maxDepth", bson!(1.5)), 40102),
        (with("maxDepth", bson!(9.3e18)), 40102),
        (with("maxDepth", bson!(f64::INFINITY)), 40102),
        (with("from", bson!(1)), 40103),
        (with("depthField", bson!(1)), 40103),
        (with("zz", bson!(1)), 40104),
        (without("as"), 40105),
        (without("startWith"), 40105),
        (with("restrictSearchWithMatch", bson!(1)), 40185),
        (with("restrictSearchWithMatch", bson!({"$bogus": 1})), 2),
        (with("from", bson!("system.x")), 73),
        (with("as", bson!("$x")), 16410),
    ];
    for (spec, want) in cases {
        assert_eq!(
            code(Pipeline::parse(&[bson!({"$graphLookup": spec.clone()})])),
            want,
            "{spec}"
        );
    }
}

fn cake_sales() -> Vec<Document> {
    let at = |s: &str| Bson::DateTime(bson::DateTime::parse_rfc3339_str(s).unwrap());
    vec![
        doc! {"_id": 0, "type": "chocolate", "orderDate": at("2020-05-18T14:10:30Z"), "state": "CA", "price": 13, "quantity": 120},
        doc! {"_id": 1, "type": "chocolate", "orderDate": at("2021-03-20T11:30:05Z"), "state": "WA", "price": 14, "quantity": 140},
        doc! {"_id": 2, "type": "vanilla", "orderDate": at("2021-01-11T06:31:15Z"), "state": "CA", "price": 12, "quantity": 145},
        doc! {"_id": 3, "type": "vanilla", "orderDate": at("2020-02-08T13:13:23Z"), "state": "WA", "price": 13, "quantity": 104},
        doc! {"_id": 4, "type": "strawberry", "orderDate": at("2019-05-18T16:09:01Z"), "state": "CA", "price": 41, "quantity": 162},
        doc! {"_id": 5, "type": "strawberry", "orderDate": at("2019-01-08T06:12:03Z"), "state": "WA", "price": 43, "quantity": 134},
    ]
}

fn column(out: &[Document], field: &str) -> Vec<Bson> {
    out.iter()
        .map(|d| d.get(field).cloned().unwrap_or(Bson::Null))
        .collect()
}

/// MongoDB's manual: cumulative quantity per state, in date order.
#[test]
fn set_window_fields_cumulative_and_moving_windows() {
    let out = run(
        vec![bson!({"$setWindowFields": {
            "partitionBy": "$state",
            "sortBy": {"orderDate": 1},
            "output": {
                "cumulative": {"$sum": "$quantity", "window": {"documents": ["unbounded", "current"]}},
                "moving": {"$avg": "$quantity", "window": {"documents": [-1, 0]}},
                "total": {"$sum": "$quantity"},
                "n": {"$documentNumber": {}},
                "prev": {"$shift": {"output": "$quantity", "by": -1, "default": "none"}},
            },
        }})],
        cake_sales(),
    )
    .unwrap();
    assert_eq!(
        column(&out, "_id"),
        vec![bson!(4), bson!(0), bson!(2), bson!(5), bson!(3), bson!(1)]
    );
    assert_eq!(
        column(&out, "cumulative"),
        vec![
            bson!(162),
            bson!(282),
            bson!(427),
            bson!(134),
            bson!(238),
            bson!(378)
        ]
    );
    assert_eq!(
        column(&out, "moving"),
        vec![
            bson!(162.0),
            bson!(141.0),
            bson!(132.5),
            bson!(134.0),
            bson!(119.0),
            bson!(122.0)
        ]
    );
    assert_eq!(
        column(&out, "total"),
        vec![
            bson!(427),
            bson!(427),
            bson!(427),
            bson!(378),
            bson!(378),
            bson!(378)
        ]
    );
    assert_eq!(
        column(&out, "n"),
        vec![bson!(1), bson!(2), bson!(3), bson!(1), bson!(2), bson!(3)]
    );
    assert_eq!(
        column(&out, "prev"),
        vec![
            bson!("none"),
            bson!(162),
            bson!(120),
            bson!("none"),
            bson!(134),
            bson!(104)
        ]
    );
}

#[test]
fn set_window_fields_range_rank_and_time_series_functions() {
    let docs: Vec<Document> = [(1, 10.0), (2, 20.0), (2, 40.0), (4, 10.0), (10, 0.0)]
        .iter()
        .enumerate()
        .map(|(i, (x, y))| doc! {"_id": i as i32, "x": *x, "y": *y})
        .collect();
    let out = run(
        vec![bson!({"$setWindowFields": {
            "sortBy": {"x": 1},
            "output": {
                "near": {"$sum": "$y", "window": {"range": [-1, 1]}},
                "upto": {"$count": {}, "window": {"range": ["unbounded", "current"]}},
                "rank": {"$rank": {}},
                "dense": {"$denseRank": {}},
                "d": {"$derivative": {"input": "$y"}, "window": {"documents": [-1, 0]}},
                "area": {"$integral": {"input": "$y"}, "window": {"documents": ["unbounded", "current"]}},
                "ema": {"$expMovingAvg": {"input": "$y", "N": 3}},
                "sd": {"$stdDevPop": "$y"},
                "cov": {"$covarianceSamp": ["$x", "$y"], "window": {"documents": [0, 1]}},
            },
        }})],
        docs,
    )
    .unwrap();
    assert_eq!(
        column(&out, "near"),
        vec![
            bson!(70.0),
            bson!(70.0),
            bson!(70.0),
            bson!(10.0),
            bson!(0.0)
        ]
    );
    assert_eq!(
        column(&out, "upto"),
        vec![bson!(1), bson!(3), bson!(3), bson!(4), bson!(5)]
    );
    assert_eq!(
        column(&out, "rank"),
        vec![bson!(1), bson!(2), bson!(2), bson!(4), bson!(5)]
    );
    assert_eq!(
        column(&out, "dense"),
        vec![bson!(1), bson!(2), bson!(2), bson!(3), bson!(4)]
    );
    // (20-10)/(2-1); equal x: no slope; (10-40)/(4-2); (0-10)/(10-4).
    assert_eq!(
        column(&out, "d"),
        vec![
            Bson::Null,
            bson!(10.0),
            Bson::Null,
            bson!(-15.0),
            bson!(-10.0 / 6.0)
        ]
    );
    // Trapezoids: 15, +0, +50, +30.
    assert_eq!(
        column(&out, "area"),
        vec![
            bson!(0.0),
            bson!(15.0),
            bson!(15.0),
            bson!(65.0),
            bson!(95.0)
        ]
    );
    // alpha = 2 / (3 + 1).
    assert_eq!(
        column(&out, "ema"),
        vec![
            bson!(10.0),
            bson!(15.0),
            bson!(27.5),
            bson!(18.75),
            bson!(9.375)
        ]
    );
    let sd = column(&out, "sd")[0].as_f64().unwrap();
    assert!((sd - 13.564659966250536).abs() < 1e-9, "{sd}");
    assert_eq!(column(&out, "cov")[0], bson!(5.0));
    assert_eq!(column(&out, "cov")[4], Bson::Null);
}

#[test]
fn set_window_fields_fills_gaps_and_date_ranges() {
    let day = 86_400_000i64;
    let docs: Vec<Document> = [
        (0, Some(10.0)),
        (1, None),
        (2, None),
        (3, Some(40.0)),
        (5, None),
    ]
    .iter()
    .map(|(d, v)| {
        let mut doc = doc! {"t": bson::DateTime::from_millis(d * day)};
        if let Some(v) = v {
            doc.insert("v", *v);
        }
        doc
    })
    .collect();
    let out = run(
        vec![bson!({"$setWindowFields": {
            "sortBy": {"t": 1},
            "output": {
                "locf": {"$locf": "$v"},
                "linear": {"$linearFill": "$v"},
                "week": {"$count": {}, "window": {"range": [-2, 0], "unit": "day"}},
            },
        }})],
        docs,
    )
    .unwrap();
    assert_eq!(
        column(&out, "locf"),
        vec![
            bson!(10.0),
            bson!(10.0),
            bson!(10.0),
            bson!(40.0),
            bson!(40.0)
        ]
    );
    assert_eq!(
        column(&out, "linear"),
        vec![
            bson!(10.0),
            bson!(20.0),
            bson!(30.0),
            bson!(40.0),
            Bson::Null
        ]
    );
    assert_eq!(
        column(&out, "week"),
        vec![bson!(1), bson!(2), bson!(3), bson!(3), bson!(2)]
    );
}

#[test]
fn set_window_fields_refuses_with_mongodb_codes() {
    let parse = |spec: Bson| code(Pipeline::parse(&[bson!({"$setWindowFields": spec})]));
    assert_eq!(parse(bson!(1)), 9);
    assert_eq!(parse(bson!({"sortBy": {"a": 1}})), 40414);
    assert_eq!(parse(bson!({"output": {}, "x": 1})), 40415);
    assert_eq!(parse(bson!({"output": {}, "sortBy": 1})), 14);
    assert_eq!(parse(bson!({"output": {"f": {"$nope": 1}}})), 9);
    assert_eq!(
        parse(bson!({"output": {"f": {"$mergeObjects": "$a"}}})),
        115
    );
    assert_eq!(parse(bson!({"output": {"f": {"$topN": {}}}})), 5788003);
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"documents": [1, -1]}}}})
        ),
        5339900
    );
    assert_eq!(
        parse(bson!({"output": {"f": {"$sum": 1, "window": {"documents": [-1, 1]}}}})),
        5339901
    );
    assert_eq!(
        parse(bson!({"output": {"f": {"$sum": 1, "window": {"range": [-1, 1]}}}})),
        5339902
    );
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": -1}, "output": {"f": {"$sum": 1, "window": {"range": [-1, 1]}}}})
        ),
        8947401
    );
    // Bounds that overflow a document offset, or are not whole.
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"documents": [-1099511627776i64, 0]}}}})
        ),
        9
    );
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"documents": [0.5, 1]}}}})
        ),
        9
    );
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"documents": ["x", 1]}}}})
        ),
        9
    );
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"range": [0, 1], "unit": "fortnight"}}}})
        ),
        9
    );
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$derivative": {"input": 1, "unit": "month"}, "window": {"documents": [-1, 0]}}}})
        ),
        115
    );
    // Calendar windows: a month back from each date, as `$dateAdd` counts.
    let at = |s: &str| Bson::DateTime(bson::DateTime::parse_rfc3339_str(s).unwrap());
    let dates = [
        "2024-01-31T00:00:00Z",
        "2024-02-29T00:00:00Z",
        "2024-03-30T00:00:00Z",
        "2024-03-31T00:00:00Z",
    ];
    let out = run(
        vec![bson!({"$setWindowFields": {"sortBy": {"t": 1}, "output": {"n": {"$count": {}, "window": {"range": [-1, 0], "unit": "month"}}}}})],
        dates.iter().map(|d| doc! {"t": at(d)}).collect(),
    )
    .unwrap();
    // Feb 29 - 1 month = Jan 29 (Jan 31 in); Mar 30 - 1 = Feb 28 (Feb 29
    // in); Mar 31 - 1 = Feb 29 (clamped, Feb 29 in).
    assert_eq!(
        column(&out, "n"),
        vec![bson!(1), bson!(2), bson!(2), bson!(3)]
    );
    let out = run(
        vec![bson!({"$setWindowFields": {"sortBy": {"t": 1}, "output": {"n": {"$count": {}, "window": {"range": [-1, 0], "unit": "year"}}}}})],
        vec![doc! {"t": at("2024-01-01T00:00:00Z")}, doc! {"t": bson::DateTime::MAX}],
    )
    .unwrap();
    assert_eq!(column(&out, "n"), vec![bson!(1), bson!(1)]);
    assert_eq!(parse(bson!({"output": {"f": {"$rank": {}}}})), 5371602);
    assert_eq!(
        parse(bson!({"sortBy": {"a": 1, "b": 1}, "output": {"f": {"$documentNumber": {}}}})),
        5371602
    );
    assert_eq!(
        parse(bson!({"sortBy": {"a": 1}, "output": {"f": {"$rank": 1}}})),
        5371603
    );
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$rank": {}, "window": {"documents": [0, 0]}}}})
        ),
        5371601
    );
    // MongoDB's matrix (window_function_parse.js): $shift and
    // $expMovingAvg take no window, $derivative needs one.
    assert_eq!(
        parse(
            bson!({"sortBy": {"a": 1}, "output": {"f": {"$shift": {"output": 1, "by": 1}, "window": {"documents": [0, 0]}}}})
        ),
        9
    );
    assert_eq!(
        parse(bson!({"output": {"f": {"$expMovingAvg": {"input": 1, "N": 2}}}})),
        9
    );
    assert_eq!(
        parse(bson!({"sortBy": {"a": 1}, "output": {"f": {"$derivative": {"input": 1}}}})),
        9
    );
    let dated = vec![
        doc! {"a": bson::DateTime::from_millis(0)},
        doc! {"a": bson::DateTime::from_millis(1000)},
    ];
    let swf = |f: Bson| vec![bson!({"$setWindowFields": {"sortBy": {"a": 1}, "output": {"f": f}}})];
    let e = run(
        swf(bson!({"$derivative": {"input": 1}, "window": {"documents": [-1, 0]}})),
        dated.clone(),
    );
    assert_eq!(code(e), 5624901);
    let e = run(swf(bson!({"$integral": {"input": 1}})), dated.clone());
    assert_eq!(code(e), 5423902);
    let e = run(
        swf(bson!({"$integral": {"input": 1, "unit": "second"}})),
        vec![doc! {"a": 1}],
    );
    assert_eq!(code(e), 5423901);
    let out = run(
        swf(bson!({"$integral": {"input": 2, "unit": "second"}})),
        dated,
    )
    .unwrap();
    assert_eq!(column(&out, "f"), vec![bson!(2.0), bson!(2.0)]);
    let e = run(
        vec![bson!({"$setWindowFields": {"partitionBy": "$a", "output": {"f": {"$count": {}}}}})],
        vec![doc! {"a": [1]}],
    );
    assert_eq!(code(e), 14);
    assert_eq!(
        parse(bson!({"sortBy": {"a": 1}, "output": {"$f": {"$rank": {}}}})),
        16410
    );
    // Range windows over values that are not numbers.
    let e = run(
        vec![
            bson!({"$setWindowFields": {"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"range": [-1, 1]}}}}}),
        ],
        vec![doc! {"a": "x"}],
    );
    assert_eq!(code(e), 5429414);
    // Extreme range offsets are only far: every document is in range.
    let out = run(
        vec![bson!({"$setWindowFields": {"sortBy": {"a": 1}, "output": {"f": {"$sum": 1, "window": {"range": [-1e308, 1e308]}}}}})],
        vec![doc! {"a": 1}, doc! {"a": 2}],
    )
    .unwrap();
    assert_eq!(column(&out, "f"), vec![bson!(2), bson!(2)]);
    // A partition past the budget: 292 without disk use, 146 with it.
    let docs: Vec<Document> = (0..100)
        .map(|i| doc! {"i": i, "pad": "x".repeat(100)})
        .collect();
    let p =
        Pipeline::parse(&[bson!({"$setWindowFields": {"output": {"n": {"$count": {}}}}})]).unwrap();
    let e = p.run_within(
        docs.clone(),
        &InMemory(Vec::new()),
        crate::spill::StageBudget::new(4096, false),
    );
    assert_eq!(code(e), 292);
    let e = p.run_within(
        docs.clone(),
        &InMemory(Vec::new()),
        crate::spill::StageBudget::new(4096, true),
    );
    assert_eq!(code(e), 146);
    // Many small partitions spill through the sort and fit one by one.
    let out = Pipeline::parse(&[
        bson!({"$setWindowFields": {"partitionBy": "$i", "output": {"n": {"$count": {}}}}}),
    ])
    .unwrap()
    .run_within(
        docs,
        &InMemory(Vec::new()),
        crate::spill::StageBudget::new(4096, true),
    )
    .unwrap();
    assert_eq!(out.len(), 100);
    assert!(out.iter().all(|d| d.get_i32("n").ok() == Some(1)));
}

/// MongoDB's manual: `$fill` with a value, `locf` and `linear`.
#[test]
fn fill_rewrites_to_window_and_add_fields() {
    let docs = vec![
        doc! {"_id": 1, "part": "A", "t": 1, "score": 10, "qty": Bson::Null},
        doc! {"_id": 2, "part": "A", "t": 2},
        doc! {"_id": 3, "part": "A", "t": 4, "score": 30, "qty": 5},
        doc! {"_id": 4, "part": "B", "t": 1},
        doc! {"_id": 5, "part": "B", "t": 2, "score": 7},
    ];
    let out = run(
        vec![bson!({"$fill": {
            "sortBy": {"t": 1},
            "partitionByFields": ["part"],
            "output": {"score": {"method": "linear"}, "last": {"method": "locf"}, "qty": {"value": 0}},
        }})],
        docs.clone(),
    )
    .unwrap();
    assert_eq!(
        column(&out, "score"),
        vec![
            bson!(10),
            bson!(10.0 + 20.0 / 3.0),
            bson!(30),
            Bson::Null,
            bson!(7)
        ]
    );
    assert_eq!(
        column(&out, "qty"),
        vec![bson!(0), bson!(0), bson!(5), bson!(0), bson!(0)]
    );
    let out = run(
        vec![bson!({"$fill": {"sortBy": {"t": 1}, "partitionBy": "$part", "output": {"score": {"method": "locf"}}}})],
        docs,
    )
    .unwrap();
    assert_eq!(
        column(&out, "score"),
        vec![bson!(10), bson!(10), bson!(30), Bson::Null, bson!(7)]
    );
    let parse = |spec: Bson| code(Pipeline::parse(&[bson!({"$fill": spec})]));
    assert_eq!(parse(bson!(1)), 9);
    assert_eq!(parse(bson!({"output": {}})), 6050203);
    assert_eq!(parse(bson!({"output": {"a": 1}})), 6050200);
    assert_eq!(
        parse(bson!({"output": {"a": {"method": "locf", "value": 1}}})),
        6050201
    );
    assert_eq!(
        parse(bson!({"output": {"a": {"method": "spline"}}})),
        6050202
    );
    assert_eq!(
        parse(
            bson!({"partitionBy": "$a", "partitionByFields": ["a"], "output": {"a": {"value": 1}}})
        ),
        6050204
    );
    assert_eq!(
        parse(bson!({"output": {"a": {"method": "linear"}}})),
        605001
    );
    assert_eq!(
        parse(bson!({"bogus": 1, "output": {"a": {"value": 1}}})),
        40415
    );
    assert_eq!(parse(bson!({"sortBy": {"t": 1}})), 40414);
    let e = run(
        vec![bson!({"$fill": {"sortBy": {"t": 1}, "output": {"v": {"method": "linear"}}}})],
        vec![doc! {"t": 1, "v": 1}, doc! {"t": 1}, doc! {"t": 2, "v": 3}],
    );
    assert_eq!(code(e), 6050106);
}

fn coffee() -> Vec<Document> {
    [
        (600, "Arabica Typica"),
        (750, "Arabica Typica"),
        (950, "Arabica Typica"),
        (1250, "Gesha"),
        (1700, "Gesha"),
        (1800, "Gesha"),
    ]
    .iter()
    .map(|(a, v)| doc! {"altitude": *a, "variety": *v, "score": 70.0})
    .collect()
}

fn altitudes(out: &[Document], variety: &str) -> Vec<(i32, bool)> {
    out.iter()
        .filter(|d| d.get_str("variety").ok() == Some(variety))
        .filter_map(|d| Some((d.get_i32("altitude").ok()?, d.contains_key("score"))))
        .collect()
}

/// MongoDB's manual: coffee altitudes densified per variety.
#[test]
fn densify_full_and_partition_ranges() {
    let out = run(
        vec![bson!({"$densify": {"field": "altitude", "partitionByFields": ["variety"], "range": {"bounds": "full", "step": 200}}})],
        coffee(),
    )
    .unwrap();
    assert_eq!(
        altitudes(&out, "Arabica Typica"),
        vec![
            (600, true),
            (750, true),
            (800, false),
            (950, true),
            (1000, false),
            (1200, false),
            (1400, false),
            (1600, false),
            (1800, false)
        ]
    );
    assert_eq!(
        altitudes(&out, "Gesha"),
        vec![
            (600, false),
            (800, false),
            (1000, false),
            (1200, false),
            (1250, true),
            (1400, false),
            (1600, false),
            (1700, true),
            (1800, true)
        ]
    );
    let out = run(
        vec![bson!({"$densify": {"field": "altitude", "partitionByFields": ["variety"], "range": {"bounds": "partition", "step": 200}}})],
        coffee(),
    )
    .unwrap();
    assert_eq!(
        altitudes(&out, "Arabica Typica"),
        vec![(600, true), (750, true), (800, false), (950, true)]
    );
    assert_eq!(
        altitudes(&out, "Gesha"),
        vec![
            (1250, true),
            (1450, false),
            (1650, false),
            (1700, true),
            (1800, true)
        ]
    );
    // A document without the field (sorted first) passes through and the
    // partition still starts at its first value.
    let mut docs = coffee();
    docs.push(doc! {"variety": "Gesha", "score": 1.0});
    let out = run(
        vec![bson!({"$densify": {"field": "altitude", "partitionByFields": ["variety"], "range": {"bounds": "partition", "step": 200}}})],
        docs,
    )
    .unwrap();
    assert_eq!(out.len(), 10);
    assert_eq!(
        altitudes(&out, "Gesha"),
        vec![
            (1250, true),
            (1450, false),
            (1650, false),
            (1700, true),
            (1800, true)
        ]
    );
}

/// MongoDB's manual: hourly readings between explicit bounds (upper
/// exclusive); documents outside and without the field pass through.
#[test]
fn densify_explicit_date_bounds() {
    let hour = 3_600_000i64;
    let at = |h: i64| bson::DateTime::from_millis(1_621_296_000_000 + h * hour);
    let mut docs: Vec<Document> = [0, 4, 8, 12]
        .iter()
        .map(|h| doc! {"timestamp": at(*h), "temp": 11})
        .collect();
    docs.push(doc! {"temp": 0});
    let out = run(
        vec![bson!({"$densify": {"field": "timestamp", "range": {"step": 1, "unit": "hour", "bounds": [at(0), at(8)]}}})],
        docs,
    )
    .unwrap();
    let hours: Vec<Option<i64>> = out
        .iter()
        .map(|d| {
            d.get_datetime("timestamp")
                .ok()
                .map(|t| (t.timestamp_millis() - 1_621_296_000_000) / hour)
        })
        .collect();
    assert_eq!(
        hours,
        vec![
            None,
            Some(0),
            Some(1),
            Some(2),
            Some(3),
            Some(4),
            Some(5),
            Some(6),
            Some(7),
            Some(8),
            Some(12)
        ]
    );
    assert_eq!(out.iter().filter(|d| d.contains_key("temp")).count(), 5);
}

#[test]
fn densify_refuses_with_mongodb_codes() {
    let parse = |spec: Bson| code(Pipeline::parse(&[bson!({"$densify": spec})]));
    let range = |r: Bson| bson!({"field": "a", "range": r});
    assert_eq!(parse(bson!(1)), 9);
    assert_eq!(parse(bson!({"field": "a"})), 40414);
    assert_eq!(
        parse(bson!({"field": "a", "range": {"step": 1, "bounds": "full"}, "x": 1})),
        40415
    );
    assert_eq!(parse(range(bson!({"step": 0, "bounds": "full"}))), 5733401);
    assert_eq!(
        parse(range(bson!({"step": "1", "bounds": "full"}))),
        5733401
    );
    assert_eq!(
        parse(range(
            bson!({"step": 1.5, "unit": "hour", "bounds": "full"})
        )),
        6586400
    );
    assert_eq!(parse(range(bson!({"step": 1, "bounds": [1]}))), 5733403);
    assert_eq!(parse(range(bson!({"step": 1, "bounds": [2, 1]}))), 5733402);
    assert_eq!(
        parse(range(bson!({"step": 1, "unit": "day", "bounds": [1, 2]}))),
        5733409
    );
    assert_eq!(
        parse(range(bson!({"step": 1, "bounds": [1, 2.5]}))),
        5876900
    );
    assert_eq!(
        parse(range(bson!({"step": 1, "bounds": ["a", "b"]}))),
        5946800
    );
    assert_eq!(parse(range(bson!({"step": 1, "bounds": "most"}))), 5946802);
    assert_eq!(parse(range(bson!({"step": 1, "bounds": 5}))), 5733404);
    assert_eq!(
        parse(range(bson!({"step": 1, "bounds": "partition"}))),
        5733408
    );
    assert_eq!(
        parse(range(
            bson!({"step": 1, "unit": "fortnight", "bounds": "full"})
        )),
        9
    );
    // Monthly steps clamp to the month's end, as `$dateAdd`.
    let at = |s: &str| bson::DateTime::parse_rfc3339_str(s).unwrap();
    let out = run(
        vec![bson!({"$densify": {"field": "t", "range": {"step": 1, "unit": "month", "bounds": "full"}}})],
        vec![doc! {"t": at("2023-11-30T00:00:00Z")}, doc! {"t": at("2024-03-01T00:00:00Z")}],
    )
    .unwrap();
    let got: Vec<String> = out
        .iter()
        .map(|d| {
            d.get_datetime("t")
                .unwrap()
                .try_to_rfc3339_string()
                .unwrap()
        })
        .collect();
    assert_eq!(
        got,
        vec![
            "2023-11-30T00:00:00Z",
            "2023-12-30T00:00:00Z",
            "2024-01-30T00:00:00Z",
            "2024-02-29T00:00:00Z",
            "2024-03-01T00:00:00Z",
        ]
    );
    assert_eq!(
        parse(
            bson!({"field": "a", "partitionByFields": ["a.b"], "range": {"step": 1, "bounds": "full"}})
        ),
        8993000
    );
    assert_eq!(
        parse(
            bson!({"field": "a.b", "partitionByFields": ["a"], "range": {"step": 1, "bounds": "full"}})
        ),
        9554500
    );
    let spec = bson!({"$densify": {"field": "a", "range": {"step": 1, "bounds": "full"}}});
    assert_eq!(
        code(run(vec![spec.clone()], vec![doc! {"a": "x"}])),
        5733201
    );
    assert_eq!(
        code(run(
            vec![spec],
            vec![doc! {"a": bson::DateTime::from_millis(0)}]
        )),
        6053600
    );
    // A tiny step over a wide range stops at 500,000 generated documents.
    let e = run(
        vec![bson!({"$densify": {"field": "a", "range": {"step": 1e-9, "bounds": "full"}}})],
        vec![doc! {"a": 0}, doc! {"a": 1}],
    );
    assert_eq!(code(e), 5897900);
}

/// `$count` (the window's size) is `$sum: 1` over the same window.
#[test]
fn count_is_the_window_size() {
    let docs: Vec<Document> = (0..40).map(|i| doc! {"p": i % 2, "x": i / 3}).collect();
    for w in [
        bson!({"documents": [-3, 5]}),
        bson!({"documents": ["current", "unbounded"]}),
        bson!({"documents": [4, 2147483647]}),
        bson!({"documents": [-2147483648i64, -7]}),
        bson!({"range": [-1, 1]}),
        bson!({"range": [2, "unbounded"]}),
        bson!({"range": [-1e300, -1]}),
    ] {
        let out = |f: Bson| {
            run(
                vec![bson!({"$setWindowFields": {"partitionBy": "$p", "sortBy": {"x": 1}, "output": {"o": f}}})],
                docs.clone(),
            )
            .unwrap()
        };
        let mut count = bson!({"$count": {}});
        let mut sum = bson!({"$sum": 1});
        if let (Bson::Document(c), Bson::Document(s)) = (&mut count, &mut sum) {
            c.insert("window", w.clone());
            s.insert("window", w.clone());
        }
        assert_eq!(column(&out(count), "o"), column(&out(sum), "o"), "{w}");
    }
}

/// A window from the partition's start (one running fold) answers what
/// the same window folded from scratch per document answers.
#[test]
fn running_windows_match_windows_folded_from_scratch() {
    let docs: Vec<Document> = (0..60)
        .map(|i| {
            let v = match i % 5 {
                0 => bson!(i),
                1 => bson!(i as f64 / 3.0),
                2 => Bson::Null,
                3 => bson!("s"),
                _ => bson!(i64::from(i) * 1_000_000_007),
            };
            doc! {"p": i % 3, "x": i / 2, "v": v}
        })
        .collect();
    for acc in [
        "$sum",
        "$avg",
        "$min",
        "$max",
        "$first",
        "$last",
        "$push",
        "$addToSet",
        "$count",
    ] {
        let arg = if acc == "$count" {
            bson!({})
        } else {
            bson!("$v")
        };
        let pairs = [
            (
                bson!({"documents": ["unbounded", "current"]}),
                bson!({"documents": [-1000, 0]}),
            ),
            (
                bson!({"documents": ["unbounded", -2]}),
                bson!({"documents": [-1000, -2]}),
            ),
            (
                bson!({"range": ["unbounded", 0]}),
                bson!({"range": [-1e9, 0]}),
            ),
            (
                bson!({"range": ["unbounded", 3]}),
                bson!({"range": [-1e9, 3]}),
            ),
        ];
        for (running, scratch) in pairs {
            let out = |w: &Bson| {
                run(
                    vec![bson!({"$setWindowFields": {
                        "partitionBy": "$p",
                        "sortBy": {"x": 1},
                        "output": {"o": {acc: arg.clone(), "window": w.clone()}},
                    }})],
                    docs.clone(),
                )
                .unwrap()
            };
            assert_eq!(out(&running), out(&scratch), "{acc} {running}");
        }
    }
}
