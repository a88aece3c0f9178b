//! The CRDs: generated files are current, they install, the apiserver
//! enforces their CEL rules with messages naming the field, and kubectl
//! prints their columns.

use crate::support::{BranchFixture, ProjectFixture, kube_with_crds, namespace};
use argon_operator::crd::{ArgonBranch, ArgonProject};
use argon_operator::crdgen;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

#[test]
fn crds_directory_is_current() {
    let dir = argon_testkit::assets::workspace_root().join("crds");
    for file in crdgen::crds().expect("rendering CRDs") {
        let path = dir.join(file.file_name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == file.yaml,
            "{} is stale or missing: regenerate it with `{}`",
            path.display(),
            crdgen::REGENERATE
        );
    }
}

#[test]
fn chart_crds_match_generated() {
    let dir = argon_testkit::assets::workspace_root().join("charts/argon/crds");
    for file in crdgen::crds().expect("rendering CRDs") {
        let path = dir.join(file.file_name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == file.yaml,
            "{} is stale or missing: regenerate it with `{}`",
            path.display(),
            crdgen::REGENERATE_CHART
        );
    }
}

fn refused(result: kube::Result<impl std::fmt::Debug>, field: &str) -> String {
    match result {
        Ok(obj) => panic!("the apiserver accepted an invalid object: {obj:?}"),
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "expected 422 Invalid, got {s:?}");
            assert!(
                s.message.contains(field),
                "message does not name {field}: {}",
                s.message
            );
            s.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn apiserver_enforces_the_schema_and_kubectl_prints_columns() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let ns = namespace(&client, "crds").await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();

    // Missing project.
    let raw: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::core::ApiResource::erase::<ArgonBranch>(&()),
    );
    let no_project: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argon.dev/v1alpha1", "kind": "ArgonBranch",
        "metadata": {"name": "no-project"}, "spec": {"parent": "main"}
    }))?;
    refused(raw.create(&pp, &no_project).await, "spec.project");

    // Both seq and timestamp.
    let mut both = BranchFixture::test("both", "p").forked_at_seq(3).build();
    if let Some(from) = both.spec.from.as_mut() {
        from.timestamp = Some("2026-01-01T00:00:00.250Z".into());
    }
    let msg = refused(branches.create(&pp, &both).await, "spec.from");
    assert!(msg.contains("seq") && msg.contains("timestamp"), "{msg}");

    // A bad parent name, and a name the WAL cannot hold.
    refused(
        branches
            .create(
                &pp,
                &BranchFixture::test("bad-parent", "p")
                    .parent("Not_Valid!")
                    .build(),
            )
            .await,
        "spec.parent",
    );
    refused(
        branches
            .create(&pp, &BranchFixture::test(&"x".repeat(70), "p").build())
            .await,
        "metadata.name",
    );
    refused(
        branches
            .create(
                &pp,
                &BranchFixture::test("bad-expiry", "p")
                    .expire_after("tomorrow")
                    .build(),
            )
            .await,
        "spec.expireAfter",
    );

    // Immutable parent, project and from.
    let created = branches
        .create(
            &pp,
            &BranchFixture::test("child", "p")
                .parent("main")
                .forked_at_seq(2)
                .build(),
        )
        .await?;
    assert_eq!(created.spec.parent, "main");
    let patch = |spec: serde_json::Value| Patch::Merge(json!({ "spec": spec }));
    let params = PatchParams::default();
    refused(
        branches
            .patch("child", &params, &patch(json!({"parent": "other"})))
            .await,
        "spec.parent",
    );
    refused(
        branches
            .patch("child", &params, &patch(json!({"project": "q"})))
            .await,
        "spec.project",
    );
    refused(
        branches
            .patch("child", &params, &patch(json!({"from": {"seq": 9}})))
            .await,
        "spec.from",
    );
    refused(
        branches
            .patch("child", &params, &patch(json!({"from": null})))
            .await,
        "spec.from",
    );
    // A mutable field still changes.
    branches
        .patch("child", &params, &patch(json!({"protected": true})))
        .await?;

    // Defaults are applied by the apiserver.
    let defaulted = branches
        .create(&pp, &BranchFixture::test("defaults", "p").build())
        .await?;
    assert_eq!(defaulted.spec.parent, "main");
    assert!(defaulted.spec.endpoint.enabled);

    // The project's store is one of two kinds.
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let mut two_stores = ProjectFixture::test("two").build();
    two_stores.spec.store.embedded = Some(argon_operator::crd::EmbeddedStoreSpec {
        claim_name: "data".into(),
        sub_path: None,
    });
    refused(projects.create(&pp, &two_stores).await, "spec.store");
    projects
        .create(&pp, &ProjectFixture::test("p").build())
        .await?;

    // kubectl's columns.
    let out = server.kubectl(&["get", "argonbranches", "-n", &ns])?;
    let header = out.lines().next().unwrap_or_default();
    for column in [
        "NAME", "PROJECT", "PARENT", "PHASE", "HEAD", "ENDPOINT", "AGE",
    ] {
        assert!(header.contains(column), "missing {column} in {header:?}");
    }
    assert!(out.contains("child"), "{out}");
    let out = server.kubectl(&["get", "aproj", "-n", &ns])?;
    for column in ["STORE", "BRANCHES", "PHASE", "AGE"] {
        assert!(out.contains(column), "missing {column} in {out}");
    }
    let out = server.kubectl(&["get", "argon", "-n", &ns])?;
    assert!(out.contains("argonproject.argon.dev/p"), "{out}");
    assert!(out.contains("argonbranch.argon.dev/child"), "{out}");
    let out = server.kubectl(&["get", "abr", "child", "-n", &ns])?;
    assert!(out.contains("child"), "{out}");
    Ok(())
}
