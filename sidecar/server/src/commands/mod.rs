//! Command dispatch: one handler per MongoDB command, found in [`COMMANDS`].
//!
//! Every request gets exactly one answer document: the handler's reply with
//! `ok: 1`, or its [`CommandError`] as `{ok: 0, errmsg, code, codeName}`.
//! Write commands carrying `lsid` + `txnNumber` go through the retryable
//! write memory so a retry is answered, not applied again.

mod admin;
mod batch;
mod branch;
mod bulk_write;
mod catalog;
mod coll_mod;
mod current_op;
mod explain;
pub mod fail_point;
mod merge;
mod options;
mod read;
mod refused;
mod sasl;
mod stored_users;
mod transaction;
mod users;
mod view;
mod write;

use std::net::SocketAddr;
use std::pin::Pin;

use bson::{Bson, Document, doc};
use futures::Future;

use crate::error::{CommandError, ErrorCode, Result};
use crate::service::{Service, operation_time};
use crate::target::Target;
use crate::wire::{Compressor, Request, RequestKind};

/// One client connection's own state.
#[derive(Debug)]
pub struct Conn {
    pub id: i64,
    pub peer: SocketAddr,
    /// Compressors agreed in the handshake (the client's order).
    pub compressors: Vec<Compressor>,
    /// A connection of the peer listener: another sidecar forwarding
    /// writes to this one, the branch's writer (`crate::writer`).
    pub from_peer: bool,
    /// How far a peer-listener connection got proving the peer key.
    pub peer_auth: crate::writer::peer_auth::PeerAuth,
    /// `client.application.name` of the connection's first handshake
    /// (a `failCommand` fail point may apply to one application only).
    pub app_name: Option<String>,
    /// The operation id of the command running (`current_op`; 0: none).
    pub current_op: i64,
    /// Who the connection is authenticated as; behind a lock because
    /// handlers see the connection shared (`saslStart`, `hello`).
    auth: std::sync::Mutex<crate::auth::ConnAuth>,
}

impl Conn {
    pub fn new(id: i64, peer: SocketAddr) -> Conn {
        Conn {
            id,
            peer,
            compressors: Vec::new(),
            from_peer: false,
            peer_auth: Default::default(),
            app_name: None,
            current_op: 0,
            auth: Default::default(),
        }
    }

    pub fn auth(&self) -> std::sync::MutexGuard<'_, crate::auth::ConnAuth> {
        // Every change to the state is one assignment; a panic cannot tear it.
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Who this connection is now, as `currentOp` listings show it.
    pub fn client(&self) -> crate::current_op::Client {
        crate::current_op::Client {
            connection_id: self.id,
            address: self.peer.to_string(),
            app_name: self.app_name.clone(),
            user: self.auth().user.clone(),
        }
    }
}

/// What a handler sees: the shared service, the connection, the database
/// the command names (`$db`) and the command document.
pub struct Ctx<'a> {
    pub svc: &'a Service,
    pub conn: &'a Conn,
    pub db: &'a str,
    pub cmd: &'a Document,
    /// The transaction this statement belongs to, if any.
    pub txn: Option<&'a crate::session::ActiveTxn>,
}

impl Ctx<'_> {
    /// What listings show of a cursor this command opens on `ns` (the
    /// namespace its replies name).
    pub fn cursor_info(&self, ns: &str) -> crate::current_op::CursorInfo {
        crate::current_op::CursorInfo::new(ns.to_owned(), self.conn.client(), self.db, self.cmd)
    }

    pub fn target(&self) -> Result<Target> {
        let target = self.svc.target(self.db)?;
        if let Some(txn) = self.txn {
            check_transaction_target(txn, &target)?;
        }
        Ok(target)
    }

    /// The command's `maxTimeMS` (or the server's default), from now;
    /// failing too once the command is killed (`killOp`).
    pub fn deadline(&self) -> Result<crate::deadline::Deadline> {
        crate::deadline::Deadline::of_command(self.cmd, self.svc.default_max_time())
            .map(|d| d.interruptible(self.conn.current_op))
    }

    /// The state a read sees: a transaction's snapshot plus its own writes,
    /// else the target's point (see `Service::read_state`).
    pub async fn read_state(&self, target: &Target) -> Result<argon_wal::BranchState> {
        match self.txn {
            Some(txn) => Ok(txn.state()),
            None => self.svc.read_state(target, self.cmd).await,
        }
    }

    /// Refuses a branch change (create, delete, a real reset) on a
    /// `--read-only` server.
    pub fn require_writable_server(&self, what: &str) -> Result<()> {
        if self.svc.read_only {
            return Err(crate::target::read_only_server(what));
        }
        Ok(())
    }

    pub fn require_admin(&self, name: &str) -> Result<()> {
        if self.db == "admin" {
            Ok(())
        } else {
            Err(CommandError::new(
                ErrorCode::Unauthorized,
                format!("{name} may only be run against the admin database."),
            ))
        }
    }
}

/// A transaction runs on one branch, at its head.
fn check_transaction_target(txn: &crate::session::ActiveTxn, target: &Target) -> Result<()> {
    if target.at.is_some() || target.branch != txn.branch {
        return Err(CommandError::new(
            ErrorCode::OperationNotSupportedInTransaction,
            format!(
                "this transaction runs on branch {:?}; {:?} names another branch or a past point",
                txn.branch, target.raw
            ),
        ));
    }
    Ok(())
}

type BoxFuture<'a> = Pin<Box<dyn Future<Output = Result<Document>> + Send + 'a>>;
type Handler = for<'a> fn(&'a Ctx<'a>) -> BoxFuture<'a>;

/// A command: its name, handler, whether it is a retryable write, and
/// whether it writes to its branch (then it goes to the branch's writer
/// when another sidecar holds that role, see `crate::writer`).
pub struct Command {
    pub name: &'static str,
    pub handler: Handler,
    pub retryable_write: bool,
    pub writes: bool,
}

macro_rules! commands {
    ($($name:literal => $f:path $(, $kind:ident)?;)*) => {
        /// Every command this server answers.
        pub static COMMANDS: &[Command] = &[$(Command {
            name: $name,
            handler: |ctx| Box::pin($f(ctx)),
            retryable_write: commands!(@retry $($kind)?),
            writes: commands!(@writes $($kind)?),
        },)*];
    };
    (@retry retry) => { true };
    (@retry $($other:ident)?) => { false };
    (@writes retry) => { true };
    (@writes write) => { true };
    (@writes) => { false };
}

commands! {
    "hello" => admin::hello;
    "isMaster" => admin::hello;
    "ismaster" => admin::hello;
    "buildInfo" => admin::build_info;
    "buildinfo" => admin::build_info;
    "ping" => admin::ping;
    "getParameter" => admin::get_parameter;
    "whatsmyuri" => admin::whatsmyuri;
    "connectionStatus" => admin::connection_status;
    "serverStatus" => admin::server_status;
    "currentOp" => current_op::current_op;
    "killOp" => current_op::kill_op;
    "hostInfo" => admin::host_info;
    "getCmdLineOpts" => admin::get_cmd_line_opts;
    "getLog" => admin::get_log;
    "listCommands" => admin::list_commands;
    "endSessions" => admin::end_sessions;
    "killSessions" => admin::end_sessions;
    "killAllSessions" => admin::kill_all_sessions;
    "startSession" => admin::start_session;
    "getLastError" => admin::ping;
    "listDatabases" => catalog::list_databases;
    "listCollections" => catalog::list_collections;
    "create" => catalog::create, write;
    "drop" => catalog::drop, write;
    "dropDatabase" => catalog::drop_database, write;
    "renameCollection" => catalog::rename_collection, write;
    "createIndexes" => catalog::create_indexes, write;
    "collMod" => coll_mod::coll_mod, write;
    "listIndexes" => catalog::list_indexes;
    "dropIndexes" => catalog::drop_indexes, write;
    "deleteIndexes" => catalog::drop_indexes, write;
    "collStats" => catalog::coll_stats;
    "dbStats" => catalog::db_stats;
    "find" => read::find;
    "getMore" => read::get_more;
    "killCursors" => read::kill_cursors;
    "count" => read::count;
    "distinct" => read::distinct;
    "aggregate" => read::aggregate;
    "explain" => explain::explain;
    "mapReduce" => refused::map_reduce;
    "convertToCapped" => refused::convert_to_capped;
    "cloneCollectionAsCapped" => refused::clone_collection_as_capped;
    "insert" => write::insert, retry;
    "update" => write::update, retry;
    "delete" => write::delete, retry;
    "findAndModify" => write::find_and_modify, retry;
    "findandmodify" => write::find_and_modify, retry;
    "bulkWrite" => bulk_write::bulk_write, retry;
    "commitTransaction" => transaction::outside_transaction;
    "abortTransaction" => transaction::outside_transaction;
    "argonCreateBranch" => branch::create_branch;
    "argonListBranches" => branch::list_branches;
    "argonDeleteBranch" => branch::delete_branch;
    "argonResetBranch" => branch::reset_branch;
    "argonLogInfo" => branch::log_info;
    "argonProtectBranch" => branch::protect_branch;
    "argonUsers" => stored_users::users;
    "argonPutUser" => stored_users::put_user;
    "argonDropUser" => stored_users::drop_user;
    "saslStart" => sasl::sasl_start;
    "saslContinue" => sasl::sasl_continue;
    "logout" => sasl::logout;
    "createUser" => users::create_user;
    "updateUser" => users::update_user;
    "dropUser" => users::drop_user;
    "usersInfo" => users::users_info;
    "grantRolesToUser" => users::grant_roles_to_user;
    "revokeRolesFromUser" => users::revoke_roles_from_user;
    // Only with `--enable-test-commands` (see `available`).
    "configureFailPoint" => fail_point::configure_fail_point;
}

/// The fields of `command` (and of its statements) that Argon refuses by
/// name with 115, from its typed parameters (`options`).
pub fn refused_fields(command: &str) -> Vec<String> {
    options::refused_fields(command)
}

/// The commands in the table only to be refused, each with the code it
/// always answers (`refused`).
pub fn refused_commands() -> Vec<(&'static str, i32)> {
    refused::REFUSED
        .iter()
        .map(|(name, error)| (*name, error().code.code()))
        .collect()
}

pub fn lookup(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Whether this server answers `command`: test commands only when started
/// with `--enable-test-commands`; without it they are unknown (59), as on
/// a mongod without `enableTestCommands`.
pub fn available(svc: &Service, command: &Command) -> bool {
    command.name != "configureFailPoint" || svc.fail_points.enabled()
}

/// How a request was answered, before the reply is finished.
enum Answer {
    /// The command ran (its reply or its error).
    Ran(Result<Document>),
    /// The `failCommand` fail point failed it before it ran.
    Failed(fail_point::Failure),
    /// The fail point closes the connection: no reply.
    Close,
}

/// Answers one request; `None` when the connection must be closed without
/// a reply (a `failCommand` fail point's `closeConnection`).
pub async fn handle(svc: &Service, conn: &mut Conn, req: &Request) -> Option<Document> {
    let name = req.command.keys().next().cloned().unwrap_or_default();
    let command = lookup(&name).filter(|c| available(svc, c));
    svc.metrics.record_command(&name, command.is_some());
    let labels = crate::error_labels::LabelContext::of(&name, &req.command, conn.from_peer);
    let (mut reply, ran, label_override) = match answer(svc, conn, req, &name, command).await {
        Ok(Answer::Close) => return None,
        Ok(Answer::Failed(failure)) => (failure.to_document(), false, failure.labels),
        Ok(Answer::Ran(Ok(mut reply))) => {
            if !reply.contains_key("ok") {
                reply.insert("ok", 1.0);
            }
            (reply, true, None)
        }
        Ok(Answer::Ran(Err(e))) => (e.to_document(), true, None),
        Err(e) => (e.to_document(), false, None),
    };
    let mut label_override = label_override;
    if ran
        && fail_point::supports_write_concern(&name, &req.command)
        && let Some((wce, labels)) = svc.fail_points.write_concern_error(&fail_point::Caller {
            command: &name,
            app_name: conn.app_name.as_deref(),
            internal: conn.from_peer,
        })
    {
        reply.insert("writeConcernError", wce);
        label_override = labels;
    }
    finish_reply(svc, conn, &name, &labels, &mut reply, label_override);
    Some(reply)
}

/// The labels of a reply (`error_labels`, or those a fail point gives
/// instead) and the error metrics.
fn finish_reply(
    svc: &Service,
    conn: &Conn,
    name: &str,
    labels: &crate::error_labels::LabelContext<'_>,
    reply: &mut Document,
    label_override: Option<Vec<String>>,
) {
    let failed = match reply.get("ok") {
        Some(Bson::Double(ok)) => *ok == 0.0,
        Some(Bson::Int32(ok)) => *ok == 0,
        Some(Bson::Int64(ok)) => *ok == 0,
        _ => false,
    };
    let code = failed.then(|| reply.get_i32("code").ok()).flatten();
    if let Some(code) = code {
        svc.metrics
            .command_errors
            .get_or_create(&crate::metrics::ErrorLabels {
                code_name: reply.get_str("codeName").unwrap_or_default().to_owned(),
            })
            .inc();
        tracing::debug!(conn = conn.id, command = %name, code, errmsg = reply.get_str("errmsg").unwrap_or_default(), "command failed");
    }
    match label_override {
        // A fail point's labels replace the computed ones, even with none.
        Some(given) => {
            reply.remove("errorLabels");
            if !given.is_empty() {
                reply.insert("errorLabels", given);
            }
        }
        None => {
            let wc_code = crate::error_labels::write_concern_code(reply);
            let computed = crate::error_labels::labels(labels, code, wc_code);
            crate::error_labels::add(reply, &computed);
        }
    }
}

async fn answer(
    svc: &Service,
    conn: &mut Conn,
    req: &Request,
    name: &str,
    command: Option<&Command>,
) -> Result<Answer> {
    if name.is_empty() {
        return Err(CommandError::failed_to_parse(
            "the command document is empty",
        ));
    }
    if conn.from_peer {
        // Another sidecar proves the peer key before anything else runs.
        if name == crate::writer::peer_auth::COMMAND {
            let key = svc.writers.key().ok_or_else(|| {
                CommandError::new(ErrorCode::CommandNotFound, "this sidecar takes no peers")
            })?;
            return crate::writer::peer_auth::answer(key, &mut conn.peer_auth, &req.command)
                .map(|reply| Answer::Ran(Ok(reply)));
        }
        let handshake = matches!(name, "hello" | "isMaster" | "ismaster" | "ping");
        if !handshake && !conn.peer_auth.is_verified() {
            return Err(CommandError::new(
                ErrorCode::Unauthorized,
                format!(
                    "{name} on the peer listener needs a sidecar that proved the peer key ({})",
                    crate::writer::peer_auth::COMMAND
                ),
            ));
        }
    }
    if conn.from_peer && name == "argonCommits" {
        // Another sidecar's commit feed (never on the client listener).
        return Ok(Answer::Ran(crate::writer::feed::serve(svc, &req.command)));
    }
    if let RequestKind::Query { collection } = &req.kind
        && collection != "$cmd"
    {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            format!(
                "legacy OP_QUERY on {collection:?} is not supported; use OP_MSG commands (OP_QUERY is for the handshake on <db>.$cmd)"
            ),
        ));
    }
    let Some(command) = command else {
        return Err(CommandError::new(
            ErrorCode::CommandNotFound,
            format!("no such command: '{name}'"),
        ));
    };
    let Some(db) = req.db.as_deref() else {
        return Err(CommandError::failed_to_parse(format!(
            "the {name} command has no $db field"
        )));
    };
    if matches!(name, "hello" | "isMaster" | "ismaster") && conn.app_name.is_none() {
        conn.app_name = app_name(&req.command);
    }
    // Listed from here on (`currentOp`), a fail point's block included, as
    // mongod lists a blocked operation.
    let op = svc.operations.begin(conn.client(), db, name, &req.command);
    conn.current_op = op.opid;
    let answer = admitted(svc, conn, req, db, name, command).await;
    conn.current_op = 0;
    drop(op);
    // Listed as idle from here on, as who it is now (after a login).
    svc.operations.update_connection(conn.client());
    answer
}

/// A command with a database, past the handshake's checks: the fail
/// point, then [`run`].
async fn admitted(
    svc: &Service,
    conn: &mut Conn,
    req: &Request,
    db: &str,
    name: &str,
    command: &Command,
) -> Result<Answer> {
    // Before authorization, sessions and transactions, as mongod does.
    let caller = fail_point::Caller {
        command: name,
        app_name: conn.app_name.as_deref(),
        internal: conn.from_peer,
    };
    match svc.fail_points.before(&caller).await {
        fail_point::Before::Run => {}
        fail_point::Before::CloseConnection => return Ok(Answer::Close),
        fail_point::Before::Fail(f) => return Ok(Answer::Failed(f)),
    }
    Ok(Answer::Ran(run(svc, conn, req, db, name, command).await))
}

/// `client.application.name` of a handshake.
fn app_name(cmd: &Document) -> Option<String> {
    let name = cmd
        .get_document("client")
        .ok()?
        .get_document("application")
        .ok()?
        .get_str("name")
        .ok()?;
    // MongoDB refuses an appName over 128 bytes (ClientMetadataAppNameTooLarge);
    // a longer one simply never matches a fail point here.
    (name.len() <= 128).then(|| name.to_owned())
}

/// Runs an admitted command: authorization, forwarding to the branch's
/// writer, a transaction statement or the handler.
async fn run(
    svc: &Service,
    conn: &mut Conn,
    req: &Request,
    db: &str,
    name: &str,
    command: &Command,
) -> Result<Document> {
    crate::auth::authorize(svc, conn, name, db, &req.command)?;
    if matches!(name, "hello" | "isMaster" | "ismaster")
        && let Ok(list) = req.command.get_array("compression")
    {
        conn.compressors = list
            .iter()
            .filter_map(|v| v.as_str().and_then(Compressor::from_name))
            .filter(|c| Compressor::SUPPORTED.contains(c))
            .collect();
    }
    let statement = transaction::statement(&req.command)?;
    if conn.from_peer {
        check_peer_may_run(name, command, statement.is_some())?;
    } else {
        let txn = statement
            .as_ref()
            .map(|s| crate::writer::route::TxnStatement {
                session: &s.session,
                txn_number: s.txn_number,
                start: s.start,
            });
        let forwarded = crate::writer::route::forward_if_remote(
            svc,
            &req.command,
            db,
            name,
            command.writes,
            txn,
        )
        .await?;
        if let Some(reply) = forwarded {
            return Ok(reply);
        }
    }
    if let Some(statement) = statement {
        return transaction::run(svc, conn, req, db, name, command, statement).await;
    }
    let ctx = Ctx {
        svc,
        conn,
        db,
        cmd: &req.command,
        txn: None,
    };
    let result = (command.handler)(&ctx).await;
    match result {
        // Run here while another sidecar became the branch's writer, and
        // not applied: that writer takes it (see `crate::writer`).
        Err(e) if e.code == ErrorCode::NotWritablePrimary && command.writes && !conn.from_peer => {
            let forwarded =
                crate::writer::route::forward_if_remote(svc, &req.command, db, name, true, None)
                    .await?;
            forwarded.ok_or(e)
        }
        other => other,
    }
}

/// The peer listener runs what other sidecars forward (writes and
/// transaction statements) and the handshake, nothing else.
fn check_peer_may_run(name: &str, command: &Command, statement: bool) -> Result<()> {
    let handshake = matches!(
        name,
        "hello" | "isMaster" | "ismaster" | "ping" | "buildInfo" | "buildinfo" | "endSessions"
    );
    if handshake || command.writes || statement {
        return Ok(());
    }
    Err(CommandError::new(
        ErrorCode::Unauthorized,
        format!(
            "{name} is not run on the peer listener, which takes writes forwarded by other sidecars"
        ),
    ))
}

// ---- small helpers shared by the handlers ---------------------------------

/// The collection named by the command's first field.
pub(crate) fn collection_name(cmd: &Document, command: &str) -> Result<String> {
    match cmd.get(command) {
        Some(Bson::String(s)) => {
            if s.is_empty() {
                return Err(CommandError::new(
                    ErrorCode::InvalidNamespace,
                    format!("Invalid namespace specified: empty collection name for {command}"),
                ));
            }
            if s.starts_with('$') || s.contains('\0') {
                return Err(CommandError::new(
                    ErrorCode::InvalidNamespace,
                    format!("Invalid collection name: {s:?}"),
                ));
            }
            Ok(s.clone())
        }
        Some(other) => Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            format!(
                "collection name has invalid type {}",
                crate::query::expr::type_name(other)
            ),
        )),
        None => Err(CommandError::failed_to_parse(format!("missing {command}"))),
    }
}

pub(crate) fn opt_doc<'a>(cmd: &'a Document, key: &str) -> Result<Option<&'a Document>> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(Bson::Document(d)) => Ok(Some(d)),
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'object'",
            crate::query::expr::type_name(other)
        ))),
    }
}

pub(crate) fn opt_bool(cmd: &Document, key: &str, default: bool) -> Result<bool> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(default),
        Some(Bson::Boolean(b)) => Ok(*b),
        Some(v) if crate::query::compare::is_number(v) => {
            Ok(crate::query::compare::as_f64(v).unwrap_or(0.0) != 0.0)
        }
        Some(other) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' is the wrong type '{}', expected type 'bool'",
            crate::query::expr::type_name(other)
        ))),
    }
}

pub(crate) fn opt_i64(cmd: &Document, key: &str) -> Result<Option<i64>> {
    match cmd.get(key) {
        None | Some(Bson::Null) => Ok(None),
        Some(v) => match crate::query::compare::as_i64(v) {
            Some(n) => Ok(Some(n)),
            None => Err(CommandError::type_mismatch(format!(
                "BSON field '{key}' is the wrong type '{}', expected a whole number",
                crate::query::expr::type_name(v)
            ))),
        },
    }
}

/// A count in a reply (`n`, `nModified`) as MongoDB sends it: an int32
/// when it fits (mongod's `appendNumber`), else an int64. Shells show an
/// int64 as `Long(…)`, so `{n: 5}` must not be one.
pub(crate) fn count_value(n: i64) -> Bson {
    match i32::try_from(n) {
        Ok(n) => Bson::Int32(n),
        Err(_) => Bson::Int64(n),
    }
}

/// `{cursor: {firstBatch, id, ns}}` for a command that opens a cursor.
pub(crate) fn cursor_reply(ns: &str, batch: Vec<Bson>, id: i64, first: bool) -> Document {
    let key = if first { "firstBatch" } else { "nextBatch" };
    doc! {"cursor": {key: batch, "id": id, "ns": ns}}
}

/// Commits a write to the target's branch: `resolve` runs on the branch's
/// head (again if another writer got there first) and the call returns once
/// the commit is durable.
pub(crate) async fn commit<T, F>(
    ctx: &Ctx<'_>,
    target: &Target,
    resolve: F,
) -> Result<(T, argon_wal::CommitInfo)>
where
    F: FnMut(&argon_wal::BranchState) -> Result<(Vec<argon_wal::DocOp>, T)> + Send + 'static,
    T: Send + 'static,
{
    target.writable()?;
    if let Some(txn) = ctx.txn {
        return write_in_transaction(txn, resolve);
    }
    let out = ctx
        .svc
        .wal
        .write(&target.branch, resolve)
        .await
        .map_err(crate::wal_error::from_write)?;
    ctx.svc.metrics.commits.inc();
    Ok(out)
}

/// A write command's commit, whose `resolve` gives its ops and its reply:
/// inside a transaction, recorded there; with a retry key (`lsid` and
/// `txnNumber`), applied at most once, the reply logged with it so a retry
/// gets it back (`retry`); otherwise a plain commit. The reply gets the
/// commit's time as `operationTime` (the first commit's, for a retry).
pub(crate) async fn commit_write<F>(
    ctx: &Ctx<'_>,
    target: &Target,
    mut resolve: F,
) -> Result<Document>
where
    F: FnMut(&mut argon_wal::Transaction) -> Result<Document> + Send + 'static,
{
    target.writable()?;
    // The command's `bypassDocumentValidation`, held while it resolves.
    let bypass = crate::validation::bypass_of(ctx.cmd)?;
    let mut resolve = move |t: &mut argon_wal::Transaction| {
        let _bypass = crate::validation::Bypass::enter(bypass);
        resolve(t)
    };
    if let Some(txn) = ctx.txn {
        // A statement is all or nothing within its transaction.
        let mut t = txn.lock();
        if let Some((ns, remove)) = written_collection(ctx.cmd, target) {
            crate::capped::refuse_in_transaction(t.state(), &ns, remove)?;
        }
        let start = t.savepoint();
        let reply = resolve(&mut t).and_then(|r| {
            crate::limits::check_transaction_size(t.logged_bytes())?;
            txn.charge(t.logged_bytes())?;
            Ok(r)
        });
        let mut reply = reply.inspect_err(|_| t.rollback_to(start))?;
        reply.insert("operationTime", operation_time(t.snapshot().time()));
        return Ok(reply);
    }
    let wal = &ctx.svc.wal;
    let Some(key) = crate::retry::key_of(ctx.cmd) else {
        let (mut reply, info) = wal
            .write_in(&target.branch, resolve)
            .await
            .map_err(crate::wal_error::from_write)?;
        ctx.svc.metrics.commits.inc();
        reply.insert("operationTime", operation_time(info.time));
        return Ok(reply);
    };
    let outcome = wal
        .write_retryable(&target.branch, key.clone(), resolve)
        .await
        .map_err(crate::wal_error::from_write)?;
    let (mut reply, time) = match outcome {
        argon_wal::RetryableOutcome::Applied { reply, info } => {
            ctx.svc.metrics.commits.inc();
            (reply, info.time)
        }
        argon_wal::RetryableOutcome::AlreadyApplied(entry) => (
            crate::retry::stored_reply(wal, &target.branch, &key, &entry).await?,
            entry.time,
        ),
    };
    reply.insert("operationTime", operation_time(time));
    Ok(reply)
}

/// The collection a single-collection write command writes to (`insert`,
/// `update`, `delete`, `findAndModify`), if `cmd` is one, and whether it
/// is a `delete`.
fn written_collection(cmd: &Document, target: &Target) -> Option<(argon_wal::Namespace, bool)> {
    let (name, coll) = cmd.iter().next()?;
    let writes = [
        "insert",
        "update",
        "delete",
        "findAndModify",
        "findandmodify",
    ];
    match coll {
        Bson::String(c) if writes.contains(&name.as_str()) => Some((
            argon_wal::Namespace::new(target.db.as_str(), c.as_str()),
            name == "delete",
        )),
        _ => None,
    }
}

/// A statement's write inside a transaction: resolved on the transaction's
/// state and recorded there; the log sees it at `commitTransaction`.
fn write_in_transaction<T, F>(
    txn: &crate::session::ActiveTxn,
    mut resolve: F,
) -> Result<(T, argon_wal::CommitInfo)>
where
    F: FnMut(&argon_wal::BranchState) -> Result<(Vec<argon_wal::DocOp>, T)>,
{
    let mut t = txn.lock();
    let state = t.state().clone();
    let (ops, out) = resolve(&state)?;
    let start = t.savepoint();
    t.record(ops)
        .map_err(crate::wal_error::from_wal)
        .and_then(|()| crate::limits::check_transaction_size(t.logged_bytes()))
        .and_then(|()| txn.charge(t.logged_bytes()))
        .inspect_err(|_| t.rollback_to(start))?;
    let info = argon_wal::CommitInfo {
        seq: state.seq(),
        time: state.time(),
    };
    Ok((out, info))
}

/// Fields every command may carry that are not options of the command itself.
pub(crate) const GENERIC_FIELDS: &[&str] = &[
    "$db",
    "lsid",
    "txnNumber",
    "$clusterTime",
    "writeConcern",
    "readConcern",
    "comment",
    "apiVersion",
    "apiStrict",
    "apiDeprecationErrors",
    "$readPreference",
    "maxTimeMS",
    "autocommit",
    "startTransaction",
    "recoveryToken",
];
