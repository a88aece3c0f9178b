//! Text search against the real binary through the Rust driver (and
//! pymongo): text indexes as MongoDB stores and lists them, `$text` in
//! find, count, distinct, aggregate, update, delete and findAndModify,
//! `{$meta: "textScore"}` with MongoDB's scores (its manual's `articles`
//! examples), and hostile input refused with MongoDB's codes.

use crate::common;

use argon_testkit::clients::{run_node, run_python};
use bson::{Document, doc};
use futures::TryStreamExt;
use mongodb::Database;

/// The documents of a command's first batch.
async fn batch(db: &Database, cmd: Document) -> Vec<Document> {
    let reply = db
        .run_command(cmd.clone())
        .await
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    reply
        .get_document("cursor")
        .expect("a cursor")
        .get_array("firstBatch")
        .expect("a first batch")
        .iter()
        .map(|d| d.as_document().expect("a document").clone())
        .collect()
}

fn ids(docs: &[Document]) -> Vec<i32> {
    docs.iter()
        .map(|d| d.get_i32("_id").expect("an _id"))
        .collect()
}

/// MongoDB's manual `$text` examples: the `articles` collection.
async fn articles(db: &Database) {
    let c = db.collection::<Document>("articles");
    c.insert_many(vec![
        doc! {"_id": 1, "subject": "coffee", "author": "xyz", "views": 50},
        doc! {"_id": 2, "subject": "Coffee Shopping", "author": "efg", "views": 5},
        doc! {"_id": 3, "subject": "Baking a cake", "author": "abc", "views": 90},
        doc! {"_id": 4, "subject": "baking", "author": "xyz", "views": 100},
        doc! {"_id": 5, "subject": "Café Con Leche", "author": "abc", "views": 200},
        doc! {"_id": 6, "subject": "Сырники", "author": "jkl", "views": 80},
        doc! {"_id": 7, "subject": "coffee and cream", "author": "efg", "views": 10},
        doc! {"_id": 8, "subject": "Cafe con Leche", "author": "xyz", "views": 10},
    ])
    .await
    .expect("the articles load");
    db.run_command(doc! {"createIndexes": "articles", "indexes": [{"key": {"subject": "text"}, "name": "subject_text"}]})
        .await
        .expect("the text index builds");
}

async fn text_ids(db: &Database, text: Document) -> Vec<i32> {
    let mut got = ids(&batch(db, doc! {"find": "articles", "filter": {"$text": text}}).await);
    got.sort();
    got
}

#[tokio::test]
async fn the_manuals_text_examples() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("text");
    articles(&db).await;
    for (text, want) in [
        (doc! {"$search": "coffee"}, vec![1, 2, 7]),
        (doc! {"$search": "bake coffee cake"}, vec![1, 2, 3, 4, 7]),
        (doc! {"$search": "\"coffee shop\""}, vec![2]),
        (doc! {"$search": "coffee -shop"}, vec![1, 7]),
        (doc! {"$search": "leche", "$language": "es"}, vec![5, 8]),
        (doc! {"$search": "Coffee", "$caseSensitive": true}, vec![2]),
        (
            doc! {"$search": "\"Café Con Leche\"", "$caseSensitive": true},
            vec![5],
        ),
        (
            doc! {"$search": "CAFÉ", "$diacriticSensitive": true},
            vec![5],
        ),
        (doc! {"$search": "cafe"}, vec![5, 8]),
        (doc! {"$search": "сырники"}, vec![6]),
        (doc! {"$search": "-coffee"}, vec![]),
        (doc! {"$search": "the a and"}, vec![]),
    ] {
        assert_eq!(text_ids(&db, text.clone()).await, want, "{text}");
    }
    // The manual's score: "Baking a cake" for "cake" is 0.75.
    let got = batch(
        &db,
        doc! {"find": "articles", "filter": {"$text": {"$search": "cake"}}, "projection": {"score": {"$meta": "textScore"}, "_id": 1}},
    )
    .await;
    assert_eq!(got, vec![doc! {"_id": 3, "score": 0.75}]);
    // Sorted by score, highest first; a limit keeps the best.
    let got = batch(
        &db,
        doc! {"find": "articles", "filter": {"$text": {"$search": "coffee cream"}},
        "projection": {"subject": 0, "author": 0, "views": 0, "score": {"$meta": "textScore"}},
        "sort": {"score": {"$meta": "textScore"}}, "limit": 2},
    )
    .await;
    // 7: coffee 0.75 + cream 0.75; 1: "coffee" alone 1.0.
    assert_eq!(
        got,
        vec![doc! {"_id": 7, "score": 1.5}, doc! {"_id": 1, "score": 1.0}]
    );
    // count and distinct take $text too.
    let n = db
        .run_command(doc! {"count": "articles", "query": {"$text": {"$search": "coffee"}}})
        .await
        .unwrap();
    assert_eq!(n.get_i32("n").unwrap(), 3);
    let d = db
        .run_command(doc! {"distinct": "articles", "key": "author", "query": {"$text": {"$search": "coffee"}}})
        .await
        .unwrap();
    assert_eq!(d.get_array("values").unwrap().len(), 2);
    // Aggregation: $match first, score in $project/$addFields/$sort.
    let got = batch(
        &db,
        doc! {"aggregate": "articles", "pipeline": [
            {"$match": {"$text": {"$search": "coffee cream"}}},
            {"$sort": {"s": {"$meta": "textScore"}}},
            {"$addFields": {"score": {"$meta": "textScore"}}},
            {"$project": {"_id": 1, "score": 1}},
            {"$limit": 2},
        ], "cursor": {}},
    )
    .await;
    assert_eq!(
        got,
        vec![doc! {"_id": 7, "score": 1.5}, doc! {"_id": 1, "score": 1.0}]
    );
    let got = batch(
        &db,
        doc! {"aggregate": "articles", "pipeline": [
            {"$match": {"$text": {"$search": "coffee"}, "views": {"$gte": 10}}},
            {"$group": {"_id": null, "n": {"$sum": 1}}},
        ], "cursor": {}},
    )
    .await;
    assert_eq!(got, vec![doc! {"_id": null, "n": 2}]);
    // A cursor's later batches keep the query.
    let c = db.collection::<Document>("articles");
    let all: Vec<Document> = c
        .find(doc! {"$text": {"$search": "coffee cafe"}})
        .batch_size(1)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
}

#[tokio::test]
async fn writes_select_with_text() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("textw");
    articles(&db).await;
    let r = db
        .run_command(doc! {"update": "articles", "updates": [
        {"q": {"$text": {"$search": "coffee"}}, "u": {"$set": {"tag": "coffee"}}, "multi": true}]})
        .await
        .unwrap();
    assert_eq!(r.get_i32("nModified").unwrap(), 3);
    let r = db
        .run_command(
            doc! {"findAndModify": "articles", "query": {"$text": {"$search": "cake"}},
            "update": {"$inc": {"views": 1}}, "new": true,
            "fields": {"views": 1, "score": {"$meta": "textScore"}}},
        )
        .await
        .unwrap();
    assert_eq!(
        r.get_document("value").unwrap(),
        &doc! {"_id": 3, "views": 91, "score": 0.75}
    );
    let r = db
        .run_command(doc! {"delete": "articles", "deletes": [{"q": {"$text": {"$search": "leche"}}, "limit": 0}]})
        .await
        .unwrap();
    assert_eq!(r.get_i32("n").unwrap(), 2);
    assert_eq!(
        text_ids(&db, doc! {"$search": "cafe baking"}).await,
        vec![3, 4]
    );
}

#[tokio::test]
async fn text_indexes_as_mongodb_stores_them() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("texti");
    db.run_command(doc! {"createIndexes": "c", "indexes": [{
        "key": {"a": 1, "title": "text", "body": "text"},
        "weights": {"title": 10},
        "default_language": "spanish",
        "language_override": "idioma",
    }]})
    .await
    .unwrap();
    let listed = batch(&db, doc! {"listIndexes": "c"}).await;
    assert_eq!(
        listed[1],
        doc! {"v": 2, "key": {"a": 1, "_fts": "text", "_ftsx": 1}, "name": "a_1_title_text_body_text",
        "weights": {"body": 1, "title": 10}, "default_language": "spanish",
        "language_override": "idioma", "textIndexVersion": 3}
    );
    // Creating it again is a no-op; another text index is refused.
    let again = db
        .run_command(doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1, "title": "text", "body": "text"}, "weights": {"title": 10}, "default_language": "spanish", "language_override": "idioma"}]})
        .await
        .unwrap();
    assert_eq!(again.get_i32("numIndexesAfter").unwrap(), 2);
    for (spec, code) in [
        (doc! {"key": {"other": "text"}}, 67),
        (doc! {"key": {"a": 1, "other": "text"}, "name": "x"}, 85),
    ] {
        assert_eq!(
            common::code_of(&db, doc! {"createIndexes": "c", "indexes": [spec.clone()]}).await,
            Some(code),
            "{spec}"
        );
    }
    // Same name, other weights: a conflict (the catalog's same-name rule).
    assert!(
        common::code_of(
            &db,
            doc! {"createIndexes": "c", "indexes": [{"key": {"a": 1, "title": "text", "body": "text"}, "weights": {"title": 3}}]}
        )
        .await
        .is_some()
    );
    // Invalid options, with MongoDB's codes.
    for (spec, code) in [
        (doc! {"key": {"t": "text"}, "weights": {"t": 0}}, 67),
        (doc! {"key": {"t": "text"}, "weights": {"t": 100000}}, 67),
        (doc! {"key": {"t": "text"}, "weights": {"t": "heavy"}}, 67),
        (
            doc! {"key": {"t": "text"}, "default_language": "klingon"},
            67,
        ),
        (doc! {"key": {"t": "text"}, "language_override": 5}, 67),
        (doc! {"key": {"t": "text"}, "textIndexVersion": 2}, 115),
        (doc! {"key": {"t": "text"}, "unique": true}, 115),
        (
            doc! {"key": {"t": "text"}, "collation": {"locale": "fr"}},
            67,
        ),
        (doc! {"key": {"t": 1}, "weights": {"t": 2}}, 197),
        (doc! {"key": {"t": "text", "u": 1, "v": "text"}}, 67),
    ] {
        assert_eq!(
            common::code_of(&db, doc! {"createIndexes": "d", "indexes": [spec.clone()]}).await,
            Some(code),
            "{spec}"
        );
    }
    // The compound prefix needs an equality, as MongoDB's planner does.
    db.collection::<Document>("c")
        .insert_many(vec![
            doc! {"_id": 1, "a": 1, "title": "perro"},
            doc! {"_id": 2, "a": 2, "title": "perros", "idioma": "english"},
        ])
        .await
        .unwrap();
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "c", "filter": {"$text": {"$search": "perro"}}}
        )
        .await,
        Some(2)
    );
    let got = batch(
        &db,
        doc! {"find": "c", "filter": {"a": 1, "$text": {"$search": "perros"}}},
    )
    .await;
    assert_eq!(ids(&got), vec![1]);
    // The wildcard text index covers every string field.
    db.run_command(
        doc! {"createIndexes": "w", "indexes": [{"key": {"$**": "text"}, "name": "all"}]},
    )
    .await
    .unwrap();
    db.collection::<Document>("w")
        .insert_many(vec![
            doc! {"_id": 1, "x": {"y": ["deep words"]}},
            doc! {"_id": 2, "z": "other"},
        ])
        .await
        .unwrap();
    let got = batch(
        &db,
        doc! {"find": "w", "filter": {"$text": {"$search": "word"}}},
    )
    .await;
    assert_eq!(ids(&got), vec![1]);
    // Dropped, the index takes `$text` with it.
    db.run_command(doc! {"dropIndexes": "w", "index": "all"})
        .await
        .unwrap();
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "w", "filter": {"$text": {"$search": "word"}}}
        )
        .await,
        Some(27)
    );
}

#[tokio::test]
async fn text_errors_and_hostile_input() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("texth");
    articles(&db).await;
    let q = doc! {"$search": "coffee"};
    for (cmd, code) in [
        (doc! {"find": "nothing", "filter": {"$text": q.clone()}}, 27),
        (
            doc! {"find": "articles", "filter": {"$and": [{"$text": q.clone()}, {"$text": q.clone()}]}},
            2,
        ),
        (
            doc! {"find": "articles", "filter": {"$nor": [{"$text": q.clone()}]}},
            2,
        ),
        (
            doc! {"find": "articles", "filter": {"a": {"$elemMatch": {"$text": q.clone()}}}},
            2,
        ),
        (doc! {"find": "articles", "filter": {"$text": "coffee"}}, 2),
        (
            doc! {"find": "articles", "filter": {"$text": {"$search": 1}}},
            14,
        ),
        (
            doc! {"find": "articles", "filter": {"$text": {"$search": "x", "$language": "klingon"}}},
            2,
        ),
        (
            doc! {"find": "articles", "filter": {"$text": {"$search": "x", "$caseSensitive": "yes"}}},
            14,
        ),
        (
            doc! {"find": "articles", "filter": {"$text": {"$search": "x", "$foo": 1}}},
            2,
        ),
        (
            doc! {"find": "articles", "projection": {"s": {"$meta": "textScore"}}},
            40218,
        ),
        (
            doc! {"find": "articles", "sort": {"s": {"$meta": "textScore"}}},
            40218,
        ),
        (
            doc! {"aggregate": "articles", "pipeline": [{"$match": {"views": 1}}, {"$match": {"$text": q.clone()}}], "cursor": {}},
            17313,
        ),
        (
            doc! {"aggregate": "articles", "pipeline": [{"$project": {"s": {"$meta": "textScore"}}}], "cursor": {}},
            40218,
        ),
        (doc! {"create": "v", "validator": {"$text": q.clone()}}, 2),
    ] {
        assert_eq!(common::code_of(&db, cmd.clone()).await, Some(code), "{cmd}");
    }
    // After `$group` the score is missing (new documents carry no
    // metadata), as in mongod.
    let got = batch(
        &db,
        doc! {"aggregate": "articles", "pipeline": [{"$match": {"$text": q.clone()}}, {"$group": {"_id": null}}, {"$project": {"s": {"$meta": "textScore"}}}], "cursor": {}},
    )
    .await;
    assert!(got.iter().all(|d| !d.contains_key("s")), "{got:?}");
    // Under `$or`, the other clauses need an index (MongoDB's planner: 291).
    let or = doc! {"find": "articles", "filter": {"$or": [{"$text": q.clone()}, {"views": 10}]}};
    assert_eq!(common::code_of(&db, or.clone()).await, Some(291));
    db.run_command(
        doc! {"createIndexes": "articles", "indexes": [{"key": {"views": 1}, "name": "views_1"}]},
    )
    .await
    .unwrap();
    let mut got = ids(&batch(&db, or).await);
    got.sort();
    assert_eq!(got, vec![1, 2, 7, 8]);
    // A `$pull` condition is no query: `$text` there is refused (2).
    db.run_command(
        doc! {"update": "articles", "updates": [{"q": {"_id": 1}, "u": {"$set": {"tags": ["x"]}}}]},
    )
    .await
    .unwrap();
    assert_eq!(
        common::code_of(&db, doc! {"update": "articles", "updates": [{"q": {"_id": 1}, "u": {"$pull": {"tags": {"$text": q.clone()}}}}]}).await,
        Some(2)
    );
    // Language fields: a document MongoDB could not index is refused.
    let c = db.collection::<Document>("articles");
    for (d, code) in [
        (
            doc! {"_id": 20, "subject": "x", "language": "klingon"},
            17262,
        ),
        (doc! {"_id": 21, "subject": "x", "language": 5}, 17261),
        (
            doc! {"_id": 22, "subject": "x", "language": {"a": 1}},
            17261,
        ),
        (
            doc! {"_id": 23, "subject": {"language": null, "s": "x"}},
            17261,
        ),
    ] {
        assert_eq!(
            common::code_of(&db, doc! {"insert": "articles", "documents": [d.clone()]}).await,
            Some(code),
            "{d}"
        );
    }
    assert_eq!(
        common::code_of(&db, doc! {"update": "articles", "updates": [{"q": {"_id": 1}, "u": {"$set": {"language": "xx"}}}]}).await,
        Some(17262)
    );
    c.insert_one(doc! {"_id": 24, "subject": "corriendo", "language": "es"})
        .await
        .unwrap();
    assert_eq!(
        text_ids(&db, doc! {"$search": "correr", "$language": "es"}).await,
        vec![24]
    );
    // An index build over documents it cannot index fails.
    db.collection::<Document>("bad")
        .insert_one(doc! {"t": "x", "language": "xx"})
        .await
        .unwrap();
    assert_eq!(
        common::code_of(
            &db,
            doc! {"createIndexes": "bad", "indexes": [{"key": {"t": "text"}, "name": "t"}]}
        )
        .await,
        Some(17262)
    );
    // 1 MB of search, 100,000 terms, odd Unicode: answered, never a crash.
    let big = "coffee ".repeat(150_000);
    assert_eq!(text_ids(&db, doc! {"$search": big}).await, vec![1, 2, 7]);
    let many: String = (0..100_000).map(|i| format!("t{i} ")).collect();
    assert_eq!(
        text_ids(&db, doc! {"$search": many + "cake"}).await,
        vec![3]
    );
    let phrases: String = (0..20_000).map(|i| format!("\"p{i}\" ")).collect();
    assert_eq!(
        text_ids(&db, doc! {"$search": phrases}).await,
        Vec::<i32>::new()
    );
    let odd = "\u{0301}\u{200d}👩‍👩‍👧 \"\"\"-- -\"ǅ\u{10ffff}\u{feff}";
    assert_eq!(
        text_ids(&db, doc! {"$search": odd}).await,
        Vec::<i32>::new()
    );
    let mut deep = doc! {"subject": "coffee deep"};
    for _ in 0..90 {
        deep = doc! {"subject": deep};
    }
    deep.insert("_id", 30);
    c.insert_one(deep).await.unwrap();
    // `subject.subject...` is not the indexed path `subject` (as MongoDB).
    assert_eq!(
        text_ids(&db, doc! {"$search": "deep"}).await,
        Vec::<i32>::new()
    );
    // The server still answers.
    db.run_command(doc! {"ping": 1}).await.unwrap();
}

/// A text index is branch state like any index: a branch forked before it
/// has no text index (27), a past point of the parent neither, and the
/// branch that has one answers `$text` from its own documents.
#[tokio::test]
async fn text_indexes_are_branch_state() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("tb");
    let admin = client.database("admin");
    db.collection::<Document>("c")
        .insert_many(vec![
            doc! {"_id": 1, "t": "green tea"},
            doc! {"_id": 2, "t": "black coffee"},
        ])
        .await
        .unwrap();
    let head = admin
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .expect("log info")
        .get_document("branch")
        .and_then(|b| b.get_i64("headSeq"))
        .expect("headSeq");
    admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .expect("branch");
    db.run_command(
        doc! {"createIndexes": "c", "indexes": [{"key": {"t": "text"}, "name": "t_text"}]},
    )
    .await
    .unwrap();
    let filter = doc! {"$text": {"$search": "tea"}};
    let got = batch(&db, doc! {"find": "c", "filter": filter.clone()}).await;
    assert_eq!(ids(&got), vec![1]);
    let dev = client.database("tb~dev");
    assert_eq!(
        common::code_of(&dev, doc! {"find": "c", "filter": filter.clone()}).await,
        Some(27)
    );
    let past = client.database(&format!("tb~main@{head}"));
    assert_eq!(
        common::code_of(&past, doc! {"find": "c", "filter": filter.clone()}).await,
        Some(27)
    );
    // The branch builds its own, over its own documents.
    dev.collection::<Document>("c")
        .insert_one(doc! {"_id": 3, "t": "mint tea"})
        .await
        .unwrap();
    dev.run_command(
        doc! {"createIndexes": "c", "indexes": [{"key": {"t": "text"}, "name": "t_text"}]},
    )
    .await
    .unwrap();
    let got = batch(&dev, doc! {"find": "c", "filter": filter}).await;
    assert_eq!(ids(&got), vec![1, 3]);
}

/// Words in several languages, cases and diacritics (stop words among
/// them), for the plan property below.
const WORDS: &[&str] = &[
    "coffee", "Coffees", "café", "Cafe", "CAFÉS", "leche", "Leches", "running", "runs", "the",
    "le", "été", "Été", "niño", "Niño", "crème", "shop", "shopping", "tea", "baking", "cakes",
    "maison", "maisons", "casa", "casas", "über", "naïve", "don't", "co-op",
];
const LANGUAGES: &[&str] = &["english", "french", "spanish", "none"];

/// A deterministic generator (xorshift), so a failing case is reproducible.
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
        let sep = if self.below(2) == 0 { " " } else { ", " };
        (0..n)
            .map(|_| self.pick(WORDS))
            .collect::<Vec<_>>()
            .join(sep)
    }
    fn document(&mut self, id: i32) -> Document {
        let mut d = doc! {"_id": id, "t": self.sentence(6)};
        if self.below(3) > 0 {
            d.insert("language", self.pick(LANGUAGES));
        }
        d
    }
    fn query(&mut self) -> Document {
        let mut parts = Vec::new();
        for _ in 0..1 + self.below(3) {
            parts.push(match self.below(6) {
                0 => format!("-{}", self.pick(WORDS)),
                1 => format!("\"{} {}\"", self.pick(WORDS), self.pick(WORDS)),
                _ => self.pick(WORDS).to_string(),
            });
        }
        let mut q = doc! {"$search": parts.join(" ")};
        if self.below(3) == 0 {
            q.insert("$language", self.pick(LANGUAGES));
        }
        if self.below(4) == 0 {
            q.insert("$caseSensitive", true);
        }
        if self.below(4) == 0 {
            q.insert("$diacriticSensitive", true);
        }
        q
    }
}

/// `(_id, score)` of a `$text` find, in `_id` order.
async fn scored(db: &Database, filter: Document) -> Vec<(i32, f64)> {
    let docs = batch(
        db,
        doc! {"find": "c", "filter": filter, "sort": {"_id": 1}, "batchSize": 10000,
        "projection": {"s": {"$meta": "textScore"}}},
    )
    .await;
    docs.iter()
        .map(|d| {
            (
                d.get_i32("_id").expect("an _id"),
                d.get_f64("s").expect("a score"),
            )
        })
        .collect()
}

async fn winning_stage(db: &Database, filter: Document) -> String {
    let e = db
        .run_command(doc! {"explain": {"find": "c", "filter": filter}})
        .await
        .expect("explain answers");
    e.get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .and_then(|w| w.get_str("stage"))
        .expect("a winning plan's stage")
        .to_string()
}

/// The index plan answers as the scan: for random queries, `{$text: q}`
/// (planned through the text index's term keys) and `{$or: [{$text: q},
/// {_id: <none>}]}` (a `$text` under `$or` is a collection scan that runs
/// the evaluator on every document) give the same documents and scores.
async fn plans_agree_with_the_scan(db: &Database, rng: &mut Rng, cases: usize) {
    let mut matched = 0;
    for _ in 0..cases {
        let q = rng.query();
        let indexed = scored(db, doc! {"$text": q.clone()}).await;
        let scan = scored(
            db,
            doc! {"$or": [{"$text": q.clone()}, {"_id": "no such document"}]},
        )
        .await;
        assert_eq!(indexed.len(), scan.len(), "{q}: {indexed:?} vs {scan:?}");
        for ((a, x), (b, y)) in indexed.iter().zip(&scan) {
            assert_eq!(a, b, "{q}");
            assert!((x - y).abs() < 1e-9, "{q}: {a} scores {x} vs {y}");
        }
        matched += indexed.len();
    }
    assert!(matched > 0, "the queries match something");
}

#[tokio::test]
async fn text_plans_agree_with_the_scan_on_every_branch_and_point() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("tp");
    let admin = client.database("admin");
    let c = db.collection::<Document>("c");
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let docs: Vec<Document> = (0..300).map(|i| rng.document(i)).collect();
    c.insert_many(docs).await.unwrap();
    db.run_command(doc! {"createIndexes": "c", "indexes": [
    {"key": {"t": "text"}, "name": "t_text", "weights": {"t": 3}}]})
        .await
        .unwrap();
    assert_eq!(
        winning_stage(&db, doc! {"$text": {"$search": "coffee"}}).await,
        "TEXT_MATCH"
    );
    assert_eq!(
        winning_stage(
            &db,
            doc! {"$or": [{"$text": {"$search": "coffee"}}, {"_id": "none"}]}
        )
        .await,
        "COLLSCAN"
    );
    plans_agree_with_the_scan(&db, &mut rng, 60).await;

    // A past point holds the index and the documents of then.
    let head = admin
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .unwrap()
        .get_document("branch")
        .and_then(|b| b.get_i64("headSeq"))
        .unwrap();
    admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .unwrap();
    let more: Vec<Document> = (300..400).map(|i| rng.document(i)).collect();
    c.insert_many(more).await.unwrap();
    c.delete_many(doc! {"_id": {"$lt": 50}}).await.unwrap();
    c.update_many(doc! {"_id": {"$lt": 120}}, doc! {"$set": {"t": "tea shop"}})
        .await
        .unwrap();
    plans_agree_with_the_scan(&db, &mut rng, 30).await;
    let past = client.database(&format!("tp~main@{head}"));
    assert_eq!(
        scored(&past, doc! {"$text": {"$search": "tea"}})
            .await
            .len(),
        scored(
            &past,
            doc! {"$or": [{"$text": {"$search": "tea"}}, {"_id": 0.5}]}
        )
        .await
        .len()
    );
    plans_agree_with_the_scan(&past, &mut rng, 30).await;

    // A forked branch keys its own writes.
    let dev = client.database("tp~dev");
    let dc = dev.collection::<Document>("c");
    dc.insert_many((1000..1100).map(|i| rng.document(i)).collect::<Vec<_>>())
        .await
        .unwrap();
    dc.update_many(
        doc! {"_id": {"$gte": 200}},
        doc! {"$set": {"t": "Cafés crème"}},
    )
    .await
    .unwrap();
    plans_agree_with_the_scan(&dev, &mut rng, 30).await;
    let got = scored(&dev, doc! {"$text": {"$search": "creme"}}).await;
    assert!(got.iter().any(|(id, _)| *id == 1099) || got.iter().any(|(id, _)| *id == 250));
}

#[tokio::test]
async fn text_plans_take_hostile_queries_and_documents() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("th");
    let c = db.collection::<Document>("c");
    db.run_command(doc! {"createIndexes": "c", "indexes": [
    {"key": {"k": 1, "t": "text"}, "name": "k_t_text"}]})
        .await
        .unwrap();
    // A 1 MB string: each term keyed once (a bounded key set).
    let big: String = (0..200_000).map(|i| format!("w{} ", i % 20_000)).collect();
    assert!(big.len() > 1_000_000);
    let long_term = "x".repeat(10_000);
    c.insert_many(vec![
        doc! {"_id": 1, "k": 1, "t": big},
        doc! {"_id": 2, "k": 1, "t": format!("{long_term} tea")},
        doc! {"_id": 3, "k": 2, "t": "tea"},
    ])
    .await
    .unwrap();
    let find = |filter: Document| {
        let db = db.clone();
        async move {
            let mut got = ids(&batch(&db, doc! {"find": "c", "filter": filter}).await);
            got.sort();
            got
        }
    };
    assert_eq!(
        find(doc! {"k": 1, "$text": {"$search": "w19999"}}).await,
        vec![1]
    );
    assert_eq!(
        find(doc! {"k": 1, "$text": {"$search": long_term.clone()}}).await,
        vec![2]
    );
    assert_eq!(
        find(doc! {"k": {"$in": [1, 2]}, "$text": {"$search": "tea"}}).await,
        vec![2, 3]
    );
    // An aggregation's first `$match` is planned the same way.
    let agg = batch(
        &db,
        doc! {"aggregate": "c", "cursor": {}, "pipeline": [
        {"$match": {"k": {"$in": [1, 2]}, "$text": {"$search": "tea"}}}, {"$sort": {"_id": 1}}]},
    )
    .await;
    assert_eq!(ids(&agg), vec![2, 3]);
    let e = db
        .run_command(
            doc! {"explain": {"aggregate": "c", "cursor": {}, "pipeline": [
            {"$match": {"k": 1, "$text": {"$search": "tea"}}}]}},
        )
        .await
        .unwrap();
    assert_eq!(
        e.get_document("queryPlanner")
            .and_then(|q| q.get_document("winningPlan"))
            .and_then(|w| w.get_str("stage"))
            .unwrap(),
        "TEXT_MATCH",
        "{e}"
    );
    // Only negations: nothing, as MongoDB.
    assert_eq!(
        find(doc! {"k": 1, "$text": {"$search": "-tea"}}).await,
        Vec::<i32>::new()
    );
    // 100,000 terms: more intervals than a plan takes, so a scan answers.
    let many: String = (0..100_000).map(|i| format!("q{i} ")).collect();
    assert_eq!(
        find(doc! {"k": 1, "$text": {"$search": many.clone()}}).await,
        Vec::<i32>::new()
    );
    let with_tea = format!("{many} tea");
    assert_eq!(
        find(doc! {"k": 1, "$text": {"$search": with_tea}}).await,
        vec![2]
    );
    // A prefix field needs equality (MongoDB's error).
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "c", "filter": {"$text": {"$search": "tea"}}}
        )
        .await,
        Some(2)
    );
    let e = db
        .run_command(
            doc! {"explain": {"find": "c", "filter": {"k": 1, "$text": {"$search": "tea cake"}}}},
        )
        .await
        .unwrap();
    let w = e
        .get_document("queryPlanner")
        .unwrap()
        .get_document("winningPlan")
        .unwrap();
    assert_eq!(w.get_str("stage").unwrap(), "TEXT_MATCH");
    assert_eq!(w.get_document("indexPrefix").unwrap(), &doc! {"k": 1});
    let or = w.get_document("inputStage").unwrap();
    assert_eq!(or.get_str("stage").unwrap(), "TEXT_OR");
    assert_eq!(or.get_array("inputStages").unwrap().len(), 2);
}

const PYMONGO_SCENARIO: &str = include_str!("scenarios/text_search.py");
const MONGOOSE_SCENARIO: &str = include_str!("scenarios/text_search.js");

/// pymongo's and mongoose's own helpers meet text indexes and `$text` as on
/// MongoDB (each script asserts and prints OK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_and_mongoose_text_search() {
    let (s, _d, _client) = common::standalone().await;
    let uri = s.uri();
    let (py, node) = tokio::task::spawn_blocking(move || {
        let py = run_python(PYMONGO_SCENARIO, &[&uri, "pytext"])?;
        let node = run_node(
            MONGOOSE_SCENARIO,
            &[("ARGON_URI", &uri), ("ARGON_DB", "nodetext")],
        )?;
        anyhow::Ok((py, node))
    })
    .await
    .expect("the clients run")
    .expect("the scenarios pass");
    assert_eq!(py.trim().lines().last(), Some("OK"), "pymongo: {py}");
    assert_eq!(node.trim().lines().last(), Some("OK"), "mongoose: {node}");
}
