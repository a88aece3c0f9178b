//! Injection on a real node: a Deployment labelled `argon.dev/inject` gets
//! the sidecar as a native sidecar; the app container writes through
//! localhost:27017 from its first connection attempt (the sidecar is ready
//! before the app starts); the writes are on the annotated branch (read back
//! through its endpoint) and not on `main` (read through main's endpoint);
//! an unlabelled Deployment is left as it was written. And the sidecar stops
//! after the app: the app writes through it during its own SIGTERM grace
//! period, and those writes are on the branch.

use crate::support::{
    branch_yaml, cluster, eventually, last_json, project_yaml, wait_branch_ready,
    wait_endpoint_ready, wait_pods_ready,
};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::LogParams;

#[tokio::test]
async fn an_injected_app_writes_to_its_branch_and_a_plain_one_is_untouched() -> anyhow::Result<()> {
    let _shared = crate::support::shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-inject")?;
    let ns = ns.name.as_str();
    cluster.ferretdb(ns).await?;
    cluster.apply(
        ns,
        &format!(
            "{}---{}---{}",
            project_yaml("shop"),
            branch_yaml("preview", "shop"),
            // `main`'s own endpoint, to see what main holds.
            branch_yaml("main", "shop")
        ),
    )?;
    for branch in ["preview", "main"] {
        wait_branch_ready(cluster, ns, branch).await?;
        wait_endpoint_ready(cluster, ns, branch).await?;
    }

    let image = cluster.image("argon-e2e-client");
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: injected}}
spec:
  selector: {{matchLabels: {{app: injected}}}}
  template:
    metadata:
      labels: {{app: injected, argon.dev/inject: "true"}}
      annotations: {{argon.dev/branch: preview}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        args: [app, shop, orders, from-app, "5"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: plain}}
spec:
  selector: {{matchLabels: {{app: plain}}}}
  template:
    metadata:
      labels: {{app: plain}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        args: [idle]
"#
        ),
    )?;
    let client = cluster.client().await?;
    let injected = wait_pods_ready(&client, ns, "app=injected", 1).await?;
    let pod = &injected[0];
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let sidecars: Vec<_> = spec.init_containers.iter().flatten().collect();
    assert_eq!(sidecars.len(), 1, "one injected sidecar");
    assert_eq!(sidecars[0].name, "argon-sidecar");
    assert_eq!(sidecars[0].restart_policy.as_deref(), Some("Always"));

    // The app wrote its documents, from its first connection attempt: it
    // exits (and would restart) if nothing listened on localhost:27017 when
    // it started.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let log = eventually("the app's writes", || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            let log = pods
                .logs(
                    &name,
                    &LogParams {
                        container: Some("app".into()),
                        ..LogParams::default()
                    },
                )
                .await?;
            Ok(if last_json(&log).is_some() {
                Ok(log)
            } else {
                Err(format!("the app's log so far: {log:?}"))
            })
        }
    })
    .await?;
    let result = last_json(&log).unwrap_or_default();
    assert_eq!(result["wrote"], 5, "the app's log: {log}");
    let status = pods.get(&name).await?.status.unwrap_or_default();
    let app = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "app")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        app.restart_count, 0,
        "the app never had to restart: the sidecar was ready when it started"
    );
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "argon-sidecar")
        .cloned()
        .unwrap_or_default();
    assert!(sidecar.ready, "the sidecar is ready beside the app");

    // On the branch, not on main.
    let on_preview = cluster
        .run_client(
            ns,
            "read-preview",
            &[
                "count",
                &connection_string("preview", ns),
                "shop",
                "orders",
                "from-app",
            ],
        )
        .await?;
    assert_eq!(on_preview["count"], 5, "{on_preview}");
    let on_main = cluster
        .run_client(
            ns,
            "read-main",
            &[
                "count",
                &connection_string("main", ns),
                "shop",
                "orders",
                "from-app",
            ],
        )
        .await?;
    assert_eq!(on_main["count"], 0, "{on_main}");

    // The unlabelled Deployment's pod is exactly what it asked for.
    let plain = wait_pods_ready(&client, ns, "app=plain", 1).await?;
    let plain = &plain[0];
    let spec = plain.spec.clone().unwrap_or_default();
    assert!(spec.init_containers.unwrap_or_default().is_empty());
    assert_eq!(spec.containers.len(), 1);
    assert!(
        spec.containers[0]
            .env
            .iter()
            .flatten()
            .all(|e| !e.name.starts_with("ARGON_")),
        "no Argon variables in an unlabelled pod"
    );
    assert!(
        plain
            .metadata
            .annotations
            .as_ref()
            .is_none_or(|a| !a.contains_key("argon.dev/injected"))
    );

    // The pod stopped: the kubelet sends SIGTERM to the app first and to the
    // native sidecar only once the app has exited, so the app's writes
    // during its grace period still reach the branch.
    cluster.kubectl(&["-n", ns, "scale", "deployment/injected", "--replicas=0"])?;
    eventually("the injected pod gone", || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            Ok(match pods.get_opt(&name).await? {
                None => Ok(()),
                Some(pod) => Err(crate::support::pod_summary(&pod)),
            })
        }
    })
    .await?;
    let at_exit = cluster
        .run_client(
            ns,
            "read-at-exit",
            &[
                "count",
                &connection_string("preview", ns),
                "shop",
                "orders",
                "from-app-at-exit",
            ],
        )
        .await?;
    assert_eq!(
        at_exit["count"], 5,
        "the app's writes during its SIGTERM grace period went through the sidecar: {at_exit}"
    );
    Ok(())
}
