//! The MongoDB client the end-to-end scenarios run in pods (the official Rust
//! driver, unchanged). Each command prints one JSON line with its result,
//! which the test reads from the pod's log.
//!
//! ```text
//! argon-e2e-client write URI DB COLL TAG COUNT   insert TAG-0..TAG-COUNT-1, each acknowledged
//! argon-e2e-client count URI DB COLL TAG         how many documents carry TAG
//! argon-e2e-client watch URI DB COLL TAG         count, print it, and stay up until SIGTERM
//!                                                (an app that reads at start)
//! argon-e2e-client app DB COLL TAG COUNT         an injected app: the sidecar must already
//!                                                listen on localhost:27017 when it starts
//!                                                (one connection attempt), then it writes
//!                                                COUNT documents and stays up; on SIGTERM it
//!                                                waits 2 s, writes COUNT more tagged
//!                                                TAG-at-exit through the sidecar, and exits
//! argon-e2e-client writer URI DB COLL TAG        insert TAG-0, TAG-1, ... until stopped,
//!                                                printing every acknowledged _id
//! argon-e2e-client ids URI DB COLL TAG           the _ids of the documents carrying TAG
//! argon-e2e-client admin URI COMMAND-JSON        run a command on the admin database
//! argon-e2e-client idle                          wait for SIGTERM (a pod that does nothing)
//! ```
//!
//! A URI argument `secret:DIR` is read from a mounted connection Secret as
//! the README tells users to: `DIR/uri`, plus `&tlsCAFile=DIR/ca.crt` when
//! the Secret carries a CA.

use anyhow::Context;
use bson::doc;
use futures::TryStreamExt;
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection};
use std::time::Duration;

const USAGE: &str = "usage: argon-e2e-client write URI DB COLL TAG COUNT | count URI DB COLL TAG | watch URI DB COLL TAG | app DB COLL TAG COUNT | writer URI DB COLL TAG | ids URI DB COLL TAG | admin URI COMMAND-JSON | idle";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(line) => println!("{line}"),
        Err(e) => {
            println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            eprintln!("argon-e2e-client: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: &[String]) -> anyhow::Result<serde_json::Value> {
    let arg = |i: usize| -> anyhow::Result<&str> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| anyhow::anyhow!("{USAGE}"))
    };
    match arg(0)? {
        "write" => {
            let count: u32 = arg(5)?.parse().context("COUNT")?;
            let coll = collection(arg(1)?, arg(2)?, arg(3)?).await?;
            let wrote = write(&coll, arg(4)?, count).await?;
            Ok(serde_json::json!({ "wrote": wrote }))
        }
        "count" => {
            let coll = collection(arg(1)?, arg(2)?, arg(3)?).await?;
            let n = coll
                .count_documents(doc! { "tag": arg(4)? })
                .await
                .context("count")?;
            Ok(serde_json::json!({ "count": n }))
        }
        "watch" => {
            let coll = collection(arg(1)?, arg(2)?, arg(3)?).await?;
            let n = coll
                .count_documents(doc! { "tag": arg(4)? })
                .await
                .context("count")?;
            println!("{}", serde_json::json!({ "count": n }));
            terminated().await?;
            Ok(serde_json::json!({ "stopped": true }))
        }
        "app" => app(arg(1)?, arg(2)?, arg(3)?, arg(4)?.parse().context("COUNT")?).await,
        "writer" => {
            let coll = collection(arg(1)?, arg(2)?, arg(3)?).await?;
            writer(&coll, arg(4)?).await
        }
        "ids" => {
            let coll = collection(arg(1)?, arg(2)?, arg(3)?).await?;
            let mut cursor = coll.find(doc! { "tag": arg(4)? }).await.context("find")?;
            let mut ids = Vec::new();
            while let Some(d) = cursor.try_next().await.context("reading the cursor")? {
                ids.push(d.get_str("_id").context("a string _id")?.to_string());
            }
            Ok(serde_json::json!({ "ids": ids }))
        }
        "admin" => {
            let command: serde_json::Value =
                serde_json::from_str(arg(2)?).context("COMMAND-JSON")?;
            let command =
                bson::serialize_to_document(&command).context("COMMAND-JSON as a document")?;
            let mut options = ClientOptions::parse(connection_uri(arg(1)?)?)
                .await
                .context("parsing the URI")?;
            options.server_selection_timeout = Some(Duration::from_secs(30));
            let client = Client::with_options(options)?;
            reachable(&client).await?;
            let reply = client
                .database("admin")
                .run_command(command)
                .await
                .context("running the command")?;
            Ok(serde_json::to_value(&reply)?)
        }
        "idle" => {
            terminated().await?;
            Ok(serde_json::json!({ "stopped": true }))
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

async fn collection(uri: &str, db: &str, coll: &str) -> anyhow::Result<Collection<bson::Document>> {
    let mut options = ClientOptions::parse(connection_uri(uri)?)
        .await
        .context("parsing the URI")?;
    options.server_selection_timeout = Some(Duration::from_secs(30));
    options.app_name = Some("argon-e2e-client".into());
    let client = Client::with_options(options)?;
    reachable(&client).await?;
    Ok(client.database(db).collection(coll))
}

/// Waits (up to 10 s) until the server answers `ping`. A pod that has just
/// started may have its first connections refused: NetworkPolicy
/// enforcement admits a new pod's address a moment after it starts
/// (kube-router adds it to the policy's ipset on its next sync), and a
/// `loadBalanced=true` client does not wait for a server as server
/// selection otherwise would. An app retries; so does this client, on
/// connection errors only.
async fn reachable(client: &Client) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.database("admin").run_command(doc! {"ping": 1}).await {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(*e.kind, mongodb::error::ErrorKind::Io(_))
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).context("the server did not answer ping"),
        }
    }
}

async fn write(coll: &Collection<bson::Document>, tag: &str, count: u32) -> anyhow::Result<u32> {
    for i in 0..count {
        coll.insert_one(doc! { "_id": format!("{tag}-{i}"), "tag": tag, "i": i })
            .await
            .with_context(|| format!("inserting {tag}-{i}"))?;
    }
    Ok(count)
}

/// The injected app: the webhook sets `ARGON_MONGODB_URI`; the kubelet
/// starts this container only after the sidecar has started, so one
/// connection attempt must succeed.
async fn app(db: &str, coll: &str, tag: &str, count: u32) -> anyhow::Result<serde_json::Value> {
    let uri = std::env::var("ARGON_MONGODB_URI")
        .unwrap_or_else(|_| "mongodb://127.0.0.1:27017/".to_string());
    tokio::net::TcpStream::connect("127.0.0.1:27017")
        .await
        .context("the sidecar was not listening on 127.0.0.1:27017 when the app started")?;
    let collection = collection(&uri, db, coll).await?;
    let wrote = write(&collection, tag, count).await?;
    println!("{}", serde_json::json!({ "wrote": wrote }));
    // Stay up (a Deployment's pod) until the kubelet stops us; then write
    // during the grace period, as an app flushing its work would. The pause
    // gives a sidecar stopped at the same time as the app (not after it)
    // time to be gone, so these writes fail unless it outlives the app.
    terminated().await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_exit = write(&collection, &format!("{tag}-at-exit"), count).await?;
    Ok(serde_json::json!({ "stopped": true, "wrote_at_exit": at_exit }))
}

async fn terminated() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    Ok(())
}

async fn writer(coll: &Collection<bson::Document>, tag: &str) -> anyhow::Result<serde_json::Value> {
    let mut i: u64 = 0;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let id = format!("{tag}-{i}");
        tokio::select! {
            _ = term.recv() => return Ok(serde_json::json!({ "acknowledged": i })),
            result = coll.insert_one(doc! { "_id": &id, "tag": tag, "i": i as i64 }) => {
                match result {
                    Ok(_) => {
                        println!("{}", serde_json::json!({ "ack": id }));
                        i += 1;
                    }
                    // An outage (the sidecar restarting) is retried with the same _id:
                    // a duplicate-key error then means the first attempt committed.
                    Err(e) if is_duplicate(&e) => {
                        println!("{}", serde_json::json!({ "ack": id, "after_retry": true }));
                        i += 1;
                    }
                    Err(e) => {
                        eprintln!("insert {id}: {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    matches!(
        *e.kind,
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(ref w)) if w.code == 11000
    )
}

/// The URI to connect with: `uri` itself, or for `secret:DIR` the mounted
/// Secret's `uri` with its `ca.crt` as the trusted CA.
fn connection_uri(uri: &str) -> anyhow::Result<String> {
    let Some(dir) = uri.strip_prefix("secret:") else {
        return Ok(uri.to_string());
    };
    let dir = std::path::Path::new(dir);
    let mut uri = std::fs::read_to_string(dir.join("uri"))
        .with_context(|| format!("reading {}/uri", dir.display()))?;
    let ca = dir.join("ca.crt");
    if ca.exists() {
        uri = format!("{}&tlsCAFile={}", uri.trim_end(), ca.display());
    }
    Ok(uri.trim_end().to_string())
}
