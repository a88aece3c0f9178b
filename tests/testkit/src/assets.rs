//! Where the server binaries and client tools live.
//!
//! `tests/infra/bootstrap` builds them into a cache directory and
//! `tests/infra/env` exports their paths. A test run without that env (plain
//! `cargo test` after a bootstrap) falls back to the default cache location,
//! `target/argon-test-cache` under the workspace, or `$ARGON_TEST_CACHE`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The cache directory the bootstrap fills.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ARGON_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    workspace_root().join("target").join("argon-test-cache")
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn existing(path: PathBuf, what: &str) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{what} not found at {}: run tests/infra/bootstrap (and source tests/infra/env)",
            path.display()
        )
    }
}

/// A binary named by `env_var`, else `default` inside the cache.
fn tool(env_var: &str, default: &[&str], what: &str) -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(env_var) {
        Some(p) => PathBuf::from(p),
        None => default.iter().fold(cache_dir(), |p, part| p.join(part)),
    };
    existing(path, what).with_context(|| format!("looking for {what} (override with ${env_var})"))
}

/// The directory holding `kube-apiserver`, `etcd` and `kubectl`, as envtest names it.
pub fn kubebuilder_assets() -> PathBuf {
    std::env::var_os("KUBEBUILDER_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("bin"))
}

pub fn kube_apiserver() -> anyhow::Result<PathBuf> {
    existing(
        kubebuilder_assets().join("kube-apiserver"),
        "kube-apiserver",
    )
}

pub fn etcd() -> anyhow::Result<PathBuf> {
    existing(kubebuilder_assets().join("etcd"), "etcd")
}

pub fn kubectl() -> anyhow::Result<PathBuf> {
    existing(kubebuilder_assets().join("kubectl"), "kubectl")
}

pub fn ferretdb() -> anyhow::Result<PathBuf> {
    tool("FERRETDB_BIN", &["bin", "ferretdb"], "ferretdb")
}

/// The linearizability checker (porcupine over a recorded history).
pub fn lincheck() -> anyhow::Result<PathBuf> {
    tool(
        "ARGON_LINCHECK_BIN",
        &["bin", "argon-lincheck"],
        "argon-lincheck",
    )
}

/// The real `helm` (v3), for rendering charts/argon.
pub fn helm() -> anyhow::Result<PathBuf> {
    tool("HELM_BIN", &["bin", "helm"], "helm")
}

/// cert-manager's controllers (CA and self-signed issuers), built by the
/// bootstrap from the Go module proxy.
pub fn cert_manager_controller() -> anyhow::Result<PathBuf> {
    tool(
        "CERT_MANAGER_BIN",
        &["bin", "cert-manager-controller"],
        "cert-manager-controller",
    )
}

/// The directory of cert-manager's CRDs (`cert-manager.io_*.yaml`).
pub fn cert_manager_crds() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("CERT_MANAGER_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("cert-manager").join("crds"));
    existing(
        dir.join("cert-manager.io_certificates.yaml"),
        "cert-manager's CRDs",
    )?;
    Ok(dir)
}

/// A python interpreter with pymongo installed.
pub fn python() -> anyhow::Result<PathBuf> {
    tool(
        "ARGON_TEST_PYTHON",
        &["venv", "bin", "python"],
        "python with pymongo",
    )
}

pub fn mongosh() -> anyhow::Result<PathBuf> {
    tool(
        "MONGOSH_BIN",
        &["node", "node_modules", ".bin", "mongosh"],
        "mongosh",
    )
}

/// The `node_modules` directory holding the `mongodb` and `mongoose` packages.
pub fn node_modules() -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("ARGON_TEST_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("node").join("node_modules"));
    if dir.join("mongodb").is_dir() && dir.join("mongoose").is_dir() {
        Ok(dir)
    } else {
        bail!(
            "node packages mongodb and mongoose not found in {}: run tests/infra/bootstrap",
            dir.display()
        )
    }
}
