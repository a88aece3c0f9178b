//! An `ArgonProject` on an embedded store in a real pod: the store's files
//! live on a PersistentVolume (a static one, pre-bound to the project's
//! claim), and exactly one process opens them, the project's owner pod
//! (`store_owner`), started with the project's key file. The branch's
//! endpoint Service selects that owner; a client pod writes and reads the
//! branch through it (`db~branch`: the owner serves `main` by default), the
//! writes are absent from `main`, and they survive the owner pod being
//! deleted and replaced. Deleting the namespace removes the project through
//! its finalizer without a deadlock.

use crate::support::{
    cluster, cluster_dir, eventually, is_ready, pod_summary, wait_branch_ready, wait_pods_ready,
};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use std::os::unix::fs::chown;

/// The owner's user and group in the sidecar image (non-root).
const OWNER_ID: u32 = 65532;

/// A PersistentVolume on a directory of this node, bound to claim `data`
/// of `ns` before anything asks for it (the test cluster has no
/// provisioner). Deleted, with its directory, when dropped.
struct StaticVolume {
    name: String,
    dir: std::path::PathBuf,
}

impl StaticVolume {
    fn create(ns: &str) -> anyhow::Result<StaticVolume> {
        let name = format!("{ns}-data");
        let dir = cluster_dir().join("volumes").join(&name);
        std::fs::create_dir_all(&dir)?;
        // The owner runs as a non-root user; a hostPath volume keeps the
        // directory's ownership (kubelet applies no fsGroup to it).
        chown(&dir, Some(OWNER_ID), Some(OWNER_ID))?;
        cluster()?.apply(
            ns,
            &format!(
                r#"
apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  claimRef: {{namespace: {ns}, name: data}}
  hostPath: {{path: {dir}, type: Directory}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: {name}
  resources: {{requests: {{storage: 1Gi}}}}
"#,
                dir = dir.display()
            ),
        )?;
        Ok(StaticVolume { name, dir })
    }
}

impl Drop for StaticVolume {
    fn drop(&mut self) {
        if std::env::var_os("ARGON_E2E_KEEP").is_some() {
            return;
        }
        if let Ok(cluster) = cluster() {
            let _ = cluster.kubectl(&["delete", "pv", &self.name, "--wait=false"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn an_embedded_store_is_served_by_its_owner_pod() -> anyhow::Result<()> {
    let _shared = crate::support::shared().await;
    let cluster = cluster()?;
    let namespace = cluster.namespace("e2e-embedded")?;
    let ns = namespace.name.as_str();
    let volume = StaticVolume::create(ns)?;
    cluster.apply(
        ns,
        r#"
apiVersion: argon.dev/v1alpha1
kind: ArgonProject
metadata: {name: shop}
spec:
  store:
    embedded: {claimName: data}
---
apiVersion: argon.dev/v1alpha1
kind: ArgonBranch
metadata: {name: feature}
spec:
  project: shop
  parent: main
  endpoint: {enabled: true, auth: false, tls: false}
"#,
    )?;
    let client = cluster.client().await?;
    let owner_pods = "argon.dev/project=shop,app.kubernetes.io/component=store-owner";
    let owners = wait_pods_ready(&client, ns, owner_pods, 1).await?;
    // The branch is created in the store through the owner (the operator
    // authenticates with the project's key), so Ready means it got there.
    let branch = wait_branch_ready(cluster, ns, "feature").await?;
    let endpoint = branch.status.and_then(|s| s.endpoint).unwrap_or_default();
    assert_eq!(endpoint, connection_string("feature", ns));
    crate::support::wait_service_routes(
        &client,
        ns,
        &argon_operator::endpoint::object_name("feature"),
    )
    .await?;

    let wrote = cluster
        .run_client(
            ns,
            "writer",
            &["write", &endpoint, "shop~feature", "orders", "e2e", "5"],
        )
        .await?;
    assert_eq!(wrote["wrote"], 5, "{wrote}");
    let on_main = cluster
        .run_client(
            ns,
            "main-reader",
            &["count", &endpoint, "shop", "orders", "e2e"],
        )
        .await?;
    assert_eq!(
        on_main["count"], 0,
        "the branch's writes are not on main: {on_main}"
    );

    // The owner pod deleted: its Deployment replaces it, the new pod opens
    // the same files, and the branch still has its documents.
    let old = owners
        .first()
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| anyhow::anyhow!("an owner pod without a name"))?;
    cluster.kubectl(&["delete", "pod", "-n", ns, &old])?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("a new owner pod Ready", || {
        let pods = pods.clone();
        let old = old.clone();
        async move {
            let list = pods.list(&ListParams::default().labels(owner_pods)).await?;
            let replaced = list
                .items
                .iter()
                .any(|p| is_ready(p) && p.metadata.name.as_deref() != Some(old.as_str()));
            let seen: Vec<String> = list.items.iter().map(pod_summary).collect();
            Ok(if replaced {
                Ok(())
            } else {
                Err(format!("pods: {seen:?}"))
            })
        }
    })
    .await?;
    crate::support::wait_service_routes(
        &client,
        ns,
        &argon_operator::endpoint::object_name("feature"),
    )
    .await?;
    let read = cluster
        .run_client(
            ns,
            "reader",
            &["count", &endpoint, "shop~feature", "orders", "e2e"],
        )
        .await?;
    assert_eq!(read["count"], 5, "after the owner was replaced: {read}");
    let more = cluster
        .run_client(
            ns,
            "writer-again",
            &["write", &endpoint, "shop~feature", "orders", "after", "3"],
        )
        .await?;
    assert_eq!(more["wrote"], 3, "{more}");

    // The namespace deleted: the project's and branch's finalizers finish
    // (the owner is still there to answer), and the namespace goes.
    cluster.kubectl(&["delete", "namespace", ns, "--wait=false"])?;
    eventually(&format!("namespace {ns} deleted"), || async move {
        let out = cluster.kubectl(&["get", "namespace", ns, "--ignore-not-found", "-o", "name"])?;
        Ok(if out.trim().is_empty() {
            Ok(())
        } else {
            Err(format!("still there: {out}"))
        })
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\noperator log:\n{}", cluster.operator_logs()))?;
    drop(volume);
    Ok(())
}
