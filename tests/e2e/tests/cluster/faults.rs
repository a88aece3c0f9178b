//! Faults on a real node: the injected sidecar killed (SIGKILL, through
//! containerd) while the app writes: it restarts, the app carries on, and
//! every write the app saw acknowledged is on the branch; a branch's
//! endpoint pod deleted: a new one serves the same data; the operator's
//! pods killed while 20 branches are being created: they all converge.

use crate::support::{
    OPERATOR_NAMESPACE, branch_yaml, cluster, container_status, eventually, exclusive, is_ready,
    project_yaml, shared, wait_branch_ready, wait_endpoint_ready, wait_pods_ready,
    wait_service_routes,
};
use argon_operator::crd::{ArgonBranch, ArgonProject};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use std::collections::BTreeSet;

/// The `_id`s the writer's log reports acknowledged, in order.
fn acknowledged(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ack"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_killed_sidecar_restarts_and_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let _shared = shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-sidecar-kill")?;
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
    let image = cluster.image("argon-e2e-client");
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: writer}}
spec:
  selector: {{matchLabels: {{app: writer}}}}
  template:
    metadata:
      labels: {{app: writer, argon.dev/inject: "true"}}
      annotations: {{argon.dev/branch: feature}}
    spec:
      containers:
      - name: app
        image: {image}
        imagePullPolicy: IfNotPresent
        # The webhook sets ARGON_MONGODB_URI (the sidecar on localhost).
        args: [writer, "$(ARGON_MONGODB_URI)", shop, orders, w]
"#
        ),
    )?;
    let client = cluster.client().await?;
    let pod = wait_pods_ready(&client, ns, "app=writer", 1)
        .await?
        .remove(0);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    let writes_beyond = |n: usize| {
        let name = name.clone();
        async move {
            let log = cluster.log(ns, &name, "app").await?;
            let acked = acknowledged(&log).len();
            Ok(if acked >= n {
                Ok(acked)
            } else {
                Err(format!("{acked} writes acknowledged so far"))
            })
        }
    };
    let before = eventually("20 acknowledged writes", || writes_beyond(20)).await?;

    // SIGKILL the sidecar's process, as the OOM killer or a crash would.
    let sidecar = container_status(&pod, "argon-sidecar")
        .and_then(|s| s.container_id)
        .ok_or_else(|| anyhow::anyhow!("the sidecar has no container id"))?;
    let id = sidecar
        .strip_prefix("containerd://")
        .ok_or_else(|| anyhow::anyhow!("not a containerd container: {sidecar}"))?;
    cluster.ctr(&["tasks", "kill", "--signal", "SIGKILL", id])?;

    eventually("the sidecar restarted and Ready", || {
        let pods = pods.clone();
        let name = name.clone();
        async move {
            let pod = pods.get(&name).await?;
            let status = container_status(&pod, "argon-sidecar").unwrap_or_default();
            Ok(if status.restart_count >= 1 && status.ready {
                Ok(())
            } else {
                Err(format!(
                    "restarts {}, ready {}",
                    status.restart_count, status.ready
                ))
            })
        }
    })
    .await?;
    eventually("20 more acknowledged writes after the restart", || {
        writes_beyond(before + 20)
    })
    .await?;

    let pod = pods.get(&name).await?;
    assert_eq!(
        container_status(&pod, "app").map(|s| s.restart_count),
        Some(0),
        "the app kept running while its sidecar restarted"
    );
    let acked = acknowledged(&cluster.log(ns, &name, "app").await?);
    let stored = cluster
        .run_client(
            ns,
            "ids",
            &[
                "ids",
                &connection_string("feature", ns),
                "shop",
                "orders",
                "w",
            ],
        )
        .await?;
    let stored: BTreeSet<String> = stored["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes are not on the branch: {lost:?}",
        lost.len(),
        acked.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_deleted_endpoint_pod_is_replaced_and_serves_the_same_data() -> anyhow::Result<()> {
    let _shared = shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-endpoint-pod")?;
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
            &["write", &endpoint, "shop", "orders", "a", "5"],
        )
        .await?;
    assert_eq!(wrote["wrote"], 5, "{wrote}");

    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let selector = "argon.dev/branch=feature,app.kubernetes.io/component=branch-endpoint";
    let old: BTreeSet<String> = pods
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert!(!old.is_empty(), "no endpoint pod to delete");
    for name in &old {
        pods.delete(name, &DeleteParams::default()).await?;
    }
    eventually("a new Ready endpoint pod", || {
        let pods = pods.clone();
        let old = old.clone();
        async move {
            let list = pods.list(&ListParams::default().labels(selector)).await?;
            let fresh = list.items.iter().any(|p| {
                !old.contains(p.metadata.name.as_deref().unwrap_or_default()) && is_ready(p)
            });
            let stale = list
                .items
                .iter()
                .any(|p| old.contains(p.metadata.name.as_deref().unwrap_or_default()));
            Ok(if fresh && !stale {
                Ok(())
            } else {
                Err(format!("fresh ready: {fresh}, old still there: {stale}"))
            })
        }
    })
    .await?;

    // kube-proxy reprograms the Service a moment after the new pod is
    // Ready; a connection in between is refused or reaches the gone pod
    // (before tests/cluster kept Service addresses inside the machine, it
    // reached this machine's egress proxy, "HTTP/1.1 400 Bad Request").
    wait_service_routes(
        &client,
        ns,
        &argon_operator::endpoint::object_name("feature"),
    )
    .await?;
    // Even then a client's retry is what a driver does after a failover;
    // every attempt is printed, and the data must be the same on the one
    // that connects.
    let mut read = None;
    for attempt in 1..=5 {
        match cluster
            .run_client(
                ns,
                &format!("after-{attempt}"),
                &["count", &endpoint, "shop", "orders", "a"],
            )
            .await
        {
            Ok(r) => {
                read = Some(r);
                break;
            }
            Err(e) => {
                eprintln!("e2e: count through the Service, attempt {attempt}: {e:#}");
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            }
        }
    }
    let read = read.ok_or_else(|| anyhow::anyhow!("no client reached the new endpoint pod"))?;
    assert_eq!(read["count"], 5, "{read}");
    let wrote = cluster
        .run_client(
            ns,
            "again",
            &["write", &endpoint, "shop", "orders", "b", "5"],
        )
        .await?;
    assert_eq!(wrote["wrote"], 5, "{wrote}");
    Ok(())
}

#[tokio::test]
async fn twenty_branches_converge_when_the_operator_is_killed_midway() -> anyhow::Result<()> {
    // Webhook and controllers are down for a while: nothing else runs meanwhile.
    let _alone = exclusive().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-operator-kill")?;
    let ns = ns.name.as_str();
    cluster.ferretdb(ns).await?;
    cluster.apply(ns, &project_yaml("shop"))?;
    let client = cluster.client().await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
    eventually("ArgonProject shop Ready", || {
        let projects = projects.clone();
        async move {
            let p = projects.get("shop").await?;
            let status = p.status.unwrap_or_default();
            Ok(if status.phase.as_deref() == Some("Ready") {
                Ok(())
            } else {
                Err(format!("{status:?}"))
            })
        }
    })
    .await?;

    let names: Vec<String> = (0..20).map(|i| format!("b{i:02}")).collect();
    let operators: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let operator_pods = || async {
        anyhow::Ok(
            operators
                .list(&ListParams::default().labels("app.kubernetes.io/name=argon-operator"))
                .await?
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect::<BTreeSet<String>>(),
        )
    };
    let killed = operator_pods().await?;
    // The branches arrive one by one, as a user or a GitOps sync applies
    // them; after the tenth, every operator pod dies at once without a
    // grace period (a crash), so the rest arrive while none runs.
    for (i, name) in names.iter().enumerate() {
        cluster.apply(
            ns,
            &format!(
                "apiVersion: argon.dev/v1alpha1\nkind: ArgonBranch\nmetadata: {{name: {name}}}\nspec: {{project: shop, parent: main, endpoint: {{enabled: false}}}}\n"
            ),
        )?;
        if i == 9 {
            cluster.kubectl(&[
                "delete",
                "pods",
                "-n",
                OPERATOR_NAMESPACE,
                "-l",
                "app.kubernetes.io/name=argon-operator",
                "--grace-period=0",
                "--force",
                "--wait=false",
            ])?;
        }
    }

    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), ns);
    let ids = eventually("all 20 ArgonBranches Ready", || {
        let branches = branches.clone();
        let names = names.clone();
        async move {
            let list = branches.list(&ListParams::default()).await?;
            let mut ids = BTreeSet::new();
            let mut pending = Vec::new();
            for name in &names {
                let status = list
                    .items
                    .iter()
                    .find(|b| b.metadata.name.as_deref() == Some(name.as_str()))
                    .and_then(|b| b.status.clone())
                    .unwrap_or_default();
                match (status.phase.as_deref(), status.branch_id) {
                    (Some("Ready"), Some(id)) => {
                        ids.insert(id);
                    }
                    (phase, _) => pending.push(format!("{name}: {phase:?}")),
                }
            }
            Ok(if pending.is_empty() {
                Ok(ids)
            } else {
                Err(format!("not Ready: {}", pending.join(", ")))
            })
        }
    })
    .await?;
    assert_eq!(
        ids.len(),
        20,
        "each branch its own id in the store: {ids:?}"
    );
    eventually("the project counting main and the 20 branches", || {
        let projects = projects.clone();
        async move {
            let status = projects.get("shop").await?.status.unwrap_or_default();
            Ok(if status.branches == Some(21) {
                Ok(())
            } else {
                Err(format!("status.branches = {:?}", status.branches))
            })
        }
    })
    .await?;
    // New operator pods did it, and are back for the scenarios after this one.
    let ready = wait_pods_ready(
        &client,
        OPERATOR_NAMESPACE,
        "app.kubernetes.io/name=argon-operator",
        killed.len(),
    )
    .await?;
    for pod in &ready {
        let name = pod.metadata.name.clone().unwrap_or_default();
        assert!(
            !killed.contains(&name),
            "operator pod {name} survived the kill"
        );
    }
    Ok(())
}

/// The operator down while a namespace is deleted (deletionPolicy Delete):
/// the namespace's deletion removes the store's Secret at once while the
/// project and branch wait on their finalizers; operator pods that start
/// afterwards never had the store open, and complete the finalizers from
/// their own copy of the connection (in the operator's namespace), which
/// goes with the project.
#[tokio::test]
async fn a_namespace_deletion_completes_across_an_operator_restart() -> anyhow::Result<()> {
    // The operator is down for a while: nothing else runs meanwhile.
    let _alone = exclusive().await;
    let cluster = cluster()?;
    let store = cluster.namespace("e2e-deletion-store")?;
    let uri = cluster.ferretdb(&store.name).await?;
    let preview = cluster.namespace("e2e-deletion")?;
    let ns = preview.name.as_str();
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: store}}
stringData: {{uri: "{uri}"}}
---
apiVersion: argon.dev/v1alpha1
kind: ArgonProject
metadata: {{name: shop}}
spec:
  deletionPolicy: Delete
  store:
    mongodb:
      secretRef: {{name: store, key: uri}}
      database: argon_deletion
---
apiVersion: argon.dev/v1alpha1
kind: ArgonBranch
metadata: {{name: pr}}
spec: {{project: shop, parent: main, endpoint: {{enabled: false}}}}
"#
        ),
    )?;
    wait_branch_ready(cluster, ns, "pr").await?;
    let client = cluster.client().await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
    let uid = projects.get("shop").await?.metadata.uid.unwrap_or_default();
    let copy = format!("argon-store-{uid}");
    let own: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    eventually("the operator's copy of the connection", || {
        let own = own.clone();
        let copy = copy.clone();
        async move {
            Ok(match own.get_opt(&copy).await? {
                Some(_) => Ok(()),
                None => Err(format!("no Secret {copy}")),
            })
        }
    })
    .await?;

    let deployment = format!("{}-operator", crate::support::RELEASE);
    let replicas = cluster.kubectl(&[
        "get",
        "deployment",
        &deployment,
        "-n",
        OPERATOR_NAMESPACE,
        "-o",
        "jsonpath={.spec.replicas}",
    ])?;
    let scale = |n: &str| {
        cluster.kubectl(&[
            "scale",
            "deployment",
            &deployment,
            "-n",
            OPERATOR_NAMESPACE,
            &format!("--replicas={n}"),
        ])
    };
    scale("0")?;
    let operators: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    eventually("no operator pod", || {
        let operators = operators.clone();
        async move {
            let n = operators
                .list(&ListParams::default().labels("app.kubernetes.io/name=argon-operator"))
                .await?
                .items
                .len();
            Ok(if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} left"))
            })
        }
    })
    .await?;

    cluster.kubectl(&["delete", "namespace", ns, "--wait=false"])?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), ns);
    eventually("the store Secret gone, the project and branch held", || {
        let (secrets, projects, branches) = (secrets.clone(), projects.clone(), branches.clone());
        async move {
            let secret = secrets.get_opt("store").await?;
            let project = projects.get_opt("shop").await?;
            let branch = branches.get_opt("pr").await?;
            let held = |deleting: Option<bool>| deleting == Some(true);
            Ok(
                if secret.is_none()
                    && held(project.map(|p| p.metadata.deletion_timestamp.is_some()))
                    && held(branch.map(|b| b.metadata.deletion_timestamp.is_some()))
                {
                    Ok(())
                } else {
                    Err("the namespace's deletion has not reached them yet".to_string())
                },
            )
        }
    })
    .await?;

    scale(replicas.trim())?;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    eventually(&format!("namespace {ns} gone"), || {
        let namespaces = namespaces.clone();
        async move {
            Ok(match namespaces.get_opt(ns).await? {
                None => Ok(()),
                Some(n) => Err(format!(
                    "still there: {:?}",
                    n.status.and_then(|s| s.conditions)
                )),
            })
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\noperator log:\n{}", cluster.operator_logs()))?;
    assert!(
        own.get_opt(&copy).await?.is_none(),
        "the copy went with the project"
    );
    wait_pods_ready(
        &client,
        OPERATOR_NAMESPACE,
        "app.kubernetes.io/name=argon-operator",
        replicas.trim().parse()?,
    )
    .await?;
    Ok(())
}
