//! The real `argon-sidecar` binary as a child process (through the
//! testkit's `ServerProcess`, so it dies with the test and prints its log
//! when a test panics): standalone on an embedded store, or on a shared
//! mongodb store such as FerretDB.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use argon_testkit::free_port;
use argon_testkit::process::ServerProcess;

pub const BIN: &str = env!("CARGO_BIN_EXE_argon-sidecar");

const START_ATTEMPTS: usize = 3;

pub struct Sidecar {
    process: ServerProcess,
    pub port: u16,
    _logs: tempfile::TempDir,
}

impl Sidecar {
    /// `argon-sidecar serve --data <data>`.
    pub async fn standalone(data: &Path) -> anyhow::Result<Sidecar> {
        let data = data.display().to_string();
        Self::start("argon-sidecar", &["--data", &data]).await
    }

    /// `argon-sidecar serve --store <uri> --project <project>`.
    pub async fn on_store(name: &str, uri: &str, project: &str) -> anyhow::Result<Sidecar> {
        Self::start(name, &["--store", uri, "--project", project]).await
    }

    /// Starts `serve <args> --listen 127.0.0.1:<free port>` and waits until
    /// it accepts connections (it binds only after its store is open). A
    /// lost race for the port is retried.
    pub async fn start(name: &str, args: &[&str]) -> anyhow::Result<Sidecar> {
        Self::start_with_env(name, args, &[]).await
    }

    /// [`Sidecar::start`] with `env` added to the environment.
    pub async fn start_with_env(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Sidecar> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(name, args, env).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{name} never started")))
    }

    async fn try_start(name: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Sidecar> {
        let logs = tempfile::Builder::new()
            .prefix("argon-sidecar-log-")
            .tempdir()?;
        let port = free_port()?;
        let mut full: Vec<String> = vec!["serve".into()];
        full.extend(args.iter().map(|a| a.to_string()));
        full.extend(["--listen".into(), format!("127.0.0.1:{port}")]);
        let mut process =
            ServerProcess::start_with_env(name, Path::new(BIN), &full, logs.path(), env)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            process.ensure_running()?;
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "{name} did not listen on port {port} within 30 s:\n{}",
                    process.log_tail(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Sidecar {
            process,
            port,
            _logs: logs,
        })
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    pub async fn client(&self) -> anyhow::Result<mongodb::Client> {
        mongodb::Client::with_uri_str(self.uri())
            .await
            .context("a driver client for the sidecar")
    }

    /// Everything the process has written to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.process.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}
