//! `currentOp`, `killOp` and the `$currentOp` stage over the operations
//! in flight (`crate::current_op`), and on request the idle connections,
//! sessions holding an open transaction, and cursors.
//!
//! Who sees what: without authentication everything (there are no users
//! to tell apart). With it, a user sees its own operations, connections,
//! sessions (by the user of their last statement) and cursors (by who
//! opened them); the others need the monitor privilege (`clusterMonitor`,
//! `root`), which `currentOp` without `$ownOps` and `$currentOp` with
//! `allUsers: true` demand, as mongod's `inprog` action. `killOp` kills
//! one's own operation, or any with the monitor privilege.

use bson::{Bson, Document, doc};

use super::Ctx;
use crate::auth::roles::Privilege;
use crate::current_op::Client;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::filter::Filter;

/// Whether this connection sees `client`'s operations.
fn sees<'a>(ctx: &'a Ctx<'_>, all_users: bool) -> Result<impl Fn(&Client) -> bool + 'a> {
    let auth = ctx.svc.auth_required();
    if auth && all_users && !crate::auth::authorize::may(ctx.svc, ctx.conn, &Privilege::Monitor) {
        return Err(CommandError::new(
            ErrorCode::Unauthorized,
            "listing other users' operations needs the monitor privilege (clusterMonitor or root)",
        ));
    }
    let me = ctx.conn.auth().user.clone();
    Ok(move |c: &Client| !auth || all_users || (me.is_some() && c.user == me))
}

/// What a listing holds besides the operations in flight (`$currentOp`'s
/// `idle*` flags; mongod's defaults).
struct Idle {
    connections: bool,
    sessions: bool,
    cursors: bool,
}

/// Everything `sees` admits that `idle` asks for, in mongod's order:
/// operations and idle connections, then idle sessions, then idle cursors.
fn listing(ctx: &Ctx<'_>, all_users: bool, idle: &Idle) -> Result<Vec<Document>> {
    let sees = sees(ctx, all_users)?;
    let mut out = ctx.svc.operations.list(&sees);
    if idle.connections {
        out.extend(ctx.svc.operations.list_idle_connections(&sees));
    }
    if idle.sessions {
        out.extend(
            ctx.svc
                .sessions
                .idle_transactions()
                .iter()
                .filter(|t| sees(&t.client))
                .map(crate::current_op::describe_idle_session),
        );
    }
    if idle.cursors {
        out.extend(
            ctx.svc
                .cursors
                .idle()
                .into_iter()
                .filter(|(_, info)| sees(&info.client))
                .map(|(id, info)| info.describe(id)),
        );
    }
    Ok(out)
}

/// `currentOp`: `$ownOps`, `$all` and a filter over the listed documents.
/// As mongod's, it lists idle sessions, and `$all: true` adds the idle
/// connections (a sidecar runs no system operations to add).
pub async fn current_op(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("currentOp")?;
    let mut own_only = false;
    let mut idle = Idle {
        connections: false,
        sessions: true,
        cursors: false,
    };
    let mut filter = Document::new();
    for (k, v) in ctx.cmd {
        match k.as_str() {
            "currentOp" => {}
            "$ownOps" => own_only = flag(k, v)?,
            "$all" => idle.connections = flag(k, v)?,
            "$truncateOps" => {
                return Err(CommandError::not_implemented("currentOp's $truncateOps"));
            }
            k if super::GENERIC_FIELDS.contains(&k) => {}
            _ => {
                filter.insert(k.clone(), v.clone());
            }
        }
    }
    let filter = Filter::parse(&filter)?;
    let mut inprog = Vec::new();
    for d in listing(ctx, !own_only, &idle)? {
        if filter.try_matches(&d)? {
            inprog.push(Bson::Document(d));
        }
    }
    Ok(doc! {"inprog": inprog})
}

/// `killOp: 1, op: <opid>`.
pub async fn kill_op(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("killOp")?;
    let mut opid = None;
    for (k, v) in ctx.cmd {
        match k.as_str() {
            "killOp" => {}
            "op" => {
                opid = Some(crate::query::compare::as_i64(v).ok_or_else(|| {
                    CommandError::type_mismatch("killOp's op must be a whole number (an opid)")
                })?)
            }
            k if super::GENERIC_FIELDS.contains(&k) => {}
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40415,
                    format!("BSON field 'killOp.{other}' is an unknown field."),
                ));
            }
        }
    }
    let Some(opid) = opid else {
        return Err(CommandError::failed_to_parse("killOp needs op: <opid>"));
    };
    if let Some(client) = ctx.svc.operations.client_of(opid) {
        let may_kill_any = !ctx.svc.auth_required()
            || crate::auth::authorize::may(ctx.svc, ctx.conn, &Privilege::Monitor);
        if !may_kill_any && client.user != ctx.conn.auth().user {
            return Err(CommandError::new(
                ErrorCode::Unauthorized,
                "killing another user's operation needs the monitor privilege",
            ));
        }
        ctx.svc.operations.kill(opid);
    }
    // mongod answers ok (and `info`) whether or not the op still runs.
    Ok(doc! {"info": "attempting to kill op"})
}

/// The `$currentOp` stage's documents (it must come first, on `admin`).
pub fn current_op_stage(ctx: &Ctx<'_>, arg: &Bson) -> Result<Vec<Document>> {
    if ctx.db != "admin" {
        return Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            "$currentOp must be run against the 'admin' database with {aggregate: 1}",
        ));
    }
    let Bson::Document(spec) = arg else {
        return Err(CommandError::type_mismatch(
            "$currentOp options must be specified in an object",
        ));
    };
    let mut all_users = false;
    let mut idle = Idle {
        connections: false,
        sessions: true,
        cursors: false,
    };
    for (k, v) in spec {
        let name = format!("$currentOp.{k}");
        match k.as_str() {
            "allUsers" => all_users = flag(&name, v)?,
            // Listing operations is all a standalone sidecar does.
            "localOps" => {
                flag(&name, v)?;
            }
            "idleConnections" => idle.connections = flag(&name, v)?,
            "idleSessions" => idle.sessions = flag(&name, v)?,
            "idleCursors" => idle.cursors = flag(&name, v)?,
            "backtrace" => {
                if flag(&name, v)? {
                    return Err(CommandError::not_implemented(
                        "$currentOp with backtrace: true",
                    ));
                }
            }
            "truncateOps" | "targetAllNodes" => {
                return Err(CommandError::not_implemented(&format!("$currentOp's {k}")));
            }
            other => {
                return Err(CommandError::new(
                    ErrorCode::Location40415,
                    format!("BSON field '$currentOp.{other}' is an unknown field."),
                ));
            }
        }
    }
    listing(ctx, all_users, &idle)
}

fn flag(name: &str, v: &Bson) -> Result<bool> {
    match v {
        Bson::Boolean(b) => Ok(*b),
        other => Err(CommandError::type_mismatch(format!(
            "{name} must be a boolean, not {}",
            crate::query::expr::type_name(other)
        ))),
    }
}
