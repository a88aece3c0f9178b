//! Geospatial queries and indexes against the real binary through the
//! Rust driver: 2dsphere and 2d indexes as MongoDB stores them, invalid
//! geometry refused at every write path (16755...), `$near`/`$nearSphere`
//! ordered by distance, `$geoWithin`/`$geoIntersects` with and without an
//! index, the `$geoNear` stage, and hostile input refused with MongoDB's
//! codes. Expected results come from known city coordinates and a
//! distance formula written here (the spherical law of cosines), not from
//! the server's own code.

use crate::common;

use bson::{Bson, Document, doc};
use common::sidecar::Sidecar;
use mongodb::Database;

const EARTH_RADIUS_METERS: f64 = 6_378_100.0;

/// Every document of a command's cursor (first batch and getMores).
async fn all(db: &Database, coll: &str, cmd: Document) -> Vec<Document> {
    let reply = db.run_command(cmd.clone()).await.unwrap_or_else(|e| {
        let shown: String = cmd.to_string().chars().take(300).collect();
        let why: String = e.to_string().chars().take(600).collect();
        panic!("{shown}: {why}")
    });
    let cursor = reply.get_document("cursor").expect("a cursor");
    let mut out: Vec<Document> = cursor
        .get_array("firstBatch")
        .expect("a first batch")
        .iter()
        .map(|d| d.as_document().expect("a document").clone())
        .collect();
    let mut id = cursor.get_i64("id").expect("a cursor id");
    while id != 0 {
        let more = db
            .run_command(doc! {"getMore": id, "collection": coll, "batchSize": 3})
            .await
            .expect("getMore");
        let c = more.get_document("cursor").expect("a cursor");
        out.extend(
            c.get_array("nextBatch")
                .expect("a next batch")
                .iter()
                .map(|d| d.as_document().expect("a document").clone()),
        );
        id = c.get_i64("id").expect("a cursor id");
    }
    out
}

fn names(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .map(|d| d.get_str("_id").expect("a name").to_owned())
        .collect()
}

/// Cities and their longitude/latitude.
const CITIES: &[(&str, f64, f64)] = &[
    ("new-york", -73.9857, 40.7484),
    ("philadelphia", -75.1652, 39.9526),
    ("boston", -71.0589, 42.3601),
    ("washington", -77.0369, 38.9072),
    ("london", -0.1278, 51.5074),
    ("paris", 2.3522, 48.8566),
    ("tokyo", 139.6917, 35.6895),
    ("sydney", 151.2093, -33.8688),
    ("suva", 178.4419, -18.1416),
    ("apia", -171.7513, -13.8333),
    ("longyearbyen", 15.6356, 78.2232),
];

/// Great-circle distance by the spherical law of cosines (a different
/// formula from the server's), in metres.
fn distance(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (l1, p1, l2, p2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let c = p1.sin() * p2.sin() + p1.cos() * p2.cos() * (l2 - l1).cos();
    c.clamp(-1.0, 1.0).acos() * EARTH_RADIUS_METERS
}

fn city(name: &str) -> (f64, f64) {
    CITIES
        .iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1, c.2))
        .expect("a known city")
}

/// Cities within `max` metres of `from`, nearest first, by this file's
/// formula.
fn expected_near(from: (f64, f64), max: f64) -> Vec<String> {
    let mut near: Vec<(f64, &str)> = CITIES
        .iter()
        .map(|c| (distance(from, (c.1, c.2)), c.0))
        .filter(|(d, _)| *d <= max)
        .collect();
    near.sort_by(|a, b| a.0.total_cmp(&b.0));
    near.into_iter().map(|(_, n)| n.to_owned()).collect()
}

async fn load_cities(db: &Database, coll: &str) {
    let docs: Vec<Document> = CITIES
        .iter()
        .map(|(n, lng, lat)| doc! {"_id": *n, "loc": {"type": "Point", "coordinates": [*lng, *lat]}, "legacy": [*lng, *lat]})
        .collect();
    db.collection::<Document>(coll)
        .insert_many(docs)
        .await
        .expect("the cities load");
}

fn point(c: (f64, f64)) -> Document {
    doc! {"type": "Point", "coordinates": [c.0, c.1]}
}

#[tokio::test]
async fn near_within_and_intersects_with_a_2dsphere_index() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("geo");
    load_cities(&db, "cities").await;
    let made = db
        .run_command(doc! {"createIndexes": "cities", "indexes": [{"key": {"loc": "2dsphere"}, "name": "loc_2dsphere"}]})
        .await
        .unwrap();
    assert_eq!(made.get_i32("numIndexesAfter").unwrap(), 2);
    let listed = all(&db, "cities", doc! {"listIndexes": "cities"}).await;
    assert_eq!(
        listed[1],
        doc! {"v": 2, "key": {"loc": "2dsphere"}, "name": "loc_2dsphere", "2dsphereIndexVersion": 3}
    );

    // $near from New York within 400 km: nearest first.
    let ny = city("new-york");
    for max in [150_000.0, 400_000.0, 6_000_000.0] {
        let got = all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": {"loc": {"$near": {"$geometry": point(ny), "$maxDistance": max}}}, "batchSize": 2},
        )
        .await;
        assert_eq!(names(&got), expected_near(ny, max), "within {max} m");
    }
    // $minDistance too, and a limit (the nearest few).
    let got = all(
        &db,
        "cities",
        doc! {"find": "cities", "filter": {"loc": {"$nearSphere": {"$geometry": point(ny), "$minDistance": 200_000.0, "$maxDistance": 400_000.0}}}},
    )
    .await;
    let want: Vec<String> = expected_near(ny, 400_000.0)
        .into_iter()
        .filter(|n| distance(ny, city(n)) >= 200_000.0)
        .collect();
    assert_eq!(names(&got), want);
    let got = all(
        &db,
        "cities",
        doc! {"find": "cities", "filter": {"loc": {"$near": {"$geometry": point(city("london"))}}}, "limit": 3},
    )
    .await;
    assert_eq!(
        names(&got),
        expected_near(city("london"), f64::INFINITY)[..3]
    );
    // Legacy pair with $nearSphere: radians.
    let radians = 400_000.0 / EARTH_RADIUS_METERS;
    let got = all(
        &db,
        "cities",
        doc! {"find": "cities", "filter": {"loc": {"$nearSphere": [ny.0, ny.1], "$maxDistance": radians}}},
    )
    .await;
    assert_eq!(names(&got), expected_near(ny, 400_000.0));
    // count takes $near (it counts what it finds).
    let n = db
        .run_command(doc! {"count": "cities", "query": {"loc": {"$near": {"$geometry": point(ny), "$maxDistance": 400_000.0}}}})
        .await
        .unwrap();
    assert_eq!(
        n.get_i32("n").unwrap() as usize,
        expected_near(ny, 400_000.0).len()
    );

    // $geoWithin a polygon round the US north-east (no order asked).
    let ne = doc! {"type": "Polygon", "coordinates": [[[-80.0, 37.0], [-69.0, 37.0], [-69.0, 44.0], [-80.0, 44.0], [-80.0, 37.0]]]};
    let mut got = names(
        &all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": {"loc": {"$geoWithin": {"$geometry": ne.clone()}}}},
        )
        .await,
    );
    got.sort();
    assert_eq!(got, ["boston", "new-york", "philadelphia", "washington"]);
    // Across the antimeridian: Suva (178°E) and Apia (171°W), not Sydney.
    let pacific = doc! {"type": "Polygon", "coordinates": [[[175.0, -25.0], [-165.0, -25.0], [-165.0, -5.0], [175.0, -5.0], [175.0, -25.0]]]};
    let mut got = names(
        &all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": {"loc": {"$geoWithin": {"$geometry": pacific}}}},
        )
        .await,
    );
    got.sort();
    assert_eq!(got, ["apia", "suva"]);
    // Round the pole: Longyearbyen (78°N) only.
    let arctic = doc! {"type": "Polygon", "coordinates": [[[0.0, 70.0], [90.0, 70.0], [180.0, 70.0], [-90.0, 70.0], [0.0, 70.0]]]};
    let got = names(
        &all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": {"loc": {"$geoWithin": {"$geometry": arctic}}}},
        )
        .await,
    );
    assert_eq!(got, ["longyearbyen"]);
    // $centerSphere agrees with the distance formula.
    let mut got = names(&all(&db, "cities", doc! {"find": "cities", "filter": {"loc": {"$geoWithin": {"$centerSphere": [[ny.0, ny.1], radians]}}}}).await);
    got.sort();
    let mut want = expected_near(ny, 400_000.0);
    want.sort();
    assert_eq!(got, want);

    // $geoIntersects: a line from Philadelphia's west to Boston's east
    // crosses the north-east polygon stored as a document.
    let zones = db.collection::<Document>("zones");
    zones
        .insert_many(vec![
            doc! {"_id": "north-east", "area": ne.clone()},
            doc! {"_id": "pacific", "area": {"type": "Polygon", "coordinates": [[[175.0, -25.0], [-165.0, -25.0], [-165.0, -5.0], [175.0, -5.0], [175.0, -25.0]]]}},
        ])
        .await
        .unwrap();
    let line = doc! {"type": "LineString", "coordinates": [[-90.0, 40.0], [-60.0, 40.0]]};
    let got = names(
        &all(
            &db,
            "zones",
            doc! {"find": "zones", "filter": {"area": {"$geoIntersects": {"$geometry": line}}}},
        )
        .await,
    );
    assert_eq!(got, ["north-east"]);
    let got = names(&all(&db, "zones", doc! {"find": "zones", "filter": {"area": {"$geoIntersects": {"$geometry": point((180.0, -10.0))}}}}).await);
    assert_eq!(got, ["pacific"]);
    // Without an index, $geoWithin and $geoIntersects scan; $near is 291.
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "zones", "filter": {"area": {"$near": {"$geometry": point(ny)}}}}
        )
        .await,
        Some(291)
    );
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "cities", "filter": {"legacy": {"$near": [0, 0]}}}
        )
        .await,
        Some(291)
    );
    // $near in an aggregation $match (5626500), under $or (2).
    assert_eq!(
        common::code_of(&db, doc! {"aggregate": "cities", "pipeline": [{"$match": {"loc": {"$near": {"$geometry": point(ny)}}}}], "cursor": {}}).await,
        Some(5_626_500)
    );
    assert_eq!(
        common::code_of(&db, doc! {"find": "cities", "filter": {"$or": [{"loc": {"$near": {"$geometry": point(ny)}}}, {"_id": "x"}]}}).await,
        Some(2)
    );
    // An update with $near changes the nearest document.
    db.run_command(doc! {"update": "cities", "updates": [{"q": {"loc": {"$near": {"$geometry": point((-0.2, 51.4))}}}, "u": {"$set": {"nearest": true}}}]})
        .await
        .unwrap();
    let flagged = names(
        &all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": {"nearest": true}},
        )
        .await,
    );
    assert_eq!(flagged, ["london"]);
}

#[tokio::test]
async fn writes_under_geo_indexes_need_valid_locations() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("geo");
    db.run_command(doc! {"createIndexes": "places", "indexes": [{"key": {"loc": "2dsphere", "kind": 1}, "name": "loc", "2dsphereIndexVersion": 2}]})
        .await
        .unwrap();
    let c = db.collection::<Document>("places");
    // Missing, null and valid locations are fine.
    c.insert_many(vec![
        doc! {"_id": 1},
        doc! {"_id": 2, "loc": null},
        doc! {"_id": 3, "loc": {"type": "Point", "coordinates": [1, 2]}},
        doc! {"_id": 4, "loc": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}},
    ])
    .await
    .unwrap();
    let bad_geometries = [
        Bson::String("here".into()),
        bson::bson!({"type": "Point", "coordinates": [200, 0]}),
        bson::bson!({"type": "Point", "coordinates": [f64::NAN, 0]}),
        bson::bson!({"type": "Point"}),
        bson::bson!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}),
        bson::bson!({"type": "Polygon", "coordinates": [[[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]}),
        bson::bson!({"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection", "geometries": []}]}),
    ];
    for bad in &bad_geometries {
        // insert, update, replace, upsert, findAndModify, bulkWrite-style batch.
        assert_eq!(
            common::code_of(
                &db,
                doc! {"insert": "places", "documents": [{"_id": 10, "loc": bad.clone()}]}
            )
            .await,
            Some(16755),
            "{bad}"
        );
        assert_eq!(common::code_of(&db, doc! {"update": "places", "updates": [{"q": {"_id": 3}, "u": {"$set": {"loc": bad.clone()}}}]}).await, Some(16755));
        assert_eq!(
            common::code_of(
                &db,
                doc! {"update": "places", "updates": [{"q": {"_id": 3}, "u": {"loc": bad.clone()}}]}
            )
            .await,
            Some(16755)
        );
        assert_eq!(common::code_of(&db, doc! {"update": "places", "updates": [{"q": {"_id": 99}, "u": {"$set": {"loc": bad.clone()}}, "upsert": true}]}).await, Some(16755));
        assert_eq!(common::code_of(&db, doc! {"findAndModify": "places", "query": {"_id": 3}, "update": {"$set": {"loc": bad.clone()}}}).await, Some(16755));
    }
    // In a transaction too.
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    let e = c
        .insert_one(doc! {"_id": 11, "loc": [500, 500]})
        .session(&mut session)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("16755") || e.to_string().contains("Can't extract geo keys"),
        "{e}"
    );
    drop(session);
    let n = db.run_command(doc! {"count": "places"}).await.unwrap();
    assert_eq!(n.get_i32("n").unwrap(), 4);
    // An index over documents it cannot take fails to build, as MongoDB's.
    c.insert_one(doc! {"_id": 20, "spot": "nowhere"})
        .await
        .unwrap();
    assert_eq!(
        common::code_of(&db, doc! {"createIndexes": "places", "indexes": [{"key": {"spot": "2dsphere"}, "name": "spot"}]}).await,
        Some(16755)
    );

    // 2d: bounds and the legacy-pair rule.
    db.run_command(doc! {"createIndexes": "grid", "indexes": [{"key": {"p": "2d"}, "name": "p", "min": 0, "max": 100, "bits": 20}]})
        .await
        .unwrap();
    assert_eq!(
        common::code_of(&db, doc! {"insert": "grid", "documents": [{"p": [100, 5]}]}).await,
        Some(13027)
    );
    assert_eq!(
        common::code_of(&db, doc! {"insert": "grid", "documents": [{"p": "x"}]}).await,
        Some(16804)
    );
    assert_eq!(
        common::code_of(&db, doc! {"insert": "grid", "documents": [{"p": ["a", 1]}]}).await,
        Some(13026)
    );
    let g = db.collection::<Document>("grid");
    g.insert_many(vec![
        doc! {"_id": "a", "p": [10, 10]},
        doc! {"_id": "b", "p": [13, 14]},
        doc! {"_id": "c", "p": {"x": 11, "y": 10}},
        doc! {"_id": "d", "p": [50, 50]},
    ])
    .await
    .unwrap();
    // Flat distances from (10, 10): a 0, c 1, b 5, d 56.6.
    let got = names(
        &all(
            &db,
            "grid",
            doc! {"find": "grid", "filter": {"p": {"$near": [10, 10], "$maxDistance": 6}}},
        )
        .await,
    );
    assert_eq!(got, ["a", "c", "b"]);
    let mut got = names(
        &all(
            &db,
            "grid",
            doc! {"find": "grid", "filter": {"p": {"$geoWithin": {"$box": [[9, 9], [13, 14]]}}}},
        )
        .await,
    );
    got.sort();
    assert_eq!(got, ["a", "b", "c"]);
    let mut got = names(
        &all(
            &db,
            "grid",
            doc! {"find": "grid", "filter": {"p": {"$geoWithin": {"$center": [[10, 10], 1]}}}},
        )
        .await,
    );
    got.sort();
    assert_eq!(got, ["a", "c"]);
    let got = names(&all(&db, "grid", doc! {"find": "grid", "filter": {"p": {"$within": {"$polygon": [[40, 40], [60, 40], [50, 60]]}}}}).await);
    assert_eq!(got, ["d"]);

    // Spec errors as MongoDB's.
    for (spec, code) in [
        (doc! {"key": {"p": "2d"}, "name": "x", "bits": 0}, 72),
        (
            doc! {"key": {"p": "2d"}, "name": "x", "min": 10, "max": 0},
            72,
        ),
        (doc! {"key": {"a": 1, "p": "2d"}, "name": "x"}, 16801),
        (
            doc! {"key": {"p": "2dsphere"}, "name": "x", "2dsphereIndexVersion": 7},
            67,
        ),
        (
            doc! {"key": {"p": "geoHaystack", "a": 1}, "name": "x", "bucketSize": 1},
            67,
        ),
        (
            doc! {"key": {"p": "2dsphere"}, "name": "x", "unique": true},
            115,
        ),
    ] {
        assert_eq!(
            common::code_of(
                &db,
                doc! {"createIndexes": "specs", "indexes": [spec.clone()]}
            )
            .await,
            Some(code),
            "{spec}"
        );
    }
}

#[tokio::test]
async fn hostile_queries_are_refused_with_mongodb_codes() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("geo");
    load_cities(&db, "cities").await;
    db.run_command(
        doc! {"createIndexes": "cities", "indexes": [{"key": {"loc": "2dsphere"}, "name": "loc"}]},
    )
    .await
    .unwrap();
    let find = |filter: Document| doc! {"find": "cities", "filter": filter};
    for filter in [
        doc! {"loc": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}}},
        doc! {"loc": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [f64::NAN, 0], [1, 1], [0, 0]]]}}}},
        doc! {"loc": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [f64::INFINITY, 0], [1, 1], [0, 0]]]}}}},
        doc! {"loc": {"$geoWithin": {"$geometry": {"type": "Point", "coordinates": [0, 0]}}}},
        doc! {"loc": {"$geoWithin": {"$box": "x"}}},
        doc! {"loc": {"$geoWithin": {"$center": [[0, 0], -1]}}},
        doc! {"loc": {"$geoIntersects": {"$geometry": {"type": "GeometryCollection", "geometries": [{"type": "GeometryCollection", "geometries": []}]}}}},
        doc! {"loc": {"$geoIntersects": {"$geometry": {"type": "Point", "coordinates": [0, 91]}}}},
        doc! {"loc": {"$geoIntersects": 5}},
        doc! {"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": -1}}},
        doc! {"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$maxDistance": f64::NAN}}},
        doc! {"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$minDistance": "near"}}},
        doc! {"loc": {"$near": {"$geometry": {"type": "Point", "coordinates": [0, 0]}, "$bogus": 1}}},
        doc! {"loc": {"$maxDistance": 5}},
    ] {
        assert_eq!(
            common::code_of(&db, find(filter.clone())).await,
            Some(2),
            "{filter}"
        );
    }
    // A polygon of 200,000 vertices (a circle round New York, about 3 MB):
    // validated in linear time and answered.
    let n = 200_000;
    let ny = city("new-york");
    let mut ring: Vec<Bson> = (0..n)
        .map(|i| {
            let t = std::f64::consts::TAU * i as f64 / n as f64;
            Bson::Array(vec![
                Bson::Double(ny.0 + 2.0 * t.cos()),
                Bson::Double(ny.1 + 1.5 * t.sin()),
            ])
        })
        .collect();
    ring.push(ring[0].clone());
    let circle = doc! {"type": "Polygon", "coordinates": [ring]};
    let mut got = names(
        &all(
            &db,
            "cities",
            find(doc! {"loc": {"$geoWithin": {"$geometry": circle}}}),
        )
        .await,
    );
    // The 2dsphere index's plan returns cell order, as MongoDB's does.
    got.sort();
    assert_eq!(got, ["new-york", "philadelphia"]);
    // A server that answered all that still answers.
    db.run_command(doc! {"ping": 1}).await.unwrap();
}

#[tokio::test]
async fn geo_near_stage_orders_measures_and_refuses_as_mongodb() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("geo");
    load_cities(&db, "cities").await;
    // No geo index: 27.
    let stage = |spec: Document| doc! {"aggregate": "cities", "pipeline": [{"$geoNear": spec}], "cursor": {"batchSize": 2}};
    let paris = city("paris");
    assert_eq!(
        common::code_of(
            &db,
            stage(doc! {"near": point(paris), "distanceField": "d"})
        )
        .await,
        Some(27)
    );
    db.run_command(
        doc! {"createIndexes": "cities", "indexes": [{"key": {"loc": "2dsphere"}, "name": "loc"}]},
    )
    .await
    .unwrap();
    // Kilometres through distanceMultiplier, the location through
    // includeLocs, a query and a maximum.
    let got = all(
        &db,
        "cities",
        stage(doc! {"near": point(paris), "distanceField": "dist.km", "spherical": true, "maxDistance": 2_000_000.0,
            "distanceMultiplier": 0.001, "includeLocs": "at", "query": {"_id": {"$ne": "paris"}}}),
    )
    .await;
    let want: Vec<String> = expected_near(paris, 2_000_000.0)
        .into_iter()
        .filter(|n| n != "paris")
        .collect();
    assert_eq!(names(&got), want);
    for d in &got {
        let name = d.get_str("_id").unwrap();
        let km = d.get_document("dist").unwrap().get_f64("km").unwrap();
        let expected = distance(paris, city(name)) / 1000.0;
        assert!((km - expected).abs() < 0.01, "{name}: {km} vs {expected}");
        assert_eq!(
            d.get_document("at").unwrap(),
            d.get_document("loc").unwrap()
        );
    }
    // Legacy pair with spherical: radians; stages after it run on its output.
    let got = all(
        &db,
        "cities",
        doc! {"aggregate": "cities", "pipeline": [
            {"$geoNear": {"near": [paris.0, paris.1], "distanceField": "r", "spherical": true, "key": "loc"}},
            {"$limit": 2},
            {"$project": {"r": 1}}
        ], "cursor": {}},
    )
    .await;
    assert_eq!(names(&got), expected_near(paris, f64::INFINITY)[..2]);
    let london_r = got[1].get_f64("r").unwrap();
    assert!((london_r - distance(paris, city("london")) / EARTH_RADIUS_METERS).abs() < 1e-6);
    // Where MongoDB refuses it.
    for (cmd, code) in [
        (
            doc! {"aggregate": "cities", "pipeline": [{"$match": {}}, {"$geoNear": {"near": point(paris), "distanceField": "d"}}], "cursor": {}},
            40603,
        ),
        (stage(doc! {"near": point(paris)}), 2),
        (
            stage(doc! {"near": point(paris), "distanceField": "d", "maxDistance": -5}),
            2,
        ),
        (
            stage(doc! {"near": point(paris), "distanceField": "d", "unknown": 1}),
            40415,
        ),
        (
            stage(doc! {"near": point(paris), "distanceField": "d", "key": "nowhere"}),
            2,
        ),
        // A flat legacy query cannot use a 2dsphere index.
        (stage(doc! {"near": [0, 0], "distanceField": "d"}), 2),
    ] {
        assert_eq!(common::code_of(&db, cmd.clone()).await, Some(code), "{cmd}");
    }
    // Two 2dsphere indexes and no key: 27; with key: fine.
    db.run_command(doc! {"createIndexes": "cities", "indexes": [{"key": {"legacy": "2dsphere"}, "name": "legacy"}]})
        .await
        .unwrap();
    assert_eq!(
        common::code_of(
            &db,
            stage(doc! {"near": point(paris), "distanceField": "d"})
        )
        .await,
        Some(27)
    );
    let got = all(&db, "cities", stage(doc! {"near": point(paris), "distanceField": "d", "key": "legacy", "maxDistance": 400_000.0})).await;
    assert_eq!(names(&got), expected_near(paris, 400_000.0));
}

/// A geo index is branch state like any index: a branch forked before it
/// has none ($near is 291 there) and takes what the index would refuse; a
/// past point of the parent has none either.
#[tokio::test]
async fn geo_indexes_are_branch_state() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("gb");
    let admin = client.database("admin");
    load_cities(&db, "cities").await;
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
        doc! {"createIndexes": "cities", "indexes": [{"key": {"loc": "2dsphere"}, "name": "loc"}]},
    )
    .await
    .unwrap();
    let near = doc! {"find": "cities", "filter": {"loc": {"$near": {"$geometry": point(city("paris")), "$maxDistance": 400_000.0}}}};
    assert_eq!(
        names(&all(&db, "cities", near.clone()).await),
        expected_near(city("paris"), 400_000.0)
    );
    let dev = client.database("gb~dev");
    assert_eq!(common::code_of(&dev, near.clone()).await, Some(291));
    let past = client.database(&format!("gb~main@{head}"));
    assert_eq!(common::code_of(&past, near).await, Some(291));
    assert_eq!(
        common::code_of(
            &dev,
            doc! {"insert": "cities", "documents": [{"loc": "nowhere"}]}
        )
        .await,
        None
    );
    assert_eq!(
        common::code_of(
            &db,
            doc! {"insert": "cities", "documents": [{"loc": "nowhere"}]}
        )
        .await,
        Some(16755)
    );
}

const PYMONGO_SCENARIO: &str = include_str!("scenarios/geo.py");
const MONGOOSE_SCENARIO: &str = include_str!("scenarios/geo.js");

/// pymongo's and mongoose's own helpers meet geo indexes, `$near` and
/// `$geoNear` as on MongoDB (each script asserts and prints OK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymongo_and_mongoose_geo() {
    let (s, _d, _client) = common::standalone().await;
    let uri = s.uri();
    let (py, node) = tokio::task::spawn_blocking(move || {
        let py = argon_testkit::clients::run_python(PYMONGO_SCENARIO, &[&uri, "pygeo"])?;
        let node = argon_testkit::clients::run_node(
            MONGOOSE_SCENARIO,
            &[("ARGON_URI", &uri), ("ARGON_DB", "nodegeo")],
        )?;
        anyhow::Ok((py, node))
    })
    .await
    .expect("the clients run")
    .expect("the scenarios pass");
    assert_eq!(py.trim().lines().last(), Some("OK"), "pymongo: {py}");
    assert_eq!(node.trim().lines().last(), Some("OK"), "mongoose: {node}");
}

/// `{$meta: "geoNearDistance"}` and `"geoNearPoint"` after `$geoNear`: the
/// distance (times the multiplier) and the location, as MongoDB's metadata;
/// refused by name where Argon cannot give them.
#[tokio::test]
async fn geo_near_metadata_in_later_stages() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("geo");
    load_cities(&db, "cities").await;
    db.run_command(
        doc! {"createIndexes": "cities", "indexes": [{"key": {"loc": "2dsphere"}, "name": "loc"}]},
    )
    .await
    .unwrap();
    let paris = city("paris");
    let geo_near = doc! {"$geoNear": {"near": point(paris), "distanceField": "d", "includeLocs": "at", "distanceMultiplier": 0.001, "maxDistance": 400_000.0}};
    let got = all(
        &db,
        "cities",
        doc! {"aggregate": "cities", "pipeline": [
            geo_near.clone(),
            {"$match": {"_id": {"$ne": "paris"}}},
            {"$project": {"_id": 1, "km": {"$meta": "geoNearDistance"}, "where": {"$meta": "geoNearPoint"}}}
        ], "cursor": {}},
    )
    .await;
    let want: Vec<String> = expected_near(paris, 400_000.0)
        .into_iter()
        .filter(|n| n != "paris")
        .collect();
    assert_eq!(names(&got), want);
    for d in &got {
        let name = d.get_str("_id").unwrap();
        let km = d.get_f64("km").unwrap();
        assert!(
            (km - distance(paris, city(name)) / 1000.0).abs() < 0.01,
            "{d}"
        );
        let c = city(name);
        assert_eq!(d.get_document("where").unwrap(), &point(c), "{d}");
    }
    // Carried beside the document through a stage that reshapes it, and
    // there without `includeLocs` (mongod's `$geoNear` attaches both).
    let got = all(
        &db,
        "cities",
        doc! {"aggregate": "cities", "pipeline": [
            geo_near.clone(),
            {"$project": {"x": 1}},
            {"$addFields": {"km": {"$meta": "geoNearDistance"}}},
            {"$replaceRoot": {"newRoot": {"km": "$km", "p": {"$meta": "geoNearPoint"}}}},
        ], "cursor": {}},
    )
    .await;
    assert_eq!(got.len(), expected_near(paris, 400_000.0).len());
    for d in &got {
        let km = d.get_f64("km").unwrap();
        let p = d.get_document("p").unwrap();
        let name = CITIES
            .iter()
            .find(|c| &point(city(c.0)) == p)
            .map(|c| c.0)
            .unwrap_or_else(|| panic!("a city's point: {d}"));
        assert!(
            (km - distance(paris, city(name)) / 1000.0).abs() < 0.01,
            "{d}"
        );
    }
    let got = all(
        &db,
        "cities",
        doc! {"aggregate": "cities", "pipeline": [
            {"$geoNear": {"near": point(paris), "distanceField": "d"}},
            {"$limit": 1},
            {"$addFields": {"p": {"$meta": "geoNearPoint"}}},
        ], "cursor": {}},
    )
    .await;
    assert_eq!(got[0].get_document("p").unwrap(), &point(paris));
    // After `$group`: new documents, no metadata (missing, as mongod).
    let got = all(
        &db,
        "cities",
        doc! {"aggregate": "cities", "pipeline": [
            geo_near.clone(),
            {"$group": {"_id": null, "n": {"$sum": 1}}},
            {"$addFields": {"km": {"$meta": "geoNearDistance"}}},
        ], "cursor": {}},
    )
    .await;
    assert!(!got[0].contains_key("km"), "{got:?}");
}

/// `{$meta: "geoNearDistance"}` and `"geoNearPoint"` in find projections
/// under `$near`/`$nearSphere`: the distance in the query's units (metres
/// for a GeoJSON point, radians for a legacy `$nearSphere`, coordinate
/// units for a legacy `$near`) and the location as stored; without such a
/// query, MongoDB's 40218.
#[tokio::test]
async fn geo_near_metadata_in_find_projections() {
    let (_s, _d, client) = common::standalone().await;
    let db = client.database("geo");
    load_cities(&db, "cities").await;
    db.run_command(doc! {"createIndexes": "cities", "indexes": [
        {"key": {"loc": "2dsphere"}, "name": "loc"},
        {"key": {"legacy": "2d"}, "name": "legacy"},
    ]})
    .await
    .unwrap();
    let paris = city("paris");
    let metas = doc! {"m": {"$meta": "geoNearDistance"}, "p": {"$meta": "geoNearPoint"}};
    let flat = |a: (f64, f64), b: (f64, f64)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
    let radians = |a: (f64, f64), b: (f64, f64)| distance(a, b) / EARTH_RADIUS_METERS;
    type Measure = Box<dyn Fn((f64, f64), (f64, f64)) -> f64>;
    let cases: Vec<(Document, Measure, bool)> = vec![
        (
            doc! {"loc": {"$near": {"$geometry": point(paris), "$maxDistance": 6_500_000.0}}},
            Box::new(distance),
            true,
        ),
        (
            doc! {"legacy": {"$nearSphere": [paris.0, paris.1], "$maxDistance": 1.0}},
            Box::new(radians),
            false,
        ),
        (
            doc! {"legacy": {"$near": [paris.0, paris.1], "$maxDistance": 100.0}},
            Box::new(flat),
            false,
        ),
    ];
    for (filter, measure, geojson) in cases {
        let got = all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": filter.clone(), "projection": metas.clone(), "batchSize": 2},
        )
        .await;
        assert!(got.len() >= 3, "{filter}: {got:?}");
        let mut last = -1.0;
        for d in &got {
            let c = city(d.get_str("_id").unwrap());
            let m = d.get_f64("m").unwrap();
            let want = measure(paris, c);
            assert!(
                (m - want).abs() <= want.abs() * 1e-6 + 1e-9,
                "{filter} {d} want {want}"
            );
            assert!(m >= last, "nearest first: {got:?}");
            last = m;
            let p = d.get("p").unwrap();
            let stored = if geojson {
                Bson::Document(point(c))
            } else {
                bson::bson!([c.0, c.1])
            };
            assert_eq!(p, &stored, "{filter} {d}");
            // An exclusion projection: the whole document with them.
            assert!(d.contains_key("loc") && d.contains_key("legacy"), "{d}");
        }
        // In an inclusion projection, under a sort other than distance.
        let sorted = all(
            &db,
            "cities",
            doc! {"find": "cities", "filter": filter.clone(), "sort": {"_id": 1}, "projection": {"_id": 1, "m": {"$meta": "geoNearDistance"}}},
        )
        .await;
        assert_eq!(sorted.len(), got.len());
        let mut by_name = names(&got);
        by_name.sort();
        assert_eq!(names(&sorted), by_name);
        for d in &sorted {
            let c = city(d.get_str("_id").unwrap());
            assert_eq!(d.len(), 2, "{d}");
            let want = measure(paris, c);
            assert!((d.get_f64("m").unwrap() - want).abs() <= want.abs() * 1e-6 + 1e-9);
        }
    }
    // Without $near or $nearSphere the metadata does not exist.
    for (filter, meta) in [
        (doc! {}, "geoNearDistance"),
        (doc! {"_id": "paris"}, "geoNearPoint"),
        (
            doc! {"loc": {"$geoWithin": {"$centerSphere": [[paris.0, paris.1], 0.1]}}},
            "geoNearDistance",
        ),
    ] {
        assert_eq!(
            common::code_of(&db, doc! {"find": "cities", "filter": filter.clone(), "projection": {"x": {"$meta": meta}}}).await,
            Some(40218),
            "{filter} {meta}"
        );
    }
}

/// `$near` and `$geoNear` order through the blocking sort: past its budget
/// (64 KiB here) they spill and still return every document nearest first;
/// with `allowDiskUse: false` they fail with 292 instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distance_order_spills_past_the_blocking_budget() {
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().join("wal").display().to_string();
    let sidecar = Sidecar::start(
        "argon-sidecar",
        &["--data", &wal, "--max-blocking-sort-bytes", "65536"],
    )
    .await
    .unwrap();
    let client = sidecar.client().await.unwrap();
    let db = client.database("spill");
    // 3,000 points on a spiral round (0, 0), each ~150 bytes.
    let docs: Vec<Document> = (0..3_000)
        .map(|i| {
            let r = 0.001 * f64::from((i * 7919) % 3000 + 1);
            let t = f64::from(i) * 0.7;
            doc! {"_id": i, "loc": {"type": "Point", "coordinates": [r * t.cos(), r * t.sin()]}, "pad": "x".repeat(64)}
        })
        .collect();
    let expected: Vec<i32> = {
        let mut by: Vec<(f64, i32)> = docs
            .iter()
            .map(|d| {
                let c = d
                    .get_document("loc")
                    .unwrap()
                    .get_array("coordinates")
                    .unwrap();
                let p = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
                (distance((0.0, 0.0), p), d.get_i32("_id").unwrap())
            })
            .collect();
        by.sort_by(|a, b| a.0.total_cmp(&b.0));
        by.into_iter().map(|(_, i)| i).collect()
    };
    db.collection::<Document>("pts")
        .insert_many(docs)
        .await
        .unwrap();
    db.run_command(
        doc! {"createIndexes": "pts", "indexes": [{"key": {"loc": "2dsphere"}, "name": "loc"}]},
    )
    .await
    .unwrap();
    let near = doc! {"loc": {"$near": {"$geometry": point((0.0, 0.0))}}};
    let got = all(
        &db,
        "pts",
        doc! {"find": "pts", "filter": near.clone(), "projection": {"pad": 0}, "batchSize": 500},
    )
    .await;
    let ids: Vec<i32> = got.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    assert_eq!(ids, expected);
    let got = all(
        &db,
        "pts",
        doc! {"aggregate": "pts", "pipeline": [{"$geoNear": {"near": point((0.0, 0.0)), "distanceField": "d"}}], "cursor": {"batchSize": 500}},
    )
    .await;
    let ids: Vec<i32> = got.iter().map(|d| d.get_i32("_id").unwrap()).collect();
    assert_eq!(ids, expected);
    assert_eq!(
        common::code_of(
            &db,
            doc! {"find": "pts", "filter": near, "allowDiskUse": false}
        )
        .await,
        Some(292)
    );
    assert_eq!(
        common::code_of(&db, doc! {"aggregate": "pts", "pipeline": [{"$geoNear": {"near": point((0.0, 0.0)), "distanceField": "d"}}], "cursor": {}, "allowDiskUse": false}).await,
        Some(292)
    );
}
