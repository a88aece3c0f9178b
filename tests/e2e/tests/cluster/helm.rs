//! `helm upgrade` and `helm uninstall` as Helm users expect, on a real node:
//!
//! - an upgrade that changes a value rolls the operator (new pods with the
//!   new setting), and the operator brings CRDs left in an older shape back
//!   to this build's (Helm never upgrades `crds/`; the operator applies its
//!   own at start), and reconciles a branch created afterwards;
//! - an uninstall keeps the CRDs, the custom resources and the data: the
//!   branch endpoint keeps serving without the operator;
//! - a client writing through the endpoint the whole time sees no error,
//!   and every write it saw acknowledged is on the branch.
//!
//! Exclusive: the operator is rolled and removed, so no other scenario runs
//! meanwhile; it ends by installing the chart from its defaults again.

use crate::support::{
    OPERATOR_NAMESPACE, RELEASE, branch_yaml, cluster, eventually, exclusive, is_ready,
    project_yaml, wait_branch_ready, wait_endpoint_ready, wait_pods_ready,
};
use argon_operator::crd::{ArgonBranch, ArgonProject};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use std::collections::BTreeSet;

const OPERATOR_PODS: &str = "app.kubernetes.io/name=argon-operator";
const BRANCH_CRD: &str = "argonbranches.argon.dev";

/// True when the live CRD has this build's printer columns and schema.
fn current_shape(live: &CustomResourceDefinition) -> anyhow::Result<bool> {
    let generated = argon_operator::crdgen::crds()?
        .into_iter()
        .find(|f| f.crd.metadata.name == live.metadata.name)
        .ok_or_else(|| anyhow::anyhow!("no generated CRD {:?}", live.metadata.name))?;
    let (live, want) = (&live.spec.versions[0], &generated.crd.spec.versions[0]);
    Ok(
        live.additional_printer_columns == want.additional_printer_columns
            && live.schema == want.schema,
    )
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

/// The acknowledged `_id`s and the error lines of a `writer` client's log.
fn writer_log(log: &str) -> (Vec<String>, Vec<String>) {
    let mut acked = Vec::new();
    let mut errors = Vec::new();
    for line in log.lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v["ack"].is_string() => {
                acked.push(v["ack"].as_str().unwrap_or_default().to_string());
            }
            Ok(v) if v.get("acknowledged").is_some() => {}
            _ => errors.push(line.to_string()),
        }
    }
    (acked, errors)
}

/// Installs the chart from its defaults again when dropped, however the
/// scenario ended: the scenarios after this one need the operator.
struct Reinstall(&'static crate::support::Cluster);

impl Drop for Reinstall {
    fn drop(&mut self) {
        if let Err(e) = self.0.install_chart() {
            eprintln!("e2e: reinstalling the chart after the helm scenario: {e:#}");
        }
    }
}

#[tokio::test]
async fn helm_upgrade_rolls_the_operator_and_uninstall_keeps_crds_and_data() -> anyhow::Result<()> {
    let _exclusive = exclusive().await;
    let cluster = cluster()?;
    // Dropped before the lock: the chart is back before another scenario runs.
    let _reinstall = Reinstall(cluster);
    let client = cluster.client().await?;
    let ns = cluster.namespace("e2e-helm")?;
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
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let endpoint_pods = "argon.dev/branch=feature,app.kubernetes.io/component=branch-endpoint";
    let endpoint_before = names(
        &pods
            .list(&ListParams::default().labels(endpoint_pods))
            .await?
            .items,
    );

    // A client writing through the branch endpoint from here to the end.
    let image = cluster.image("argon-e2e-client");
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: {image}
    imagePullPolicy: IfNotPresent
    args: [writer, "{endpoint}", shop, orders, w]
"#
        ),
    )?;
    let acked_at_least = |n: usize| async move {
        let log = cluster.log(ns, "writer", "client").await?;
        let (acked, errors) = writer_log(&log);
        anyhow::ensure!(errors.is_empty(), "the writer saw errors: {errors:?}");
        Ok(if acked.len() >= n {
            Ok(acked.len())
        } else {
            Err(format!("{} writes acknowledged", acked.len()))
        })
    };
    let acked = eventually("the writer's first writes", || acked_at_least(10)).await?;

    // The cluster holds an older shape of a CRD (a field and this build's
    // columns missing), as after an upgrade of the chart alone.
    cluster.kubectl(&[
        "patch",
        "crd",
        BRANCH_CRD,
        "--type=json",
        "--field-manager=e2e-older-release",
        "-p",
        r#"[{"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/protected"},
            {"op": "replace", "path": "/spec/versions/0/additionalPrinterColumns",
             "value": [{"name": "PARENT", "type": "string", "jsonPath": ".spec.parent"}]}]"#,
    ])?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    anyhow::ensure!(
        !current_shape(&crds.get(BRANCH_CRD).await?)?,
        "the CRD was not made older"
    );

    // helm upgrade with a changed value: the operator rolls.
    let operators_before =
        names(&wait_pods_ready(&client, OPERATOR_NAMESPACE, OPERATOR_PODS, 1).await?);
    let chart = argon_testkit::assets::workspace_root().join("charts/argon");
    cluster.helm(&[
        "upgrade",
        RELEASE,
        &chart.to_string_lossy(),
        "-n",
        OPERATOR_NAMESPACE,
        "--reuse-values",
        "--set",
        "headRefreshSeconds=20",
        "--wait",
        "--timeout",
        "5m",
    ])?;
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let rolled = eventually("only new operator pods, all Ready", || {
        let operator_pods = operator_pods.clone();
        let before = operators_before.clone();
        async move {
            let list = operator_pods
                .list(&ListParams::default().labels(OPERATOR_PODS))
                .await?
                .items;
            let old = list
                .iter()
                .filter(|p| before.contains(p.metadata.name.as_deref().unwrap_or_default()))
                .count();
            let ready = list.iter().filter(|p| is_ready(p)).count();
            Ok(if old == 0 && ready == 2 && ready == list.len() {
                Ok(list)
            } else {
                Err(format!("{old} old pod(s), {ready} of {} Ready", list.len()))
            })
        }
    })
    .await?;
    for pod in &rolled {
        let env = pod
            .spec
            .as_ref()
            .map(|s| s.containers[0].env.clone().unwrap_or_default());
        let refresh = env
            .iter()
            .flatten()
            .find(|e| e.name == "ARGON_HEAD_REFRESH_SECONDS")
            .and_then(|e| e.value.clone());
        assert_eq!(refresh.as_deref(), Some("20"), "the upgraded value");
    }
    let crd = eventually("the CRD back in this build's shape", || {
        let crds = crds.clone();
        async move {
            let crd = crds.get(BRANCH_CRD).await?;
            Ok(if current_shape(&crd)? {
                Ok(crd)
            } else {
                Err("still the older shape".to_string())
            })
        }
    })
    .await?;
    let appliers: Vec<String> = crd
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        appliers
            .iter()
            .any(|m| m == argon_operator::crd::FIELD_MANAGER),
        "the operator applied it: {appliers:?}"
    );
    // The upgraded operator reconciles, and the restored field is served.
    cluster.apply(
        ns,
        r#"
apiVersion: argon.dev/v1alpha1
kind: ArgonBranch
metadata: {name: after-upgrade}
spec: {project: shop, parent: feature, protected: true, endpoint: {enabled: false}}
"#,
    )?;
    let after = wait_branch_ready(cluster, ns, "after-upgrade").await?;
    assert!(after.spec.protected, "spec.protected is served again");
    let acked = eventually("writes after the upgrade", || acked_at_least(acked + 10)).await?;

    // helm uninstall: CRDs, resources and data stay; the endpoint serves on.
    cluster.helm(&[
        "uninstall",
        RELEASE,
        "-n",
        OPERATOR_NAMESPACE,
        "--wait",
        "--timeout",
        "3m",
    ])?;
    for name in ["argonprojects.argon.dev", BRANCH_CRD] {
        assert!(crds.get_opt(name).await?.is_some(), "CRD {name} kept");
    }
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), ns);
    assert!(
        projects.get_opt("shop").await?.is_some(),
        "the project kept"
    );
    for name in ["feature", "after-upgrade"] {
        assert!(
            branches.get_opt(name).await?.is_some(),
            "branch {name} kept"
        );
    }
    eventually("no operator pod left", || {
        let operator_pods = operator_pods.clone();
        async move {
            let n = operator_pods
                .list(&ListParams::default().labels(OPERATOR_PODS))
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
    let acked = eventually("writes without the operator", || acked_at_least(acked + 10)).await?;
    let endpoint_now = pods
        .list(&ListParams::default().labels(endpoint_pods))
        .await?
        .items;
    assert_eq!(
        names(&endpoint_now),
        endpoint_before,
        "the same endpoint pod served throughout"
    );
    assert!(
        endpoint_now.iter().all(|p| is_ready(p)
            && crate::support::container_status(p, argon_operator::endpoint::CONTAINER_NAME)
                .is_none_or(|c| c.restart_count == 0)),
        "the endpoint pod never restarted"
    );

    // Everything the writer saw acknowledged so far is on the branch (it
    // writes on; the namespace's deletion stops it).
    let (acked_ids, errors) = writer_log(&cluster.log(ns, "writer", "client").await?);
    assert!(errors.is_empty(), "the writer saw errors: {errors:?}");
    assert!(acked_ids.len() >= acked);
    let stored = cluster
        .run_client(ns, "ids", &["ids", &endpoint, "shop", "orders", "w"])
        .await?;
    let stored: BTreeSet<String> = stored["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let lost: Vec<&String> = acked_ids
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes missing: {lost:?}");

    // Back to the shared fixture (the chart from its defaults, by the
    // guard), and the operator picks the kept resources up again.
    drop(_reinstall);
    let feature = wait_branch_ready(cluster, ns, "feature").await?;
    assert_eq!(
        feature.status.and_then(|s| s.endpoint).as_deref(),
        Some(endpoint.as_str())
    );
    Ok(())
}
