//! The ArgonProject controller: opens the project's WAL (creating the
//! project and `main` in the store), reports reachability and counts, and
//! on deletion follows `deletionPolicy` through the finalizer.

use super::{Context, apply_status};
use crate::crd::condition::types::{IMPORTED, READY, STORE_REACHABLE};
use crate::crd::{ArgonBranch, ArgonProject, Conditions, DeletionPolicy, FINALIZER};
use crate::error::{Error, Result};
use crate::stores;
use argon_wal::WalError;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use std::sync::Arc;

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

fn store_reason(e: &Error) -> &'static str {
    match e {
        Error::Secret { .. } => "SecretNotReady",
        Error::StoreConfig { .. } => "InvalidStore",
        _ => "StoreUnreachable",
    }
}

async fn apply(p: &ArgonProject, ctx: &Context, api: &Api<ArgonProject>) -> Result<Action> {
    let generation = p.metadata.generation;
    let old = p.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;
    st.store = Some(stores::describe(&p.spec.store));

    let wal = match ctx.stores.wal(p).await {
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
                ctx.event(p, true, reason, "Connect", e.to_string()).await;
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
    if p.spec.import.is_some() {
        st.conditions.set(
            IMPORTED,
            false,
            "NotSupported",
            "importing an existing database is not implemented by this operator version; main starts empty",
            generation,
        );
    } else {
        st.conditions.drop_condition(IMPORTED);
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
        ctx.event(p, false, "Ready", "Connect", note).await;
    }
    Ok(Action::requeue(ctx.config.head_refresh))
}

async fn cleanup(p: &ArgonProject, ctx: &Context, api: &Api<ArgonProject>) -> Result<Action> {
    let namespace = p.namespace().unwrap_or_default();
    let name = p.name_any();
    if p.spec.deletion_policy == DeletionPolicy::Delete {
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
            ctx.event(p, true, "DeletionBlocked", "Delete", reason.clone())
                .await;
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
        ctx.event(p, false, "Deleted", "Delete", note).await;
    } else {
        let note = format!(
            "deletionPolicy Retain: the WAL stays in {}",
            stores::describe(&p.spec.store)
        );
        ctx.event(p, false, "Retained", "Delete", note).await;
    }
    ctx.stores.forget(&namespace, &name).await;
    Ok(Action::await_change())
}
