//! NetworkPolicies are enforced on the test node (kube-router's policy
//! controller): a policy that admits only pods labelled `role: client` to a
//! branch endpoint keeps an unlabelled client out and lets a labelled one in.

use crate::support::{
    branch_yaml, cluster, project_yaml, shared, wait_branch_ready, wait_endpoint_ready,
};
use argon_operator::endpoint::connection_string;

#[tokio::test]
async fn a_network_policy_admits_only_labelled_clients_to_an_endpoint() -> anyhow::Result<()> {
    let _shared = shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-policy")?;
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
    cluster.apply(
        ns,
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: feature-clients}
spec:
  podSelector:
    matchLabels: {argon.dev/branch: feature, app.kubernetes.io/component: branch-endpoint}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 27017}]
"#,
    )?;

    // Kept out: the driver finds no reachable server.
    let refused = cluster
        .run_client(ns, "outsider", &["count", &endpoint, "shop", "orders", "x"])
        .await;
    let message = match refused {
        Ok(reply) => panic!("an unlabelled client reached the endpoint: {reply}"),
        Err(e) => format!("{e:#}"),
    };
    // kube-router rejects (ECONNREFUSED); a policy that drops would time out.
    assert!(
        message.contains("Connection refused") || message.contains("timed out"),
        "the outsider failed, but not for want of a connection: {message}"
    );
    // Let in.
    let read = cluster
        .run_client_labelled(
            ns,
            "insider",
            "{role: client}",
            &["count", &endpoint, "shop", "orders", "x"],
        )
        .await?;
    assert_eq!(read["count"], 0, "{read}");
    Ok(())
}
