//! Operations in flight: what `currentOp` and `$currentOp` list and what
//! `killOp` interrupts.
//!
//! Every command a connection runs is registered for as long as it runs
//! (`Operations::begin`, an `OpGuard` that unregisters on drop). What is
//! shown of its command document is decided once, at registration
//! (`shown_command`): the commands that carry credentials (SASL payloads,
//! `createUser`/`updateUser` passwords, the peer key's proof) show their
//! name and database only, every other field as `"###"`, and any command
//! larger than 1 KiB shows a truncated rendering, as mongod does. So no
//! listing can reveal a password, whoever asks.
//!
//! Beside the operations, what `$currentOp`'s idle flags list: every open
//! connection (`Operations::connect`; idle while it runs no command),
//! and the descriptions of idle sessions ([`describe_idle_session`]) and
//! idle cursors ([`CursorInfo`]), whose registries are `session` and
//! `cursor`. An idle cursor's `originatingCommand` goes through
//! `shown_command` too. A listing holds one document per operation,
//! connection, session and cursor: bounded by `--max-connections`
//! (`limits::DEFAULT_MAX_CONNECTIONS`), `session::MAX_SESSIONS`, and the
//! cursors open, each of which holds more than its listing does.
//!
//! `killOp` marks an operation; its deadline checks (`Deadline::check`,
//! every few hundred documents of a scan) fail it with `Interrupted`
//! (11601). A write already handed to the WAL completes: a commit is never
//! torn by a kill (mongod interrupts only at yield points too).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bson::{Bson, Document, doc};

/// What a listing shows of a command larger than this (mongod: 1 KB).
const SHOWN_COMMAND_BYTES: usize = 1024;

/// Commands whose fields may carry a credential.
const SENSITIVE: &[&str] = &[
    "saslStart",
    "saslContinue",
    "authenticate",
    "createUser",
    "updateUser",
    "copydbsaslstart",
    "getnonce",
    crate::writer::peer_auth::COMMAND,
];

/// Operation ids are process-wide (several services may share a process
/// in tests), and killed ones are found by id from `Deadline::check`.
static NEXT_OPID: AtomicI64 = AtomicI64::new(1);
static KILLED: Mutex<Option<HashSet<i64>>> = Mutex::new(None);
/// How many operations are marked killed and still running: the fast path
/// of `is_killed` (no lock while nobody was killed).
static KILLS_PENDING: AtomicUsize = AtomicUsize::new(0);

fn killed() -> MutexGuard<'static, Option<HashSet<i64>>> {
    // Single inserts and removes: a panic cannot leave the set torn.
    KILLED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether operation `opid` was killed (`killOp`) while running.
pub fn is_killed(opid: i64) -> bool {
    if opid == 0 || KILLS_PENDING.load(Ordering::Relaxed) == 0 {
        return false;
    }
    killed().as_ref().is_some_and(|k| k.contains(&opid))
}

/// Who runs an operation, as listings show it.
#[derive(Clone, Debug)]
pub struct Client {
    pub connection_id: i64,
    pub address: String,
    pub app_name: Option<String>,
    pub user: Option<crate::auth::users::UserId>,
}

struct Op {
    client: Client,
    ns: String,
    op: &'static str,
    command: Document,
    started: Instant,
    started_at: bson::DateTime,
}

/// The operations running in one server, and its open connections.
#[derive(Default)]
pub struct Operations {
    ops: Mutex<HashMap<i64, Arc<Op>>>,
    /// Who each open connection is, as of its last command.
    connections: Mutex<HashMap<i64, Client>>,
}

/// Keeps a connection listed; dropping it (the connection closed)
/// unregisters it.
pub struct ConnectionGuard<'a> {
    ops: &'a Operations,
    id: i64,
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        self.ops.lock_connections().remove(&self.id);
    }
}

/// Keeps an operation listed; dropping it unregisters the operation.
pub struct OpGuard<'a> {
    ops: &'a Operations,
    pub opid: i64,
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.ops.lock().remove(&self.opid);
        let mut killed = killed();
        if let Some(k) = killed.as_mut()
            && k.remove(&self.opid)
        {
            KILLS_PENDING.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Operations {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Arc<Op>>> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_connections(&self) -> MutexGuard<'_, HashMap<i64, Client>> {
        // Entries are inserted and removed whole; a panic cannot tear one.
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an open connection until the guard drops.
    pub fn connect(&self, client: Client) -> ConnectionGuard<'_> {
        let id = client.connection_id;
        self.lock_connections().insert(id, client);
        ConnectionGuard { ops: self, id }
    }

    /// Records who a connection is after a command (a handshake names its
    /// application, a login its user); an unregistered one stays so.
    pub fn update_connection(&self, client: Client) {
        if let Some(known) = self.lock_connections().get_mut(&client.connection_id) {
            *known = client;
        }
    }

    /// The open connections that run no command and `may_see` admits, as
    /// `currentOp` documents (`idleConnections`), by connection id.
    pub fn list_idle_connections(&self, may_see: impl Fn(&Client) -> bool) -> Vec<Document> {
        let busy: HashSet<i64> = self
            .lock()
            .values()
            .map(|op| op.client.connection_id)
            .collect();
        let mut idle: Vec<Client> = self
            .lock_connections()
            .values()
            .filter(|c| !busy.contains(&c.connection_id) && may_see(c))
            .cloned()
            .collect();
        idle.sort_by_key(|c| c.connection_id);
        let now = bson::DateTime::now();
        idle.iter()
            .map(|c| {
                let mut d = doc! {"type": "op"};
                describe_client(&mut d, c);
                d.insert("active", false);
                d.insert("currentOpTime", now);
                d
            })
            .collect()
    }

    /// Registers command `name` of `cmd` on `db`, run by `client`.
    pub fn begin(&self, client: Client, db: &str, name: &str, cmd: &Document) -> OpGuard<'_> {
        let opid = NEXT_OPID.fetch_add(1, Ordering::Relaxed);
        let ns = match cmd.get(name) {
            Some(Bson::String(coll)) if !SENSITIVE.contains(&name) => format!("{db}.{coll}"),
            _ => format!("{db}.$cmd"),
        };
        let op = Op {
            client,
            ns,
            op: op_kind(name),
            command: shown_command(name, db, cmd),
            started: Instant::now(),
            started_at: bson::DateTime::now(),
        };
        self.lock().insert(opid, Arc::new(op));
        OpGuard { ops: self, opid }
    }

    /// The operations `may_see` admits, as `currentOp` documents.
    pub fn list(&self, may_see: impl Fn(&Client) -> bool) -> Vec<Document> {
        let ops: Vec<(i64, Arc<Op>)> = self
            .lock()
            .iter()
            .map(|(id, op)| (*id, Arc::clone(op)))
            .collect();
        let mut out: Vec<(i64, Document)> = ops
            .into_iter()
            .filter(|(_, op)| may_see(&op.client))
            .map(|(opid, op)| (opid, describe(opid, &op)))
            .collect();
        out.sort_by_key(|(opid, _)| *opid);
        out.into_iter().map(|(_, d)| d).collect()
    }

    /// Who runs operation `opid`, if it is running.
    pub fn client_of(&self, opid: i64) -> Option<Client> {
        self.lock().get(&opid).map(|op| op.client.clone())
    }

    /// Marks `opid` killed; `false` when no such operation runs.
    pub fn kill(&self, opid: i64) -> bool {
        if !self.lock().contains_key(&opid) {
            return false;
        }
        if killed().get_or_insert_with(HashSet::new).insert(opid) {
            KILLS_PENDING.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}

fn op_kind(name: &str) -> &'static str {
    match name {
        "find" => "query",
        "insert" => "insert",
        "update" => "update",
        "delete" => "remove",
        "getMore" => "getmore",
        _ => "command",
    }
}

/// What listings show of a command (module doc): credentials never,
/// large commands truncated.
pub fn shown_command(name: &str, db: &str, cmd: &Document) -> Document {
    if SENSITIVE.contains(&name) {
        let mut shown = Document::new();
        for (k, v) in cmd {
            let value = match k.as_str() {
                k if k == name => v.clone(),
                "$db" => Bson::String(db.to_owned()),
                _ => Bson::String("###".into()),
            };
            shown.insert(k.clone(), value);
        }
        return shown;
    }
    // Field by field, so a 48 MB insert is neither copied nor rendered
    // on the way to its first kilobyte (this runs for every command).
    let mut fitting = Document::new();
    let mut size = 5;
    for (k, v) in cmd {
        size += 2 + k.len() + crate::limits::bson_size(v);
        if size > SHOWN_COMMAND_BYTES {
            break;
        }
        fitting.insert(k.clone(), v.clone());
    }
    if size <= SHOWN_COMMAND_BYTES {
        return fitting;
    }
    let mut text = fitting.to_string();
    let mut cut = SHOWN_COMMAND_BYTES.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    doc! {"$truncated": text}
}

fn describe(opid: i64, op: &Op) -> Document {
    let running = op.started.elapsed();
    let mut d = doc! {"type": "op"};
    describe_client(&mut d, &op.client);
    d.extend(doc! {
        "active": true,
        "opid": opid,
        "killPending": is_killed(opid),
        "secs_running": running.as_secs() as i64,
        "microsecs_running": i64::try_from(running.as_micros()).unwrap_or(i64::MAX),
        "currentOpTime": op.started_at,
        "op": op.op,
        "ns": op.ns.clone(),
        "command": op.command.clone(),
        "numYields": 0,
        "waitingForLock": false,
        "locks": {},
    });
    d
}

/// The fields that say who runs something: its connection, application
/// and user (the user's name only: never a credential).
fn describe_client(d: &mut Document, client: &Client) {
    d.insert("desc", format!("conn{}", client.connection_id));
    d.insert("connectionId", client.connection_id);
    d.insert("client", client.address.clone());
    if let Some(app) = &client.app_name {
        d.insert("appName", app.clone());
    }
    if let Some(user) = &client.user {
        d.insert(
            "effectiveUsers",
            vec![Bson::Document(
                doc! {"user": user.name.clone(), "db": user.db.clone()},
            )],
        );
    }
}

/// What listings show of an open cursor (`idleCursors`), kept with it by
/// `cursor::CursorStore` and counted as it returns batches.
#[derive(Clone, Debug)]
pub struct CursorInfo {
    /// The namespace the client used (`db.coll`), echoed in replies too.
    pub ns: String,
    /// Who opened it: only they (or a monitor) see it listed.
    pub client: Client,
    lsid: Option<Document>,
    originating_command: Document,
    created: bson::DateTime,
    last_access: bson::DateTime,
    docs_returned: i64,
    batches_returned: i64,
    tailable: bool,
    await_data: bool,
}

impl CursorInfo {
    /// A cursor on `ns` opened by command `cmd` on `db`, run by `client`.
    pub fn new(ns: String, client: Client, db: &str, cmd: &Document) -> CursorInfo {
        let name = cmd.keys().next().map(String::as_str).unwrap_or_default();
        let now = bson::DateTime::now();
        CursorInfo {
            ns,
            client,
            lsid: shown_lsid(cmd),
            originating_command: shown_command(name, db, cmd),
            created: now,
            last_access: now,
            docs_returned: 0,
            batches_returned: 0,
            tailable: false,
            await_data: false,
        }
    }

    /// A tailable cursor (waiting for data on `getMore` when `await_data`).
    pub fn tailable(mut self, await_data: bool) -> CursorInfo {
        self.tailable = true;
        self.await_data = await_data;
        self
    }

    /// Counts one batch of `docs` documents returned now.
    pub fn returned(&mut self, docs: usize) {
        self.docs_returned = self
            .docs_returned
            .saturating_add(i64::try_from(docs).unwrap_or(i64::MAX));
        self.batches_returned = self.batches_returned.saturating_add(1);
        self.last_access = bson::DateTime::now();
    }

    /// The `idleCursor` document of cursor `id`, as mongod lists it.
    pub fn describe(&self, id: i64) -> Document {
        let mut d = doc! {"type": "idleCursor", "ns": self.ns.clone()};
        if let Some(lsid) = &self.lsid {
            d.insert("lsid", lsid.clone());
        }
        d.insert(
            "cursor",
            doc! {
                "cursorId": id,
                "createdDate": self.created,
                "lastAccessDate": self.last_access,
                "nDocsReturned": self.docs_returned,
                "nBatchesReturned": self.batches_returned,
                // Refused by `find` (`commands::options`): never set.
                "noCursorTimeout": false,
                "tailable": self.tailable,
                "awaitData": self.await_data,
                "originatingCommand": self.originating_command.clone(),
            },
        );
        d
    }
}

/// The `lsid` a command names, as listings show it: its `id` only, so a
/// listing never carries more of it than the session is known by.
pub fn shown_lsid(cmd: &Document) -> Option<Document> {
    let id = cmd.get_document("lsid").ok()?.get("id")?;
    Some(doc! {"id": id.clone()})
}

/// What listings show of a session holding an open transaction while no
/// statement of it runs (`idleSessions`), from `session::Sessions`.
pub struct IdleTransaction {
    pub lsid: Document,
    pub txn_number: i64,
    /// The connection of its last statement.
    pub client: Client,
    pub read_concern: Document,
    pub started_at: bson::DateTime,
    pub open: std::time::Duration,
    pub active: std::time::Duration,
    pub expiry: bson::DateTime,
}

/// The `idleSession` document of an open transaction, as mongod's
/// `reportStashedState` lists it.
pub fn describe_idle_session(t: &IdleTransaction) -> Document {
    let micros = |d: std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let mut d = doc! {"type": "idleSession"};
    describe_client(&mut d, &t.client);
    // It names the transaction, not the connection (replaced in place).
    d.insert("desc", "inactive transaction");
    d.insert("lsid", t.lsid.clone());
    d.insert(
        "transaction",
        doc! {
            "parameters": {
                "txnNumber": t.txn_number,
                "autocommit": false,
                "readConcern": t.read_concern.clone(),
            },
            "startWallClockTime": t.started_at.try_to_rfc3339_string().unwrap_or_default(),
            "timeOpenMicros": micros(t.open),
            "timeActiveMicros": micros(t.active),
            "timeInactiveMicros": micros(t.open.saturating_sub(t.active)),
            "expiryTime": t.expiry,
        },
    );
    d.insert("waitingForLock", false);
    d.insert("active", false);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: i64) -> Client {
        Client {
            connection_id: id,
            address: "127.0.0.1:1".into(),
            app_name: None,
            user: None,
        }
    }

    #[test]
    fn credentials_are_never_shown() {
        let cmd = doc! {"createUser": "u", "pwd": "hunter2", "roles": [], "$db": "admin"};
        let shown = shown_command("createUser", "admin", &cmd);
        assert_eq!(shown.get_str("createUser").unwrap(), "u");
        assert_eq!(shown.get_str("pwd").unwrap(), "###");
        assert!(!format!("{shown:?}").contains("hunter2"));
        let sasl = doc! {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: b"n,,n=u,r=secret".to_vec() }};
        assert!(!format!("{:?}", shown_command("saslStart", "admin", &sasl)).contains("secret"));
    }

    #[test]
    fn large_commands_are_truncated() {
        let cmd = doc! {"insert": "c", "documents": [{"x": "é".repeat(5000)}]};
        let shown = shown_command("insert", "d", &cmd);
        let text = shown.get_str("$truncated").unwrap();
        assert!(
            text.len() <= SHOWN_COMMAND_BYTES && text.starts_with("{ \"insert\""),
            "{text}"
        );
    }

    #[test]
    fn ops_are_listed_while_running_and_killed_by_id() {
        let ops = Operations::default();
        let a = ops.begin(client(1), "d", "find", &doc! {"find": "c"});
        let b = ops.begin(client(2), "d", "insert", &doc! {"insert": "c"});
        let listed = ops.list(|c| c.connection_id == 1);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].get_str("ns").unwrap(), "d.c");
        assert_eq!(listed[0].get_str("op").unwrap(), "query");
        assert!(!is_killed(a.opid));
        assert!(ops.kill(a.opid));
        assert!(is_killed(a.opid) && !is_killed(b.opid));
        let id = a.opid;
        drop(a);
        assert!(!is_killed(id), "a finished op is forgotten");
        assert!(!ops.kill(id), "nothing to kill once it finished");
        drop(b);
        assert!(ops.list(|_| true).is_empty());
    }

    #[test]
    fn idle_connections_are_the_open_ones_running_nothing() {
        let ops = Operations::default();
        let a = ops.connect(client(1));
        let _b = ops.connect(client(2));
        let running = ops.begin(client(2), "d", "find", &doc! {"find": "c"});
        let idle = ops.list_idle_connections(|_| true);
        assert_eq!(idle.len(), 1, "{idle:?}");
        assert_eq!(idle[0].get_i64("connectionId").unwrap(), 1);
        assert!(!idle[0].get_bool("active").unwrap());
        drop(running);
        assert_eq!(ops.list_idle_connections(|_| true).len(), 2);
        assert_eq!(ops.list_idle_connections(|c| c.connection_id == 2).len(), 1);
        // Who it is now (after a login) is what listings show.
        let mut named = client(1);
        named.app_name = Some("app".into());
        ops.update_connection(named);
        let idle = ops.list_idle_connections(|c| c.connection_id == 1);
        assert_eq!(idle[0].get_str("appName").unwrap(), "app");
        drop(a);
        assert_eq!(ops.list_idle_connections(|_| true).len(), 1);
        // A connection no longer open is not brought back by an update.
        ops.update_connection(client(1));
        assert_eq!(ops.list_idle_connections(|_| true).len(), 1);
    }

    #[test]
    fn idle_cursors_count_batches_and_redact_their_command() {
        let cmd = doc! {"createUser": "u", "pwd": "hunter2", "lsid": {"id": 1}};
        let mut info = CursorInfo::new("admin.$cmd".into(), client(1), "admin", &cmd);
        info.returned(2);
        info.returned(3);
        let d = info.describe(7);
        assert_eq!(d.get_str("type").unwrap(), "idleCursor");
        assert!(d.get_document("lsid").is_ok());
        let cursor = d.get_document("cursor").unwrap();
        assert_eq!(cursor.get_i64("cursorId").unwrap(), 7);
        assert_eq!(cursor.get_i64("nDocsReturned").unwrap(), 5);
        assert_eq!(cursor.get_i64("nBatchesReturned").unwrap(), 2);
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
