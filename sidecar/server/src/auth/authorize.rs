//! What each command needs ([`required`]) and the one check every command
//! passes through ([`authorize`], called by the dispatcher before the
//! handler, inside a transaction or not).
//!
//! A server confined to its branch (`--confine-to-branch`) first refuses
//! anything about another branch and every branch change, with or without
//! authentication. With `--auth` off every other command is allowed, as with
//! mongod, except on a server with `--key-file`, which still demands an
//! authenticated user for what [`needs_key`] names. With it on:
//! the handshake and authentication commands need nothing; everything else
//! needs an authenticated user whose grants allow the command's
//! [`Privilege`]; a command this table does not know needs `root`. The
//! localhost exception: while the project has no user, a client on a
//! loopback address may run `createUser` (and only that) unauthenticated.

use bson::{Bson, Document};

use super::roles::Privilege;
use crate::commands::Conn;
use crate::error::{CommandError, ErrorCode, Result};
use crate::service::Service;
use crate::target::Target;

/// Refuses `command` (on `$db` `db`) unless the connection may run it.
pub fn authorize(
    svc: &Service,
    conn: &Conn,
    command: &str,
    db: &str,
    cmd: &Document,
) -> Result<()> {
    let keyed = svc.users.has_system_user();
    if !svc.auth_required() && !svc.confined_to_branch() && !keyed {
        return Ok(());
    }
    let needs = required(command, db, cmd, &svc.default_branch)?;
    if svc.confined_to_branch() {
        for p in &needs {
            confine(p, &svc.default_branch)?;
        }
    }
    let guarded = svc.auth_required() || (keyed && needs_key(command, &needs));
    if !guarded {
        return Ok(());
    }
    // A sidecar that proved the peer key forwards what its own client was
    // authorized for there; the key stands for the store's own privilege
    // (`writer::peer_auth`), as mongod trusts a member holding its keyFile.
    if conn.from_peer && conn.peer_auth.is_verified() {
        return Ok(());
    }
    if needs.iter().all(|p| *p == Privilege::None) {
        return Ok(());
    }
    let user = conn.auth().user.clone();
    let Some(user) = user else {
        if command == "createUser" && svc.auth_required() && localhost_exception(svc, conn) {
            return Ok(());
        }
        return Err(CommandError::new(
            ErrorCode::Unauthorized,
            format!("Command {command} requires authentication"),
        ));
    };
    let Some(stored) = svc.users.get(&user) else {
        return Err(CommandError::new(
            ErrorCode::Unauthorized,
            format!("user {user} no longer exists; authenticate again"),
        ));
    };
    for p in &needs {
        if !stored.roles.iter().any(|g| g.allows(p)) {
            return Err(CommandError::new(
                ErrorCode::Unauthorized,
                format!(
                    "not authorized on {db} to execute command {command}: it needs {}",
                    p.describe()
                ),
            ));
        }
    }
    Ok(())
}

/// What a server with `--key-file` guards even without `--auth` (where
/// data commands stay open, as the project chose): Argon's admin commands
/// and managing users or branches. A client must authenticate (as
/// `__system`, or a user whose roles allow it) to run them.
pub fn needs_key(command: &str, needs: &[Privilege]) -> bool {
    command.starts_with("argon")
        || needs.iter().any(|p| {
            matches!(
                p,
                Privilege::UserAdmin { .. } | Privilege::BranchAdmin { .. } | Privilege::Root
            )
        })
}

/// Whether the connection holds `p` (for a reply that shows only what the
/// user may see, such as `listDatabases`): the same rule as [`authorize`].
pub fn may(svc: &Service, conn: &Conn, p: &Privilege) -> bool {
    if svc.confined_to_branch() && confine(p, &svc.default_branch).is_err() {
        return false;
    }
    if !svc.auth_required() {
        return true;
    }
    let user = conn.auth().user.clone();
    user.and_then(|u| svc.users.get(&u))
        .is_some_and(|stored| stored.roles.iter().any(|g| g.allows(p)))
}

/// A sidecar confined to its branch (`serve --confine-to-branch`, an
/// injected sidecar): other branches, their past points and every branch
/// change are refused, whoever asks.
fn confine(p: &Privilege, own: &str) -> Result<()> {
    let refuse = |what: String| {
        Err(CommandError::new(
            ErrorCode::Unauthorized,
            format!("this server serves only branch {own:?}: {what} is refused here"),
        ))
    };
    match p {
        Privilege::Read { branch, .. }
        | Privilege::Write { branch, .. }
        | Privilege::DbAdmin { branch, .. }
            if branch != own =>
        {
            refuse(format!("branch {branch:?}"))
        }
        Privilege::BranchAdmin { branch } => refuse(format!("changing branch {branch:?}")),
        Privilege::Root => refuse("a root-only command".into()),
        _ => Ok(()),
    }
}

/// No user exists yet and the client is on this machine.
pub fn localhost_exception(svc: &Service, conn: &Conn) -> bool {
    svc.users.is_empty() && conn.peer.ip().is_loopback()
}

/// What `command` needs. The rule for every command is here, nowhere else.
pub fn required(
    command: &str,
    db: &str,
    cmd: &Document,
    default_branch: &str,
) -> Result<Vec<Privilege>> {
    let data = |make: fn(String, String) -> Privilege| -> Result<Vec<Privilege>> {
        let t = Target::parse(db, default_branch)?;
        Ok(vec![make(t.branch, t.db)])
    };
    let read = |branch: String, db: String| Privilege::Read {
        branch,
        db: Some(db),
    };
    let write = |branch, db| Privilege::Write { branch, db };
    let branch_arg = || match (cmd.get(command), cmd.get("branch")) {
        (Some(Bson::String(s)), _) | (_, Some(Bson::String(s))) => s.clone(),
        _ => String::new(),
    };
    Ok(match command {
        "hello" | "isMaster" | "ismaster" | "buildInfo" | "buildinfo" | "ping" | "listCommands"
        | "connectionStatus" | "saslStart" | "saslContinue" | "logout" => {
            vec![Privilege::None]
        }
        "startSession" | "endSessions" | "killSessions" | "getLastError" | "whatsmyuri"
        | "commitTransaction" | "abortTransaction" | "argonListBranches" => {
            vec![Privilege::Authenticated]
        }
        "find" | "getMore" | "killCursors" | "count" | "distinct" | "listCollections"
        | "listIndexes" | "collStats" | "dbStats" | "mapReduce" => data(read)?,
        // Refused for everyone (`commands::refused`); asked of writers.
        "convertToCapped" | "cloneCollectionAsCapped" => data(write)?,
        // What the explained command needs, as MongoDB checks it (explain
        // itself never writes); an inner `explain` is refused by the
        // handler, so it needs only read.
        "explain" => match cmd.get("explain") {
            Some(Bson::Document(inner)) => match inner.keys().next() {
                Some(name) if name != "explain" && crate::commands::lookup(name).is_some() => {
                    required(name, db, inner, default_branch)?
                }
                _ => data(read)?,
            },
            _ => data(read)?,
        },
        "aggregate" if writes_output(cmd) => data(write)?,
        // Listing one's own operations reads no data (mongod's
        // `$currentOp` needs `inprog` only with `allUsers`, which the stage
        // checks: `commands::current_op`), unless a later stage reads a
        // collection.
        "aggregate" if db == "admin" && lists_own_operations(cmd) => {
            vec![Privilege::Authenticated]
        }
        "aggregate" => data(read)?,
        "insert" | "update" | "delete" | "findAndModify" | "findandmodify" | "create" | "drop"
        | "createIndexes" | "dropIndexes" | "deleteIndexes" => data(write)?,
        // `collMod` is dbAdmin's in MongoDB, not readWrite's.
        "dropDatabase" | "collMod" => data(|branch, db| Privilege::DbAdmin { branch, db })?,
        // Client-level bulk writes: write on every namespace they name.
        "bulkWrite" => {
            let mut needs = Vec::new();
            for entry in cmd.get_array("nsInfo").map(|a| a.as_slice()).unwrap_or(&[]) {
                let ns = entry
                    .as_document()
                    .and_then(|d| d.get_str("ns").ok())
                    .unwrap_or_default();
                let ns_db = ns.split_once('.').map_or(ns, |(d, _)| d);
                let t = Target::parse(ns_db, default_branch)?;
                needs.push(write(t.branch, t.db));
            }
            if needs.is_empty() {
                needs.push(Privilege::Authenticated);
            }
            needs
        }
        "renameCollection" => {
            let mut needs = Vec::new();
            for key in ["renameCollection", "to"] {
                let ns = cmd.get_str(key).unwrap_or_default();
                let ns_db = ns.split_once('.').map_or(ns, |(d, _)| d);
                let t = Target::parse(ns_db, default_branch)?;
                needs.push(write(t.branch, t.db));
            }
            needs
        }
        // Any user; the reply lists only the databases the user may read
        // (`may`), as mongod's `authorizedDatabases` does.
        "listDatabases" => vec![Privilege::Authenticated],
        "serverStatus" | "getCmdLineOpts" | "hostInfo" | "getLog" | "getParameter" => {
            vec![Privilege::Monitor]
        }
        // One's own operations (`$ownOps`) need nothing more; everyone's
        // need the monitor privilege (mongod's `inprog`).
        "currentOp" if matches!(cmd.get("$ownOps"), Some(Bson::Boolean(true))) => {
            vec![Privilege::Authenticated]
        }
        "currentOp" => vec![Privilege::Monitor],
        // The handler checks whose operation it is (`commands::current_op`).
        "killOp" => vec![Privilege::Authenticated],
        "createUser"
        | "updateUser"
        | "dropUser"
        | "usersInfo"
        | "grantRolesToUser"
        | "revokeRolesFromUser" => vec![Privilege::UserAdmin { db: db.to_owned() }],
        "argonCreateBranch" => {
            let parent = match cmd.get("from") {
                Some(Bson::String(p)) => p.clone(),
                _ => default_branch.to_owned(),
            };
            vec![
                Privilege::BranchAdmin {
                    branch: branch_arg(),
                },
                Privilege::Read {
                    branch: parent,
                    db: None,
                },
            ]
        }
        "argonDeleteBranch" => vec![Privilege::BranchAdmin {
            branch: branch_arg(),
        }],
        "argonResetBranch" if matches!(cmd.get("dryRun"), Some(Bson::Boolean(true))) => {
            vec![Privilege::Read {
                branch: branch_arg(),
                db: None,
            }]
        }
        "argonResetBranch" => vec![Privilege::BranchAdmin {
            branch: branch_arg(),
        }],
        "argonLogInfo" => {
            let branch = match branch_arg() {
                b if b.is_empty() => default_branch.to_owned(),
                b => b,
            };
            vec![Privilege::Read { branch, db: None }]
        }
        _ => vec![Privilege::Root],
    })
}

/// An aggregation ending in `$out` or `$merge` writes.
/// `aggregate: 1` starting with `$currentOp`, whose other stages read no
/// collection (a `$lookup` of `admin`'s still needs read on it).
fn lists_own_operations(cmd: &Document) -> bool {
    const READ_COLLECTIONS: &[&str] = &["$lookup", "$graphLookup", "$unionWith", "$facet"];
    let Ok(stages) = cmd.get_array("pipeline") else {
        return false;
    };
    let first_lists = stages
        .first()
        .and_then(Bson::as_document)
        .is_some_and(|d| d.contains_key("$currentOp"));
    let reads = stages.iter().skip(1).any(|s| {
        s.as_document()
            .is_none_or(|d| d.keys().any(|k| READ_COLLECTIONS.contains(&k.as_str())))
    });
    matches!(
        cmd.get("aggregate"),
        Some(Bson::Int32(1) | Bson::Int64(1) | Bson::Double(1.0))
    ) && first_lists
        && !reads
}

fn writes_output(cmd: &Document) -> bool {
    cmd.get_array("pipeline").is_ok_and(|stages| {
        stages.iter().any(|s| {
            s.as_document()
                .is_some_and(|d| d.contains_key("$out") || d.contains_key("$merge"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn listing_ones_own_operations_reads_no_data() {
        let needs = |pipeline: Vec<Bson>, db: &str| {
            required(
                "aggregate",
                db,
                &doc! {"aggregate": 1, "pipeline": pipeline},
                "main",
            )
            .unwrap()
        };
        let listing = doc! {"$currentOp": {}};
        let only = vec![Privilege::Authenticated];
        assert_eq!(needs(vec![listing.clone().into()], "admin"), only);
        let matched = vec![listing.clone().into(), doc! {"$match": {}}.into()];
        assert_eq!(needs(matched, "admin"), only);
        let lookup = doc! {"$lookup": {"from": "c", "as": "x", "pipeline": []}};
        assert_ne!(
            needs(vec![listing.clone().into(), lookup.into()], "admin"),
            only
        );
        assert_ne!(needs(vec![listing.clone().into()], "app"), only);
        assert_ne!(
            needs(vec![doc! {"$match": {}}.into(), listing.into()], "admin"),
            only
        );
    }

    #[test]
    fn every_command_has_a_rule() {
        // A command added to the dispatcher without a rule here needs root;
        // this lists those, so adding one is a decision, not an accident.
        let root_only: Vec<&str> = crate::commands::COMMANDS
            .iter()
            .map(|c| c.name)
            .filter(|name| {
                required(name, "admin", &doc! {}, "main").unwrap_or_default()
                    == vec![Privilege::Root]
            })
            .collect();
        assert_eq!(
            root_only,
            vec![
                "killAllSessions",
                "argonProtectBranch",
                // The stored users, credentials included: the operator's
                // `__system` writing `spec.users` through an owner.
                "argonUsers",
                "argonPutUser",
                "argonDropUser",
                "configureFailPoint"
            ]
        );
    }

    #[test]
    fn data_commands_need_their_branch() {
        assert_eq!(
            required("find", "app~preview-1", &doc! {"find": "c"}, "main").unwrap(),
            vec![Privilege::Read {
                branch: "preview-1".into(),
                db: Some("app".into())
            }]
        );
        assert_eq!(
            required(
                "aggregate",
                "app",
                &doc! {"pipeline": [{"$match": {}}, {"$out": "x"}]},
                "main"
            )
            .unwrap(),
            vec![Privilege::Write {
                branch: "main".into(),
                db: "app".into()
            }]
        );
        assert_eq!(
            required(
                "argonResetBranch",
                "admin",
                &doc! {"argonResetBranch": "dev", "dryRun": true},
                "main"
            )
            .unwrap(),
            vec![Privilege::Read {
                branch: "dev".into(),
                db: None
            }]
        );
    }
}
