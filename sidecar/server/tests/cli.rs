//! The binary: bad configuration is a one-line error with exit code 2; a
//! standalone server answers drivers and serves /metrics, /healthz, /readyz.

use std::net::TcpListener as StdListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_argon-sidecar");

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn bad_configuration_exits_2_with_one_line() {
    for args in [
        vec!["serve"],
        vec!["serve", "--listen", "not-an-address", "--data", "/tmp/x"],
        vec!["serve", "--store", "http://nope"],
        vec!["serve", "--data", "/proc/argon-cannot-create-this"],
        vec!["serve", "--data", "/tmp/x", "--project", "Bad Name"],
    ] {
        let out = Command::new(BIN)
            .args(&args)
            .env_remove("ARGON_DATA")
            .env_remove("ARGON_STORE")
            .output()
            .expect("run the binary");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_clients_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, metrics_port) = (free_port(), free_port());
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ARGON_DATA", dir.path().join("data"))
        .env("ARGON_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the binary");
    let mut ready = false;
    for _ in 0..200 {
        if http_get(metrics_port, "/readyz")
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the server became ready");
    let client =
        mongodb::Client::with_uri_str(format!("mongodb://127.0.0.1:{port}/?directConnection=true"))
            .await
            .expect("client");
    let coll = client.database("app").collection::<bson::Document>("c");
    coll.insert_one(bson::doc! {"_id": 1})
        .await
        .expect("insert");
    assert_eq!(coll.count_documents(bson::doc! {}).await.expect("count"), 1);
    let health = http_get(metrics_port, "/healthz").await.expect("healthz");
    assert!(health.starts_with("HTTP/1.1 200"));
    let metrics = http_get(metrics_port, "/metrics").await.expect("metrics");
    assert!(
        metrics.contains("argon_sidecar_commands_total{command=\"insert\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("argon_sidecar_wal_commits_total"),
        "{metrics}"
    );
    let _ = child.kill().await;
}
