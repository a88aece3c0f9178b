//! The operator's own copy of each project's store connection, kept in a
//! Secret in the operator's namespace, for one case: a project being deleted
//! whose store Secret is already gone, handled by an operator that never
//! opened the store (it restarted during the deletion).
//!
//! Deleting a namespace deletes the store's Secret together with the
//! projects and branches whose finalizers still need the store, in no
//! order, and nothing can recreate a Secret in a terminating namespace. An
//! operator that had the store open goes on with that handle
//! (`stores::Stores::wal`); one that restarted meanwhile would wait forever.
//! So while a project lives, its connection (`uri`, `database`) is copied to
//! `argon-store-<project uid>` in the operator's namespace, and removed when
//! the project's finalizer completes. The copy is read only for a project
//! that is being deleted: a live project whose Secret is gone is Pending.
//!
//! The copy holds the same credentials the operator already reads; it lives
//! where only the operator's namespace's readers see it.

use crate::crd::{ArgonProject, FIELD_MANAGER};
use crate::error::Result;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;

const URI: &str = "uri";
const DATABASE: &str = "database";

/// A project's store connection as the copy holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub uri: String,
    pub database: String,
}

pub struct StoreCopies {
    api: Api<Secret>,
}

impl StoreCopies {
    /// Copies kept in `namespace` (the operator's own).
    pub fn new(client: Client, namespace: &str) -> StoreCopies {
        StoreCopies {
            api: Api::namespaced(client, namespace),
        }
    }

    /// The copy's name: by uid, so a project recreated under the same name
    /// never reads an older project's copy.
    pub fn name(project: &ArgonProject) -> Option<String> {
        project.uid().map(|uid| format!("argon-store-{uid}"))
    }

    /// Writes (or replaces) the copy of `project`'s connection.
    pub async fn save(&self, project: &ArgonProject, connection: &Connection) -> Result<()> {
        let Some(name) = Self::name(project) else {
            return Ok(());
        };
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/managed-by".to_string(),
                        "argon-operator".to_string(),
                    ),
                    ("argon.dev/project".to_string(), project.name_any()),
                ])),
                annotations: Some(BTreeMap::from([(
                    "argon.dev/project-namespace".to_string(),
                    project.namespace().unwrap_or_default(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    URI.to_string(),
                    ByteString(connection.uri.clone().into_bytes()),
                ),
                (
                    DATABASE.to_string(),
                    ByteString(connection.database.clone().into_bytes()),
                ),
            ])),
            ..Secret::default()
        };
        self.api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret),
            )
            .await?;
        Ok(())
    }

    /// The copy of `project`'s connection, if there is one.
    pub async fn load(&self, project: &ArgonProject) -> Result<Option<Connection>> {
        let Some(name) = Self::name(project) else {
            return Ok(None);
        };
        let Some(secret) = self.api.get_opt(&name).await? else {
            return Ok(None);
        };
        let data = secret.data.unwrap_or_default();
        let text = |key: &str| {
            data.get(key)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        Ok(match (text(URI), text(DATABASE)) {
            (Some(uri), Some(database)) => Some(Connection { uri, database }),
            _ => None,
        })
    }

    /// Removes `project`'s copy (gone already is fine).
    pub async fn remove(&self, project: &ArgonProject) -> Result<()> {
        let Some(name) = Self::name(project) else {
            return Ok(());
        };
        match self.api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
