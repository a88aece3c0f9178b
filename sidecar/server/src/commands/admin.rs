//! The handshake and server-information commands.

use bson::{Bson, Document, doc};

use super::Ctx;
use crate::error::Result;
use crate::limits;
use crate::wire::MAX_MESSAGE_SIZE;

/// The wire version reported: 25 is MongoDB 8.0, whose client-level
/// `bulkWrite` drivers use only from this version on.
pub const MAX_WIRE_VERSION: i32 = 25;
pub const VERSION: &str = "7.0.0";

/// This process's identity in `hello`: the `serviceId` a load-balanced
/// driver pins cursors and transactions to. (No `topologyVersion`: with one,
/// drivers switch to streaming `hello` with `moreToCome`, which this server
/// does not implement; they poll instead.)
static PROCESS_ID: std::sync::LazyLock<bson::oid::ObjectId> =
    std::sync::LazyLock::new(bson::oid::ObjectId::new);

/// The handshake. Argon presents itself as a router (`msg: "isdbgrid"`,
/// what mongos answers): drivers then enable sessions, transactions and
/// retryable writes, and, unlike a replica-set member, a router's reply
/// lists no hosts, so a driver never leaves the address it was given (a
/// port-forward, a NodePort, a Service name). A client that connects with
/// `loadBalanced=true` gets a `serviceId`. See docs/architecture.md.
pub async fn hello(ctx: &Ctx<'_>) -> Result<Document> {
    let legacy = !ctx.cmd.contains_key("hello");
    let mut d = doc! {
        "isWritablePrimary": true,
        "msg": "isdbgrid",
        "maxBsonObjectSize": limits::MAX_DOCUMENT_SIZE as i32,
        "maxMessageSizeBytes": MAX_MESSAGE_SIZE as i32,
        "maxWriteBatchSize": limits::MAX_WRITE_BATCH_SIZE as i32,
        "localTime": bson::DateTime::now(),
        "logicalSessionTimeoutMinutes": 30,
        "connectionId": ctx.conn.id as i32,
        "minWireVersion": 0,
        "maxWireVersion": MAX_WIRE_VERSION,
        "readOnly": false,
    };
    if let Some(mechs) = super::sasl::supported_mechanisms(ctx).await {
        d.insert("saslSupportedMechs", mechs);
    }
    if let Some(reply) = super::sasl::speculative(ctx).await {
        d.insert("speculativeAuthenticate", reply);
    }
    if matches!(ctx.cmd.get("loadBalanced"), Some(Bson::Boolean(true))) {
        d.insert("serviceId", *PROCESS_ID);
    }
    if legacy {
        // isMaster answers with `ismaster`, as older drivers expect.
        d.remove("isWritablePrimary");
        let mut with = doc! {"ismaster": true};
        with.extend(d);
        d = with;
    }
    if !ctx.conn.compressors.is_empty() {
        d.insert(
            "compression",
            ctx.conn
                .compressors
                .iter()
                .map(|c| Bson::String(c.name().to_owned()))
                .collect::<Vec<_>>(),
        );
    }
    Ok(d)
}

pub async fn build_info(_: &Ctx<'_>) -> Result<Document> {
    Ok(doc! {
        "version": VERSION,
        "gitVersion": "argon",
        "versionArray": [7, 0, 0, 0],
        "bits": 64,
        "debug": false,
        "maxBsonObjectSize": limits::MAX_DOCUMENT_SIZE as i32,
        "storageEngines": ["argon"],
        "modules": [],
        "argon": {"version": env!("CARGO_PKG_VERSION")},
    })
}

pub async fn ping(_: &Ctx<'_>) -> Result<Document> {
    Ok(Document::new())
}

pub async fn get_parameter(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("getParameter")?;
    let all = doc! {
        "featureCompatibilityVersion": {"version": "7.0"},
        "authenticationMechanisms": ["SCRAM-SHA-1", "SCRAM-SHA-256"],
        "maxBSONDepth": crate::limits::MAX_BSON_DEPTH as i32,
        "cursorTimeoutMillis": crate::cursor::IDLE_TIMEOUT.as_millis() as i64,
        "logicalSessionTimeoutMinutes": 30,
        "transactionLifetimeLimitSeconds": ctx.svc.sessions.transaction_lifetime().as_secs() as i64,
    };
    let want_all = matches!(ctx.cmd.get("getParameter"), Some(Bson::String(s)) if s == "*")
        || matches!(ctx.cmd.get("getParameter"), Some(Bson::Document(d)) if d.get_bool("allParameters").unwrap_or(false));
    if want_all {
        return Ok(all);
    }
    let mut out = Document::new();
    for (k, _) in ctx.cmd.iter().skip(1) {
        if let Some(v) = all.get(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    if out.is_empty() {
        return Err(crate::error::CommandError::new(
            crate::error::ErrorCode::InvalidOptions,
            "no option found to get",
        ));
    }
    Ok(out)
}

pub async fn whatsmyuri(ctx: &Ctx<'_>) -> Result<Document> {
    Ok(doc! {"you": ctx.conn.peer.to_string()})
}

pub async fn connection_status(ctx: &Ctx<'_>) -> Result<Document> {
    let user = ctx.conn.auth().user.clone();
    let (users, roles) = match user.as_ref().and_then(|u| ctx.svc.users.get(u)) {
        Some(u) => (
            vec![Bson::Document(
                doc! {"user": u.id.name.as_str(), "db": u.id.db.as_str()},
            )],
            u.roles
                .iter()
                .map(|g| Bson::Document(g.to_doc()))
                .collect::<Vec<_>>(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(doc! {"authInfo": {"authenticatedUsers": users, "authenticatedUserRoles": roles}})
}

pub async fn server_status(ctx: &Ctx<'_>) -> Result<Document> {
    let m = &ctx.svc.metrics;
    Ok(doc! {
        "host": hostname(),
        "version": VERSION,
        "process": "argon-sidecar",
        "pid": std::process::id() as i64,
        "uptime": ctx.svc.started.elapsed().as_secs() as i64,
        "uptimeMillis": ctx.svc.started.elapsed().as_millis() as i64,
        "localTime": bson::DateTime::now(),
        "connections": {
            "current": m.connections_open.get() as i32,
            "totalCreated": m.connections_total.get() as i64,
        },
        "metrics": {"cursor": {"open": {"total": ctx.svc.cursors.len() as i64}}},
        "argon": {"project": ctx.svc.wal.project(), "defaultBranch": ctx.svc.default_branch.clone()},
    })
}

pub async fn host_info(_: &Ctx<'_>) -> Result<Document> {
    Ok(doc! {
        "system": {
            "hostname": hostname(),
            "numCores": std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1),
            "cpuArch": std::env::consts::ARCH,
        },
        "os": {"type": std::env::consts::OS, "name": std::env::consts::OS},
        "extra": {},
    })
}

/// The command line with every credential in it masked: a connection
/// string's user and password (`--store mongodb://u:p@h`, in any argument
/// form) never leave the process.
pub async fn get_cmd_line_opts(_: &Ctx<'_>) -> Result<Document> {
    let argv: Vec<String> = std::env::args()
        .map(|a| crate::config::redact_argument(&a))
        .collect();
    Ok(doc! {"argv": argv, "parsed": {}})
}

pub async fn get_log(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("getLog")?;
    Ok(doc! {"totalLinesWritten": 0, "log": []})
}

pub async fn list_commands(ctx: &Ctx<'_>) -> Result<Document> {
    let mut cmds = Document::new();
    for c in super::COMMANDS
        .iter()
        .filter(|c| super::available(ctx.svc, c))
    {
        let requires_auth = crate::auth::authorize::required(
            c.name,
            "admin",
            &Document::new(),
            &ctx.svc.default_branch,
        )
        .map_or(true, |needs| needs != [crate::auth::roles::Privilege::None]);
        cmds.insert(
            c.name,
            doc! {"help": "", "requiresAuth": requires_auth, "secondaryOk": true, "adminOnly": false},
        );
    }
    Ok(doc! {"commands": cmds})
}

/// Sessions hold no server state beyond retryable-write replies, which
/// expire by count; ending them is an acknowledgement.
/// `endSessions` / `killSessions`: forgets the sessions and aborts their
/// transactions.
pub async fn end_sessions(ctx: &Ctx<'_>) -> Result<Document> {
    let name = ctx.cmd.keys().next().cloned().unwrap_or_default();
    let Some(Bson::Array(list)) = ctx.cmd.get(&name) else {
        return Err(crate::error::CommandError::type_mismatch(format!(
            "BSON field '{name}' must be an array of session ids"
        )));
    };
    let ids = list.iter().filter_map(|v| match v {
        Bson::Document(d) => crate::session::session_id_of(d),
        _ => None,
    });
    ctx.svc.sessions.end(ids);
    Ok(Document::new())
}

/// `killAllSessions: []`: forgets every session and aborts its
/// transaction (test runners call it before each test). Killing only some
/// users' sessions is refused: sessions here do not record their user.
pub async fn kill_all_sessions(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("killAllSessions")?;
    match ctx.cmd.get("killAllSessions") {
        Some(Bson::Array(users)) if users.is_empty() => {}
        Some(Bson::Array(_)) => {
            return Err(crate::error::CommandError::new(
                crate::error::ErrorCode::CommandNotSupported,
                "killAllSessions of given users is not supported: sessions do not record their user; give [] to kill all",
            ));
        }
        _ => {
            return Err(crate::error::CommandError::type_mismatch(
                "BSON field 'killAllSessions' must be an array of users",
            ));
        }
    }
    for key in ctx.cmd.keys().skip(1) {
        if !super::GENERIC_FIELDS.contains(&key.as_str()) {
            return Err(crate::error::CommandError::new(
                crate::error::ErrorCode::Location40415,
                format!("BSON field 'killAllSessions.{key}' is an unknown field."),
            ));
        }
    }
    ctx.svc.sessions.end_all();
    Ok(Document::new())
}

pub async fn start_session(_: &Ctx<'_>) -> Result<Document> {
    let id = bson::Binary {
        subtype: bson::spec::BinarySubtype::Uuid,
        bytes: bson::uuid::Uuid::new().bytes().to_vec(),
    };
    Ok(doc! {"id": {"id": id}, "timeoutMinutes": 30})
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}
