//! How much a branch's reconcile does: a new branch is reconciled once
//! (the operator's own finalizer and status writes do not wake it again),
//! and an endpoint turned off is removed whole although a branch without
//! an endpoint no longer asks the apiserver to delete anything.

use crate::support::*;
use argon_operator::crd::{ArgonBranch, ArgonProject};
use argon_testkit::{FerretDb, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

const BRANCHES: usize = 20;

#[tokio::test]
async fn a_new_branch_is_reconciled_once() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "once").await?;
    let mut config = test_config("once-op");
    // Periodic refreshes would add reconciles this test does not count.
    config.head_refresh = Duration::from_secs(600);
    let operator = RunningOperator::start(client.clone(), config);
    create_project(&client, &ns, "shop", &mongo).await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    wait_for(&projects, "shop", "project Ready", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
    })
    .await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let before = operator.metrics.reconciles("branch");
    let secret_reads = apiserver_requests(&client, "GET", "", "secrets").await?;
    let all = (0..BRANCHES)
        .map(|i| {
            BranchFixture::test(&format!("b{i}"), "shop")
                .no_endpoint()
                .build()
        })
        .collect();
    create_branches(&branches, all, 8).await?;
    wait_ready(&branches, BRANCHES, Duration::from_secs(60)).await?;
    // The watch events of their finalizer and status writes arrive within
    // this; before, each woke its branch again (three reconciles each).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reconciles = operator.metrics.reconciles("branch") - before;
    assert_eq!(reconciles, BRANCHES as u64, "one reconcile per new branch");
    // The store's Secret did not change: its value is the copy read when
    // the project was reconciled, not a GET per branch.
    let secret_reads = apiserver_requests(&client, "GET", "", "secrets").await? - secret_reads;
    assert!(
        secret_reads < 3,
        "{secret_reads} GETs of Secrets for {BRANCHES} branches of one project"
    );
    // One event per new branch without an endpoint (created and Ready).
    wait_until("an event per branch", Duration::from_secs(30), || async {
        let events = event_reasons(&client, &ns).await?;
        Ok(events.iter().filter(|r| *r == "Created").count() == BRANCHES)
    })
    .await?;
    let events = event_reasons(&client, &ns).await?;
    assert_eq!(
        events.iter().filter(|r| *r == "Ready").count(),
        0,
        "no Ready event beside Created: {events:?}"
    );
    // Each has the finalizer all the same.
    for b in branches.list(&ListParams::default()).await?.items {
        assert!(
            b.metadata
                .finalizers
                .iter()
                .flatten()
                .any(|f| f == argon_operator::crd::FINALIZER),
            "{:?}",
            b.metadata.name
        );
    }
    // A change of spec still wakes its branch.
    branches
        .patch(
            "b0",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"protected": true}})),
        )
        .await?;
    wait_for(&branches, "b0", "observed", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .is_some_and(|g| Some(g) == b.metadata.generation)
    })
    .await?;
    operator.stop().await?;
    Ok(())
}

#[tokio::test]
async fn an_endpoint_turned_off_is_removed_whole() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "off").await?;
    let operator = RunningOperator::start(client.clone(), test_config("off-op"));
    create_project(&client, &ns, "shop", &mongo).await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await?;
    wait_for(&branches, "feature", "endpoint written", |b| {
        condition(b, "EndpointReady").is_some() && condition(b, "ConnectionSecret").is_some()
    })
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let object = "abr-feature";
    let connection = "feature-argon-app";
    let tls = "feature-argon-tls";
    assert!(deployments.get_opt(object).await?.is_some());
    assert!(services.get_opt(object).await?.is_some());
    assert!(policies.get_opt(object).await?.is_some());
    assert!(secrets.get_opt(connection).await?.is_some());
    assert!(secrets.get_opt(tls).await?.is_some());

    branches
        .patch(
            "feature",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"endpoint": {"enabled": false}}})),
        )
        .await?;
    let off = wait_for(&branches, "feature", "endpoint conditions gone", |b| {
        [
            "EndpointReady",
            "ConnectionSecret",
            "EndpointTLS",
            "NetworkPolicy",
        ]
        .iter()
        .all(|c| condition(b, c).is_none())
            && b.status.as_ref().is_some_and(|s| s.endpoint.is_none())
    })
    .await?;
    assert_eq!(phase(&off), Some("Ready"));
    wait_until(
        "the endpoint's objects gone",
        Duration::from_secs(30),
        || async {
            Ok(deployments.get_opt(object).await?.is_none()
                && services.get_opt(object).await?.is_none()
                && policies.get_opt(object).await?.is_none()
                && secrets.get_opt(connection).await?.is_none()
                && secrets.get_opt(tls).await?.is_none())
        },
    )
    .await?;

    // On again: all of it comes back.
    branches
        .patch(
            "feature",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"endpoint": {"enabled": true}}})),
        )
        .await?;
    wait_until(
        "the endpoint's objects back",
        Duration::from_secs(30),
        || async {
            Ok(deployments.get_opt(object).await?.is_some()
                && services.get_opt(object).await?.is_some()
                && policies.get_opt(object).await?.is_some())
        },
    )
    .await?;
    operator.stop().await?;
    Ok(())
}

/// The reasons of the events about branches in `ns`.
async fn event_reasons(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ArgonBranch"))
        .filter_map(|e| e.reason)
        .collect())
}
