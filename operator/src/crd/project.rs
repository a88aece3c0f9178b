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
    printcolumn(name = "STORE", type_ = "string", json_path = ".status.store"),
    printcolumn(name = "BRANCHES", type_ = "integer", json_path = ".status.branches"),
    printcolumn(name = "PHASE", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "AGE", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.metadata.name.matches('^[a-z0-9][a-z0-9.-]{0,62}$')").message("metadata.name must be a valid Argon project name: at most 63 characters of a-z, 0-9, '-' and '.'"),
)]
#[serde(rename_all = "camelCase")]
pub struct ArgonProjectSpec {
    /// The store holding the WAL. Changing it points the project at another log.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.store is immutable: create a new project to use another store"))]
    pub store: StoreSpec,
    /// An existing MongoDB database to import into `main`, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// Defaults for the sidecars and branch endpoints of this project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarDefaults>,
    /// What deleting the ArgonProject does to the data: `Retain` (default) or `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
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

/// An existing MongoDB database imported into `main`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    /// The Secret key holding the source's connection string.
    pub secret_ref: SecretKeyRef,
    /// Databases to import.
    pub databases: Vec<String>,
    /// Only these collections (all when empty).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
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
    /// `Pending`, `Ready`, `Failed` or `Deleting`.
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
}
