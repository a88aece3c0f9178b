//! The accumulators with arguments and the statistical ones (`multi`,
//! `group`): each against an answer computed here independently (a full
//! sort, a two-pass deviation), MongoDB's codes for bad `n`, `p` and
//! `method`, the spilled path giving the in-memory answer, the window
//! and expression forms, and hostile sizes.

use std::cmp::Ordering;

use super::*;
use crate::error::ErrorCode;
use crate::query::compare::{as_f64, compare, is_number};
use bson::{bson, doc};

fn run(stages: Bson, docs: Vec<Document>) -> Result<Vec<Document>> {
    let Bson::Array(stages) = stages else {
        panic!("pipeline must be an array")
    };
    Pipeline::parse(&stages)?.run(docs, &InMemory(Vec::new()))
}

fn run_tiny(stages: Bson, docs: Vec<Document>) -> Result<Vec<Document>> {
    let Bson::Array(stages) = stages else {
        panic!("pipeline must be an array")
    };
    Pipeline::parse(&stages)?.run_within(docs, &InMemory(Vec::new()), StageBudget::new(2048, true))
}

fn code(r: Result<impl std::fmt::Debug>) -> i32 {
    r.expect_err("an error").code.code()
}

fn by_id(mut docs: Vec<Document>) -> Vec<Document> {
    docs.sort_by(|a, b| compare(a.get("_id").expect("an _id"), b.get("_id").expect("an _id")));
    docs
}

/// Scores of several games with mixed types, nulls and missing fields.
fn scores(n: i32) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let score = match i % 9 {
                0 => Bson::Null,
                1 => Bson::Double(f64::from(i % 17) + 0.5),
                2 => Bson::Int64(i64::from(i % 13)),
                3 => Bson::String(format!("s{}", i % 4)),
                4 => Bson::Decimal128(format!("{}", i % 11).parse().expect("a decimal")),
                _ => Bson::Int32(i % 23),
            };
            let mut d = doc! {"_id": i, "game": i % 5, "player": format!("p{i}"), "score": score, "pad": "x".repeat(30)};
            if i % 10 == 7 {
                d.remove("score");
            }
            d
        })
        .collect()
}

fn group_of(docs: &[Document], game: i32) -> Vec<Document> {
    docs.iter()
        .filter(|d| d.get_i32("game").ok() == Some(game))
        .cloned()
        .collect()
}

fn score(d: &Document) -> Option<Bson> {
    d.get("score").cloned()
}

/// `$topN` by a full stable sort: the first n outputs.
fn reference_top(group: &[Document], n: usize, ascending: bool) -> Vec<Bson> {
    let mut g: Vec<&Document> = group.iter().collect();
    let key = |d: &Document| score(d).unwrap_or(Bson::Null);
    g.sort_by(|a, b| {
        let o = compare(&key(a), &key(b));
        if ascending { o } else { o.reverse() }
    });
    g.iter()
        .take(n)
        .map(|d| Bson::String(d.get_str("player").unwrap().into()))
        .collect()
}

/// `$bottomN`: the n last by the sort (ties: the first seen stay), in
/// sort order.
fn reference_bottom(group: &[Document], n: usize, ascending: bool) -> Vec<Bson> {
    let key = |d: &Document| score(d).unwrap_or(Bson::Null);
    let ord = |a: &Document, b: &Document| {
        let o = compare(&key(a), &key(b));
        if ascending { o } else { o.reverse() }
    };
    let mut g: Vec<(usize, &Document)> = group.iter().enumerate().collect();
    // Best for "bottom" first: greatest by the sort, then earliest.
    g.sort_by(|a, b| ord(b.1, a.1).then(a.0.cmp(&b.0)));
    g.truncate(n);
    g.sort_by(|a, b| ord(a.1, b.1).then(a.0.cmp(&b.0)));
    g.iter()
        .map(|(_, d)| Bson::String(d.get_str("player").unwrap().into()))
        .collect()
}

fn reference_min_max(group: &[Document], n: usize, max: bool) -> Vec<Bson> {
    let mut vals: Vec<Bson> = group
        .iter()
        .filter_map(score)
        .filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
        .collect();
    vals.sort_by(|a, b| if max { compare(b, a) } else { compare(a, b) });
    vals.truncate(n);
    vals
}

fn numbers(group: &[Document]) -> Vec<f64> {
    group
        .iter()
        .filter_map(score)
        .filter(is_number)
        .filter_map(|v| as_f64(&v))
        .collect()
}

fn reference_std_dev(xs: &[f64], sample: bool) -> Bson {
    let n = xs.len() as f64 - if sample { 1.0 } else { 0.0 };
    if n <= 0.0 {
        return Bson::Null;
    }
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let ss: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
    Bson::Double((ss / n).sqrt())
}

fn reference_percentile(xs: &[f64], p: f64) -> Bson {
    if xs.is_empty() {
        return Bson::Null;
    }
    let mut s = xs.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap_or(Ordering::Equal));
    // The smallest value with at least p of the values at or below it.
    let i = s
        .iter()
        .enumerate()
        .position(|(i, _)| (i + 1) as f64 >= p * s.len() as f64)
        .unwrap_or(s.len() - 1);
    Bson::Double(s[i])
}

fn close(a: &Bson, b: &Bson) -> bool {
    match (a, b) {
        (Bson::Double(x), Bson::Double(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

fn group_spec() -> Bson {
    bson!({"$group": {
        "_id": "$game",
        "first3": {"$firstN": {"n": 3, "input": "$score"}},
        "last3": {"$lastN": {"n": 3, "input": "$score"}},
        "min4": {"$minN": {"n": 4, "input": "$score"}},
        "max4": {"$maxN": {"n": 4, "input": "$score"}},
        "top5": {"$topN": {"n": 5, "sortBy": {"score": 1}, "output": "$player"}},
        "topDesc": {"$topN": {"n": 5, "sortBy": {"score": -1}, "output": "$player"}},
        "bottom5": {"$bottomN": {"n": 5, "sortBy": {"score": 1}, "output": "$player"}},
        "bottomDesc": {"$bottomN": {"n": 5, "sortBy": {"score": -1}, "output": "$player"}},
        "top": {"$top": {"sortBy": {"score": -1}, "output": "$player"}},
        "bottom": {"$bottom": {"sortBy": {"score": -1}, "output": "$player"}},
        "sdPop": {"$stdDevPop": "$score"},
        "sdSamp": {"$stdDevSamp": "$score"},
        "median": {"$median": {"input": "$score", "method": "approximate"}},
        "pct": {"$percentile": {"input": "$score", "p": [0, 0.1, 0.5, 0.95, 1], "method": "approximate"}},
        "merged": {"$mergeObjects": {"$cond": [{"$eq": [{"$mod": ["$_id", 3]}, 0]}, {"g": "$game", "last": "$_id"}, null]}},
    }})
}

fn check_groups(out: &[Document], docs: &[Document]) {
    assert_eq!(out.len(), 5);
    for o in out {
        let game = o.get_i32("_id").unwrap();
        let g = group_of(docs, game);
        let vals: Vec<Bson> = g.iter().map(|d| score(d).unwrap_or(Bson::Null)).collect();
        let arr = |k: &str| o.get_array(k).unwrap().clone();
        assert_eq!(arr("first3"), vals[..3].to_vec(), "{game}");
        assert_eq!(arr("last3"), vals[vals.len() - 3..].to_vec(), "{game}");
        assert_eq!(arr("min4"), reference_min_max(&g, 4, false), "{game}");
        assert_eq!(arr("max4"), reference_min_max(&g, 4, true), "{game}");
        assert_eq!(arr("top5"), reference_top(&g, 5, true), "{game}");
        assert_eq!(arr("topDesc"), reference_top(&g, 5, false), "{game}");
        assert_eq!(arr("bottom5"), reference_bottom(&g, 5, true), "{game}");
        assert_eq!(arr("bottomDesc"), reference_bottom(&g, 5, false), "{game}");
        assert_eq!(o.get("top"), reference_top(&g, 1, false).first(), "{game}");
        assert_eq!(
            o.get("bottom"),
            reference_bottom(&g, 1, false).first(),
            "{game}"
        );
        let xs = numbers(&g);
        assert!(
            close(o.get("sdPop").unwrap(), &reference_std_dev(&xs, false)),
            "{o}"
        );
        assert!(
            close(o.get("sdSamp").unwrap(), &reference_std_dev(&xs, true)),
            "{o}"
        );
        assert_eq!(
            o.get("median"),
            Some(&reference_percentile(&xs, 0.5)),
            "{game}"
        );
        let pct: Vec<Bson> = [0.0, 0.1, 0.5, 0.95, 1.0]
            .iter()
            .map(|p| reference_percentile(&xs, *p))
            .collect();
        assert_eq!(arr("pct"), pct, "{game}");
        let last = g
            .iter()
            .map(|d| d.get_i32("_id").unwrap())
            .rfind(|i| i % 3 == 0)
            .unwrap();
        assert_eq!(
            o.get_document("merged").unwrap(),
            &doc! {"g": game, "last": last}
        );
    }
}

#[test]
fn group_accumulators_match_a_full_sort() {
    let docs = scores(400);
    let out = run(bson!([group_spec()]), docs.clone()).unwrap();
    check_groups(&out, &docs);
}

/// With a budget far below the data every group spills (several runs per
/// group, merged): the answers are the in-memory ones.
#[test]
fn spilled_groups_give_the_same_answers() {
    let docs = scores(3000);
    let memory = by_id(run(bson!([group_spec()]), docs.clone()).unwrap());
    let spilled = by_id(run_tiny(bson!([group_spec()]), docs.clone()).unwrap());
    check_groups(&spilled, &docs);
    assert_eq!(memory.len(), spilled.len());
    for (m, s) in memory.iter().zip(&spilled) {
        for (k, v) in m {
            // Partial deviations combine in another order: last bits only.
            assert!(close(v, s.get(k).unwrap()), "{k}: {v} vs {:?}", s.get(k));
        }
    }
    // `$bucket` and `$bucketAuto` fold the same states.
    let out = run_tiny(
        bson!([{"$bucket": {"groupBy": "$game", "boundaries": [0, 2, 5], "output": {
            "top": {"$topN": {"n": 2, "sortBy": {"_id": -1}, "output": "$_id"}},
            "med": {"$median": {"input": "$_id", "method": "approximate"}},
        }}}]),
        docs.clone(),
    )
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].get_array("top").unwrap(),
        &vec![bson!(2996), bson!(2995)]
    );
    assert_eq!(
        out[1].get_array("top").unwrap(),
        &vec![bson!(2999), bson!(2998)]
    );
    let out = run(
        bson!([{"$bucketAuto": {"groupBy": "$_id", "buckets": 2, "output": {
            "low": {"$minN": {"n": 2, "input": "$_id"}},
            "sd": {"$stdDevPop": "$_id"},
        }}}]),
        docs,
    )
    .unwrap();
    assert_eq!(out[0].get_array("low").unwrap(), &vec![bson!(0), bson!(1)]);
    // `$firstN`/`$lastN` follow the input order, not `groupBy`'s.
    let reversed: Vec<Document> = (0..10).rev().map(|i| doc! {"_id": i}).collect();
    let by_input = run(
        bson!([{"$bucketAuto": {"groupBy": "$_id", "buckets": 1, "output": {
            "f": {"$firstN": {"n": 3, "input": "$_id"}},
            "l": {"$lastN": {"n": 2, "input": "$_id"}},
        }}}]),
        reversed,
    )
    .unwrap();
    assert_eq!(
        by_input[0].get_array("f").unwrap(),
        &vec![bson!(9), bson!(8), bson!(7)]
    );
    assert_eq!(
        by_input[0].get_array("l").unwrap(),
        &vec![bson!(1), bson!(0)]
    );
    assert_eq!(
        out[1].get_array("low").unwrap(),
        &vec![bson!(1500), bson!(1501)]
    );
    let xs: Vec<f64> = (0..1500).map(f64::from).collect();
    assert!(close(
        out[0].get("sd").unwrap(),
        &reference_std_dev(&xs, false)
    ));
}

/// MongoDB's manual (`$topN` … `$bottom`): scores of two games.
#[test]
fn documented_game_scores() {
    let docs = vec![
        doc! {"playerId": "PlayerA", "gameId": "G1", "score": 31},
        doc! {"playerId": "PlayerB", "gameId": "G1", "score": 33},
        doc! {"playerId": "PlayerC", "gameId": "G1", "score": 99},
        doc! {"playerId": "PlayerD", "gameId": "G1", "score": 1},
        doc! {"playerId": "PlayerA", "gameId": "G2", "score": 10},
        doc! {"playerId": "PlayerB", "gameId": "G2", "score": 14},
        doc! {"playerId": "PlayerC", "gameId": "G2", "score": 66},
        doc! {"playerId": "PlayerD", "gameId": "G2", "score": 80},
    ];
    let out = run(
        bson!([
            {"$group": {
                "_id": {"gameId": "$gameId"},
                "players": {"$bottomN": {"output": ["$playerId", "$score"], "sortBy": {"score": -1}, "n": 3}},
                // `n` from the group key, as the manual shows.
                "firsts": {"$firstN": {"input": "$score", "n": {"$cond": {"if": {"$eq": ["$gameId", "G2"]}, "then": 1, "else": 3}}}},
                "best": {"$top": {"output": ["$playerId", "$score"], "sortBy": {"score": -1}}},
            }},
            {"$sort": {"_id.gameId": 1}},
        ]),
        docs.clone(),
    )
    .unwrap();
    assert_eq!(
        out[0].get_array("players").unwrap(),
        &vec![
            bson!(["PlayerB", 33]),
            bson!(["PlayerA", 31]),
            bson!(["PlayerD", 1])
        ]
    );
    assert_eq!(
        out[1].get_array("players").unwrap(),
        &vec![
            bson!(["PlayerC", 66]),
            bson!(["PlayerB", 14]),
            bson!(["PlayerA", 10])
        ]
    );
    assert_eq!(
        out[0].get_array("firsts").unwrap(),
        &vec![bson!(31), bson!(33), bson!(99)]
    );
    assert_eq!(out[1].get_array("firsts").unwrap(), &vec![bson!(10)]);
    assert_eq!(
        out[0].get_array("best").unwrap(),
        &vec![bson!("PlayerC"), bson!(99)]
    );
    // An `_id` that is no document gives `n` nothing to read: 5787902.
    assert_eq!(
        code(run(
            bson!([{"$group": {"_id": "$gameId", "x": {"$firstN": {"input": "$score", "n": "$gameId"}}}}]),
            docs,
        )),
        5787902
    );
}

#[test]
fn bad_arguments_fail_with_mongod_codes() {
    let docs = scores(20);
    let g = |acc: Bson| run(bson!([{"$group": {"_id": null, "x": acc}}]), docs.clone());
    for (n, expected) in [
        (bson!(0), 5787908),
        (bson!(-1), 5787908),
        (bson!(-5i64), 5787908),
        (bson!(2.5), 5787903),
        (bson!(1e30), 5787903),
        (Bson::Double(f64::NAN), 5787903),
        (bson!("3"), 5787902),
        (Bson::Null, 5787902),
        (bson!("$missing"), 5787902),
    ] {
        for op in ["$firstN", "$lastN", "$minN", "$maxN"] {
            assert_eq!(
                code(g(bson!({op: {"n": n.clone(), "input": "$score"}}))),
                expected,
                "{op} {n}"
            );
        }
        for op in ["$topN", "$bottomN"] {
            let acc = bson!({op: {"n": n.clone(), "sortBy": {"score": 1}, "output": "$score"}});
            assert_eq!(code(g(acc)), expected, "{op} {n}");
        }
    }
    // Whole numbers of any type are accepted.
    for n in [
        bson!(2.0),
        bson!(2i64),
        Bson::Decimal128("2".parse().unwrap()),
    ] {
        let out = g(bson!({"$firstN": {"n": n, "input": "$_id"}})).unwrap();
        assert_eq!(out[0].get_array("x").unwrap(), &vec![bson!(0), bson!(1)]);
    }
    for (acc, expected) in [
        (bson!({"$minN": 3}), 5787900),
        (bson!({"$firstN": [1]}), 5787801),
        (bson!({"$topN": "x"}), 5788001),
        (bson!({"$maxN": {"n": 1, "input": "$a", "x": 1}}), 5787901),
        (bson!({"$maxN": {"input": "$a"}}), 5787906),
        (bson!({"$lastN": {"n": 1}}), 5787907),
        (
            bson!({"$top": {"n": 1, "sortBy": {"a": 1}, "output": "$a"}}),
            5788002,
        ),
        (
            bson!({"$topN": {"sortBy": {"a": 1}, "output": "$a"}}),
            5788003,
        ),
        (bson!({"$bottomN": {"n": 1, "sortBy": {"a": 1}}}), 5788004),
        (bson!({"$bottom": {"output": "$a"}}), 5788005),
        (bson!({"$bottom": {"output": "$a", "sortBy": 1}}), 10065),
        (bson!({"$mergeObjects": "$score"}), 40400),
        (bson!({"$percentile": 1}), 7429703),
        (bson!({"$median": []}), 7436100),
        (bson!({"$percentile": {"input": "$a", "p": [0.5]}}), 40414),
        (
            bson!({"$percentile": {"input": "$a", "method": "approximate"}}),
            40414,
        ),
        (bson!({"$median": {"method": "approximate"}}), 40414),
        (
            bson!({"$median": {"input": "$a", "method": "approximate", "p": [0.5]}}),
            40415,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": [0.5], "method": "approximate", "x": 1}}),
            40415,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": [0.5], "method": 1}}),
            14,
        ),
        // 8.1's methods, refused as 8.0 refuses them.
        (
            bson!({"$percentile": {"input": "$a", "p": [0.5], "method": "discrete"}}),
            2,
        ),
        (
            bson!({"$median": {"input": "$a", "method": "continuous"}}),
            2,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": "$p", "method": "approximate"}}),
            7750300,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": [], "method": "approximate"}}),
            7750301,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": 0.5, "method": "approximate"}}),
            7750301,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": ["a"], "method": "approximate"}}),
            7750302,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": [1.5], "method": "approximate"}}),
            7750303,
        ),
        (
            bson!({"$percentile": {"input": "$a", "p": [-0.1], "method": "approximate"}}),
            7750303,
        ),
        // Not accumulators in mongod 8.0; server-side JavaScript by name.
        (bson!({"$concatArrays": "$a"}), 15952),
        (bson!({"$setUnion": "$a"}), 15952),
        (bson!({"$accumulator": {}}), 31264),
    ] {
        assert_eq!(code(g(acc.clone())), expected, "{acc}");
    }
    // A constant `p` may be computed.
    let out = g(bson!({"$percentile": {"input": "$_id", "p": {"$concatArrays": [[0.5], [1]]}, "method": "approximate"}})).unwrap();
    assert_eq!(
        out[0].get_array("x").unwrap(),
        &vec![bson!(9.0), bson!(19.0)]
    );
}

#[test]
fn empty_missing_and_null_inputs() {
    // Every input missing or null.
    let docs: Vec<Document> = (0..4)
        .map(|i| {
            if i % 2 == 0 {
                doc! {"_id": i}
            } else {
                doc! {"_id": i, "a": null}
            }
        })
        .collect();
    let out = run(
        bson!([{"$group": {"_id": null,
            "f": {"$firstN": {"n": 3, "input": "$a"}},
            "l": {"$lastN": {"n": 2, "input": "$a"}},
            "mn": {"$minN": {"n": 3, "input": "$a"}},
            "t": {"$topN": {"n": 2, "sortBy": {"a": 1}, "output": "$a"}},
            "b": {"$bottom": {"sortBy": {"a": 1}, "output": "$a"}},
            "sd": {"$stdDevPop": "$a"},
            "ss": {"$stdDevSamp": "$a"},
            "med": {"$median": {"input": "$a", "method": "approximate"}},
            "pct": {"$percentile": {"input": "$a", "p": [0.1, 0.9], "method": "approximate"}},
            "m": {"$mergeObjects": "$a"},
        }}]),
        docs,
    )
    .unwrap();
    let o = &out[0];
    // Missing becomes null in `$firstN`/`$lastN`/`$top…` output; `$minN`
    // skips nullish values.
    assert_eq!(o.get_array("f").unwrap(), &vec![Bson::Null; 3]);
    assert_eq!(o.get_array("l").unwrap(), &vec![Bson::Null; 2]);
    assert_eq!(o.get_array("mn").unwrap(), &Vec::<Bson>::new());
    assert_eq!(o.get_array("t").unwrap(), &vec![Bson::Null; 2]);
    assert_eq!(o.get("b"), Some(&Bson::Null));
    assert_eq!(o.get("sd"), Some(&Bson::Null));
    assert_eq!(o.get("ss"), Some(&Bson::Null));
    assert_eq!(o.get("med"), Some(&Bson::Null));
    assert_eq!(o.get_array("pct").unwrap(), &vec![Bson::Null; 2]);
    assert_eq!(o.get_document("m").unwrap(), &Document::new());
    // One number: the sample deviation is undefined, the population's 0.
    let out = run(
        bson!([{"$group": {"_id": null, "p": {"$stdDevPop": "$a"}, "s": {"$stdDevSamp": "$a"}}}]),
        vec![doc! {"a": 5}, doc! {"a": "x"}],
    )
    .unwrap();
    assert_eq!(out[0].get("p"), Some(&Bson::Double(0.0)));
    assert_eq!(out[0].get("s"), Some(&Bson::Null));
    // An empty input has no group at all.
    assert!(run(bson!([{"$group": {"_id": null, "x": {"$topN": {"n": 2, "sortBy": {"a": 1}, "output": "$a"}}}}]), vec![]).unwrap().is_empty());
}

#[test]
fn merge_objects_overrides_in_order() {
    let docs = vec![
        doc! {"_id": 1, "g": 1, "o": {"a": 1, "b": {"x": 1}}},
        doc! {"_id": 2, "g": 1, "o": null},
        doc! {"_id": 3, "g": 1},
        doc! {"_id": 4, "g": 1, "o": {"b": 2, "c": 3}},
        doc! {"_id": 5, "g": 2, "o": {"z": 1}},
    ];
    let out = run(
        bson!([{"$group": {"_id": "$g", "m": {"$mergeObjects": "$o"}}}, {"$sort": {"_id": 1}}]),
        docs,
    )
    .unwrap();
    // `b` keeps its place and takes the later value; sub-objects are
    // replaced, not merged.
    assert_eq!(
        out[0].get_document("m").unwrap(),
        &doc! {"a": 1, "b": 2, "c": 3}
    );
    assert_eq!(out[1].get_document("m").unwrap(), &doc! {"z": 1});
    // Deep inputs are merged at their top level only: no recursion.
    let mut deep = doc! {"leaf": 1};
    for _ in 0..90 {
        deep = doc! {"d": deep};
    }
    let out = run(
        bson!([{"$group": {"_id": null, "m": {"$mergeObjects": "$o"}}}]),
        vec![doc! {"o": {"d": deep.clone()}}, doc! {"o": {"e": 1}}],
    )
    .unwrap();
    assert_eq!(out[0].get_document("m").unwrap(), &doc! {"d": deep, "e": 1});
    // Many large objects: the merged one is held to the value limit.
    let big = "x".repeat(1 << 20);
    let docs: Vec<Document> = (0..20)
        .map(|i| doc! {"o": {format!("f{i}"): big.clone()}})
        .collect();
    assert_eq!(
        code(run(
            bson!([{"$group": {"_id": null, "m": {"$mergeObjects": "$o"}}}]),
            docs
        )),
        ErrorCode::ExceededMemoryLimit.code()
    );
}

/// `n` of 10^9 holds what the group has, never n slots; 100,000-document
/// groups answer as the reference does.
#[test]
fn huge_n_and_large_groups() {
    let docs: Vec<Document> = (0..100_000)
        .map(|i| doc! {"_id": i, "v": (i * 7919) % 100_003, "g": i % 2})
        .collect();
    let out = run(
        bson!([{"$group": {"_id": null,
            "f": {"$firstN": {"n": 1_000_000_000, "input": "$v"}},
            "l": {"$lastN": {"n": 1_000_000_000i64, "input": "$v"}},
            "mx": {"$maxN": {"n": 1_000_000_000, "input": "$v"}},
            "t": {"$topN": {"n": 1_000_000_000, "sortBy": {"v": -1}, "output": "$_id"}},
            "b3": {"$bottomN": {"n": 3, "sortBy": {"v": 1}, "output": "$v"}},
            "med": {"$median": {"input": "$v", "method": "approximate"}},
            "pct": {"$percentile": {"input": "$v", "p": [0.01, 0.99], "method": "approximate"}},
        }}]),
        docs.clone(),
    )
    .unwrap();
    let o = &out[0];
    let vals: Vec<i32> = docs.iter().map(|d| d.get_i32("v").unwrap()).collect();
    let mut sorted = vals.clone();
    sorted.sort_unstable();
    assert_eq!(o.get_array("f").unwrap().len(), 100_000);
    assert_eq!(o.get_array("l").unwrap().last(), Some(&bson!(vals[99_999])));
    let mx = o.get_array("mx").unwrap();
    assert_eq!(mx.len(), 100_000);
    assert_eq!(mx[0], bson!(sorted[99_999]));
    assert_eq!(mx[99_999], bson!(sorted[0]));
    assert_eq!(o.get_array("t").unwrap().len(), 100_000);
    assert_eq!(
        o.get_array("b3").unwrap(),
        &sorted[99_997..]
            .iter()
            .map(|v| bson!(*v))
            .collect::<Vec<_>>()
    );
    let xs: Vec<f64> = vals.iter().map(|v| f64::from(*v)).collect();
    assert_eq!(o.get("med"), Some(&reference_percentile(&xs, 0.5)));
    assert_eq!(
        o.get_array("pct").unwrap(),
        &vec![
            reference_percentile(&xs, 0.01),
            reference_percentile(&xs, 0.99)
        ]
    );
    // Kept values past the 16 MiB value limit fail with 146, whatever n.
    let wide: Vec<Document> = (0..40)
        .map(|i| doc! {"s": format!("{i:02}{}", "y".repeat(1 << 20))})
        .collect();
    assert_eq!(
        code(run(
            bson!([{"$group": {"_id": null, "x": {"$maxN": {"n": 1_000_000_000, "input": "$s"}}}}]),
            wide.clone()
        )),
        ErrorCode::ExceededMemoryLimit.code()
    );
    // 12 MiB of them fit (each value is held once, not as key and value).
    let out = run(
        bson!([{"$group": {"_id": null, "x": {"$maxN": {"n": 1_000_000_000, "input": "$s"}}}}]),
        wide[..12].to_vec(),
    )
    .unwrap();
    assert_eq!(out[0].get_array("x").unwrap().len(), 12);
    // ...but a small n keeps only n of them.
    let out = run(
        bson!([{"$group": {"_id": null, "x": {"$maxN": {"n": 2, "input": "$s"}}}}]),
        wide,
    )
    .unwrap();
    assert!(
        out[0].get_array("x").unwrap()[0]
            .as_str()
            .unwrap()
            .starts_with("39")
    );
}

#[test]
fn quantile_states_are_bounded() {
    assert!(super::multi::room_for_number(0).is_ok());
    assert!(super::multi::room_for_number(super::multi::MAX_QUANTILE_VALUES - 1).is_ok());
    let e = super::multi::room_for_number(super::multi::MAX_QUANTILE_VALUES).unwrap_err();
    assert_eq!(e.code, ErrorCode::ExceededMemoryLimit);
    assert!(
        e.message.starts_with("$percentile used too much memory"),
        "{}",
        e.message
    );
}

#[test]
fn window_functions_over_documents_and_ranges() {
    let docs: Vec<Document> = (0..40)
        .map(
            |i| doc! {"_id": i, "part": i % 2, "t": i, "v": (i * 37) % 23, "name": format!("n{i}")},
        )
        .collect();
    let out = run(
        bson!([
            {"$setWindowFields": {"partitionBy": "$part", "sortBy": {"t": 1}, "output": {
                "mx": {"$maxN": {"n": 2, "input": "$v"}, "window": {"documents": [-2, 2]}},
                "fl": {"$firstN": {"n": 2, "input": "$v"}, "window": {"documents": ["unbounded", "current"]}},
                "ll": {"$lastN": {"n": 2, "input": "$v"}, "window": {"range": [-4, 0]}},
                "tp": {"$top": {"sortBy": {"v": 1}, "output": "$name"}, "window": {"documents": [-1, 1]}},
                "bt": {"$bottomN": {"n": 2, "sortBy": {"v": 1}, "output": "$v"}},
                "med": {"$median": {"input": "$v", "method": "approximate"}, "window": {"documents": [-3, 0]}},
                "pc": {"$percentile": {"input": "$v", "p": [0.9], "method": "approximate"}, "window": {"range": [-6, 6]}},
            }}},
            {"$sort": {"_id": 1}},
        ]),
        docs.clone(),
    )
    .unwrap();
    for o in &out {
        let i = o.get_i32("_id").unwrap();
        let part: Vec<&Document> = docs
            .iter()
            .filter(|d| d.get_i32("part").unwrap() == i % 2)
            .collect();
        let pos = part
            .iter()
            .position(|d| d.get_i32("_id").unwrap() == i)
            .unwrap();
        let win = |lo: i64, hi: i64| -> Vec<&Document> {
            part.iter()
                .enumerate()
                .filter(|(j, _)| (*j as i64) >= pos as i64 + lo && (*j as i64) <= pos as i64 + hi)
                .map(|(_, d)| *d)
                .collect()
        };
        let v = |d: &Document| d.get_i32("v").unwrap();
        let mut w: Vec<i32> = win(-2, 2).iter().map(|d| v(d)).collect();
        w.sort_unstable_by(|a, b| b.cmp(a));
        w.truncate(2);
        assert_eq!(
            o.get_array("mx").unwrap(),
            &w.iter().map(|x| bson!(*x)).collect::<Vec<_>>(),
            "{o}"
        );
        let first: Vec<Bson> = part
            .iter()
            .take((pos + 1).min(2))
            .map(|d| bson!(v(d)))
            .collect();
        assert_eq!(o.get_array("fl").unwrap(), &first, "{o}");
        // Range [-4, 0] on t: the documents with t in [i-4, i].
        let in_range: Vec<Bson> = part
            .iter()
            .filter(|d| {
                let t = d.get_i32("t").unwrap();
                t >= i - 4 && t <= i
            })
            .map(|d| bson!(v(d)))
            .collect();
        assert_eq!(
            o.get_array("ll").unwrap(),
            &in_range[in_range.len().saturating_sub(2)..].to_vec(),
            "{o}"
        );
        let near = win(-1, 1);
        let best = near.iter().min_by_key(|d| v(d)).unwrap();
        assert_eq!(
            o.get_str("tp").unwrap(),
            best.get_str("name").unwrap(),
            "{o}"
        );
        let mut all: Vec<i32> = part.iter().map(|d| v(d)).collect();
        all.sort_unstable();
        assert_eq!(
            o.get_array("bt").unwrap(),
            &all[all.len() - 2..]
                .iter()
                .map(|x| bson!(*x))
                .collect::<Vec<_>>()
        );
        let xs: Vec<f64> = win(-3, 0).iter().map(|d| f64::from(v(d))).collect();
        assert_eq!(o.get("med"), Some(&reference_percentile(&xs, 0.5)), "{o}");
        let xs: Vec<f64> = part
            .iter()
            .filter(|d| (d.get_i32("t").unwrap() - i).abs() <= 6)
            .map(|d| f64::from(v(d)))
            .collect();
        assert_eq!(
            o.get_array("pc").unwrap(),
            &vec![reference_percentile(&xs, 0.9)],
            "{o}"
        );
    }
    // `n` has no group key to read in a window: a field is missing.
    assert_eq!(
        code(run(
            bson!([{"$setWindowFields": {"sortBy": {"t": 1}, "output": {"x": {"$firstN": {"n": "$v", "input": "$v"}}}}}]),
            docs.clone(),
        )),
        5787902
    );
    // Not window functions in 8.0.
    assert_eq!(
        code(run(
            bson!([{"$setWindowFields": {"sortBy": {"t": 1}, "output": {"x": {"$mergeObjects": "$v"}}}}]),
            docs,
        )),
        115
    );
}

/// Values computed for a partition are held to the stage budget (a
/// running `$push` repeats ever longer arrays); a whole-partition window
/// holds its one value once, however many documents get it.
#[test]
fn window_values_are_held_to_the_budget() {
    let docs: Vec<Document> = (0..1000).map(|i| doc! {"_id": i, "t": i}).collect();
    let stages = |window: Bson| {
        let Bson::Array(stages) = bson!([{"$setWindowFields": {"sortBy": {"t": 1}, "output": {
            "x": {"$topN": {"n": 1_000_000_000, "sortBy": {"t": -1}, "output": "$_id"}, "window": window},
        }}}]) else {
            unreachable!()
        };
        Pipeline::parse(&stages).unwrap()
    };
    let budget = |allow_disk| StageBudget::new(1 << 20, allow_disk);
    let running = stages(bson!({"documents": ["unbounded", "current"]}));
    for (allow_disk, expected) in [(true, 146), (false, 292)] {
        let e = running
            .run_within(docs.clone(), &InMemory(Vec::new()), budget(allow_disk))
            .unwrap_err();
        assert_eq!(e.code.code(), expected, "{e:?}");
    }
    let whole = stages(bson!({"documents": ["unbounded", "unbounded"]}))
        .run_within(docs.clone(), &InMemory(Vec::new()), budget(true))
        .unwrap();
    assert_eq!(whole.len(), 1000);
    for d in [&whole[0], &whole[999]] {
        let x = d.get_array("x").unwrap();
        assert_eq!(x.len(), 1000);
        assert_eq!((x[0].clone(), x[999].clone()), (bson!(999), bson!(0)));
    }
}

#[test]
fn array_expressions() {
    let d = doc! {"a": [3, null, 1, "x", 7, 1.5], "s": 4};
    let eval = |e: Bson| -> Result<Option<Bson>> { crate::query::expr::Expr::parse(&e)?.eval(&d) };
    assert_eq!(
        eval(bson!({"$maxN": {"n": 2, "input": "$a"}})).unwrap(),
        Some(bson!(["x", 7]))
    );
    assert_eq!(
        eval(bson!({"$minN": {"n": 3, "input": "$a"}})).unwrap(),
        Some(bson!([1, 1.5, 3]))
    );
    assert_eq!(
        eval(bson!({"$firstN": {"n": 2, "input": "$a"}})).unwrap(),
        Some(bson!([3, null]))
    );
    assert_eq!(
        eval(bson!({"$lastN": {"n": "$s", "input": "$a"}})).unwrap(),
        Some(bson!([1, "x", 7, 1.5]))
    );
    assert_eq!(
        eval(bson!({"$firstN": {"n": 100, "input": []}})).unwrap(),
        Some(bson!([]))
    );
    assert_eq!(
        code(eval(bson!({"$firstN": {"n": 1, "input": "$s"}}))),
        5788200
    );
    assert_eq!(
        code(eval(bson!({"$firstN": {"n": 1, "input": "$nope"}}))),
        5788200
    );
    assert_eq!(
        code(eval(bson!({"$maxN": {"n": 0, "input": "$a"}}))),
        5787908
    );
    assert_eq!(code(eval(bson!({"$maxN": [1]}))), 5787900);
    // `$top`/`$bottom` are accumulators only.
    assert_eq!(
        code(eval(bson!({"$top": {"sortBy": {"a": 1}, "output": "$a"}}))),
        168
    );
    assert_eq!(
        eval(bson!({"$median": {"input": "$a", "method": "approximate"}})).unwrap(),
        Some(bson!(1.5))
    );
    assert_eq!(
        eval(bson!({"$percentile": {"input": "$a", "p": [0, 0.5, 1], "method": "approximate"}}))
            .unwrap(),
        Some(bson!([1.0, 1.5, 7.0]))
    );
    // A number is every percentile of itself; anything else has none.
    assert_eq!(
        eval(bson!({"$percentile": {"input": "$s", "p": [0.1, 0.9], "method": "approximate"}}))
            .unwrap(),
        Some(bson!([4.0, 4.0]))
    );
    assert_eq!(
        eval(bson!({"$median": {"input": "$nope", "method": "approximate"}})).unwrap(),
        Some(Bson::Null)
    );
    assert_eq!(code(eval(bson!({"$median": 1}))), 7436201);
    assert_eq!(code(eval(bson!({"$percentile": "x"}))), 7436200);
    assert_eq!(
        code(eval(
            bson!({"$median": {"input": "$a", "method": "discrete"}})
        )),
        2
    );
    // `$mergeObjects` and the deviations as expressions.
    let d2 = doc! {"x": {"a": 1, "b": 2}, "y": {"b": 3}, "n": [2, 4, 4, 4, 5, 5, 7, 9]};
    let eval2 = |e: Bson| crate::query::expr::Expr::parse(&e)?.eval(&d2);
    assert_eq!(
        eval2(bson!({"$mergeObjects": ["$x", null, "$nope", "$y", {"c": 4}]})).unwrap(),
        Some(bson!({"a": 1, "b": 3, "c": 4}))
    );
    assert_eq!(
        eval2(bson!({"$mergeObjects": "$x"})).unwrap(),
        Some(bson!({"a": 1, "b": 2}))
    );
    assert_eq!(code(eval2(bson!({"$mergeObjects": ["$x", 1]}))), 40400);
    assert_eq!(
        eval2(bson!({"$stdDevPop": "$n"})).unwrap(),
        Some(bson!(2.0))
    );
    let samp = reference_std_dev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], true);
    assert!(close(
        &eval2(bson!({"$stdDevSamp": "$n"})).unwrap().unwrap(),
        &samp
    ));
    assert_eq!(
        eval2(bson!({"$stdDevSamp": [1]})).unwrap(),
        Some(Bson::Null)
    );
    assert_eq!(
        eval2(bson!({"$stdDevPop": [1, 3, "x"]})).unwrap(),
        Some(bson!(1.0))
    );
    // Nested picks keep counting depth.
    crate::limits::with_worker_stack(|| {
        let mut e = bson!("$a");
        for _ in 0..300 {
            e = bson!({"$firstN": {"n": 1, "input": e}});
        }
        assert_eq!(
            crate::query::expr::Expr::parse(&e).unwrap_err().code,
            ErrorCode::Overflow
        );
    });
}
