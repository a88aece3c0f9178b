//! One open store per project, shared by every reconcile that touches it.
//! A project's store is found through its spec (and Secret); the handle is
//! reopened when that changes (a rotated Secret), and dropped on deletion.
//! A mongodb store, or an embedded one under `--embedded-root`, is opened
//! here (`LocalStore`); an embedded store in a cluster is reached through
//! its owner pod (`RemoteStore`, `store_owner`), once that pod is available.

use crate::crd::{ArgonProject, SecretKeyRef, StoreSpec};
use crate::error::{Error, Result};
use crate::project_store::ProjectStore;
use crate::project_store::local::LocalStore;
use crate::project_store::remote::RemoteStore;
use crate::store_copy::{Connection, StoreCopies};
use crate::store_owner;
use argon_wal::{EmbeddedStore, LogStore, MongoStore, Wal, WalOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Bounds how long a reconcile waits for an unreachable MongoDB (the
/// driver's default is 30 s) unless the URI says otherwise.
const SERVER_SELECTION_TIMEOUT_MS: u32 = 5000;

/// What identifies an open store: a change means reopening.
#[derive(Clone, Debug, PartialEq, Eq)]
enum StoreKey {
    Mongo {
        uri: String,
        database: String,
    },
    Embedded(PathBuf),
    /// An embedded store served by its owner pod, at this URI (no credentials).
    Owner(String),
}

/// A project's open store, shared by reconciles.
pub type OpenStore = Arc<dyn ProjectStore>;

pub struct Stores {
    client: Client,
    identity: String,
    embedded_root: Option<PathBuf>,
    open: tokio::sync::Mutex<HashMap<(String, String), (StoreKey, OpenStore)>>,
    /// Copies of mongodb connections for deletions after a restart
    /// (`store_copy`); `None` keeps none.
    copies: Option<StoreCopies>,
    /// What was copied, by project uid, so an unchanged connection is not
    /// written again on every reconcile.
    copied: tokio::sync::Mutex<HashMap<String, Connection>>,
    /// The Secrets' resourceVersions as the operator's watch saw them.
    secret_versions: Vec<Store<PartialObjectMeta<Secret>>>,
    /// The values read (one key of a Secret each), with the resourceVersion
    /// they were read at: used while the watch still sees that version, so
    /// a burst of reconciles of one project reads its Secret once, and a
    /// changed Secret is read again as soon as the watch sees the change.
    secret_values: std::sync::Mutex<HashMap<SecretValueKey, (String, String)>>,
}

/// Namespace, Secret name, key.
type SecretValueKey = (String, String, String);

impl Stores {
    pub fn new(
        client: Client,
        identity: String,
        embedded_root: Option<PathBuf>,
        copy_namespace: Option<&str>,
        secret_versions: Vec<Store<PartialObjectMeta<Secret>>>,
    ) -> Stores {
        Stores {
            copies: copy_namespace.map(|ns| StoreCopies::new(client.clone(), ns)),
            client,
            identity,
            embedded_root,
            open: tokio::sync::Mutex::new(HashMap::new()),
            copied: tokio::sync::Mutex::new(HashMap::new()),
            secret_versions,
            secret_values: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The project's store, opening it (and creating the project and `main`
    /// in the store) on first use.
    ///
    /// When the store's Secret cannot be read any more but the store is
    /// open, the open handle is used: deleting a namespace deletes its
    /// Secrets alongside the projects and branches whose finalizers still
    /// need the store, and nothing can recreate a Secret in a terminating
    /// namespace, so refusing here would hold the namespace forever.
    ///
    /// An operator that restarted during such a deletion has no open handle:
    /// for a project being deleted it opens the store from its own copy of
    /// the connection (`store_copy`), kept while the project lived.
    pub async fn wal(&self, project: &ArgonProject) -> Result<OpenStore> {
        let namespace = project.namespace().unwrap_or_default();
        let name = project.name_any();
        let key = match self.store_key(&namespace, &name, &project.spec.store).await {
            Ok(key) => {
                self.keep_copy(project, &key).await;
                key
            }
            Err(e @ Error::Secret { .. }) => {
                {
                    let open = self.open.lock().await;
                    if let Some((_, wal)) = open.get(&(namespace.clone(), name.clone())) {
                        tracing::warn!(
                            project = %name,
                            namespace = %namespace,
                            error = %e,
                            "the store's Secret is unreadable: using the store opened before"
                        );
                        return Ok(wal.clone());
                    }
                }
                let Some(connection) = self.deletion_copy(project).await else {
                    return Err(e);
                };
                tracing::warn!(
                    project = %name,
                    namespace = %namespace,
                    error = %e,
                    "the store's Secret is unreadable and the project is being deleted: using the operator's copy of its connection"
                );
                StoreKey::Mongo {
                    uri: connection.uri,
                    database: connection.database,
                }
            }
            Err(e) => return Err(e),
        };
        let mut open = self.open.lock().await;
        if let Some((k, wal)) = open.get(&(namespace.clone(), name.clone()))
            && *k == key
        {
            return Ok(wal.clone());
        }
        let store: Arc<dyn LogStore> = match &key {
            StoreKey::Mongo { uri, database } => MongoStore::connect(uri, database).await?,
            StoreKey::Embedded(dir) => {
                std::fs::create_dir_all(dir)?;
                EmbeddedStore::open(dir)?
            }
            StoreKey::Owner(uri) => {
                // The owner created the project and `main` when it started.
                let owner = store_owner::object_name(&name);
                let owner_key = self
                    .secret_value(
                        &namespace,
                        &SecretKeyRef {
                            name: store_owner::key_secret_name(&name),
                            key: store_owner::KEY_SECRET_KEY.into(),
                        },
                    )
                    .await?;
                let remote: OpenStore =
                    Arc::new(RemoteStore::connect(uri, &owner, Some(&owner_key)).await?);
                open.insert((namespace, name), (key, remote.clone()));
                return Ok(remote);
            }
        };
        let options = WalOptions {
            actor: format!("argon-operator/{}", self.identity),
            ..WalOptions::default()
        };
        let wal: OpenStore = Arc::new(LocalStore(Wal::open(store, &name, options).await?));
        open.insert((namespace, name), (key, wal.clone()));
        Ok(wal)
    }

    /// Whether `project`'s store is gone for good: an embedded store in a
    /// cluster whose owner is not serving while the project is being
    /// deleted. A namespace's deletion removes the owner's Deployment and
    /// pod with everything else, and a deleted project's owner is never
    /// applied again, so finalizers that waited for it would hold the
    /// namespace forever (a branch's waits for the store, a `Delete`
    /// project's for its branches). They finish without the store instead;
    /// the data stays on the claim, whose reclaim policy decides. An owner
    /// that is only restarting while the project lives is waited for.
    pub async fn owner_gone(&self, project: &ArgonProject) -> Result<bool> {
        if self.embedded_root.is_some()
            || project.spec.store.embedded.is_none()
            || project.metadata.deletion_timestamp.is_none()
        {
            return Ok(false);
        }
        let namespace = project.namespace().unwrap_or_default();
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &namespace);
        let owner = deployments
            .get_opt(&store_owner::object_name(&project.name_any()))
            .await?;
        Ok(owner.is_none_or(|d| {
            d.metadata.deletion_timestamp.is_some() || !crate::endpoint::is_available(&d)
        }))
    }

    /// Forgets a project's handle and removes the copy of its connection
    /// (after its deletion).
    pub async fn forget(&self, project: &ArgonProject) -> Result<()> {
        let key = (project.namespace().unwrap_or_default(), project.name_any());
        self.open.lock().await.remove(&key);
        if let Some(copies) = &self.copies {
            copies.remove(project).await?;
        }
        if let Some(uid) = project.uid() {
            self.copied.lock().await.remove(&uid);
        }
        Ok(())
    }

    /// Copies a mongodb connection unless that copy is already written. A
    /// failure is logged, not returned: the copy only matters if the
    /// operator restarts while the project's namespace is deleted.
    async fn keep_copy(&self, project: &ArgonProject, key: &StoreKey) {
        let (Some(copies), Some(uid), StoreKey::Mongo { uri, database }) =
            (&self.copies, project.uid(), key)
        else {
            return;
        };
        if project.metadata.deletion_timestamp.is_some() {
            // Its finalizer is about to remove the copy.
            return;
        }
        let connection = Connection {
            uri: uri.clone(),
            database: database.clone(),
        };
        let mut copied = self.copied.lock().await;
        if copied.get(&uid) == Some(&connection) {
            return;
        }
        match copies.save(project, &connection).await {
            Ok(()) => {
                copied.insert(uid, connection);
            }
            Err(e) => tracing::warn!(
                project = %project.name_any(),
                namespace = %project.namespace().unwrap_or_default(),
                error = %e,
                "could not keep a copy of the store connection (deleting its namespace after an operator restart would wait)"
            ),
        }
    }

    /// The copied connection of a project that is being deleted.
    async fn deletion_copy(&self, project: &ArgonProject) -> Option<Connection> {
        project.metadata.deletion_timestamp.as_ref()?;
        let copies = self.copies.as_ref()?;
        match copies.load(project).await {
            Ok(copy) => copy,
            Err(e) => {
                tracing::warn!(project = %project.name_any(), error = %e, "reading the copy of the store connection");
                None
            }
        }
    }

    async fn store_key(
        &self,
        namespace: &str,
        project: &str,
        spec: &StoreSpec,
    ) -> Result<StoreKey> {
        match (&spec.mongodb, &spec.embedded) {
            (Some(m), None) => {
                let uri = self.secret_value(namespace, &m.secret_ref).await?;
                Ok(StoreKey::Mongo {
                    uri: with_selection_timeout(uri.trim()),
                    database: m.database.clone(),
                })
            }
            (None, Some(e)) => {
                let Some(root) = &self.embedded_root else {
                    // Only the owner pod may open the files.
                    let deployments: Api<Deployment> =
                        Api::namespaced(self.client.clone(), namespace);
                    let owner = store_owner::object_name(project);
                    let available = deployments
                        .get_opt(&owner)
                        .await?
                        .is_some_and(|d| crate::endpoint::is_available(&d));
                    if !available {
                        return Err(Error::OwnerNotReady {
                            project: project.to_string(),
                            owner,
                        });
                    }
                    return Ok(StoreKey::Owner(store_owner::uri(project, namespace)));
                };
                let mut dir = root.join(namespace).join(&e.claim_name);
                if let Some(sub) = &e.sub_path {
                    dir = dir.join(sub);
                }
                Ok(StoreKey::Embedded(dir))
            }
            _ => Err(Error::StoreConfig {
                project: project.to_string(),
                reason: "set exactly one of spec.store.mongodb and spec.store.embedded".into(),
            }),
        }
    }

    /// A Secret's value as text: the copy read before while the watch sees
    /// the Secret at the version it was read at, else the apiserver's.
    pub async fn secret_value(&self, namespace: &str, r: &SecretKeyRef) -> Result<String> {
        let key = (namespace.to_string(), r.name.clone(), r.key.clone());
        let seen = self.secret_version(namespace, &r.name);
        {
            let mut values = self
                .secret_values
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match (&seen, values.get(&key)) {
                (Some(seen), Some((version, value))) if version == seen => {
                    return Ok(value.clone());
                }
                // Gone (or never seen) by the watch: no copy outlives it.
                (None, Some(_)) => {
                    values.remove(&key);
                }
                _ => {}
            }
        }
        let err = |reason: String| Error::Secret {
            namespace: namespace.to_string(),
            name: r.name.clone(),
            reason,
        };
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(&r.name)
            .await?
            .ok_or_else(|| err("not found".into()))?;
        let value = if let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(&r.key)) {
            String::from_utf8(bytes.0.clone())
                .map_err(|_| err(format!("key {:?} is not UTF-8", r.key)))?
        } else if let Some(s) = secret.string_data.as_ref().and_then(|d| d.get(&r.key)) {
            s.clone()
        } else {
            return Err(err(format!("has no key {:?}", r.key)));
        };
        if let Some(version) = secret.metadata.resource_version {
            self.secret_values
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(key, (version, value.clone()));
        }
        Ok(value)
    }

    /// The resourceVersion of Secret `name` as the operator's watch last saw it.
    fn secret_version(&self, namespace: &str, name: &str) -> Option<String> {
        let key = ObjectRef::new(name).within(namespace);
        self.secret_versions
            .iter()
            .find_map(|store| store.get(&key))
            .and_then(|meta| meta.metadata.resource_version.clone())
    }
}

/// A short description of a store for status (never the URI: it may hold a password).
pub fn describe(spec: &StoreSpec) -> String {
    match (&spec.mongodb, &spec.embedded) {
        (Some(m), _) => format!("mongodb/{}", m.database),
        (None, Some(e)) => format!("embedded/{}", e.claim_name),
        (None, None) => "none".into(),
    }
}

/// `uri` with `serverSelectionTimeoutMS` added unless it sets one.
pub fn with_selection_timeout(uri: &str) -> String {
    if uri
        .to_ascii_lowercase()
        .contains("serverselectiontimeoutms")
    {
        return uri.to_string();
    }
    // A query string starts after the host list's '/', if any.
    let after_scheme = uri.find("://").map(|i| i + 3).unwrap_or(0);
    let sep = if uri.contains('?') {
        "&"
    } else if uri[after_scheme..].contains('/') {
        "?"
    } else {
        "/?"
    };
    format!("{uri}{sep}serverSelectionTimeoutMS={SERVER_SELECTION_TIMEOUT_MS}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_timeout_is_added_once() {
        assert_eq!(
            with_selection_timeout("mongodb://h:1/"),
            "mongodb://h:1/?serverSelectionTimeoutMS=5000"
        );
        assert_eq!(
            with_selection_timeout("mongodb://h:1"),
            "mongodb://h:1/?serverSelectionTimeoutMS=5000"
        );
        assert_eq!(
            with_selection_timeout("mongodb://h/?tls=true"),
            "mongodb://h/?tls=true&serverSelectionTimeoutMS=5000"
        );
        assert_eq!(
            with_selection_timeout("mongodb://h/?serverSelectionTimeoutMS=1"),
            "mongodb://h/?serverSelectionTimeoutMS=1"
        );
    }
}
