//! The Helm chart: the real `helm` lints and renders it, the rendered
//! manifests in charts/rendered are current, and the real apiserver accepts
//! every object they hold.

use crate::support::kube_with_crds;
use argon_testkit::assets;
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
