//! `ArgonBranch`: a branch of a project's WAL (a pointer, never a copy) and
//! its endpoint.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A branch of an `ArgonProject`, forked from `parent` at its head or at `from`.
/// The branch's name in the store is `metadata.name`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "argon.dev",
    version = "v1alpha1",
    kind = "ArgonBranch",
    plural = "argonbranches",
    namespaced,
    status = "ArgonBranchStatus",
    shortname = "abr",
    category = "argon",
    doc = "A branch of an Argon project: a pointer into its write-ahead log, with an optional endpoint.",
    // What `kubectl get argonbranches` shows (a test reads these columns
    // back from a real apiserver: tests/e2e/tests/cluster/columns.rs).
    printcolumn(name = "PROJECT", type_ = "string", json_path = ".spec.project", description = "The ArgonProject holding the branch."),
    printcolumn(name = "PARENT", type_ = "string", json_path = ".spec.parent", description = "The branch this one forked from."),
    printcolumn(name = "FORK", type_ = "integer", json_path = ".status.forkSeq", description = "The parent's log position the branch forked at."),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase", description = "Pending, Ready, Failed or Deleting."),
    printcolumn(name = "HEAD", type_ = "integer", json_path = ".status.headSeq", description = "The branch's newest log position."),
    printcolumn(name = "ENDPOINT", type_ = "string", json_path = ".status.endpoint", description = "The endpoint's connection string."),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "READ-ONLY", type_ = "boolean", json_path = ".spec.readOnly", priority = 1, description = "The endpoint serves reads only."),
    printcolumn(name = "EXPIRES", type_ = "string", json_path = ".status.expiresAt", priority = 1, description = "When expireAfter deletes the branch."),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9][a-z0-9.-]{0,62}$')").message("metadata.name must be a valid Argon branch name: at most 63 characters of a-z, 0-9, '-' and '.'"),
)]
#[x_kube(validation = Rule::new("has(self.from) == has(oldSelf.from) && (!has(self.from) || self.from == oldSelf.from)").message("spec.from is immutable: a branch's fork point is fixed when it is created").field_path(".from"))]
#[serde(rename_all = "camelCase")]
pub struct ArgonBranchSpec {
    /// The ArgonProject (same namespace) whose WAL holds the branch.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.project is immutable"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{0,62}$')").message("spec.project must name an ArgonProject"))]
    #[schemars(length(min = 1, max = 63))]
    pub project: String,
    /// The branch this one forks from.
    #[serde(default = "default_parent")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.parent is immutable"))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9_.-]{0,62}$')").message("spec.parent must be a valid branch name: 1 to 63 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"))]
    #[schemars(length(max = 63))]
    pub parent: String,
    /// Fork from this past point of the parent instead of its head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<PointSpec>,
    /// The endpoint serves reads only.
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    #[x_kube(validation = Rule::new("!has(self.certManager) || !has(self.tls) || self.tls").message("spec.endpoint.certManager needs spec.endpoint.tls: true (it says who issues the TLS certificate)"))]
    pub endpoint: EndpointSpec,
    /// Delete the branch this long after it was created (e.g. `72h`): branches as sandboxes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$')").message("spec.expireAfter must be a duration such as 30m, 24h or 1h30m"))]
    #[schemars(length(max = 32))]
    pub expire_after: Option<String>,
    /// Reset the branch to a past point of its own history, once per change of this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<ResetSpec>,
    /// A protected branch is never reset or deleted: the operator refuses,
    /// and the flag is written to the project's log so every sidecar
    /// refuses too (`argonProtectBranch`); this field owns that flag.
    #[serde(default)]
    pub protected: bool,
}

fn default_parent() -> String {
    "main".into()
}

/// A point of a branch's history: exactly one of a log position and a time.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.seq) != has(self.timestamp)").message("set exactly one of seq or timestamp"))]
#[serde(rename_all = "camelCase")]
pub struct PointSpec {
    /// A log position (commit number) of the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seq: Option<i64>,
    /// The newest commit at or before this time (RFC 3339; milliseconds count,
    /// unlike in `metav1.Time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
}

/// Moves the branch back to a past point; nothing in the log is rewritten.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.seq) != has(self.timestamp)").message("set exactly one of seq or timestamp"))]
#[serde(rename_all = "camelCase")]
pub struct ResetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub seq: Option<i64>,
    /// The newest commit at or before this time (RFC 3339, milliseconds count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
    /// Only compute what the reset would change (in `status.resetPreview`).
    #[serde(default)]
    pub dry_run: bool,
    /// Keep the discarded history as this new branch (an ArgonBranch is created for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{0,62}$')").message("spec.reset.backupBranch must be a valid branch name"))]
    #[schemars(length(max = 63))]
    pub backup_branch: Option<String>,
}

/// The branch endpoint: a Deployment running the sidecar in endpoint mode and a Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSpec {
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 16))]
    pub replicas: i32,
    /// `ClusterIP` (default). `NodePort` and `LoadBalancer` only where the
    /// installation allows them (the chart's `endpoints.allowedServiceTypes`);
    /// otherwise no endpoint is made and `EndpointReady` says why.
    #[serde(default)]
    pub service_type: ServiceType,
    /// The endpoint demands authentication (SCRAM, users of the project's
    /// `spec.users` or made with `createUser`) before anything but the
    /// handshake. `false` only where the network alone decides who connects.
    #[serde(default = "default_true")]
    pub auth: bool,
    /// The user of the project's `spec.users` (by name) whose credentials
    /// the connection Secret `<branch>-argon-app` carries. Without it the
    /// Secret carries the address only (no `username`, `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub user: Option<String>,
    /// Every connection is TLS, with a serving certificate for the
    /// Service's names kept in the Secret `<branch>-argon-tls` (`tls.crt`,
    /// `tls.key`, `ca.crt`) and reloaded by the sidecar without a restart
    /// when it is renewed. The operator's CA issues it (renewed with a third
    /// of its lifetime left) unless `certManager` names an issuer. The
    /// connection Secret then carries `ca.crt` and `tls=true`. `false` only
    /// where the network alone protects the traffic.
    #[serde(default = "default_true")]
    pub tls: bool,
    /// The endpoint's certificate comes from this cert-manager issuer
    /// instead of the operator's CA: the operator writes a cert-manager
    /// `Certificate` `<branch>-argon-tls` (owned by the branch) for the
    /// Service's names, cert-manager issues and renews the Secret of that
    /// name, and the endpoint starts once it is issued. The issuer must
    /// give `ca.crt` (a CA or self-signed issuer, or any issuer that sets
    /// it): clients and the endpoint's peers verify against it. Needs
    /// cert-manager in the cluster and the chart's `endpoints.certManager`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<EndpointCertManager>,
}

/// cert-manager as an endpoint's certificate issuer.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointCertManager {
    pub issuer_ref: IssuerRef,
}

/// A cert-manager issuer, as a `Certificate`'s `spec.issuerRef` names it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The issuer's name (an `Issuer` in the branch's namespace, or a
    /// `ClusterIssuer`).
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("spec.endpoint.certManager.issuerRef.name must be a DNS subdomain name"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` (default), `ClusterIssuer`, or an external issuer's kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z][A-Za-z0-9]*$')").message("spec.endpoint.certManager.issuerRef.kind must be a Kubernetes kind such as Issuer or ClusterIssuer"))]
    #[schemars(length(min = 1, max = 64))]
    pub kind: Option<String>,
    /// The issuer's API group: `cert-manager.io` (default) or an external
    /// issuer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("spec.endpoint.certManager.issuerRef.group must be an API group such as cert-manager.io"))]
    #[schemars(length(min = 1, max = 253))]
    pub group: Option<String>,
}

impl Default for EndpointSpec {
    fn default() -> Self {
        EndpointSpec {
            enabled: true,
            replicas: 1,
            service_type: ServiceType::default(),
            auth: true,
            user: None,
            tls: true,
            cert_manager: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_replicas() -> i32 {
    1
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ServiceType {
    #[default]
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArgonBranchStatus {
    /// `Pending`, `Ready`, `Failed` or `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The current incarnation of the branch in the store (a reset starts a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<i64>,
    /// The parent's position the branch forked from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_time: Option<Time>,
    /// The endpoint's connection string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// When `expireAfter` deletes the branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// What the last `reset` with `dryRun` would change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_preview: Option<ResetPreview>,
    /// The last `reset` handled (applied, previewed or refused): a reset runs once per change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<LastReset>,
}

/// What a reset changes, from the head back to the target.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResetPreview {
    pub from_seq: i64,
    pub to_seq: i64,
    /// Documents the reset brings back (present at the target, gone at the head).
    pub added: i64,
    /// Documents the reset removes (created after the target).
    pub removed: i64,
    /// Documents the reset changes back.
    pub changed: i64,
    /// Per collection, `db.coll: +added -removed ~changed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
}

/// The `spec.reset` last handled and its outcome.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastReset {
    pub spec: ResetSpec,
    pub generation: i64,
    /// `Previewed`, `Applied` or `Refused`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_branch: Option<String>,
}
