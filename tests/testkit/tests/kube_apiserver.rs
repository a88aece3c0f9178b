//! The test apiserver is a real kube-apiserver on a real etcd: it serves
//! CRDs, stores custom resources, enforces schemas with its own errors, and
//! answers the real kubectl.

use argon_testkit::{KubeApiServer, wait_until};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A throwaway resource, so this test does not depend on Argon's own CRDs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "smoke.argon.dev", version = "v1", kind = "Widget", namespaced)]
struct WidgetSpec {
    size: u32,
    colour: String,
}

async fn install_widget_crd(client: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.create(&PostParams::default(), &Widget::crd()).await?;
    let name = crd.metadata.name.unwrap_or_default();
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(crds, &name, conditions::is_crd_established()),
    )
    .await??;
    Ok(())
}

#[tokio::test]
async fn custom_resource_round_trips_through_etcd() -> anyhow::Result<()> {
    let server = KubeApiServer::start().await?;
    let client = server.client().await?;
    install_widget_crd(&client).await?;

    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let created = widgets
        .create(
            &PostParams::default(),
            &Widget::new(
                "blue-one",
                WidgetSpec {
                    size: 3,
                    colour: "blue".into(),
                },
            ),
        )
        .await?;
    assert!(created.metadata.uid.is_some(), "the server assigns a uid");
    assert!(created.metadata.resource_version.is_some());

    // A fresh client reads it back: it was stored, not echoed.
    let other = server.client().await?;
    let read = Api::<Widget>::namespaced(other, "default")
        .get("blue-one")
        .await?;
    assert_eq!(read.spec.size, 3);
    assert_eq!(read.spec.colour, "blue");
    assert_eq!(read.metadata.uid, created.metadata.uid);
    Ok(())
}

#[tokio::test]
async fn apiserver_rejects_an_object_that_breaks_the_schema() -> anyhow::Result<()> {
    let server = KubeApiServer::start().await?;
    let client = server.client().await?;
    install_widget_crd(&client).await?;

    // `size` must be an integer and `colour` is required: the apiserver's
    // structural-schema validation must refuse this, naming both fields.
    let widgets: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &kube::api::ApiResource::erase::<Widget>(&()),
    );
    let bad = serde_json::json!({
        "apiVersion": "smoke.argon.dev/v1",
        "kind": "Widget",
        "metadata": {"name": "broken"},
        "spec": {"size": "huge"}
    });
    let err = widgets
        .create(&PostParams::default(), &serde_json::from_value(bad)?)
        .await
        .expect_err("the apiserver must reject an invalid Widget");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}");
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(status.reason, "Invalid", "{status:?}");
    assert!(status.message.contains("spec.size"), "{}", status.message);
    assert!(status.message.contains("spec.colour"), "{}", status.message);
    Ok(())
}

#[tokio::test]
async fn real_kubectl_talks_to_the_test_apiserver() -> anyhow::Result<()> {
    let server = KubeApiServer::start().await?;
    let client = server.client().await?;
    install_widget_crd(&client).await?;

    let manifest = server.dir().join("widget.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: smoke.argon.dev/v1\nkind: Widget\nmetadata:\n  name: from-kubectl\nspec:\n  size: 7\n  colour: red\n",
    )?;
    let applied = server.kubectl(&["apply", "-f", manifest.to_str().unwrap_or_default()])?;
    assert!(
        applied.contains("widget.smoke.argon.dev/from-kubectl created"),
        "{applied}"
    );

    let widgets: Api<Widget> = Api::namespaced(client, "default");
    wait_until(
        "kubectl's widget to be readable",
        Duration::from_secs(10),
        || {
            let widgets = widgets.clone();
            async move { Ok(widgets.get_opt("from-kubectl").await?.is_some()) }
        },
    )
    .await?;
    let listed = server.kubectl(&["get", "widgets", "-o", "name"])?;
    assert_eq!(listed.trim(), "widget.smoke.argon.dev/from-kubectl");
    Ok(())
}

#[tokio::test]
async fn servers_stop_when_their_handle_drops() -> anyhow::Result<()> {
    let server = KubeApiServer::start().await?;
    let pids = [server.apiserver_pid(), server.etcd_pid()];
    let dir = server.dir().to_path_buf();
    drop(server);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} still running after drop"
        );
    }
    assert!(
        !dir.exists(),
        "temporary directory {} left behind",
        dir.display()
    );
    Ok(())
}
