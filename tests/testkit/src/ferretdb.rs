//! FerretDB v1.24 with its SQLite backend: a real MongoDB-wire server that
//! needs no other server, in a temporary directory of its own.

use crate::process::ServerProcess;
use crate::{assets, free_port, wait_until};
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const START_ATTEMPTS: usize = 3;

pub struct FerretDb {
    process: ServerProcess,
    uri: String,
    dir: TempDir,
}

impl FerretDb {
    /// Starts FerretDB and waits until it answers `ping`.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start().await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("ferretdb never started")))
    }

    async fn try_start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("argon-ferretdb-")
            .tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let port = free_port()?;
        let args = vec![
            "--handler=sqlite".to_string(),
            format!("--sqlite-url=file:{}/", data.display()),
            format!("--state-dir={}", dir.path().display()),
            format!("--listen-addr=127.0.0.1:{port}"),
            // The default debug address is a fixed port; parallel servers would collide.
            "--debug-addr=-".into(),
            "--telemetry=disable".into(),
            "--log-level=WARN".into(),
        ];
        let mut process =
            ServerProcess::start("ferretdb", &assets::ferretdb()?, &args, dir.path())?;
        let uri = format!("mongodb://127.0.0.1:{port}/");
        let client = mongodb::Client::with_uri_str(format!(
            "{uri}?serverSelectionTimeoutMS=500&connectTimeoutMS=500"
        ))
        .await?;
        let ready = wait_until("ferretdb ping", Duration::from_secs(30), || {
            let client = client.clone();
            async move {
                client
                    .database("admin")
                    .run_command(bson::doc! {"ping": 1})
                    .await?;
                Ok(true)
            }
        })
        .await;
        if let Err(e) = ready {
            process.ensure_running()?;
            return Err(e.context(process.log_tail(20)));
        }
        Ok(Self { process, uri, dir })
    }

    /// `mongodb://127.0.0.1:<port>/`
    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub async fn client(&self) -> anyhow::Result<mongodb::Client> {
        Ok(mongodb::Client::with_uri_str(&self.uri).await?)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
