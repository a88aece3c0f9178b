//! Fixtures: servers with the CRDs installed, namespaces, chainable
//! builders for projects and branches, the operator in-process, and
//! polling waits (never sleeps as assertions).

#![allow(dead_code)]

use argon_operator::certs::ServingCert;
use argon_operator::config::Config;
use argon_operator::crd::{
    ArgonBranch, ArgonBranchSpec, ArgonProject, ArgonProjectSpec, EndpointSpec, ImportSpec,
    PointSpec, ResetSpec, SecretKeyRef,
};
use argon_operator::metrics::Metrics;
use argon_operator::{Operator, crdgen};
use argon_testkit::{FerretDb, KubeApiServer, wait_until};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, Resource};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(30);

/// A kube-apiserver with Argon's CRDs installed and Established.
pub async fn kube_with_crds() -> anyhow::Result<(KubeApiServer, Client)> {
    let server = KubeApiServer::start().await?;
    let client = server.client().await?;
    install_crds(&client).await?;
    Ok((server, client))
}

pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    crdgen::install(client, "argon-tests", WAIT).await
}

pub async fn namespace(client: &Client, name: &str) -> anyhow::Result<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns).await?;
    Ok(name.into())
}

/// A Secret holding a store URI under `uri`.
pub async fn store_secret(client: &Client, ns: &str, name: &str, uri: &str) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("uri".to_string(), uri.to_string())])),
        ..Secret::default()
    };
    api.create(&PostParams::default(), &secret).await?;
    Ok(())
}

/// `Project::test("p").secret("s").database("db")`
pub struct ProjectFixture(pub ArgonProject);

impl ProjectFixture {
    pub fn test(name: &str) -> ProjectFixture {
        ProjectFixture(ArgonProject::new(
            name,
            ArgonProjectSpec::on_mongodb(
                &format!("{name}-store"),
                &format!("argon_{}", name.replace('-', "_")),
            ),
        ))
    }

    pub fn database(mut self, db: &str) -> Self {
        if let Some(m) = self.0.spec.store.mongodb.as_mut() {
            m.database = db.into();
        }
        self
    }

    pub fn secret(mut self, secret: &str) -> Self {
        if let Some(m) = self.0.spec.store.mongodb.as_mut() {
            m.secret_ref.name = secret.into();
        }
        self
    }

    /// Imports `databases` from the source URI in Secret `secret` (key `uri`).
    pub fn import(mut self, secret: &str, databases: &[&str]) -> Self {
        self.0.spec.import = Some(ImportSpec {
            secret_ref: SecretKeyRef {
                name: secret.into(),
                key: "uri".into(),
            },
            databases: databases.iter().map(|d| d.to_string()).collect(),
            collections: Vec::new(),
        });
        self
    }

    pub fn build(self) -> ArgonProject {
        self.0
    }
}

/// `BranchFixture::test("b", "p").parent("main").forked_at_seq(5).protected()`
pub struct BranchFixture(pub ArgonBranch);

impl BranchFixture {
    pub fn test(name: &str, project: &str) -> BranchFixture {
        BranchFixture(ArgonBranch::new(
            name,
            ArgonBranchSpec {
                project: project.into(),
                parent: "main".into(),
                from: None,
                read_only: false,
                endpoint: EndpointSpec::default(),
                expire_after: None,
                reset: None,
                protected: false,
            },
        ))
    }
    pub fn parent(mut self, parent: &str) -> Self {
        self.0.spec.parent = parent.into();
        self
    }
    pub fn forked_at_seq(mut self, seq: i64) -> Self {
        self.0.spec.from = Some(PointSpec {
            seq: Some(seq),
            timestamp: None,
        });
        self
    }
    pub fn forked_at_time(mut self, t: &str) -> Self {
        self.0.spec.from = Some(PointSpec {
            seq: None,
            timestamp: Some(t.into()),
        });
        self
    }
    pub fn no_endpoint(mut self) -> Self {
        self.0.spec.endpoint.enabled = false;
        self
    }
    pub fn expire_after(mut self, d: &str) -> Self {
        self.0.spec.expire_after = Some(d.into());
        self
    }
    pub fn protected(mut self) -> Self {
        self.0.spec.protected = true;
        self
    }
    pub fn reset_to_seq(mut self, seq: i64, dry_run: bool, backup: Option<&str>) -> Self {
        self.0.spec.reset = Some(ResetSpec {
            seq: Some(seq),
            timestamp: None,
            dry_run,
            backup_branch: backup.map(String::from),
        });
        self
    }
    pub fn build(self) -> ArgonBranch {
        self.0
    }
}

/// The operator running in-process; stopped gracefully by `stop`, or
/// aborted (as a crash would) by dropping it.
pub struct RunningOperator {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<argon_operator::Result<()>>>,
    pub metrics: Arc<Metrics>,
    /// The certificate its webhook serves now.
    pub serving: Arc<ServingCert>,
}

impl RunningOperator {
    pub fn start(client: Client, config: Config) -> RunningOperator {
        let operator = Operator::new(client, config);
        let metrics = operator.metrics();
        let serving = operator.serving_cert();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(operator.run(async move {
            let _ = rx.await;
        }));
        RunningOperator {
            shutdown: Some(tx),
            task: Some(task),
            metrics,
            serving,
        }
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            // A graceful stop waits for in-flight reconciles; bounded so a
            // stuck one fails the test by name instead of hanging the run.
            tokio::time::timeout(WAIT, task)
                .await
                .map_err(|_| anyhow::anyhow!("the operator did not stop within {WAIT:?}"))???;
        }
        Ok(())
    }

    /// Kills the operator mid-flight: no graceful shutdown, no Lease release.
    pub fn kill(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for RunningOperator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A test config: fast head refresh, no servers, the CA for endpoints'
/// certificates in `default/argon-test-ca` (made by the operator).
pub fn test_config(identity: &str) -> Config {
    let mut config = Config::new(identity);
    config.head_refresh = Duration::from_millis(500);
    config.sidecar_image = "argon-sidecar:test".into();
    config.endpoint_tls = Some(argon_operator::config::EndpointTlsConfig::new(
        "default",
        "argon-test-ca",
    ));
    config
}

/// Polls `name` until `check` holds; returns the object then.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    check: impl Fn(&K) -> bool,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    wait_for_within(api, name, what, WAIT, check).await
}

/// `wait_for` with its own timeout.
pub async fn wait_for_within<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&K) -> bool,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match api.get_opt(name).await {
            Ok(Some(obj)) if check(&obj) => return Ok(obj),
            Ok(Some(obj)) => format!("{obj:?}"),
            Ok(None) => "not found".into(),
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out waiting for {name}: {what}\nlast seen: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    wait_until(&format!("{name} gone"), WAIT, || async {
        Ok(api.get_opt(name).await?.is_none())
    })
    .await
}

pub fn phase(b: &ArgonBranch) -> Option<&str> {
    b.status.as_ref().and_then(|s| s.phase.as_deref())
}

pub fn condition<'a>(
    b: &'a ArgonBranch,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    b.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

pub fn project_condition<'a>(
    p: &'a ArgonProject,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// A project in `ns` on `mongo` (with its Secret), applied.
pub async fn create_project(
    client: &Client,
    ns: &str,
    name: &str,
    mongo: &FerretDb,
) -> anyhow::Result<ArgonProject> {
    store_secret(client, ns, &format!("{name}-store"), mongo.uri()).await?;
    let api: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
    Ok(api
        .create(&PostParams::default(), &ProjectFixture::test(name).build())
        .await?)
}

/// The notes of events about `name` in `ns` with `reason`.
pub async fn event_notes(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&kube::api::ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .map(|e| e.note.unwrap_or_default())
        .collect())
}

/// Whether branch `b`'s condition `type_` has status `status` and reason `reason`.
pub fn has_condition(b: &ArgonBranch, type_: &str, status: &str, reason: &str) -> bool {
    condition(b, type_).is_some_and(|c| c.status == status && c.reason == reason)
}

/// A TLS connection to `127.0.0.1:port` as a client of `name` would make
/// it, trusting only `ca_bundle`: it fails unless the server's certificate
/// verifies for that name.
async fn tls_connect(
    port: u16,
    name: &str,
    ca_bundle: &str,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_bundle.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    Ok(connector
        .connect(ServerName::try_from(name.to_string())?, tcp)
        .await?)
}

/// Connects to the TLS server at `127.0.0.1:port` as a client of `name`
/// would, trusting only `ca_bundle`; returns the leaf certificate it served.
/// The handshake fails unless the certificate verifies for that name.
pub async fn served_cert(
    port: u16,
    name: &str,
    ca_bundle: &str,
) -> anyhow::Result<CertificateDer<'static>> {
    let tls = tls_connect(port, name, ca_bundle).await?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or_else(|| anyhow::anyhow!("no certificate served"))
}

/// Sends one HTTP/1.1 request over TLS to 127.0.0.1:`port` (trusting only
/// `ca_bundle`, for the name 127.0.0.1) and returns the status code and
/// body; for requests no well-behaved client (the apiserver) would send.
pub async fn raw_https(
    port: u16,
    ca_bundle: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(port, "127.0.0.1", ca_bundle).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await?;
    // A server may answer (and close) before reading a body it refuses.
    let _ = tls.write_all(body).await;
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply).await;
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no HTTP status in {:?}",
                text.chars().take(200).collect::<String>()
            )
        })?;
    let body = match text.find("\r\n\r\n") {
        Some(at) => reply[at + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((status, body))
}

/// Creates `branches` (`in_flight` create requests at a time, as a GitOps
/// controller applying a directory would).
pub async fn create_branches(
    api: &Api<ArgonBranch>,
    branches: Vec<ArgonBranch>,
    in_flight: usize,
) -> anyhow::Result<()> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::iter(branches)
        .map(|b| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &b).await }
        })
        .buffer_unordered(in_flight)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Waits until `n` branches of `api` are in phase Ready.
pub async fn wait_ready(api: &Api<ArgonBranch>, n: usize, within: Duration) -> anyhow::Result<()> {
    wait_until(&format!("{n} branches Ready"), within, || async {
        let list = api.list(&kube::api::ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .filter(|b| phase(b) == Some("Ready"))
            .count()
            == n)
    })
    .await?;
    Ok(())
}

/// How many requests with `verb` on `resource` (of API group `group`, "" for
/// the core group) the apiserver has answered, from its own
/// `apiserver_request_total` counter.
pub async fn apiserver_requests(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
) -> anyhow::Result<u64> {
    let request = hyper::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let labels = [
        format!("verb=\"{verb}\""),
        format!("group=\"{group}\""),
        format!("resource=\"{resource}\""),
    ];
    let mut total = 0u64;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((set, value)) = rest.split_once("} ") else {
            continue;
        };
        let set: Vec<&str> = set.split(',').collect();
        if labels.iter().all(|l| set.contains(&l.as_str())) {
            total += value.trim().parse::<f64>()? as u64;
        }
    }
    Ok(total)
}
