//! A real kube-apiserver backed by a real etcd, started the way
//! controller-runtime's envtest starts them: no kubelet, no controllers, an
//! admin identity from a client certificate in `system:masters`.

use crate::process::ServerProcess;
use crate::tls::{CertAndKey, TestCa, signing_key_pair_pem};
use crate::{assets, free_port, wait_until};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

const START_ATTEMPTS: usize = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// etcd + kube-apiserver, both killed on drop.
pub struct KubeApiServer {
    // Field order is drop order: the apiserver stops before its etcd, and the
    // directory goes last.
    apiserver: ServerProcess,
    etcd: ServerProcess,
    url: String,
    kubeconfig_path: PathBuf,
    kubeconfig: Kubeconfig,
    ca: TestCa,
    dir: TempDir,
}

impl KubeApiServer {
    /// Starts etcd and the apiserver and waits until `/readyz` answers `ok`.
    pub async fn start() -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start().await {
                Ok(server) => return Ok(server),
                // Most likely a port taken between picking and binding it.
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("apiserver never started")))
    }

    async fn try_start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("argon-kube-").tempdir()?;
        let etcd = start_etcd(dir.path())?;
        let (mut etcd, etcd_url) = etcd;
        wait_until("etcd /health", Duration::from_secs(30), || {
            let url = etcd_url.clone();
            async move {
                Ok(http_get_ok(&url, "/health")
                    .await?
                    .contains("\"health\":\"true\""))
            }
        })
        .await
        .map_err(|e| e.context(etcd.log_tail(20)))?;
        etcd.ensure_running()?;

        let ca = TestCa::new("argon-test-ca")?;
        let serving = ca.serving_cert(&["127.0.0.1", "localhost"])?;
        let admin = ca.client_cert("argon-test-admin", &["system:masters"])?;
        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let files = ApiServerFiles::write(dir.path(), &ca, &serving)?;
        let apiserver = ServerProcess::start(
            "kube-apiserver",
            &assets::kube_apiserver()?,
            &apiserver_args(port, &etcd_url, &files),
            dir.path(),
        )?;

        let kubeconfig_yaml = kubeconfig_yaml(&url, &ca.cert_pem(), &admin);
        let kubeconfig_path = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig_path, &kubeconfig_yaml)?;
        let kubeconfig = Kubeconfig::from_yaml(&kubeconfig_yaml)?;

        let mut server = Self {
            apiserver,
            etcd,
            url,
            kubeconfig_path,
            kubeconfig,
            ca,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Polls `/readyz`, failing at once if the apiserver process dies.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = self.client().await?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            self.apiserver.ensure_running()?;
            self.etcd.ensure_running()?;
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let last = match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => body,
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "kube-apiserver not ready after {READY_TIMEOUT:?}: {last}\n{}",
                    self.apiserver.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new client with admin rights. Create one per test (per tokio runtime).
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = kube::Config::from_custom_kubeconfig(
            self.kubeconfig.clone(),
            &KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The apiserver's URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A kubeconfig file for `kubectl --kubeconfig` and other tools.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The CA that signed the apiserver's certificate; it can sign webhook
    /// serving certificates too.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs the real `kubectl` against this apiserver and returns its stdout;
    /// a non-zero exit is an error carrying stderr.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = std::process::Command::new(assets::kubectl()?)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig_path)
            .args(args)
            .output()
            .context("running kubectl")?;
        if !output.status.success() {
            anyhow::bail!(
                "kubectl {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8(output.stdout)?)
    }

    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver.pid()
    }

    pub fn etcd_pid(&self) -> u32 {
        self.etcd.pid()
    }
}

fn start_etcd(dir: &Path) -> anyhow::Result<(ServerProcess, String)> {
    let client_port = free_port()?;
    let peer_port = free_port()?;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let args: Vec<String> = vec![
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster=default={peer_url}"),
        // Test data is thrown away; fsync only slows the tests.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ];
    let process = ServerProcess::start("etcd", &assets::etcd()?, &args, dir)?;
    Ok((process, client_url))
}

struct ApiServerFiles {
    cert_dir: PathBuf,
    ca_cert: PathBuf,
    serving_cert: PathBuf,
    serving_key: PathBuf,
    service_account_key: PathBuf,
    service_account_pub: PathBuf,
}

impl ApiServerFiles {
    fn write(dir: &Path, ca: &TestCa, serving: &CertAndKey) -> anyhow::Result<Self> {
        let cert_dir = dir.join("pki");
        std::fs::create_dir_all(&cert_dir)?;
        let files = Self {
            ca_cert: cert_dir.join("ca.crt"),
            serving_cert: cert_dir.join("apiserver.crt"),
            serving_key: cert_dir.join("apiserver.key"),
            service_account_key: cert_dir.join("sa.key"),
            service_account_pub: cert_dir.join("sa.pub"),
            cert_dir,
        };
        std::fs::write(&files.ca_cert, ca.cert_pem())?;
        std::fs::write(&files.serving_cert, &serving.cert_pem)?;
        std::fs::write(&files.serving_key, &serving.key_pem)?;
        let (sa_private, sa_public) = signing_key_pair_pem()?;
        std::fs::write(&files.service_account_key, sa_private)?;
        std::fs::write(&files.service_account_pub, sa_public)?;
        Ok(files)
    }
}

fn apiserver_args(port: u16, etcd_url: &str, files: &ApiServerFiles) -> Vec<String> {
    vec![
        format!("--etcd-servers={etcd_url}"),
        format!("--cert-dir={}", files.cert_dir.display()),
        format!("--tls-cert-file={}", files.serving_cert.display()),
        format!("--tls-private-key-file={}", files.serving_key.display()),
        format!("--client-ca-file={}", files.ca_cert.display()),
        format!("--secure-port={port}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--allow-privileged=true".into(),
        "--authorization-mode=RBAC".into(),
        // No token controller runs, as in envtest.
        "--disable-admission-plugins=ServiceAccount".into(),
        format!(
            "--service-account-key-file={}",
            files.service_account_pub.display()
        ),
        format!(
            "--service-account-signing-key-file={}",
            files.service_account_key.display()
        ),
        "--service-account-issuer=https://kubernetes.default.svc".into(),
        "--v=1".into(),
    ]
}

fn kubeconfig_yaml(url: &str, ca_pem: &str, admin: &CertAndKey) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: argon-test
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: argon-test-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: argon-test
  context:
    cluster: argon-test
    user: argon-test-admin
    namespace: default
current-context: argon-test
",
        ca = BASE64.encode(ca_pem),
        cert = BASE64.encode(&admin.cert_pem),
        key = BASE64.encode(&admin.key_pem),
    )
}

/// A minimal HTTP/1.0 GET over plain TCP, for etcd's health endpoint.
async fn http_get_ok(base: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    anyhow::ensure!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "unexpected response: {}",
        response.lines().next().unwrap_or_default()
    );
    Ok(response)
}
