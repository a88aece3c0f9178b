//! `argon-operator`: Argon's control plane binary. Thin: parses flags
//! (or `ARGON_*` variables) into a [`Config`] and calls the library.

use anyhow::Context;
use argon_operator::config::{
    CertSecretConfig, Config, EndpointExposure, EndpointTlsConfig, LeaderConfig, WebhookConfig,
    WebhookTls,
};
use argon_operator::crd::ServiceType;
use argon_operator::network_policy;
use argon_operator::sidecar_cache::CacheDefaults;
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
    /// The image of branch endpoints and injected sidecars.
    #[arg(long, env = "ARGON_SIDECAR_IMAGE", default_value = argon_operator::config::DEFAULT_SIDECAR_IMAGE)]
    sidecar_image: String,
    /// Other images an ArgonProject's spec.sidecar.image may name,
    /// comma-separated: exact references or prefixes ending in `*`. Any
    /// other is refused (endpoint not run, pod not admitted).
    #[arg(long, env = "ARGON_ALLOWED_SIDECAR_IMAGES", value_delimiter = ',')]
    allowed_sidecar_images: Vec<String>,
    /// Endpoints and injected sidecars keep a cache of the log (their
    /// materialized store) on an emptyDir volume, unless a project's
    /// spec.sidecar.cache.enabled says otherwise.
    #[arg(long, env = "ARGON_SIDECAR_CACHE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    sidecar_cache_enabled: bool,
    /// The cache's memory budget (a quantity, 16Mi to 1Ti) unless a project sets spec.sidecar.cache.memory.
    #[arg(long, env = "ARGON_SIDECAR_CACHE_MEMORY", default_value = "256Mi")]
    sidecar_cache_memory: String,
    /// The cache volume's sizeLimit (a quantity, 64Mi to 1Pi) unless a project sets spec.sidecar.cache.disk.
    #[arg(long, env = "ARGON_SIDECAR_CACHE_DISK", default_value = "2Gi")]
    sidecar_cache_disk: String,
    /// Write a NetworkPolicy per branch endpoint admitting only its namespace's pods.
    #[arg(long, env = "ARGON_ENDPOINT_NETWORK_POLICY", default_value_t = true, action = clap::ArgAction::Set)]
    endpoint_network_policy: bool,
    /// Also admit pods with this label (`key=value`) from any namespace.
    #[arg(long, env = "ARGON_ENDPOINT_CLIENT_LABEL", default_value = "")]
    endpoint_client_label: String,
    /// Service types besides ClusterIP a branch may ask for (NodePort, LoadBalancer), comma-separated.
    #[arg(
        long,
        env = "ARGON_ENDPOINT_ALLOWED_SERVICE_TYPES",
        value_delimiter = ','
    )]
    endpoint_allowed_service_types: Vec<String>,
    /// Seconds between head refreshes of a Ready branch.
    #[arg(long, env = "ARGON_HEAD_REFRESH_SECONDS", default_value_t = 30)]
    head_refresh_seconds: u64,
    /// Elect a leader through a Lease in this namespace (run several replicas safely).
    #[arg(long, env = "ARGON_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// A standby takes the Lease over after seeing it unchanged this long (its own clock).
    #[arg(long, env = "ARGON_LEADER_LEASE_SECONDS", default_value_t = 15)]
    leader_lease_seconds: u64,
    /// The leader stops reconciling when it has not renewed for this long
    /// (less than the lease; the difference is the safety margin).
    #[arg(
        long,
        env = "ARGON_LEADER_RENEW_DEADLINE_SECONDS",
        default_value_t = 10
    )]
    leader_renew_deadline_seconds: u64,
    /// How often the leader renews and a standby retries.
    #[arg(long, env = "ARGON_LEADER_RETRY_SECONDS", default_value_t = 2)]
    leader_retry_seconds: u64,
    #[arg(long, env = "ARGON_METRICS_LISTEN", default_value = "0.0.0.0:8080")]
    metrics_listen: SocketAddr,
    /// Serve the injection webhook here, with the certificate of --webhook-secret
    /// (read through the API, reloaded on change) or of --webhook-cert/--webhook-key files.
    #[arg(long, env = "ARGON_WEBHOOK_LISTEN")]
    webhook_listen: Option<SocketAddr>,
    /// PEM certificate chain file (with --webhook-key, instead of a Secret),
    /// re-read every --webhook-check-seconds and served when it changes.
    #[arg(
        long,
        env = "ARGON_WEBHOOK_CERT",
        requires = "webhook_key",
        conflicts_with = "webhook_secret"
    )]
    webhook_cert: Option<PathBuf>,
    #[arg(long, env = "ARGON_WEBHOOK_KEY", requires = "webhook_cert")]
    webhook_key: Option<PathBuf>,
    /// The `kubernetes.io/tls` Secret the webhook serves (tls.crt, tls.key, ca.crt).
    #[arg(long, env = "ARGON_WEBHOOK_SECRET")]
    webhook_secret: Option<String>,
    /// Namespace of that Secret and of the webhook Service (the operator's own).
    #[arg(long, env = "ARGON_WEBHOOK_NAMESPACE")]
    webhook_namespace: Option<String>,
    /// The leader creates and renews the Secret and publishes the CA as caBundle;
    /// false when cert-manager does it.
    #[arg(long, env = "ARGON_WEBHOOK_MANAGE_CERTS", default_value_t = true, action = clap::ArgAction::Set)]
    webhook_manage_certs: bool,
    /// The webhook Service, whose DNS names the managed certificate holds.
    #[arg(
        long,
        env = "ARGON_WEBHOOK_SERVICE",
        default_value = "argon-operator-webhook"
    )]
    webhook_service: String,
    /// The MutatingWebhookConfiguration that gets the managed caBundle.
    #[arg(
        long,
        env = "ARGON_WEBHOOK_CONFIGURATION",
        default_value = "argon-operator-inject"
    )]
    webhook_configuration: String,
    /// Lifetime of managed serving certificates (renewed with a third left).
    #[arg(long, env = "ARGON_WEBHOOK_CERT_VALIDITY_SECONDS", default_value_t = 365 * 24 * 3600)]
    webhook_cert_validity_seconds: u64,
    /// How often the Secret (or the files) is re-read (and checked for renewal by the leader).
    #[arg(long, env = "ARGON_WEBHOOK_CHECK_SECONDS", default_value_t = 60)]
    webhook_check_seconds: u64,
    /// Root of embedded stores (`<root>/<namespace>/<claim>`).
    #[arg(long, env = "ARGON_EMBEDDED_ROOT")]
    embedded_root: Option<PathBuf>,
    /// Reconciles in flight at once (per controller); concurrent branch
    /// creations share the store's round trips.
    #[arg(long, env = "ARGON_CONCURRENCY", default_value_t = 64)]
    concurrency: u16,
    /// Apply this build's CRDs (server-side apply, field manager argon-operator)
    /// before becoming ready: how a `helm upgrade` upgrades them.
    #[arg(long, env = "ARGON_APPLY_CRDS", default_value_t = false, action = clap::ArgAction::Set)]
    apply_crds: bool,
    /// Keep a copy of each project's store connection in a Secret in this
    /// namespace (the operator's own), so a namespace deletion completes
    /// even after an operator restart.
    #[arg(long, env = "ARGON_STORE_COPY_NAMESPACE")]
    store_copy_namespace: Option<String>,
    /// The Secret holding the installation's CA (`ca.crt`, `ca.key`), which
    /// signs branch endpoints' certificates (`spec.endpoint.tls`); made when
    /// missing. The webhook's Secret when the operator manages it (one CA).
    /// Without it, a branch asking for TLS gets no endpoint.
    #[arg(long, env = "ARGON_ENDPOINT_CA_SECRET")]
    endpoint_ca_secret: Option<String>,
    /// Namespace of that Secret (default: --webhook-namespace, else the
    /// leader election namespace).
    #[arg(long, env = "ARGON_ENDPOINT_CA_NAMESPACE")]
    endpoint_ca_namespace: Option<String>,
    /// Lifetime of endpoint serving certificates (renewed with a third left).
    #[arg(long, env = "ARGON_ENDPOINT_CERT_VALIDITY_SECONDS", default_value_t = 90 * 24 * 3600)]
    endpoint_cert_validity_seconds: u64,
    /// The namespaces whose Secrets the operator may read, comma-separated
    /// (the chart's `secretNamespaces` Roles); empty: every namespace.
    #[arg(long, env = "ARGON_SECRET_NAMESPACES", value_delimiter = ',')]
    secret_namespaces: Vec<String>,
}

fn config(args: RunArgs) -> anyhow::Result<Config> {
    let RunArgs {
        namespace,
        identity,
        sidecar_image,
        allowed_sidecar_images,
        sidecar_cache_enabled,
        sidecar_cache_memory,
        sidecar_cache_disk,
        endpoint_network_policy,
        endpoint_client_label,
        endpoint_allowed_service_types,
        head_refresh_seconds,
        leader_election_namespace,
        leader_lease_seconds,
        leader_renew_deadline_seconds,
        leader_retry_seconds,
        metrics_listen,
        webhook_listen,
        webhook_cert,
        webhook_key,
        webhook_secret,
        webhook_namespace,
        webhook_manage_certs,
        webhook_service,
        webhook_configuration,
        webhook_cert_validity_seconds,
        webhook_check_seconds,
        embedded_root,
        concurrency,
        apply_crds,
        store_copy_namespace,
        endpoint_ca_secret,
        endpoint_ca_namespace,
        endpoint_cert_validity_seconds,
        secret_namespaces,
    } = args;
    let endpoint_tls = match endpoint_ca_secret {
        Some(secret) => {
            let namespace = endpoint_ca_namespace
                .or_else(|| webhook_namespace.clone())
                .or_else(|| leader_election_namespace.clone())
                .context(
                    "--endpoint-ca-secret needs --endpoint-ca-namespace (ARGON_ENDPOINT_CA_NAMESPACE)",
                )?;
            let mut tls = EndpointTlsConfig::new(namespace, secret);
            tls.cert_validity = Duration::from_secs(endpoint_cert_validity_seconds.max(3));
            Some(tls)
        }
        None => None,
    };
    let tls = match (webhook_cert, webhook_key, webhook_secret) {
        (Some(cert), Some(key), _) => Some(WebhookTls::Files {
            cert,
            key,
            check_every: Duration::from_secs(webhook_check_seconds.max(1)),
        }),
        (_, _, Some(secret)) => {
            let namespace = webhook_namespace
                .or_else(|| leader_election_namespace.clone())
                .context("--webhook-secret needs --webhook-namespace (ARGON_WEBHOOK_NAMESPACE)")?;
            let mut config = CertSecretConfig::managed(
                namespace,
                secret,
                webhook_service,
                webhook_configuration,
            );
            config.check_every = Duration::from_secs(webhook_check_seconds.max(1));
            match config.manage.as_mut() {
                Some(manage) if webhook_manage_certs => {
                    manage.cert_validity =
                        Duration::from_secs(webhook_cert_validity_seconds.max(3));
                }
                _ => config.manage = None,
            }
            Some(WebhookTls::Secret(config))
        }
        _ => None,
    };
    let webhook = match (webhook_listen, tls) {
        (Some(listen), Some(tls)) => Some(WebhookConfig { listen, tls }),
        (Some(_), None) => anyhow::bail!(
            "--webhook-listen needs --webhook-secret (or --webhook-cert and --webhook-key)"
        ),
        (None, _) => None,
    };
    let mut config = Config::new(identity);
    config.namespace = namespace;
    config.sidecar_image = sidecar_image;
    config.allowed_images = allowed_sidecar_images;
    config.cache = CacheDefaults {
        enabled: sidecar_cache_enabled,
        memory: sidecar_cache_memory,
        disk: sidecar_cache_disk,
    };
    config.cache.validate().map_err(|e| anyhow::anyhow!(e))?;
    config.exposure = EndpointExposure {
        network_policy: endpoint_network_policy,
        client_label: network_policy::parse_client_label(&endpoint_client_label)
            .map_err(|e| anyhow::anyhow!("--endpoint-client-label: {e}"))?,
        allowed_service_types: endpoint_allowed_service_types
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(|t| match t {
                "ClusterIP" => Ok(ServiceType::ClusterIP),
                "NodePort" => Ok(ServiceType::NodePort),
                "LoadBalancer" => Ok(ServiceType::LoadBalancer),
                other => Err(anyhow::anyhow!(
                    "--endpoint-allowed-service-types: unknown service type {other:?} (ClusterIP, NodePort, LoadBalancer)"
                )),
            })
            .collect::<anyhow::Result<_>>()?,
    };
    config.head_refresh = Duration::from_secs(head_refresh_seconds.max(1));
    config.leader = match leader_election_namespace {
        Some(namespace) => {
            let mut leader = LeaderConfig::new(namespace);
            leader.lease_duration = Duration::from_secs(leader_lease_seconds);
            leader.renew_deadline = Duration::from_secs(leader_renew_deadline_seconds);
            leader.renew_every = Duration::from_secs(leader_retry_seconds);
            leader.validate().map_err(|e| {
                anyhow::anyhow!(
                    "--leader-retry-seconds, --leader-renew-deadline-seconds, --leader-lease-seconds: {e}"
                )
            })?;
            Some(leader)
        }
        None => None,
    };
    config.metrics_listen = Some(metrics_listen);
    config.webhook = webhook;
    config.embedded_root = embedded_root;
    config.concurrency = concurrency.max(1);
    config.apply_crds = apply_crds;
    config.store_copy_namespace = store_copy_namespace;
    config.endpoint_tls = endpoint_tls;
    config.secret_namespaces = secret_namespaces
        .into_iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
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
