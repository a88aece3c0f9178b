//! The operator's benchmark (run by `bench/operator`, never by tests): the
//! real `argon-operator` binary against a real kube-apiserver + etcd and a
//! FerretDB store, all on this machine. For 1, 50 and 200 branches (each
//! round its own project), every branch of the round is applied at once
//! (16 creates in flight, as `kubectl apply -f dir/` would), and each
//! branch's time from its create call to the first watch event showing
//! `phase: Ready` is recorded; then the operator's RSS with 200 branches
//! Ready. Prints a markdown section.
//!
//! `operator_bench --operator-bin target/release/argon-operator`

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use argon_operator::crd::{
    ArgonBranch, ArgonBranchSpec, ArgonProject, ArgonProjectSpec, EndpointSpec,
};
use argon_operator::crdgen;
use argon_testkit::process::ServerProcess;
use argon_testkit::{FerretDb, KubeApiServer, free_port, wait_until};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

const ROUNDS: [usize; 3] = [1, 50, 200];
const IN_FLIGHT: usize = 16;

struct Args {
    operator_bin: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let mut operator_bin = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--operator-bin" => operator_bin = it.next().map(PathBuf::from),
            other => anyhow::bail!("unknown argument {other:?}; usage: --operator-bin PATH"),
        }
    }
    Ok(Args {
        operator_bin: operator_bin.context("--operator-bin PATH is required")?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    let kube = KubeApiServer::start().await?;
    let client = kube.client().await?;
    crdgen::install(&client, "argon-bench", Duration::from_secs(30)).await?;
    let mongo = FerretDb::start().await?;
    let ns = "bench";
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &Namespace {
            metadata: ObjectMeta {
                name: Some(ns.into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        },
    )
    .await?;

    let logs = tempfile::tempdir()?;
    let metrics_port = free_port()?;
    let kubeconfig = kube.kubeconfig_path().display().to_string();
    let run_args: Vec<String> = [
        "run",
        "--metrics-listen",
        &format!("127.0.0.1:{metrics_port}"),
        "--identity",
        "bench",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let operator = ServerProcess::start_with_env(
        "argon-operator",
        &args.operator_bin,
        &run_args,
        logs.path(),
        &[("KUBECONFIG", &kubeconfig), ("ARGON_LOG", "warn")],
    )?;
    let pid = operator.pid();
    let idle_rss = rss_kib(pid)?;

    let mut rows = Vec::new();
    for (round, n) in ROUNDS.into_iter().enumerate() {
        let project = format!("bench-{round}");
        create_project(&client, ns, &project, &mongo).await?;
        wait_until(
            &format!("project {project} Ready"),
            Duration::from_secs(60),
            || {
                let api: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
                let project = project.clone();
                async move {
                    Ok(api
                        .get(&project)
                        .await?
                        .status
                        .and_then(|s| s.phase)
                        .as_deref()
                        == Some("Ready"))
                }
            },
        )
        .await?;
        let (latencies, all_ready) = apply_branches(&client, ns, &project, n).await?;
        rows.push((n, latencies, all_ready));
    }
    let loaded_rss = rss_kib(pid)?;
    let peak_rss = hwm_kib(pid)?;
    drop(operator);

    println!("| branches applied at once | apply → Ready median | p99 | max | all Ready after |");
    println!("|---:|---:|---:|---:|---:|");
    for (n, mut lat, all) in rows {
        lat.sort();
        println!(
            "| {n} | {} | {} | {} | {} |",
            ms(percentile(&lat, 50.0)),
            ms(percentile(&lat, 99.0)),
            ms(*lat.last().unwrap_or(&Duration::ZERO)),
            ms(all)
        );
    }
    println!();
    println!("| operator RSS | MiB |");
    println!("|---|---:|");
    println!(
        "| idle, before any project | {:.1} |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| with 3 projects and 251 branches Ready (200 in the last round) | {:.1} |",
        loaded_rss as f64 / 1024.0
    );
    println!("| peak (VmHWM) | {:.1} |", peak_rss as f64 / 1024.0);
    Ok(())
}

/// Creates `n` branches of `project` (16 in flight) and waits until all are
/// Ready; returns each one's create-to-Ready time and the round's total.
async fn apply_branches(
    client: &Client,
    ns: &str,
    project: &str,
    n: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let api: Api<ArgonBranch> = Api::namespaced(client.clone(), ns);
    let applied: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    // The watch runs before the first create, so no Ready event is missed.
    let watch = {
        let (api, ready, prefix) = (api.clone(), ready.clone(), format!("{project}-b"));
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(b)) = events.next().await {
                let name = b.name_any();
                let is_ready = b.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready");
                if is_ready && name.starts_with(&prefix) {
                    ready
                        .lock()
                        .expect("not poisoned")
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, applied) = (api.clone(), applied.clone());
            let name = format!("{project}-b{i}");
            let branch = ArgonBranch::new(
                &name,
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
            );
            async move {
                applied
                    .lock()
                    .expect("not poisoned")
                    .insert(name, Instant::now());
                api.create(&PostParams::default(), &branch).await
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<_>>()
        .await?;
    wait_until(
        &format!("{n} branches of {project} Ready"),
        Duration::from_secs(300),
        || {
            let count = ready.lock().expect("not poisoned").len();
            async move { Ok(count == n) }
        },
    )
    .await?;
    let all_ready = started.elapsed();
    watch.abort();
    let applied = applied.lock().expect("not poisoned");
    let ready = ready.lock().expect("not poisoned");
    let latencies = ready
        .iter()
        .filter_map(|(name, t)| applied.get(name).map(|a| t.saturating_duration_since(*a)))
        .collect();
    Ok((latencies, all_ready))
}

async fn create_project(
    client: &Client,
    ns: &str,
    name: &str,
    mongo: &FerretDb,
) -> anyhow::Result<()> {
    let secret_name = format!("{name}-store");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some(secret_name.clone()),
                    ..ObjectMeta::default()
                },
                string_data: Some([("uri".to_string(), mongo.uri().to_string())].into()),
                ..Secret::default()
            },
        )
        .await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
    projects
        .create(
            &PostParams::default(),
            &ArgonProject::new(
                name,
                ArgonProjectSpec::on_mongodb(
                    &secret_name,
                    &format!("argon_{}", name.replace('-', "_")),
                ),
            ),
        )
        .await?;
    Ok(())
}

fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} of pid {pid}"))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS:")
}

fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM:")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
