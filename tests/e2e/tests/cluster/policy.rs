//! NetworkPolicies are enforced on the test node (kube-router's policy
//! controller): the operator's policy for a branch endpoint (one per
//! endpoint, admitting the branch's namespace only) keeps a client pod in
//! another namespace out and lets a pod of the project's namespace in.

use crate::support::{
    branch_yaml, cluster, project_yaml, shared, wait_branch_ready, wait_endpoint_ready,
};
use argon_operator::endpoint::connection_string;

#[tokio::test]
async fn only_the_projects_namespace_reaches_an_endpoint() -> anyhow::Result<()> {
    let _shared = shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-policy")?;
    let ns = ns.name.as_str();
    let elsewhere = cluster.namespace("e2e-policy-other")?;
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
    // The operator wrote the policy (the endpoint is applied only after it).
    cluster.kubectl(&["get", "networkpolicy", "abr-feature", "-n", ns])?;

    // Kept out: the driver finds no reachable server.
    let refused = cluster
        .run_client(
            &elsewhere.name,
            "outsider",
            &["count", &endpoint, "shop", "orders", "x"],
        )
        .await;
    let message = match refused {
        Ok(reply) => panic!("a pod of another namespace reached the endpoint: {reply}"),
        Err(e) => format!("{e:#}"),
    };
    // kube-router rejects (ECONNREFUSED); a policy that drops would time out.
    assert!(
        message.contains("Connection refused") || message.contains("timed out"),
        "the outsider failed, but not for want of a connection: {message}"
    );
    // Let in: any pod of the project's namespace.
    let read = cluster
        .run_client(ns, "insider", &["count", &endpoint, "shop", "orders", "x"])
        .await?;
    assert_eq!(read["count"], 0, "{read}");
    Ok(())
}
