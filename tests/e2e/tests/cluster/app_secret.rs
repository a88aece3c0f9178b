//! An authenticated branch endpoint and its connection Secret in real pods:
//! an `ArgonProject` with a user whose password is in a Secret, an
//! `ArgonBranch` whose endpoint demands authentication (the default) and
//! names that user; the operator writes `<branch>-argon-app`, and a client
//! pod connects with exactly its `uri` (SCRAM over the Service's DNS name)
//! and writes; a client without credentials is refused. Plain TCP here:
//! the client pod does not mount the Secret's `ca.crt` yet (endpoint TLS is
//! `operator/tests/it/endpoint_tls.rs`'s, against the apiserver).

use crate::support::{cluster, project_yaml, wait_branch_ready, wait_endpoint_ready};
use argon_operator::endpoint::connection_string;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

#[tokio::test]
async fn a_client_pod_logs_in_with_the_connection_secret() -> anyhow::Result<()> {
    let _shared = crate::support::shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-app-secret")?;
    let ns = ns.name.as_str();
    cluster.ferretdb(ns).await?;
    let project = project_yaml("shop").replace(
        "spec:\n",
        "spec:\n  users:\n  - name: app\n    passwordSecretRef: {name: app-pw}\n    roles: [{role: readWrite, branch: feature}]\n",
    );
    cluster.apply(
        ns,
        &format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: app-pw}}
stringData: {{password: "e2e-p@ss:w/rd"}}
---{project}---
apiVersion: argon.dev/v1alpha1
kind: ArgonBranch
metadata: {{name: feature}}
spec:
  project: shop
  parent: main
  endpoint: {{enabled: true, user: app, tls: false}}
"#
        ),
    )?;
    wait_branch_ready(cluster, ns, "feature").await?;
    wait_endpoint_ready(cluster, ns, "feature").await?;

    let secrets: Api<Secret> = Api::namespaced(cluster.client().await?, ns);
    let secret = secrets.get("feature-argon-app").await?;
    let uri = secret
        .data
        .as_ref()
        .and_then(|d| d.get("uri"))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .ok_or_else(|| anyhow::anyhow!("feature-argon-app has no uri: {secret:?}"))?;
    let wrote = cluster
        .run_client(ns, "writer", &["write", &uri, "shop", "orders", "e2e", "3"])
        .await?;
    assert_eq!(wrote["wrote"], 3, "{wrote}");

    // Without credentials the endpoint answers nothing but the handshake.
    let anonymous = cluster
        .run_client(
            ns,
            "anonymous",
            &[
                "count",
                &connection_string("feature", ns),
                "shop",
                "orders",
                "e2e",
            ],
        )
        .await;
    assert!(
        anonymous.is_err(),
        "an unauthenticated client read the endpoint: {anonymous:?}"
    );
    Ok(())
}
