//! A branch endpoint in a real pod: an `ArgonProject` on a mongodb store
//! (FerretDB running in the cluster), an `ArgonBranch` with an endpoint; the
//! branch becomes Ready, its endpoint pod Ready, and a client pod connects by
//! the Service's DNS name (the connection string in `status.endpoint`),
//! writes and reads back.

use crate::support::{branch_yaml, cluster, project_yaml, wait_branch_ready, wait_endpoint_ready};
use argon_operator::endpoint::connection_string;

#[tokio::test]
async fn a_branch_endpoint_serves_a_client_pod_by_its_service_name() -> anyhow::Result<()> {
    let _shared = crate::support::shared().await;
    let cluster = cluster()?;
    let ns = cluster.namespace("e2e-endpoint")?;
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

    let branch = wait_branch_ready(cluster, ns, "feature").await?;
    let endpoint = branch.status.and_then(|s| s.endpoint).unwrap_or_default();
    assert_eq!(endpoint, connection_string("feature", ns));
    wait_endpoint_ready(cluster, ns, "feature").await?;

    let wrote = cluster
        .run_client(
            ns,
            "writer",
            &["write", &endpoint, "shop", "orders", "e2e", "5"],
        )
        .await?;
    assert_eq!(wrote["wrote"], 5, "{wrote}");
    let read = cluster
        .run_client(ns, "reader", &["count", &endpoint, "shop", "orders", "e2e"])
        .await?;
    assert_eq!(read["count"], 5, "{read}");
    Ok(())
}
