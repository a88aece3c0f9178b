//! The shared cluster: brought up once per test run by `tests/cluster up`
//! (or reused when it runs), the images built from this build's binaries and
//! imported into its containerd, the chart installed from its defaults. And
//! what the scenarios do on it: namespaces, FerretDB as a pod, manifests
//! applied as a user would, client pods, polling waits.
//!
//! Any step that fails makes every scenario fail with its message: a
//! machine that cannot run containers fails the run, it never skips.

#![allow(dead_code)]

use anyhow::Context;
use argon_operator::crd::ArgonBranch;
use argon_testkit::assets;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a pod, branch or rollout may take on a busy two-core machine.
pub const WAIT: Duration = Duration::from_secs(180);
pub const RELEASE: &str = "argon";
pub const OPERATOR_NAMESPACE: &str = "argon-system";

pub struct Cluster {
    pub kubeconfig: PathBuf,
    /// The tag every test image carries (the chart's appVersion).
    pub version: String,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The cluster, with Argon's images imported and the chart installed. The
/// first caller does the work (the others wait for it); a failure is
/// reported to every caller.
pub fn cluster() -> anyhow::Result<&'static Cluster> {
    CLUSTER
        .get_or_init(|| setup().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the test cluster (tests/cluster) is not usable: {e}"))
}

fn setup() -> anyhow::Result<Cluster> {
    let started = Instant::now();
    let root = assets::workspace_root();
    let state = cluster_dir();
    run_logged(
        Command::new(root.join("tests/cluster"))
            .arg("up")
            .env("ARGON_TEST_CACHE", assets::cache_dir())
            .env("ARGON_CLUSTER_DIR", &state),
        "tests/cluster up",
    )?;
    eprintln!("e2e: cluster up after {:?}", started.elapsed());
    let version = app_version()?;
    let cluster = Cluster {
        kubeconfig: state.join("kubeconfig"),
        version,
    };
    cluster.load_images(&state)?;
    eprintln!("e2e: images imported after {:?}", started.elapsed());
    cluster.install_chart()?;
    eprintln!("e2e: chart installed after {:?}", started.elapsed());
    Ok(cluster)
}

/// Polls `check` until it returns `Ok(Ok(value))`, for at most [`WAIT`].
/// `Ok(Err(state))` means "not yet" and says what it saw; on timeout the
/// error holds the last state or error, so a failure explains itself.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    const CHECK_LIMIT: Duration = Duration::from_secs(20);
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match tokio::time::timeout(CHECK_LIMIT, check()).await {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(state))) => state,
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("a check did not return within {CHECK_LIMIT:?}"),
        };
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {WAIT:?} waiting for {what}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `$ARGON_CLUSTER_DIR`, or `<test cache>/cluster` as tests/cluster has it.
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("ARGON_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| assets::cache_dir().join("cluster"))
}

fn app_version() -> anyhow::Result<String> {
    let chart = std::fs::read_to_string(assets::workspace_root().join("charts/argon/Chart.yaml"))?;
    chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or_else(|| anyhow::anyhow!("charts/argon/Chart.yaml has no appVersion"))
}

/// Runs `command`; on failure the error holds its output (the reason).
fn run_logged(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        tail(&stdout, 40),
        tail(&stderr, 40)
    );
    Ok(stdout)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Fails unless `binary` exists and is newer than every source it is built
/// from (the `src` directories and manifests of `crates`). Cargo.lock is left
/// out: a change there rebuilds nothing unless it touches these crates'
/// dependencies, which comes with a manifest change.
fn current_binary(binary: &Path, crates: &[&str]) -> anyhow::Result<()> {
    let package = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let build = format!(
        "cargo test --workspace (or cargo build -p {package} before cargo test -p argon-e2e)"
    );
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .map_err(|e| anyhow::anyhow!("no {} ({e}): run {build}", binary.display()))?;
    let root = assets::workspace_root();
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut consider = |path: PathBuf| {
        if let Ok(t) = std::fs::metadata(&path).and_then(|m| m.modified())
            && newest.as_ref().is_none_or(|(n, _)| t > *n)
        {
            newest = Some((t, path));
        }
    };
    for krate in crates {
        consider(root.join(krate).join("Cargo.toml"));
        let mut dirs = vec![root.join(krate).join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)?.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    consider(path);
                }
            }
        }
    }
    if let Some((time, source)) = newest {
        anyhow::ensure!(
            time <= built,
            "{} is older than {}: run {build}",
            binary.display(),
            source.display()
        );
    }
    Ok(())
}

/// The directory the cargo build put this crate's binary in: the operator's
/// and the sidecar's are beside it.
fn bin_dir() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_BIN_EXE_argon-e2e-client"))
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("the client binary has no directory"))
}

impl Cluster {
    /// Builds the operator, sidecar, FerretDB and client images from this
    /// build's binaries (debug ones: no extra release build in CI; their debug
    /// sections left out) and imports them into the node's containerd.
    fn load_images(&self, state: &Path) -> anyhow::Result<()> {
        let root = assets::workspace_root();
        let bins = bin_dir()?;
        // Cargo holds its build lock while tests run, so the binaries cannot
        // be built from here: `cargo test --workspace` has built them (the
        // operator's and sidecar's own tests need them); after a narrower
        // build they may be missing or older than their sources.
        for (binary, crates) in [
            ("argon-operator", ["operator", "sidecar/wal"]),
            ("argon-sidecar", ["sidecar/server", "sidecar/wal"]),
        ] {
            current_binary(&bins.join(binary), &crates)?;
        }
        let out = state.join("images");
        let ferretdb = assets::ferretdb()?;
        let client = PathBuf::from(env!("CARGO_BIN_EXE_argon-e2e-client"));
        run_logged(
            Command::new("python3")
                .arg(root.join("tests/infra/images"))
                .arg("--out")
                .arg(&out)
                .args(["--strip-debug", "--fast", "--operator"])
                .arg(bins.join("argon-operator"))
                .arg("--sidecar")
                .arg(bins.join("argon-sidecar"))
                .arg(format!("--binary=ferretdb={}", ferretdb.display()))
                .arg(format!("--binary=argon-e2e-client={}", client.display())),
            "tests/infra/images",
        )?;
        let mut import = Command::new(root.join("tests/cluster"));
        import
            .arg("import")
            .env("ARGON_TEST_CACHE", assets::cache_dir())
            .env("ARGON_CLUSTER_DIR", state);
        for name in [
            "argon-operator",
            "argon-sidecar",
            "ferretdb",
            "argon-e2e-client",
        ] {
            import.arg(out.join(format!("{name}-{}.oci.tar", self.version)));
        }
        run_logged(&mut import, "tests/cluster import")?;
        Ok(())
    }

    /// `helm install` from the chart's defaults, as a user runs it. A release
    /// left by an earlier run on a kept cluster is uninstalled first, so the
    /// operator runs this build's image.
    pub fn install_chart(&self) -> anyhow::Result<()> {
        let chart = assets::workspace_root().join("charts/argon");
        if self
            .helm(&["status", RELEASE, "-n", OPERATOR_NAMESPACE])
            .is_ok()
        {
            self.helm(&[
                "uninstall",
                RELEASE,
                "-n",
                OPERATOR_NAMESPACE,
                "--wait",
                "--timeout",
                "3m",
            ])?;
        }
        let installed = self.helm(&[
            "install",
            RELEASE,
            &chart.to_string_lossy(),
            "-n",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
        ]);
        if let Err(e) = installed {
            let pods = self
                .kubectl(&["get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide"])
                .unwrap_or_default();
            let logs = self
                .kubectl(&[
                    "logs",
                    "-n",
                    OPERATOR_NAMESPACE,
                    "-l",
                    "app.kubernetes.io/name=argon-operator",
                    "--tail=30",
                    "--all-containers",
                ])
                .unwrap_or_default();
            anyhow::bail!("{e:#}\npods:\n{pods}\noperator logs:\n{logs}");
        }
        Ok(())
    }

    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        run_logged(
            Command::new(assets::helm()?)
                .args(args)
                .env("KUBECONFIG", &self.kubeconfig),
            &format!("helm {}", args.join(" ")),
        )
    }

    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        run_logged(
            Command::new(assets::kubectl()?)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            &format!("kubectl {}", args.join(" ")),
        )
    }

    /// `kubectl apply --server-side` of `yaml` (as a GitOps controller applies).
    pub fn apply(&self, namespace: &str, yaml: &str) -> anyhow::Result<String> {
        let mut child = Command::new(assets::kubectl()?)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args([
                "apply",
                "--server-side",
                "--field-manager=argon-e2e",
                "-n",
                namespace,
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("kubectl's stdin")?
            .write_all(yaml.as_bytes())?;
        let output = child.wait_with_output()?;
        anyhow::ensure!(
            output.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        let config = kube::Config::from_custom_kubeconfig(
            Kubeconfig::read_from(&self.kubeconfig)?,
            &KubeConfigOptions::default(),
        )
        .await?;
        Ok(Client::try_from(config)?)
    }

    pub fn image(&self, name: &str) -> String {
        format!("{name}:{}", self.version)
    }

    /// A namespace of its own for one scenario (unique per test run, so a
    /// kept cluster never hands a test an old one), deleted when dropped.
    pub fn namespace(&'static self, base: &str) -> anyhow::Result<Namespace> {
        let name = format!("{base}-{}", std::process::id());
        self.kubectl(&["create", "namespace", &name])?;
        Ok(Namespace {
            name,
            cluster: self,
        })
    }

    /// FerretDB as a Deployment + Service `ferretdb` in `ns`, and Secret
    /// `store` holding its URI (by the Service's DNS name) under `uri`.
    pub async fn ferretdb(&self, ns: &str) -> anyhow::Result<String> {
        let uri = format!("mongodb://ferretdb.{ns}.svc.cluster.local:27017/");
        let image = self.image("ferretdb");
        self.apply(
            ns,
            &format!(
                r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: ferretdb}}
spec:
  selector: {{matchLabels: {{app: ferretdb}}}}
  template:
    metadata: {{labels: {{app: ferretdb}}}}
    spec:
      containers:
      - name: ferretdb
        image: {image}
        imagePullPolicy: IfNotPresent
        ports: [{{name: mongodb, containerPort: 27017}}]
        readinessProbe: {{tcpSocket: {{port: mongodb}}, periodSeconds: 1}}
        volumeMounts: [{{name: data, mountPath: /tmp}}]
      volumes: [{{name: data, emptyDir: {{}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: ferretdb}}
spec:
  selector: {{app: ferretdb}}
  ports: [{{name: mongodb, port: 27017, targetPort: mongodb}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: store}}
stringData: {{uri: "{uri}"}}
"#
            ),
        )?;
        let client = self.client().await?;
        wait_pods_ready(&client, ns, "app=ferretdb", 1).await?;
        Ok(uri)
    }

    /// Runs the client image with `args` as a pod in `ns` and returns the
    /// JSON line it printed last; fails with its log when it fails.
    pub async fn run_client(
        &self,
        ns: &str,
        name: &str,
        args: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        self.run_client_labelled(ns, name, "{}", args).await
    }

    /// [`Cluster::run_client`] for a pod with `labels` (a YAML flow map).
    pub async fn run_client_labelled(
        &self,
        ns: &str,
        name: &str,
        labels: &str,
        args: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        self.run_client_pod(ns, name, labels, None, args).await
    }

    /// [`Cluster::run_client`] with the Secret `secret` mounted at
    /// `/etc/argon-app` (the client's `secret:/etc/argon-app` URI reads it).
    pub async fn run_client_mounting(
        &self,
        ns: &str,
        name: &str,
        secret: &str,
        args: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        self.run_client_pod(ns, name, "{}", Some(secret), args)
            .await
    }

    async fn run_client_pod(
        &self,
        ns: &str,
        name: &str,
        labels: &str,
        secret: Option<&str>,
        args: &[&str],
    ) -> anyhow::Result<serde_json::Value> {
        let args_json = serde_json::to_string(args)?;
        let image = self.image("argon-e2e-client");
        let (mount, volume) = match secret {
            Some(secret) => (
                "\n    volumeMounts: [{name: app, mountPath: /etc/argon-app, readOnly: true}]"
                    .to_string(),
                format!("\n  volumes: [{{name: app, secret: {{secretName: {secret}}}}}]"),
            ),
            None => (String::new(), String::new()),
        };
        self.apply(
            ns,
            &format!(
                r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {labels}}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: {image}
    imagePullPolicy: IfNotPresent
    args: {args_json}{mount}{volume}
"#
            ),
        )?;
        let client = self.client().await?;
        let pods: Api<Pod> = Api::namespaced(client, ns);
        let phase = eventually(&format!("client pod {name} to finish"), || {
            let pods = pods.clone();
            async move {
                let pod = pods.get(name).await?;
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                Ok(match phase.as_deref() {
                    Some("Succeeded" | "Failed") => Ok(phase.unwrap_or_default()),
                    _ => Err(pod_summary(&pod)),
                })
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", describe_pod(&self.kubectl_ns(ns), name)))?;
        let log = pods.logs(name, &LogParams::default()).await?;
        anyhow::ensure!(
            phase == "Succeeded",
            "client pod {name} ({}) {phase}:\n{log}",
            args.join(" ")
        );
        last_json(&log).with_context(|| format!("client pod {name} printed no result:\n{log}"))
    }

    fn kubectl_ns(&self, ns: &str) -> impl Fn(&[&str]) -> String + '_ {
        let ns = ns.to_string();
        move |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            self.kubectl(&all).unwrap_or_else(|e| format!("{e:#}"))
        }
    }
}

fn describe_pod(kubectl: &impl Fn(&[&str]) -> String, name: &str) -> String {
    kubectl(&["describe", "pod", name])
}

/// The last line of `log` that parses as a JSON object.
pub fn last_json(log: &str) -> Option<serde_json::Value> {
    log.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(serde_json::Value::is_object)
}

/// Waits until `count` pods matching `selector` in `ns` are Ready.
pub async fn wait_pods_ready(
    client: &Client,
    ns: &str,
    selector: &str,
    count: usize,
) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually(&format!("{count} Ready pod(s) {selector} in {ns}"), || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels(selector)).await?;
            let seen = list
                .items
                .iter()
                .map(pod_summary)
                .collect::<Vec<_>>()
                .join("; ");
            let ready: Vec<Pod> = list.items.into_iter().filter(is_ready).collect();
            Ok(if ready.len() >= count {
                Ok(ready)
            } else {
                Err(format!("pods: [{seen}]"))
            })
        }
    })
    .await
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Name, phase and each container's state: what a failed wait shows.
pub fn pod_summary(pod: &Pod) -> String {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let Some(status) = &pod.status else {
        return format!("{name}: no status");
    };
    let containers: Vec<String> = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .map(|c| {
            let state = c.state.as_ref().map_or("unknown".to_string(), |s| {
                if let Some(w) = &s.waiting {
                    format!("waiting {}", w.reason.clone().unwrap_or_default())
                } else if let Some(t) = &s.terminated {
                    format!("terminated {}", t.reason.clone().unwrap_or_default())
                } else {
                    "running".to_string()
                }
            });
            format!(
                "{} {state} ready={} restarts={}",
                c.name, c.ready, c.restart_count
            )
        })
        .collect();
    format!(
        "{name} {} [{}]",
        status.phase.clone().unwrap_or_default(),
        containers.join(", ")
    )
}

/// A scenario's namespace; deleted (without waiting) when dropped.
pub struct Namespace {
    pub name: String,
    cluster: &'static Cluster,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if std::env::var_os("ARGON_E2E_KEEP").is_some() {
            eprintln!("e2e: ARGON_E2E_KEEP set: namespace {} kept", self.name);
            return;
        }
        let _ = self
            .cluster
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// An `ArgonProject` named `name` on the mongodb store of Secret `store`.
pub fn project_yaml(name: &str) -> String {
    format!(
        r#"
apiVersion: argon.dev/v1alpha1
kind: ArgonProject
metadata: {{name: {name}}}
spec:
  store:
    mongodb:
      secretRef: {{name: store, key: uri}}
      database: argon_{db}
"#,
        db = name.replace('-', "_")
    )
}

/// An `ArgonBranch` of `main` in `project`, with a plain endpoint that does
/// not demand authentication (these scenarios are about the data path; an
/// authenticated endpoint and its connection Secret are `app_secret.rs`'s;
/// endpoint TLS is tested against the apiserver in
/// `operator/tests/it/endpoint_tls.rs`).
pub fn branch_yaml(name: &str, project: &str) -> String {
    format!(
        r#"
apiVersion: argon.dev/v1alpha1
kind: ArgonBranch
metadata: {{name: {name}}}
spec:
  project: {project}
  parent: main
  endpoint: {{enabled: true, auth: false, tls: false}}
"#
    )
}

/// Waits until ArgonBranch `name` is Ready (with its endpoint in `status`
/// when it has one).
pub async fn wait_branch_ready(
    cluster: &Cluster,
    ns: &str,
    name: &str,
) -> anyhow::Result<ArgonBranch> {
    let client = cluster.client().await?;
    let api: Api<ArgonBranch> = Api::namespaced(client, ns);
    eventually(&format!("ArgonBranch {ns}/{name} Ready"), || {
        let api = api.clone();
        async move {
            let branch = api.get(name).await?;
            let wants_endpoint = branch.spec.endpoint.enabled;
            let ready = branch.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Ready") && (!wants_endpoint || s.endpoint.is_some())
            });
            Ok(if ready {
                Ok(branch)
            } else {
                Err(format!("status: {:?}", branch.status))
            })
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\noperator log:\n{}", cluster.operator_logs()))
}

/// Waits until the endpoint of ArgonBranch `branch` has a Ready pod.
pub async fn wait_endpoint_ready(cluster: &Cluster, ns: &str, branch: &str) -> anyhow::Result<()> {
    let client = cluster.client().await?;
    wait_pods_ready(
        &client,
        ns,
        &format!("argon.dev/branch={branch},app.kubernetes.io/component=branch-endpoint"),
        1,
    )
    .await?;
    wait_service_routes(&client, ns, &argon_operator::endpoint::object_name(branch)).await
}

/// Waits until the Service `name` answers a MongoDB `hello` from this node:
/// a Ready pod is not yet a routed Service, kube-proxy programs its rules a
/// moment later, and until then a client in a pod is refused (see
/// `keep_cluster_addresses_inside` in tests/cluster). Scenarios wait here so
/// that what they assert is about Argon, not about that moment.
pub async fn wait_service_routes(client: &Client, ns: &str, name: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Service;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    eventually(&format!("Service {ns}/{name} answering hello"), || {
        let services = services.clone();
        async move {
            let service = services.get(name).await?;
            let Some(ip) = service.spec.and_then(|s| s.cluster_ip) else {
                return Ok(Err("no cluster IP yet".to_string()));
            };
            let port = argon_operator::endpoint::MONGODB_PORT;
            Ok(match hello_at(&ip, port).await {
                Ok(()) => Ok(()),
                // A TLS endpoint closes a plain connection: ask over TLS.
                Err(plain) => match tls_hello_at(&ip, port).await {
                    Ok(()) => Ok(()),
                    Err(tls) => Err(format!("{ip}: plain: {plain:#}; TLS: {tls:#}")),
                },
            })
        }
    })
    .await
}

/// `hello` over TLS with the Rust driver. The certificate is not checked:
/// this asks only whether the Service routes to a serving pod (scenarios
/// check certificates with clients that trust the operator's CA).
async fn tls_hello_at(ip: &str, port: i32) -> anyhow::Result<()> {
    let uri = format!(
        "mongodb://{ip}:{port}/?directConnection=true&tls=true&tlsInsecure=true&serverSelectionTimeoutMS=2000"
    );
    let client = mongodb::Client::with_uri_str(&uri).await?;
    client
        .database("admin")
        .run_command(bson::doc! {"hello": 1})
        .await?;
    Ok(())
}

/// One OP_MSG `hello` over a fresh connection; Ok when the reply is an
/// OP_MSG (whatever else answers, an HTTP proxy say, is an error).
async fn hello_at(ip: &str, port: i32) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const OP_MSG: i32 = 2013;
    let mut stream = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect((ip, u16::try_from(port)?)),
    )
    .await
    .context("connect timed out")??;
    let mut body = Vec::new();
    bson::doc! { "hello": 1, "$db": "admin" }.to_writer(&mut body)?;
    let length = i32::try_from(16 + 4 + 1 + body.len())?;
    let mut message = Vec::with_capacity(usize::try_from(length)?);
    for field in [length, 1, 0, OP_MSG, 0] {
        message.extend_from_slice(&field.to_le_bytes());
    }
    message.push(0);
    message.extend_from_slice(&body);
    stream.write_all(&message).await?;
    let mut header = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut header))
        .await
        .context("no reply within 2 s")??;
    let opcode = i32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    anyhow::ensure!(
        opcode == OP_MSG,
        "the reply is no OP_MSG: {:?}",
        String::from_utf8_lossy(&header)
    );
    Ok(())
}

impl Cluster {
    /// The last lines of every operator pod's log (for failure messages).
    pub fn operator_logs(&self) -> String {
        self.kubectl(&[
            "logs",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            "app.kubernetes.io/name=argon-operator",
            "--tail=15",
            "--prefix",
        ])
        .unwrap_or_else(|e| format!("{e:#}"))
        .lines()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
    }
}

/// Scenarios that disrupt the whole cluster (the operator killed) run alone:
/// they hold this exclusively, every other scenario holds it shared.
static DISRUPTION: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A scenario's hold on the cluster; prints how long the scenario took
/// (for the record: nothing asserts on it).
pub struct Turn<G> {
    _guard: G,
    started: Instant,
}

impl<G> Drop for Turn<G> {
    fn drop(&mut self) {
        let name = std::thread::current()
            .name()
            .unwrap_or("scenario")
            .to_string();
        eprintln!("e2e: {name} took {:?}", self.started.elapsed());
    }
}

pub async fn shared() -> Turn<tokio::sync::RwLockReadGuard<'static, ()>> {
    let guard = DISRUPTION.read().await;
    Turn {
        _guard: guard,
        started: Instant::now(),
    }
}

pub async fn exclusive() -> Turn<tokio::sync::RwLockWriteGuard<'static, ()>> {
    let guard = DISRUPTION.write().await;
    Turn {
        _guard: guard,
        started: Instant::now(),
    }
}

impl Cluster {
    /// `ctr` against the node's containerd (namespace k8s.io).
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<String> {
        run_logged(
            Command::new(assets::workspace_root().join("tests/cluster"))
                .arg("ctr")
                .args(args)
                .env("ARGON_TEST_CACHE", assets::cache_dir())
                .env("ARGON_CLUSTER_DIR", cluster_dir()),
            &format!("tests/cluster ctr {}", args.join(" ")),
        )
    }

    /// The log of container `container` of pod `pod`.
    pub async fn log(&self, ns: &str, pod: &str, container: &str) -> anyhow::Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client().await?, ns);
        Ok(pods
            .logs(
                pod,
                &LogParams {
                    container: Some(container.into()),
                    ..LogParams::default()
                },
            )
            .await?)
    }
}

/// The status of container `name` (init containers included) of `pod`.
pub fn container_status(
    pod: &Pod,
    name: &str,
) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    let status = pod.status.as_ref()?;
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

/// The tables `kubectl get` printed (several kinds print one table each,
/// separated by a blank line): per table, one map per row from column name
/// to cell. Cells are cut at the header's column starts, as kubectl aligns
/// them, so an empty cell reads as "" (column names hold no spaces).
pub fn kubectl_tables(out: &str) -> Vec<Vec<std::collections::BTreeMap<String, String>>> {
    let mut tables = Vec::new();
    for block in out.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut lines = block.lines();
        let Some(header) = lines.next() else { continue };
        let mut starts = Vec::new();
        let mut previous = ' ';
        for (i, c) in header.char_indices() {
            if c != ' ' && previous == ' ' {
                starts.push(i);
            }
            previous = c;
        }
        let names: Vec<String> = header.split_whitespace().map(String::from).collect();
        let rows = lines
            .map(|line| {
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        let from = starts[i].min(line.len());
                        let to = starts.get(i + 1).map_or(line.len(), |&e| e.min(line.len()));
                        (
                            name.clone(),
                            line.get(from..to).unwrap_or("").trim().to_string(),
                        )
                    })
                    .collect()
            })
            .collect();
        tables.push(rows);
    }
    tables
}

/// `kubectl port-forward` to `target` (e.g. `svc/abr-feature`) in `ns`,
/// on a free local port; stopped on drop.
pub struct PortForward {
    child: std::process::Child,
    pub port: u16,
}

impl Cluster {
    pub fn port_forward(&self, ns: &str, target: &str, remote: u16) -> anyhow::Result<PortForward> {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(assets::kubectl()?)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["port-forward", "-n", ns, "--address", "127.0.0.1", target])
            .arg(format!(":{remote}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting kubectl port-forward")?;
        let stdout = child
            .stdout
            .take()
            .context("kubectl port-forward's stdout")?;
        // "Forwarding from 127.0.0.1:41234 -> 27017"
        let mut lines = BufReader::new(stdout).lines();
        let port = lines
            .next()
            .transpose()
            .context("reading kubectl port-forward")?
            .and_then(|line| {
                line.strip_prefix("Forwarding from 127.0.0.1:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
        let Some(port) = port else {
            let _ = child.kill();
            anyhow::bail!("kubectl port-forward to {target} in {ns} printed no local port");
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(PortForward { child, port })
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
