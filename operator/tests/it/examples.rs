//! Every manifest in examples/ is accepted by the real apiserver (server-side
//! dry run, with the CRDs installed), so the examples stay valid.

use crate::support::kube_with_crds;

#[tokio::test]
async fn examples_are_accepted_by_the_apiserver() -> anyhow::Result<()> {
    let (server, _client) = kube_with_crds().await?;
    let dir = argon_testkit::assets::workspace_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the example manifests in {}",
        dir.display()
    );
    server.kubectl(&["create", "namespace", "examples"])?;
    for file in &files {
        let path = file.to_string_lossy();
        let out = server.kubectl(&["apply", "--dry-run=server", "-n", "examples", "-f", &path])?;
        assert!(out.contains("(server dry run)"), "{path}: {out}");
    }
    Ok(())
}
