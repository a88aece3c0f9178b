//! An embedded store reached through its owner pod: each call is one of the
//! sidecar's admin commands (`sidecar/server/src/commands/branch.rs`) on
//! `admin`, and each reply is read back into the WAL's types.
//!
//! The sidecar turns a `WalError` into a MongoDB code and the error's text
//! (`sidecar/server/src/wal_error.rs`); [`wal_error`] is the inverse, so the
//! controllers match the same variants whoever holds the store. A code
//! shared by several variants (BadValue, IllegalOperation) is told apart by
//! the text the WAL's `Display` wrote: the two must change together.
//! A reply of the wrong shape is `WalError::Malformed` naming the command.

use super::{ProjectStore, ResetReport, StoreCall};
use argon_wal::{
    BranchId, BranchInfo, BranchName, CommitInfo, CommitTime, LineageEntry, LogInfo, ReadPoint,
    Result, Seq, UserPrecondition, Wal, WalError,
};
use bson::{Bson, Document, doc};
use mongodb::Client;
use mongodb::error::ErrorKind;
use mongodb::options::{AuthMechanism, ClientOptions, Credential};

/// MongoDB codes the sidecar answers WAL errors with.
const BAD_VALUE: i32 = 2;
const ILLEGAL_OPERATION: i32 = 20;
const NAMESPACE_NOT_FOUND: i32 = 26;
const NAMESPACE_EXISTS: i32 = 48;
const UNAUTHORIZED: i32 = 13;
const AUTHENTICATION_FAILED: i32 = 18;

/// The owner's internal user, as mongod's (`auth::key_file` in the sidecar).
const SYSTEM_USER: &str = "__system";
const SYSTEM_DB: &str = "local";

/// `reason` of a variant rebuilt from a reply (the WAL's is a `&'static str`
/// and does not cross the wire; the message keeps the owner's text).
const OWNER_REASON: &str = "refused by the store's owner";

pub struct RemoteStore {
    client: Client,
    /// Where the owner is, for errors (no credentials in it).
    owner: String,
}

impl RemoteStore {
    /// A client for the owner at `uri` (`mongodb://host:port/?...`, no
    /// credentials in it); the driver connects on the first call. `owner`
    /// names it in errors. `key` is the owner's key file
    /// (`store_owner::key_secret`): the client authenticates as
    /// `__system@local` with it, as a mongod member does with its keyFile;
    /// the owner refuses its admin commands to anyone else. The key goes
    /// into the driver's `Credential` only, never into a string.
    pub async fn connect(uri: &str, owner: &str, key: Option<&str>) -> Result<RemoteStore> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| transport("connecting", owner, e))?;
        if let Some(key) = key {
            options.credential = Some(
                Credential::builder()
                    .username(SYSTEM_USER.to_string())
                    .password(key.trim().to_string())
                    .source(SYSTEM_DB.to_string())
                    .mechanism(AuthMechanism::ScramSha256)
                    .build(),
            );
        }
        let client =
            Client::with_options(options).map_err(|e| transport("connecting", owner, e))?;
        Ok(RemoteStore {
            client,
            owner: owner.to_string(),
        })
    }

    /// Runs one admin command; an `ok: 0` reply becomes the `WalError` it
    /// stands for.
    async fn command(&self, name: &'static str, command: Document) -> Result<Document> {
        self.client
            .database("admin")
            .run_command(command)
            .await
            .map_err(|e| wal_error(name, &self.owner, e))
    }

    /// `request`: the reset's identity, applied at most once (the
    /// sidecar's `argonResetBranch` with `request`, `Wal::reset_branch_once`).
    async fn reset(
        &self,
        name: &str,
        to: ReadPoint,
        dry_run: bool,
        backup: Option<&str>,
        request: Option<&str>,
    ) -> Result<ResetReport> {
        const COMMAND: &str = "argonResetBranch";
        let mut cmd = doc! {COMMAND: name, "dryRun": dry_run};
        if let Some(r) = request {
            cmd.insert("request", r);
        }
        match to {
            ReadPoint::Seq(s) => cmd.insert("toSeq", seq_arg(COMMAND, s)?),
            ReadPoint::Time(t) => cmd.insert("toTime", bson::DateTime::from_millis(t.0)),
            ReadPoint::Head => {
                return Err(WalError::InvalidOp(format!(
                    "{COMMAND} needs a point to reset {name:?} to, not its head"
                )));
            }
        };
        if let Some(b) = backup {
            cmd.insert("backupBranch", b);
        }
        let reply = self.command(COMMAND, cmd).await?;
        reset_report(COMMAND, &reply)
    }
}

impl ProjectStore for RemoteStore {
    fn branch<'a>(&'a self, name: &'a str) -> StoreCall<'a, BranchInfo> {
        Box::pin(async move {
            let wanted = BranchName::parse(name)?;
            // No admin command reads one branch, deleted ones included, as
            // `Wal::branch` does: the list does, live names first.
            let branches = self.list_branches().await?;
            let live = branches.iter().find(|b| b.name == wanted && !b.deleted);
            live.or_else(|| branches.iter().find(|b| b.name == wanted))
                .cloned()
                .ok_or_else(|| WalError::UnknownBranch {
                    name: name.to_string(),
                })
        })
    }

    fn list_branches(&self) -> StoreCall<'_, Vec<BranchInfo>> {
        Box::pin(async move {
            const COMMAND: &str = "argonListBranches";
            let reply = self
                .command(COMMAND, doc! {COMMAND: 1, "includeDeleted": true})
                .await?;
            let list = reply
                .get_array("branches")
                .map_err(|_| malformed(COMMAND, "no array `branches`"))?;
            list.iter()
                .map(|b| match b {
                    Bson::Document(d) => branch_info(COMMAND, d),
                    _ => Err(malformed(COMMAND, "a branch that is not a document")),
                })
                .collect()
        })
    }

    fn create_branch<'a>(
        &'a self,
        name: &'a str,
        parent: &'a str,
        at: ReadPoint,
    ) -> StoreCall<'a, BranchInfo> {
        Box::pin(async move {
            const COMMAND: &str = "argonCreateBranch";
            let mut cmd = doc! {COMMAND: name, "from": parent};
            match at {
                ReadPoint::Head => {}
                ReadPoint::Seq(s) => {
                    cmd.insert("atSeq", seq_arg(COMMAND, s)?);
                }
                ReadPoint::Time(t) => {
                    cmd.insert("atTime", bson::DateTime::from_millis(t.0));
                }
            }
            let reply = self.command(COMMAND, cmd).await?;
            branch_info(COMMAND, sub(COMMAND, &reply, "branch")?)
        })
    }

    fn delete_branch<'a>(&'a self, name: &'a str, force: bool) -> StoreCall<'a, ()> {
        Box::pin(async move {
            const COMMAND: &str = "argonDeleteBranch";
            self.command(COMMAND, doc! {COMMAND: name, "force": force})
                .await
                .map(drop)
        })
    }

    fn reset_branch<'a>(
        &'a self,
        name: &'a str,
        to: ReadPoint,
        dry_run: bool,
        backup: Option<&'a str>,
    ) -> StoreCall<'a, ResetReport> {
        Box::pin(self.reset(name, to, dry_run, backup, None))
    }

    fn reset_branch_once<'a>(
        &'a self,
        name: &'a str,
        to: ReadPoint,
        backup: Option<&'a str>,
        request: &'a str,
    ) -> StoreCall<'a, ResetReport> {
        Box::pin(self.reset(name, to, false, backup, Some(request)))
    }

    fn set_protected<'a>(&'a self, name: &'a str, protected: bool) -> StoreCall<'a, ()> {
        Box::pin(async move {
            const COMMAND: &str = "argonProtectBranch";
            self.command(COMMAND, doc! {COMMAND: name, "protected": protected})
                .await
                .map(drop)
        })
    }

    fn log_info<'a>(&'a self, branch: &'a str) -> StoreCall<'a, LogInfo> {
        Box::pin(async move {
            const COMMAND: &str = "argonLogInfo";
            let reply = self.command(COMMAND, doc! {COMMAND: branch}).await?;
            let info = branch_info(COMMAND, sub(COMMAND, &reply, "branch")?)?;
            Ok(LogInfo {
                branch: info.name,
                id: info.id,
                first: commit(COMMAND, &reply, "first")?,
                last: commit(COMMAND, &reply, "last")?,
                commits: count(COMMAND, &reply, "commits")?,
                bytes: count(COMMAND, &reply, "bytes")?,
                start_seq: Seq(count(COMMAND, &reply, "startSeq")?),
            })
        })
    }

    fn users(&self) -> StoreCall<'_, Vec<((String, String), Document)>> {
        Box::pin(async move {
            const COMMAND: &str = "argonUsers";
            let reply = self.command(COMMAND, doc! {COMMAND: 1}).await?;
            let list = reply
                .get_array("users")
                .map_err(|_| malformed(COMMAND, "no array `users`"))?;
            list.iter()
                .map(|u| {
                    let u = u
                        .as_document()
                        .ok_or_else(|| malformed(COMMAND, "a user that is not a document"))?;
                    let field = |k: &str| {
                        u.get_str(k)
                            .map(str::to_owned)
                            .map_err(|_| malformed(COMMAND, format!("a user without `{k}`")))
                    };
                    let stored = u
                        .get_document("stored")
                        .map_err(|_| malformed(COMMAND, "a user without `stored`"))?;
                    Ok(((field("db")?, field("user")?), stored.clone()))
                })
                .collect()
        })
    }

    fn put_user<'a>(
        &'a self,
        db: &'a str,
        name: &'a str,
        user: Document,
        pre: UserPrecondition,
    ) -> StoreCall<'a, bool> {
        Box::pin(async move {
            const COMMAND: &str = "argonPutUser";
            let precondition = match pre {
                UserPrecondition::Absent => "absent",
                UserPrecondition::Present => "present",
                UserPrecondition::NoUsers => {
                    return Err(WalError::InvalidOp(format!(
                        "{COMMAND} takes no \"no users\" precondition"
                    )));
                }
            };
            let reply = self
                .command(
                    COMMAND,
                    doc! {COMMAND: name, "db": db, "stored": user, "precondition": precondition},
                )
                .await?;
            reply
                .get_bool("written")
                .map_err(|_| malformed(COMMAND, "no boolean `written`"))
        })
    }

    fn drop_user<'a>(&'a self, db: &'a str, name: &'a str) -> StoreCall<'a, bool> {
        Box::pin(async move {
            const COMMAND: &str = "argonDropUser";
            let reply = self
                .command(COMMAND, doc! {COMMAND: name, "db": db})
                .await?;
            reply
                .get_bool("dropped")
                .map_err(|_| malformed(COMMAND, "no boolean `dropped`"))
        })
    }

    fn wal(&self) -> Option<&Wal> {
        None
    }
}

// ---- replies ---------------------------------------------------------------------

fn malformed(command: &'static str, reason: impl Into<String>) -> WalError {
    WalError::Malformed {
        what: command,
        reason: format!("reply from the store's owner: {}", reason.into()),
    }
}

fn seq_arg(command: &'static str, s: Seq) -> Result<i64> {
    i64::try_from(s.0).map_err(|_| WalError::InvalidOp(format!("{command}: seq {s} is too large")))
}

fn sub<'d>(command: &'static str, d: &'d Document, key: &str) -> Result<&'d Document> {
    d.get_document(key)
        .map_err(|_| malformed(command, format!("no document `{key}`")))
}

/// A non-negative whole number (the sidecar writes Int64; a test or an
/// older sidecar may write Int32).
fn count(command: &'static str, d: &Document, key: &str) -> Result<u64> {
    let n = match d.get(key) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        _ => return Err(malformed(command, format!("`{key}` is not a whole number"))),
    };
    u64::try_from(n).map_err(|_| malformed(command, format!("`{key}` is negative ({n})")))
}

fn optional_count(command: &'static str, d: &Document, key: &str) -> Result<Option<u64>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(_) => count(command, d, key).map(Some),
    }
}

fn time(command: &'static str, d: &Document, key: &str) -> Result<CommitTime> {
    d.get_datetime(key)
        .map(|t| CommitTime(t.timestamp_millis()))
        .map_err(|_| malformed(command, format!("`{key}` is not a date")))
}

fn name(command: &'static str, d: &Document, key: &str) -> Result<BranchName> {
    let s = d
        .get_str(key)
        .map_err(|_| malformed(command, format!("`{key}` is not a string")))?;
    BranchName::parse(s).map_err(|e| malformed(command, format!("`{key}`: {e}")))
}

fn commit(command: &'static str, d: &Document, key: &str) -> Result<Option<CommitInfo>> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(c)) => Ok(Some(CommitInfo {
            seq: Seq(count(command, c, "seq")?),
            time: time(command, c, "time")?,
        })),
        Some(_) => Err(malformed(command, format!("`{key}` is not a commit"))),
    }
}

/// The branch record of `branch_doc` (sidecar `commands/branch.rs`).
fn branch_info(command: &'static str, d: &Document) -> Result<BranchInfo> {
    let parent = match d.get("parent") {
        None | Some(Bson::Null) => None,
        Some(_) => Some(name(command, d, "parent")?),
    };
    let lineage = match d.get("lineage") {
        None => Vec::new(),
        Some(Bson::Array(entries)) => entries
            .iter()
            .map(|e| match e {
                Bson::Document(l) => Ok(LineageEntry {
                    name: name(command, l, "name")?,
                    id: BranchId(count(command, l, "id")?),
                    fork_seq: Seq(count(command, l, "forkSeq")?),
                }),
                _ => Err(malformed(command, "a lineage entry that is not a document")),
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(malformed(command, "`lineage` is not an array")),
    };
    Ok(BranchInfo {
        name: name(command, d, "name")?,
        id: BranchId(count(command, d, "id")?),
        parent,
        fork_seq: optional_count(command, d, "forkSeq")?.map(Seq),
        start_seq: Seq(count(command, d, "startSeq")?),
        head_seq: Seq(count(command, d, "headSeq")?),
        created: time(command, d, "created")?,
        head_time: time(command, d, "headTime")?,
        deleted: d
            .get_bool("deleted")
            .map_err(|_| malformed(command, "`deleted` is not a boolean"))?,
        lineage,
    })
}

fn reset_report(command: &'static str, reply: &Document) -> Result<ResetReport> {
    let old_head =
        commit(command, reply, "oldHead")?.ok_or_else(|| malformed(command, "no `oldHead`"))?;
    let preview = sub(command, reply, "preview")?;
    let collections = preview
        .get_array("collections")
        .map_err(|_| malformed(command, "no array `preview.collections`"))?
        .iter()
        .map(|c| match c {
            Bson::Document(c) => Ok((
                c.get_str("ns")
                    .map_err(|_| malformed(command, "a collection without `ns`"))?
                    .to_string(),
                count(command, c, "added")?,
                count(command, c, "removed")?,
                count(command, c, "changed")?,
            )),
            _ => Err(malformed(command, "a collection that is not a document")),
        })
        .collect::<Result<_>>()?;
    Ok(ResetReport {
        old_head,
        target: Seq(count(command, reply, "targetSeq")?),
        added: count(command, preview, "added")?,
        removed: count(command, preview, "removed")?,
        changed: count(command, preview, "changed")?,
        collections,
        applied: reply
            .get_bool("applied")
            .map_err(|_| malformed(command, "`applied` is not a boolean"))?,
        // Absent only from an owner older than `request`, which has no key
        // file either and so never answers this operator.
        already_applied: match reply.get("alreadyApplied") {
            None => false,
            Some(Bson::Boolean(b)) => *b,
            Some(_) => return Err(malformed(command, "`alreadyApplied` is not a boolean")),
        },
    })
}

// ---- errors ----------------------------------------------------------------------

fn transport(context: &str, owner: &str, e: mongodb::error::Error) -> WalError {
    WalError::Mongo {
        context: format!("{context} (the store's owner at {owner})"),
        source: Box::new(e),
    }
}

/// The first `"…"` in `text`, as the WAL's `{name:?}` wrote it.
fn quoted(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(text[start..start + len].to_string())
}

/// A number after `marker` in `text`, up to the next non-digit.
fn number_after(text: &str, marker: &str) -> Option<i64> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

/// The `WalError` an `ok: 0` reply stands for (the inverse of the sidecar's
/// `wal_error::from_wal`); anything else (the network, a code no WAL error
/// gives) is the transport's error, naming the command.
pub fn wal_error(command: &'static str, owner: &str, e: mongodb::error::Error) -> WalError {
    let refused = || WalError::Unauthorized {
        context: format!("the store's owner at {owner} ({command})"),
    };
    let c = match e.kind.as_ref() {
        ErrorKind::Command(c) => c,
        // The driver's own handshake failed (a wrong or missing key).
        ErrorKind::Authentication { .. } => return refused(),
        _ => return transport(command, owner, e),
    };
    let message = c.message.clone();
    let named = || quoted(&message).unwrap_or_default();
    match c.code {
        UNAUTHORIZED | AUTHENTICATION_FAILED => refused(),
        NAMESPACE_NOT_FOUND => WalError::UnknownBranch { name: named() },
        NAMESPACE_EXISTS => WalError::BranchExists { name: named() },
        BAD_VALUE if message.starts_with("invalid branch name") => WalError::InvalidBranchName {
            name: named(),
            reason: OWNER_REASON,
        },
        BAD_VALUE if message.contains(" has no point ") => {
            let point = message
                .split(" has no point ")
                .nth(1)
                .and_then(|r| r.split(": its head is seq ").next())
                .unwrap_or_default()
                .to_string();
            WalError::PointBeyondHead {
                branch: named(),
                point,
                head: Seq(number_after(&message, "its head is seq ")
                    .unwrap_or(0)
                    .max(0) as u64),
            }
        }
        BAD_VALUE if message.contains(" did not exist at time ") => WalError::PointBeforeBranch {
            branch: named(),
            time: CommitTime(number_after(&message, " did not exist at time ").unwrap_or(0)),
            starts: CommitTime(number_after(&message, "its history starts at ").unwrap_or(0)),
        },
        BAD_VALUE => WalError::InvalidOp(format!("{command}: {message}")),
        ILLEGAL_OPERATION if message.contains(" has children (") => WalError::HasChildren {
            name: named(),
            children: message
                .split(" has children (")
                .nth(1)
                .and_then(|r| r.rsplit_once(')'))
                .map(|(c, _)| c.to_string())
                .unwrap_or_default(),
        },
        ILLEGAL_OPERATION if message.contains(" is protected") => WalError::Protected {
            name: named(),
            reason: OWNER_REASON,
        },
        // The owner serves `main` by default and refuses to delete it, as
        // the WAL refuses to delete the root.
        ILLEGAL_OPERATION if message.contains("default branch") => WalError::Protected {
            name: named(),
            reason: "main is the project's root branch",
        },
        _ => transport(command, owner, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_and_numbers_are_read_from_wal_messages() {
        let m = WalError::PointBeyondHead {
            branch: "dev".into(),
            point: "seq 9".into(),
            head: Seq(4),
        }
        .to_string();
        assert_eq!(quoted(&m).as_deref(), Some("dev"));
        assert_eq!(number_after(&m, "its head is seq "), Some(4));
        assert_eq!(quoted("no quotes"), None);
        assert_eq!(number_after("x", "y"), None);
    }

    #[test]
    fn a_reply_of_the_wrong_shape_names_the_command() {
        let e = branch_info("argonCreateBranch", &doc! {"name": 3}).unwrap_err();
        assert!(e.to_string().contains("argonCreateBranch"), "{e}");
        let e = reset_report("argonResetBranch", &doc! {"oldHead": "x"}).unwrap_err();
        assert!(e.to_string().contains("argonResetBranch"), "{e}");
        let e = count("argonLogInfo", &doc! {"commits": -1i64}, "commits").unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
    }
}
