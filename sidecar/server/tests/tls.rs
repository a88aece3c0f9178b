//! TLS on the real binary (`serve --tls-cert-file --tls-key-file --auth`):
//! pymongo, the Node.js driver, mongosh and the Rust driver connect with
//! `tls=true`, verify the server against a CA and authenticate with
//! SCRAM-SHA-256; a wrong password, an unknown user, a plain client and one
//! trusting another CA fail, each with its own error; a rotated certificate
//! is served without a restart.

use crate::common;

use std::path::Path;
use std::time::Duration;

use argon_testkit::clients::{run_mongosh, run_node, run_python};
use argon_testkit::tls::TestCa;
use bson::{Document, doc};
use common::sidecar::Sidecar;

const PASSWORD: &str = "tls-test-Pa55word";

const PYTHON: &str = r#"
import sys
from pymongo import MongoClient
hostport, ca, password = sys.argv[1], sys.argv[2], sys.argv[3]
c = MongoClient(f"mongodb://root:{password}@{hostport}/?directConnection=true&tls=true&authSource=admin",
                tlsCAFile=ca, serverSelectionTimeoutMS=10000)
c.app.things.insert_one({"over": "tls"})
assert c.app.things.find_one({"over": "tls"}) is not None
print("OK")
"#;

const NODE: &str = r#"
const { MongoClient } = require('mongodb');
(async () => {
  const c = new MongoClient(process.env.URI, { serverSelectionTimeoutMS: 10000 });
  await c.connect();
  const things = c.db('app').collection('things');
  await things.insertOne({ over: 'tls', from: 'node' });
  if (!(await things.findOne({ from: 'node' }))) throw new Error('the write is not read back');
  const status = await c.db('admin').command({ connectionStatus: 1 });
  console.log(JSON.stringify(status.authInfo.authenticatedUsers));
  await c.close();
})().catch((e) => { console.error(e); process.exit(1); });
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path.display().to_string()
}

async fn ping(uri: &str) -> Result<Document, mongodb::error::Error> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client.database("admin").run_command(doc! {"ping": 1}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_verify_the_server_and_rotation_needs_no_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let ca = TestCa::new("argon-test-ca").expect("a CA");
    let serving = ca
        .serving_cert(&["127.0.0.1", "localhost"])
        .expect("a serving certificate");
    let cert = write(dir.path(), "tls.crt", &serving.cert_pem);
    let key = write(dir.path(), "tls.key", &serving.key_pem);
    let ca_file = write(dir.path(), "ca.crt", &ca.cert_pem());
    let data = dir.path().join("wal").display().to_string();
    let server = Sidecar::start(
        "argon-sidecar-tls",
        &[
            "--data",
            &data,
            "--auth",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
        ],
    )
    .await
    .expect("the sidecar starts with TLS");
    let base = format!("mongodb://127.0.0.1:{}/?directConnection=true", server.port);
    let tls = format!("{base}&tls=true&tlsCAFile={ca_file}&serverSelectionTimeoutMS=5000");

    // The first user over TLS (localhost exception), then SCRAM over TLS.
    let client = mongodb::Client::with_uri_str(&tls).await.expect("a client");
    client
        .database("admin")
        .run_command(doc! {"createUser": "root", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect("createUser over TLS");
    let hostport = format!("127.0.0.1:{}", server.port);
    let out = tokio::task::spawn_blocking({
        let (hostport, ca_file) = (hostport.clone(), ca_file.clone());
        move || run_python(PYTHON, &[&hostport, &ca_file, PASSWORD])
    })
    .await
    .expect("python runs")
    .unwrap_or_else(|e| panic!("pymongo over TLS: {e:#}"));
    assert_eq!(out.trim().lines().last(), Some("OK"), "{out}");
    let authed = format!(
        "mongodb://root:{PASSWORD}@127.0.0.1:{}/?directConnection=true&authSource=admin&tls=true&tlsCAFile={ca_file}",
        server.port
    );
    ping(&authed)
        .await
        .expect("the Rust driver over TLS with SCRAM");

    // The Node.js driver and mongosh, SCRAM-SHA-256 named, over TLS.
    let scram_uri = format!("{authed}&authMechanism=SCRAM-SHA-256");
    let out = tokio::task::spawn_blocking({
        let uri = scram_uri.clone();
        move || run_node(NODE, &[("URI", uri.as_str())])
    })
    .await
    .expect("node runs")
    .unwrap_or_else(|e| panic!("the Node.js driver over TLS: {e:#}"));
    assert!(out.contains(r#"{"user":"root","db":"admin"}"#), "{out}");
    let out = tokio::task::spawn_blocking({
        let uri = scram_uri.clone();
        move || {
            run_mongosh(
                &uri,
                "db.getSiblingDB('app').things.insertOne({from: 'mongosh'}); \
                 print(db.getSiblingDB('app').things.countDocuments({over: 'tls'}))",
            )
        }
    })
    .await
    .expect("mongosh runs")
    .unwrap_or_else(|e| panic!("mongosh over TLS: {e:#}"));
    assert_eq!(out.trim().lines().last(), Some("2"), "{out}");

    // A wrong password and an unknown user fail authentication (18), over
    // a handshake that itself succeeded.
    for (user, password) in [("root", "not-the-password"), ("nobody", PASSWORD)] {
        let uri = authed.replacen(
            &format!("root:{PASSWORD}"),
            &format!("{user}:{password}"),
            1,
        ) + "&serverSelectionTimeoutMS=3000";
        let e = ping(&uri).await.expect_err("bad credentials over TLS");
        let text = format!("{e}");
        assert!(
            matches!(*e.kind, mongodb::error::ErrorKind::Authentication { .. })
                && text.contains("Authentication failed"),
            "{user}: {text}"
        );
    }

    // A plain client, and a client trusting another CA, get nowhere.
    ping(&format!("{base}&serverSelectionTimeoutMS=1500"))
        .await
        .expect_err("a plain connection to a TLS server");
    let other = TestCa::new("another-ca").expect("a CA");
    let other_file = write(dir.path(), "other.crt", &other.cert_pem());
    ping(&format!(
        "{base}&tls=true&tlsCAFile={other_file}&serverSelectionTimeoutMS=1500"
    ))
    .await
    .expect_err("a server certificate from another CA");

    // Rotation: the files now hold a certificate of the other CA; it is
    // served from some handshake within the reload interval on.
    let rotated = other
        .serving_cert(&["127.0.0.1", "localhost"])
        .expect("a serving certificate");
    write(dir.path(), "tls.key", &rotated.key_pem);
    write(dir.path(), "tls.crt", &rotated.cert_pem);
    let rotated_uri = format!(
        "mongodb://root:{PASSWORD}@127.0.0.1:{}/?directConnection=true&authSource=admin&tls=true&tlsCAFile={other_file}&serverSelectionTimeoutMS=1500",
        server.port
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match ping(&rotated_uri).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() >= deadline => {
                panic!("the rotated certificate is not served: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let output = server.output();
    assert!(output.contains("serving a new TLS certificate"), "{output}");
    assert!(!output.contains(PASSWORD));
    assert!(!output.contains("PRIVATE KEY"));
}
