//! The whole cluster stopped and started again (`tests/cluster stop` then
//! `start`: every component and container stopped, the state kept, as a
//! machine going down and booting): the operator, FerretDB, a branch endpoint
//! and an injected app all come back Ready, and read what was written
//! before; writes go on afterwards.
//!
//! Exclusive: nothing else can run while the cluster is down.

use crate::support::{
    OPERATOR_NAMESPACE, branch_yaml, cluster, cluster_dir, container_status, eventually, exclusive,
    last_json, project_yaml, wait_branch_ready, wait_endpoint_ready, wait_pods_ready,
};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;
use std::process::Command;

/// `tests/cluster ARG`, failing with its output.
fn cluster_script(arg: &str) -> anyhow::Result<()> {
    let output = Command::new(argon_testkit::assets::workspace_root().join("tests/cluster"))
        .arg(arg)
        .env("ARGON_TEST_CACHE", argon_testkit::assets::cache_dir())
        .env("ARGON_CLUSTER_DIR", cluster_dir())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "tests/cluster {arg} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "e2e: tests/cluster {arg}:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    Ok(())
}

#[tokio::test]
async fn a_cluster_stopped_and_started_comes_back_with_its_data() -> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-restart")?;
    let ns = ns.name.as_str();
    cluster.ferretdb(ns).await?;
    cluster.apply(
        ns,
        &format!(
            "{}---{}",
            project_yaml("shop"),
            branch_yaml("feature", "shop")
        ),
    )?;
    wait_branch_ready(cluster, ns, "feature").await?;
    wait_endpoint_ready(cluster, ns, "feature").await?;
    let endpoint = connection_string("feature", ns);
    let wrote = cluster
        .run_client(
            ns,
            "before",
            &["write", &endpoint, "shop", "orders", "before", "5"],
        )
        .await?;
    assert_eq!(wrote["wrote"], 5, "{wrote}");

    // An injected app that reads the branch when it starts.
    let image = cluster.image("argon-e2e-client");
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: reader}}
spec:
  selector: {{matchLabels: {{app: reader}}}}
  template:
    metadata:
      labels: {{app: reader, argon.dev/inject: "true"}}
      annotations: {{argon.dev/branch: feature}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        args: [watch, "$(ARGON_MONGODB_URI)", shop, orders, before]
"#
        ),
    )?;
    let client = cluster.client().await?;
    let pod = wait_pods_ready(&client, ns, "app=reader", 1)
        .await?
        .remove(0);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let app_count = |pods: Api<Pod>, name: String| async move {
        let log = pods
            .logs(
                &name,
                &LogParams {
                    container: Some("app".into()),
                    ..LogParams::default()
                },
            )
            .await?;
        Ok(match last_json(&log) {
            Some(v) if v.get("count").is_some() => Ok(v["count"].clone()),
            _ => Err(format!("the app's log: {log:?}")),
        })
    };
    let before = eventually("the app's first read", || {
        app_count(pods.clone(), name.clone())
    })
    .await?;
    assert_eq!(before, 5, "the injected app reads the branch");
    let restarts_before = container_status(&pods.get(&name).await?, "app")
        .map(|s| s.restart_count)
        .unwrap_or_default();

    cluster_script("stop")?;
    cluster_script("start")?;

    // Everything is back: the operator, FerretDB, the endpoint, the app.
    let client = cluster.client().await?;
    wait_pods_ready(
        &client,
        OPERATOR_NAMESPACE,
        "app.kubernetes.io/name=argon-operator",
        2,
    )
    .await?;
    wait_pods_ready(&client, ns, "app=ferretdb", 1).await?;
    wait_branch_ready(cluster, ns, "feature").await?;
    wait_endpoint_ready(cluster, ns, "feature").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("the app's containers restarted and Ready", || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            let pod = pods.get(&name).await?;
            let app = container_status(&pod, "app").unwrap_or_default();
            let sidecar = container_status(&pod, "argon-sidecar").unwrap_or_default();
            Ok(
                if app.restart_count > restarts_before && app.ready && sidecar.ready {
                    Ok(())
                } else {
                    Err(crate::support::pod_summary(&pod))
                },
            )
        }
    })
    .await?;
    let after = eventually("the app's read after the restart", || {
        app_count(pods.clone(), name.clone())
    })
    .await?;
    assert_eq!(after, 5, "the injected app reads what was written before");
    let read = cluster
        .run_client(
            ns,
            "after",
            &["count", &endpoint, "shop", "orders", "before"],
        )
        .await?;
    assert_eq!(
        read["count"], 5,
        "the endpoint serves what was written before: {read}"
    );
    let wrote = cluster
        .run_client(
            ns,
            "again",
            &["write", &endpoint, "shop", "orders", "after", "5"],
        )
        .await?;
    assert_eq!(wrote["wrote"], 5, "writes go on: {wrote}");
    Ok(())
}
