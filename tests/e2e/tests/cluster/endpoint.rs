//! A branch endpoint in a real pod: an `ArgonProject` on a mongodb store
//! (FerretDB running in the cluster), an `ArgonBranch` with an endpoint; the
//! branch becomes Ready, its endpoint pod Ready, and a client pod connects by
//! the Service's DNS name (the connection string in `status.endpoint`),
//! writes and reads back. And `kubectl get argonprojects,argonbranches`
//! shows what a user needs at a glance: the store, phases, branch count,
//! heads, parent and fork point, the endpoint's connection string, age.

use crate::support::{
    branch_yaml, cluster, kubectl_tables, project_yaml, wait_branch_ready, wait_endpoint_ready,
};
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

    // What a user sees.
    let out = cluster.kubectl(&["get", "argonprojects,argonbranches", "-n", ns, "-o", "wide"])?;
    let tables = kubectl_tables(&out);
    assert_eq!(tables.len(), 2, "a table per kind:\n{out}");
    let project = &tables[0][0];
    let columns: Vec<&str> = project.keys().map(String::as_str).collect();
    for column in [
        "NAME",
        "STORE",
        "PHASE",
        "BRANCHES",
        "MAIN-HEAD",
        "AGE",
        "IMPORT",
    ] {
        assert!(columns.contains(&column), "no {column} column:\n{out}");
    }
    assert_eq!(project["NAME"], "argonproject.argon.dev/shop", "{out}");
    assert_eq!(project["STORE"], "mongodb/argon_shop", "{out}");
    assert_eq!(project["PHASE"], "Ready", "{out}");
    let count: u64 = project["BRANCHES"]
        .parse()
        .map_err(|e| anyhow::anyhow!("BRANCHES: {e}\n{out}"))?;
    assert!(count >= 1, "main at least:\n{out}");
    project["MAIN-HEAD"]
        .parse::<u64>()
        .map_err(|e| anyhow::anyhow!("MAIN-HEAD: {e}\n{out}"))?;
    assert!(!project["AGE"].is_empty(), "{out}");
    assert_eq!(project["IMPORT"], "", "no spec.import:\n{out}");

    let branch = &tables[1][0];
    assert_eq!(branch["NAME"], "argonbranch.argon.dev/feature", "{out}");
    assert_eq!(branch["PROJECT"], "shop", "{out}");
    assert_eq!(branch["PARENT"], "main", "{out}");
    branch["FORK"]
        .parse::<u64>()
        .map_err(|e| anyhow::anyhow!("FORK: {e}\n{out}"))?;
    assert_eq!(branch["PHASE"], "Ready", "{out}");
    branch["HEAD"]
        .parse::<u64>()
        .map_err(|e| anyhow::anyhow!("HEAD: {e}\n{out}"))?;
    assert_eq!(branch["ENDPOINT"], endpoint, "{out}");
    assert!(!branch["AGE"].is_empty(), "{out}");
    assert_eq!(branch["READ-ONLY"], "false", "{out}");
    assert_eq!(branch["EXPIRES"], "", "no expireAfter:\n{out}");
    Ok(())
}
