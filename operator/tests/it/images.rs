//! tests/infra/images builds the chart's default images without Docker: an
//! OCI image layout (and an oci-archive) whose digests, sizes, config and
//! name all check out, for a small binary standing in for the operator.

use argon_testkit::assets;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

fn sha256(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Reads the blob a descriptor names, checking its digest and size.
fn blob(layout: &Path, descriptor: &Value) -> anyhow::Result<Vec<u8>> {
    let digest = descriptor["digest"].as_str().unwrap_or_default();
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| anyhow::anyhow!("not a sha256 digest: {descriptor}"))?;
    let data = std::fs::read(layout.join("blobs/sha256").join(hex))?;
    assert_eq!(sha256(&data), digest, "blob content matches its digest");
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(data.len() as u64),
        "descriptor size of {digest}"
    );
    Ok(data)
}

/// The regular files of a tar archive (ustar and pax headers), by path.
fn tar_files(data: &[u8]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut at = 0;
    while at + 512 <= data.len() {
        let header = &data[at..at + 512];
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let field = |range: std::ops::Range<usize>| {
            let raw = &header[range];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..end]).trim().to_string()
        };
        let size = usize::from_str_radix(&field(124..136), 8)?;
        let prefix = field(345..500);
        let name = field(0..100);
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let body = at + 512;
        let end = body + size;
        anyhow::ensure!(end <= data.len(), "truncated tar entry {path}");
        if matches!(header[156], b'0' | 0) {
            files.insert(path, data[body..end].to_vec());
        }
        at = body + size.div_ceil(512) * 512;
    }
    Ok(files)
}

#[test]
fn offline_image_build_writes_a_valid_oci_layout_named_like_the_chart() -> anyhow::Result<()> {
    let root = assets::workspace_root();
    let binary = Path::new("/bin/true");
    if !binary.exists() {
        eprintln!("skipped: no /bin/true to package");
        return Ok(());
    }
    let out = tempfile::tempdir()?;
    let status = Command::new("python3")
        .arg(root.join("tests/infra/images"))
        .args(["--only", "argon-operator", "--operator"])
        .arg(binary)
        .arg("--out")
        .arg(out.path())
        .status()?;
    assert!(status.success(), "tests/infra/images failed");

    // The chart's default: <image.repository>:<appVersion>.
    let chart: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        root.join("charts/argon/Chart.yaml"),
    )?)?;
    let values: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        root.join("charts/argon/values.yaml"),
    )?)?;
    let version = chart["appVersion"].as_str().unwrap_or_default().to_string();
    let repository = values["image"]["repository"].as_str().unwrap_or_default();
    assert_eq!(repository, "argon-operator");

    let layout = out.path().join("argon-operator");
    let oci_layout: Value = serde_json::from_slice(&std::fs::read(layout.join("oci-layout"))?)?;
    assert_eq!(oci_layout["imageLayoutVersion"], "1.0.0");
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    assert_eq!(index["schemaVersion"], 2);
    let descriptor = &index["manifests"][0];
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"].as_str(),
        Some(version.as_str())
    );
    assert_eq!(
        descriptor["annotations"]["io.containerd.image.name"].as_str(),
        Some(format!("docker.io/library/{repository}:{version}").as_str())
    );
    let manifest: Value = serde_json::from_slice(&blob(&layout, descriptor)?)?;
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])?)?;
    assert_eq!(config["os"], "linux");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/argon-operator"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["run"]));
    for port in ["8080/tcp", "9443/tcp"] {
        assert!(
            config["config"]["ExposedPorts"].get(port).is_some(),
            "{port}"
        );
    }
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(layers.len(), 1);
    let compressed = blob(&layout, &layers[0])?;
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice()).read_to_end(&mut raw)?;
    assert_eq!(
        config["rootfs"]["diff_ids"][0].as_str(),
        Some(sha256(&raw).as_str()),
        "diff_id is the uncompressed layer's digest"
    );
    let files = tar_files(&raw)?;
    assert_eq!(
        files.get("usr/local/bin/argon-operator"),
        Some(&std::fs::read(binary)?),
        "the binary sits where the Dockerfile puts it"
    );
    assert!(
        files
            .get("etc/passwd")
            .is_some_and(|p| String::from_utf8_lossy(p).contains(":65532:65532:"))
    );
    assert!(!files.contains_key("bin/sh"), "no shell");

    // The oci-archive holds the same layout.
    let archive = std::fs::read(out.path().join(format!("argon-operator-{version}.oci.tar")))?;
    let archived = tar_files(&archive)?;
    assert_eq!(
        archived.get("index.json"),
        Some(&std::fs::read(layout.join("index.json"))?)
    );
    for d in [descriptor, &manifest["config"], &layers[0]] {
        let digest = d["digest"].as_str().unwrap_or_default().replace(':', "/");
        let data = archived
            .get(&format!("blobs/{digest}"))
            .ok_or_else(|| anyhow::anyhow!("archive lacks blobs/{digest}"))?;
        assert_eq!(sha256(data), d["digest"].as_str().unwrap_or_default());
    }
    Ok(())
}
