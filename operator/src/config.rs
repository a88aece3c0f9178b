//! What the operator needs to know to run: everything a flag or an
//! `ARGON_*` environment variable sets, with defaults that suit a cluster.
//! Tests build it with shorter intervals.

use crate::crd::ServiceType;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default image of branch endpoints and injected sidecars.
/// The chart's default (`argon-sidecar:<appVersion>`, the name `tests/infra/images`
/// and the Dockerfiles build); a registry prefix comes from the chart's values.
pub const DEFAULT_SIDECAR_IMAGE: &str = concat!("argon-sidecar:", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// This instance's identity (pod name in a cluster): in the Lease and in events.
    pub identity: String,
    /// Image of endpoints and injected sidecars unless the project names
    /// an allowed one (`allowed_images`).
    pub sidecar_image: String,
    /// Images a project's `spec.sidecar.image` may name (the chart's
    /// `allowedSidecarImages`): exact references, or prefixes ending in `*`
    /// (`registry.example.com/argon-sidecar:*`). `sidecar_image` is always
    /// allowed; empty: nothing else (`image_policy`).
    pub allowed_images: Vec<String>,
    /// What a branch endpoint exposes, and to whom (the chart's `endpoints`).
    pub exposure: EndpointExposure,
    /// How often a Ready branch's head is re-read from the store.
    pub head_refresh: Duration,
    /// Leader election; `None` runs the controllers at once (single replica).
    pub leader: Option<LeaderConfig>,
    /// `/metrics`, `/healthz`, `/readyz`; `None` serves nothing.
    pub metrics_listen: Option<SocketAddr>,
    /// The injection webhook over TLS; `None` serves nothing.
    pub webhook: Option<WebhookConfig>,
    /// Root directory of embedded stores (`<root>/<namespace>/<claim>[/<subPath>]`);
    /// `None` refuses embedded projects.
    pub embedded_root: Option<PathBuf>,
    /// Branches reconciled at once.
    pub concurrency: u16,
    /// Apply `crds/` (the CRDs of this build) with server-side apply before
    /// becoming ready: Helm installs `crds/` once and never upgrades them,
    /// so this is how a `helm upgrade` brings the CRDs up to date.
    pub apply_crds: bool,
    /// Where the operator keeps its copy of each project's store connection
    /// (its own namespace), for deletions after a restart (`store_copy`);
    /// `None` keeps none.
    pub store_copy_namespace: Option<String>,
    /// The operator's CA for branch endpoints' certificates (`spec.endpoint.tls`);
    /// `None`: a branch asking for TLS gets no endpoint and a condition saying why.
    pub endpoint_tls: Option<EndpointTlsConfig>,
    /// The namespaces whose Secrets the operator may read (the password
    /// watch runs in each); empty: every namespace (or `namespace`). Matches
    /// the chart's `secretNamespaces` Roles.
    pub secret_namespaces: Vec<String>,
    /// The sidecar cache of endpoints and injected sidecars unless a
    /// project says otherwise (the chart's `sidecar.cache`).
    pub cache: crate::sidecar_cache::CacheDefaults,
}

/// What branch endpoints expose (the chart's `endpoints` values).
#[derive(Clone, Debug)]
pub struct EndpointExposure {
    /// A NetworkPolicy per endpoint admits only pods of the branch's
    /// namespace (and `client_label` pods); false: the operator writes none
    /// and removes those it wrote (for clusters whose own policies decide).
    pub network_policy: bool,
    /// Pods carrying this label `(key, value)`, in any namespace, are
    /// admitted to endpoints' MongoDB port too (`argon.dev/client=true`).
    pub client_label: Option<(String, String)>,
    /// Service types besides `ClusterIP` a branch may ask for
    /// (`spec.endpoint.serviceType`); empty: `ClusterIP` only.
    pub allowed_service_types: Vec<ServiceType>,
}

impl Default for EndpointExposure {
    /// Policies on, the namespace only, `ClusterIP` only.
    fn default() -> Self {
        EndpointExposure {
            network_policy: true,
            client_label: None,
            allowed_service_types: Vec::new(),
        }
    }
}

impl Config {
    /// The namespace the operator itself runs in, when it says so (in a
    /// cluster the chart sets the leader election, webhook and store-copy
    /// namespaces to the release's): what may reach an embedded store's
    /// owner besides the project's namespace (`network_policy::owner`).
    pub fn own_namespace(&self) -> Option<&str> {
        self.leader
            .as_ref()
            .map(|l| l.lease_namespace.as_str())
            .or(self.store_copy_namespace.as_deref())
    }
}

impl EndpointExposure {
    pub fn allows(&self, service_type: ServiceType) -> bool {
        service_type == ServiceType::ClusterIP || self.allowed_service_types.contains(&service_type)
    }
}

/// Where the installation's CA lives and what endpoint certificates it issues.
#[derive(Clone, Debug)]
pub struct EndpointTlsConfig {
    /// The CA Secret (`ca.crt`, `ca.key`) in the operator's namespace: the
    /// webhook's Secret when the operator manages it (one CA per
    /// installation), made by the operator when missing.
    pub ca_namespace: String,
    pub ca_secret: String,
    pub ca_validity: Duration,
    /// Lifetime of an endpoint's serving certificate (renewed with a third left).
    pub cert_validity: Duration,
    /// Extra names or IP addresses in every endpoint certificate (tests: `127.0.0.1`).
    pub extra_names: Vec<String>,
}

impl EndpointTlsConfig {
    /// Defaults: a CA for 10 years, endpoint certificates for 90 days.
    pub fn new(ca_namespace: impl Into<String>, ca_secret: impl Into<String>) -> EndpointTlsConfig {
        EndpointTlsConfig {
            ca_namespace: ca_namespace.into(),
            ca_secret: ca_secret.into(),
            ca_validity: Duration::from_secs(10 * 365 * 24 * 3600),
            cert_validity: Duration::from_secs(90 * 24 * 3600),
            extra_names: Vec::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub lease_namespace: String,
    /// A candidate takes the Lease over after seeing it unchanged this long
    /// (on its own clock; see `leader`).
    pub lease_duration: Duration,
    /// The holder steps down (stops reconciling) when it has not renewed
    /// for this long; shorter than `lease_duration`, and the difference is
    /// the margin a stopping holder has.
    pub renew_deadline: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
    /// Tests only (no flag sets it): while it holds `true`, this
    /// instance's renewals hang, as they would on a stalled connection to
    /// the apiserver, so a test can show the holder steps down in time.
    pub stall_renewals: Option<tokio::sync::watch::Receiver<bool>>,
}

impl LeaderConfig {
    /// client-go's defaults: a 15 s lease, renewed every 2 s, given up
    /// after 10 s without a renewal.
    pub fn new(lease_namespace: impl Into<String>) -> LeaderConfig {
        LeaderConfig {
            lease_name: "argon-operator".into(),
            lease_namespace: lease_namespace.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            stall_renewals: None,
        }
    }

    /// `renew_every < renew_deadline < lease_duration`, or why not.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_every >= self.renew_deadline || self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "leader election needs renew interval < renew deadline < lease duration (got {:?}, {:?}, {:?})",
                self.renew_every, self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub tls: WebhookTls,
}

/// Where the webhook's serving certificate comes from.
#[derive(Clone, Debug)]
pub enum WebhookTls {
    /// Fixed PEM, never reloaded (tests).
    Pem { cert_pem: String, key_pem: String },
    /// PEM files (`--webhook-cert` / `--webhook-key`, e.g. a mounted Secret
    /// that cert-manager renews), re-read every `check_every`: a changed
    /// pair is served from the next handshake on, a pair that does not
    /// load (half-written) is logged and the previous one kept.
    Files {
        cert: PathBuf,
        key: PathBuf,
        check_every: Duration,
    },
    /// A `kubernetes.io/tls` Secret read through the API by every replica and
    /// re-read periodically (the server swaps certificates without a restart);
    /// with `manage`, the leader also creates, renews and publishes it.
    Secret(CertSecretConfig),
}

#[derive(Clone, Debug)]
pub struct CertSecretConfig {
    pub namespace: String,
    pub name: String,
    /// How often the Secret is re-read (and, by the leader, checked for renewal).
    pub check_every: Duration,
    /// `None`: someone else (cert-manager) writes the Secret and the caBundle.
    pub manage: Option<ManagedCerts>,
}

/// What the operator's own certificate manager issues and where it publishes the CA.
#[derive(Clone, Debug)]
pub struct ManagedCerts {
    /// The webhook Service (in the Secret's namespace): the certificate names
    /// `<service>.<ns>.svc` and `<service>.<ns>.svc.cluster.local`.
    pub service: String,
    /// Extra names or IP addresses in the serving certificate (tests: `127.0.0.1`).
    pub extra_names: Vec<String>,
    /// The MutatingWebhookConfiguration whose webhooks get the `caBundle`.
    pub webhook_configuration: String,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
}

impl CertSecretConfig {
    /// Defaults: re-read every minute; a managed CA for 10 years, serving
    /// certificates for one year (renewed when a third of the lifetime is left).
    pub fn managed(
        namespace: impl Into<String>,
        name: impl Into<String>,
        service: impl Into<String>,
        webhook_configuration: impl Into<String>,
    ) -> CertSecretConfig {
        CertSecretConfig {
            namespace: namespace.into(),
            name: name.into(),
            check_every: Duration::from_secs(60),
            manage: Some(ManagedCerts {
                service: service.into(),
                extra_names: Vec::new(),
                webhook_configuration: webhook_configuration.into(),
                ca_validity: Duration::from_secs(10 * 365 * 24 * 3600),
                cert_validity: Duration::from_secs(365 * 24 * 3600),
            }),
        }
    }
}

impl Config {
    /// The image rule of endpoints and injected sidecars.
    pub fn image_policy(&self) -> crate::image_policy::ImagePolicy {
        crate::image_policy::ImagePolicy::new(&self.sidecar_image, &self.allowed_images)
    }

    /// Defaults for one replica without leader election, metrics or webhook.
    pub fn new(identity: impl Into<String>) -> Config {
        Config {
            namespace: None,
            identity: identity.into(),
            sidecar_image: DEFAULT_SIDECAR_IMAGE.into(),
            allowed_images: Vec::new(),
            exposure: EndpointExposure::default(),
            head_refresh: Duration::from_secs(30),
            leader: None,
            metrics_listen: None,
            webhook: None,
            embedded_root: None,
            concurrency: 64,
            apply_crds: false,
            store_copy_namespace: None,
            endpoint_tls: None,
            secret_namespaces: Vec::new(),
            cache: crate::sidecar_cache::CacheDefaults::default(),
        }
    }
}
