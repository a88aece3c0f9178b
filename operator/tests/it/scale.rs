//! 200 branches of one project, all reconciled to Ready (with endpoints).

use crate::support::*;
use argon_operator::crd::ArgonBranch;
use argon_testkit::FerretDb;
use kube::Api;
use kube::api::ListParams;
use std::time::Duration;

const BRANCHES: usize = 200;

#[tokio::test]
async fn two_hundred_branches_become_ready() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "scale").await?;
    let mut config = test_config("scale-op");
    // Head refreshes are not what this test measures.
    config.head_refresh = Duration::from_secs(60);
    let operator = RunningOperator::start(client.clone(), config);
    create_project(&client, &ns, "big", &mongo).await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let all = (0..BRANCHES)
        .map(|i| BranchFixture::test(&format!("sandbox-{i}"), "big").build())
        .collect();
    let started = std::time::Instant::now();
    create_branches(&branches, all, 16).await?;
    let created = started.elapsed();
    wait_ready(&branches, BRANCHES, Duration::from_secs(90)).await?;
    // For a person reading the log; nothing here is timed.
    eprintln!(
        "{BRANCHES} branches created in {created:?}, all Ready {:?} after the first create",
        started.elapsed()
    );
    let list = branches.list(&ListParams::default()).await?;
    let mut ids: Vec<i64> = list
        .items
        .iter()
        .filter_map(|b| b.status.as_ref().and_then(|s| s.branch_id))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), BRANCHES);
    assert!(
        operator
            .metrics
            .encode()
            .contains("argon_operator_branches{phase=\"Ready\"} 200")
    );
    operator.stop().await?;
    Ok(())
}
