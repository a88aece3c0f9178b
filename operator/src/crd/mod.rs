//! The API: `ArgonProject` and `ArgonBranch` (group `argon.dev`, version
//! `v1alpha1`), their status types, and the Kubernetes-convention conditions
//! both share. The schemas (with their CEL rules) are generated from these
//! types by `argon-operator crdgen`; `crds/` holds the output.

pub mod branch;
pub mod condition;
pub mod project;

pub use branch::{
    ArgonBranch, ArgonBranchSpec, ArgonBranchStatus, EndpointCertManager, EndpointSpec, IssuerRef,
    LastReset, PointSpec, ResetPreview, ResetSpec, ServiceType,
};
pub use condition::Conditions;
pub use project::{
    ArgonProject, ArgonProjectSpec, ArgonProjectStatus, AuthSpec, CacheSpec, DeletionPolicy,
    EmbeddedStoreSpec, ImportPhase, ImportSpec, ImportStatus, LocalhostAuth, MongoStoreSpec,
    PasswordSecretRef, RetentionSpec, RoleName, RoleSpec, SecretKeyRef, SidecarDefaults, StoreSpec,
    UserSpec,
};

/// The API group of every Argon resource.
pub const GROUP: &str = "argon.dev";
/// The finalizer both controllers put on their objects.
pub const FINALIZER: &str = "argon.dev/cleanup";
/// The field manager of everything the operator writes with server-side apply.
pub const FIELD_MANAGER: &str = "argon-operator";
