//! The Helm chart: the real `helm` lints and renders it, the rendered
//! manifests in charts/rendered are current, and the real apiserver accepts
//! every object they hold.

use crate::support::kube_with_crds;
use argon_testkit::assets;
use serde::Deserialize;
use std::process::Command;

const REGENERATE: &str = "charts/render";

fn helm(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(assets::helm()?).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "helm {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

fn chart_dir() -> String {
    assets::workspace_root()
        .join("charts/argon")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn chart_lints_and_rendered_manifests_are_current() -> anyhow::Result<()> {
    helm(&["lint", "--strict", &chart_dir()])?;
    let rendered = helm(&[
        "template",
        "argon",
        &chart_dir(),
        "--namespace",
        "argon-system",
    ])?;
    let path = assets::workspace_root().join("charts/rendered/argon.yaml");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "{} is stale or missing: regenerate it with `{REGENERATE}`",
        path.display()
    );
    Ok(())
}

#[tokio::test]
async fn apiserver_accepts_the_rendered_chart() -> anyhow::Result<()> {
    let (server, _client) = kube_with_crds().await?;
    server.kubectl(&["create", "namespace", "argon-system"])?;
    let path = assets::workspace_root().join("charts/rendered/argon.yaml");
    let out = server.kubectl(&[
        "apply",
        "--dry-run=server",
        "-n",
        "argon-system",
        "-f",
        &path.to_string_lossy(),
    ])?;
    for kind in [
        "serviceaccount/",
        "clusterrole.rbac.authorization.k8s.io/",
        "clusterrolebinding.rbac.authorization.k8s.io/",
        "role.rbac.authorization.k8s.io/",
        "rolebinding.rbac.authorization.k8s.io/",
        "service/",
        "deployment.apps/",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(kind) && l.ends_with("(server dry run)")),
            "the apiserver did not accept a {kind} object:\n{out}"
        );
    }
    Ok(())
}

fn app_version() -> anyhow::Result<String> {
    let chart: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        assets::workspace_root().join("charts/argon/Chart.yaml"),
    )?)?;
    chart["appVersion"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| anyhow::anyhow!("Chart.yaml has no appVersion"))
}

/// A default install needs nothing else: the Deployment mounts no Secret
/// that nothing creates, its ServiceAccount is in the chart, the images are
/// the ones `tests/infra/images` and the Dockerfile build, and the RBAC for
/// the certificate manager is limited to the one Secret and configuration.
#[test]
fn default_values_need_no_secret_nothing_creates() -> anyhow::Result<()> {
    let rendered = helm(&[
        "template",
        "argon",
        &chart_dir(),
        "--namespace",
        "argon-system",
    ])?;
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&rendered)
        .map(serde_yaml::Value::deserialize)
        .collect::<Result<_, _>>()?;
    let of_kind = |kind: &str| -> Vec<&serde_yaml::Value> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    };
    let names = |kind: &str| -> Vec<String> {
        of_kind(kind)
            .iter()
            .filter_map(|d| d["metadata"]["name"].as_str().map(String::from))
            .collect()
    };
    let rendered_secrets = names("Secret");
    let deployment = of_kind("Deployment")
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no Deployment rendered"))?;
    let pod = &deployment["spec"]["template"]["spec"];
    for volume in pod["volumes"].as_sequence().into_iter().flatten() {
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            let optional = volume["secret"]["optional"].as_bool() == Some(true);
            assert!(
                optional || rendered_secrets.iter().any(|s| s == secret),
                "the Deployment mounts Secret {secret}, which the chart does not create"
            );
        }
    }
    let account = pod["serviceAccountName"].as_str().unwrap_or("default");
    assert!(
        names("ServiceAccount").iter().any(|s| s == account),
        "ServiceAccount {account} is not in the chart"
    );
    let version = app_version()?;
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"].as_str(),
        Some(format!("argon-operator:{version}").as_str())
    );
    assert_eq!(container["imagePullPolicy"].as_str(), Some("IfNotPresent"));
    let env = |name: &str| -> Option<String> {
        container["env"]
            .as_sequence()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))?["value"]
            .as_str()
            .map(String::from)
    };
    assert_eq!(
        env("ARGON_SIDECAR_IMAGE"),
        Some(format!("argon-sidecar:{version}"))
    );
    assert_eq!(env("ARGON_WEBHOOK_MANAGE_CERTS").as_deref(), Some("true"));
    let secret = env("ARGON_WEBHOOK_SECRET").unwrap_or_default();
    let configuration = names("MutatingWebhookConfiguration")
        .first()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        env("ARGON_WEBHOOK_CONFIGURATION"),
        Some(configuration.clone())
    );
    // RBAC: by name wherever Kubernetes allows (create cannot be).
    let rules = |kind: &str, resource: &str| -> Vec<serde_yaml::Value> {
        of_kind(kind)
            .iter()
            .flat_map(|d| d["rules"].as_sequence().cloned().unwrap_or_default())
            .filter(|r| {
                r["resources"]
                    .as_sequence()
                    .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(resource)))
            })
            .collect()
    };
    let named = |r: &serde_yaml::Value, name: &str| {
        r["resourceNames"]
            .as_sequence()
            .is_some_and(|s| s.len() == 1 && s[0].as_str() == Some(name))
    };
    let verbs = |r: &serde_yaml::Value| -> Vec<String> {
        r["verbs"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    // The operator's copies of store connections (operator/src/store_copy.rs)
    // are Secrets of varying names in its own namespace: one Role, those
    // verbs, that namespace, told apart from the webhook's rules.
    let copy_roles: Vec<&serde_yaml::Value> = of_kind("Role")
        .into_iter()
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-store-copies"))
        })
        .collect();
    assert_eq!(copy_roles.len(), 1, "one Role for the store copies");
    let copy_rules = copy_roles[0]["rules"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    assert_eq!(copy_rules.len(), 1, "{copy_rules:?}");
    assert_eq!(verbs(&copy_rules[0]), ["get", "create", "patch", "delete"]);
    assert_eq!(
        copy_roles[0]["metadata"]["namespace"].as_str(),
        Some("argon-system"),
        "the operator's own namespace"
    );
    assert_eq!(
        env("ARGON_STORE_COPY_NAMESPACE").as_deref(),
        Some("argon-system")
    );
    let secret_rules: Vec<serde_yaml::Value> = rules("Role", "secrets")
        .into_iter()
        .filter(|r| !copy_rules.contains(r))
        .collect();
    assert!(
        secret_rules
            .iter()
            .any(|r| named(r, &secret) && verbs(r) == ["get", "update"]),
        "{secret_rules:?}"
    );
    assert!(
        secret_rules
            .iter()
            .all(|r| named(r, &secret) || verbs(r) == ["create"]),
        "{secret_rules:?}"
    );
    // The CRDs it applies at start: by name, and never create.
    let crd_rules = rules("ClusterRole", "customresourcedefinitions");
    assert_eq!(crd_rules.len(), 1, "{crd_rules:?}");
    let crd_names: Vec<&str> = crd_rules[0]["resourceNames"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(
        crd_names,
        ["argonprojects.argon.dev", "argonbranches.argon.dev"]
    );
    assert_eq!(verbs(&crd_rules[0]), ["get", "list", "watch", "patch"]);
    assert_eq!(env("ARGON_APPLY_CRDS").as_deref(), Some("true"));
    let webhook_rules = rules("ClusterRole", "mutatingwebhookconfigurations");
    assert!(
        !webhook_rules.is_empty()
            && webhook_rules
                .iter()
                .all(|r| named(r, &configuration) && verbs(r) == ["get", "patch"]),
        "{webhook_rules:?}"
    );
    // With cert-manager, the operator only reads the Secret.
    let with_cert_manager = helm(&[
        "template",
        "argon",
        &chart_dir(),
        "--namespace",
        "argon-system",
        "--set",
        "webhook.certManager.enabled=true",
    ])?;
    assert!(with_cert_manager.contains("kind: Certificate"));
    assert!(!with_cert_manager.contains("mutatingwebhookconfigurations"));
    assert!(with_cert_manager.contains("value: \"false\""));
    Ok(())
}
