//! The webhook's own certificate: the operator (running as the chart's
//! ServiceAccount, with the chart's RBAC) creates the CA and serving
//! certificate Secret, publishes the CA as `caBundle` on the chart's
//! MutatingWebhookConfiguration, serves a certificate that verifies against
//! that bundle for the Service's DNS names, renews it without a restart, and
//! a replica that does not lead writes nothing but serves the same cert.

use crate::support::*;
use argon_operator::certs::{CA_CRT, FIELD_MANAGER, TLS_CRT};
use argon_operator::config::{CertSecretConfig, LeaderConfig, WebhookConfig, WebhookTls};
use argon_operator::crd::{ArgonBranch, ArgonProject, FINALIZER};
use argon_testkit::{KubeApiServer, assets, free_port, wait_until};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeMap;
use std::time::Duration;

const NS: &str = "argon-system";
const SECRET: &str = "argon-operator-webhook-tls";
const SERVICE: &str = "argon-operator-webhook";
const CONFIGURATION: &str = "argon-operator-inject";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:argon-system:argon-operator";

/// Applies charts/rendered/argon.yaml (the chart with default values) and
/// points its webhooks (pods, then ArgonBranches) at `port` on 127.0.0.1:
/// the test apiserver has no kube-proxy to reach the Service. The caBundle
/// is left to the operator.
fn apply_chart(server: &KubeApiServer, port: u16) -> anyhow::Result<()> {
    server.kubectl(&["create", "namespace", NS])?;
    let path = assets::workspace_root().join("charts/rendered/argon.yaml");
    server.kubectl(&["apply", "-n", NS, "-f", &path.to_string_lossy()])?;
    let patch = serde_json::json!([
        {"op": "remove", "path": "/webhooks/0/clientConfig/service"},
        {"op": "add", "path": "/webhooks/0/clientConfig/url",
         "value": format!("https://127.0.0.1:{port}/mutate-pods")},
        {"op": "test", "path": "/webhooks/1/clientConfig/service/path", "value": "/mutate-argonbranches"},
        {"op": "remove", "path": "/webhooks/1/clientConfig/service"},
        {"op": "add", "path": "/webhooks/1/clientConfig/url",
         "value": format!("https://127.0.0.1:{port}/mutate-argonbranches")},
    ]);
    server.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        CONFIGURATION,
        "--type=json",
        "-p",
        &patch.to_string(),
    ])?;
    Ok(())
}

/// A client acting as the chart's ServiceAccount (so the chart's RBAC is what is tested).
async fn service_account_client(server: &KubeApiServer) -> anyhow::Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig_path())?;
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.into());
    Ok(Client::try_from(config)?)
}

fn webhook_config(port: u16, validity: Duration) -> anyhow::Result<WebhookConfig> {
    let mut tls = CertSecretConfig::managed(NS, SECRET, SERVICE, CONFIGURATION);
    tls.check_every = Duration::from_millis(200);
    if let Some(manage) = tls.manage.as_mut() {
        // The apiserver calls https://127.0.0.1:<port>.
        manage.extra_names = vec!["127.0.0.1".into()];
        manage.cert_validity = validity;
    }
    Ok(WebhookConfig {
        listen: format!("127.0.0.1:{port}").parse()?,
        tls: WebhookTls::Secret(tls),
    })
}

fn elected(
    identity: &str,
    port: u16,
    validity: Duration,
) -> anyhow::Result<argon_operator::Config> {
    let mut config = test_config(identity);
    let mut leader = LeaderConfig::new(NS);
    leader.lease_duration = Duration::from_secs(3);
    leader.renew_deadline = Duration::from_secs(2);
    leader.renew_every = Duration::from_millis(300);
    config.leader = Some(leader);
    config.namespace = Some("inject".into());
    config.webhook = Some(webhook_config(port, validity)?);
    Ok(config)
}

/// The CA bundle the webhook configuration carries (PEM), when set on every webhook.
async fn ca_bundle(client: &Client) -> anyhow::Result<Option<String>> {
    let configs: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let config = configs.get(CONFIGURATION).await?;
    let bundles: Vec<Option<String>> = config
        .webhooks
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            w.client_config
                .ca_bundle
                .and_then(|b| String::from_utf8(b.0).ok())
        })
        .collect();
    Ok(match bundles.first() {
        Some(Some(b)) if bundles.iter().all(|x| x.as_ref() == Some(b)) => Some(b.clone()),
        _ => None,
    })
}

async fn secret_value(client: &Client, key: &str) -> anyhow::Result<Option<String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    Ok(secrets
        .get_opt(SECRET)
        .await?
        .and_then(|s| s.data)
        .and_then(|d| d.get(key).cloned())
        .and_then(|v| String::from_utf8(v.0).ok()))
}

fn pod(name: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                "argon.dev/inject".to_string(),
                "true".to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "argon.dev/branch".to_string(),
                "feature".to_string(),
            )])),
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

/// The apiserver calls the webhook (trusting the caBundle) and the pod gets the sidecar.
async fn apiserver_injects(client: &Client) -> anyhow::Result<bool> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "inject");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let p = pods.create(&dry, &pod("probe")).await?;
    Ok(p.spec.and_then(|s| s.init_containers).is_some())
}

/// The apiserver calls the chart's ArgonBranch webhook, and a branch is
/// created with the operator's finalizer already on it.
async fn apiserver_adds_the_finalizer(client: &Client) -> anyhow::Result<bool> {
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), "inject");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let b = branches
        .create(&dry, &BranchFixture::test("probe", "shop").build())
        .await?;
    Ok(b.finalizers() == [FINALIZER])
}

async fn project_and_branch(client: &Client) -> anyhow::Result<()> {
    let ns = namespace(client, "inject").await?;
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
    Ok(())
}

#[tokio::test]
async fn the_operator_issues_its_webhook_certificate_and_only_the_leader_writes()
-> anyhow::Result<()> {
    let (server, admin) = kube_with_crds().await?;
    project_and_branch(&admin).await?;
    let (port_a, port_b) = (free_port()?, free_port()?);
    apply_chart(&server, port_a)?;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), NS);
    let year = Duration::from_secs(365 * 24 * 3600);

    // Someone else holds the Lease: a standby replica writes nothing and,
    // with no Secret to read, serves no certificate (and is not ready).
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NS);
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some("argon-operator".into()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some("someone-else".into()),
                    lease_duration_seconds: Some(3600),
                    renew_time: Some(MicroTime(Timestamp::now())),
                    ..LeaseSpec::default()
                }),
            },
        )
        .await?;
    let b = RunningOperator::start(
        service_account_client(&server).await?,
        elected("op-b", port_b, year)?,
    );
    let standby_window = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < standby_window {
        assert!(
            secrets.get_opt(SECRET).await?.is_none(),
            "a standby created the Secret"
        );
        assert!(
            ca_bundle(&admin).await?.is_none(),
            "a standby published a caBundle"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!b.metrics.is_leader());
    assert!(!b.serving.is_loaded() && !b.metrics.is_ready());

    // The Lease frees up: op-b leads, creates the Secret and publishes the CA.
    leases.delete("argon-operator", &Default::default()).await?;
    wait_until("op-b publishes the caBundle", WAIT, || async {
        Ok(ca_bundle(&admin).await?.is_some() && b.serving.is_loaded())
    })
    .await?;
    assert!(b.metrics.is_leader() && b.metrics.is_ready());
    let bundle = ca_bundle(&admin).await?.unwrap_or_default();
    assert_eq!(
        secret_value(&admin, CA_CRT).await?.as_deref(),
        Some(bundle.as_str())
    );
    let secret = secrets.get(SECRET).await?;
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    // The caBundle has one owner: the certificate manager's field manager.
    let configs: Api<MutatingWebhookConfiguration> = Api::all(admin.clone());
    let managers: Vec<String> = configs
        .get(CONFIGURATION)
        .await?
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| f.0.to_string().contains("f:caBundle"))
        })
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec![FIELD_MANAGER.to_string()]);

    // The served certificate verifies against the caBundle for the Service's names.
    for name in [
        format!("{SERVICE}.{NS}.svc"),
        format!("{SERVICE}.{NS}.svc.cluster.local"),
    ] {
        let served = served_cert(port_b, &name, &bundle).await?;
        assert_eq!(Some(served), b.serving.current_der(), "{name}");
    }
    assert!(
        served_cert(port_b, "elsewhere.example", &bundle)
            .await
            .is_err(),
        "a name the certificate does not hold must not verify"
    );

    // A second replica that does not lead serves the same certificate, writing nothing.
    let version = secret.metadata.resource_version.clone();
    let a = RunningOperator::start(
        service_account_client(&server).await?,
        elected("op-a", port_a, year)?,
    );
    wait_until("op-a serves", WAIT, || async { Ok(a.serving.is_loaded()) }).await?;
    assert!(!a.metrics.is_leader() && a.metrics.is_ready());
    let from_a = served_cert(port_a, &format!("{SERVICE}.{NS}.svc"), &bundle).await?;
    assert_eq!(Some(from_a), b.serving.current_der());
    // The apiserver (which calls op-a's port) trusts it: pods get the
    // sidecar, new branches the finalizer.
    wait_until("the apiserver calls the webhook", WAIT, || async {
        apiserver_injects(&admin).await
    })
    .await?;
    wait_until(
        "the apiserver calls the ArgonBranch webhook",
        WAIT,
        || async { apiserver_adds_the_finalizer(&admin).await },
    )
    .await?;
    assert_eq!(
        secrets.get(SECRET).await?.metadata.resource_version,
        version
    );
    assert_eq!(ca_bundle(&admin).await?.as_deref(), Some(bundle.as_str()));
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_and_served_without_a_restart() -> anyhow::Result<()> {
    let (server, admin) = kube_with_crds().await?;
    project_and_branch(&admin).await?;
    let port = free_port()?;
    apply_chart(&server, port)?;
    // One replica without election; certificates live 6 s (renewed with 2 s left).
    let mut config = test_config("op");
    config.namespace = Some("inject".into());
    config.webhook = Some(webhook_config(port, Duration::from_secs(6))?);
    let operator = RunningOperator::start(service_account_client(&server).await?, config);
    wait_until("the first certificate is served", WAIT, || async {
        Ok(operator.serving.is_loaded() && ca_bundle(&admin).await?.is_some())
    })
    .await?;
    let bundle = ca_bundle(&admin).await?.unwrap_or_default();
    let name = format!("{SERVICE}.{NS}.svc");
    let first = served_cert(port, &name, &bundle).await?;
    wait_until("the apiserver calls the webhook", WAIT, || async {
        apiserver_injects(&admin).await
    })
    .await?;

    wait_until("a renewed certificate is served", WAIT, || async {
        Ok(served_cert(port, &name, &bundle).await? != first)
    })
    .await?;
    // Same server (never restarted), same CA, a new certificate from the Secret.
    let renewed = served_cert(port, &name, &bundle).await?;
    assert_eq!(ca_bundle(&admin).await?.as_deref(), Some(bundle.as_str()));
    let in_secret = secret_value(&admin, TLS_CRT).await?.unwrap_or_default();
    let in_secret = CertificateDer::pem_slice_iter(in_secret.as_bytes())
        .next()
        .transpose()?;
    // The Secret may already hold the next one; what is served came from it.
    assert!(in_secret.is_some());
    assert_ne!(renewed, first);
    assert!(
        apiserver_injects(&admin).await?,
        "the apiserver trusts the renewed certificate"
    );
    operator.stop().await?;
    Ok(())
}

/// The Deployment's environment from charts/rendered/argon.yaml, with
/// `fieldRef`s resolved as the kubelet would for pod `pod`.
fn chart_environment(pod: &str) -> anyhow::Result<Vec<(String, String)>> {
    use serde::Deserialize;
    let path = assets::workspace_root().join("charts/rendered/argon.yaml");
    let text = std::fs::read_to_string(path)?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let doc = serde_yaml::Value::deserialize(doc)?;
        if doc["kind"].as_str() != Some("Deployment") {
            continue;
        }
        let env = doc["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        return env
            .iter()
            .map(|e| {
                let name = e["name"].as_str().unwrap_or_default().to_string();
                let value = match e["value"].as_str() {
                    Some(v) => v.to_string(),
                    None if e["valueFrom"]["fieldRef"]["fieldPath"].as_str()
                        == Some("metadata.name") =>
                    {
                        pod.to_string()
                    }
                    None => anyhow::bail!("env {name}: unsupported valueFrom in the chart"),
                };
                Ok((name, value))
            })
            .collect();
    }
    anyhow::bail!("no Deployment in charts/rendered/argon.yaml")
}

/// The `argon-operator` binary, started with exactly the chart's default
/// environment (only the listen addresses moved to free loopback ports) and
/// the chart's ServiceAccount: it becomes ready, issues the webhook
/// certificate, publishes the caBundle, serves a certificate that verifies
/// for the Service's name, and logs no key material.
#[tokio::test]
async fn the_binary_runs_with_the_charts_default_environment() -> anyhow::Result<()> {
    let (server, admin) = kube_with_crds().await?;
    let (webhook_port, metrics_port) = (free_port()?, free_port()?);
    apply_chart(&server, webhook_port)?;
    let dir = tempfile::tempdir()?;
    // The ServiceAccount's identity, as its token would give it in a pod.
    let mut kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig_path())?;
    for user in &mut kubeconfig.auth_infos {
        if let Some(info) = user.auth_info.as_mut() {
            info.impersonate = Some(SERVICE_ACCOUNT.into());
        }
    }
    let kubeconfig_path = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig_path, serde_yaml::to_string(&kubeconfig)?)?;
    let log_path = dir.path().join("operator.log");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_argon-operator"));
    command
        .arg("run")
        .env_clear()
        .env("KUBECONFIG", &kubeconfig_path)
        .stdout(std::fs::File::create(&log_path)?)
        .stderr(std::fs::File::create(dir.path().join("stderr.log"))?)
        .kill_on_drop(true);
    for (name, value) in chart_environment("argon-operator-7d9f-abcde")? {
        let value = match name.as_str() {
            "ARGON_METRICS_LISTEN" => format!("127.0.0.1:{metrics_port}"),
            "ARGON_WEBHOOK_LISTEN" => format!("127.0.0.1:{webhook_port}"),
            _ => value,
        };
        command.env(name, value);
    }
    let mut child = command.spawn()?;
    let readyz = || async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", metrics_port)).await?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await?;
        anyhow::Ok(out.contains("200 OK"))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let ready: anyhow::Result<()> = loop {
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!("the operator exited: {status}"));
        }
        if readyz().await.unwrap_or(false) && ca_bundle(&admin).await?.is_some() {
            break Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "the operator did not become ready with a certificate"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Err(e) = ready {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
        anyhow::bail!("{e}\n--- operator log ---\n{log}\n{stderr}");
    }
    let bundle = ca_bundle(&admin).await?.unwrap_or_default();
    assert_eq!(
        secret_value(&admin, CA_CRT).await?.as_deref(),
        Some(bundle.as_str())
    );
    let served = served_cert(webhook_port, &format!("{SERVICE}.{NS}.svc"), &bundle).await?;
    let in_secret = secret_value(&admin, TLS_CRT).await?.unwrap_or_default();
    assert_eq!(
        CertificateDer::pem_slice_iter(in_secret.as_bytes())
            .next()
            .transpose()?,
        Some(served)
    );
    child.start_kill()?;
    child.wait().await?;
    let log = std::fs::read_to_string(&log_path)?;
    assert!(
        log.contains("published the webhook caBundle"),
        "the log says what happened:\n{log}"
    );
    for secret_text in ["PRIVATE KEY", "BEGIN CERTIFICATE"] {
        assert!(
            !log.contains(secret_text),
            "key material in the log:\n{log}"
        );
    }
    let ca_key = secret_value(&admin, "ca.key").await?.unwrap_or_default();
    let ca_key_body: String = ca_key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!ca_key_body.is_empty() && !log.contains(&ca_key_body));
    Ok(())
}

/// `--webhook-cert`/`--webhook-key` files (a mounted Secret that
/// cert-manager renews): re-read, and a new pair is served over TLS without
/// a restart; a half-written pair is not served, the previous one stays.
#[tokio::test]
async fn webhook_certificate_files_are_reread_when_they_change() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let dir = tempfile::tempdir()?;
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = server.ca().serving_cert(&["127.0.0.1"])?;
    std::fs::write(&cert_path, &first.cert_pem)?;
    std::fs::write(&key_path, &first.key_pem)?;
    let port = free_port()?;
    let mut config = test_config("files-op");
    config.webhook = Some(WebhookConfig {
        listen: format!("127.0.0.1:{port}").parse()?,
        tls: WebhookTls::Files {
            cert: cert_path.clone(),
            key: key_path.clone(),
            check_every: Duration::from_millis(200),
        },
    });
    let operator = RunningOperator::start(client.clone(), config);
    let ca = server.ca().cert_pem();
    let der = |pem: &str| -> anyhow::Result<CertificateDer<'static>> {
        Ok(CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .ok_or_else(|| anyhow::anyhow!("no certificate"))??)
    };
    let first_der = der(&first.cert_pem)?;
    wait_until("the first certificate is served", WAIT, || async {
        Ok(served_cert(port, "127.0.0.1", &ca).await.ok().as_ref() == Some(&first_der))
    })
    .await?;

    // Half-written: a new certificate with the old key does not load.
    let second = server.ca().serving_cert(&["127.0.0.1"])?;
    std::fs::write(&cert_path, &second.cert_pem)?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(served_cert(port, "127.0.0.1", &ca).await?, first_der);
    // Complete: the new pair is served.
    std::fs::write(&key_path, &second.key_pem)?;
    let second_der = der(&second.cert_pem)?;
    wait_until("the renewed certificate is served", WAIT, || async {
        Ok(served_cert(port, "127.0.0.1", &ca).await.ok().as_ref() == Some(&second_der))
    })
    .await?;
    operator.stop().await?;
    Ok(())
}
