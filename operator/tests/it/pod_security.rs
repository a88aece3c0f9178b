//! What runs in a cluster, checked by the real apiserver: endpoint pods and
//! injected sidecars pass the `restricted` Pod Security Standard (enforced
//! by the apiserver's PodSecurity admission on the namespace) and run
//! read-only, and an image outside the installation's allow-list never
//! runs: no endpoint Deployment, the webhook refuses the pod, both naming it.

use crate::support::*;
use argon_operator::config::{Config, WebhookConfig, WebhookTls};
use argon_operator::crd::{ArgonBranch, ArgonProject, SidecarDefaults};
use argon_testkit::{FerretDb, KubeApiServer, free_port, wait_until};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, Pod, PodSpec, SeccompProfile, SecurityContext,
    Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;

const ALLOWED: &str = "registry.example.com/argon-sidecar:*";

/// The operator's webhook on a free port, registered with the apiserver for
/// labelled pods.
async fn with_webhook(
    server: &KubeApiServer,
    client: &Client,
    config: &mut Config,
) -> anyhow::Result<()> {
    let port = free_port()?;
    let cert = server.ca().serving_cert(&["127.0.0.1"])?;
    config.webhook = Some(WebhookConfig {
        listen: format!("127.0.0.1:{port}").parse()?,
        tls: WebhookTls::Pem {
            cert_pem: cert.cert_pem,
            key_pem: cert.key_pem,
        },
    });
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
    Ok(())
}

fn restricted() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// An app pod asking for `branch`'s sidecar; `secure`: the app container
/// itself meets the restricted standard.
fn app_pod(name: &str, branch: &str, secure: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "argon.dev/inject".to_string(),
                "true".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "argon.dev/branch".to_string(),
                branch.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("example/shop:1".into()),
                security_context: secure.then(restricted),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The sidecar's own settings, whatever the pod says: non-root, read-only
/// root filesystem, no capabilities, no escalation, seccomp RuntimeDefault.
fn assert_locked_down(c: &Container) {
    let sc = c.security_context.clone().unwrap_or_default();
    assert_eq!(sc.run_as_non_root, Some(true), "{}: runAsNonRoot", c.name);
    assert!(
        sc.run_as_user.is_some_and(|u| u != 0),
        "{}: runAsUser",
        c.name
    );
    assert_eq!(
        sc.read_only_root_filesystem,
        Some(true),
        "{}: read-only root",
        c.name
    );
    assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
    let caps = sc.capabilities.unwrap_or_default();
    assert_eq!(caps.drop, Some(vec!["ALL".to_string()]), "{}", c.name);
    assert!(caps.add.unwrap_or_default().is_empty(), "{}", c.name);
    assert_eq!(
        sc.seccomp_profile.map(|p| p.type_).as_deref(),
        Some("RuntimeDefault"),
        "{}",
        c.name
    );
}

/// The sidecar's cache: an emptyDir of the chart's default size, mounted
/// in `sidecar` at the directory its settings name, with its memory budget.
fn assert_cache_volume(pod: &PodSpec, sidecar: &Container) {
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "argon-cache")
        .unwrap_or_else(|| panic!("no cache volume in {:?}", pod.volumes));
    let size = volume.empty_dir.as_ref().and_then(|e| e.size_limit.clone());
    assert_eq!(size.map(|q| q.0).as_deref(), Some("2Gi"));
    let mounted = sidecar
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == "argon-cache" && m.mount_path == "/var/cache/argon");
    assert!(mounted, "{:?}", sidecar.volume_mounts);
    let env: BTreeMap<_, _> = sidecar
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e.value.as_deref()))
        .collect();
    assert_eq!(env.get("ARGON_CACHE_DIR"), Some(&Some("/var/cache/argon")));
    assert_eq!(env.get("ARGON_CACHE_BYTES"), Some(&Some("268435456")));
    let disk_bound = ((2u64 << 30) / 100 * 90).to_string();
    assert_eq!(
        env.get("ARGON_CACHE_DISK_BYTES"),
        Some(&Some(disk_bound.as_str()))
    );
}

fn dry() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

#[tokio::test]
async fn endpoint_and_injected_pods_meet_the_restricted_standard() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "restricted").await?;
    server.kubectl(&[
        "label",
        "namespace",
        &ns,
        "pod-security.kubernetes.io/enforce=restricted",
    ])?;
    create_project(&client, &ns, "shop", &mongo).await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await?;
    let mut config = test_config("restricted-op");
    with_webhook(&server, &client, &mut config).await?;
    let operator = RunningOperator::start(client.clone(), config);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // The control: the apiserver really enforces the standard here.
    wait_until("the webhook answers", WAIT, || async {
        Ok(pods
            .create(&dry(), &app_pod("probe", "feature", true))
            .await
            .is_ok())
    })
    .await?;
    match pods.create(&dry(), &app_pod("lax", "feature", false)).await {
        Err(kube::Error::Api(s)) => assert!(
            s.message.contains("restricted") && s.message.contains("\"app\""),
            "{}",
            s.message
        ),
        other => panic!("an unrestricted app container was admitted: {other:?}"),
    }

    // An injected pod: admitted under `restricted`, the sidecar locked down.
    let injected = pods
        .create(&PostParams::default(), &app_pod("app", "feature", true))
        .await?;
    let injected_spec = injected.spec.unwrap_or_default();
    let init = injected_spec.init_containers.clone().unwrap_or_default();
    assert_eq!(init.len(), 1, "{init:?}");
    assert_locked_down(&init[0]);
    // Its cache on an emptyDir (the root filesystem is read-only), which
    // `restricted` allows, mounted where the sidecar is told to keep it.
    assert_cache_volume(&injected_spec, &init[0]);
    // A pod with volumes of its own keeps them and gets the cache beside them.
    let mut own = app_pod("app-with-volume", "feature", true);
    if let Some(spec) = own.spec.as_mut() {
        spec.volumes = Some(vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }]);
    }
    let own = pods.create(&PostParams::default(), &own).await?;
    let own_spec = own.spec.unwrap_or_default();
    let names: Vec<_> = own_spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.clone())
        .collect();
    assert_eq!(names, ["scratch", "argon-cache"]);
    assert_cache_volume(
        &own_spec,
        &own_spec.init_containers.clone().unwrap_or_default()[0],
    );

    // The endpoint's pod, as its Deployment's template makes it: admitted.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = wait_for(
        &deployments,
        "abr-feature",
        "the endpoint's Deployment",
        |_| true,
    )
    .await?;
    let template = deployment.spec.map(|s| s.template).expect("a pod template");
    let pod_spec = template.spec.clone().expect("a pod spec");
    assert_eq!(pod_spec.automount_service_account_token, Some(false));
    for c in &pod_spec.containers {
        assert_locked_down(c);
    }
    assert_cache_volume(&pod_spec, &pod_spec.containers[0]);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("endpoint-pod".into()),
            labels: template.metadata.and_then(|m| m.labels),
            ..ObjectMeta::default()
        },
        spec: Some(pod_spec),
        status: None,
    };
    pods.create(&dry(), &pod).await?;
    operator.stop().await?;
    Ok(())
}

#[tokio::test]
async fn images_outside_the_allow_list_never_run() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "images").await?;
    store_secret(&client, &ns, "shop-store", mongo.uri()).await?;
    let mut project = ProjectFixture::test("shop").build();
    project.spec.sidecar = Some(SidecarDefaults {
        image: Some("evil.example.com/miner:1".into()),
        ..SidecarDefaults::default()
    });
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    // Hostile: an image name beyond any registry's is refused by the schema.
    let mut long = project.clone();
    long.metadata.name = Some("long".into());
    if let Some(sidecar) = long.spec.sidecar.as_mut() {
        sidecar.image = Some(format!("registry.example.com/{}", "a".repeat(600)));
    }
    match projects.create(&PostParams::default(), &long).await {
        Err(kube::Error::Api(s)) => {
            assert!(s.message.contains("spec.sidecar.image"), "{}", s.message)
        }
        other => panic!("a 620-character image was accepted: {other:?}"),
    }
    projects.create(&PostParams::default(), &project).await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await?;
    let mut config = test_config("images-op");
    config.allowed_images = vec![ALLOWED.into()];
    with_webhook(&server, &client, &mut config).await?;
    let operator = RunningOperator::start(client.clone(), config);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    // The endpoint: refused by name, nothing applied.
    let b = wait_for(&branches, "feature", "image refused", |b| {
        has_condition(b, "EndpointReady", "False", "ImageNotAllowed")
    })
    .await?;
    let message = &condition(&b, "EndpointReady").expect("condition").message;
    assert!(message.contains("evil.example.com/miner:1"), "{message}");
    assert!(deployments.get_opt("abr-feature").await?.is_none());
    // The project says so too, where the image is chosen.
    let refused = wait_for(&projects, "shop", "SidecarImage False", |p| {
        project_condition(p, "SidecarImage")
            .is_some_and(|c| c.status == "False" && c.reason == "ImageNotAllowed")
    })
    .await?;
    let message = &project_condition(&refused, "SidecarImage")
        .expect("condition")
        .message;
    assert!(message.contains("evil.example.com/miner:1"), "{message}");
    wait_until("the project's ImageNotAllowed event", WAIT, || async {
        Ok(!event_notes(&client, &ns, "shop", "ImageNotAllowed")
            .await?
            .is_empty())
    })
    .await?;
    wait_until(
        "an ImageNotAllowed event naming the image",
        WAIT,
        || async {
            let notes = event_notes(&client, &ns, "feature", "ImageNotAllowed").await?;
            Ok(notes.iter().any(|n| n.contains("evil.example.com/miner:1")))
        },
    )
    .await?;

    // The webhook: the pod is refused, naming the image (never admitted
    // without its sidecar either: the app expects one on localhost).
    wait_until("the webhook refuses the pod", WAIT, || async {
        Ok(pods
            .create(&dry(), &app_pod("app", "feature", true))
            .await
            .is_err())
    })
    .await?;
    let refusal = match pods.create(&dry(), &app_pod("app", "feature", true)).await {
        Err(kube::Error::Api(s)) => s.message,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(refusal.contains("evil.example.com/miner:1"), "{refusal}");

    // An allowed image runs, in both places.
    let allowed = "registry.example.com/argon-sidecar:2";
    projects
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"sidecar": {"image": allowed}}})),
        )
        .await?;
    wait_until("the endpoint runs the allowed image", WAIT, || async {
        let image = deployments
            .get_opt("abr-feature")
            .await?
            .and_then(|d| d.spec)
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
        Ok(image.as_deref() == Some(allowed))
    })
    .await?;
    wait_for(&projects, "shop", "SidecarImage True", |p| {
        project_condition(p, "SidecarImage").is_some_and(|c| c.status == "True")
    })
    .await?;
    let injected = pods
        .create(&dry(), &app_pod("app", "feature", true))
        .await?;
    let image = injected
        .spec
        .and_then(|s| s.init_containers)
        .and_then(|c| c.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some(allowed));
    operator.stop().await?;
    Ok(())
}

/// A sidecar memory limit that leaves no room beside the cache's budget is
/// reported on the project (condition and event), never left to an OOM kill;
/// raising it clears the condition.
#[tokio::test]
async fn a_memory_limit_below_the_cache_budget_is_reported() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "cache-memory").await?;
    store_secret(&client, &ns, "shop-store", mongo.uri()).await?;
    let limited = |limit: &str| SidecarDefaults {
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity(limit.into()),
            )])),
            ..ResourceRequirements::default()
        }),
        ..SidecarDefaults::default()
    };
    let mut project = ProjectFixture::test("shop").build();
    project.spec.sidecar = Some(limited("256Mi"));
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    projects.create(&PostParams::default(), &project).await?;
    let operator = RunningOperator::start(client.clone(), test_config("cache-memory-op"));

    let low = wait_for(&projects, "shop", "SidecarCache False", |p| {
        project_condition(p, "SidecarCache")
            .is_some_and(|c| c.status == "False" && c.reason == "MemoryLimitTooLow")
    })
    .await?;
    let message = &project_condition(&low, "SidecarCache")
        .expect("condition")
        .message;
    assert!(message.contains("limits.memory 256Mi"), "{message}");
    assert!(message.contains("320 MiB"), "{message}");
    wait_until("a MemoryLimitTooLow event", WAIT, || async {
        let notes = event_notes(&client, &ns, "shop", "MemoryLimitTooLow").await?;
        Ok(notes.iter().any(|n| n.contains("limits.memory 256Mi")))
    })
    .await?;

    let raised = serde_json::json!({"spec": {"sidecar": limited("512Mi")}});
    projects
        .patch("shop", &PatchParams::default(), &Patch::Merge(&raised))
        .await?;
    wait_for(&projects, "shop", "SidecarCache True", |p| {
        project_condition(p, "SidecarCache")
            .is_some_and(|c| c.status == "True" && c.reason == "Enabled")
    })
    .await?;
    operator.stop().await?;
    Ok(())
}
