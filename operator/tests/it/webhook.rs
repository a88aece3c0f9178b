//! The webhook (sidecar injection; ArgonBranch finalizers), called by the
//! real apiserver over TLS through a MutatingWebhookConfiguration (url +
//! caBundle), and requests no apiserver would send.

use crate::support::*;
use argon_operator::config::{WebhookConfig, WebhookTls};
use argon_operator::crd::{ArgonBranch, ArgonProject};
use argon_testkit::{KubeApiServer, free_port, wait_until};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::collections::BTreeMap;

/// An operator serving its webhook on a free port of 127.0.0.1, with a
/// certificate from the test apiserver's CA (which its caBundle trusts).
fn operator_with_webhook(
    server: &KubeApiServer,
    client: &kube::Client,
    identity: &str,
) -> anyhow::Result<(u16, RunningOperator)> {
    let port = free_port()?;
    let cert = server.ca().serving_cert(&["127.0.0.1"])?;
    let mut config = test_config(identity);
    config.webhook = Some(WebhookConfig {
        listen: format!("127.0.0.1:{port}").parse()?,
        tls: WebhookTls::Pem {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
        },
    });
    Ok((port, RunningOperator::start(client.clone(), config)))
}

fn pod(name: &str, inject: bool, branch: Option<&str>) -> Pod {
    let mut labels = BTreeMap::from([("app".to_string(), "shop".to_string())]);
    if inject {
        labels.insert("argon.dev/inject".into(), "true".into());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            annotations: branch
                .map(|b| BTreeMap::from([("argon.dev/branch".to_string(), b.to_string())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("example/shop:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[tokio::test]
async fn apiserver_calls_the_webhook_and_pods_get_the_sidecar() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let ns = namespace(&client, "inject").await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    projects
        .create(
            &PostParams::default(),
            &ProjectFixture::test("shop").build(),
        )
        .await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await?;

    let (port, operator) = operator_with_webhook(&server, &client, "webhook-op")?;

    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let webhook = MutatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some("argon-inject".into()),
            ..ObjectMeta::default()
        },
        webhooks: Some(vec![MutatingWebhook {
            name: "inject.argon.dev".into(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            failure_policy: Some("Fail".into()),
            client_config: WebhookClientConfig {
                url: Some(format!("https://127.0.0.1:{port}/mutate-pods")),
                ca_bundle: Some(ByteString(server.ca().cert_pem().into_bytes())),
                service: None,
            },
            object_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "argon.dev/inject".to_string(),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec!["".into()]),
                api_versions: Some(vec!["v1".into()]),
                operations: Some(vec!["CREATE".into()]),
                resources: Some(vec!["pods".into()]),
                scope: Some("Namespaced".into()),
            }]),
            ..MutatingWebhook::default()
        }]),
    };
    configs.create(&PostParams::default(), &webhook).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // The apiserver picks the configuration up asynchronously: probe with dry runs.
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    wait_until("the webhook is called", WAIT, || async {
        let p = pods
            .create(&dry, &pod("probe", true, Some("feature")))
            .await?;
        Ok(p.spec.and_then(|s| s.init_containers).is_some())
    })
    .await?;

    let created = pods
        .create(&PostParams::default(), &pod("app", true, Some("feature")))
        .await?;
    let spec = created.spec.clone().unwrap_or_default();
    let init = spec.init_containers.unwrap_or_default();
    assert_eq!(init.len(), 1);
    let sidecar = &init[0];
    assert_eq!(sidecar.name, "argon-sidecar");
    assert_eq!(
        sidecar.restart_policy.as_deref(),
        Some("Always"),
        "a native sidecar"
    );
    assert_eq!(sidecar.image.as_deref(), Some("argon-sidecar:test"));
    // Started means ready: the kubelet holds the app until /readyz answers.
    assert_eq!(
        sidecar
            .startup_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/readyz")
    );
    let env = |c: &Container, name: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env(sidecar, "ARGON_BRANCH").as_deref(), Some("feature"));
    assert_eq!(env(sidecar, "ARGON_PROJECT").as_deref(), Some("shop"));
    assert_eq!(
        env(sidecar, "ARGON_LISTEN").as_deref(),
        Some("127.0.0.1:27017")
    );
    let store = sidecar
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "ARGON_STORE")
        .and_then(|e| e.value_from.clone());
    assert_eq!(
        store.and_then(|v| v.secret_key_ref).map(|r| r.name),
        Some("shop-store".to_string())
    );
    assert_eq!(
        env(&spec.containers[0], "ARGON_MONGODB_URI").as_deref(),
        Some("mongodb://127.0.0.1:27017/")
    );
    let annotations = created.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get("argon.dev/injected").map(String::as_str),
        Some("feature")
    );

    // A pod naming a branch that does not exist is refused, saying so.
    let err = pods
        .create(&PostParams::default(), &pod("lost", true, Some("nope")))
        .await;
    match err {
        Err(kube::Error::Api(s)) => assert!(
            s.message.contains("ArgonBranch \"nope\" not found"),
            "{}",
            s.message
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A branch of an embedded-store project: refused, saying to use a
    // mongodb store (only one process may open an embedded store).
    let mut embedded = ProjectFixture::test("local").build();
    embedded.spec.store.mongodb = None;
    embedded.spec.store.embedded = Some(argon_operator::crd::EmbeddedStoreSpec {
        claim_name: "local-wal".into(),
        sub_path: None,
    });
    projects.create(&PostParams::default(), &embedded).await?;
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("on-disk", "local").build(),
        )
        .await?;
    match pods
        .create(&PostParams::default(), &pod("disk", true, Some("on-disk")))
        .await
    {
        Err(kube::Error::Api(s)) => assert!(
            s.message.contains("embedded store")
                && s.message.contains("local-wal")
                && s.message.contains("mongodb store"),
            "{}",
            s.message
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Unlabelled pods are left alone.
    let plain = pods
        .create(&PostParams::default(), &pod("plain", false, None))
        .await?;
    assert!(plain.spec.and_then(|s| s.init_containers).is_none());
    operator.stop().await?;
    Ok(())
}

/// An AdmissionReview of the creation of `object` (an ArgonBranch).
fn branch_review(object: serde_json::Value) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "8d1c",
            "kind": {"group": "argon.dev", "version": "v1alpha1", "kind": "ArgonBranch"},
            "resource": {"group": "argon.dev", "version": "v1alpha1", "resource": "argonbranches"},
            "operation": "CREATE",
            "userInfo": {},
            "object": object,
        }
    })
    .to_string()
    .into_bytes()
}

/// What the webhook answered: `(allowed, message, has a patch)`.
fn verdict(body: &[u8]) -> anyhow::Result<(bool, String, bool)> {
    let review: serde_json::Value = serde_json::from_slice(body)?;
    let response = &review["response"];
    Ok((
        response["allowed"].as_bool().unwrap_or(false),
        response["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        response.get("patch").is_some(),
    ))
}

/// Requests no apiserver sends reach the webhook's port (anyone in the
/// cluster can connect to it): each gets an answer of its own, nothing
/// crashes or waits, and the webhook keeps answering real reviews.
#[tokio::test]
async fn the_webhook_answers_hostile_requests_and_keeps_serving() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let (port, operator) = operator_with_webhook(&server, &client, "webhook-hostile")?;
    let ca = server.ca().cert_pem();
    let branch = serde_json::json!({
        "apiVersion": "argon.dev/v1alpha1", "kind": "ArgonBranch",
        "metadata": {"name": "feature", "namespace": "shop"},
        "spec": {"project": "shop", "parent": "main"},
    });
    wait_until("the webhook serves", WAIT, || async {
        Ok(raw_https(
            port,
            &ca,
            "POST",
            "/mutate-argonbranches",
            &branch_review(branch.clone()),
        )
        .await
        .is_ok())
    })
    .await?;

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut wrong_finalizers = branch.clone();
    wrong_finalizers["metadata"]["finalizers"] = serde_json::json!("argon.dev/cleanup");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            b"{not json".to_vec(),
            "malformed AdmissionReview",
        ),
        (
            "nested 100,000 deep",
            deep.into_bytes(),
            "malformed AdmissionReview",
        ),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "without a request",
        ),
        (
            "finalizers not a list",
            branch_review(wrong_finalizers),
            "malformed AdmissionReview",
        ),
        (
            "over 4 MiB",
            vec![b' '; 5 << 20],
            "reading the AdmissionReview",
        ),
    ];
    for path in ["/mutate-argonbranches", "/mutate-pods"] {
        for (what, body, expected) in &cases {
            let (status, reply) = raw_https(port, &ca, "POST", path, body).await?;
            assert_eq!(status, 200, "{path}, {what}");
            let (allowed, message, patched) = verdict(&reply)?;
            assert!(
                !allowed && !patched && message.contains(expected),
                "{path}, {what}: {message}"
            );
        }
    }
    for (method, path) in [("GET", "/mutate-argonbranches"), ("POST", "/mutate-other")] {
        let (status, _) = raw_https(port, &ca, method, path, b"{}").await?;
        assert_eq!(status, 404, "{method} {path}");
    }

    // Still serving: a real review gets the finalizer patch.
    let (status, reply) = raw_https(
        port,
        &ca,
        "POST",
        "/mutate-argonbranches",
        &branch_review(branch),
    )
    .await?;
    assert_eq!(status, 200);
    let (allowed, _, patched) = verdict(&reply)?;
    assert!(allowed && patched);
    operator.stop().await?;
    Ok(())
}
