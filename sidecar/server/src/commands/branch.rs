//! Argon's admin commands on `admin`: branches and the log.
//!
//! ```text
//! {argonCreateBranch: "dev", from: "main", atSeq?: 12, atTime?: Timestamp|Date}
//! {argonListBranches: 1}
//! {argonDeleteBranch: "dev", force?: false}
//! {argonResetBranch: "dev", toSeq | toTime, dryRun?: false, backupBranch?: "dev-backup"}
//! {argonLogInfo: "dev"}   (or {argonLogInfo: 1, branch: "dev"})
//! {argonProtectBranch: "main", protected?: true}
//! ```
//! A protected branch refuses a reset (other than a dry run) and a delete,
//! whoever asks: the WAL checks it (`argon_wal::access`), so every sidecar
//! and the operator see the same rule.
//! Replies carry the branch record: name, parent, forkSeq, headSeq, times.

use argon_wal::{BranchInfo, CommitInfo, Diff, ReadPoint, Seq};
use bson::{Bson, Document, doc};

use super::{Ctx, opt_bool};
use crate::error::{CommandError, Result};
use crate::target::{cluster_time, commit_time};
use crate::wal_error::from_wal;

fn date(t: argon_wal::CommitTime) -> Bson {
    Bson::DateTime(bson::DateTime::from_millis(t.0))
}

/// The branch record as replies show it.
pub fn branch_doc(b: &BranchInfo) -> Document {
    let mut d = doc! {
        "name": b.name.as_str(),
        "id": b.id.0 as i64,
        "parent": b.parent.as_ref().map(|p| Bson::String(p.to_string())).unwrap_or(Bson::Null),
        "forkSeq": b.fork_seq.map(|s| Bson::Int64(s.0 as i64)).unwrap_or(Bson::Null),
        "startSeq": b.start_seq.0 as i64,
        "headSeq": b.head_seq.0 as i64,
        "created": date(b.created),
        "headTime": date(b.head_time),
        "headClusterTime": Bson::Timestamp(cluster_time(b.head_time)),
        "deleted": b.deleted,
    };
    if b.lineage.len() > 1 {
        let lineage: Vec<Bson> = b
            .lineage
            .iter()
            .map(|l| Bson::Document(doc! {"name": l.name.as_str(), "id": l.id.0 as i64, "forkSeq": l.fork_seq.0 as i64}))
            .collect();
        d.insert("lineage", lineage);
    }
    d
}

fn commit_doc(c: &CommitInfo) -> Document {
    doc! {"seq": c.seq.0 as i64, "time": date(c.time), "clusterTime": Bson::Timestamp(cluster_time(c.time))}
}

fn name_arg(ctx: &Ctx<'_>, command: &str) -> Result<String> {
    match ctx.cmd.get(command) {
        Some(Bson::String(s)) => Ok(s.clone()),
        _ => match ctx.cmd.get("branch") {
            Some(Bson::String(s)) => Ok(s.clone()),
            _ => Err(CommandError::type_mismatch(format!(
                "{command} takes the branch name as a string: {{{command}: \"name\"}}"
            ))),
        },
    }
}

/// A point given as `<prefix>Seq` or `<prefix>Time` (at most one).
fn point(cmd: &Document, seq_key: &str, time_key: &str) -> Result<Option<ReadPoint>> {
    match (cmd.get(seq_key), cmd.get(time_key)) {
        (Some(_), Some(_)) => Err(CommandError::bad_value(format!(
            "give {seq_key} or {time_key}, not both"
        ))),
        (Some(s), None) => match crate::query::compare::as_i64(s) {
            Some(n) if n >= 0 => Ok(Some(ReadPoint::Seq(Seq(n as u64)))),
            _ => Err(CommandError::type_mismatch(format!(
                "{seq_key} must be a non-negative whole number, got {s}"
            ))),
        },
        (None, Some(t)) => Ok(Some(ReadPoint::Time(commit_time(t)?))),
        (None, None) => Ok(None),
    }
}

pub async fn create_branch(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonCreateBranch")?;
    ctx.require_writable_server("create a branch")?;
    let name = name_arg(ctx, "argonCreateBranch")?;
    let parent = match ctx.cmd.get("from") {
        None => ctx.svc.default_branch.clone(),
        Some(Bson::String(p)) => p.clone(),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "'from' must be the parent branch's name, got {other}"
            )));
        }
    };
    let at = point(ctx.cmd, "atSeq", "atTime")?.unwrap_or(ReadPoint::Head);
    let info = ctx
        .svc
        .wal
        .create_branch(&name, &parent, at)
        .await
        .map_err(from_wal)?;
    Ok(doc! {"branch": branch_doc(&info)})
}

pub async fn list_branches(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonListBranches")?;
    let branches = ctx.svc.wal.list_branches().await.map_err(from_wal)?;
    let include_deleted = opt_bool(ctx.cmd, "includeDeleted", false)?;
    let access = ctx.svc.wal.access().await.map_err(from_wal)?;
    let docs: Vec<Document> = branches
        .iter()
        .filter(|b| include_deleted || !b.deleted)
        .map(|b| {
            let mut d = branch_doc(b);
            d.insert("protected", access.is_protected(&b.name));
            d
        })
        .collect();
    Ok(doc! {"branches": docs, "defaultBranch": ctx.svc.default_branch.clone()})
}

pub async fn delete_branch(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonDeleteBranch")?;
    ctx.require_writable_server("delete a branch")?;
    let name = name_arg(ctx, "argonDeleteBranch")?;
    if name == ctx.svc.default_branch {
        return Err(CommandError::new(
            crate::error::ErrorCode::IllegalOperation,
            format!(
                "branch {name:?} is this server's default branch; it cannot be deleted through it"
            ),
        ));
    }
    let force = opt_bool(ctx.cmd, "force", false)?;
    ctx.svc
        .wal
        .delete_branch(&name, force)
        .await
        .map_err(from_wal)?;
    let info = ctx.svc.wal.branch(&name).await.map_err(from_wal)?;
    Ok(doc! {"branch": branch_doc(&info)})
}

fn diff_doc(d: &Diff) -> Document {
    let colls: Vec<Document> = d
        .collections
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| {
            doc! {
                "ns": c.ns.to_string(),
                "added": c.added.len() as i64,
                "removed": c.removed.len() as i64,
                "changed": c.changed.len() as i64,
                "addedIds": c.added.iter().take(100).cloned().collect::<Vec<_>>(),
                "removedIds": c.removed.iter().take(100).cloned().collect::<Vec<_>>(),
                "changedIds": c.changed.iter().take(100).cloned().collect::<Vec<_>>(),
            }
        })
        .collect();
    doc! {
        "fromSeq": d.from.0 as i64,
        "toSeq": d.to.0 as i64,
        "added": d.added() as i64,
        "removed": d.removed() as i64,
        "changed": d.changed() as i64,
        "collections": colls,
    }
}

/// The longest `request` of `argonResetBranch`.
const MAX_REQUEST_LEN: usize = 256;

pub async fn reset_branch(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonResetBranch")?;
    let name = name_arg(ctx, "argonResetBranch")?;
    let to = point(ctx.cmd, "toSeq", "toTime")?
        .ok_or_else(|| CommandError::failed_to_parse("argonResetBranch needs toSeq or toTime"))?;
    let dry_run = opt_bool(ctx.cmd, "dryRun", false)?;
    if !dry_run {
        ctx.require_writable_server("reset a branch (a dryRun preview is allowed)")?;
    }
    let backup = match ctx.cmd.get("backupBranch") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(b)) => Some(b.clone()),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "backupBranch must be a branch name, got {other}"
            )));
        }
    };
    // The caller's identity for this reset (the operator's `spec.reset`):
    // a retry with the same one returns without resetting again
    // (`Wal::reset_branch_once`), so a reset retried after a lost reply or
    // a crash never discards what was written since.
    let request = match ctx.cmd.get("request") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(r)) if !r.is_empty() && r.len() <= MAX_REQUEST_LEN => Some(r.as_str()),
        Some(Bson::String(_)) => {
            return Err(CommandError::bad_value(format!(
                "argonResetBranch's request must be 1 to {MAX_REQUEST_LEN} bytes"
            )));
        }
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "argonResetBranch's request must be a string, got {other}"
            )));
        }
    };
    let outcome = match request {
        Some(_) if dry_run => {
            return Err(CommandError::bad_value(
                "argonResetBranch: a dryRun applies nothing, so it takes no request",
            ));
        }
        Some(request) => ctx
            .svc
            .wal
            .reset_branch_once(&name, to, backup.as_deref(), request)
            .await
            .map_err(from_wal)?,
        None => ctx
            .svc
            .wal
            .reset_branch(&name, to, dry_run, backup.as_deref())
            .await
            .map_err(from_wal)?,
    };
    let info = ctx.svc.wal.branch(&name).await.map_err(from_wal)?;
    let mut out = doc! {
        "branch": branch_doc(&info),
        "oldHead": commit_doc(&outcome.old_head),
        "targetSeq": outcome.target.0 as i64,
        "applied": outcome.applied,
        "alreadyApplied": outcome.already_applied,
        "dryRun": dry_run,
        "preview": diff_doc(&outcome.preview),
    };
    if let Some(b) = &outcome.backup {
        out.insert("backup", branch_doc(b));
    }
    Ok(out)
}

pub async fn log_info(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonLogInfo")?;
    let name = match ctx.cmd.get("argonLogInfo") {
        Some(Bson::String(s)) => s.clone(),
        _ => match ctx.cmd.get("branch") {
            Some(Bson::String(s)) => s.clone(),
            _ => ctx.svc.default_branch.clone(),
        },
    };
    let log = ctx.svc.wal.log_info(&name).await.map_err(from_wal)?;
    let info = ctx.svc.wal.branch(&name).await.map_err(from_wal)?;
    Ok(doc! {
        "branch": branch_doc(&info),
        "commits": log.commits as i64,
        "bytes": log.bytes as i64,
        "startSeq": log.start_seq.0 as i64,
        "first": log.first.as_ref().map(|c| Bson::Document(commit_doc(c))).unwrap_or(Bson::Null),
        "last": log.last.as_ref().map(|c| Bson::Document(commit_doc(c))).unwrap_or(Bson::Null),
    })
}

pub async fn protect_branch(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonProtectBranch")?;
    ctx.require_writable_server("protect or unprotect a branch")?;
    let name = name_arg(ctx, "argonProtectBranch")?;
    let protected = opt_bool(ctx.cmd, "protected", true)?;
    ctx.svc.wal.branch(&name).await.map_err(from_wal)?;
    ctx.svc
        .wal
        .set_protected(&name, protected)
        .await
        .map_err(from_wal)?;
    Ok(doc! {"branch": name, "protected": protected})
}
