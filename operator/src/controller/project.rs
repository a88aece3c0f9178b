//! The ArgonProject controller: opens the project's WAL (creating the
//! project and `main` in the store), runs `spec.import` into `main` once,
//! reports reachability and counts, and on deletion follows
//! `deletionPolicy` through the finalizer.

use super::{Context, apply_status, import_backoff};
use crate::crd::FIELD_MANAGER;
use crate::crd::condition::types::{
    IMPORTED, READY, SIDECAR_CACHE, SIDECAR_IMAGE, STORE_REACHABLE, USERS_READY,
};
use crate::crd::{
    ArgonBranch, ArgonProject, ArgonProjectStatus, Conditions, DeletionPolicy, FINALIZER,
    ImportPhase, ImportSpec, ImportStatus,
};
use crate::error::{Error, Result};
use crate::import::{self, ImportError};
use crate::project_store::ProjectStore;
use crate::sidecar_cache;
use crate::store_owner;
use crate::stores;
use crate::users;
use argon_wal::WalError;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

pub const CONTROLLER: &str = "project";

pub async fn reconcile(project: Arc<ArgonProject>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let namespace = project
        .namespace()
        .ok_or(Error::MissingField("ArgonProject", "metadata.namespace"))?;
    let api: Api<ArgonProject> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, project, |event| async {
        match event {
            Event::Apply(p) => apply(&p, &ctx, &api).await,
            Event::Cleanup(p) => cleanup(&p, &ctx, &api).await,
        }
    })
    .await
    .map_err(Error::from)
}

/// The `SidecarCache` condition: what cache the project's sidecars get, or
/// why it is unusable, or a memory limit that would get a sidecar
/// OOM-killed by its own cache budget (with an event when it turns False).
async fn cache_step(
    p: &ArgonProject,
    ctx: &Context,
    old: &ArgonProjectStatus,
    st: &mut ArgonProjectStatus,
) {
    let generation = p.metadata.generation;
    let resources = p.spec.sidecar.as_ref().and_then(|s| s.resources.as_ref());
    let (ok, reason, message) = match sidecar_cache::for_project(p, &ctx.config.cache) {
        Ok(None) => (
            true,
            "Disabled",
            "endpoints and injected sidecars keep no cache: past points are replayed from the log"
                .to_string(),
        ),
        Ok(Some(cache)) => match cache.memory_limit_shortfall(resources) {
            None => (true, "Enabled", cache.describe()),
            Some(shortfall) => (false, "MemoryLimitTooLow", shortfall),
        },
        Err(e) => (
            false,
            "InvalidSidecarCache",
            format!("{e}; no endpoint runs and injected sidecars get no cache until it is fixed"),
        ),
    };
    let was = old
        .conditions
        .get_condition(SIDECAR_CACHE)
        .map(|c| (c.status.clone(), c.reason.clone()));
    st.conditions
        .set(SIDECAR_CACHE, ok, reason, &message, generation);
    if !ok && was != Some(("False".to_string(), reason.to_string())) {
        ctx.event(p, true, reason, "Reconcile", message);
    }
}

fn store_reason(e: &Error) -> &'static str {
    match e {
        Error::Secret { .. } => "SecretNotReady",
        Error::StoreConfig { .. } => "InvalidStore",
        Error::OwnerNotReady { .. } => "OwnerNotReady",
        Error::ImageNotAllowed { .. } | Error::SidecarCache(_) => "OwnerNotRun",
        _ => "StoreUnreachable",
    }
}

/// How soon a project whose store owner is not available is looked at
/// again (nothing of the Deployment wakes the project).
const OWNER_PENDING_RETRY: Duration = Duration::from_secs(5);

/// Applies the owner Deployment and Service of an embedded store in a
/// cluster (`store_owner`); nothing for a mongodb store or an operator
/// that opens embedded stores itself (`--embedded-root`).
async fn apply_owner(p: &ArgonProject, ctx: &Context) -> Result<()> {
    if ctx.config.embedded_root.is_some() {
        return Ok(());
    }
    let (Some(deployment), Some(service)) = (
        store_owner::deployment(p, &ctx.config.image_policy(), &ctx.config.cache)?,
        store_owner::service(p)?,
    ) else {
        return Ok(());
    };
    let namespace = p.namespace().unwrap_or_default();
    let name = store_owner::object_name(&p.name_any());
    ensure_owner_key(p, &namespace, ctx).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<Deployment>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&deployment))
        .await?;
    Api::<Service>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&service))
        .await?;
    // Its admin commands need the key, its data commands nothing (the
    // project chose no authentication), so reachable only by whom the
    // policy admits; written whatever the chart says of endpoint policies.
    let policy = crate::network_policy::owner(p, ctx.config.own_namespace())?;
    Api::<NetworkPolicy>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&policy))
        .await?;
    Ok(())
}

/// Creates the owner's key Secret unless it exists: once, never rewritten
/// (a new key would shut the operator out of the running owner), so its
/// data is never even read here.
async fn ensure_owner_key(p: &ArgonProject, namespace: &str, ctx: &Context) -> Result<()> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let name = store_owner::key_secret_name(&p.name_any());
    if secrets.get_metadata_opt(&name).await?.is_some() {
        return Ok(());
    }
    let Some(secret) = store_owner::key_secret(p)? else {
        return Ok(());
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(()),
        // Another replica (or a reconcile racing this one) created it.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The project's store, answering: the owner applied first where there is
/// one, then one call (`log_info` of main), so an unreachable store is a
/// condition here rather than a failure halfway through the reconcile.
async fn open_store(p: &ArgonProject, ctx: &Context) -> Result<stores::OpenStore> {
    apply_owner(p, ctx).await?;
    let wal = ctx.stores.wal(p).await?;
    wal.log_info("main").await?;
    Ok(wal)
}

async fn apply(p: &ArgonProject, ctx: &Context, api: &Api<ArgonProject>) -> Result<Action> {
    let generation = p.metadata.generation;
    let old = p.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;
    st.store = Some(stores::describe(&p.spec.store));
    // The image rule, shown where the image is chosen; the branch
    // controller and the webhook enforce it where sidecars are made.
    match ctx.config.image_policy().image_for(p) {
        Ok(image) => st.conditions.set(
            SIDECAR_IMAGE,
            true,
            "Allowed",
            &format!("endpoints and injected sidecars run {image}"),
            generation,
        ),
        Err(e) => {
            let message = format!("spec.sidecar.image: {e}; no endpoint or sidecar runs it");
            let was = old
                .conditions
                .get_condition(SIDECAR_IMAGE)
                .map(|c| c.status.as_str());
            st.conditions.set(
                SIDECAR_IMAGE,
                false,
                "ImageNotAllowed",
                &message,
                generation,
            );
            if was != Some("False") {
                ctx.event(p, true, "ImageNotAllowed", "Reconcile", message);
            }
        }
    }

    cache_step(p, ctx, &old, &mut st).await;

    let wal = match open_store(p, ctx).await {
        Ok(wal) => wal,
        Err(e) => {
            let reason = store_reason(&e);
            st.phase = Some("Pending".into());
            st.conditions
                .set(STORE_REACHABLE, false, reason, &e.to_string(), generation);
            st.conditions
                .set(READY, false, reason, &e.to_string(), generation);
            if st != old {
                apply_status(api, p, &st).await?;
            }
            let was = old.conditions.get_condition(STORE_REACHABLE);
            if was.map(|c| c.reason.as_str()) != Some(reason) {
                ctx.event(p, true, reason, "Connect", e.to_string());
            }
            if matches!(e, Error::OwnerNotReady { .. }) {
                // Waiting, not failing: the owner's pod is starting.
                return Ok(Action::requeue(OWNER_PENDING_RETRY));
            }
            return Err(e);
        }
    };
    st.conditions.set(
        STORE_REACHABLE,
        true,
        "Connected",
        &format!(
            "project {} is open in {}",
            p.name_any(),
            stores::describe(&p.spec.store)
        ),
        generation,
    );
    users_step(p, ctx, wal.as_ref(), &mut st).await?;
    let backoff = match import_step(p, ctx, api, wal.as_ref(), &mut st).await {
        Ok(backoff) => backoff,
        Err(e) => {
            // A failed import says so in status; other errors (the store,
            // the API) leave it for the next reconcile.
            if matches!(e, Error::Import { .. }) && st != old {
                apply_status(api, p, &st).await?;
            }
            return Err(e);
        }
    };
    let branches = wal.list_branches().await?;
    let live = branches.iter().filter(|b| !b.deleted).count();
    let main = wal.log_info("main").await?;
    let main_info = branches.iter().find(|b| b.name.as_str() == "main");
    let (head_seq, head_time) = match (main.last, main_info) {
        (Some(last), _) => (last.seq, last.time),
        (None, Some(info)) => (info.head_seq, info.head_time),
        (None, None) => (main.start_seq, argon_wal::CommitTime(0)),
    };
    st.branches = Some(live as i64);
    st.main_head_seq = Some(head_seq.0 as i64);
    st.main_head_time = Timestamp::from_millisecond(head_time.0).ok().map(Time);
    if let Some(wait) = backoff {
        // Ready and the phase stay as the failed attempt left them.
        if st != old {
            apply_status(api, p, &st).await?;
        }
        return Ok(Action::requeue(wait.min(ctx.config.head_refresh)));
    }
    st.conditions.set(
        READY,
        true,
        "Ready",
        &format!("{live} live branches"),
        generation,
    );
    st.phase = Some("Ready".into());
    if st != old {
        apply_status(api, p, &st).await?;
    }
    if old.phase.as_deref() != Some("Ready") {
        let note = format!(
            "store {} reachable; main at seq {head_seq}",
            stores::describe(&p.spec.store)
        );
        ctx.event(p, false, "Ready", "Connect", note);
    }
    Ok(Action::requeue(ctx.config.head_refresh))
}

async fn cleanup(p: &ArgonProject, ctx: &Context, api: &Api<ArgonProject>) -> Result<Action> {
    let namespace = p.namespace().unwrap_or_default();
    let name = p.name_any();
    if p.spec.deletion_policy == DeletionPolicy::Delete && ctx.stores.owner_gone(p).await? {
        let note = format!(
            "deletionPolicy Delete: the embedded store's owner pod is gone (its namespace is being deleted?); the store was not touched, the data stays on claim {:?}",
            p.spec
                .store
                .embedded
                .as_ref()
                .map(|e| e.claim_name.as_str())
                .unwrap_or_default()
        );
        ctx.event(p, true, "StoreGone", "Delete", note);
    } else if p.spec.deletion_policy == DeletionPolicy::Delete {
        // Branches first: each one's own finalizer removes its endpoint.
        let branches: Api<ArgonBranch> = Api::namespaced(ctx.client.clone(), &namespace);
        let remaining: Vec<String> = branches
            .list(&ListParams::default())
            .await?
            .into_iter()
            .filter(|b| b.spec.project == name)
            .map(|b| b.name_any())
            .collect();
        if !remaining.is_empty() {
            let reason = format!(
                "deletionPolicy Delete: ArgonBranches of this project still exist ({})",
                remaining.join(", ")
            );
            let mut st = p.status.clone().unwrap_or_default();
            st.phase = Some("Deleting".into());
            st.conditions.set(
                crate::crd::condition::types::DELETION_BLOCKED,
                true,
                "BranchesExist",
                &reason,
                p.metadata.generation,
            );
            apply_status(api, p, &st).await?;
            ctx.event(p, true, "DeletionBlocked", "Delete", reason.clone());
            return Err(Error::DeletionBlocked { name, reason });
        }
        let wal = ctx.stores.wal(p).await?;
        // Deepest first, so no branch is deleted while a child is live.
        let mut live: Vec<_> = wal
            .list_branches()
            .await?
            .into_iter()
            .filter(|b| !b.deleted && b.name.as_str() != "main")
            .collect();
        live.sort_by_key(|b| std::cmp::Reverse(b.lineage.len()));
        for b in &live {
            match wal.delete_branch(b.name.as_str(), true).await {
                Ok(()) | Err(WalError::UnknownBranch { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let note = format!(
            "deletionPolicy Delete: deleted {} branches in the store (their commits stay in the log; main is the root)",
            live.len()
        );
        ctx.event(p, false, "Deleted", "Delete", note);
    } else {
        let note = format!(
            "deletionPolicy Retain: the WAL stays in {}",
            stores::describe(&p.spec.store)
        );
        ctx.event(p, false, "Retained", "Delete", note);
    }
    ctx.stores.forget(p).await?;
    Ok(Action::await_change())
}

// ---- spec.users ------------------------------------------------------------------

/// Brings the store's users in line with `spec.users` and says so in
/// `UsersReady` (names and reasons only: never a password).
async fn users_step(
    p: &ArgonProject,
    ctx: &Context,
    wal: &dyn ProjectStore,
    st: &mut ArgonProjectStatus,
) -> Result<()> {
    let generation = p.metadata.generation;
    let outcome = users::sync(p, &ctx.stores, wal).await?;
    for id in &outcome.written {
        tracing::info!(project = %p.name_any(), user = %id, "user written");
        let note = format!("user {id} written (new, or its password or roles changed)");
        ctx.event(p, false, "UserWritten", "Users", note);
    }
    for id in &outcome.dropped {
        tracing::info!(project = %p.name_any(), user = %id, "user dropped");
        let note = format!("user {id} dropped: it is no longer in spec.users");
        ctx.event(p, false, "UserDropped", "Users", note);
    }
    if p.spec.users.is_empty() {
        st.users = None;
        st.conditions.drop_condition(USERS_READY);
        return Ok(());
    }
    st.users = Some(outcome.in_sync as i64);
    match outcome.problems.first() {
        None => st.conditions.set(
            USERS_READY,
            true,
            "Synced",
            &format!("{} users in the store as spec.users says", outcome.in_sync),
            generation,
        ),
        Some(first) => {
            let message = outcome
                .problems
                .iter()
                .map(|pr| pr.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            let was = st
                .conditions
                .get_condition(USERS_READY)
                .map(|c| c.message.clone());
            st.conditions
                .set(USERS_READY, false, first.reason, &message, generation);
            if was.as_deref() != Some(message.as_str()) {
                ctx.event(p, true, first.reason, "Users", message);
            }
        }
    }
    Ok(())
}

// ---- spec.import ----------------------------------------------------------------

const IMPORTING: &str = "Importing";
/// The reason of a spec refused because the store is reached through its
/// owner pod (`project_store::remote`), where it is not built.
const NOT_BUILT_FOR_OWNER: &str = "NotBuiltForOwner";
const IMPORT_FAILED: &str = "ImportFailed";

fn now() -> Time {
    Time(Timestamp::now())
}

fn plural(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn counts(imp: &ImportStatus) -> String {
    format!(
        "{}, {}, {} and {}",
        plural(imp.databases, "database", "databases"),
        plural(imp.collections, "collection", "collections"),
        plural(imp.indexes, "secondary index", "secondary indexes"),
        plural(imp.documents, "document", "documents"),
    )
}

fn completed_message(imp: &ImportStatus) -> String {
    let at = imp
        .main_seq
        .map(|s| format!(" (main at seq {s})"))
        .unwrap_or_default();
    format!(
        "imported {}{at}; a one-time seed: later changes of spec.import are not applied",
        counts(imp)
    )
}

/// The conditions and phase of a failed attempt (the same on every
/// reconcile until the next attempt, so waiting writes nothing).
fn set_failed(st: &mut ArgonProjectStatus, imp: &ImportStatus, generation: Option<i64>) {
    let message = format!(
        "attempt {}: {}",
        imp.attempts,
        imp.message.as_deref().unwrap_or("failed")
    );
    st.conditions
        .set(IMPORTED, false, IMPORT_FAILED, &message, generation);
    st.conditions
        .set(READY, false, IMPORT_FAILED, &message, generation);
    st.phase = Some("Failed".into());
}

/// How long until the failed attempt `imp` may be retried; `None` when now
/// (its backoff ran out, or the spec changed since).
fn retry_wait(imp: &ImportStatus, generation: Option<i64>) -> Option<Duration> {
    if imp.phase != ImportPhase::Failed || imp.generation != generation {
        return None;
    }
    let failed = imp.failed_at.as_ref()?;
    let attempt = u32::try_from(imp.attempts).unwrap_or(u32::MAX);
    let due = failed
        .0
        .checked_add(SignedDuration::try_from(import_backoff(attempt)).ok()?)
        .ok()?;
    Duration::try_from(due.duration_since(Timestamp::now()))
        .ok()
        .filter(|d| !d.is_zero())
}

/// Brings `st` in line with `spec.import`: runs the import unless it
/// completed once. `Err(Error::Import)` after a failed attempt, with `st`
/// saying why (the error policy requeues it after its backoff);
/// `Ok(Some(wait))` while a failed attempt's backoff runs: every status
/// write wakes the controller, so the backoff is kept here, not only by the
/// requeue.
async fn import_step(
    p: &ArgonProject,
    ctx: &Context,
    api: &Api<ArgonProject>,
    wal: &dyn ProjectStore,
    st: &mut ArgonProjectStatus,
) -> Result<Option<Duration>> {
    let generation = p.metadata.generation;
    let mut previous = st.import.clone();
    if p.spec.import.is_some() && previous.as_ref().map(|i| i.phase) != Some(ImportPhase::Completed)
    {
        // The reconcile's object comes from the watch cache, which can lag
        // behind this controller's own last status write (the end of an
        // import): ask the API server before copying anything again.
        let fresh = api.get_status(&p.name_any()).await?;
        previous = fresh.status.and_then(|s| s.import);
        st.import = previous.clone();
    }
    let spec = match (&p.spec.import, previous.as_ref()) {
        (_, Some(imp)) if imp.phase == ImportPhase::Completed => {
            st.conditions.set(
                IMPORTED,
                true,
                "Completed",
                &completed_message(imp),
                generation,
            );
            return Ok(None);
        }
        (Some(spec), _) => spec,
        (None, Some(imp)) => {
            let message = format!(
                "spec.import was removed before an import completed; main keeps what the last attempt copied ({})",
                counts(imp)
            );
            st.conditions
                .set(IMPORTED, false, "Abandoned", &message, generation);
            return Ok(None);
        }
        (None, None) => {
            st.conditions.drop_condition(IMPORTED);
            return Ok(None);
        }
    };
    let Some(wal) = wal.wal() else {
        // Through an owner pod: the import commits physical document
        // operations into the log, which no admin command carries.
        let message = format!(
            "spec.import is not built for an embedded store served by its owner pod ({}): nothing is copied; import into a project on a mongodb store, or remove spec.import",
            store_owner::object_name(&p.name_any())
        );
        st.conditions
            .set(IMPORTED, false, NOT_BUILT_FOR_OWNER, &message, generation);
        st.conditions
            .set(READY, false, NOT_BUILT_FOR_OWNER, &message, generation);
        st.phase = Some("Failed".into());
        return Ok(Some(Duration::from_secs(300)));
    };
    if let Some(imp) = &previous
        && let Some(wait) = retry_wait(imp, generation)
    {
        set_failed(st, imp, generation);
        return Ok(Some(wait));
    }
    if previous.is_none() {
        // No record of an import, yet main has commits: most likely the
        // ArgonProject was recreated over a retained store. Copying again
        // would overwrite what was written since, so it is refused.
        if let Some(last) = wal.log_info("main").await?.last {
            let message = format!(
                "main already has commits (head at seq {}) and this ArgonProject has no record of an import: spec.import only seeds an empty main; remove it",
                last.seq
            );
            let was = st
                .conditions
                .get_condition(IMPORTED)
                .map(|c| c.reason.clone());
            st.conditions
                .set(IMPORTED, false, "MainNotEmpty", &message, generation);
            if was.as_deref() != Some("MainNotEmpty") {
                ctx.event(p, true, "MainNotEmpty", "Import", message);
            }
            return Ok(None);
        }
    }

    let attempt = previous.as_ref().map_or(0, |i| i.attempts).max(0) + 1;
    let mut imp = ImportStatus {
        phase: ImportPhase::Running,
        attempts: attempt,
        databases: 0,
        collections: 0,
        indexes: 0,
        documents: 0,
        current: None,
        started_at: previous.and_then(|i| i.started_at).or_else(|| Some(now())),
        completed_at: None,
        generation,
        failed_at: None,
        main_seq: None,
        message: None,
    };
    st.phase = Some(IMPORTING.into());
    st.conditions.set(
        READY,
        false,
        IMPORTING,
        "copying spec.import into main",
        generation,
    );
    report(api, p, st, &imp, "connecting to the source").await;
    if attempt == 1 {
        let note = format!("importing {:?} into main", spec.databases);
        ctx.event(p, false, "Importing", "Import", note);
    }
    match copy(p, ctx, api, wal, spec, st, &mut imp).await {
        Ok(()) => {
            imp.phase = ImportPhase::Completed;
            imp.current = None;
            imp.completed_at = Some(now());
            imp.main_seq = wal.log_info("main").await?.last.map(|l| l.seq.0 as i64);
            let message = completed_message(&imp);
            imp.message = Some(format!("imported {}", counts(&imp)));
            st.conditions
                .set(IMPORTED, true, "Completed", &message, generation);
            st.import = Some(imp);
            ctx.event(p, false, "Imported", "Import", message);
            Ok(None)
        }
        Err(e) => {
            let reason = e.to_string();
            imp.phase = ImportPhase::Failed;
            imp.failed_at = Some(now());
            imp.message = Some(reason.clone());
            set_failed(st, &imp, generation);
            st.import = Some(imp);
            let message = format!("attempt {attempt}: {reason}");
            ctx.event(p, true, IMPORT_FAILED, "Import", message);
            Err(Error::Import {
                project: p.name_any(),
                reason,
                attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
            })
        }
    }
}

/// Progress goes to status at each collection and every this many commits of documents.
const REPORT_EVERY: u64 = 10;

/// One attempt: the Secret, the source's collections, then each collection
/// (options and indexes first, then its documents in batches).
async fn copy(
    p: &ArgonProject,
    ctx: &Context,
    api: &Api<ArgonProject>,
    wal: &argon_wal::Wal,
    spec: &ImportSpec,
    st: &mut ArgonProjectStatus,
    imp: &mut ImportStatus,
) -> std::result::Result<(), ImportError> {
    let namespace = p.namespace().unwrap_or_default();
    let uri = ctx
        .stores
        .secret_value(&namespace, &spec.secret_ref)
        .await
        .map_err(|e| ImportError::Invalid(format!("spec.import.secretRef: {e}")))?;
    let client = import::connect(&stores::with_selection_timeout(uri.trim())).await?;
    let plan = import::plan(&client, spec).await?;
    let total = plan.len();
    for (i, c) in plan.iter().enumerate() {
        imp.current = Some(c.ns.to_string());
        let step = format!("copying {} (collection {} of {total})", c.ns, i + 1);
        report(api, p, st, imp, &step).await;
        imp.indexes += import::create_collection(&client, wal, c).await? as i64;
        let mut cursor = import::documents(&client, c).await?;
        let mut batches = 0u64;
        loop {
            let n = import::copy_batch(&mut cursor, wal, &c.ns).await?;
            if n == 0 {
                break;
            }
            imp.documents += n as i64;
            batches += 1;
            if batches.is_multiple_of(REPORT_EVERY) {
                report(api, p, st, imp, &step).await;
            }
        }
        imp.collections += 1;
        if plan.get(i + 1).is_none_or(|next| next.ns.db != c.ns.db) {
            imp.databases += 1;
        }
    }
    Ok(())
}

/// Writes the import's progress. Best effort: a lost progress write only
/// delays what status shows; the outcome is written by the reconcile.
async fn report(
    api: &Api<ArgonProject>,
    p: &ArgonProject,
    st: &mut ArgonProjectStatus,
    imp: &ImportStatus,
    step: &str,
) {
    let message = format!("{step}; copied so far: {}", counts(imp));
    st.conditions
        .set(IMPORTED, false, IMPORTING, &message, p.metadata.generation);
    st.import = Some(imp.clone());
    if let Err(e) = apply_status(api, p, st).await {
        tracing::warn!(project = %p.name_any(), error = %e, "writing import progress");
    }
}
