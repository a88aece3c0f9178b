//! The project's users in their stored form, for the operator: it writes
//! `ArgonProject.spec.users` into an embedded store through the store's
//! owner pod (`operator/src/users.rs`, `project_store::remote`), which is
//! the only process that may open the store.
//!
//! `argonUsers` lists the stored users, credentials included;
//! `argonPutUser` writes one whole stored user under a precondition;
//! `argonDropUser` removes one. The operator derives the SCRAM keys from
//! the password Secret itself, so no password crosses the wire or reaches
//! this process, and compares a stored user with its Secret by deriving
//! again with the stored salt. All three need `root` (unknown to the
//! privilege table, so `authorize` asks for it): on an owner, only the
//! operator's `__system` holds it. Run on `admin`.

use argon_wal::UserPrecondition;
use bson::{Bson, Document, doc};

use super::Ctx;
use super::users::{check_fields, drop_stored, store};
use crate::auth::users::{StoredUser, UserId};
use crate::error::{CommandError, Result};
use crate::wal_error::from_wal;

/// `{argonUsers: 1}` → `{users: [{db, user, stored}]}`, ordered by
/// database then name.
pub async fn users(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonUsers")?;
    check_fields(ctx.cmd, "argonUsers", &[])?;
    let access = ctx.svc.wal.access().await.map_err(from_wal)?;
    let users: Vec<Bson> = access
        .users()
        .map(|((db, name), stored)| {
            Bson::Document(
                doc! {"db": db.as_str(), "user": name.as_str(), "stored": stored.clone()},
            )
        })
        .collect();
    Ok(doc! {"users": users})
}

/// `{argonPutUser: name, db, stored, precondition: "absent" | "present"}`
/// → `{written: bool}` (false: the precondition did not hold at the
/// append; nothing was written).
pub async fn put_user(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonPutUser")?;
    ctx.require_writable_server("write a user")?;
    check_fields(ctx.cmd, "argonPutUser", &["db", "stored", "precondition"])?;
    let id = user_id(ctx, "argonPutUser")?;
    let Some(Bson::Document(stored)) = ctx.cmd.get("stored") else {
        return Err(CommandError::bad_value(
            "argonPutUser takes the stored user as the document 'stored'",
        ));
    };
    let pre = match ctx.cmd.get("precondition") {
        Some(Bson::String(s)) if s == "absent" => UserPrecondition::Absent,
        Some(Bson::String(s)) if s == "present" => UserPrecondition::Present,
        _ => {
            return Err(CommandError::bad_value(
                "argonPutUser's precondition is \"absent\" or \"present\"",
            ));
        }
    };
    // Exactly the form this server writes, nothing dropped on the way: a
    // role or credential it cannot read is refused, not stored without it.
    let user = StoredUser::from_doc(&id.db, &id.name, stored)
        .filter(|u| u.to_doc() == *stored && !u.credentials.is_empty())
        .ok_or_else(|| {
            CommandError::bad_value(format!(
                "argonPutUser: the stored form of {id} is not one this server writes (its user, db, roles, credentials and customData, each well formed)"
            ))
        })?;
    let written = store(ctx, &user, pre).await?;
    Ok(doc! {"written": written})
}

/// `{argonDropUser: name, db}` → `{dropped: bool}`.
pub async fn drop_user(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("argonDropUser")?;
    ctx.require_writable_server("drop a user")?;
    check_fields(ctx.cmd, "argonDropUser", &["db"])?;
    let id = user_id(ctx, "argonDropUser")?;
    let dropped = drop_stored(ctx, &id).await?;
    Ok(doc! {"dropped": dropped})
}

/// The user the command names: its first field and `db`, held to the
/// rules `createUser` applies to a user's name and database.
fn user_id(ctx: &Ctx<'_>, command: &str) -> Result<UserId> {
    let valid = |s: &str, max: usize| !s.is_empty() && s.len() <= max && !s.contains('\0');
    let name = match ctx.cmd.get(command) {
        Some(Bson::String(s)) if valid(s, 256) => s.clone(),
        _ => {
            return Err(CommandError::bad_value(format!(
                "{command} takes the user name as a non-empty string of at most 256 bytes"
            )));
        }
    };
    let db = match ctx.cmd.get("db") {
        Some(Bson::String(s)) if valid(s, 64) && !s.contains('~') => s.clone(),
        _ => {
            return Err(CommandError::bad_value(format!(
                "{command} takes the user's database as 'db': a non-empty name of at most 64 bytes, without '~'"
            )));
        }
    };
    // `local` holds only `__system`, which lives in the process alone.
    if db == crate::auth::key_file::SYSTEM_DB {
        return Err(CommandError::bad_value(format!(
            "{command}: no user is stored in the local database"
        )));
    }
    Ok(UserId { db, name })
}
