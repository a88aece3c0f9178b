//! `$facet`, `$unionWith`, `$lookup`'s sub-pipeline form and `$sample`:
//! MongoDB's documented examples, the blocking budget (spilled and 292),
//! and hostile specifications.

use super::*;
use bson::{bson, doc};
use std::collections::BTreeMap;

fn pipeline(p: Bson) -> Result<Pipeline> {
    let Bson::Array(stages) = p else {
        panic!("pipeline must be an array")
    };
    Pipeline::parse(&stages)
}

fn run_with(p: Bson, docs: Vec<Document>, other: Vec<Document>) -> Result<Vec<Document>> {
    pipeline(p)?.run(docs, &InMemory(other))
}

fn code(p: Bson) -> ErrorCode {
    match pipeline(p) {
        Ok(_) => panic!("the pipeline parsed"),
        Err(e) => e.code,
    }
}

/// The manual's `artwork` collection ($facet page).
fn artwork() -> Vec<Document> {
    let dec = |s: &str| Bson::Decimal128(s.parse().expect("a decimal"));
    vec![
        doc! {"_id": 1, "title": "The Pillars of Society", "artist": "Grosz", "year": 1926, "price": dec("199.99"), "tags": ["painting", "satire", "Expressionism", "caricature"]},
        doc! {"_id": 2, "title": "Melancholy III", "artist": "Munch", "year": 1902, "price": dec("280.00"), "tags": ["woodcut", "Expressionism"]},
        doc! {"_id": 3, "title": "Dancer", "artist": "Miro", "year": 1925, "price": dec("76.04"), "tags": ["oil", "Surrealism", "painting"]},
        doc! {"_id": 4, "title": "The Great Wave off Kanagawa", "artist": "Hokusai", "price": dec("167.72"), "tags": ["woodblock", "ukiyo-e"]},
        doc! {"_id": 5, "title": "The Persistence of Memory", "artist": "Dali", "year": 1931, "price": dec("483.00"), "tags": ["Surrealism", "painting", "oil"]},
        doc! {"_id": 6, "title": "Composition VII", "artist": "Kandinsky", "year": 1913, "price": dec("385.00"), "tags": ["oil", "painting", "abstract"]},
        doc! {"_id": 7, "title": "The Scream", "artist": "Munch", "year": 1893, "tags": ["Expressionism", "painting", "oil"]},
        doc! {"_id": 8, "title": "Blue Flower", "artist": "O'Keefe", "year": 1918, "price": dec("118.42"), "tags": ["abstract", "painting"]},
    ]
}

#[test]
fn facet_runs_each_sub_pipeline_over_the_whole_input() {
    let out = run_with(
        bson!([{"$facet": {
            "categorizedByTags": [{"$unwind": "$tags"}, {"$sortByCount": "$tags"}],
            "count": [{"$count": "n"}],
            "munch": [{"$match": {"artist": "Munch"}}, {"$project": {"_id": 1}}],
            "none": [{"$match": {"artist": "nobody"}}],
        }}]),
        artwork(),
        vec![],
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    let out = &out[0];
    assert_eq!(
        out.keys().collect::<Vec<_>>(),
        ["categorizedByTags", "count", "munch", "none"]
    );
    // The manual's counts (ties come in any order, as in MongoDB).
    let by_tag: BTreeMap<String, i32> = out
        .get_array("categorizedByTags")
        .unwrap()
        .iter()
        .map(|d| {
            let d = d.as_document().unwrap();
            (
                d.get_str("_id").unwrap().to_owned(),
                d.get_i32("count").unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, i32> = [
        ("painting", 6),
        ("oil", 4),
        ("Expressionism", 3),
        ("Surrealism", 2),
        ("abstract", 2),
        ("woodblock", 1),
        ("woodcut", 1),
        ("ukiyo-e", 1),
        ("satire", 1),
        ("caricature", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(by_tag, expected);
    let counts: Vec<i32> = out
        .get_array("categorizedByTags")
        .unwrap()
        .iter()
        .map(|d| d.as_document().unwrap().get_i32("count").unwrap())
        .collect();
    assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
    assert_eq!(out.get_array("count").unwrap(), &vec![bson!({"n": 8})]);
    assert_eq!(
        out.get_array("munch").unwrap(),
        &vec![bson!({"_id": 2}), bson!({"_id": 7})]
    );
    assert_eq!(out.get_array("none").unwrap(), &Vec::<Bson>::new());
    // An empty input still gives one document.
    let out = run_with(
        bson!([{"$facet": {"a": [{"$count": "n"}]}}]),
        vec![],
        vec![],
    )
    .unwrap();
    assert_eq!(out, vec![doc! {"a": []}]);
    // Stages after it see the one document.
    let out = run_with(
        bson!([{"$facet": {"a": [{"$match": {"year": {"$gt": 1920}}}]}}, {"$project": {"n": {"$size": "$a"}}}]),
        artwork(),
        vec![],
    )
    .unwrap();
    assert_eq!(out, vec![doc! {"n": 3}]);
}

/// Past the budget the input is spilled and replayed from disk: the same
/// answer as in memory; without disk use, 292 naming `$facet`.
#[test]
fn facet_spills_its_input_or_fails_with_292() {
    let docs: Vec<Document> = (0..2000)
        .map(|i| doc! {"_id": i, "k": i % 7, "pad": "p".repeat(40)})
        .collect();
    let p = bson!([{"$facet": {
        "byK": [{"$group": {"_id": "$k", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}],
        "top": [{"$sort": {"_id": -1}}, {"$limit": 3}, {"$project": {"pad": 0}}],
        "all": [{"$project": {"_id": 1}}],
    }}]);
    let in_memory = pipeline(p.clone())
        .unwrap()
        .run(docs.clone(), &InMemory(vec![]))
        .unwrap();
    let spilled = pipeline(p.clone())
        .unwrap()
        .run_within(
            docs.clone(),
            &InMemory(vec![]),
            StageBudget::new(2048, true),
        )
        .unwrap();
    assert_eq!(in_memory, spilled);
    assert_eq!(in_memory[0].get_array("all").unwrap().len(), 2000);
    assert_eq!(
        in_memory[0].get_array("top").unwrap(),
        &vec![
            bson!({"_id": 1999, "k": 4}),
            bson!({"_id": 1998, "k": 3}),
            bson!({"_id": 1997, "k": 2})
        ]
    );
    let e = pipeline(p)
        .unwrap()
        .run_within(docs, &InMemory(vec![]), StageBudget::new(16 << 10, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed);
    assert!(e.message.contains("$facet"), "{}", e.message);
}

/// The output is one document: a facet returning 20 MiB fails with
/// BSONObjectTooLarge as it passes 16 MiB, with no crash.
#[test]
fn facet_output_is_held_to_16_mib() {
    let docs: Vec<Document> = (0..20)
        .map(|i| doc! {"_id": i, "pad": "p".repeat(1 << 20)})
        .collect();
    let e = run_with(bson!([{"$facet": {"a": []}}]), docs.clone(), vec![]).unwrap_err();
    assert_eq!(e.code, ErrorCode::BSONObjectTooLarge);
    // Two facets of 10 MiB each: 20 MiB together.
    let e = run_with(
        bson!([{"$facet": {"a": [{"$limit": 10}], "b": [{"$skip": 10}]}}]),
        docs.clone(),
        vec![],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::BSONObjectTooLarge);
    let out = run_with(bson!([{"$facet": {"a": [{"$limit": 10}]}}]), docs, vec![]).unwrap();
    assert_eq!(out[0].get_array("a").unwrap().len(), 10);
}

#[test]
fn facet_refuses_bad_specifications_with_mongodb_codes() {
    assert_eq!(code(bson!([{"$facet": {}}])), ErrorCode::Location40169);
    assert_eq!(code(bson!([{"$facet": 1}])), ErrorCode::Location40169);
    assert_eq!(
        code(bson!([{"$facet": {"a": 1}}])),
        ErrorCode::Location40170
    );
    assert_eq!(
        code(bson!([{"$facet": {"a": {"$match": {}}}}])),
        ErrorCode::Location40170
    );
    assert_eq!(
        code(bson!([{"$facet": {"a": [1]}}])),
        ErrorCode::Location40171
    );
    assert_eq!(
        code(bson!([{"$facet": {"a": [{}]}}])),
        ErrorCode::Location40171
    );
    assert_eq!(
        code(bson!([{"$facet": {"$a": []}}])),
        ErrorCode::Location40174
    );
    assert_eq!(
        code(bson!([{"$facet": {"a.b": []}}])),
        ErrorCode::Location40174
    );
    for inner in ["$facet", "$out", "$merge", "$geoNear", "$documents"] {
        assert_eq!(
            code(bson!([{"$facet": {"a": [{inner: {}}]}}])),
            ErrorCode::Location40600,
            "{inner}"
        );
    }
    // A sub-pipeline's own errors come through.
    assert_eq!(
        code(bson!([{"$facet": {"a": [{"$nope": {}}]}}])),
        ErrorCode::Location40324
    );
    assert_eq!(
        code(bson!([{"$facet": {"a": [{"$limit": 0}]}}])),
        ErrorCode::Location15955
    );
}

/// Sub-pipelines nest at most 20 deep (232), checked while parsing, so a
/// deep nesting never runs; 20 levels run.
#[test]
fn sub_pipelines_nest_at_most_20_deep() {
    let nested = |levels: usize| {
        let mut p = bson!([{"$match": {}}]);
        for i in 0..levels {
            p = if i % 2 == 0 {
                bson!([{"$unionWith": {"coll": "o", "pipeline": p}}])
            } else {
                bson!([{"$match": {}}, {"$facet": {"f": p}}])
            };
        }
        p
    };
    assert!(pipeline(nested(20)).is_ok());
    assert_eq!(code(nested(21)), ErrorCode::MaxSubPipelineDepthExceeded);
    assert_eq!(code(nested(60)), ErrorCode::MaxSubPipelineDepthExceeded);
    // 20 levels of $unionWith: each level adds the other collection once.
    let mut p = bson!([]);
    for _ in 0..20 {
        p = bson!([{"$unionWith": {"coll": "o", "pipeline": p}}]);
    }
    let out = run_with(p, vec![doc! {"_id": "in"}], vec![doc! {"_id": "o"}]).unwrap();
    assert_eq!(out.len(), 21);
}

/// The manual's `$unionWith` example: sales of two years, unioned and grouped.
#[test]
fn union_with_appends_the_other_collection_through_its_pipeline() {
    let s2017 = vec![
        doc! {"store": "General Store", "item": "Chocolates", "quantity": 150},
        doc! {"store": "ShopMart", "item": "Chocolates", "quantity": 50},
        doc! {"store": "General Store", "item": "Cookies", "quantity": 100},
        doc! {"store": "ShopMart", "item": "Cookies", "quantity": 120},
        doc! {"store": "General Store", "item": "Pie", "quantity": 10},
        doc! {"store": "ShopMart", "item": "Pie", "quantity": 5},
    ];
    let s2018 = vec![
        doc! {"store": "General Store", "item": "Cheese", "quantity": 30},
        doc! {"store": "ShopMart", "item": "Cheese", "quantity": 50},
        doc! {"store": "General Store", "item": "Chocolates", "quantity": 125},
        doc! {"store": "ShopMart", "item": "Chocolates", "quantity": 150},
        doc! {"store": "General Store", "item": "Cookies", "quantity": 200},
        doc! {"store": "ShopMart", "item": "Cookies", "quantity": 100},
        doc! {"store": "ShopMart", "item": "Nuts", "quantity": 100},
        doc! {"store": "General Store", "item": "Pie", "quantity": 30},
        doc! {"store": "ShopMart", "item": "Pie", "quantity": 25},
    ];
    let out = run_with(
        bson!([
            {"$set": {"_id": "2017"}},
            {"$unionWith": {"coll": "sales_2018", "pipeline": [{"$set": {"_id": "2018"}}]}},
            {"$sort": {"_id": 1, "store": 1, "item": 1}},
        ]),
        s2017.clone(),
        s2018.clone(),
    )
    .unwrap();
    assert_eq!(out.len(), 15);
    assert_eq!(
        out[0],
        doc! {"store": "General Store", "item": "Chocolates", "quantity": 150, "_id": "2017"}
    );
    assert_eq!(
        out[14],
        doc! {"store": "ShopMart", "item": "Pie", "quantity": 25, "_id": "2018"}
    );
    let out = run_with(
        bson!([
            {"$unionWith": "sales_2018"},
            {"$group": {"_id": "$item", "total": {"$sum": "$quantity"}}},
            {"$sort": {"total": -1}},
        ]),
        s2017,
        s2018,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": "Cookies", "total": 520},
            doc! {"_id": "Chocolates", "total": 475},
            doc! {"_id": "Nuts", "total": 100},
            doc! {"_id": "Cheese", "total": 80},
            doc! {"_id": "Pie", "total": 70},
        ]
    );
}

/// The other collection is read in chunks that resume after the last key:
/// every document once, in order, whatever the size; a `$limit` after it
/// stops the reading.
#[test]
fn union_with_streams_the_other_collection_in_chunks() {
    for n in [0, 1, 63, 64, 65, 128, 1000] {
        let other: Vec<Document> = (0..n).map(|i| doc! {"_id": i}).collect();
        let out = run_with(
            bson!([{"$unionWith": "o"}]),
            vec![doc! {"_id": -1}],
            other.clone(),
        )
        .unwrap();
        let mut expected = vec![doc! {"_id": -1}];
        expected.extend(other);
        assert_eq!(out, expected, "{n}");
    }
    let other: Vec<Document> = (0..1000).map(|i| doc! {"_id": i}).collect();
    let out = run_with(
        bson!([{"$unionWith": {"coll": "o", "pipeline": [{"$match": {"_id": {"$gte": 990}}}]}}, {"$limit": 4}]),
        vec![doc! {"_id": "in"}],
        other,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": "in"},
            doc! {"_id": 990},
            doc! {"_id": 991},
            doc! {"_id": 992}
        ]
    );
}

#[test]
fn union_with_refuses_bad_specifications() {
    assert_eq!(code(bson!([{"$unionWith": 1}])), ErrorCode::FailedToParse);
    assert_eq!(code(bson!([{"$unionWith": {}}])), ErrorCode::FailedToParse);
    assert_eq!(
        code(bson!([{"$unionWith": {"pipeline": [{"$match": {}}]}}])),
        ErrorCode::FailedToParse
    );
    assert_eq!(
        code(bson!([{"$unionWith": {"pipeline": [{"$documents": [1]}]}}])),
        ErrorCode::TypeMismatch
    );
    assert_eq!(
        code(bson!([{"$unionWith": {"pipeline": [{"$documents": "$a"}]}}])),
        ErrorCode::Location5858203
    );
    assert_eq!(
        code(
            bson!([{"$unionWith": {"pipeline": [{"$documents": [{"a": 1}]}, {"$documents": []}]}}])
        ),
        ErrorCode::Location40324
    );
    assert_eq!(
        code(bson!([{"$unionWith": {"coll": 1}}])),
        ErrorCode::TypeMismatch
    );
    assert_eq!(
        code(bson!([{"$unionWith": {"coll": "o", "pipeline": {}}}])),
        ErrorCode::TypeMismatch
    );
    assert_eq!(
        code(bson!([{"$unionWith": {"coll": "o", "bogus": 1}}])),
        ErrorCode::Location40415
    );
    for bad in ["", "a$b", "system.users", "a\0b"] {
        assert_eq!(
            code(bson!([{"$unionWith": bad}])),
            ErrorCode::InvalidNamespace,
            "{bad:?}"
        );
    }
    for inner in ["$out", "$merge"] {
        assert_eq!(
            code(bson!([{"$unionWith": {"coll": "o", "pipeline": [{inner: "x"}]}}])),
            ErrorCode::Location40600
        );
    }
}

fn ids(docs: &[Document]) -> Vec<i32> {
    let mut v: Vec<i32> = docs.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    v.sort_unstable();
    v
}

/// `size` distinct documents of the input, each document equally likely;
/// all of them when the input is smaller; spilled or 292 past the budget.
#[test]
fn sample_picks_distinct_documents_at_random() {
    let docs: Vec<Document> = (0..10).map(|i| doc! {"_id": i, "v": i * 2}).collect();
    let mut seen = [0usize; 10];
    for _ in 0..300 {
        let out = run_with(bson!([{"$sample": {"size": 3}}]), docs.clone(), vec![]).unwrap();
        assert_eq!(out.len(), 3);
        let got = ids(&out);
        assert!(got.windows(2).all(|w| w[0] != w[1]), "{got:?}");
        for d in &out {
            let i = d.get_i32("_id").unwrap();
            // Documents come back whole.
            assert_eq!(d, &docs[i as usize]);
            seen[i as usize] += 1;
        }
    }
    // 900 picks of 10: each about 90; a document never picked (or picked
    // every time) would mean no randomness (chance ~1e-40 otherwise).
    assert!(seen.iter().all(|&n| n > 20 && n < 200), "{seen:?}");
    for size in [
        bson!(10),
        bson!(11),
        bson!(10.0),
        bson!(i64::MAX),
        bson!(1e300),
    ] {
        let out = run_with(
            bson!([{"$sample": {"size": size.clone()}}]),
            docs.clone(),
            vec![],
        )
        .unwrap();
        assert_eq!(ids(&out), (0..10).collect::<Vec<_>>(), "{size}");
    }
    assert!(
        run_with(bson!([{"$sample": {"size": 0}}]), docs.clone(), vec![])
            .unwrap()
            .is_empty()
    );
    // Past the budget: spilled, the same set; without disk use, 292.
    let big: Vec<Document> = (0..3000)
        .map(|i| doc! {"_id": i, "pad": "p".repeat(40)})
        .collect();
    let out = pipeline(bson!([{"$sample": {"size": 2500}}]))
        .unwrap()
        .run_within(big.clone(), &InMemory(vec![]), StageBudget::new(2048, true))
        .unwrap();
    let got = ids(&out);
    assert_eq!(got.len(), 2500);
    got.windows(2).for_each(|w| assert!(w[0] < w[1]));
    let e = pipeline(bson!([{"$sample": {"size": 2500}}]))
        .unwrap()
        .run_within(big, &InMemory(vec![]), StageBudget::new(16 << 10, false))
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::QueryExceededMemoryLimitNoDiskUseAllowed);
}

#[test]
fn sample_refuses_bad_specifications() {
    assert_eq!(code(bson!([{"$sample": 1}])), ErrorCode::Location28745);
    assert_eq!(
        code(bson!([{"$sample": {"size": "3"}}])),
        ErrorCode::Location28746
    );
    assert_eq!(
        code(bson!([{"$sample": {"size": -1}}])),
        ErrorCode::Location28747
    );
    assert_eq!(
        code(bson!([{"$sample": {"size": f64::NAN}}])),
        ErrorCode::Location28747
    );
    assert_eq!(
        code(bson!([{"$sample": {"size": 1, "x": 1}}])),
        ErrorCode::Location28748
    );
    assert_eq!(code(bson!([{"$sample": {}}])), ErrorCode::Location28749);
}

/// `$sample` and `$unionWith` inside `$facet` (the order of a union is
/// the input's, then the other collection's).
#[test]
fn stages_compose_inside_facet() {
    let out = run_with(
        bson!([{"$facet": {
            "u": [{"$unionWith": "o"}, {"$project": {"_id": 1}}],
            "s": [{"$sample": {"size": 1}}, {"$count": "n"}],
        }}]),
        vec![doc! {"_id": 1}, doc! {"_id": 2}],
        vec![doc! {"_id": 3}],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![doc! {"u": [{"_id": 1}, {"_id": 2}, {"_id": 3}], "s": [{"n": 1}]}]
    );
}

/// The manual's "join conditions and subqueries" example: `let` +
/// `pipeline` with `$expr` over both sides.
#[test]
fn lookup_pipeline_binds_let_per_local_document() {
    let orders = vec![
        doc! {"_id": 1, "item": "almonds", "price": 12, "ordered": 2},
        doc! {"_id": 2, "item": "pecans", "price": 20, "ordered": 1},
        doc! {"_id": 3, "item": "cookies", "price": 10, "ordered": 60},
    ];
    let warehouses = vec![
        doc! {"_id": 1, "stock_item": "almonds", "warehouse": "A", "instock": 120},
        doc! {"_id": 2, "stock_item": "pecans", "warehouse": "A", "instock": 80},
        doc! {"_id": 3, "stock_item": "almonds", "warehouse": "B", "instock": 60},
        doc! {"_id": 4, "stock_item": "cookies", "warehouse": "B", "instock": 40},
        doc! {"_id": 5, "stock_item": "cookies", "warehouse": "A", "instock": 80},
    ];
    let out = run_with(
        bson!([{"$lookup": {
            "from": "warehouses",
            "let": {"order_item": "$item", "order_qty": "$ordered"},
            "pipeline": [
                {"$match": {"$expr": {"$and": [
                    {"$eq": ["$stock_item", "$$order_item"]},
                    {"$gte": ["$instock", "$$order_qty"]},
                ]}}},
                {"$project": {"stock_item": 0, "_id": 0}},
            ],
            "as": "stockdata",
        }}]),
        orders,
        warehouses.clone(),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "item": "almonds", "price": 12, "ordered": 2, "stockdata": [{"warehouse": "A", "instock": 120}, {"warehouse": "B", "instock": 60}]},
            doc! {"_id": 2, "item": "pecans", "price": 20, "ordered": 1, "stockdata": [{"warehouse": "A", "instock": 80}]},
            doc! {"_id": 3, "item": "cookies", "price": 10, "ordered": 60, "stockdata": [{"warehouse": "A", "instock": 80}]},
        ]
    );
    // Uncorrelated: the same result for every local document.
    let out = run_with(
        bson!([{"$lookup": {"from": "w", "pipeline": [{"$match": {"warehouse": "B"}}, {"$count": "n"}], "as": "b"}}]),
        vec![doc! {"_id": 1}, doc! {"_id": 2}],
        warehouses,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "b": [{"n": 2}]},
            doc! {"_id": 2, "b": [{"n": 2}]}
        ]
    );
}

/// MongoDB 6.0's collectionless forms: a sub-pipeline that starts with
/// `$documents`, its `let` variables bound into the documents.
#[test]
fn sub_pipelines_over_their_own_documents() {
    let out = run_with(
        bson!([{"$unionWith": {"pipeline": [
            {"$documents": [{"_id": 10, "x": 1}, {"_id": 11, "x": 2}]},
            {"$match": {"x": {"$gt": 1}}}]}}]),
        vec![doc! {"_id": 1}],
        vec![doc! {"_id": 99}],
    )
    .unwrap();
    assert_eq!(out, vec![doc! {"_id": 1}, doc! {"_id": 11, "x": 2}]);
    // The manual's `$lookup` over `$documents`: a lookup table in the query.
    let out = run_with(
        bson!([{"$lookup": {
            "localField": "zip", "foreignField": "zip_id", "as": "city_state",
            "let": {"z": "$zip"},
            "pipeline": [
                {"$documents": [
                    {"zip_id": 94301, "name": "Palo Alto, CA"},
                    {"zip_id": 10019, "name": "New York, NY"},
                    {"zip_id": 0, "name": {"$concat": ["seen ", {"$toString": "$$z"}]}}]},
                {"$project": {"_id": 0, "zip_id": 0}}]}},
            {"$project": {"_id": 0}}]),
        vec![doc! {"zip": 94301}, doc! {"zip": 10019}, doc! {"zip": 0}],
        vec![],
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"zip": 94301, "city_state": [{"name": "Palo Alto, CA"}]},
            doc! {"zip": 10019, "city_state": [{"name": "New York, NY"}]},
            doc! {"zip": 0, "city_state": [{"name": "seen 0"}]},
        ]
    );
    // Hostile: a `$documents` array past the built-value limit.
    let err = run_with(
        bson!([{"$lookup": {"as": "m", "let": {"s": "$s"}, "pipeline": [
            {"$documents": {"$map": {"input": {"$range": [0, 100]}, "in": {"s": "$$s"}}}}]}}]),
        vec![doc! {"s": "x".repeat(1 << 20)}],
        vec![],
    )
    .unwrap_err();
    assert!(
        matches!(err.code, ErrorCode::ExceededMemoryLimit),
        "{err:?}"
    );
}

/// The manual's concise form (5.0+): `localField`/`foreignField` with
/// `let` + `pipeline`; a missing `let` source is null.
#[test]
fn lookup_pipeline_with_equality_fields() {
    let restaurants = vec![
        doc! {"_id": 1, "name": "American Steak House", "food": ["filet", "sirloin"], "beverages": ["beer", "wine"]},
        doc! {"_id": 2, "name": "Honest John Pizza", "food": ["cheese pizza", "pepperoni pizza"], "beverages": ["soda"]},
    ];
    let orders = vec![
        doc! {"_id": 1, "item": "filet", "restaurant_name": "American Steak House"},
        doc! {"_id": 2, "item": "cheese pizza", "restaurant_name": "Honest John Pizza", "drink": "lemonade"},
        doc! {"_id": 3, "item": "cheese pizza", "restaurant_name": "Honest John Pizza", "drink": "soda"},
    ];
    let out = run_with(
        bson!([{"$lookup": {
            "from": "restaurants",
            "localField": "restaurant_name",
            "foreignField": "name",
            "let": {"orders_drink": "$drink"},
            "pipeline": [{"$match": {"$expr": {"$in": ["$$orders_drink", "$beverages"]}}}],
            "as": "matches",
        }}]),
        orders.clone(),
        restaurants.clone(),
    )
    .unwrap();
    assert_eq!(
        out,
        vec![
            doc! {"_id": 1, "item": "filet", "restaurant_name": "American Steak House", "matches": []},
            doc! {"_id": 2, "item": "cheese pizza", "restaurant_name": "Honest John Pizza", "drink": "lemonade", "matches": []},
            doc! {"_id": 3, "item": "cheese pizza", "restaurant_name": "Honest John Pizza", "drink": "soda", "matches": [restaurants[1].clone()]},
        ]
    );
    // The equality alone (an empty pipeline) is the equality form.
    let concise = run_with(
        bson!([{"$lookup": {"from": "r", "localField": "restaurant_name", "foreignField": "name", "pipeline": [], "as": "m"}}]),
        orders.clone(),
        restaurants.clone(),
    )
    .unwrap();
    let classic = run_with(
        bson!([{"$lookup": {"from": "r", "localField": "restaurant_name", "foreignField": "name", "as": "m"}}]),
        orders,
        restaurants,
    )
    .unwrap();
    assert_eq!(concise, classic);
}

#[test]
fn lookup_pipeline_refuses_hostile_input() {
    // Undefined variables and bad names fail at parse, before any document.
    assert_eq!(
        code(
            bson!([{"$lookup": {"from": "o", "pipeline": [{"$match": {"$expr": "$$nope"}}], "as": "m"}}])
        ),
        ErrorCode::Location17276
    );
    assert_eq!(
        code(bson!([{"$lookup": {"from": "o", "let": {"X": 1}, "pipeline": [], "as": "m"}}])),
        ErrorCode::Location16867
    );
    assert_eq!(
        code(bson!([{"$lookup": {"from": "o", "pipeline": [{"$out": "x"}], "as": "m"}}])),
        ErrorCode::Location40600
    );
    // 21 nested $lookup pipelines: 232 at parse.
    let nested = |levels: usize| {
        let mut p = bson!([]);
        for _ in 0..levels {
            p = bson!([{"$lookup": {"from": "o", "pipeline": p, "as": "m"}}]);
        }
        p
    };
    assert!(pipeline(nested(20)).is_ok());
    assert_eq!(code(nested(21)), ErrorCode::MaxSubPipelineDepthExceeded);
    // What one document joins is held to 16 MiB + 16 KiB (4568).
    let big: Vec<Document> = (0..20)
        .map(|i| doc! {"_id": i, "pad": "p".repeat(1 << 20)})
        .collect();
    let e = run_with(
        bson!([{"$lookup": {"from": "o", "pipeline": [], "as": "m"}}]),
        vec![doc! {"_id": 1}],
        big,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Location4568);
    // A 1 MiB variable referenced 100 times would bind 100 MiB: refused.
    let refs: Vec<Bson> = (0..100).map(|_| bson!("$$v")).collect();
    let e = run_with(
        bson!([{"$lookup": {"from": "o", "let": {"v": "$pad"}, "pipeline": [{"$set": {"x": refs}}], "as": "m"}}]),
        vec![doc! {"_id": 1, "pad": "p".repeat(1 << 20)}],
        vec![doc! {"_id": 1}],
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
}
