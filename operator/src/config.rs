//! What the operator needs to know to run: everything a flag or an
//! `ARGON_*` environment variable sets, with defaults that suit a cluster.
//! Tests build it with shorter intervals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The default image of branch endpoints and injected sidecars.
pub const DEFAULT_SIDECAR_IMAGE: &str =
    concat!("ghcr.io/argon-db/argon-sidecar:", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only this namespace (all when `None`).
    pub namespace: Option<String>,
    /// This instance's identity (pod name in a cluster): in the Lease and in events.
    pub identity: String,
    /// Image of endpoints and injected sidecars unless the project overrides it.
    pub sidecar_image: String,
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
}

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub lease_name: String,
    pub lease_namespace: String,
    /// A holder that has not renewed for this long is replaced.
    pub lease_duration: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
}

impl LeaderConfig {
    pub fn new(lease_namespace: impl Into<String>) -> LeaderConfig {
        LeaderConfig {
            lease_name: "argon-operator".into(),
            lease_namespace: lease_namespace.into(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Config {
    /// Defaults for one replica without leader election, metrics or webhook.
    pub fn new(identity: impl Into<String>) -> Config {
        Config {
            namespace: None,
            identity: identity.into(),
            sidecar_image: DEFAULT_SIDECAR_IMAGE.into(),
            head_refresh: Duration::from_secs(30),
            leader: None,
            metrics_listen: None,
            webhook: None,
            embedded_root: None,
            concurrency: 16,
        }
    }
}
