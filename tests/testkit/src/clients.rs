//! The real MongoDB clients tests drive: pymongo, mongosh and the Node.js
//! driver (with mongoose). Each runs a script as a child process and returns
//! its stdout; a failing script is an error carrying its stderr.

use crate::assets;
use anyhow::Context;
use std::path::Path;
use std::process::{Command, Output};

fn finish(what: &str, output: Output) -> anyhow::Result<String> {
    if !output.status.success() {
        anyhow::bail!(
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Runs `script` with the pymongo interpreter; `args` become `sys.argv[1:]`.
pub fn run_python(script: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(assets::python()?)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .context("running python")?;
    finish("python script", output)
}

/// Runs mongosh against `uri`, evaluating `script`.
pub fn run_mongosh(uri: &str, script: &str) -> anyhow::Result<String> {
    run_mongosh_with_env(uri, script, &[])
}

/// [`run_mongosh`] with `env` added to its environment.
pub fn run_mongosh_with_env(
    uri: &str,
    script: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<String> {
    let output = Command::new(assets::mongosh()?)
        .envs(env.iter().copied())
        .arg(uri)
        .arg("--quiet")
        .arg("--norc")
        .arg("--eval")
        .arg(script)
        // mongosh otherwise tries to write history and telemetry config under $HOME.
        .env("MONGOSH_NO_TELEMETRY", "1")
        .output()
        .context("running mongosh")?;
    finish("mongosh", output)
}

/// Runs a Node.js `script` (CommonJS) that can `require('mongodb')` and
/// `require('mongoose')`, with `env` added to its environment.
pub fn run_node(script: &str, env: &[(&str, &str)]) -> anyhow::Result<String> {
    let modules = assets::node_modules()?;
    let output = Command::new("node")
        .arg("-e")
        .arg(script)
        .envs(env.iter().copied())
        .env("NODE_PATH", &modules)
        .current_dir(modules.parent().unwrap_or(Path::new(".")))
        .output()
        .context("running node")?;
    finish("node script", output)
}
