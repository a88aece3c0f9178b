//! The ArgonBranch controller: a branch is a pointer into its project's
//! WAL (created from the parent's head or from `spec.from`), plus an
//! endpoint (Deployment + Service) owned by the branch. It refreshes the
//! head, applies `spec.reset` once per change, deletes expired branches,
//! and on deletion refuses while the branch is protected or has children
//! (condition + event, finalizer kept), then removes the endpoint and
//! deletes the branch in the store.

use super::{Context, apply_status};
use crate::crd::condition::types::{
    CONNECTION_SECRET, DELETION_BLOCKED, ENDPOINT_READY, ENDPOINT_TLS, NETWORK_POLICY, READY,
    RESET, STORE_REACHABLE,
};
use crate::crd::{
    ArgonBranch, ArgonBranchSpec, ArgonBranchStatus, ArgonProject, Conditions, EndpointSpec,
    FIELD_MANAGER, FINALIZER, LastReset, ResetPreview, ResetSpec, SecretKeyRef,
};
use crate::endpoint_tls::{self, Issuance};
use crate::error::{Error, Result};
use crate::project_store::{ProjectStore, ResetReport};
use crate::{connection, endpoint, sidecar_cache, store_owner};
use argon_wal::{BranchInfo, CommitTime, ReadPoint, Seq, WalError};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const CONTROLLER: &str = "branch";
/// Label on the ArgonBranch the operator creates for a reset's backup.
pub const LABEL_BACKUP_OF: &str = "argon.dev/backup-of";

const PENDING: &str = "Pending";
const READY_PHASE: &str = "Ready";
const FAILED: &str = "Failed";
const DELETING: &str = "Deleting";

pub async fn reconcile(branch: Arc<ArgonBranch>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = branch
        .namespace()
        .ok_or(Error::MissingField("ArgonBranch", "metadata.namespace"))?;
    let api: Api<ArgonBranch> = Api::namespaced(ctx.client.clone(), &namespace);
    let branch = with_finalizer(&api, branch).await?;
    finalizer(&api, FINALIZER, branch, |event| async {
        match event {
            Event::Apply(b) => apply(&b, &ctx, &api).await,
            Event::Cleanup(b) => cleanup(&b, &ctx, &api).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// The branch with the operator's finalizer, added here when missing (the
/// `finalizer` helper would add it and wait for the watch to bring the
/// branch back: a second reconcile per new branch). Optimistic: the patch
/// carries the resourceVersion read, so it is refused (409, retried) if
/// the branch changed meanwhile, never merged over another's finalizers.
async fn with_finalizer(api: &Api<ArgonBranch>, b: Arc<ArgonBranch>) -> Result<Arc<ArgonBranch>> {
    if b.metadata.deletion_timestamp.is_some() || b.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(b);
    }
    let mut finalizers = b.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": b.resource_version(),
        }
    });
    let patched = api
        .patch(
            &b.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(Arc::new(patched))
}

/// A reason the branch cannot be what its spec asks, shown in status; the
/// user (or a parent appearing) fixes it, so it is not an operator error.
struct Refusal {
    phase: &'static str,
    reason: &'static str,
    message: String,
    retry: Duration,
}

/// What of an ArgonBranch its reconcile depends on, hashed: everything
/// but its status, its finalizers and the bookkeeping that changes with
/// them. The branch controller's watch passes an event on only when this
/// changes, so the operator's own writes (the status; the finalizer, added
/// by the reconcile itself, and re-added by the next one if someone removes
/// it) do not wake the branch again. A deletion sets deletionTimestamp.
pub fn what_reconcile_reads(b: &ArgonBranch) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let m = &b.metadata;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.generation.hash(&mut h);
    m.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .hash(&mut h);
    m.labels.hash(&mut h);
    m.annotations.hash(&mut h);
    Some(h.finish())
}

fn key(b: &ArgonBranch) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

fn to_time(t: CommitTime) -> Option<Time> {
    Timestamp::from_millisecond(t.0).ok().map(Time)
}

/// A point from `seq` or `timestamp` (the CRD lets only one be set and
/// checks the timestamp's format; a parse failure is still answered).
fn read_point(seq: Option<i64>, timestamp: Option<&str>) -> std::result::Result<ReadPoint, String> {
    match (seq, timestamp) {
        (Some(s), _) => Ok(ReadPoint::Seq(Seq(s.max(0) as u64))),
        (None, Some(t)) => t
            .parse::<Timestamp>()
            .map(|t| ReadPoint::Time(CommitTime(t.as_millisecond())))
            .map_err(|e| format!("timestamp {t:?} is not RFC 3339: {e}")),
        (None, None) => Ok(ReadPoint::Head),
    }
}

/// When `expireAfter` runs out, if set (an unparsable value is refused by the CRD's CEL rule).
fn expiry(b: &ArgonBranch) -> Result<Option<Timestamp>> {
    let (Some(after), Some(created)) = (&b.spec.expire_after, b.creation_timestamp()) else {
        return Ok(None);
    };
    let d: kube::core::Duration = after
        .parse()
        .map_err(|e| Error::Config(format!("spec.expireAfter {after:?}: {e}")))?;
    let d = SignedDuration::try_from(std::time::Duration::from(d))
        .map_err(|e| Error::Config(format!("spec.expireAfter {after:?}: {e}")))?;
    Ok(created.0.checked_add(d).ok())
}

async fn apply(b: &ArgonBranch, ctx: &Context, api: &Api<ArgonBranch>) -> Result<Action> {
    let name = b.name_any();
    let namespace = b.namespace().unwrap_or_default();
    let generation = b.metadata.generation;
    let old = b.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;
    st.conditions.drop_condition(DELETION_BLOCKED);

    let expires = expiry(b)?;
    st.expires_at = expires.map(Time);
    if let Some(at) = expires
        && Timestamp::now() >= at
    {
        let note = format!(
            "expireAfter {} ran out",
            b.spec.expire_after.as_deref().unwrap_or_default()
        );
        ctx.event(b, false, "Expired", "Delete", note);
        api.delete(&name, &DeleteParams::default()).await?;
        return Ok(Action::await_change());
    }

    let Some(project) = ctx.project(&namespace, &b.spec.project).await? else {
        let refusal = Refusal {
            phase: PENDING,
            reason: "ProjectNotFound",
            message: format!(
                "ArgonProject {:?} not found in namespace {namespace}",
                b.spec.project
            ),
            retry: Duration::from_secs(10),
        };
        return refuse(b, ctx, api, &old, st, refusal).await;
    };
    let wal = match ctx.stores.wal(&project).await {
        Ok(wal) => wal,
        Err(e) => {
            st.phase = Some(PENDING.into());
            st.conditions.set(
                STORE_REACHABLE,
                false,
                "StoreUnreachable",
                &e.to_string(),
                generation,
            );
            st.conditions
                .set(READY, false, "StoreUnreachable", &e.to_string(), generation);
            write_status(b, ctx, api, &old, &st).await?;
            return Err(e);
        }
    };
    st.conditions.set(
        STORE_REACHABLE,
        true,
        "Connected",
        "the project's store answers",
        generation,
    );

    let recorded = old.branch_id.is_some();
    let (info, created) = match ensure_branch(wal.as_ref(), &b.spec, &name, recorded).await? {
        Ok(found) => found,
        Err(refusal) => return refuse(b, ctx, api, &old, st, refusal).await,
    };
    let fork_seq = info.fork_seq;
    let created_note = |ready: Option<&str>| {
        let created = match fork_seq {
            Some(seq) => format!("created from {} at seq {seq}", b.spec.parent),
            None => "adopted the project's root branch".into(),
        };
        match ready {
            Some(ready) => format!("{created}; {ready}"),
            None => created,
        }
    };
    // A branch without an endpoint is Ready in this pass unless the store
    // or the apiserver fails: one event says both. One with an endpoint has
    // more to do that may fail and retry, so it is told now.
    let one_event = created && !b.spec.endpoint.enabled;
    if created && !one_event {
        ctx.event(b, false, "Created", "CreateBranch", created_note(None));
    }

    // spec.protected is the WAL's flag for this branch, so every sidecar
    // refuses a reset or delete of it too. Before the reset step: a branch
    // just unprotected may be reset in the same pass. A branch this pass
    // created is unprotected already (the store's default), and setting
    // that again would wait for a catalog write of its own.
    if !created || b.spec.protected {
        wal.set_protected(&name, b.spec.protected).await?;
    }

    let mut info = info;
    if let Some(reset) = &b.spec.reset
        && old.last_reset.as_ref().map(|l| &l.spec) != Some(reset)
    {
        handle_reset(b, ctx, api, wal.as_ref(), reset, &mut st).await?;
        info = wal.branch(&name).await?;
    }

    // A branch created by this reconcile has no commits of its own: its
    // head is where it forked, and asking the store would be a round trip
    // per branch of a burst for nothing.
    let (head_seq, head_time) = if created && b.spec.reset.is_none() {
        (info.head_seq, info.head_time)
    } else {
        let log = wal.log_info(&name).await?;
        match log.last {
            Some(last) => (last.seq, last.time),
            None => (info.head_seq.max(log.start_seq), info.head_time),
        }
    };
    st.branch_id = Some(info.id.0 as i64);
    st.fork_seq = info.fork_seq.map(|s| s.0 as i64);
    st.head_seq = Some(head_seq.0 as i64);
    st.head_time = to_time(head_time);

    let tls_pending = reconcile_endpoint(b, &project, ctx, &old, &mut st).await?;

    st.phase = Some(READY_PHASE.into());
    let message = match info.fork_seq {
        Some(fork) => format!(
            "branch {} forked from {} at seq {fork}; head at seq {head_seq}",
            info.id, b.spec.parent
        ),
        None => format!("root branch {}; head at seq {head_seq}", info.id),
    };
    st.conditions
        .set(READY, true, "BranchReady", &message, generation);
    write_status(b, ctx, api, &old, &st).await?;
    if one_event {
        ctx.event(
            b,
            false,
            "Created",
            "CreateBranch",
            created_note(Some(&message)),
        );
    } else if old.phase.as_deref() != Some(READY_PHASE) {
        ctx.event(b, false, "Ready", "Reconcile", message);
    }
    let mut next = ctx.config.head_refresh;
    if tls_pending {
        // cert-manager issues asynchronously; nothing of it wakes the branch.
        next = next.min(TLS_PENDING_RETRY);
    }
    if let Some(at) = expires {
        let left = at.duration_since(Timestamp::now());
        if let Ok(left) = Duration::try_from(left) {
            next = next.min(left + Duration::from_millis(100));
        }
    }
    Ok(Action::requeue(next))
}

/// How soon a branch whose certificate cert-manager has not issued yet is
/// looked at again.
const TLS_PENDING_RETRY: Duration = Duration::from_secs(2);

/// The branch's endpoint as its spec asks, or none, with its conditions:
/// refused (nothing written, what existed removed) for a service type or
/// an image the installation does not allow; not applied without its
/// NetworkPolicy or, over TLS, its certificate. Returns whether the branch
/// should be looked at again soon (its certificate is pending).
async fn reconcile_endpoint(
    b: &ArgonBranch,
    project: &ArgonProject,
    ctx: &Context,
    old: &ArgonBranchStatus,
    st: &mut ArgonBranchStatus,
) -> Result<bool> {
    let name = b.name_any();
    let namespace = b.namespace().unwrap_or_default();
    let generation = b.metadata.generation;
    if b.spec.endpoint.enabled && project.spec.store.embedded.is_some() {
        owner_endpoint(b, project, ctx, old, st).await?;
        return Ok(false);
    }
    if b.spec.endpoint.enabled {
        let refused = endpoint::check_service_type(b, &ctx.config.exposure)
            .and_then(|()| ctx.config.image_policy().image_for(project).map(drop))
            .and_then(|()| sidecar_cache::for_project(project, &ctx.config.cache).map(drop));
        let reason = match &refused {
            Err(Error::ServiceTypeNotAllowed(_)) => Some("ServiceTypeNotAllowed"),
            Err(Error::ImageNotAllowed { .. }) => Some("ImageNotAllowed"),
            Err(Error::SidecarCache(_)) => Some("InvalidSidecarCache"),
            _ => None,
        };
        if let (Some(reason), Err(e)) = (reason, refused) {
            // Nothing exposed, nothing run: what an earlier spec made goes too.
            remove_endpoint(ctx, &namespace, &name).await?;
            st.endpoint = None;
            st.conditions.drop_condition(CONNECTION_SECRET);
            st.conditions.drop_condition(ENDPOINT_TLS);
            let message = match e {
                Error::ImageNotAllowed { .. } => format!(
                    "ArgonProject {:?} spec.sidecar.image: {e}; no endpoint runs it",
                    b.spec.project
                ),
                Error::SidecarCache(_) => format!(
                    "ArgonProject {:?}: {e}; no endpoint runs until it is fixed",
                    b.spec.project
                ),
                _ => format!("{e}; no endpoint is exposed"),
            };
            refuse_endpoint(b, ctx, old, st, reason, message).await;
            return Ok(false);
        }
    }
    // A TLS endpoint starts only with its certificate: never plain instead.
    let mut tls_pending = false;
    let tls = if b.spec.endpoint.enabled && b.spec.endpoint.tls {
        match endpoint_tls::ensure(&ctx.client, ctx.config.endpoint_tls.as_ref(), b).await {
            Ok(Issuance::Issued { ca_bundle, message }) => {
                st.conditions
                    .set(ENDPOINT_TLS, true, "Issued", &message, generation);
                Ok(Some(ca_bundle))
            }
            Ok(Issuance::Pending(message)) => {
                tls_pending = true;
                st.conditions
                    .set(ENDPOINT_TLS, false, "Pending", &message, generation);
                Err(message)
            }
            Err(e @ Error::Tls(_)) => {
                let message = e.to_string();
                st.conditions
                    .set(ENDPOINT_TLS, false, "NotIssued", &message, generation);
                Err(message)
            }
            Err(e) => return Err(e),
        }
    } else {
        if b.spec.endpoint.enabled && st.conditions.get_condition(ENDPOINT_TLS).is_some() {
            // TLS turned off: its key pair has no reader left.
            endpoint_tls::remove(&ctx.client, b).await?;
        }
        st.conditions.drop_condition(ENDPOINT_TLS);
        Ok(None)
    };
    if let (true, Err(e)) = (b.spec.endpoint.enabled, &tls) {
        st.conditions.set(
            ENDPOINT_READY,
            false,
            if tls_pending {
                "TlsPending"
            } else {
                "TlsNotIssued"
            },
            &format!("no endpoint without its certificate: {e}"),
            generation,
        );
    } else if b.spec.endpoint.enabled {
        // The policy first: pods never run unguarded (fail closed).
        if let Err(message) = write_network_policy(b, ctx, st).await? {
            refuse_endpoint(b, ctx, old, st, "NetworkPolicyNotWritten", message).await;
            return Ok(false);
        }
        let ca_bundle = tls.as_ref().ok().cloned().flatten();
        let available = provision_endpoint(b, project, ctx).await?;
        connection_secret(b, project, ctx, st, ca_bundle.as_deref()).await?;
        st.endpoint = Some(if ca_bundle.is_some() {
            endpoint::connection_string_with_tls(&name, &namespace)
        } else {
            endpoint::connection_string(&name, &namespace)
        });
        if available {
            st.conditions.set(
                ENDPOINT_READY,
                true,
                "Available",
                "the endpoint has available replicas",
                generation,
            );
        } else {
            st.conditions.set(
                ENDPOINT_READY,
                false,
                "Progressing",
                "waiting for the endpoint's pods",
                generation,
            );
        }
    } else {
        if endpoint_may_exist(ctx, old, &namespace, &name) {
            remove_endpoint(ctx, &namespace, &name).await?;
            remove_network_policy(ctx, &namespace, &name).await?;
        }
        st.endpoint = None;
        for condition in ENDPOINT_CONDITIONS {
            st.conditions.drop_condition(condition);
        }
    }

    Ok(tls_pending)
}

/// The conditions only a branch with an endpoint has.
const ENDPOINT_CONDITIONS: [&str; 4] = [
    ENDPOINT_READY,
    CONNECTION_SECRET,
    ENDPOINT_TLS,
    NETWORK_POLICY,
];

/// Whether a branch without an endpoint may still have endpoint objects to
/// remove: its status records one, or the Deployment is in the watch cache.
/// Asking the apiserver to delete five absent objects on every reconcile of
/// every branch without an endpoint was most of a burst's work. What a
/// crash left between writing the objects and recording them (the
/// NetworkPolicy, the TLS Secret; the Deployment is seen) is owned by the
/// branch and goes with it.
fn endpoint_may_exist(
    ctx: &Context,
    old: &ArgonBranchStatus,
    namespace: &str,
    branch: &str,
) -> bool {
    old.endpoint.is_some()
        || ENDPOINT_CONDITIONS
            .iter()
            .any(|c| old.conditions.get_condition(c).is_some())
        || ctx.deployment_seen(namespace, &endpoint::object_name(branch))
}

/// The endpoint of a branch of an embedded-store project: a Service
/// selecting the store's owner pod, the one process that opens the store
/// (no pod of its own, which would be a second opener). The owner serves
/// every branch with one configuration (no authentication, no TLS,
/// writable), so a spec asking more of this endpoint is refused by name.
async fn owner_endpoint(
    b: &ArgonBranch,
    project: &ArgonProject,
    ctx: &Context,
    old: &ArgonBranchStatus,
    st: &mut ArgonBranchStatus,
) -> Result<()> {
    let name = b.name_any();
    let namespace = b.namespace().unwrap_or_default();
    let generation = b.metadata.generation;
    let owner = store_owner::object_name(&b.spec.project);
    let e = &b.spec.endpoint;
    let asked: Vec<&str> = [
        (e.auth, "spec.endpoint.auth"),
        (e.tls, "spec.endpoint.tls"),
        (e.user.is_some(), "spec.endpoint.user"),
        (e.replicas != 1, "spec.endpoint.replicas"),
        (b.spec.read_only, "spec.readOnly"),
    ]
    .into_iter()
    .filter_map(|(set, field)| set.then_some(field))
    .collect();
    let refusal = if !asked.is_empty() {
        Some((
            "NotServedByOwner",
            format!(
                "ArgonProject {:?} keeps its WAL in an embedded store, served to every branch by its owner {owner} without authentication or TLS, writable, one replica: {} cannot be honoured; set auth: false and tls: false (and no user, replicas or readOnly), or use a project on a mongodb store",
                b.spec.project,
                asked.join(", ")
            ),
        ))
    } else {
        endpoint::check_service_type(b, &ctx.config.exposure)
            .err()
            .map(|e| {
                (
                    "ServiceTypeNotAllowed",
                    format!("{e}; no endpoint is exposed"),
                )
            })
    };
    if let Some((reason, message)) = refusal {
        remove_endpoint(ctx, &namespace, &name).await?;
        st.endpoint = None;
        st.conditions.drop_condition(CONNECTION_SECRET);
        st.conditions.drop_condition(ENDPOINT_TLS);
        refuse_endpoint(b, ctx, old, st, reason, message).await;
        return Ok(());
    }
    st.conditions.drop_condition(ENDPOINT_TLS);
    let object = endpoint::object_name(&name);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    // A Deployment an earlier version of the operator ran for this branch
    // opened the store too: it goes.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    match deployments
        .delete(&object, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    let service = endpoint::service(b, project, &ctx.config.exposure)?;
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch(&object, &params, &Patch::Apply(&service))
        .await?;
    connection_secret(b, project, ctx, st, None).await?;
    st.endpoint = Some(endpoint::connection_string(&name, &namespace));
    let available = deployments
        .get_opt(&owner)
        .await?
        .is_some_and(|d| endpoint::is_available(&d));
    if available {
        st.conditions.set(
            ENDPOINT_READY,
            true,
            "ServedByOwner",
            &format!("served by the store's owner {owner}, which serves main by default: this branch's databases are named db~{name}"),
            generation,
        );
    } else {
        st.conditions.set(
            ENDPOINT_READY,
            false,
            "OwnerNotReady",
            &format!("waiting for the store's owner {owner}"),
            generation,
        );
    }
    Ok(())
}

/// `EndpointReady` False for `reason`, with a Warning event when the
/// reason is new (not on every reconcile).
async fn refuse_endpoint(
    b: &ArgonBranch,
    ctx: &Context,
    old: &ArgonBranchStatus,
    st: &mut ArgonBranchStatus,
    reason: &str,
    message: String,
) {
    st.conditions.set(
        ENDPOINT_READY,
        false,
        reason,
        &message,
        b.metadata.generation,
    );
    let was = old
        .conditions
        .get_condition(ENDPOINT_READY)
        .map(|c| c.reason.as_str());
    if was != Some(reason) {
        ctx.event(b, true, reason, "Reconcile", message);
    }
}

/// Writes the endpoint's NetworkPolicy (or, with policies off, removes the
/// one the operator wrote) and sets the `NetworkPolicy` condition.
/// `Ok(Err(message))`: the apiserver refused it (RBAC, no such API).
async fn write_network_policy(
    b: &ArgonBranch,
    ctx: &Context,
    st: &mut ArgonBranchStatus,
) -> Result<std::result::Result<(), String>> {
    let generation = b.metadata.generation;
    let namespace = b.namespace().unwrap_or_default();
    let name = endpoint::object_name(&b.name_any());
    if !ctx.config.exposure.network_policy {
        remove_network_policy(ctx, &namespace, &b.name_any()).await?;
        st.conditions.drop_condition(NETWORK_POLICY);
        return Ok(Ok(()));
    }
    let policy = crate::network_policy::network_policy(b, &ctx.config.exposure)?;
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    match api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&policy),
        )
        .await
    {
        Ok(_) => {
            let who = match &ctx.config.exposure.client_label {
                Some((k, v)) => format!("pods of namespace {namespace} and pods labelled {k}={v}"),
                None => format!("pods of namespace {namespace} only"),
            };
            st.conditions.set(
                NETWORK_POLICY,
                true,
                "Written",
                &format!("NetworkPolicy {name} admits {who}"),
                generation,
            );
            Ok(Ok(()))
        }
        Err(kube::Error::Api(e)) => {
            let message = format!(
                "NetworkPolicy {name} cannot be written ({} {}: {}); the endpoint is not applied without it",
                e.code, e.reason, e.message
            );
            st.conditions
                .set(NETWORK_POLICY, false, "NotWritten", &message, generation);
            Ok(Err(message))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes the endpoint's NetworkPolicy (gone already: fine).
async fn remove_network_policy(ctx: &Context, namespace: &str, branch: &str) -> Result<()> {
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .delete(&endpoint::object_name(branch), &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the status if it changed, and keeps the phase metric current.
async fn write_status(
    b: &ArgonBranch,
    ctx: &Context,
    api: &Api<ArgonBranch>,
    old: &ArgonBranchStatus,
    st: &ArgonBranchStatus,
) -> Result<()> {
    if st != old {
        apply_status(api, b, st).await?;
    }
    ctx.metrics.set_phase(&key(b), st.phase.as_deref());
    Ok(())
}

async fn refuse(
    b: &ArgonBranch,
    ctx: &Context,
    api: &Api<ArgonBranch>,
    old: &ArgonBranchStatus,
    mut st: ArgonBranchStatus,
    refusal: Refusal,
) -> Result<Action> {
    st.phase = Some(refusal.phase.into());
    st.conditions.set(
        READY,
        false,
        refusal.reason,
        &refusal.message,
        b.metadata.generation,
    );
    write_status(b, ctx, api, old, &st).await?;
    let was = old
        .conditions
        .get_condition(READY)
        .map(|c| c.reason.as_str());
    if was != Some(refusal.reason) {
        ctx.event(b, true, refusal.reason, "Reconcile", refusal.message);
    }
    Ok(Action::requeue(refusal.retry))
}

/// The branch in the store: adopted when it exists (after a restart, or a
/// backup made by a reset), created otherwise. `Ok(Err(_))` is a spec the
/// store refuses. `recorded`: the status holds a branch id, so the branch
/// is expected in the store; without one (a new ArgonBranch) the creation
/// is tried first, which answers "exists" itself, and the lookup (a catalog
/// refresh per branch of a burst) is made only when the creation fails.
async fn ensure_branch(
    wal: &dyn ProjectStore,
    spec: &ArgonBranchSpec,
    name: &str,
    recorded: bool,
) -> Result<std::result::Result<(BranchInfo, bool), Refusal>> {
    if name == "main" {
        // The project's root: created with the project, adopted here for its endpoint.
        return Ok(Ok((wal.branch(name).await?, false)));
    }
    if recorded && let Some(found) = existing(wal, spec, name).await? {
        return Ok(found);
    }
    let at = match &spec.from {
        Some(from) => read_point(from.seq, from.timestamp.as_deref()),
        None => Ok(ReadPoint::Head),
    };
    let at = match at {
        Ok(at) => at,
        Err(message) => {
            return Ok(Err(Refusal {
                phase: FAILED,
                reason: "InvalidForkPoint",
                message: format!("spec.from: {message}"),
                retry: Duration::from_secs(300),
            }));
        }
    };
    let outcome = wal.create_branch(name, &spec.parent, at).await;
    if !recorded
        && outcome.is_err()
        && let Some(found) = existing(wal, spec, name).await?
    {
        // Created by an earlier pass whose status write was lost, or by
        // another handle: the fork point the spec names may no longer be
        // valid for a new branch, but this one exists.
        return Ok(found);
    }
    match outcome {
        Ok(info) => Ok(Ok((info, true))),
        // Another handle won the race: same outcome.
        Err(WalError::BranchExists { .. }) => Ok(adopt(wal.branch(name).await?, spec)),
        Err(WalError::UnknownBranch { name: missing }) => Ok(Err(Refusal {
            phase: PENDING,
            reason: "ParentNotFound",
            message: format!("parent branch {missing:?} does not exist in the project"),
            retry: Duration::from_secs(5),
        })),
        Err(e @ (WalError::PointBeyondHead { .. } | WalError::PointBeforeBranch { .. })) => {
            Ok(Err(Refusal {
                phase: FAILED,
                reason: "InvalidForkPoint",
                message: format!("spec.from: {e}"),
                retry: Duration::from_secs(60),
            }))
        }
        Err(e @ WalError::InvalidBranchName { .. }) => Ok(Err(Refusal {
            phase: FAILED,
            reason: "InvalidName",
            message: e.to_string(),
            retry: Duration::from_secs(300),
        })),
        Err(e) => Err(e.into()),
    }
}

/// The live branch `name` in the store, adopted (or refused) for `spec`;
/// `None` when there is none (never created, or deleted).
async fn existing(
    wal: &dyn ProjectStore,
    spec: &ArgonBranchSpec,
    name: &str,
) -> Result<Option<std::result::Result<(BranchInfo, bool), Refusal>>> {
    match wal.branch(name).await {
        Ok(info) if !info.deleted => Ok(Some(adopt(info, spec))),
        Ok(_) | Err(WalError::UnknownBranch { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn adopt(
    info: BranchInfo,
    spec: &ArgonBranchSpec,
) -> std::result::Result<(BranchInfo, bool), Refusal> {
    let parent = info.parent.as_ref().map(|p| p.as_str());
    if parent != Some(spec.parent.as_str()) {
        return Err(Refusal {
            phase: FAILED,
            reason: "BranchConflict",
            message: format!(
                "a branch {:?} already exists in the store with parent {}, not {:?}",
                info.name.as_str(),
                parent.unwrap_or("(none)"),
                spec.parent
            ),
            retry: Duration::from_secs(60),
        });
    }
    Ok((info, false))
}

fn preview_of(outcome: &ResetReport) -> ResetPreview {
    ResetPreview {
        from_seq: outcome.old_head.seq.0 as i64,
        to_seq: outcome.target.0 as i64,
        added: outcome.added as i64,
        removed: outcome.removed as i64,
        changed: outcome.changed as i64,
        collections: outcome
            .collections
            .iter()
            .map(|(ns, added, removed, changed)| format!("{ns}: +{added} -{removed} ~{changed}"))
            .collect(),
    }
}

/// The identity of one `spec.reset` of one ArgonBranch: its uid and a hash
/// of the reset spec. The same spec on the same object is the same request
/// (the status's `lastReset` already treats it so); a changed one is new.
fn reset_request_id(b: &ArgonBranch, reset: &ResetSpec) -> String {
    let spec = serde_json::to_vec(reset).unwrap_or_default();
    // FNV-1a: stable across processes and versions, which std's hasher is not.
    let hash = spec.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, byte| {
        (h ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!(
        "argonbranch/{}/{hash:016x}",
        b.metadata.uid.as_deref().unwrap_or_default()
    )
}

/// Runs `spec.reset` (a change of it not handled yet): a preview for
/// `dryRun`, else the reset with its optional backup branch.
async fn handle_reset(
    b: &ArgonBranch,
    ctx: &Context,
    api: &Api<ArgonBranch>,
    wal: &dyn ProjectStore,
    reset: &ResetSpec,
    st: &mut ArgonBranchStatus,
) -> Result<()> {
    let name = b.name_any();
    let generation = b.metadata.generation;
    let to = read_point(reset.seq, reset.timestamp.as_deref());
    let mut last = LastReset {
        spec: reset.clone(),
        generation: generation.unwrap_or_default(),
        outcome: "Refused".into(),
        target_seq: None,
        backup_branch: reset.backup_branch.clone(),
    };
    if b.spec.protected && !reset.dry_run {
        let msg = "the branch is protected: spec.reset is not applied (set protected: false first)"
            .to_string();
        st.conditions
            .set(RESET, false, "Protected", &msg, generation);
        st.last_reset = Some(last);
        ctx.event(b, true, "ResetRefused", "Reset", msg);
        return Ok(());
    }
    let to = match to {
        Ok(to) => to,
        Err(message) => {
            let msg = format!("spec.reset: {message}");
            st.conditions
                .set(RESET, false, "InvalidTarget", &msg, generation);
            st.last_reset = Some(last);
            ctx.event(b, true, "ResetRefused", "Reset", msg);
            return Ok(());
        }
    };
    let result = if reset.dry_run {
        wal.reset_branch(&name, to, true, None).await
    } else {
        // Exactly once: the request's identity goes into the WAL with the
        // reset, so a crash before the status below is written does not
        // reset the branch again (and lose what was written since).
        wal.reset_branch_once(
            &name,
            to,
            reset.backup_branch.as_deref(),
            &reset_request_id(b, reset),
        )
        .await
    };
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(WalError::BranchExists { name: backup })
            if Some(&backup) == reset.backup_branch.as_ref() =>
        {
            // Either a reset applied before a restart (the backup is this
            // branch's child) or a name already in use.
            let existing = wal.branch(&backup).await?;
            if existing.parent.as_ref().map(|p| p.as_str()) == Some(name.as_str()) {
                last.outcome = "Applied".into();
                st.conditions.set(
                    RESET,
                    true,
                    "Applied",
                    "reset already applied (its backup branch exists)",
                    generation,
                );
                st.last_reset = Some(last);
                ensure_backup_resource(b, ctx, api, &backup).await?;
                return Ok(());
            }
            let msg = format!("spec.reset.backupBranch {backup:?} already exists");
            st.conditions
                .set(RESET, false, "BackupExists", &msg, generation);
            st.last_reset = Some(last);
            ctx.event(b, true, "ResetRefused", "Reset", msg);
            return Ok(());
        }
        Err(e @ WalError::InvalidOp(_)) => {
            // A reset the store refuses as such (an invalid operation).
            let msg = format!("spec.reset: {e}");
            st.conditions.set(RESET, false, "Refused", &msg, generation);
            st.last_reset = Some(last);
            ctx.event(b, true, "ResetRefused", "Reset", msg);
            return Ok(());
        }
        Err(
            e @ (WalError::PointBeyondHead { .. }
            | WalError::PointBeforeBranch { .. }
            | WalError::Protected { .. }),
        ) => {
            let msg = format!("spec.reset: {e}");
            st.conditions
                .set(RESET, false, "InvalidTarget", &msg, generation);
            st.last_reset = Some(last);
            ctx.event(b, true, "ResetRefused", "Reset", msg);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let preview = preview_of(&outcome);
    last.target_seq = Some(outcome.target.0 as i64);
    let summary = format!(
        "seq {} -> {}: {} documents back, {} removed, {} changed",
        preview.from_seq, preview.to_seq, preview.added, preview.removed, preview.changed
    );
    st.reset_preview = Some(preview);
    if outcome.already_applied {
        last.outcome = "Applied".into();
        last.target_seq = None;
        st.reset_preview = None;
        if let Some(backup) = &reset.backup_branch {
            ensure_backup_resource(b, ctx, api, backup).await?;
        }
        st.conditions.set(
            RESET,
            true,
            "Applied",
            "reset already applied (recorded in the log with this spec.reset)",
            generation,
        );
    } else if outcome.applied {
        last.outcome = "Applied".into();
        let mut msg = format!("reset applied, {summary}");
        if let Some(backup) = &reset.backup_branch {
            msg.push_str(&format!("; the previous history is branch {backup}"));
            ensure_backup_resource(b, ctx, api, backup).await?;
        }
        st.conditions.set(RESET, true, "Applied", &msg, generation);
        ctx.event(b, false, "ResetApplied", "Reset", msg);
    } else {
        last.outcome = "Previewed".into();
        let msg = format!("dry run, {summary}");
        st.conditions
            .set(RESET, true, "Previewed", &msg, generation);
        ctx.event(b, false, "ResetPreviewed", "Reset", msg);
    }
    st.last_reset = Some(last);
    Ok(())
}

/// An ArgonBranch for a reset's backup branch, so it is visible and can be
/// deleted like any other (it is a child of the reset branch in the store).
async fn ensure_backup_resource(
    b: &ArgonBranch,
    ctx: &Context,
    api: &Api<ArgonBranch>,
    backup: &str,
) -> Result<()> {
    let _ = ctx;
    let object = ArgonBranch {
        metadata: ObjectMeta {
            name: Some(backup.to_string()),
            namespace: b.namespace(),
            labels: Some(BTreeMap::from([(
                LABEL_BACKUP_OF.to_string(),
                b.name_any(),
            )])),
            ..ObjectMeta::default()
        },
        spec: ArgonBranchSpec {
            project: b.spec.project.clone(),
            parent: b.name_any(),
            from: None,
            read_only: false,
            endpoint: EndpointSpec {
                enabled: false,
                ..EndpointSpec::default()
            },
            expire_after: None,
            reset: None,
            protected: false,
        },
        status: None,
    };
    api.patch(
        backup,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(&object),
    )
    .await?;
    Ok(())
}

/// Applies the endpoint's Deployment and Service; true when it has available pods.
async fn provision_endpoint(
    b: &ArgonBranch,
    project: &ArgonProject,
    ctx: &Context,
) -> Result<bool> {
    let namespace = b.namespace().unwrap_or_default();
    let name = endpoint::object_name(&b.name_any());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let deployment =
        endpoint::deployment(b, project, &ctx.config.image_policy(), &ctx.config.cache)?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let applied = deployments
        .patch(&name, &params, &Patch::Apply(&deployment))
        .await?;
    let service = endpoint::service(b, project, &ctx.config.exposure)?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    services
        .patch(&name, &params, &Patch::Apply(&service))
        .await?;
    Ok(endpoint::is_available(&applied))
}

/// Writes the endpoint's connection Secret (`connection`), with the login
/// of `spec.endpoint.user` when set; the `ConnectionSecret` condition says
/// which user it carries, or why it carries none (by name, never a value).
async fn connection_secret(
    b: &ArgonBranch,
    project: &ArgonProject,
    ctx: &Context,
    st: &mut ArgonBranchStatus,
    ca_bundle: Option<&str>,
) -> Result<()> {
    let namespace = b.namespace().unwrap_or_default();
    let generation = b.metadata.generation;
    let name = connection::secret_name(&b.name_any());
    let mut login = None;
    let mut problem = None;
    if let Some(wanted) = &b.spec.endpoint.user {
        match project.spec.users.iter().find(|u| &u.name == wanted) {
            None => {
                problem = Some((
                    "UnknownUser",
                    format!(
                        "spec.endpoint.user {wanted:?} is not in spec.users of ArgonProject {:?}",
                        b.spec.project
                    ),
                ));
            }
            Some(u) => {
                let secret = SecretKeyRef {
                    name: u.password_secret_ref.name.clone(),
                    key: u.password_secret_ref.key.clone(),
                };
                match ctx.stores.secret_value(&namespace, &secret).await {
                    Ok(password) => {
                        login = Some(connection::Login {
                            username: u.name.clone(),
                            password,
                            auth_source: u.db.clone(),
                        });
                    }
                    Err(e @ Error::Secret { .. }) => {
                        problem = Some((
                            "SecretNotReady",
                            format!("user {:?}: passwordSecretRef: {e}", u.name),
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let secret = connection::secret(b, login.as_ref(), ca_bundle)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    secrets
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await?;
    match (problem, &login) {
        (Some((reason, message)), _) => {
            st.conditions.set(
                CONNECTION_SECRET,
                false,
                reason,
                &format!("Secret {name} has the address only: {message}"),
                generation,
            );
        }
        (None, Some(l)) => st.conditions.set(
            CONNECTION_SECRET,
            true,
            "Written",
            &format!(
                "Secret {name} carries user {}@{}",
                l.username, l.auth_source
            ),
            generation,
        ),
        (None, None) => st.conditions.set(
            CONNECTION_SECRET,
            true,
            "Written",
            &format!("Secret {name} has the address only (no spec.endpoint.user)"),
            generation,
        ),
    }
    Ok(())
}

/// Deletes the endpoint objects explicitly (ownerReferences would too, but
/// only where a garbage collector runs).
async fn remove_endpoint(ctx: &Context, namespace: &str, branch: &str) -> Result<()> {
    let name = endpoint::object_name(branch);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams::background();
    // cert-manager's Certificate first, or it writes the Secret again.
    endpoint_tls::remove_certificate(&ctx.client, namespace, branch).await?;
    for result in [
        deployments.delete(&name, &params).await.map(|_| ()),
        services.delete(&name, &params).await.map(|_| ()),
        secrets
            .delete(&connection::secret_name(branch), &params)
            .await
            .map(|_| ()),
        secrets
            .delete(&endpoint::tls_secret_name(branch), &params)
            .await
            .map(|_| ()),
    ] {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

async fn block(
    b: &ArgonBranch,
    ctx: &Context,
    api: &Api<ArgonBranch>,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let old = b.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.phase = Some(DELETING.into());
    st.conditions.set(
        DELETION_BLOCKED,
        true,
        reason,
        &message,
        b.metadata.generation,
    );
    write_status(b, ctx, api, &old, &st).await?;
    let was = old
        .conditions
        .get_condition(DELETION_BLOCKED)
        .map(|c| c.message.as_str());
    if was != Some(message.as_str()) {
        ctx.event(b, true, "DeletionBlocked", "Delete", message.clone());
    }
    Err(Error::DeletionBlocked {
        name: b.name_any(),
        reason: message,
    })
}

async fn cleanup(b: &ArgonBranch, ctx: &Context, api: &Api<ArgonBranch>) -> Result<Action> {
    let name = b.name_any();
    let namespace = b.namespace().unwrap_or_default();
    if b.spec.protected {
        return block(
            b,
            ctx,
            api,
            "Protected",
            "the branch is protected: set spec.protected to false to delete it".into(),
        )
        .await;
    }
    let projects: Api<ArgonProject> = Api::namespaced(ctx.client.clone(), &namespace);
    match projects.get_opt(&b.spec.project).await? {
        None => {
            let note = format!(
                "ArgonProject {:?} is gone; the store was not touched",
                b.spec.project
            );
            ctx.event(b, true, "ProjectGone", "Delete", note);
        }
        Some(project) if name != "main" && ctx.stores.owner_gone(&project).await? => {
            let note = format!(
                "ArgonProject {:?} is being deleted and its embedded store's owner pod is gone; the store was not touched (the data stays on its claim)",
                b.spec.project
            );
            ctx.event(b, true, "StoreGone", "Delete", note);
        }
        Some(project) if name != "main" => {
            let wal = ctx.stores.wal(&project).await?;
            // The spec says unprotected (checked above); the WAL's flag may
            // still say protected if no reconcile ran since the change.
            match wal.set_protected(&name, false).await {
                Ok(()) | Err(WalError::UnknownBranch { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match wal.delete_branch(&name, false).await {
                Ok(()) | Err(WalError::UnknownBranch { .. }) => {}
                Err(WalError::HasChildren { children, .. }) => {
                    let msg =
                        format!("the branch has child branches ({children}); delete them first");
                    return block(b, ctx, api, "HasChildren", msg).await;
                }
                Err(e) => return Err(e.into()),
            }
            ctx.event(
                b,
                false,
                "Deleted",
                "Delete",
                "deleted in the store; its commits stay in the log".into(),
            );
        }
        Some(_) => {}
    }
    remove_endpoint(ctx, &namespace, &name).await?;
    // Last, after the pods it guards were told to go (the owner reference
    // removes it too, where a garbage collector runs).
    remove_network_policy(ctx, &namespace, &name).await?;
    ctx.metrics.set_phase(&key(b), None);
    Ok(Action::await_change())
}
