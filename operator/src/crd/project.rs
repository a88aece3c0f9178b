//! `ArgonProject`: one WAL (a project in a store) and its `main` branch.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a project's WAL lives, what to import into `main`, and the
/// defaults of the sidecars that serve its branches.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "argon.dev",
    version = "v1alpha1",
    kind = "ArgonProject",
    namespaced,
    status = "ArgonProjectStatus",
    shortname = "aproj",
    category = "argon",
    doc = "An Argon project: one write-ahead log in a store, with its branches.",
    // What `kubectl get argonprojects` shows (a test reads these columns
    // back from a real apiserver: tests/e2e/tests/cluster/columns.rs).
    printcolumn(name = "STORE", type_ = "string", json_path = ".status.store", description = "Where the write-ahead log lives (never its URI)."),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase", description = "Pending, Importing, Ready, Failed or Deleting."),
    printcolumn(name = "BRANCHES", type_ = "integer", json_path = ".status.branches", description = "Live branches in the store, main included."),
    printcolumn(name = "MAIN-HEAD", type_ = "integer", json_path = ".status.mainHeadSeq", description = "The newest log position of main."),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "IMPORT", type_ = "string", json_path = ".status.import.phase", priority = 1, description = "Progress of spec.import: Running, Completed or Failed."),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9][a-z0-9.-]{0,62}$')").message("metadata.name must be a valid Argon project name: at most 63 characters of a-z, 0-9, '-' and '.'"),
)]
#[serde(rename_all = "camelCase")]
pub struct ArgonProjectSpec {
    /// The store holding the WAL. Changing it points the project at another log.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.store is immutable: create a new project to use another store"))]
    pub store: StoreSpec,
    /// Existing MongoDB databases to copy into `main`: a one-time seed. Once
    /// `status.import.phase` is `Completed` the import never runs again, even
    /// if this field changes or is removed (edit `main` through a branch
    /// endpoint instead). Until then a changed value is what the next attempt
    /// copies; what a failed attempt copied stays in `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportSpec>,
    /// Not acted on yet: Argon keeps a project's whole history, so the
    /// apiserver refuses the field rather than accept a window nothing
    /// enforces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("false").message("spec.retention is not implemented yet: Argon keeps the whole history of a project; remove spec.retention"))]
    pub retention: Option<RetentionSpec>,
    /// Defaults for the sidecars and branch endpoints of this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarDefaults>,
    /// What deleting the ArgonProject does to the data: `Retain` (default) or `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// The project's users (SCRAM-SHA-256 and SCRAM-SHA-1), their passwords
    /// in Secrets of the project's namespace. The operator writes each one
    /// into the project's log (salted keys, never the password), rewrites it
    /// when its Secret or roles change, and drops the users it wrote once
    /// they leave this list; users made with `createUser` are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    #[x_kube(validation = Rule::new("self.all(u, self.exists_one(v, v.name == u.name && v.db == u.db))").message("spec.users: each user (name and db) appears once"))]
    pub users: Vec<UserSpec>,
    /// Who must authenticate where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

impl ArgonProjectSpec {
    /// A project on a mongodb store whose URI is key `uri` of Secret
    /// `secret_name`, in `database`; everything else defaulted.
    pub fn on_mongodb(secret_name: &str, database: &str) -> ArgonProjectSpec {
        ArgonProjectSpec {
            store: StoreSpec {
                mongodb: Some(MongoStoreSpec {
                    secret_ref: SecretKeyRef {
                        name: secret_name.into(),
                        key: "uri".into(),
                    },
                    database: database.into(),
                }),
                embedded: None,
            },
            import: None,
            retention: None,
            sidecar: None,
            deletion_policy: DeletionPolicy::default(),
            users: Vec::new(),
            auth: None,
        }
    }
}

/// Exactly one of `mongodb` and `embedded`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.mongodb) != has(self.embedded)").message("spec.store: set exactly one of mongodb or embedded"))]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongoStoreSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<EmbeddedStoreSpec>,
}

/// A MongoDB (or MongoDB-compatible) server the user runs; the WAL goes in `database`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MongoStoreSpec {
    /// The Secret key holding the `mongodb://` connection string.
    pub secret_ref: SecretKeyRef,
    /// The database holding the WAL's collections.
    #[serde(default = "default_database")]
    pub database: String,
}

fn default_database() -> String {
    "argon".into()
}

/// A key of a Secret in the project's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default = "default_secret_key")]
    pub key: String,
}

fn default_secret_key() -> String {
    "uri".into()
}

/// A user of the project, as `createUser` would make it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UserSpec {
    /// The user name drivers log in with.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9._@+-]+$"))]
    pub name: String,
    /// The user's database (the driver's `authSource`).
    #[serde(default = "default_user_db")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub db: String,
    /// The Secret key holding the password (key `password` by default).
    pub password_secret_ref: PasswordSecretRef,
    /// What the user may do. A role without `db` and `branch` is on the
    /// user's own database, as `createUser`'s `roles: ["readWrite"]` is.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub roles: Vec<RoleSpec>,
}

fn default_user_db() -> String {
    "admin".into()
}

/// A key of a Secret in the project's namespace holding a password.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default = "default_password_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// One role, where: MongoDB's `{role, db}` with Argon's branch scope.
/// Without `branch` the role covers every branch; `branch` may be a name or
/// a pattern with `*` (`preview-*`). `branchAdmin`, `root` and
/// `clusterMonitor` cover every database.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RoleSpec {
    pub role: RoleName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub db: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9*][a-z0-9_.*-]*$")
    )]
    pub branch: Option<String>,
}

/// The roles a sidecar knows (see docs/architecture.md, "Security model").
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum RoleName {
    Read,
    ReadWrite,
    DbAdmin,
    UserAdmin,
    BranchAdmin,
    ClusterMonitor,
    Root,
}

impl RoleName {
    /// The role's name as the sidecar stores and checks it.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Read => "read",
            RoleName::ReadWrite => "readWrite",
            RoleName::DbAdmin => "dbAdmin",
            RoleName::UserAdmin => "userAdmin",
            RoleName::BranchAdmin => "branchAdmin",
            RoleName::ClusterMonitor => "clusterMonitor",
            RoleName::Root => "root",
        }
    }
}

/// Who must authenticate. Branch endpoints always demand it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Injected sidecars (on 127.0.0.1 in the app's pod): `optional`
    /// (default; the sidecar still serves only its own branch) or
    /// `required` (the app logs in as one of `spec.users`).
    #[serde(default)]
    pub localhost: LocalhostAuth,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum LocalhostAuth {
    #[default]
    Optional,
    Required,
}

/// An embedded store (segment files) on a PersistentVolumeClaim: for small,
/// single-node setups. One process may open it at a time.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedStoreSpec {
    pub claim_name: String,
    /// Directory inside the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
}

/// Existing MongoDB databases copied into `main` once: collections (not
/// views, not `system.*`), their options, secondary indexes and documents,
/// keeping database and collection names. The copy reads each collection
/// once; it is not a point-in-time snapshot of a source written meanwhile.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    /// The Secret key holding the source's `mongodb://` connection string.
    pub secret_ref: SecretKeyRef,
    /// Databases to import; each must exist and hold a collection (one of
    /// `collections`, when that is set).
    #[schemars(length(min = 1))]
    pub databases: Vec<String>,
    /// Only collections of these names, in whichever listed database they
    /// are (all when empty); each must exist in at least one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
}

/// How much history to keep.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// History older than this may be compacted (a duration such as `720h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<String>,
}

/// Defaults for the sidecars (injected) and endpoints (provisioned) of the project.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SidecarDefaults {
    /// The image of the project's endpoints and injected sidecars: one the
    /// installation allows (the chart's `sidecarImage` or its
    /// `allowedSidecarImages`); any other is refused (no endpoint runs it,
    /// the webhook refuses the pod). Default: the chart's `sidecarImage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// The sidecar's resources. A memory limit must leave room for the
    /// cache: below `cache.memory` + 64Mi the `SidecarCache` condition is
    /// False (`MemoryLimitTooLow`) and an event says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The sidecar's cache of the log (its materialized store): reads of
    /// past points are served from it. Default: the chart's `sidecar.cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheSpec>,
}

/// The sidecar's cache in each pod: an `emptyDir` volume of `disk` (its
/// `sizeLimit`) mounted at `/var/cache/argon`, and a memory budget of
/// `memory`. Sizes are Kubernetes quantities of bytes (`256Mi`, `2Gi`,
/// `1.5G`): digits, an optional fraction and one suffix (Ki, Mi, Gi, Ti,
/// Pi, Ei, k, M, G, T, P, E).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CacheSpec {
    /// Whether endpoints and injected sidecars keep the cache. Default: the
    /// chart's `sidecar.cache.enabled` (true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The cache's memory budget, 16Mi to 1Ti. Default: the chart's
    /// `sidecar.cache.memory` (256Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    )]
    #[x_kube(validation = Rule::new("!isQuantity(self) || (quantity(self).compareTo(quantity('16Mi')) >= 0 && quantity(self).compareTo(quantity('1Ti')) <= 0)").message("spec.sidecar.cache.memory must be between 16Mi and 1Ti"))]
    pub memory: Option<String>,
    /// The cache volume's size (`emptyDir.sizeLimit`), 64Mi to 1Pi.
    /// Default: the chart's `sidecar.cache.disk` (2Gi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 20),
        regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    )]
    #[x_kube(validation = Rule::new("!isQuantity(self) || (quantity(self).compareTo(quantity('64Mi')) >= 0 && quantity(self).compareTo(quantity('1Pi')) <= 0)").message("spec.sidecar.cache.disk must be between 64Mi and 1Pi"))]
    pub disk: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Deleting the ArgonProject leaves the WAL in the store.
    #[default]
    Retain,
    /// Deleting the ArgonProject deletes its branches in the store first.
    Delete,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArgonProjectStatus {
    /// `Pending`, `Importing` (spec.import runs), `Ready`, `Failed` or `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// A short description of the store, e.g. `mongodb/argon` (never the URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Live branches in the store, `main` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<i64>,
    /// Head of `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_head_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_head_time: Option<Time>,
    /// Progress and outcome of `spec.import`; `Completed` means it never runs again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportStatus>,
    /// Users of `spec.users` in the store as the spec and their Secrets say
    /// (the `UsersReady` condition names any that are not, and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportPhase {
    Running,
    Completed,
    /// The last attempt failed (see `message`); it is retried with backoff.
    Failed,
}

/// Counts are of the current (or last) attempt: an attempt after a failure
/// or an operator restart copies everything again (puts are keyed by `_id`,
/// so nothing is duplicated, and documents already in `main` unchanged are
/// not logged again).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImportStatus {
    /// `Running`, `Completed` (it never runs again) or `Failed` (retried).
    pub phase: ImportPhase,
    /// Attempts so far (the current one included).
    #[serde(default)]
    pub attempts: i64,
    /// Databases copied completely.
    #[serde(default)]
    pub databases: i64,
    /// Collections copied completely.
    #[serde(default)]
    pub collections: i64,
    /// Secondary indexes created (`_id_` not counted).
    #[serde(default)]
    pub indexes: i64,
    /// Documents copied so far.
    #[serde(default)]
    pub documents: i64,
    /// The collection being copied (`db.coll`), or where the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// When the first attempt started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// The ArgonProject generation the last attempt ran for: after a
    /// failure, a new generation (a changed spec) is retried at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// When the last attempt failed; the next one waits 5 s after the first
    /// failure, doubling up to 5 min (a fixed Secret is picked up then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<Time>,
    /// `main`'s head once the import completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_seq: Option<i64>,
    /// What failed, or a summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
