//! `argon-sidecar`: parses configuration and runs the library's server.
//! Bad configuration or an unreachable store: one line on stderr, exit 2.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use argon_sidecar::Service;
use argon_sidecar::config::{Cli, Command, ServeArgs, open_wal_observed};
use argon_sidecar::metrics::{self, Metrics};
use argon_sidecar::server::run_with_tls;
use clap::Parser;
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARGON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(argon_sidecar::limits::WORKER_STACK_SIZE)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("argon-sidecar: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let Command::Serve(args) = cli.command;
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("argon-sidecar: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = args.store_choice().map_err(anyhow::Error::msg)?;
    let peer_address = args.peer_address().map_err(anyhow::Error::msg)?;
    let (peer_key, peer_tls) = match peer_address {
        Some(_) => (
            Some(args.peer_key().map_err(anyhow::Error::msg)?),
            args.peer_tls().map_err(anyhow::Error::msg)?,
        ),
        None => (None, None),
    };
    // Read first, so a bad key file stops the server before it opens the
    // store (mongod refuses to start the same way).
    let system_user = match &args.key_file {
        Some(path) => Some(
            argon_sidecar::auth::key_file::KeyFile::read(path)
                .and_then(|key| key.system_user())
                .map_err(anyhow::Error::msg)?,
        ),
        None => None,
    };
    // Failpoints for fault tests: only in a build with argon-wal's
    // `failpoints` feature; elsewhere this does nothing.
    argon_wal::failpoints::from_env("ARGON_FAILPOINTS").map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = args.metrics_listen {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        tokio::spawn(metrics::serve(l, metrics.clone()));
    }
    // Catch-ups ask the branch's writer first, once there is one.
    let feed = Arc::new(argon_sidecar::writer::feed::WriterFeed::default());
    let wal = open_wal_observed(
        &store,
        &args.project,
        metrics.clone(),
        std::time::Duration::from_millis(args.max_staleness_ms),
        peer_address
            .is_some()
            .then(|| feed.clone() as Arc<dyn argon_wal::CommitFeed>),
        args.max_commit_bytes,
        args.cache_choice().as_ref(),
    )
    .await
    .with_context(|| format!("cannot open {store}"))?;
    wal.branch(&args.branch).await.with_context(|| {
        format!(
            "default branch {:?} of project {:?}",
            args.branch, args.project
        )
    })?;
    metrics.watch_wal(wal.clone());
    let tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => {
            let serving = argon_sidecar::tls::ServingCert::load(cert, key)?;
            let acceptor = serving.acceptor()?;
            tokio::spawn(argon_sidecar::tls::watch(serving));
            Some(acceptor)
        }
        _ => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, %store, project = %args.project, branch = %args.branch, read_only = args.read_only, tls = tls.is_some(), auth = args.auth, cache_dir = ?args.cache_dir, cache_bytes = args.cache_bytes, cache_disk_bytes = ?args.cache_disk_bytes, confine_to_branch = args.confine_to_branch, max_connections = args.max_connections, frame_timeout_ms = args.frame_timeout_ms, "serving MongoDB clients");
    let options = args.server_options();
    let mut service = if args.read_only {
        Service::new_read_only(wal, args.branch, metrics)
    } else {
        Service::new(wal, args.branch, metrics)
    };
    let peer_listener = match (args.peer_listen, peer_address, peer_key) {
        (Some(addr), Some(advertise), Some(key)) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for peers on {addr}"))?;
            tracing::info!(listen = %l.local_addr()?, %advertise, key_file = args.peer_key_file.is_some(), tls = peer_tls.is_some(), "taking writes forwarded by other sidecars");
            service.elect_writers(advertise, key, peer_tls);
            feed.bind(&service.writers);
            Some(l)
        }
        _ => None,
    };
    service
        .sessions
        .set_transaction_lifetime(std::time::Duration::from_secs(
            args.transaction_lifetime_limit_seconds,
        ));
    service.set_default_max_time(
        (args.default_max_time_ms > 0)
            .then(|| std::time::Duration::from_millis(args.default_max_time_ms)),
    );
    service.set_blocking_sort_bytes(args.max_blocking_sort_bytes);
    service.set_confined_to_branch(args.confine_to_branch);
    if args.enable_test_commands {
        service.fail_points.enable();
        tracing::warn!(
            "test commands are enabled (--enable-test-commands): any client may make other clients' commands fail; never use this in production"
        );
    }
    if let Some(user) = system_user {
        service.users.set_system_user(user);
        tracing::info!(
            "--key-file: __system@local may authenticate; admin commands need an authenticated user"
        );
    }
    service
        .set_auth_required(args.auth)
        .await
        .context("cannot load the project's users")?;
    if !args.read_only {
        tokio::spawn(argon_sidecar::ttl::monitor(
            service.clone(),
            std::time::Duration::from_secs(args.ttl_monitor_sleep_secs),
        ));
    }
    let (stop_peers, peers_stopped) = tokio::sync::oneshot::channel::<()>();
    let peers = peer_listener.map(|l| {
        let peer_options = argon_sidecar::server::ServerOptions {
            peer: true,
            ..options
        };
        // The peer listener serves the clients' certificate: TLS clients'
        // writes are forwarded over TLS (`writer::peer_tls`).
        tokio::spawn(run_with_tls(
            l,
            service.clone(),
            peer_options,
            tls.clone(),
            async {
                let _ = peers_stopped.await;
            },
        ))
    });
    run_with_tls(listener, service.clone(), options, tls, shutdown_signal()).await;
    // Hand the leases over before the peer listener closes: the others
    // need not wait a lease period to take over.
    service.writers.release().await;
    let _ = stop_peers.send(());
    if let Some(p) = peers {
        let _ = p.await;
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
