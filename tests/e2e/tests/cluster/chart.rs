//! `helm install argon charts/argon` from the chart's defaults, on a real
//! node: the CRDs are installed and Established, the operator's pods run
//! the chart's default image and are Ready, and the operator has created
//! its webhook certificate and patched the CA into the webhook configuration.

use crate::support::{OPERATOR_NAMESPACE, RELEASE, cluster, eventually, wait_pods_ready};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

#[tokio::test]
async fn helm_install_from_defaults_runs_the_operator_and_its_webhook() -> anyhow::Result<()> {
    let _shared = crate::support::shared().await;
    let cluster = cluster()?;
    let client = cluster.client().await?;

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["argonprojects.argon.dev", "argonbranches.argon.dev"] {
        let crd = crds.get(name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "CRD {name} is not Established");
    }

    let fullname = format!("{RELEASE}-operator");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let deployment = deployments.get(&fullname).await?;
    let replicas = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let replicas = usize::try_from(replicas)?;
    let pods = wait_pods_ready(
        &client,
        OPERATOR_NAMESPACE,
        "app.kubernetes.io/name=argon-operator",
        replicas,
    )
    .await?;
    for pod in &pods {
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(
            spec.containers[0].image.as_deref(),
            Some(cluster.image("argon-operator").as_str()),
            "the chart's default image"
        );
        let status = pod.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
    }

    // The operator made its own CA and serving certificate, and set the CA
    // as the webhook's caBundle: the same bytes as the Secret's ca.crt.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let secret_name = format!("{fullname}-webhook-tls");
    let ca = eventually("the operator's webhook Secret and caBundle", || {
        let secrets = secrets.clone();
        let configurations: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
        let name = format!("{fullname}-inject");
        let secret_name = secret_name.clone();
        async move {
            let Some(secret) = secrets.get_opt(&secret_name).await? else {
                return Ok(Err(format!("no Secret {secret_name}")));
            };
            let ca = secret
                .data
                .unwrap_or_default()
                .get("ca.crt")
                .map(|b| b.0.clone())
                .unwrap_or_default();
            let configuration = configurations.get(&name).await?;
            let bundle = configuration
                .webhooks
                .unwrap_or_default()
                .first()
                .and_then(|w| w.client_config.ca_bundle.clone())
                .map(|b| b.0)
                .unwrap_or_default();
            Ok(if !ca.is_empty() && bundle == ca {
                Ok(ca)
            } else {
                Err(format!(
                    "ca.crt {} bytes, caBundle {} bytes",
                    ca.len(),
                    bundle.len()
                ))
            })
        }
    })
    .await?;
    assert!(
        String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"),
        "ca.crt holds a PEM certificate"
    );
    Ok(())
}
