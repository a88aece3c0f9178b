//! MongoDB's own unified-format CRUD tests (`tests/conformance/spec`), run by
//! `tests/conformance/run.py` through pymongo against the real binary on an
//! embedded store, started with `--enable-test-commands` (the tests set
//! `failCommand` fail points). Fails when a spec directory passes fewer tests than
//! `tests/conformance/baseline` records: the baseline only goes up.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::sidecar::Sidecar;

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance")
}

/// `(directory, passed at least)` from the baseline file.
fn baseline() -> Vec<(String, u64)> {
    let path = conformance_dir().join("baseline");
    let text = std::fs::read_to_string(&path).expect("tests/conformance/baseline is readable");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (dir, n) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("baseline line {l:?}: `<dir> <passed>`"));
            let n = n
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("baseline line {l:?}: a count"));
            (dir.to_string(), n)
        })
        .collect()
}

/// `(passed, failed, skipped)` from the runner's last line.
fn totals(output: &str) -> Option<(u64, u64, u64)> {
    let last = output.lines().last()?;
    let numbers: Vec<u64> = last
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse().ok())
        .collect();
    match numbers[..] {
        [p, f, s] => Some((p, f, s)),
        _ => None,
    }
}

#[tokio::test]
async fn unified_spec_tests_pass_at_least_the_baseline() {
    let python = argon_testkit::assets::python().expect("the test virtualenv's python");
    let data = tempfile::tempdir().expect("a temporary directory");
    // The spec tests set fail points (`configureFailPoint`), a test
    // command as on mongod.
    let wal = data.path().join("wal").display().to_string();
    let sidecar = Sidecar::start("argon-sidecar", &["--data", &wal, "--enable-test-commands"])
        .await
        .expect("argon-sidecar starts");
    let mut regressions = Vec::new();
    for (dir, expected) in baseline() {
        let spec = conformance_dir().join("spec").join(&dir);
        let out = Command::new(&python)
            .arg(conformance_dir().join("run.py"))
            .arg("--uri")
            .arg(sidecar.uri())
            .arg("--verbose")
            .arg(&spec)
            .output()
            .expect("the runner runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!("== {dir}\n{stdout}");
        assert!(
            out.status.success(),
            "run.py failed on {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (passed, failed, skipped) =
            totals(&stdout).unwrap_or_else(|| panic!("no totals line for {dir}"));
        println!(
            "{dir}: {passed} passed, {failed} failed, {skipped} skipped (baseline {expected})"
        );
        if passed < expected {
            regressions.push(format!("{dir}: {passed} passed < baseline {expected}"));
        } else if passed > expected {
            println!("{dir}: raise tests/conformance/baseline to {passed}");
        }
    }
    assert!(regressions.is_empty(), "{}", regressions.join("\n"));
}
