//! The operator's effective permissions, as `kubectl auth can-i --list`
//! reports them for its ServiceAccount against the chart's RBAC applied to
//! a real apiserver (RBAC authorizer), equal the lists documented in
//! docs/architecture.md ("RBAC"): with default values, and with
//! `secretNamespaces` narrowing Secrets to the namespaces of projects, and
//! with `endpoints.certManager` adding cert-manager Certificates.
//! What every authenticated user may do (discovery, self reviews) is
//! subtracted: it is measured the same way for a ServiceAccount without
//! bindings.

use crate::support::kube_with_crds;
use argon_testkit::{KubeApiServer, assets};
use std::collections::BTreeSet;
use std::process::Command;

const DOC: &str = "docs/architecture.md";

fn helm(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(assets::helm()?).args(args).output()?;
    anyhow::ensure!(
        output.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// `can-i --list` rows as `resource [names] [verbs]`, names and verbs sorted.
fn can_i(server: &KubeApiServer, user: &str, ns: &str) -> anyhow::Result<BTreeSet<String>> {
    let out = server.kubectl(&["auth", "can-i", "--list", "--as", user, "-n", ns])?;
    let mut lines = out.lines();
    let header = lines
        .next()
        .ok_or_else(|| anyhow::anyhow!("can-i printed nothing"))?;
    let col = |name: &str| {
        header
            .find(name)
            .ok_or_else(|| anyhow::anyhow!("no {name:?} column in {header:?}"))
    };
    let (urls, names, verbs) = (
        col("Non-Resource URLs")?,
        col("Resource Names")?,
        col("Verbs")?,
    );
    let sorted = |s: &str| {
        let mut items: Vec<&str> = s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split_whitespace()
            .collect();
        items.sort_unstable();
        format!("[{}]", items.join(" "))
    };
    let mut rows = BTreeSet::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let field = |from: usize, to: usize| line.get(from..to.min(line.len())).unwrap_or("");
        let resource = field(0, urls).trim();
        let url = field(urls, names).trim();
        let what = if resource.is_empty() { url } else { resource };
        rows.insert(format!(
            "{what} {} {}",
            sorted(field(names, verbs)),
            sorted(line.get(verbs..).unwrap_or(""))
        ));
    }
    Ok(rows)
}

/// The operator's own rows in `ns`: its list minus a bare ServiceAccount's.
fn granted(server: &KubeApiServer, sa: &str, ns: &str) -> anyhow::Result<BTreeSet<String>> {
    let everyone = can_i(server, "system:serviceaccount:argon-system:nobody", ns)?;
    Ok(can_i(server, sa, ns)?
        .difference(&everyone)
        .cloned()
        .collect())
}

/// The fenced block after `<!-- rbac: {key} -->` in the architecture doc.
fn documented(key: &str) -> anyhow::Result<BTreeSet<String>> {
    let doc = std::fs::read_to_string(assets::workspace_root().join(DOC))?;
    let marker = format!("<!-- rbac: {key} -->");
    let at = doc
        .find(&marker)
        .ok_or_else(|| anyhow::anyhow!("{DOC} has no {marker}"))?;
    let block = doc[at..]
        .split("```")
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no fenced block after {marker}"))?;
    Ok(block
        .lines()
        .skip(1) // the fence's info string
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn check(server: &KubeApiServer, sa: &str, ns: &str, key: &str) -> anyhow::Result<()> {
    let actual = granted(server, sa, ns)?;
    let expected = documented(key)?;
    let listing: Vec<&str> = actual.iter().map(String::as_str).collect();
    anyhow::ensure!(
        actual == expected,
        "{sa} in namespace {ns}: its permissions differ from {DOC} (<!-- rbac: {key} -->); \
         it may do exactly:\n{}\n(granted, not documented: {:?}; documented, not granted: {:?})",
        listing.join("\n"),
        actual.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&actual).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn the_operators_permissions_are_the_documented_ones() -> anyhow::Result<()> {
    let (server, _client) = kube_with_crds().await?;
    for ns in ["argon-system", "argon-narrow", "shop", "other"] {
        server.kubectl(&["create", "namespace", ns])?;
    }
    server.kubectl(&["create", "serviceaccount", "nobody", "-n", "argon-system"])?;
    let dir = tempfile::tempdir()?;
    let chart = assets::workspace_root().join("charts/argon");
    let chart = chart.to_string_lossy();

    // Default values: the rendered chart a user applies.
    let rendered = assets::workspace_root().join("charts/rendered/argon.yaml");
    server.kubectl(&[
        "apply",
        "-n",
        "argon-system",
        "-f",
        &rendered.to_string_lossy(),
    ])?;
    let sa = "system:serviceaccount:argon-system:argon-operator";
    check(&server, sa, "argon-system", "default, operator namespace")?;
    check(&server, sa, "shop", "default, any other namespace")?;

    // secretNamespaces: Secrets in the projects' namespaces only.
    let narrow = helm(&[
        "template",
        "narrow",
        &chart,
        "--namespace",
        "argon-narrow",
        "--set",
        "secretNamespaces={shop}",
    ])?;
    let path = dir.path().join("narrow.yaml");
    std::fs::write(&path, narrow)?;
    // Every namespaced object names its namespace (the Secrets Role: shop).
    server.kubectl(&["apply", "-f", &path.to_string_lossy()])?;
    let sa = "system:serviceaccount:argon-narrow:narrow-operator";
    check(&server, sa, "shop", "secretNamespaces, a listed namespace")?;
    check(
        &server,
        sa,
        "other",
        "secretNamespaces, any other namespace",
    )?;
    // endpoints.certManager: Certificates besides the defaults, nothing else.
    let cm = helm(&[
        "template",
        "cm",
        &chart,
        "--namespace",
        "argon-cm",
        "--set",
        "endpoints.certManager=true",
    ])?;
    server.kubectl(&["create", "namespace", "argon-cm"])?;
    let path = dir.path().join("cm.yaml");
    std::fs::write(&path, cm)?;
    server.kubectl(&["apply", "-n", "argon-cm", "-f", &path.to_string_lossy()])?;
    check(
        &server,
        "system:serviceaccount:argon-cm:cm-operator",
        "shop",
        "endpoints.certManager, any other namespace",
    )?;
    // The point of it, stated directly.
    let other = server.kubectl(&["auth", "can-i", "get", "secrets", "--as", sa, "-n", "other"]);
    assert!(
        other.is_err(),
        "the narrowed operator may read Secrets in an unlisted namespace"
    );
    Ok(())
}
