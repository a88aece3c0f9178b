//! Two operator instances with leader election: only the Lease holder
//! reconciles; when it stops, the other takes over. Also the metrics and
//! health endpoints, read over real HTTP.

use crate::support::*;
use argon_operator::config::LeaderConfig;
use argon_operator::crd::ArgonBranch;
use argon_operator::leader::{Attempt, LeaderElector};
use argon_testkit::{FerretDb, free_port, wait_until};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ObjectMeta, PostParams};
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

fn fast_lease() -> LeaderConfig {
    let mut leader = LeaderConfig::new("default");
    leader.lease_duration = Duration::from_secs(3);
    leader.renew_deadline = Duration::from_secs(2);
    leader.renew_every = Duration::from_millis(300);
    leader
}

fn elected(identity: &str) -> anyhow::Result<(argon_operator::Config, SocketAddr)> {
    let mut config = test_config(identity);
    let leader = fast_lease();
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

/// The leader's renewals hang (as on a stalled connection to the
/// apiserver) while it keeps reconciling: it stops reconciling within its
/// renew deadline, and the standby starts only after seeing the Lease
/// unchanged for a lease duration. Their reconciles never overlap: the
/// old leader's last one ended before the new leader's first one began.
#[tokio::test]
async fn a_stalled_leader_stops_before_the_standby_starts() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "stall").await?;
    create_project(&client, &ns, "app", &mongo).await?;
    let (stall, stalled) = tokio::sync::watch::channel(false);
    let (mut config_a, _) = elected("op-a")?;
    if let Some(leader) = config_a.leader.as_mut() {
        leader.stall_renewals = Some(stalled);
    }
    let a = RunningOperator::start(client.clone(), config_a);
    wait_until("op-a holds the lease", WAIT, || async {
        Ok(holder(&client).await?.as_deref() == Some("op-a"))
    })
    .await?;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("busy", "app").no_endpoint().build(),
        )
        .await?;
    wait_for(&branches, "busy", "Ready", |b| phase(b) == Some("Ready")).await?;
    let (config_b, _) = elected("op-b")?;
    let b = RunningOperator::start(client.clone(), config_b);
    // The leader keeps reconciling (the head refresh requeues every 0.5 s).
    let before = a.metrics.reconciles("branch");
    wait_until("op-a reconciles on", WAIT, || async {
        Ok(a.metrics.reconciles("branch") >= before + 2)
    })
    .await?;
    assert_eq!(b.metrics.reconciles("branch"), 0);

    stall.send_replace(true);
    wait_until("op-a steps down", WAIT, || async {
        Ok(!a.metrics.is_leader())
    })
    .await?;
    wait_until("op-b holds the lease", WAIT, || async {
        Ok(holder(&client).await?.as_deref() == Some("op-b"))
    })
    .await?;
    wait_until("op-b reconciles", WAIT, || async {
        Ok(b.metrics.reconciles("branch") > 0)
    })
    .await?;
    assert_eq!(
        a.metrics.in_flight(),
        0,
        "op-a still has reconciles in flight"
    );
    let (_, a_last_end) = a.metrics.activity();
    let (b_first_start, _) = b.metrics.activity();
    let (a_last_end, b_first_start) = (
        a_last_end.expect("op-a reconciled"),
        b_first_start.expect("op-b reconciled"),
    );
    assert!(
        a_last_end < b_first_start,
        "op-a's last reconcile ended {:?} after op-b's first began",
        a_last_end - b_first_start
    );
    // The margin is the election's, not luck: at least lease - deadline.
    assert!(
        b_first_start - a_last_end >= Duration::from_millis(900),
        "op-b started only {:?} after op-a stopped",
        b_first_start - a_last_end
    );
    let after = a.metrics.reconciles("branch");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        a.metrics.reconciles("branch"),
        after,
        "op-a reconciled after stepping down"
    );
    // op-a's run ended with the lost lease (a pod restarts then).
    let stopped = a.stop().await;
    assert!(
        stopped
            .as_ref()
            .is_err_and(|e| format!("{e:#}").contains("lost the leader lease")),
        "{stopped:?}"
    );
    b.stop().await?;
    Ok(())
}

async fn put_lease(
    client: &Client,
    name: &str,
    holder: &str,
    renew: Timestamp,
) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let spec = LeaseSpec {
        holder_identity: Some(holder.into()),
        lease_duration_seconds: Some(3),
        acquire_time: Some(MicroTime(renew)),
        renew_time: Some(MicroTime(renew)),
        lease_transitions: Some(0),
        ..LeaseSpec::default()
    };
    match leases.get_opt(name).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
        Some(mut lease) => {
            lease.spec = Some(spec);
            leases.replace(name, &PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Attempts every 100 ms until this candidate leads; how long it took.
async fn time_to_lead(elector: &LeaderElector) -> anyhow::Result<Duration> {
    let start = tokio::time::Instant::now();
    loop {
        if elector.try_acquire_or_renew().await? == Attempt::Leading {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(start.elapsed() < WAIT, "never acquired the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Expiry is judged by the candidate's own observation, never by comparing
/// its clock with the holder's `renewTime`: a holder whose clock runs an
/// hour behind is not taken over while it renews, nor at once when it
/// stops; one whose clock runs an hour ahead is taken over a lease
/// duration after it stops, not an hour later.
#[tokio::test]
async fn a_candidate_judges_expiry_by_its_own_clock() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let hour = SignedDuration::from_hours(1);
    let lease_for = |name: &str| {
        let mut leader = fast_lease();
        leader.lease_name = name.into();
        LeaderElector::new(client.clone(), leader, "candidate".into())
    };

    // Behind, and alive: renewTime moves (an hour in the past) every 500 ms.
    let behind = lease_for("behind");
    put_lease(&client, "behind", "slow-clock", Timestamp::now() - hour).await?;
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < until {
        assert_eq!(behind.try_acquire_or_renew().await?, Attempt::Standby);
        put_lease(&client, "behind", "slow-clock", Timestamp::now() - hour).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // It stops renewing: taken over after a lease duration of silence, not at once.
    let took = time_to_lead(&behind).await?;
    assert!(took >= Duration::from_secs(3), "took over after {took:?}");

    // Ahead, and gone: taken over a lease duration after it stopped.
    let ahead = lease_for("ahead");
    put_lease(&client, "ahead", "fast-clock", Timestamp::now() + hour).await?;
    let took = time_to_lead(&ahead).await?;
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(10),
        "took over after {took:?}"
    );
    assert_eq!(ahead.holder().await?.as_deref(), Some("candidate"));
    Ok(())
}
