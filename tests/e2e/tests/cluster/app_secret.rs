//! An authenticated TLS branch endpoint and its connection Secret in real
//! pods: an `ArgonProject` with a user whose password is in a Secret, an
//! `ArgonBranch` whose endpoint demands authentication and TLS (the
//! defaults) and names that user; the operator writes `<branch>-argon-app`,
//! and a client pod that mounts it connects as the README says (its `uri`,
//! its `ca.crt` as the trusted CA: SCRAM over TLS verified against the
//! Service's DNS name) and writes. A client that does not trust the
//! operator's CA, a plain connection and one without credentials get
//! nothing.

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
  endpoint: {{enabled: true, user: app}}
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
    assert!(uri.contains("tls=true"), "{uri}");
    let wrote = cluster
        .run_client_mounting(
            ns,
            "writer",
            "feature-argon-app",
            &[
                "write",
                "secret:/etc/argon-app",
                "shop",
                "orders",
                "e2e",
                "3",
            ],
        )
        .await?;
    assert_eq!(wrote["wrote"], 3, "{wrote}");

    // The same URI without the operator's CA: the certificate is not trusted.
    let untrusted = cluster
        .run_client(ns, "untrusted", &["count", &uri, "shop", "orders", "e2e"])
        .await;
    let untrusted = format!("{untrusted:?}");
    assert!(
        untrusted.contains("certificate") || untrusted.contains("UnknownIssuer"),
        "a client without the CA reached the endpoint: {untrusted}"
    );

    // Plain TCP without credentials: the TLS endpoint gives it nothing.
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
        "a plain, unauthenticated client read the endpoint: {anonymous:?}"
    );
    Ok(())
}
