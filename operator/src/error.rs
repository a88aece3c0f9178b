//! The crate's one error type. Each variant names what went wrong; the
//! controllers' error policy logs it, counts it by [`Error::metric_label`]
//! and requeues.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),

    #[error("store: {0}")]
    Wal(#[from] argon_wal::WalError),

    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),

    #[error("ArgonProject {namespace}/{name} not found")]
    ProjectNotFound { namespace: String, name: String },

    #[error("secret {namespace}/{name}: {reason}")]
    Secret {
        namespace: String,
        name: String,
        reason: String,
    },

    #[error("store of project {project}: {reason}")]
    StoreConfig { project: String, reason: String },

    /// An embedded store's owner Deployment has no available replica yet.
    #[error(
        "the embedded store of project {project} is served by Deployment {owner}, which has no available replica yet"
    )]
    OwnerNotReady { project: String, owner: String },

    /// `spec.import` failed; `attempt` (from 1) sets the retry's backoff.
    #[error("import into project {project}: {reason}")]
    Import {
        project: String,
        reason: String,
        attempt: u32,
    },

    /// A deletion the operator refuses (children, `protected`); the finalizer stays.
    #[error("deletion of {name} blocked: {reason}")]
    DeletionBlocked { name: String, reason: String },

    #[error("{0} has no {1}")]
    MissingField(&'static str, &'static str),

    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),

    #[error("tls: {0}")]
    Tls(String),

    /// A project's `spec.sidecar.image` outside the chart's allow-list.
    #[error("image {image:?} is not allowed (the installation allows: {allowed})")]
    ImageNotAllowed { image: String, allowed: String },

    /// A `spec.endpoint.serviceType` the installation does not allow.
    #[error(
        "spec.endpoint.serviceType {0} is not allowed by this installation (ClusterIP only, unless the chart's endpoints.allowedServiceTypes lists it)"
    )]
    ServiceTypeNotAllowed(String),

    /// A sidecar cache size (`spec.sidecar.cache` or the chart's) that is
    /// not usable; the message names the field.
    #[error("{0}")]
    SidecarCache(String),

    #[error("lost the leader lease {0}")]
    LostLease(String),

    /// Applying the operator's own CRDs at start failed (RBAC, a conflict).
    #[error("applying the CRDs: {0}")]
    Crds(String),
}

impl Error {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(_) => "kube".into(),
            Error::Wal(e) => format!("store_{}", e.metric_label()),
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer".into(),
            },
            Error::ProjectNotFound { .. } => "project_not_found".into(),
            Error::Secret { .. } => "secret".into(),
            Error::StoreConfig { .. } => "store_config".into(),
            Error::OwnerNotReady { .. } => "store_owner_not_ready".into(),
            Error::Import { .. } => "import".into(),
            Error::DeletionBlocked { .. } => "deletion_blocked".into(),
            Error::MissingField(..) => "missing_field".into(),
            Error::Serialize(_) => "serialize".into(),
            Error::Config(_) => "config".into(),
            Error::Io(_) => "io".into(),
            Error::Tls(_) => "tls".into(),
            Error::ImageNotAllowed { .. } => "image_not_allowed".into(),
            Error::ServiceTypeNotAllowed(_) => "service_type_not_allowed".into(),
            Error::SidecarCache(_) => "sidecar_cache".into(),
            Error::LostLease(_) => "lost_lease".into(),
            Error::Crds(_) => "crds".into(),
        }
    }

    /// The error a reconcile returned, seen through the finalizer's wrapper.
    pub fn inner(&self) -> &Error {
        match self {
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.inner(),
                _ => self,
            },
            _ => self,
        }
    }
}

impl From<kube::runtime::finalizer::Error<Error>> for Error {
    fn from(e: kube::runtime::finalizer::Error<Error>) -> Self {
        Error::Finalizer(Box::new(e))
    }
}
