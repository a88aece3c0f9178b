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
    args: Vec<String>,
    /// How many times it was started (names each run's log).
    runs: usize,
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
        let process = ServerProcess::start("ferretdb", &assets::ferretdb()?, &args, dir.path())?;
        let uri = format!("mongodb://127.0.0.1:{port}/");
        let mut server = Self {
            process,
            uri,
            args,
            runs: 1,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Kills the server (SIGKILL: an outage, not a shutdown). Its data stay.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts it again on the same port and data (after [`FerretDb::kill`])
    /// and waits until it answers `ping`.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.kill();
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            self.runs += 1;
            let name = format!("ferretdb-run{}", self.runs);
            self.process =
                ServerProcess::start(&name, &assets::ferretdb()?, &self.args, self.dir.path())?;
            match self.wait_ready().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("ferretdb never restarted")))
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let process = &mut self.process;
        let client = mongodb::Client::with_uri_str(format!(
            "{}?serverSelectionTimeoutMS=500&connectTimeoutMS=500",
            self.uri
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
        Ok(())
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
