//! A namespace deleted while the operator restarts: deleting a namespace
//! deletes the store's Secret together with the project and branches whose
//! finalizers need the store, in no order. An operator that restarted
//! meanwhile never opened the store; it completes the finalizers from its own
//! copy of the connection (`store_copy`), and removes that copy after.

use crate::support::*;
use argon_operator::crd::{ArgonBranch, ArgonProject, DeletionPolicy};
use argon_operator::store_copy::StoreCopies;
use argon_testkit::FerretDb;
use argon_wal::{MongoStore, Wal, WalOptions};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

#[tokio::test]
async fn finalizers_complete_after_a_restart_once_the_store_secret_is_gone() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "preview").await?;
    let own = namespace(&client, "argon-system").await?;
    store_secret(&client, &ns, "shop-store", mongo.uri()).await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let mut project = ProjectFixture::test("shop").build();
    project.spec.deletion_policy = DeletionPolicy::Delete;
    projects.create(&PostParams::default(), &project).await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").no_endpoint().build(),
        )
        .await?;

    let mut config = test_config("first");
    config.store_copy_namespace = Some(own.clone());
    let first = RunningOperator::start(client.clone(), config.clone());
    wait_for(&branches, "feature", "Ready", |b| phase(b) == Some("Ready")).await?;
    let project = wait_for(&projects, "shop", "Ready", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
    })
    .await?;
    let copy_name = StoreCopies::name(&project).ok_or_else(|| anyhow::anyhow!("no uid"))?;
    let copies: Api<Secret> = Api::namespaced(client.clone(), &own);
    wait_for(&copies, &copy_name, "the operator's copy", |_| true).await?;
    first.kill();

    // The namespace is being deleted: the Secret goes at once, the project
    // and branch wait on their finalizers, and no operator runs.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .delete("shop-store", &DeleteParams::default())
        .await?;
    branches.delete("feature", &DeleteParams::default()).await?;
    projects.delete("shop", &DeleteParams::default()).await?;

    config.identity = "second".into();
    let second = RunningOperator::start(client.clone(), config);
    wait_gone(&branches, "feature").await?;
    wait_gone(&projects, "shop").await?;
    wait_gone(&copies, &copy_name).await?;
    second.stop().await?;

    // The finalizers did their work in the store: the branch is deleted.
    let store = MongoStore::connect(mongo.uri(), "argon_shop").await?;
    let wal = Wal::open(store, "shop", WalOptions::default()).await?;
    let live: Vec<String> = wal
        .list_branches()
        .await?
        .into_iter()
        .filter(|b| !b.deleted)
        .map(|b| b.name.as_str().to_string())
        .collect();
    assert_eq!(live, vec!["main".to_string()], "deletionPolicy Delete ran");
    Ok(())
}

/// The copy is for deletions only: a live project whose Secret is gone is
/// Pending, whatever the operator copied.
#[tokio::test]
async fn a_live_project_never_uses_the_copy() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "live").await?;
    let own = namespace(&client, "argon-system").await?;
    create_project(&client, &ns, "shop", &mongo).await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let mut config = test_config("first");
    config.store_copy_namespace = Some(own.clone());
    let first = RunningOperator::start(client.clone(), config.clone());
    let project = wait_for(&projects, "shop", "Ready", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
    })
    .await?;
    let copies: Api<Secret> = Api::namespaced(client.clone(), &own);
    let copy_name = StoreCopies::name(&project).ok_or_else(|| anyhow::anyhow!("no uid"))?;
    wait_for(&copies, &copy_name, "the operator's copy", |_| true).await?;
    first.kill();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .delete("shop-store", &DeleteParams::default())
        .await?;
    config.identity = "second".into();
    let second = RunningOperator::start(client.clone(), config);
    // A starting operator reconciles every project.
    let pending = wait_for(&projects, "shop", "Pending: its Secret is gone", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending")
    })
    .await?;
    let reason = project_condition(&pending, "StoreReachable")
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    assert_eq!(reason, "SecretNotReady");
    second.stop().await?;
    Ok(())
}
