//! A pull-request preview environment, as a GitOps controller runs it: the
//! `examples/` manifests (project, preview branch, injected app) rendered
//! through kustomize and applied with `kubectl apply --server-side` into a
//! namespace of their own. Closing the PR deletes the namespace: it goes
//! away (finalizers run, nothing deadlocks) for each `deletionPolicy`, and
//! the store shows what the policy promises. The store (FerretDB) lives in
//! another namespace, as a real shared store would; an "observer" project of
//! the same name there reads the store's branch list through `main`'s endpoint.

use crate::support::{
    Cluster, branch_yaml, cluster, eventually, last_json, shared, wait_branch_ready,
    wait_endpoint_ready, wait_pods_ready,
};
use argon_operator::endpoint::connection_string;
use argon_testkit::assets;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use std::collections::BTreeSet;

#[tokio::test]
async fn deleting_a_preview_namespace_with_deletion_policy_retain() -> anyhow::Result<()> {
    preview_namespace_deleted("Retain").await
}

#[tokio::test]
async fn deleting_a_preview_namespace_with_deletion_policy_delete() -> anyhow::Result<()> {
    preview_namespace_deleted("Delete").await
}

/// The live branch names in the store, read through the observer's `main`.
async fn store_branches(
    cluster: &Cluster,
    ns: &str,
    pod: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let reply = cluster
        .run_client(
            ns,
            pod,
            &[
                "admin",
                &connection_string("main", ns),
                r#"{"argonListBranches": 1}"#,
            ],
        )
        .await?;
    Ok(reply["branches"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["name"].as_str().map(String::from))
        .collect())
}

async fn preview_namespace_deleted(policy: &str) -> anyhow::Result<()> {
    let _shared = shared().await;
    let cluster = cluster()?;
    let lower = policy.to_lowercase();
    let store = cluster.namespace(&format!("e2e-store-{lower}"))?;
    let store = store.name.as_str();
    let uri = cluster.ferretdb(store).await?;
    // The observer: project `shop` on the same database (a WAL belongs to a
    // project name), with an endpoint on main.
    cluster.apply(
        store,
        &format!(
            r#"
apiVersion: argon.dev/v1alpha1
kind: ArgonProject
metadata: {{name: shop}}
spec:
  store:
    mongodb:
      secretRef: {{name: store, key: uri}}
      database: argon_gitops
---{}"#,
            branch_yaml("main", "shop")
        ),
    )?;
    wait_branch_ready(cluster, store, "main").await?;
    wait_endpoint_ready(cluster, store, "main").await?;

    // The preview: the examples, rendered by kustomize for this cluster.
    let preview = cluster.namespace(&format!("e2e-preview-{lower}"))?;
    let dir = tempfile::tempdir()?;
    let examples = assets::workspace_root().join("examples");
    for file in ["project.yaml", "gitops-preview.yaml"] {
        std::fs::copy(examples.join(file), dir.path().join(file))?;
    }
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {ns}
resources: [project.yaml, gitops-preview.yaml]
images:
- name: ghcr.io/example/checkout
  newName: argon-e2e-client
  newTag: "{version}"
patches:
- target: {{kind: Secret, name: shop-store}}
  patch: |
    - {{op: replace, path: /stringData/uri, value: "{uri}"}}
- target: {{kind: ArgonProject, name: shop}}
  patch: |
    - {{op: replace, path: /spec/deletionPolicy, value: {policy}}}
    - {{op: replace, path: /spec/store/mongodb/database, value: argon_gitops}}
- target: {{kind: Deployment, name: checkout-pr-1234}}
  patch: |
    - {{op: add, path: /spec/template/spec/containers/0/args, value: [app, shop, orders, pr-1234, "3"]}}
    - {{op: add, path: /spec/template/spec/containers/0/imagePullPolicy, value: IfNotPresent}}
"#,
            ns = preview.name,
            version = cluster.version,
        ),
    )?;
    let rendered = cluster.kubectl(&["kustomize", &dir.path().to_string_lossy()])?;
    cluster.apply(&preview.name, &rendered)?;

    wait_branch_ready(cluster, &preview.name, "pr-1234").await?;
    let client = cluster.client().await?;
    let app = wait_pods_ready(&client, &preview.name, "app=checkout,pr=1234", 1)
        .await?
        .remove(0);
    let app = app.metadata.name.unwrap_or_default();
    let log = eventually("the preview app's writes", || {
        let app = app.clone();
        let ns = preview.name.clone();
        async move {
            let log = cluster.log(&ns, &app, "app").await?;
            Ok(match last_json(&log) {
                Some(v) => Ok(v),
                None => Err(format!("the app's log so far: {log:?}")),
            })
        }
    })
    .await?;
    assert_eq!(log["wrote"], 3, "{log}");

    // A branch made in the store directly (no ArgonBranch owns it): what
    // tells the two policies apart.
    let created = cluster
        .run_client(
            store,
            "adhoc",
            &[
                "admin",
                &connection_string("main", store),
                r#"{"argonCreateBranch": "adhoc"}"#,
            ],
        )
        .await?;
    assert_eq!(created["ok"], 1.0, "{created}");
    let before = store_branches(cluster, store, "list-before").await?;
    for name in ["main", "pr-1234", "adhoc"] {
        assert!(before.contains(name), "{name} not in the store: {before:?}");
    }

    // The PR is closed: its namespace is deleted, and goes.
    cluster.kubectl(&["delete", "namespace", &preview.name, "--wait=false"])?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(&format!("namespace {} gone", preview.name), || {
        let namespaces = namespaces.clone();
        let name = preview.name.clone();
        async move {
            Ok(match namespaces.get_opt(&name).await? {
                None => Ok(()),
                Some(ns) => Err(format!(
                    "still there: {:?}",
                    ns.status.and_then(|s| s.conditions)
                )),
            })
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\noperator log:\n{}", cluster.operator_logs()))?;

    let after = store_branches(cluster, store, "list-after").await?;
    if policy == "Retain" {
        // The WAL stays, with the branches no ArgonBranch owns. The preview
        // branch is gone too when its finalizer ran while the project
        // still existed, and stays when the project went first ("the store
        // was not touched"): both keep every commit.
        for name in ["main", "adhoc"] {
            assert!(after.contains(name), "Retain lost {name}: {after:?}");
        }
        let allowed: BTreeSet<String> = ["main", "adhoc", "pr-1234"].map(String::from).into();
        assert!(after.is_subset(&allowed), "{after:?}");
    } else {
        // The project waits for its ArgonBranches (each deletes its branch),
        // then deletes every other branch but the root.
        let expected: BTreeSet<String> = ["main"].map(String::from).into();
        assert_eq!(
            after, expected,
            "branches in the store after deletion (Delete)"
        );
    }
    Ok(())
}
