//! Benchmarks on the real single-node cluster (`tests/cluster`), with
//! images from this build's release binaries: not a test (nothing here
//! asserts a timing). Run through `bench/cluster`, which writes the table
//! into `docs/benchmarks.md`.
//!
//! Measured side by side in one run: `helm install` to operator Ready;
//! `ArgonBranch` applied to endpoint pod Ready (20, one at a time); an
//! injected pod's start-up against the same pod uninjected; the RSS of the
//! operator and of sidecars in their pods; 200 branches without endpoints
//! created at once (32 requests in flight) to phase Ready; 50 branches with endpoints applied at
//! once to all endpoint pods Ready, beside 50 plain pods of the same image
//! (same probe) applied at the same moment.
//!
//! ```text
//! cargo bench -p argon-e2e --bench cluster -- --out FILE
//! ```

#[path = "../tests/cluster/support.rs"]
mod support;

use anyhow::Context;
use argon_operator::crd::ArgonBranch;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use support::{
    OPERATOR_NAMESPACE, RELEASE, branch_yaml, cluster, container_status, is_ready, project_yaml,
    wait_endpoint_ready, wait_pods_ready,
};

const OPERATOR_PODS: &str = "app.kubernetes.io/name=argon-operator";
const POLL: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(600);

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out = None;
    let mut burst_runs = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next(),
            // Only the 200 branches, `n` times (by hand, when working on
            // the operator; nothing is written).
            "--burst-only" => burst_runs = args.next().and_then(|n| n.parse::<usize>().ok()),
            _ => {}
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Some(runs) = burst_runs {
        return runtime.block_on(bursts(runs));
    }
    let table = runtime.block_on(run())?;
    print!("{table}");
    if let Some(path) = out {
        std::fs::write(&path, &table).with_context(|| format!("writing {path}"))?;
    }
    Ok(())
}

/// `--burst-only n`: the 200 branches `n` times, each in a fresh namespace.
async fn bursts(runs: usize) -> anyhow::Result<()> {
    let cluster = cluster()?;
    let client = cluster.client().await?;
    let mut namespaces = Vec::new();
    for run in 0..runs {
        let (namespace, applied, times) =
            burst(cluster, &client, &format!("bench-burst-{run}")).await?;
        namespaces.push(namespace);
        println!(
            "burst {run}: creates {}, Ready median {}, p99 {}, all {}",
            ms(applied),
            ms(median(&times)),
            ms(quantile(&times, 0.99)),
            ms(quantile(&times, 1.0))
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// The value at quantile `q` (nearest rank) of `values`.
fn quantile(values: &[Duration], q: f64) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(values: &[Duration]) -> Duration {
    quantile(values, 0.5)
}

/// Resident memory (VmRSS, MiB) of the process of container `container`
/// of `pod`, read from this machine's /proc (the node is this machine).
fn rss_mib(cluster: &support::Cluster, pod: &Pod, container: &str) -> anyhow::Result<f64> {
    let id = container_status(pod, container)
        .and_then(|s| s.container_id)
        .and_then(|id| id.strip_prefix("containerd://").map(String::from))
        .ok_or_else(|| anyhow::anyhow!("{container} has no containerd id"))?;
    let tasks = cluster.ctr(&["tasks", "ls"])?;
    let pid = tasks
        .lines()
        .find_map(|l| {
            let mut cells = l.split_whitespace();
            (cells.next() == Some(id.as_str())).then(|| cells.next().map(String::from))?
        })
        .ok_or_else(|| anyhow::anyhow!("no task {id}"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))?;
    Ok(kib / 1024.0)
}

/// When each of `names` was first seen satisfying `ready`, from `started`.
async fn first_ready<K, F>(
    api: &Api<K>,
    selector: &str,
    names: &[String],
    started: Instant,
    ready: F,
) -> anyhow::Result<BTreeMap<String, Duration>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> Option<String>,
{
    let mut seen = BTreeMap::new();
    while seen.len() < names.len() {
        anyhow::ensure!(
            started.elapsed() < LIMIT,
            "only {} of {} ready after {LIMIT:?}",
            seen.len(),
            names.len()
        );
        let params = if selector.is_empty() {
            ListParams::default()
        } else {
            ListParams::default().labels(selector)
        };
        let list = api.list(&params).await?;
        let now = started.elapsed();
        for item in &list.items {
            if let Some(name) = ready(item)
                && names.contains(&name)
            {
                seen.entry(name).or_insert(now);
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(seen)
}

fn branch_phase_ready(b: &ArgonBranch) -> Option<String> {
    (b.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready"))
        .then(|| b.metadata.name.clone())
        .flatten()
}

/// A Ready pod's key: its branch label (endpoint pods) or its name.
fn ready_pod_key(pod: &Pod) -> Option<String> {
    if !is_ready(pod) {
        return None;
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    labels
        .get("argon.dev/branch")
        .cloned()
        .or_else(|| pod.metadata.name.clone())
}

/// Waits until ArgonProject `shop` in `ns` is Ready.
async fn project_ready(client: &kube::Client, ns: &str) -> anyhow::Result<()> {
    let projects: Api<argon_operator::crd::ArgonProject> = Api::namespaced(client.clone(), ns);
    support::eventually("the project Ready", || {
        let projects = projects.clone();
        async move {
            let p = projects.get("shop").await?;
            Ok(match p.status.and_then(|s| s.phase).as_deref() {
                Some("Ready") => Ok(()),
                other => Err(format!("{other:?}")),
            })
        }
    })
    .await
}

/// 200 branches without endpoints created at once in a fresh `namespace`
/// (its own FerretDB and project): how long the creates took, and when
/// each branch was first seen Ready, from the first create. The namespace
/// is deleted when the caller drops it, not while other work is timed.
async fn burst(
    cluster: &'static support::Cluster,
    client: &kube::Client,
    namespace: &str,
) -> anyhow::Result<(support::Namespace, Duration, Vec<Duration>)> {
    let guard = cluster.namespace(namespace)?;
    let many = guard.name.as_str();
    cluster.ferretdb(many).await?;
    cluster.apply(many, &project_yaml("shop"))?;
    let many_branches: Api<ArgonBranch> = Api::namespaced(client.clone(), many);
    project_ready(client, many).await?;
    let names: Vec<String> = (0..200).map(|i| format!("n{i:03}")).collect();
    let branches: Vec<ArgonBranch> = names
        .iter()
        .map(|n| {
            serde_yaml::from_str(&format!(
                "apiVersion: argon.dev/v1alpha1\nkind: ArgonBranch\nmetadata: {{name: {n}}}\nspec: {{project: shop, parent: main, endpoint: {{enabled: false}}}}\n"
            ))
        })
        .collect::<Result<_, _>>()?;
    // Watched from before the first create: a branch Ready while others
    // are still being created is seen then (polling after the creates
    // recorded every branch at the first list after the last create).
    let (events, mut changes) = futures::channel::mpsc::unbounded();
    let watch = tokio::spawn(
        kube::runtime::watcher(
            many_branches.clone(),
            kube::runtime::watcher::Config::default(),
        )
        .for_each(move |event| {
            let _ = events.unbounded_send((Instant::now(), event));
            futures::future::ready(())
        }),
    );
    // The watch's initial list, so no change is missed.
    while let Some((_, event)) = changes.next().await {
        if matches!(event, Ok(kube::runtime::watcher::Event::InitDone)) {
            break;
        }
    }
    let started = Instant::now();
    let created: Vec<kube::Result<ArgonBranch>> = futures::stream::iter(branches)
        .map(|b| {
            let api = many_branches.clone();
            async move { api.create(&kube::api::PostParams::default(), &b).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for c in created {
        c?;
    }
    let applied = started.elapsed();
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    while seen.len() < names.len() {
        let next = tokio::time::timeout_at((started + LIMIT).into(), changes.next()).await;
        let Ok(Some((at, event))) = next else {
            anyhow::bail!(
                "only {} of {} branches Ready after {LIMIT:?}",
                seen.len(),
                names.len()
            );
        };
        if let Ok(kube::runtime::watcher::Event::Apply(b)) = event
            && let Some(name) = branch_phase_ready(&b)
        {
            seen.entry(name).or_insert(at.duration_since(started));
        }
    }
    watch.abort();
    let many_times: Vec<Duration> = seen.values().copied().collect();
    eprintln!(
        "bench: 200 branches, all Ready after {:?}",
        quantile(&many_times, 1.0)
    );
    Ok((guard, applied, many_times))
}

async fn run() -> anyhow::Result<String> {
    let cluster = cluster()?;
    let client = cluster.client().await?;
    let chart = argon_testkit::assets::workspace_root().join("charts/argon");
    let mut table = String::new();

    // 1. helm install to operator Ready, from nothing (the operator also
    //    makes its webhook CA and certificate each time).
    let mut installs = Vec::new();
    for _ in 0..3 {
        cluster.helm(&[
            "uninstall",
            RELEASE,
            "-n",
            OPERATOR_NAMESPACE,
            "--wait",
            "--timeout",
            "3m",
        ])?;
        let _ = cluster.kubectl(&[
            "delete",
            "secret",
            "-n",
            OPERATOR_NAMESPACE,
            &format!("{RELEASE}-operator-webhook-tls"),
            "--ignore-not-found",
        ]);
        let started = Instant::now();
        cluster.helm(&[
            "install",
            RELEASE,
            &chart.to_string_lossy(),
            "-n",
            OPERATOR_NAMESPACE,
            "--wait",
            "--timeout",
            "5m",
        ])?;
        wait_pods_ready(&client, OPERATOR_NAMESPACE, OPERATOR_PODS, 2).await?;
        installs.push(started.elapsed());
    }
    eprintln!("bench: helm install {installs:?}");

    // 2. ArgonBranch applied to endpoint pod Ready, one at a time.
    let ns = cluster.namespace("bench-branches")?;
    let ns = ns.name.as_str();
    cluster.ferretdb(ns).await?;
    cluster.apply(ns, &project_yaml("shop"))?;
    project_ready(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), ns);
    let (mut to_phase, mut to_pod) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let name = format!("e{i:02}");
        let started = Instant::now();
        cluster.apply(ns, &branch_yaml(&name, "shop"))?;
        let names = [name.clone()];
        let phase = first_ready(&branches, "", &names, started, branch_phase_ready).await?;
        let selector =
            format!("argon.dev/branch={name},app.kubernetes.io/component=branch-endpoint");
        let pod = first_ready(&pods, &selector, &names, started, ready_pod_key).await?;
        to_phase.push(phase[&name]);
        to_pod.push(pod[&name]);
    }
    eprintln!("bench: branch to endpoint pod {to_pod:?}");

    // 3. An injected pod's start-up against the same pod uninjected.
    wait_endpoint_ready(cluster, ns, "e00").await?;
    let image = cluster.image("argon-e2e-client");
    let (mut plain, mut injected) = (Vec::new(), Vec::new());
    for i in 0..5 {
        for inject in [false, true] {
            let name = format!("{}-{i}", if inject { "injected" } else { "plain" });
            let meta = if inject {
                format!(
                    "{{name: {name}, labels: {{app: startup, argon.dev/inject: \"true\"}}, annotations: {{argon.dev/branch: e00}}}}"
                )
            } else {
                format!("{{name: {name}, labels: {{app: startup}}}}")
            };
            let started = Instant::now();
            cluster.apply(
                ns,
                &format!(
                    "apiVersion: v1\nkind: Pod\nmetadata: {meta}\nspec:\n  containers:\n  - {{name: app, image: {image}, imagePullPolicy: IfNotPresent, args: [idle]}}\n"
                ),
            )?;
            let names = [name.clone()];
            let ready = first_ready(&pods, "app=startup", &names, started, ready_pod_key).await?;
            if inject {
                injected.push(ready[&name]);
            } else {
                plain.push(ready[&name]);
            }
        }
    }
    eprintln!("bench: start-up plain {plain:?} injected {injected:?}");

    // 4. RSS: the operator (the leader: the one that reconciled all this),
    //    an endpoint's sidecar, an injected sidecar.
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let mut operator_rss = Vec::new();
    for pod in operator_pods
        .list(&ListParams::default().labels(OPERATOR_PODS))
        .await?
        .items
    {
        operator_rss.push(rss_mib(cluster, &pod, "operator")?);
    }
    let endpoint_pod = pods
        .list(
            &ListParams::default()
                .labels("argon.dev/branch=e00,app.kubernetes.io/component=branch-endpoint"),
        )
        .await?
        .items
        .into_iter()
        .next()
        .context("the endpoint pod of e00")?;
    let endpoint_rss = rss_mib(
        cluster,
        &endpoint_pod,
        argon_operator::endpoint::CONTAINER_NAME,
    )?;
    let injected_pod = pods.get("injected-0").await?;
    let injected_rss = rss_mib(
        cluster,
        &injected_pod,
        argon_operator::endpoint::CONTAINER_NAME,
    )?;

    // 5. 200 branches without endpoints, created at once: 32 create
    //    requests in flight, as a GitOps controller applying a directory
    //    does (one `kubectl apply` of 200 objects sends them one after
    //    another and took ~5 s by itself, which measured kubectl).
    let (_many, applied, many_times) = burst(cluster, &client, "bench-many").await?;

    // 6. 50 branches with endpoints beside 50 plain pods of the same image
    //    and probe, applied at the same moment (two kubectl applies, back
    //    to back; each group timed from its own apply).
    let fifty = cluster.namespace("bench-fifty")?;
    let fifty = fifty.name.as_str();
    cluster.ferretdb(fifty).await?;
    cluster.apply(fifty, &project_yaml("shop"))?;
    project_ready(&client, fifty).await?;
    let sidecar = cluster.image("argon-sidecar");
    let port = argon_operator::endpoint::METRICS_PORT;
    let plain_names: Vec<String> = (0..50).map(|i| format!("plain-{i:02}")).collect();
    let plain_yaml = plain_names
        .iter()
        .map(|n| {
            format!(
                r#"apiVersion: v1
kind: Pod
metadata: {{name: {n}, labels: {{app: plain}}}}
spec:
  containers:
  - name: sidecar
    image: {sidecar}
    imagePullPolicy: IfNotPresent
    args: [serve]
    env:
    - {{name: ARGON_DATA, value: /var/lib/argon}}
    - {{name: ARGON_LISTEN, value: "0.0.0.0:27017"}}
    - {{name: ARGON_METRICS_LISTEN, value: "0.0.0.0:{port}"}}
    ports: [{{name: argon-metrics, containerPort: {port}}}]
    readinessProbe: {{httpGet: {{path: /readyz, port: argon-metrics}}, periodSeconds: 5}}
    volumeMounts: [{{name: data, mountPath: /var/lib/argon}}]
  volumes: [{{name: data, emptyDir: {{}}}}]
"#
            )
        })
        .collect::<Vec<_>>()
        .join("---\n");
    let branch_names: Vec<String> = (0..50).map(|i| format!("f{i:02}")).collect();
    let branch_yaml_all = branch_names
        .iter()
        .map(|n| branch_yaml(n, "shop"))
        .collect::<Vec<_>>()
        .join("---\n");
    let fifty_pods: Api<Pod> = Api::namespaced(client.clone(), fifty);
    let plain_started = Instant::now();
    cluster.apply(fifty, &plain_yaml)?;
    let branches_started = Instant::now();
    cluster.apply(fifty, &branch_yaml_all)?;
    let (plain_seen, branch_seen) = tokio::join!(
        first_ready(
            &fifty_pods,
            "app=plain",
            &plain_names,
            plain_started,
            ready_pod_key
        ),
        first_ready(
            &fifty_pods,
            "app.kubernetes.io/component=branch-endpoint",
            &branch_names,
            branches_started,
            ready_pod_key
        ),
    );
    let plain_times: Vec<Duration> = plain_seen?.values().copied().collect();
    let branch_times: Vec<Duration> = branch_seen?.values().copied().collect();

    // The table.
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    writeln!(table, "| what | n | median | p99 | all / max |")?;
    writeln!(table, "|---|---:|---:|---:|---:|")?;
    writeln!(
        table,
        "| `helm install --wait` (CRDs, operator ×2 Ready, webhook CA and certificate made) | 3 | {} | | {} |",
        ms(median(&installs)),
        ms(quantile(&installs, 1.0))
    )?;
    writeln!(
        table,
        "| `ArgonBranch` applied → phase Ready (one at a time) | 20 | {} | {} | {} |",
        ms(median(&to_phase)),
        ms(quantile(&to_phase, 0.99)),
        ms(quantile(&to_phase, 1.0))
    )?;
    writeln!(
        table,
        "| `ArgonBranch` applied → endpoint pod Ready (one at a time) | 20 | {} | {} | {} |",
        ms(median(&to_pod)),
        ms(quantile(&to_pod, 0.99)),
        ms(quantile(&to_pod, 1.0))
    )?;
    writeln!(
        table,
        "| pod created → Ready, uninjected (client image, no probe) | 5 | {} | | {} |",
        ms(median(&plain)),
        ms(quantile(&plain, 1.0))
    )?;
    writeln!(
        table,
        "| the same pod injected (native sidecar, startup probe on /readyz every 1 s) | 5 | {} | | {} |",
        ms(median(&injected)),
        ms(quantile(&injected, 1.0))
    )?;
    writeln!(
        table,
        "| 200 `ArgonBranch`es without endpoints, created 32 at a time (the creates took {}) → phase Ready (watched) | 200 | {} | {} | {} |",
        ms(applied),
        ms(median(&many_times)),
        ms(quantile(&many_times, 0.99)),
        ms(quantile(&many_times, 1.0))
    )?;
    writeln!(
        table,
        "| 50 plain pods of the sidecar image (standalone, same readiness probe) → Ready | 50 | {} | {} | {} |",
        ms(median(&plain_times)),
        ms(quantile(&plain_times, 0.99)),
        ms(quantile(&plain_times, 1.0))
    )?;
    writeln!(
        table,
        "| 50 `ArgonBranch`es with endpoints, same moment → endpoint pods Ready | 50 | {} | {} | {} |",
        ms(median(&branch_times)),
        ms(quantile(&branch_times, 0.99)),
        ms(quantile(&branch_times, 1.0))
    )?;
    writeln!(table)?;
    writeln!(table, "| ratio | value |")?;
    writeln!(table, "|---|---:|")?;
    writeln!(
        table,
        "| injected / uninjected start-up (medians) | {:.2}× |",
        ratio(median(&injected), median(&plain))
    )?;
    writeln!(
        table,
        "| 50 endpoints / 50 plain pods, all Ready (goal ≤ 1.5×) | {:.2}× |",
        ratio(quantile(&branch_times, 1.0), quantile(&plain_times, 1.0))
    )?;
    writeln!(
        table,
        "| 50 endpoints / 50 plain pods, medians | {:.2}× |",
        ratio(median(&branch_times), median(&plain_times))
    )?;
    writeln!(table)?;
    writeln!(table, "| RSS in its pod | MiB |")?;
    writeln!(table, "|---|---:|")?;
    for (i, rss) in operator_rss.iter().enumerate() {
        writeln!(table, "| operator replica {} | {rss:.1} |", i + 1)?;
    }
    writeln!(
        table,
        "| endpoint sidecar (branch e00, idle) | {endpoint_rss:.1} |"
    )?;
    writeln!(table, "| injected sidecar (idle app) | {injected_rss:.1} |")?;
    Ok(table)
}
