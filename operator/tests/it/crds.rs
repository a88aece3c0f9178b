//! The CRDs: generated files are current, they install, the apiserver
//! enforces their CEL rules with messages naming the field, and kubectl
//! prints their columns.

use crate::support::{
    BranchFixture, ProjectFixture, RunningOperator, kube_with_crds, namespace, test_config,
    wait_for,
};
use argon_operator::crd::{ArgonBranch, ArgonProject, CacheSpec, SidecarDefaults};
use argon_operator::crdgen;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
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

    // A history window nothing enforces yet is refused, not kept.
    let mut retained = ProjectFixture::test("retained").build();
    retained.spec.retention = Some(argon_operator::crd::RetentionSpec {
        history: Some("720h".into()),
    });
    let msg = refused(projects.create(&pp, &retained).await, "spec.retention");
    assert!(msg.contains("not implemented"), "{msg}");

    // The sidecar cache's sizes: quantities of bytes in range, nothing else.
    let cached = |memory: Option<&str>, disk: Option<&str>| {
        let mut project = ProjectFixture::test("cache").build();
        project.spec.sidecar = Some(SidecarDefaults {
            cache: Some(CacheSpec {
                enabled: None,
                memory: memory.map(Into::into),
                disk: disk.map(Into::into),
            }),
            ..SidecarDefaults::default()
        });
        project
    };
    let huge = "9".repeat(10_000);
    for (memory, disk, field) in [
        (Some("15Mi"), None, "spec.sidecar.cache.memory"),
        (Some("16777215"), None, "spec.sidecar.cache.memory"),
        (Some("2Ti"), None, "spec.sidecar.cache.memory"),
        (Some("-256Mi"), None, "spec.sidecar.cache.memory"),
        (Some("256MB"), None, "spec.sidecar.cache.memory"),
        (Some("1e9"), None, "spec.sidecar.cache.memory"),
        (Some("500m"), None, "spec.sidecar.cache.memory"),
        (Some("lots"), None, "spec.sidecar.cache.memory"),
        (Some(""), None, "spec.sidecar.cache.memory"),
        (
            Some("999999999999999999999Ei"),
            None,
            "spec.sidecar.cache.memory",
        ),
        (None, Some("63Mi"), "spec.sidecar.cache.disk"),
        (None, Some("2Pi"), "spec.sidecar.cache.disk"),
        (
            None,
            Some("99999999999999999999"),
            "spec.sidecar.cache.disk",
        ),
        (None, Some(" 2Gi"), "spec.sidecar.cache.disk"),
        (None, Some(huge.as_str()), "spec.sidecar.cache.disk"),
    ] {
        refused(projects.create(&pp, &cached(memory, disk)).await, field);
    }
    let raw_projects: Api<kube::core::DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::core::ApiResource::erase::<ArgonProject>(&()),
    );
    for (cache, field) in [
        (json!({"memory": 268435456}), "spec.sidecar.cache.memory"),
        (json!({"disk": ["2Gi"]}), "spec.sidecar.cache.disk"),
        (json!({"enabled": "yes"}), "spec.sidecar.cache.enabled"),
    ] {
        let mut project = serde_json::to_value(ProjectFixture::test("cache-raw").build())?;
        project["spec"]["sidecar"] = json!({"cache": cache});
        let project: kube::core::DynamicObject = serde_json::from_value(project)?;
        refused(raw_projects.create(&pp, &project).await, field);
    }
    for (i, (memory, disk)) in [("16Mi", "64Mi"), ("1.5Gi", "1Pi"), ("1Ti", "500G")]
        .into_iter()
        .enumerate()
    {
        let mut ok = cached(Some(memory), Some(disk));
        ok.metadata.name = Some(format!("cache-{i}"));
        let created = projects.create(&pp, &ok).await?;
        let cache = created.spec.sidecar.and_then(|s| s.cache).expect("cache");
        assert_eq!(cache.memory.as_deref(), Some(memory));
    }
    projects
        .create(&pp, &ProjectFixture::test("p").build())
        .await?;

    // kubectl's columns.
    let out = server.kubectl(&["get", "argonbranches", "-n", &ns])?;
    let header = out.lines().next().unwrap_or_default();
    for column in [
        "NAME", "PROJECT", "PARENT", "FORK", "PHASE", "HEAD", "ENDPOINT", "AGE",
    ] {
        assert!(header.contains(column), "missing {column} in {header:?}");
    }
    let wide = server.kubectl(&["get", "argonbranches", "-n", &ns, "-o", "wide"])?;
    let header = wide.lines().next().unwrap_or_default();
    for column in ["READ-ONLY", "EXPIRES"] {
        assert!(header.contains(column), "missing {column} in {header:?}");
    }
    assert!(out.contains("child"), "{out}");
    let out = server.kubectl(&["get", "aproj", "-n", &ns])?;
    for column in ["STORE", "PHASE", "BRANCHES", "MAIN-HEAD", "AGE"] {
        assert!(out.contains(column), "missing {column} in {out}");
    }
    let out = server.kubectl(&["get", "argon", "-n", &ns])?;
    assert!(out.contains("argonproject.argon.dev/p"), "{out}");
    assert!(out.contains("argonbranch.argon.dev/child"), "{out}");
    let out = server.kubectl(&["get", "abr", "child", "-n", &ns])?;
    assert!(out.contains("child"), "{out}");
    Ok(())
}

/// The CRD upgrade path: Helm installs `crds/` once and never upgrades them,
/// so the operator applies its own at start. A cluster holding an older
/// shape (a printer column and a field missing, an extra column) gets this
/// build's CRDs back, exactly, from an operator started with `apply_crds`.
#[tokio::test]
async fn the_operator_applies_its_crds_over_an_older_shape() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "argonbranches.argon.dev";
    let generated = crdgen::crds()?
        .into_iter()
        .find(|f| f.crd.metadata.name.as_deref() == Some(name))
        .map(|f| f.crd)
        .ok_or_else(|| anyhow::anyhow!("no generated {name}"))?;
    let current = |crd: &CustomResourceDefinition| {
        let (live, want) = (&crd.spec.versions[0], &generated.spec.versions[0]);
        live.additional_printer_columns == want.additional_printer_columns
            && live.schema == want.schema
    };

    // An older release's shape, written by another manager (as an older
    // chart's `helm install` would have left it).
    crds.patch(
        name,
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(json!([
            {"op": "remove", "path": "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/protected"},
            {"op": "replace", "path": "/spec/versions/0/additionalPrinterColumns", "value": [
                {"name": "OLD", "type": "string", "jsonPath": ".spec.parent"}
            ]},
        ]))?),
    )
    .await?;
    let old = crds.get(name).await?;
    assert!(!current(&old), "the CRD was made older");

    // Without apply_crds the operator leaves CRDs alone: it is ready (the
    // point where it would have applied them is behind it) and they are old.
    let operator = RunningOperator::start(client.clone(), test_config("no-apply"));
    argon_testkit::wait_until("the operator ready", crate::support::WAIT, || async {
        Ok(operator.metrics.is_ready())
    })
    .await?;
    operator.stop().await?;
    assert!(!current(&crds.get(name).await?), "CRDs applied unasked");

    let mut config = test_config("applies");
    config.apply_crds = true;
    let operator = RunningOperator::start(client.clone(), config);
    let upgraded = wait_for(&crds, name, "the CRD in this build's shape", current).await?;
    let managers: Vec<_> = upgraded
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.operation.as_deref() == Some("Apply"))
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers
            .iter()
            .any(|m| m == argon_operator::crd::FIELD_MANAGER),
        "applied by the operator's field manager: {managers:?}"
    );
    // The restored field is served again: the apiserver keeps it.
    let ns = namespace(&client, "crd-upgrade").await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let created = branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("kept", "p").protected().build(),
        )
        .await?;
    assert!(
        created.spec.protected,
        "spec.protected is in the schema again"
    );
    operator.stop().await?;
    Ok(())
}
