//! Two operator instances with leader election: only the Lease holder
//! reconciles; when it stops, the other takes over. Also the metrics and
//! health endpoints, read over real HTTP.

use crate::support::*;
use argon_operator::config::LeaderConfig;
use argon_operator::crd::ArgonBranch;
use argon_testkit::{FerretDb, free_port, wait_until};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::{Api, Client};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

async fn holder(client: &Client) -> anyhow::Result<Option<String>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    Ok(leases
        .get_opt("argon-operator")
        .await?
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity))
}

fn elected(identity: &str) -> anyhow::Result<(argon_operator::Config, SocketAddr)> {
    let mut config = test_config(identity);
    let mut leader = LeaderConfig::new("default");
    leader.lease_duration = Duration::from_secs(3);
    leader.renew_every = Duration::from_millis(300);
    config.leader = Some(leader);
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    config.metrics_listen = Some(addr);
    Ok((config, addr))
}

#[tokio::test]
async fn only_the_lease_holder_reconciles() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "leader").await?;
    create_project(&client, &ns, "app", &mongo).await?;

    let (config_a, addr_a) = elected("op-a")?;
    let a = RunningOperator::start(client.clone(), config_a);
    wait_until("op-a holds the lease", WAIT, || async {
        Ok(holder(&client).await?.as_deref() == Some("op-a"))
    })
    .await?;
    let (config_b, addr_b) = elected("op-b")?;
    let b = RunningOperator::start(client.clone(), config_b);
    wait_until("op-b's metrics are served", WAIT, || async {
        Ok(http_get(addr_b, "/readyz").await?.contains("200 OK"))
    })
    .await?;

    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("one", "app").build(),
        )
        .await?;
    wait_for(&branches, "one", "Ready", |b| phase(b) == Some("Ready")).await?;
    assert!(a.metrics.reconciles("branch") > 0);
    assert_eq!(
        b.metrics.reconciles("branch"),
        0,
        "the standby never reconciles"
    );
    assert_eq!(b.metrics.reconciles("project"), 0);
    assert!(a.metrics.is_leader() && !b.metrics.is_leader());
    assert_eq!(holder(&client).await?.as_deref(), Some("op-a"));

    // Metrics and health over HTTP.
    let metrics = http_get(addr_a, "/metrics").await?;
    assert!(
        metrics.contains("argon_operator_reconciles_total{controller=\"branch\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("argon_operator_reconcile_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("argon_operator_branches{phase=\"Ready\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("argon_operator_leader 1"), "{metrics}");
    assert!(http_get(addr_a, "/healthz").await?.contains("200 OK"));
    assert!(
        http_get(addr_b, "/metrics")
            .await?
            .contains("argon_operator_leader 0")
    );

    // The leader steps down (releasing the lease): the standby takes over.
    a.stop().await?;
    wait_until("op-b holds the lease", WAIT, || async {
        Ok(holder(&client).await?.as_deref() == Some("op-b"))
    })
    .await?;
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("two", "app").build(),
        )
        .await?;
    wait_for(&branches, "two", "Ready", |b| phase(b) == Some("Ready")).await?;
    assert!(b.metrics.reconciles("branch") > 0);
    b.stop().await?;
    Ok(())
}
