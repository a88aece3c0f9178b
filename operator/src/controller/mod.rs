//! The two controllers and what they share: the context (client, stores,
//! metrics, event recorder), status writes by server-side apply under one
//! field manager, events, and the error policy.

pub mod branch;
pub mod events;
pub mod project;

use crate::config::Config;
use crate::crd::ArgonProject;
use crate::crd::FIELD_MANAGER;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::stores::Stores;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

/// Everything a reconcile needs, shared by both controllers.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub stores: Stores,
    pub metrics: Arc<Metrics>,
    pub events: events::EventSink,
    /// What the controllers' watches have seen, read instead of asking the
    /// apiserver on every reconcile (see `Caches`).
    pub caches: Caches,
}

/// The watch caches a reconcile reads. A cache is at most one watch event
/// behind the apiserver, no staler than a GET that raced the same change;
/// a miss (not seen yet) falls back to the apiserver.
pub struct Caches {
    /// The project controller's store of ArgonProjects.
    pub projects: Store<ArgonProject>,
    /// The Deployments the operator manages (metadata only), from the
    /// branch controller's watch of its endpoints.
    pub deployments: Store<PartialObjectMeta<Deployment>>,
    /// The Secrets' metadata (one store per watched namespace, or one for
    /// all), from the watch that wakes projects on password changes: the
    /// resourceVersion a copy of a Secret's value must match to be used.
    pub secret_versions: Vec<Store<PartialObjectMeta<Secret>>>,
}

impl Context {
    pub fn new(client: Client, config: Config, metrics: Arc<Metrics>, caches: Caches) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "argon-operator".into(),
                instance: Some(config.identity.clone()),
            },
        );
        let events = events::EventSink::start(recorder, metrics.clone(), events::QUEUED_EVENTS);
        Context {
            stores: Stores::new(
                client.clone(),
                config.identity.clone(),
                config.embedded_root.clone(),
                config.store_copy_namespace.as_deref(),
                caches.secret_versions.clone(),
            ),
            client,
            config,
            metrics,
            events,
            caches,
        }
    }

    /// ArgonProject `name` of `namespace`: the watch cache's copy, or the
    /// apiserver's when the cache has not seen it (just created).
    pub async fn project(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ArgonProject>>, Error> {
        let key = ObjectRef::new(name).within(namespace);
        if let Some(p) = self.caches.projects.get(&key) {
            return Ok(Some(p));
        }
        let api: Api<ArgonProject> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    /// Whether the watch cache holds Deployment `name` of `namespace`.
    pub fn deployment_seen(&self, namespace: &str, name: &str) -> bool {
        self.caches
            .deployments
            .get(&ObjectRef::new(name).within(namespace))
            .is_some()
    }

    /// Queues an event about `obj` (see [`events`]): a reconcile never
    /// waits for it, and a failure to publish is logged, never fatal.
    pub fn event<K>(&self, obj: &K, warning: bool, reason: &str, action: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        self.events.publish(event, obj.object_ref(&()));
    }
}

/// Writes `status` of `obj` by server-side apply (field manager
/// `argon-operator`, forced: the operator owns the whole status).
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, status: &S) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// On error: count it, log it (here, where it is handled) and retry soon.
pub fn error_policy<K: ResourceExt>(
    controller: &'static str,
    obj: &K,
    error: &Error,
    metrics: &Metrics,
) -> Action {
    metrics.failure(controller, error.metric_label());
    // Reconcile errors arrive wrapped by the finalizer.
    match error.inner() {
        Error::DeletionBlocked { .. } => {
            tracing::info!(controller, name = %obj.name_any(), %error, "deletion blocked");
            Action::requeue(Duration::from_secs(10))
        }
        Error::Import { attempt, .. } => {
            tracing::warn!(controller, name = %obj.name_any(), %error, attempt, "import failed");
            Action::requeue(import_backoff(*attempt))
        }
        _ => {
            tracing::warn!(controller, name = %obj.name_any(), %error, "reconcile failed");
            Action::requeue(Duration::from_secs(5))
        }
    }
}

/// 5 s after the first failed import attempt, doubling up to 5 minutes: a
/// wrong Secret or database name is fixed by a person, not by retrying fast.
pub(crate) fn import_backoff(attempt: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_backoff_doubles_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=9).map(|a| import_backoff(a).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(import_backoff(0).as_secs(), 5);
    }
}
