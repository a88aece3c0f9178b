//! FerretDB is a real MongoDB-wire server: the Rust driver writes and queries
//! it, and pymongo, mongosh and the Node.js driver (with mongoose) read back
//! what the Rust driver wrote.

use argon_testkit::{FerretDb, clients};
use bson::{Document, doc};
use futures::TryStreamExt;

async fn seeded_server() -> anyhow::Result<FerretDb> {
    let server = FerretDb::start().await?;
    let client = server.client().await?;
    let planets = client.database("smoke").collection::<Document>("planets");
    planets
        .insert_many([
            doc! {"_id": 1, "name": "Mercury", "moons": 0},
            doc! {"_id": 2, "name": "Earth", "moons": 1},
            doc! {"_id": 3, "name": "Mars", "moons": 2},
            doc! {"_id": 4, "name": "Jupiter", "moons": 95},
        ])
        .await?;
    Ok(server)
}

#[tokio::test]
async fn rust_driver_inserts_and_queries() -> anyhow::Result<()> {
    let server = seeded_server().await?;
    let client = server.client().await?;
    let planets = client.database("smoke").collection::<Document>("planets");

    let names: Vec<String> = planets
        .find(doc! {"moons": {"$gte": 1}})
        .sort(doc! {"moons": -1})
        .await?
        .try_collect::<Vec<_>>()
        .await?
        .iter()
        .map(|d| d.get_str("name").map(str::to_owned))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, ["Jupiter", "Mars", "Earth"]);

    // A duplicate _id is refused by the server with E11000.
    let err = planets
        .insert_one(doc! {"_id": 1, "name": "again"})
        .await
        .expect_err("duplicate _id must fail");
    assert!(err.to_string().contains("E11000"), "{err}");
    assert_eq!(planets.count_documents(doc! {}).await?, 4);
    Ok(())
}

#[tokio::test]
async fn pymongo_reads_what_rust_wrote() -> anyhow::Result<()> {
    let server = seeded_server().await?;
    let out = clients::run_python(
        r#"
import sys, pymongo
client = pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000)
docs = client.smoke.planets.find({"moons": {"$lt": 2}}).sort("_id")
print(",".join(d["name"] for d in docs))
"#,
        &[server.uri()],
    )?;
    assert_eq!(out.trim(), "Mercury,Earth");
    Ok(())
}

#[tokio::test]
async fn mongosh_reads_what_rust_wrote() -> anyhow::Result<()> {
    let server = seeded_server().await?;
    let uri = format!("{}smoke", server.uri());
    let out = clients::run_mongosh(
        &uri,
        "print(db.planets.find({moons: {$gt: 1}}).sort({_id: 1}).toArray().map(d => d.name).join(','))",
    )?;
    assert_eq!(out.trim(), "Mars,Jupiter");
    Ok(())
}

#[tokio::test]
async fn node_driver_and_mongoose_read_what_rust_wrote() -> anyhow::Result<()> {
    let server = seeded_server().await?;
    let out = clients::run_node(
        r#"
const { MongoClient } = require('mongodb');
const mongoose = require('mongoose');
const uri = process.env.ARGON_URI;
(async () => {
  const client = await MongoClient.connect(uri);
  const earth = await client.db('smoke').collection('planets').findOne({ name: 'Earth' });
  await client.close();
  await mongoose.connect(uri + 'smoke');
  const Planet = mongoose.model('Planet', new mongoose.Schema({ _id: Number, name: String, moons: Number }));
  const big = await Planet.find({ moons: { $gt: 50 } }).lean();
  await mongoose.disconnect();
  console.log(`${earth.moons} ${big.map(p => p.name).join(',')}`);
})().catch(e => { console.error(e); process.exit(1); });
"#,
        &[("ARGON_URI", server.uri())],
    )?;
    assert_eq!(out.trim(), "1 Jupiter");
    Ok(())
}
