//! `argon-operator`: Argon's control plane binary. Thin: parses flags
//! (or `ARGON_*` variables) into a [`Config`] and calls the library.

use anyhow::Context;
use argon_operator::config::{Config, LeaderConfig, WebhookConfig};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "argon-operator",
    version,
    about = "Argon's control plane: reconciles ArgonProject and ArgonBranch resources."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the controllers (and the webhook) against the cluster of the current kubeconfig or service account.
    Run(Box<RunArgs>),
    /// Write the CRDs generated from the Rust types into a directory.
    Crdgen {
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Watch only this namespace (all namespaces when absent).
    #[arg(long, env = "ARGON_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// This replica's identity, in the Lease and events (the pod name).
    #[arg(long, env = "ARGON_IDENTITY", default_value = "argon-operator")]
    identity: String,
    #[arg(long, env = "ARGON_SIDECAR_IMAGE", default_value = argon_operator::config::DEFAULT_SIDECAR_IMAGE)]
    sidecar_image: String,
    /// Seconds between head refreshes of a Ready branch.
    #[arg(long, env = "ARGON_HEAD_REFRESH_SECONDS", default_value_t = 30)]
    head_refresh_seconds: u64,
    /// Elect a leader through a Lease in this namespace (run several replicas safely).
    #[arg(long, env = "ARGON_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    #[arg(long, env = "ARGON_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Serve the injection webhook here (needs --webhook-cert and --webhook-key).
    #[arg(long, env = "ARGON_WEBHOOK_LISTEN", requires_all = ["webhook_cert", "webhook_key"])]
    webhook_listen: Option<SocketAddr>,
    #[arg(long, env = "ARGON_WEBHOOK_CERT")]
    webhook_cert: Option<PathBuf>,
    #[arg(long, env = "ARGON_WEBHOOK_KEY")]
    webhook_key: Option<PathBuf>,
    /// Root of embedded stores (`<root>/<namespace>/<claim>`).
    #[arg(long, env = "ARGON_EMBEDDED_ROOT")]
    embedded_root: Option<PathBuf>,
    #[arg(long, env = "ARGON_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
}

fn config(args: RunArgs) -> anyhow::Result<Config> {
    let RunArgs {
        namespace,
        identity,
        sidecar_image,
        head_refresh_seconds,
        leader_election_namespace,
        metrics_listen,
        webhook_listen,
        webhook_cert,
        webhook_key,
        embedded_root,
        concurrency,
    } = args;
    let webhook = match (webhook_listen, webhook_cert, webhook_key) {
        (Some(listen), Some(cert), Some(key)) => Some(WebhookConfig {
            listen,
            cert_pem: std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?,
        }),
        _ => None,
    };
    let mut config = Config::new(identity);
    config.namespace = namespace;
    config.sidecar_image = sidecar_image;
    config.head_refresh = Duration::from_secs(head_refresh_seconds.max(1));
    config.leader = leader_election_namespace.map(LeaderConfig::new);
    config.metrics_listen = Some(metrics_listen);
    config.webhook = webhook;
    config.embedded_root = embedded_root;
    config.concurrency = concurrency.max(1);
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out } => {
            argon_operator::crdgen::write_all(&out)?;
            println!("wrote CRDs to {}", out.display());
            Ok(())
        }
        Command::Run(args) => {
            let filter = tracing_subscriber::EnvFilter::try_from_env("ARGON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .init();
            let config = config(*args)?;
            let client = kube::Client::try_default()
                .await
                .context("connecting to the cluster")?;
            // Kubernetes stops pods with SIGTERM; a terminal sends SIGINT.
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("installing the SIGTERM handler")?;
            let shutdown = async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            };
            argon_operator::run(client, config, shutdown).await?;
            Ok(())
        }
    }
}
