//! The whole life of branches, checked at every step in the CR status, the
//! endpoint objects and the store: project -> main -> branch from head ->
//! from a past seq and from a time -> writes -> reset dry run, then for real
//! with a backup -> deletion refused while a child exists (and while
//! protected) -> children deleted, then the parent. And: the operator killed
//! midway converges after a restart with no duplicate objects.

use crate::support::*;
use argon_operator::crd::{ArgonBranch, ArgonProject};
use argon_testkit::{FerretDb, wait_until};
use argon_wal::{CommitInfo, DocOp, MongoStore, Namespace, Wal, WalOptions};
use bson::{Bson, doc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

/// The test's own handle on the project's WAL: the same store the operator uses.
async fn open_wal(mongo: &FerretDb, project: &str) -> anyhow::Result<Wal> {
    let store =
        MongoStore::connect(mongo.uri(), &format!("argon_{}", project.replace('-', "_"))).await?;
    Ok(Wal::open(store, project, WalOptions::default()).await?)
}

async fn put(wal: &Wal, branch: &str, id: i32) -> anyhow::Result<CommitInfo> {
    let (_, info) = wal
        .write(branch, move |_| {
            Ok::<_, std::convert::Infallible>((
                vec![DocOp::Put {
                    ns: Namespace::new("shop", "orders"),
                    id: Bson::Int32(id),
                    doc: argon_wal::rawdoc::encode(&doc! {"_id": id, "n": id}).expect("encodes"),
                }],
                (),
            ))
        })
        .await
        .map_err(|e| anyhow::anyhow!("write: {e:?}"))?;
    // Distinct commit times, so a time names one commit.
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(info)
}

fn seq_of(
    b: &ArgonBranch,
    f: impl Fn(&argon_operator::crd::ArgonBranchStatus) -> Option<i64>,
) -> Option<i64> {
    b.status.as_ref().and_then(f)
}

async fn events_for(client: &Client, ns: &str, name: &str, reason: &str) -> anyhow::Result<usize> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
                && e.reason.as_deref() == Some(reason)
        })
        .count())
}

#[tokio::test]
async fn branch_lifecycle() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "life").await?;
    let mut operator = RunningOperator::start(client.clone(), test_config("life-op"));

    // Project -> main.
    create_project(&client, &ns, "shop", &mongo).await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let project = wait_for(&projects, "shop", "project Ready", |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
    })
    .await?;
    let st = project.status.clone().unwrap_or_default();
    assert_eq!(st.store.as_deref(), Some("mongodb/argon_shop"));
    assert_eq!(st.branches, Some(1));
    assert!(
        st.conditions
            .iter()
            .any(|c| c.type_ == "StoreReachable" && c.status == "True")
    );
    let wal = open_wal(&mongo, "shop").await?;
    assert_eq!(wal.branch("main").await?.name.as_str(), "main");

    // Three commits on main.
    let c1 = put(&wal, "main", 1).await?;
    let c2 = put(&wal, "main", 2).await?;
    let c3 = put(&wal, "main", 3).await?;
    assert_eq!((c1.seq.0, c2.seq.0, c3.seq.0), (1, 2, 3));

    // A branch from main's head.
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    branches
        .create(&pp, &BranchFixture::test("feature", "shop").build())
        .await?;
    let feature = wait_for(&branches, "feature", "Ready", |b| phase(b) == Some("Ready")).await?;
    assert_eq!(seq_of(&feature, |s| s.fork_seq), Some(3));
    assert_eq!(seq_of(&feature, |s| s.head_seq), Some(0));
    let status = feature.status.clone().unwrap_or_default();
    assert_eq!(
        status.endpoint.as_deref(),
        Some("mongodb://abr-feature.life.svc:27017/?loadBalanced=true&tls=true")
    );
    assert!(condition(&feature, "Ready").is_some_and(|c| c.status == "True"));
    // No kubelet here: the endpoint's pods never come up.
    assert!(condition(&feature, "EndpointReady").is_some_and(|c| c.status == "False"));
    let in_store = wal.branch("feature").await?;
    assert_eq!(in_store.parent.as_ref().map(|p| p.as_str()), Some("main"));
    assert_eq!(in_store.fork_seq.map(|s| s.0), Some(3));
    assert_eq!(status.branch_id, Some(in_store.id.0 as i64));

    // Its endpoint: a Deployment and a Service owned by the branch.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let deployment = deployments.get("abr-feature").await?;
    let owner = &deployment
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ArgonBranch", "feature")
    );
    let pod = deployment
        .spec
        .and_then(|s| s.template.spec)
        .unwrap_or_default();
    let container = &pod.containers[0];
    let env = |name: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .map(|e| (e.value.clone(), e.value_from.clone()))
    };
    assert_eq!(
        env("ARGON_BRANCH").and_then(|e| e.0).as_deref(),
        Some("feature")
    );
    assert_eq!(
        env("ARGON_PROJECT").and_then(|e| e.0).as_deref(),
        Some("shop")
    );
    assert_eq!(
        env("ARGON_LISTEN").and_then(|e| e.0).as_deref(),
        Some("0.0.0.0:27017")
    );
    let store_ref = env("ARGON_STORE")
        .and_then(|e| e.1)
        .and_then(|v| v.secret_key_ref);
    assert_eq!(store_ref.map(|r| r.name), Some("shop-store".to_string()));
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    let sc = container.security_context.clone().unwrap_or_default();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    let service = services.get("abr-feature").await?;
    let port = &service.spec.and_then(|s| s.ports).unwrap_or_default()[0];
    assert_eq!(port.port, 27017);

    // Branches from a past seq and from a time.
    branches
        .create(
            &pp,
            &BranchFixture::test("past", "shop")
                .forked_at_seq(1)
                .no_endpoint()
                .build(),
        )
        .await?;
    let at = Timestamp::from_millisecond(c2.time.0)?.to_string();
    branches
        .create(
            &pp,
            &BranchFixture::test("at-time", "shop")
                .forked_at_time(&at)
                .no_endpoint()
                .build(),
        )
        .await?;
    let past = wait_for(&branches, "past", "Ready", |b| phase(b) == Some("Ready")).await?;
    assert_eq!(seq_of(&past, |s| s.fork_seq), Some(1));
    assert_eq!(past.status.and_then(|s| s.endpoint), None);
    assert!(deployments.get_opt("abr-past").await?.is_none());
    let at_time = wait_for(&branches, "at-time", "Ready", |b| phase(b) == Some("Ready")).await?;
    assert_eq!(seq_of(&at_time, |s| s.fork_seq), Some(2));
    assert_eq!(wal.branch("at-time").await?.fork_seq.map(|s| s.0), Some(2));
    let state = wal.read("past", argon_wal::ReadPoint::Head).await?;
    assert_eq!(
        state
            .collection(&Namespace::new("shop", "orders"))
            .expect("reads")
            .map(|c| c.len().expect("reads")),
        Some(1)
    );

    // A point beyond the parent's head is refused in status.
    branches
        .create(
            &pp,
            &BranchFixture::test("future", "shop")
                .forked_at_seq(99)
                .no_endpoint()
                .build(),
        )
        .await?;
    let future = wait_for(&branches, "future", "Failed", |b| {
        phase(b) == Some("Failed")
    })
    .await?;
    assert!(
        condition(&future, "Ready").is_some_and(|c| c.reason == "InvalidForkPoint"),
        "{future:?}"
    );

    // Writes through the store move the branch's head.
    put(&wal, "feature", 10).await?;
    put(&wal, "feature", 11).await?;
    wait_for(&branches, "feature", "head at 2", |b| {
        seq_of(b, |s| s.head_seq) == Some(2)
    })
    .await?;

    // Reset, dry run: a preview, nothing changes.
    let params = PatchParams::default();
    let reset = |dry_run: bool| {
        Patch::Merge(
            json!({"spec": {"reset": {"seq": 0, "dryRun": dry_run, "backupBranch": "feature-backup"}}}),
        )
    };
    branches.patch("feature", &params, &reset(true)).await?;
    let previewed = wait_for(&branches, "feature", "reset previewed", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_reset.as_ref())
            .is_some_and(|l| l.outcome == "Previewed")
    })
    .await?;
    let preview = previewed
        .status
        .and_then(|s| s.reset_preview)
        .unwrap_or_default();
    assert_eq!(
        (preview.from_seq, preview.to_seq, preview.removed),
        (2, 0, 2),
        "{preview:?}"
    );
    assert_eq!(wal.branch("feature").await?.start_seq.0, 0);
    assert_eq!(
        wal.log_info("feature").await?.last.map(|c| c.seq.0),
        Some(2)
    );
    assert!(wal.branch("feature-backup").await.is_err());

    // Reset for real, with a backup branch.
    branches.patch("feature", &params, &reset(false)).await?;
    let applied = wait_for(&branches, "feature", "reset applied, head at 0", |b| {
        b.status
            .as_ref()
            .and_then(|s| s.last_reset.as_ref())
            .is_some_and(|l| l.outcome == "Applied")
            && seq_of(b, |s| s.head_seq) == Some(0)
    })
    .await?;
    assert_ne!(
        seq_of(&applied, |s| s.branch_id),
        status.branch_id,
        "a reset starts a new incarnation"
    );
    let state = wal.read("feature", argon_wal::ReadPoint::Head).await?;
    assert_eq!(
        state
            .collection(&Namespace::new("shop", "orders"))
            .expect("reads")
            .map(|c| c.len().expect("reads")),
        Some(3)
    );
    let backup = wal.branch("feature-backup").await?;
    assert_eq!(backup.parent.as_ref().map(|p| p.as_str()), Some("feature"));
    let backup_state = wal
        .read("feature-backup", argon_wal::ReadPoint::Head)
        .await?;
    assert_eq!(
        backup_state
            .collection(&Namespace::new("shop", "orders"))
            .expect("reads")
            .map(|c| c.len().expect("reads")),
        Some(5)
    );
    let backup_cr = wait_for(&branches, "feature-backup", "backup Ready", |b| {
        phase(b) == Some("Ready")
    })
    .await?;
    assert_eq!(backup_cr.spec.parent, "feature");
    // Events are published in the background: wait for it.
    wait_until("ResetApplied event", WAIT, || async {
        Ok(events_for(&client, &ns, "feature", "ResetApplied").await? >= 1)
    })
    .await?;

    // Exactly once: a write on the new history, then the status loses
    // `lastReset` (as if the operator had crashed before writing it). The
    // reset is recognised from the log and not run again. The operator is
    // stopped around the edit, as a crash would leave it: a reconcile still
    // in flight would otherwise write back the status it read before it.
    operator.stop().await?;
    put(&wal, "feature", 12).await?;
    branches
        .patch_status(
            "feature",
            &params,
            &Patch::Merge(json!({"status": {"lastReset": null}})),
        )
        .await?;
    operator = RunningOperator::start(client.clone(), test_config("life-op"));
    wait_for(&branches, "feature", "reset recognised as applied", |b| {
        condition(b, "Reset").is_some_and(|c| c.message.contains("recorded in the log"))
            && b.status
                .as_ref()
                .and_then(|s| s.last_reset.as_ref())
                .is_some_and(|l| l.outcome == "Applied")
    })
    .await?;
    let state = wal.read("feature", argon_wal::ReadPoint::Head).await?;
    assert_eq!(
        state
            .collection(&Namespace::new("shop", "orders"))
            .expect("reads")
            .map(|c| c.len().expect("reads")),
        Some(4),
        "the write after the reset survived"
    );

    // Deleting a branch with a child is refused; the finalizer stays.
    branches.delete("feature", &DeleteParams::default()).await?;
    let blocked = wait_for(&branches, "feature", "deletion blocked", |b| {
        condition(b, "DeletionBlocked").is_some_and(|c| c.status == "True")
    })
    .await?;
    assert!(
        condition(&blocked, "DeletionBlocked")
            .is_some_and(|c| c.message.contains("feature-backup"))
    );
    assert!(blocked.metadata.deletion_timestamp.is_some());
    wait_until("DeletionBlocked event", WAIT, || async {
        Ok(events_for(&client, &ns, "feature", "DeletionBlocked").await? >= 1)
    })
    .await?;
    assert!(
        deployments.get_opt("abr-feature").await?.is_some(),
        "endpoint kept while blocked"
    );
    assert!(!wal.branch("feature").await?.deleted);

    // A protected branch is not deleted either, until unprotected.
    branches
        .patch(
            "past",
            &params,
            &Patch::Merge(json!({"spec": {"protected": true}})),
        )
        .await?;
    wait_for(&branches, "past", "protected seen", |b| {
        b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation
    })
    .await?;
    branches.delete("past", &DeleteParams::default()).await?;
    wait_for(&branches, "past", "deletion blocked", |b| {
        condition(b, "DeletionBlocked").is_some_and(|c| c.reason == "Protected")
    })
    .await?;
    branches
        .patch(
            "past",
            &params,
            &Patch::Merge(json!({"spec": {"protected": false}})),
        )
        .await?;
    wait_gone(&branches, "past").await?;
    assert!(wal.branch("past").await?.deleted);

    // Delete the child: the parent's deletion proceeds by itself.
    branches
        .delete("feature-backup", &DeleteParams::default())
        .await?;
    wait_gone(&branches, "feature-backup").await?;
    wait_gone(&branches, "feature").await?;
    assert!(deployments.get_opt("abr-feature").await?.is_none());
    assert!(services.get_opt("abr-feature").await?.is_none());
    assert!(wal.branch("feature").await?.deleted);
    assert!(wal.branch("feature-backup").await?.deleted);
    // Commits stay in the log: main is untouched.
    assert_eq!(wal.log_info("main").await?.last.map(|c| c.seq.0), Some(3));

    operator.stop().await?;
    Ok(())
}

#[tokio::test]
async fn operator_restart_converges_without_duplicates() -> anyhow::Result<()> {
    const BRANCHES: usize = 30;
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "restart").await?;
    create_project(&client, &ns, "app", &mongo).await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    for i in 0..BRANCHES {
        branches
            .create(
                &PostParams::default(),
                &BranchFixture::test(&format!("b{i}"), "app").build(),
            )
            .await?;
    }
    // Kill the first operator while it is midway through.
    let first = RunningOperator::start(client.clone(), test_config("first"));
    wait_until("some branches Ready", WAIT, || async {
        let ready = branches
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|b| phase(b) == Some("Ready"))
            .count();
        Ok(ready >= 3)
    })
    .await?;
    first.kill();

    let second = RunningOperator::start(client.clone(), test_config("second"));
    wait_until("all branches Ready", Duration::from_secs(60), || async {
        let ready = branches
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .filter(|b| phase(b) == Some("Ready"))
            .count();
        Ok(ready == BRANCHES)
    })
    .await?;
    second.stop().await?;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let lp = ListParams::default().labels("argon.dev/project=app");
    assert_eq!(deployments.list(&lp).await?.items.len(), BRANCHES);
    assert_eq!(services.list(&lp).await?.items.len(), BRANCHES);
    let wal = open_wal(&mongo, "app").await?;
    let live: Vec<_> = wal
        .list_branches()
        .await?
        .into_iter()
        .filter(|b| !b.deleted)
        .collect();
    assert_eq!(
        live.len(),
        BRANCHES + 1,
        "main + one store branch per ArgonBranch"
    );
    let mut ids: Vec<i64> = branches
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|b| b.status.as_ref().and_then(|s| s.branch_id))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        BRANCHES,
        "every ArgonBranch points at its own store branch"
    );
    Ok(())
}
