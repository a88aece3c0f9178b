//! `$group` and `$setWindowFields` with the accumulators real pipelines
//! use (`$topN`, `$bottom`, `$firstN`, `$maxN`, `$percentile`, `$median`,
//! `$stdDevSamp`, `$mergeObjects`) and the array expressions of the same
//! names, through the Rust driver against the real binary: answers
//! computed here from the inserted data, MongoDB's codes for a bad `n`,
//! and a 100,000-document group with `n: 10^9` and `allowDiskUse` forced
//! to spill.

use crate::common;

use common::sidecar::Sidecar;

use bson::{Bson, Document, doc};
use futures::TryStreamExt;

/// Orders of several shops: amounts with a few nulls and strings.
fn orders(n: i32) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let amount = match i % 11 {
                0 => Bson::Null,
                1 => Bson::String("n/a".into()),
                _ => Bson::Int32((i * 7919) % 1000),
            };
            doc! {"_id": i, "shop": format!("s{}", i % 4), "amount": amount, "meta": {"k": i % 3, "at": i}}
        })
        .collect()
}

fn amounts(docs: &[Document], shop: &str) -> Vec<(i32, i32)> {
    docs.iter()
        .filter(|d| d.get_str("shop").expect("a shop") == shop)
        .filter_map(|d| Some((d.get_i32("_id").ok()?, d.get_i32("amount").ok()?)))
        .collect()
}

#[tokio::test]
async fn group_accumulators_through_the_driver() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("acc");
    let docs = orders(600);
    db.collection::<Document>("orders")
        .insert_many(docs.clone())
        .await
        .expect("insert");
    let out = common::aggregate(
        &db,
        "orders",
        vec![
            doc! {"$group": {
                "_id": {"shop": "$shop"},
                "biggest": {"$topN": {"n": 3, "sortBy": {"amount": -1, "_id": 1}, "output": "$_id"}},
                "smallest": {"$bottom": {"sortBy": {"amount": -1, "_id": 1}, "output": "$amount"}},
                "max2": {"$maxN": {"n": 2, "input": "$amount"}},
                "firsts": {"$firstN": {"n": {"$cond": [{"$eq": ["$shop", "s0"]}, 1, 2]}, "input": "$_id"}},
                "median": {"$median": {"input": "$amount", "method": "approximate"}},
                "p90": {"$percentile": {"input": "$amount", "p": [0.9], "method": "approximate"}},
                "sd": {"$stdDevSamp": "$amount"},
                "meta": {"$mergeObjects": "$meta"},
            }},
            doc! {"$sort": {"_id.shop": 1}},
        ],
    )
    .await;
    assert_eq!(out.len(), 4);
    for o in &out {
        let shop = o
            .get_document("_id")
            .unwrap()
            .get_str("shop")
            .unwrap()
            .to_owned();
        let rows = amounts(&docs, &shop);
        // By amount descending in BSON order (strings, numbers, nulls),
        // then `_id`: the top are strings, the bottom a null.
        let ids: Vec<&Document> = docs
            .iter()
            .filter(|d| d.get_str("shop").unwrap() == shop)
            .collect();
        let mut all: Vec<&Document> = ids.clone();
        all.sort_by(|a, b| {
            let (x, y) = (a.get("amount").unwrap(), b.get("amount").unwrap());
            rank(y)
                .cmp(&rank(x))
                .then_with(|| order_within(y, x))
                .then(a.get_i32("_id").unwrap().cmp(&b.get_i32("_id").unwrap()))
        });
        let top3: Vec<Bson> = all
            .iter()
            .take(3)
            .map(|d| d.get("_id").unwrap().clone())
            .collect();
        assert_eq!(o.get_array("biggest").unwrap(), &top3, "{shop}");
        assert_eq!(
            o.get("smallest"),
            all.last().unwrap().get("amount"),
            "{shop}"
        );
        assert_eq!(o.get("smallest"), Some(&Bson::Null));
        let mut vals: Vec<i32> = rows.iter().map(|r| r.1).collect();
        vals.sort_unstable();
        // `$maxN` skips nulls, but strings sort above numbers.
        let max2 = o.get_array("max2").unwrap();
        assert_eq!(max2[0], Bson::String("n/a".into()), "{shop}");
        assert_eq!(max2[1], Bson::String("n/a".into()), "{shop}");
        let n = if shop == "s0" { 1 } else { 2 };
        let first_ids: Vec<Bson> = ids
            .iter()
            .take(n)
            .map(|d| d.get("_id").unwrap().clone())
            .collect();
        assert_eq!(o.get_array("firsts").unwrap(), &first_ids);
        let rank_of = |p: f64| ((vals.len() as f64 * p).ceil() as usize).max(1) - 1;
        assert_eq!(
            o.get_f64("median").unwrap(),
            f64::from(vals[rank_of(0.5)]),
            "{shop}"
        );
        assert_eq!(
            o.get_array("p90").unwrap(),
            &vec![Bson::Double(f64::from(vals[rank_of(0.9)]))]
        );
        let xs: Vec<f64> = vals.iter().map(|v| f64::from(*v)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let sd =
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt();
        assert!((o.get_f64("sd").unwrap() - sd).abs() < 1e-9 * sd, "{shop}");
        // The last document's meta wins field by field.
        let last = ids.last().unwrap().get_document("meta").unwrap();
        assert_eq!(o.get_document("meta").unwrap(), last);
    }

    // A bad `n` fails the command with mongod's code.
    for (n, code) in [
        (Bson::Int32(0), 5787908),
        (Bson::Double(1.5), 5787903),
        (Bson::String("x".into()), 5787902),
    ] {
        let got = common::code_of(
            &db,
            doc! {"aggregate": "orders", "pipeline": [{"$group": {"_id": null, "x": {"$lastN": {"n": n.clone(), "input": "$_id"}}}}], "cursor": {}},
        )
        .await;
        assert_eq!(got, Some(code), "{n}");
    }
    let got = common::code_of(
        &db,
        doc! {"aggregate": "orders", "pipeline": [{"$group": {"_id": null, "x": {"$median": {"input": "$amount", "method": "discrete"}}}}], "cursor": {}},
    )
    .await;
    assert_eq!(got, Some(2));
}

/// BSON's order of the types in `orders`: null, numbers, strings.
fn rank(v: &Bson) -> u8 {
    match v {
        Bson::Null => 0,
        Bson::Int32(_) => 1,
        _ => 2,
    }
}

fn order_within(a: &Bson, b: &Bson) -> std::cmp::Ordering {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_expressions_and_a_large_spilled_group() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let wal = data.path().join("wal").display().to_string();
    let sidecar = Sidecar::start(
        "argon-sidecar",
        &["--data", &wal, "--max-blocking-sort-bytes", "65536"],
    )
    .await
    .expect("argon-sidecar starts");
    let client = sidecar.client().await.expect("a client");
    let db = client.database("acc");
    let coll = db.collection::<Document>("orders");
    let docs: Vec<Document> = (0..100_000)
        .map(|i| doc! {"_id": i, "v": (i * 7919) % 100_003, "tags": [i % 7, i % 5, i % 3]})
        .collect();
    for chunk in docs.chunks(20_000) {
        coll.insert_many(chunk.to_vec()).await.expect("insert");
    }
    // One group of 100,000 with n = 10^9 under a 64 KiB budget: it spills
    // dozens of partial states and merges them; kept entries are what
    // the group has, never n slots. Without allowDiskUse: 292.
    let group = doc! {"$group": {
        "_id": null,
        "top": {"$topN": {"n": 1_000_000_000, "sortBy": {"v": 1}, "output": "$v"}},
        "last": {"$lastN": {"n": 1_000_000_000, "input": "$_id"}},
        "med": {"$median": {"input": "$v", "method": "approximate"}},
        "total": {"$sum": "$v"},
        "mean": {"$avg": "$v"},
    }};
    let refused = common::code_of(
        &db,
        doc! {"aggregate": "orders", "pipeline": [group.clone()], "cursor": {}, "allowDiskUse": false},
    )
    .await;
    assert_eq!(refused, Some(292));
    let out: Vec<Document> = coll
        .aggregate(vec![group])
        .allow_disk_use(true)
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("documents");
    let mut vals: Vec<i32> = docs.iter().map(|d| d.get_i32("v").unwrap()).collect();
    vals.sort_unstable();
    let top = out[0].get_array("top").unwrap();
    assert_eq!(top.len(), 100_000);
    assert_eq!(top[0], Bson::Int32(vals[0]));
    assert_eq!(top[99_999], Bson::Int32(vals[99_999]));
    assert_eq!(out[0].get_array("last").unwrap().len(), 100_000);
    assert_eq!(out[0].get_f64("med").unwrap(), f64::from(vals[49_999]));
    // The sum's partial states went to disk and back: still exact, a long.
    let total: i64 = vals.iter().map(|v| i64::from(*v)).sum();
    assert_eq!(out[0].get("total"), Some(&Bson::Int64(total)));
    assert_eq!(out[0].get_f64("mean").unwrap(), total as f64 / 100_000.0);

    // A sliding window and the array expressions, on the first 50.
    let out: Vec<Document> = coll
        .aggregate(vec![
            doc! {"$match": {"_id": {"$lt": 50}}},
            doc! {"$setWindowFields": {"sortBy": {"_id": 1}, "output": {
                "around": {"$minN": {"n": 2, "input": "$v"}, "window": {"documents": [-2, 2]}},
                "med": {"$median": {"input": "$v", "method": "approximate"}, "window": {"documents": [-4, 0]}},
            }}},
            doc! {"$project": {
                "around": 1, "med": 1,
                "big": {"$maxN": {"n": 2, "input": "$tags"}},
                "tagMedian": {"$median": {"input": "$tags", "method": "approximate"}},
            }},
        ])
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("documents");
    assert_eq!(out.len(), 50);
    for (i, o) in out.iter().enumerate() {
        let v = |j: usize| docs[j].get_i32("v").unwrap();
        let mut w: Vec<i32> = (i.saturating_sub(2)..=(i + 2).min(49)).map(v).collect();
        w.sort_unstable();
        let expected: Vec<Bson> = w.iter().take(2).map(|x| Bson::Int32(*x)).collect();
        assert_eq!(o.get_array("around").unwrap(), &expected, "{i}");
        let mut m: Vec<i32> = (i.saturating_sub(4)..=i).map(v).collect();
        m.sort_unstable();
        let r = ((m.len() as f64 * 0.5).ceil() as usize).max(1) - 1;
        assert_eq!(o.get_f64("med").unwrap(), f64::from(m[r]), "{i}");
        let mut tags = [i as i32 % 7, i as i32 % 5, i as i32 % 3];
        tags.sort_unstable();
        assert_eq!(
            o.get_array("big").unwrap(),
            &vec![Bson::Int32(tags[2]), Bson::Int32(tags[1])]
        );
        assert_eq!(o.get_f64("tagMedian").unwrap(), f64::from(tags[1]));
    }
}

/// `$sum` and `$avg` as mongod's accumulators type them, through the
/// driver: integers exact past 2^53 (an int total that overflows is a
/// long), doubles compensated, decimals in decimal, non-numbers skipped;
/// the `$sum` expression the same.
#[tokio::test]
async fn sums_and_averages_keep_mongods_types() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("sums");
    let two53 = 1i64 << 53;
    let dec = |s: &str| Bson::Decimal128(s.parse().expect("a decimal"));
    let mut docs = vec![
        doc! {"_id": 1, "k": "a-long", "v": two53},
        doc! {"_id": 2, "k": "a-long", "v": 1i64},
        doc! {"_id": 3, "k": "b-int", "v": i32::MAX},
        doc! {"_id": 4, "k": "b-int", "v": 1},
        doc! {"_id": 5, "k": "c-decimal", "v": dec("0.1")},
        doc! {"_id": 6, "k": "c-decimal", "v": dec("0.2")},
        doc! {"_id": 7, "k": "e-none", "v": "x"},
        doc! {"_id": 8, "k": "e-none"},
    ];
    docs.extend((0..10).map(|i| doc! {"_id": 100 + i, "k": "d-double", "v": 0.1}));
    db.collection::<Document>("orders")
        .insert_many(docs)
        .await
        .expect("insert");
    let out = common::aggregate(
        &db,
        "orders",
        vec![
            doc! {"$group": {"_id": "$k", "total": {"$sum": "$v"}, "mean": {"$avg": "$v"}}},
            doc! {"$sort": {"_id": 1}},
        ],
    )
    .await;
    let got: Vec<(Bson, Bson)> = out
        .iter()
        .map(|d| {
            (
                d.get("total").cloned().unwrap(),
                d.get("mean").cloned().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                Bson::Int64(two53 + 1),
                Bson::Double((two53 + 1) as f64 / 2.0)
            ),
            (Bson::Int64(2_147_483_648), Bson::Double(1_073_741_824.0)),
            (dec("0.3"), dec("0.15")),
            (Bson::Double(1.0), Bson::Double(0.1)),
            (Bson::Int32(0), Bson::Null),
        ]
    );
    let out = common::aggregate(
        &db,
        "orders",
        vec![
            doc! {"$match": {"_id": 1}},
            doc! {"$project": {
                "s": {"$sum": [two53, 1i64]},
                "a": {"$avg": [dec("1"), dec("2")]},
                "over": {"$sum": [i64::MAX, 1i64, -2i64]},
            }},
        ],
    )
    .await;
    assert_eq!(out[0].get("s"), Some(&Bson::Int64(two53 + 1)));
    assert_eq!(out[0].get("a"), Some(&dec("1.5")));
    assert_eq!(out[0].get("over"), Some(&Bson::Int64(i64::MAX - 1)));
}
