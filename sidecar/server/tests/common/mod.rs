//! Test support: the server in-process on port 0 over an embedded store in a
//! temporary directory, a driver client for it, and a raw wire client.

#![allow(dead_code)]

pub mod sidecar;

use std::net::SocketAddr;
use std::sync::Arc;

use argon_sidecar::config::{StoreChoice, open_wal};
use argon_sidecar::metrics::Metrics;
use argon_sidecar::wire::{Frame, message::encode_op_msg};
use argon_sidecar::{Service, run};
use bson::Document;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A sidecar binary on an embedded store in a fresh directory (kept alive
/// by the returned `TempDir`), and a driver client for it.
pub async fn standalone() -> (sidecar::Sidecar, tempfile::TempDir, mongodb::Client) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sidecar = sidecar::Sidecar::standalone(&dir.path().join("wal"))
        .await
        .expect("argon-sidecar starts");
    let client = sidecar.client().await.expect("a client");
    (sidecar, dir, client)
}

/// The command's error code (or its first write error's), `None` on success.
pub async fn code_of(db: &mongodb::Database, cmd: Document) -> Option<i32> {
    match db.run_command(cmd).await {
        Ok(reply) => reply
            .get_array("writeErrors")
            .ok()
            .and_then(|e| e.first())
            .and_then(bson::Bson::as_document)
            .and_then(|e| e.get_i32("code").ok()),
        Err(e) => code(&e),
    }
}

/// The MongoDB error code of a driver error (a write error or a command
/// error), if it carries one.
pub fn code(e: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The number after `name` in a Prometheus text exposition (summed over
/// its label sets).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Prometheus text exposition served on `127.0.0.1:port`.
pub async fn metrics_text(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the metrics port");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .expect("the request is sent");
    let mut out = String::new();
    s.read_to_string(&mut out)
        .await
        .expect("the metrics are read");
    out
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(false).await
    }

    /// A server that requires authentication (`serve --auth`).
    pub async fn start_with_auth() -> TestServer {
        Self::start_with(true).await
    }

    async fn start_with(auth: bool) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let wal = open_wal(&StoreChoice::Embedded(dir.path().join("wal")), "default")
            .await
            .expect("the embedded store opens");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = oneshot::channel::<()>();
        let svc = Service::new(wal, "main", metrics.clone());
        svc.set_auth_required(auth)
            .await
            .expect("the project's users load");
        let task = tokio::spawn(run(listener, svc, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            metrics,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn uri(&self) -> String {
        format!("mongodb://{}/?directConnection=true", self.addr)
    }

    pub async fn client(&self) -> mongodb::Client {
        mongodb::Client::with_uri_str(self.uri())
            .await
            .expect("driver client")
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// A raw wire-protocol client: sends OP_MSG frames, reads reply documents.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    next_id: i32,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        RawClient {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: BytesMut::new(),
            next_id: 1,
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    pub async fn command(&mut self, body: Document) -> Document {
        self.next_id += 1;
        let bytes = encode_op_msg(self.next_id, 0, &body, &[]);
        self.send_bytes(&bytes).await.expect("send");
        self.read_reply().await.expect("a reply")
    }

    /// The next reply's body document, or None if the server closed.
    pub async fn read_reply(&mut self) -> Option<Document> {
        loop {
            if let Some(frame) =
                Frame::decode(&mut self.buf).expect("the server sends valid frames")
            {
                // OP_MSG: flags (4), kind 0 (1), document.
                return Document::from_reader(&frame.body[5..]).ok();
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

/// `pipeline` over `coll`'s documents, all of them.
pub async fn aggregate(
    db: &mongodb::Database,
    coll: &str,
    pipeline: Vec<Document>,
) -> Vec<Document> {
    use futures::TryStreamExt;
    db.collection::<Document>(coll)
        .aggregate(pipeline)
        .await
        .expect("aggregate")
        .try_collect()
        .await
        .expect("documents")
}

/// The code of the error `pipeline` over `coll` fails with, when it is
/// opened or when its documents are read; `None` when it succeeds.
pub async fn aggregate_code(
    db: &mongodb::Database,
    coll: &str,
    pipeline: Vec<Document>,
) -> Option<i32> {
    use futures::TryStreamExt;
    let result = async {
        db.collection::<Document>(coll)
            .aggregate(pipeline)
            .await?
            .try_collect::<Vec<Document>>()
            .await
    }
    .await;
    result.err().and_then(|e| code(&e))
}
