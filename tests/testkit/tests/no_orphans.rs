//! Killing a test run midway (SIGKILL: no destructor runs) leaves no server
//! process behind: the kernel kills each server when the test process dies.

use argon_testkit::{FerretDb, KubeApiServer, wait_until};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "ARGON_TESTKIT_ORPHAN_CHILD";

/// Runs only inside the child process started by the test below: starts the
/// servers, reports their pids, and waits to be killed.
#[tokio::test]
async fn orphan_child_entry() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_none() {
        return Ok(());
    }
    let kube = KubeApiServer::start().await?;
    let ferret = FerretDb::start().await?;
    println!(
        "PIDS {} {} {}",
        kube.apiserver_pid(),
        kube.etcd_pid(),
        ferret.pid()
    );
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; only count processes that run.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test]
async fn servers_die_with_a_killed_test_process() -> anyhow::Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "orphan_child_entry", "--nocapture"])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let pids: Vec<u32> = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("PIDS ")
                    .map(|rest| rest.split(' ').filter_map(|p| p.parse().ok()).collect())
            })
            .unwrap_or_default()
    })
    .await?;
    assert_eq!(pids.len(), 3, "the child did not report its servers");
    assert!(pids.iter().all(|&pid| alive(pid)));

    child.kill()?; // SIGKILL
    child.wait()?;
    wait_until(
        "servers of the killed process to exit",
        Duration::from_secs(10),
        || {
            let pids = pids.clone();
            async move { Ok(pids.iter().all(|&pid| !alive(pid))) }
        },
    )
    .await?;
    Ok(())
}
