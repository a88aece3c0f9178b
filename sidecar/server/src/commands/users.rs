//! User management, as mongod's: `createUser`, `updateUser`, `dropUser`,
//! `usersInfo`, `grantRolesToUser`, `revokeRolesFromUser`.
//!
//! A user belongs to the database the command runs on (its `authSource`).
//! Users are project records in the catalog log (`argon_wal::access`), so
//! every sidecar of the project sees them and a branch reset or a read in
//! the past never changes them. A password becomes SCRAM salted keys here
//! and is dropped; it is never stored, logged or echoed.

use std::sync::Arc;

use argon_wal::UserPrecondition;
use bson::{Bson, Document, doc};

use super::{Ctx, GENERIC_FIELDS};
use crate::auth::roles::Grant;
use crate::auth::scram::{Credential, Mechanism};
use crate::auth::users::{StoredUser, UserId};
use crate::error::{CommandError, ErrorCode, Result};
use crate::wal_error::from_wal;

/// Refuses a field the command does not take (never silently dropped).
pub(super) fn check_fields(cmd: &Document, command: &str, accepted: &[&str]) -> Result<()> {
    for key in cmd.keys().skip(1) {
        if !accepted.contains(&key.as_str()) && !GENERIC_FIELDS.contains(&key.as_str()) {
            return Err(CommandError::bad_value(format!(
                "{command} does not support the field {key:?}"
            )));
        }
    }
    Ok(())
}

/// The user a command names in its first field, on the command's database.
fn user_arg(ctx: &Ctx<'_>, command: &str) -> Result<UserId> {
    let name = match ctx.cmd.get(command) {
        Some(Bson::String(s)) if !s.is_empty() && s.len() <= 256 && !s.contains('\0') => s,
        _ => {
            return Err(CommandError::bad_value(format!(
                "{command} takes the user name as a non-empty string"
            )));
        }
    };
    if ctx.db.contains('~') {
        return Err(CommandError::bad_value(format!(
            "users belong to the project, not a branch: run {command} on a database without '~' (database {:?})",
            ctx.db
        )));
    }
    let id = UserId {
        db: ctx.db.to_owned(),
        name: name.clone(),
    };
    // `local` holds only mongod's internal user (`__system`, of
    // `--key-file`), which no command creates, changes or drops.
    if id.db == crate::auth::key_file::SYSTEM_DB {
        return Err(if command == "createUser" {
            CommandError::bad_value("Cannot create users in the local database")
        } else {
            not_found(&id)
        });
    }
    Ok(id)
}

fn roles_arg(ctx: &Ctx<'_>, required: bool) -> Result<Option<Vec<Grant>>> {
    match ctx.cmd.get("roles") {
        None if required => Err(CommandError::bad_value(
            "\"roles\" is required: an array of roles (it may be empty)",
        )),
        None => Ok(None),
        Some(Bson::Array(list)) => list
            .iter()
            .map(|r| Grant::parse(r, ctx.db))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(CommandError::bad_value("\"roles\" must be an array")),
    }
}

fn mechanisms_arg(ctx: &Ctx<'_>) -> Result<Vec<Mechanism>> {
    match ctx.cmd.get("mechanisms") {
        None => Ok(Mechanism::ALL.to_vec()),
        Some(Bson::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|m| {
                m.as_str().and_then(Mechanism::from_name).ok_or_else(|| {
                    CommandError::bad_value(format!(
                        "unknown mechanism {m}: this server has SCRAM-SHA-1 and SCRAM-SHA-256"
                    ))
                })
            })
            .collect(),
        Some(_) => Err(CommandError::bad_value(
            "\"mechanisms\" must be a non-empty array of mechanism names",
        )),
    }
}

/// Refuses what this server does not implement, by name.
fn refuse_unsupported(ctx: &Ctx<'_>) -> Result<()> {
    if matches!(ctx.cmd.get("digestPassword"), Some(Bson::Boolean(false))) {
        return Err(CommandError::new(
            ErrorCode::NotImplemented,
            "digestPassword: false (a client-digested password) is not supported",
        ));
    }
    if matches!(ctx.cmd.get("authenticationRestrictions"), Some(Bson::Array(a)) if !a.is_empty()) {
        return Err(CommandError::new(
            ErrorCode::NotImplemented,
            "authenticationRestrictions are not supported",
        ));
    }
    Ok(())
}

fn custom_data_arg(ctx: &Ctx<'_>) -> Result<Option<Document>> {
    match ctx.cmd.get("customData") {
        None => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d.clone())),
        Some(_) => Err(CommandError::bad_value("\"customData\" must be a document")),
    }
}

/// The SCRAM credentials of `password`, derived off the async workers
/// (PBKDF2 is deliberately slow).
async fn credentials(
    user: &UserId,
    password: Option<&Bson>,
    mechanisms: Vec<Mechanism>,
) -> Result<Vec<(Mechanism, Credential)>> {
    let password = match password {
        Some(Bson::String(p)) if !p.is_empty() => p.clone(),
        Some(Bson::String(_)) => {
            return Err(CommandError::bad_value("User passwords must not be empty"));
        }
        _ => {
            return Err(CommandError::bad_value(
                "Must provide a 'pwd' field (a string) for all user documents",
            ));
        }
    };
    let name = user.name.clone();
    tokio::task::spawn_blocking(move || {
        mechanisms
            .into_iter()
            .map(|m| {
                Credential::new(m, &name, &password)
                    .map(|c| (m, c))
                    .map_err(|e| CommandError::bad_value(format!("{}: {e}", m.name())))
            })
            .collect()
    })
    .await
    .map_err(|_| CommandError::new(ErrorCode::InternalError, "deriving the keys failed"))?
}

fn not_found(user: &UserId) -> CommandError {
    CommandError::new(
        ErrorCode::UserNotFound,
        format!(
            "Could not find user \"{}\" for db \"{}\"",
            user.name, user.db
        ),
    )
}

/// The current stored form of `user`, read from the log.
async fn current(ctx: &Ctx<'_>, user: &UserId) -> Result<Arc<StoredUser>> {
    ctx.svc.users.refresh(&ctx.svc.wal).await?;
    ctx.svc.users.get(user).ok_or_else(|| not_found(user))
}

pub(super) async fn store(ctx: &Ctx<'_>, user: &StoredUser, pre: UserPrecondition) -> Result<bool> {
    let doc = user.to_doc();
    let bytes = crate::limits::document_size(&doc);
    if bytes > crate::limits::MAX_USER_BYTES {
        return Err(CommandError::bad_value(format!(
            "user {} would take {bytes} bytes stored; the limit is {} (fewer roles or a smaller customData)",
            user.id,
            crate::limits::MAX_USER_BYTES
        )));
    }
    let written = ctx
        .svc
        .wal
        .put_user(&user.id.db, &user.id.name, doc, pre)
        .await
        .map_err(from_wal)?;
    ctx.svc.users.refresh(&ctx.svc.wal).await?;
    Ok(written)
}

/// Removes `user` from the log and refreshes the users this process
/// knows; whether there was one to remove (each command answers its own
/// way when there was not).
pub(super) async fn drop_stored(ctx: &Ctx<'_>, user: &UserId) -> Result<bool> {
    let dropped = ctx
        .svc
        .wal
        .drop_user(&user.db, &user.name)
        .await
        .map_err(from_wal)?;
    ctx.svc.users.refresh(&ctx.svc.wal).await?;
    Ok(dropped)
}

pub async fn create_user(ctx: &Ctx<'_>) -> Result<Document> {
    check_fields(
        ctx.cmd,
        "createUser",
        &[
            "pwd",
            "roles",
            "customData",
            "mechanisms",
            "digestPassword",
            "authenticationRestrictions",
        ],
    )?;
    refuse_unsupported(ctx)?;
    let id = user_arg(ctx, "createUser")?;
    let roles = roles_arg(ctx, true)?.unwrap_or_default();
    let custom_data = custom_data_arg(ctx)?;
    let mechanisms = mechanisms_arg(ctx)?;
    if ctx.svc.users.len() >= crate::limits::MAX_USERS {
        return Err(CommandError::bad_value(format!(
            "the project has {} users, the most it may have",
            crate::limits::MAX_USERS
        )));
    }
    let credentials = credentials(&id, ctx.cmd.get("pwd"), mechanisms).await?;
    let user = StoredUser {
        id,
        roles,
        credentials,
        custom_data,
    };
    // Unauthenticated under --auth means the localhost exception: only the
    // first user, checked again at the append (another client may win).
    let exception = ctx.svc.auth_required() && ctx.conn.auth().user.is_none();
    let pre = if exception {
        UserPrecondition::NoUsers
    } else {
        UserPrecondition::Absent
    };
    if !store(ctx, &user, pre).await? {
        if exception {
            return Err(CommandError::new(
                ErrorCode::Unauthorized,
                "Command createUser requires authentication (the project has a user now)",
            ));
        }
        return Err(CommandError::new(
            ErrorCode::Location51003,
            format!("User \"{}\" already exists", user.id),
        ));
    }
    tracing::info!(user = %user.id, "user created");
    Ok(Document::new())
}

pub async fn update_user(ctx: &Ctx<'_>) -> Result<Document> {
    check_fields(
        ctx.cmd,
        "updateUser",
        &[
            "pwd",
            "roles",
            "customData",
            "mechanisms",
            "digestPassword",
            "authenticationRestrictions",
        ],
    )?;
    refuse_unsupported(ctx)?;
    let id = user_arg(ctx, "updateUser")?;
    let roles = roles_arg(ctx, false)?;
    let custom_data = custom_data_arg(ctx)?;
    let mut user = (*current(ctx, &id).await?).clone();
    if let Some(roles) = roles {
        user.roles = roles;
    }
    if custom_data.is_some() {
        user.custom_data = custom_data;
    }
    if ctx.cmd.contains_key("pwd") {
        user.credentials = credentials(&id, ctx.cmd.get("pwd"), mechanisms_arg(ctx)?).await?;
    } else if ctx.cmd.contains_key("mechanisms") {
        // Without a password only a subset of the existing ones can stay.
        let keep = mechanisms_arg(ctx)?;
        if keep.iter().any(|m| user.credential(*m).is_none()) {
            return Err(CommandError::bad_value(
                "mechanisms may only narrow the existing credentials unless pwd is given",
            ));
        }
        user.credentials.retain(|(m, _)| keep.contains(m));
    }
    if !store(ctx, &user, UserPrecondition::Present).await? {
        return Err(not_found(&id));
    }
    tracing::info!(user = %id, "user updated");
    Ok(Document::new())
}

pub async fn drop_user(ctx: &Ctx<'_>) -> Result<Document> {
    check_fields(ctx.cmd, "dropUser", &[])?;
    let id = user_arg(ctx, "dropUser")?;
    if !drop_stored(ctx, &id).await? {
        return Err(not_found(&id));
    }
    tracing::info!(user = %id, "user dropped");
    Ok(Document::new())
}

async fn change_roles(ctx: &Ctx<'_>, command: &str, grant: bool) -> Result<Document> {
    check_fields(ctx.cmd, command, &["roles"])?;
    let id = user_arg(ctx, command)?;
    let roles = roles_arg(ctx, true)?.unwrap_or_default();
    let mut user = (*current(ctx, &id).await?).clone();
    for role in roles {
        if grant {
            if !user.roles.contains(&role) {
                user.roles.push(role);
            }
        } else {
            user.roles.retain(|r| r != &role);
        }
    }
    if !store(ctx, &user, UserPrecondition::Present).await? {
        return Err(not_found(&id));
    }
    Ok(Document::new())
}

pub async fn grant_roles_to_user(ctx: &Ctx<'_>) -> Result<Document> {
    change_roles(ctx, "grantRolesToUser", true).await
}

pub async fn revoke_roles_from_user(ctx: &Ctx<'_>) -> Result<Document> {
    change_roles(ctx, "revokeRolesFromUser", false).await
}

/// `{usersInfo: 1 | "name" | {user, db} | [..], forAllDBs?}`.
pub async fn users_info(ctx: &Ctx<'_>) -> Result<Document> {
    check_fields(
        ctx.cmd,
        "usersInfo",
        &[
            "forAllDBs",
            "showCredentials",
            "showPrivileges",
            "showAuthenticationRestrictions",
            "showCustomData",
        ],
    )?;
    for option in [
        "showCredentials",
        "showPrivileges",
        "showAuthenticationRestrictions",
    ] {
        if matches!(ctx.cmd.get(option), Some(Bson::Boolean(true))) {
            return Err(CommandError::new(
                ErrorCode::NotImplemented,
                format!("usersInfo's {option} is not supported"),
            ));
        }
    }
    ctx.svc.users.refresh(&ctx.svc.wal).await?;
    let all = ctx.svc.users.all();
    let for_all_dbs = matches!(ctx.cmd.get("forAllDBs"), Some(Bson::Boolean(true)));
    let named = |v: &Bson| -> Result<UserId> {
        match v {
            Bson::String(name) => Ok(UserId {
                db: ctx.db.to_owned(),
                name: name.clone(),
            }),
            Bson::Document(d) => match (d.get_str("user"), d.get_str("db")) {
                (Ok(name), Ok(db)) => Ok(UserId {
                    db: db.to_owned(),
                    name: name.to_owned(),
                }),
                _ => Err(CommandError::bad_value(
                    "a user is named by a string or {user, db}",
                )),
            },
            _ => Err(CommandError::bad_value(
                "usersInfo takes 1, a user, or an array of users",
            )),
        }
    };
    let wanted: Option<Vec<UserId>> = match ctx.cmd.get("usersInfo") {
        Some(Bson::Array(list)) => Some(list.iter().map(named).collect::<Result<_>>()?),
        Some(v @ (Bson::String(_) | Bson::Document(_))) => Some(vec![named(v)?]),
        _ => None,
    };
    let users: Vec<Bson> = all
        .iter()
        .filter(|u| match &wanted {
            Some(ids) => ids.contains(&u.id),
            None => for_all_dbs || u.id.db == ctx.db,
        })
        .map(|u| Bson::Document(u.info_doc()))
        .collect();
    Ok(doc! {"users": users})
}
