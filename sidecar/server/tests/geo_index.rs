//! Index-backed geo plans against the real binary: the same random
//! queries on a collection with a 2dsphere (or 2d) index and on an
//! unindexed twin holding the same documents give the same documents;
//! `$near` with a limit (the index's growing rings) gives the same order
//! as `$near` without one (every document measured). Also after updates
//! that move points and deletes, at a past point and on a forked branch,
//! and for hostile regions (huge polygons, radii past π, exploding
//! coverings), which stay bounded and exact.

use crate::common;

use bson::{Bson, Document, doc};
use mongodb::Database;

/// A small deterministic generator (xorshift64*): the test is repeatable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn pick(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// A longitude/latitude, often near a pole, the antimeridian or a
    /// previous point.
    fn lng_lat(&mut self, previous: &[(f64, f64)]) -> (f64, f64) {
        match self.pick(6) {
            0 => (self.range(-180.0, 180.0), self.range(88.5, 90.0)),
            1 => (self.range(-180.0, 180.0), self.range(-90.0, -88.5)),
            2 => (
                if self.pick(2) == 0 {
                    self.range(179.0, 180.0)
                } else {
                    self.range(-180.0, -179.0)
                },
                self.range(-60.0, 60.0),
            ),
            3 if !previous.is_empty() => previous[self.pick(previous.len())],
            _ => (self.range(-180.0, 180.0), self.range(-90.0, 90.0)),
        }
    }
}

fn point(p: (f64, f64)) -> Document {
    doc! {"type": "Point", "coordinates": [p.0, p.1]}
}

/// A square ring around a centre moved away from the edges of the
/// longitude/latitude range (GeoJSON positions must stay in range).
fn square(c: (f64, f64), half: f64) -> Vec<Bson> {
    let (x, y) = (
        c.0.clamp(-180.0 + half, 180.0 - half),
        c.1.clamp(-89.0 + half, 89.0 - half),
    );
    [
        (x - half, y - half),
        (x + half, y - half),
        (x + half, y + half),
        (x - half, y + half),
        (x - half, y - half),
    ]
    .iter()
    .map(|(a, b)| Bson::Array(vec![Bson::Double(*a), Bson::Double(*b)]))
    .collect()
}

fn polygon(c: (f64, f64), half: f64) -> Document {
    doc! {"type": "Polygon", "coordinates": [square(c, half)]}
}

fn line(a: (f64, f64), b: (f64, f64)) -> Document {
    doc! {"type": "LineString", "coordinates": [[a.0, a.1], [b.0, b.1]]}
}

/// Random documents: points (with duplicates), small polygons and lines,
/// a few without a location.
fn documents(rng: &mut Rng, n: usize, first_id: i64) -> Vec<Document> {
    let mut seen = Vec::new();
    (0..n)
        .map(|i| {
            let id = first_id + i as i64;
            let p = rng.lng_lat(&seen);
            seen.push(p);
            let loc = match rng.pick(10) {
                0..=5 => Bson::Document(point(p)),
                6 => Bson::Document(polygon(p, rng.range(0.01, 0.5))),
                7 => {
                    let q = (
                        (p.0 + rng.range(-0.5, 0.5)).clamp(-180.0, 180.0),
                        (p.1 + rng.range(-0.5, 0.5)).clamp(-90.0, 90.0),
                    );
                    if q == p {
                        Bson::Document(point(p))
                    } else {
                        Bson::Document(line(p, q))
                    }
                }
                8 => Bson::Array(vec![Bson::Double(p.0), Bson::Double(p.1)]),
                _ => return doc! {"_id": id, "other": 1},
            };
            doc! {"_id": id, "loc": loc, "flat": [p.0, p.1]}
        })
        .collect()
}

/// The documents a find returns (every batch), as `_id`s in reply order.
async fn ids(db: &Database, coll: &str, filter: Document, limit: i64) -> Vec<i64> {
    let reply = db
        .run_command(
            doc! {"find": coll, "filter": filter.clone(), "limit": limit, "batchSize": 100_000},
        )
        .await
        .unwrap_or_else(|e| panic!("{filter}: {e}"));
    let cursor = reply.get_document("cursor").expect("a cursor");
    assert_eq!(cursor.get_i64("id").expect("a cursor id"), 0, "one batch");
    cursor
        .get_array("firstBatch")
        .expect("a first batch")
        .iter()
        .map(|d| {
            d.as_document()
                .and_then(|d| d.get_i64("_id").ok())
                .expect("an Int64 _id")
        })
        .collect()
}

async fn same_set(db: &Database, filter: Document) {
    let mut a = ids(db, "idx", filter.clone(), 0).await;
    let mut b = ids(db, "twin", filter.clone(), 0).await;
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "{filter}");
}

/// `$near` with a limit (the index's rings) against `$near` without one
/// (every document measured and sorted), cut to the limit.
async fn same_near(db: &Database, filter: Document, limit: i64) {
    let ringed = ids(db, "idx", filter.clone(), limit).await;
    let mut all = ids(db, "idx", filter.clone(), 0).await;
    all.truncate(limit as usize);
    assert_eq!(ringed, all, "{filter} limit {limit}");
}

fn random_region(rng: &mut Rng) -> Document {
    let c = rng.lng_lat(&[]);
    match rng.pick(4) {
        0 => doc! {"loc": {"$geoWithin": {"$centerSphere": [[c.0, c.1], rng.range(0.0, 0.6)]}}},
        1 => doc! {"loc": {"$geoWithin": {"$geometry": polygon(c, rng.range(0.1, 20.0))}}},
        2 => doc! {"loc": {"$geoIntersects": {"$geometry": polygon(c, rng.range(0.1, 10.0))}}},
        _ => {
            let q = (
                (c.0 + rng.range(-5.0, 5.0)).clamp(-180.0, 180.0),
                (c.1 + rng.range(-5.0, 5.0)).clamp(-90.0, 90.0),
            );
            doc! {"loc": {"$geoIntersects": {"$geometry": line(c, q)}}}
        }
    }
}

fn random_flat_region(rng: &mut Rng) -> Document {
    let (x, y) = (rng.range(-180.0, 180.0), rng.range(-90.0, 90.0));
    let r = rng.range(0.0, 30.0);
    match rng.pick(3) {
        0 => doc! {"flat": {"$geoWithin": {"$box": [[x - r, y - r], [x + r, y + r / 2.0]]}}},
        1 => doc! {"flat": {"$geoWithin": {"$center": [[x, y], r]}}},
        _ => doc! {"flat": {"$geoWithin": {"$polygon": [[x, y], [x + r, y], [x, y + r]]}}},
    }
}

fn random_near(rng: &mut Rng) -> Document {
    let c = rng.lng_lat(&[]);
    let mut near = doc! {"$geometry": point(c)};
    match rng.pick(4) {
        0 => {}
        1 => {
            near.insert("$maxDistance", rng.range(0.0, 3_000_000.0));
        }
        2 => {
            near.insert("$minDistance", rng.range(0.0, 2_000_000.0));
        }
        _ => {
            let min = rng.range(0.0, 1_000_000.0);
            near.insert("$minDistance", min);
            near.insert("$maxDistance", min + rng.range(0.0, 5_000_000.0));
        }
    }
    if rng.pick(3) == 0 {
        doc! {"loc": {"$nearSphere": [c.0, c.1], "$maxDistance": rng.range(0.0, 1.0)}}
    } else {
        doc! {"loc": {"$near": near}}
    }
}

fn random_flat_near(rng: &mut Rng) -> Document {
    let (x, y) = (rng.range(-180.0, 180.0), rng.range(-90.0, 90.0));
    if rng.pick(2) == 0 {
        doc! {"flat": {"$near": [x, y]}}
    } else {
        doc! {"flat": {"$near": [x, y], "$maxDistance": rng.range(0.0, 40.0)}}
    }
}

/// Every comparison, on one database view (head, a past point, a branch).
async fn compare_all(db: &Database, rng: &mut Rng, rounds: usize) {
    for _ in 0..rounds {
        same_set(db, random_region(rng)).await;
        same_set(db, random_flat_region(rng)).await;
        let limit = [1, 3, 10, 40][rng.pick(4)];
        same_near(db, random_near(rng), limit).await;
        same_near(db, random_flat_near(rng), limit).await;
    }
}

async fn create_indexes(db: &Database) {
    db.run_command(doc! {"createIndexes": "idx", "indexes": [
        {"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"},
        {"key": {"flat": "2d"}, "name": "flat_2d"},
    ]})
    .await
    .expect("geo indexes");
    // The twin needs the 2d and 2dsphere indexes only for `$near`, which
    // is compared on `idx` alone: it stays unindexed.
}

#[tokio::test]
async fn index_plans_return_what_a_scan_returns() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("gi");
    let admin = client.database("admin");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Half the data before the index (built over existing documents), half after.
    let before = documents(&mut rng, 300, 0);
    let after = documents(&mut rng, 300, 300);
    for coll in ["idx", "twin"] {
        db.collection::<Document>(coll)
            .insert_many(before.clone())
            .await
            .unwrap();
    }
    create_indexes(&db).await;
    for coll in ["idx", "twin"] {
        db.collection::<Document>(coll)
            .insert_many(after.clone())
            .await
            .unwrap();
    }
    compare_all(&db, &mut rng, 40).await;

    let head = admin
        .run_command(doc! {"argonLogInfo": "main"})
        .await
        .unwrap()
        .get_document("branch")
        .and_then(|b| b.get_i64("headSeq"))
        .unwrap();

    // Updates moving points (into other cells) and deletes.
    for id in (0..600).step_by(7) {
        let p = rng.lng_lat(&[]);
        for coll in ["idx", "twin"] {
            db.collection::<Document>(coll)
                .update_one(
                    doc! {"_id": id},
                    doc! {"$set": {"loc": point(p), "flat": [p.0, p.1]}},
                )
                .await
                .unwrap();
        }
    }
    for coll in ["idx", "twin"] {
        db.collection::<Document>(coll)
            .delete_many(doc! {"_id": {"$mod": [11, 3]}})
            .await
            .unwrap();
    }
    compare_all(&db, &mut rng, 25).await;

    // The state before the updates, read at that past point.
    let past = client.database(&format!("gi~main@{head}"));
    compare_all(&past, &mut rng, 15).await;

    // A branch forked now, written on its own.
    admin
        .run_command(doc! {"argonCreateBranch": "dev", "from": "main"})
        .await
        .expect("branch");
    let dev = client.database("gi~dev");
    let more = documents(&mut rng, 100, 1_000);
    for coll in ["idx", "twin"] {
        dev.collection::<Document>(coll)
            .insert_many(more.clone())
            .await
            .unwrap();
    }
    compare_all(&dev, &mut rng, 15).await;
}

fn winning(explained: &Document) -> Document {
    explained
        .get_document("queryPlanner")
        .and_then(|q| q.get_document("winningPlan"))
        .expect("a winning plan")
        .clone()
}

#[tokio::test]
async fn explain_names_geo_stages_and_hostile_regions_stay_bounded() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("gh");
    let mut rng = Rng(7);
    let docs = documents(&mut rng, 300, 0);
    for coll in ["idx", "twin"] {
        db.collection::<Document>(coll)
            .insert_many(docs.clone())
            .await
            .unwrap();
    }
    create_indexes(&db).await;

    let within = doc! {"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 0.3]}}};
    let plan = winning(
        &db.run_command(doc! {"explain": {"find": "idx", "filter": within.clone()}})
            .await
            .unwrap(),
    );
    assert_eq!(plan.get_str("stage").unwrap(), "FETCH", "{plan}");
    let ixscan = plan.get_document("inputStage").unwrap();
    assert_eq!(ixscan.get_str("stage").unwrap(), "IXSCAN");
    assert_eq!(ixscan.get_str("indexName").unwrap(), "loc_2dsphere");
    let box_plan = winning(
        &db.run_command(doc! {"explain": {"find": "idx", "filter": {"flat": {"$geoWithin": {"$box": [[0, 0], [5, 5]]}}}}})
            .await
            .unwrap(),
    );
    assert_eq!(
        box_plan
            .get_document("inputStage")
            .unwrap()
            .get_str("indexName")
            .unwrap(),
        "flat_2d"
    );
    let near = winning(
        &db.run_command(doc! {"explain": {"find": "idx", "filter": {"loc": {"$near": {"$geometry": point((0.0, 0.0))}}}, "limit": 3}})
            .await
            .unwrap(),
    );
    assert_eq!(
        near.get_str("stage").unwrap(),
        "GEO_NEAR_2DSPHERE",
        "{near}"
    );
    assert_eq!(near.get_str("indexName").unwrap(), "loc_2dsphere");
    let flat_near = winning(
        &db.run_command(doc! {"explain": {"find": "idx", "filter": {"flat": {"$near": [0, 0]}}}})
            .await
            .unwrap(),
    );
    assert_eq!(flat_near.get_str("stage").unwrap(), "GEO_NEAR_2D");
    // The unindexed twin scans.
    let scan = winning(
        &db.run_command(doc! {"explain": {"find": "twin", "filter": within}})
            .await
            .unwrap(),
    );
    assert_eq!(scan.get_str("stage").unwrap(), "COLLSCAN");
    // A hint of the geo index is that scan; `$natural` still scans.
    let hinted = winning(
        &db.run_command(doc! {"explain": {"find": "idx", "filter": {"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 0.3]}}}, "hint": "loc_2dsphere"}})
            .await
            .unwrap(),
    );
    assert_eq!(hinted.get_str("stage").unwrap(), "FETCH");
    let natural = winning(
        &db.run_command(doc! {"explain": {"find": "idx", "filter": {"loc": {"$geoWithin": {"$centerSphere": [[0, 0], 0.3]}}}, "hint": {"$natural": 1}}})
            .await
            .unwrap(),
    );
    assert_eq!(natural.get_str("stage").unwrap(), "COLLSCAN");

    // Hostile regions: answered, bounded, and equal to the scan.
    let huge_polygon: Vec<Bson> = (0..100_000)
        .map(|i| {
            let a = f64::from(i) / 100_000.0 * std::f64::consts::TAU;
            Bson::Array(vec![
                Bson::Double(40.0 * a.cos()),
                Bson::Double(40.0 * a.sin()),
            ])
        })
        .collect();
    same_set(
        &db,
        doc! {"flat": {"$geoWithin": {"$polygon": huge_polygon}}},
    )
    .await;
    same_set(
        &db,
        doc! {"loc": {"$geoWithin": {"$centerSphere": [[10, 10], 10.0]}}},
    )
    .await;
    same_set(
        &db,
        doc! {"flat": {"$geoWithin": {"$box": [[-1e300, -1e300], [1e300, 1e300]]}}},
    )
    .await;
    // A scattered multipoint: its covering is the bounded one of its cap.
    let scattered: Vec<Bson> = (0..10_000)
        .map(|_| {
            let p = rng.lng_lat(&[]);
            Bson::Array(vec![Bson::Double(p.0), Bson::Double(p.1)])
        })
        .collect();
    same_set(
        &db,
        doc! {"loc": {"$geoIntersects": {"$geometry": {"type": "MultiPoint", "coordinates": scattered}}}},
    )
    .await;
    for bad in [f64::NAN, -1.0] {
        let filter = doc! {"loc": {"$near": {"$geometry": point((0.0, 0.0)), "$maxDistance": bad}}};
        assert_eq!(
            common::code_of(&db, doc! {"find": "idx", "filter": filter, "limit": 3}).await,
            Some(2)
        );
    }
    same_near(
        &db,
        doc! {"loc": {"$near": {"$geometry": point((0.0, 0.0)), "$maxDistance": 1e300}}},
        5,
    )
    .await;
    same_near(
        &db,
        doc! {"loc": {"$near": {"$geometry": point((0.0, 0.0)), "$minDistance": 1e300}}},
        5,
    )
    .await;
}
