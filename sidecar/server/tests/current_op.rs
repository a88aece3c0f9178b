//! `currentOp`, `$currentOp` and `killOp` against the real binary: a
//! command in flight is listed (from another connection) with its
//! credentials never shown, a filter and the aggregation stage see the
//! same, a killed scan fails with `Interrupted` (11601) while the server
//! keeps serving, and hostile arguments get MongoDB's codes. A command is
//! held in flight by the `failCommand` fail point's `blockConnection`
//! (`--enable-test-commands`), so nothing depends on timing.

use crate::common;

use bson::{Bson, Document, doc};
use common::RawClient;
use common::sidecar::Sidecar;
use std::time::Duration;

const SECRET: &str = "Current-op_secret.password";

async fn raw(s: &Sidecar) -> RawClient {
    RawClient::connect(([127, 0, 0, 1], s.port).into()).await
}

fn ok(r: &Document) -> bool {
    r.get_f64("ok").ok() == Some(1.0)
}

/// The `inprog` documents of `currentOp` (with `filter` added).
async fn in_progress(c: &mut RawClient, filter: Document) -> Vec<Document> {
    let mut cmd = doc! {"currentOp": 1, "$db": "admin"};
    cmd.extend(filter);
    let r = c.command(cmd).await;
    assert!(ok(&r), "{r}");
    r.get_array("inprog")
        .expect("inprog")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect()
}

/// The documents of a `$currentOp` stage with `spec`.
async fn stage(c: &mut RawClient, spec: Document) -> Vec<Document> {
    let r = c
        .command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": spec}], "cursor": {"batchSize": 10_000}, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    r.get_document("cursor")
        .and_then(|c| c.get_array("firstBatch"))
        .expect("a first batch")
        .iter()
        .filter_map(|d| d.as_document().cloned())
        .collect()
}

fn of_type<'a>(listed: &'a [Document], kind: &str) -> Vec<&'a Document> {
    listed
        .iter()
        .filter(|d| d.get_str("type").ok() == Some(kind))
        .collect()
}

/// Waits until an operation whose command has `field` is listed.
async fn wait_for(c: &mut RawClient, field: &str) -> Document {
    for _ in 0..200 {
        let ops = in_progress(c, doc! {}).await;
        if let Some(op) = ops.into_iter().find(|o| {
            o.get_document("command")
                .is_ok_and(|c| c.contains_key(field))
        }) {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {field} operation was listed");
}

#[tokio::test]
async fn operations_in_flight_are_listed_without_credentials_and_can_be_killed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start(
        "argon-sidecar-current-op",
        &["--data", data.as_str(), "--enable-test-commands"],
    )
    .await
    .expect("argon-sidecar starts");
    let mut admin = raw(&s).await;
    let docs: Vec<Bson> = (0..2_000).map(|i| Bson::Document(doc! {"x": i})).collect();
    let r = admin
        .command(doc! {"insert": "t", "documents": docs, "$db": "app"})
        .await;
    assert!(ok(&r), "{r}");
    let r = admin
        .command(doc! {"configureFailPoint": "failCommand", "mode": "alwaysOn", "data": {
            "failCommands": ["createUser", "count"], "blockConnection": true, "blockTimeMS": 1500,
        }, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");

    let mut c1 = raw(&s).await;
    let create = tokio::spawn(async move {
        c1.command(doc! {"createUser": "u1", "pwd": SECRET, "roles": [], "$db": "admin"})
            .await
    });
    let mut c2 = raw(&s).await;
    let count = tokio::spawn(async move {
        c2.command(doc! {"count": "t", "query": {"x": {"$gte": 0}}, "$db": "app"})
            .await
    });

    let user_op = wait_for(&mut admin, "createUser").await;
    let count_op = wait_for(&mut admin, "count").await;
    assert_eq!(count_op.get_str("ns").unwrap(), "app.t");
    assert_eq!(count_op.get_str("op").unwrap(), "command");
    assert!(count_op.get_bool("active").unwrap());
    assert_eq!(
        user_op
            .get_document("command")
            .unwrap()
            .get_str("pwd")
            .unwrap(),
        "###"
    );
    // Nowhere in any listing: the command, the filter, the stage.
    let everything = in_progress(&mut admin, doc! {}).await;
    assert!(!format!("{everything:?}").contains(SECRET));
    let only = in_progress(&mut admin, doc! {"command.count": "t"}).await;
    assert_eq!(only.len(), 1, "{only:?}");
    let by_pwd = in_progress(&mut admin, doc! {"command.pwd": SECRET}).await;
    assert!(by_pwd.is_empty(), "a filter cannot probe for the password");
    let r = admin
        .command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"allUsers": true}}, {"$match": {"ns": "app.t"}}], "cursor": {}, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    let batch = r
        .get_document("cursor")
        .unwrap()
        .get_array("firstBatch")
        .unwrap();
    assert_eq!(batch.len(), 1, "{r}");
    assert!(!r.to_string().contains(SECRET));
    let everything = stage(
        &mut admin,
        doc! {"allUsers": true, "idleConnections": true, "idleCursors": true, "idleSessions": true},
    )
    .await;
    assert!(
        !format!("{everything:?}").contains(SECRET),
        "{everything:?}"
    );
    let r = admin
        .command(doc! {"currentOp": 1, "$all": true, "$db": "admin"})
        .await;
    assert!(ok(&r) && !r.to_string().contains(SECRET), "{r}");

    // Killed while blocked: its scan stops at its first deadline check.
    let opid = count_op.get_i64("opid").unwrap();
    let r = admin
        .command(doc! {"killOp": 1, "op": opid, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    let counted = count.await.unwrap();
    assert_eq!(counted.get_i32("code").ok(), Some(11601), "{counted}");
    let created = create.await.unwrap();
    assert!(ok(&created), "the other operation ran: {created}");
    // Nothing is left listed but the listing itself; the server serves on.
    let r = admin
        .command(doc! {"configureFailPoint": "failCommand", "mode": "off", "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    let left = in_progress(&mut admin, doc! {}).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0]
            .get_document("command")
            .unwrap()
            .contains_key("currentOp")
    );
    let r = admin.command(doc! {"count": "t", "$db": "app"}).await;
    assert_eq!(r.get_i32("n").ok(), Some(2_000), "{r}");
    // Killing what no longer runs answers ok, as mongod does.
    let r = admin
        .command(doc! {"killOp": 1, "op": opid, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
}

#[tokio::test]
async fn hostile_arguments_get_mongodb_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start("argon-sidecar-current-op", &["--data", data.as_str()])
        .await
        .expect("argon-sidecar starts");
    let mut c = raw(&s).await;
    let cases: Vec<(&str, Document, i32)> = vec![
        (
            "currentOp off admin",
            doc! {"currentOp": 1, "$db": "app"},
            13,
        ),
        (
            "killOp off admin",
            doc! {"killOp": 1, "op": 1, "$db": "app"},
            13,
        ),
        ("killOp without op", doc! {"killOp": 1, "$db": "admin"}, 9),
        (
            "killOp op a string",
            doc! {"killOp": 1, "op": "x", "$db": "admin"},
            14,
        ),
        (
            "killOp unknown field",
            doc! {"killOp": 1, "op": 1, "x": 1, "$db": "admin"},
            40415,
        ),
        (
            "$ownOps not a bool",
            doc! {"currentOp": 1, "$ownOps": 1, "$db": "admin"},
            14,
        ),
        (
            "$all not a bool",
            doc! {"currentOp": 1, "$all": 1, "$db": "admin"},
            14,
        ),
        (
            "$truncateOps",
            doc! {"currentOp": 1, "$truncateOps": true, "$db": "admin"},
            115,
        ),
        (
            "a bad filter",
            doc! {"currentOp": 1, "ns": {"$bogus": 1}, "$db": "admin"},
            2,
        ),
        (
            "$currentOp off admin",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {}}], "cursor": {}, "$db": "app"},
            73,
        ),
        (
            "$currentOp unknown option",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"x": 1}}], "cursor": {}, "$db": "admin"},
            40415,
        ),
        (
            "$currentOp idleCursors: 1",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"idleCursors": 1}}], "cursor": {}, "$db": "admin"},
            14,
        ),
        (
            "$currentOp idleConnections a string",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"idleConnections": "yes"}}], "cursor": {}, "$db": "admin"},
            14,
        ),
        (
            "$currentOp idleSessions null",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"idleSessions": null}}], "cursor": {}, "$db": "admin"},
            14,
        ),
        (
            "$currentOp backtrace: true",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"backtrace": true}}], "cursor": {}, "$db": "admin"},
            115,
        ),
        (
            "$currentOp truncateOps",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"truncateOps": false}}], "cursor": {}, "$db": "admin"},
            115,
        ),
        (
            "$currentOp targetAllNodes",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"targetAllNodes": true}}], "cursor": {}, "$db": "admin"},
            115,
        ),
        (
            "$currentOp an unknown idle flag",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"idleThreads": true}}], "cursor": {}, "$db": "admin"},
            40415,
        ),
        (
            "$currentOp not an object",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": 1}], "cursor": {}, "$db": "admin"},
            14,
        ),
    ];
    for (what, cmd, expected) in cases {
        let r = c.command(cmd).await;
        assert_eq!(r.get_i32("code").ok(), Some(expected), "{what}: {r}");
    }
    // A deep filter is refused like any query's, and the server answers on.
    let mut deep = doc! {"ns": "x"};
    for _ in 0..200 {
        deep = doc! {"$and": [deep]};
    }
    let mut cmd = doc! {"currentOp": 1, "$db": "admin"};
    cmd.extend(deep);
    let r = c.command(cmd).await;
    assert!(r.get_i32("code").is_ok(), "{r}");
    let r = c.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert!(ok(&r), "{r}");
}

fn driver_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// With `--auth`: a user sees and kills only its own operations; everyone's
/// need the monitor privilege (root here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_kill_only_their_own_operations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start(
        "argon-sidecar-current-op",
        &["--data", data.as_str(), "--auth", "--enable-test-commands"],
    )
    .await
    .expect("argon-sidecar starts");
    let uri = |user: &str| {
        format!(
            "mongodb://{user}:{SECRET}@127.0.0.1:{}/?directConnection=true&authSource=admin",
            s.port
        )
    };
    let anon = s.client().await.expect("a client");
    anon.database("admin")
        .run_command(doc! {"createUser": "root", "pwd": SECRET, "roles": ["root"]})
        .await
        .expect("the first user");
    let root = mongodb::Client::with_uri_str(uri("root")).await.unwrap();
    root.database("admin")
        .run_command(doc! {"createUser": "dev", "pwd": SECRET, "roles": [{"role": "readWrite", "db": "app"}]})
        .await
        .expect("a second user");
    let dev = mongodb::Client::with_uri_str(uri("dev")).await.unwrap();
    let dev_admin = dev.database("admin");
    // Root's operation, held in flight.
    root.database("admin")
        .run_command(
            doc! {"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": {
                "failCommands": ["ping"], "blockConnection": true, "blockTimeMS": 1500,
            }},
        )
        .await
        .expect("a fail point");
    let held = {
        let root = root.clone();
        tokio::spawn(async move { root.database("app").run_command(doc! {"ping": 1}).await })
    };
    let mut root_ping = None;
    for _ in 0..200 {
        let r = root
            .database("admin")
            .run_command(doc! {"currentOp": 1, "command.ping": 1})
            .await
            .expect("root lists everyone's");
        if let Some(op) = r.get_array("inprog").unwrap().first() {
            root_ping = op.as_document().cloned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let root_ping = root_ping.expect("root's held ping is listed");
    let opid = root_ping.get_i64("opid").unwrap();
    assert_eq!(
        root_ping.get_array("effectiveUsers").unwrap()[0]
            .as_document()
            .unwrap()
            .get_str("user")
            .unwrap(),
        "root"
    );
    // dev: everyone's refused, its own listed, root's op not killable.
    let e = dev_admin
        .run_command(doc! {"currentOp": 1})
        .await
        .expect_err("everyone's operations");
    assert_eq!(driver_code(&e), Some(13));
    let own = dev_admin
        .run_command(doc! {"currentOp": 1, "$ownOps": true})
        .await
        .expect("its own operations");
    let own = own.get_array("inprog").unwrap();
    assert_eq!(own.len(), 1, "only this very currentOp: {own:?}");
    let e = dev_admin
        .run_command(
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"allUsers": true}}], "cursor": {}},
        )
        .await
        .expect_err("$currentOp of all users");
    assert_eq!(driver_code(&e), Some(13));
    let e = dev_admin
        .run_command(doc! {"killOp": 1, "op": opid})
        .await
        .expect_err("another user's operation");
    assert_eq!(driver_code(&e), Some(13));
    held.await.unwrap().expect("root's ping ran, not killed");
}

/// Idle connections, sessions holding an open transaction and open
/// cursors are listed when asked for (idle sessions by default), each as
/// mongod shows it, and no longer once they are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_sessions_and_cursors_are_listed_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start("argon-sidecar-current-op", &["--data", data.as_str()])
        .await
        .expect("argon-sidecar starts");
    let mut admin = raw(&s).await;
    let r = admin.command(doc! {"hello": 1, "$db": "admin"}).await;
    let admin_id = i64::from(r.get_i32("connectionId").unwrap());

    // A connection that said hello and now runs nothing.
    let mut idle = raw(&s).await;
    let r = idle
        .command(doc! {"hello": 1, "client": {"application": {"name": "idle-app"}}, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    let idle_id = i64::from(r.get_i32("connectionId").unwrap());
    let listed = stage(&mut admin, doc! {"idleConnections": true}).await;
    let conn = listed
        .iter()
        .find(|d| d.get_i64("connectionId").ok() == Some(idle_id))
        .unwrap_or_else(|| panic!("the idle connection is listed: {listed:?}"));
    assert_eq!(conn.get_str("type").unwrap(), "op");
    assert!(!conn.get_bool("active").unwrap());
    assert_eq!(conn.get_str("appName").unwrap(), "idle-app");
    assert_eq!(conn.get_str("desc").unwrap(), format!("conn{idle_id}"));
    assert!(conn.get_datetime("currentOpTime").is_ok());
    // The listing's own connection is active, not idle: listed once.
    let own: Vec<_> = listed
        .iter()
        .filter(|d| d.get_i64("connectionId").ok() == Some(admin_id))
        .collect();
    assert_eq!(own.len(), 1, "{listed:?}");
    assert!(own[0].get_bool("active").unwrap());
    let listed = stage(&mut admin, doc! {}).await;
    assert!(
        !listed
            .iter()
            .any(|d| d.get_i64("connectionId").ok() == Some(idle_id)),
        "{listed:?}"
    );
    let r = admin
        .command(doc! {"currentOp": 1, "$all": true, "connectionId": idle_id, "$db": "admin"})
        .await;
    assert_eq!(r.get_array("inprog").unwrap().len(), 1, "$all: {r}");
    drop(idle);
    let mut gone = false;
    for _ in 0..200 {
        let listed = stage(&mut admin, doc! {"idleConnections": true}).await;
        if !listed
            .iter()
            .any(|d| d.get_i64("connectionId").ok() == Some(idle_id))
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "a closed connection is no longer listed");

    // A transaction left open by the driver between statements.
    let client = s.client().await.expect("a client");
    let coll = client.database("app").collection::<Document>("t");
    coll.insert_many((0..5).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    let mut session = client.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    coll.insert_one(doc! {"_id": 100})
        .session(&mut session)
        .await
        .unwrap();
    let lsid_id = session.id().get("id").cloned().expect("lsid.id");
    let listed = stage(&mut admin, doc! {}).await;
    let sessions = of_type(&listed, "idleSession");
    assert_eq!(sessions.len(), 1, "listed by default: {listed:?}");
    let idle_session = sessions[0];
    assert!(!idle_session.get_bool("active").unwrap());
    assert_eq!(
        idle_session.get_str("desc").unwrap(),
        "inactive transaction"
    );
    assert_eq!(
        idle_session.get_document("lsid").unwrap().get("id"),
        Some(&lsid_id)
    );
    let txn = idle_session.get_document("transaction").unwrap();
    let parameters = txn.get_document("parameters").unwrap();
    // The driver's number (a pooled session may have counted before).
    assert!(parameters.get_i64("txnNumber").unwrap() >= 1);
    assert!(!parameters.get_bool("autocommit").unwrap());
    assert!(txn.get_i64("timeOpenMicros").unwrap() >= 0);
    assert!(txn.get_datetime("expiryTime").is_ok());
    assert!(idle_session.get_i64("connectionId").is_ok());
    let listed = stage(&mut admin, doc! {"idleSessions": false}).await;
    assert!(of_type(&listed, "idleSession").is_empty(), "{listed:?}");
    let r = admin
        .command(doc! {"currentOp": 1, "type": "idleSession", "$db": "admin"})
        .await;
    assert_eq!(
        r.get_array("inprog").unwrap().len(),
        1,
        "currentOp lists it: {r}"
    );
    session.abort_transaction().await.unwrap();
    let listed = stage(&mut admin, doc! {}).await;
    assert!(
        of_type(&listed, "idleSession").is_empty(),
        "ended: {listed:?}"
    );

    // A cursor left open after two batches.
    let mut reader = raw(&s).await;
    let r = reader
        .command(doc! {"find": "t", "filter": {}, "batchSize": 1, "$db": "app"})
        .await;
    let id = r.get_document("cursor").unwrap().get_i64("id").unwrap();
    assert_ne!(id, 0, "{r}");
    let r = reader
        .command(doc! {"getMore": id, "collection": "t", "batchSize": 2, "$db": "app"})
        .await;
    assert!(ok(&r), "{r}");
    let listed = stage(&mut admin, doc! {}).await;
    assert!(of_type(&listed, "idleCursor").is_empty(), "{listed:?}");
    let listed = stage(&mut admin, doc! {"idleCursors": true}).await;
    let cursors = of_type(&listed, "idleCursor");
    assert_eq!(cursors.len(), 1, "{listed:?}");
    assert_eq!(cursors[0].get_str("ns").unwrap(), "app.t");
    let cursor = cursors[0].get_document("cursor").unwrap();
    assert_eq!(cursor.get_i64("cursorId").unwrap(), id);
    assert_eq!(cursor.get_i64("nDocsReturned").unwrap(), 3);
    assert_eq!(cursor.get_i64("nBatchesReturned").unwrap(), 2);
    assert!(!cursor.get_bool("tailable").unwrap() && !cursor.get_bool("noCursorTimeout").unwrap());
    assert_eq!(
        cursor
            .get_document("originatingCommand")
            .unwrap()
            .get_str("find")
            .unwrap(),
        "t"
    );
    let r = reader
        .command(doc! {"killCursors": "t", "cursors": [id], "$db": "app"})
        .await;
    assert!(ok(&r), "{r}");
    let listed = stage(&mut admin, doc! {"idleCursors": true}).await;
    assert!(
        of_type(&listed, "idleCursor").is_empty(),
        "killed: {listed:?}"
    );
}

/// With `--auth`: a user's listing holds its own idle connections,
/// sessions and cursors only; root with `allUsers` sees everyone's, and
/// nothing shows a password or a SCRAM payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_own_idle_connections_sessions_and_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start(
        "argon-sidecar-current-op",
        &["--data", data.as_str(), "--auth"],
    )
    .await
    .expect("argon-sidecar starts");
    let uri = |user: &str| {
        format!(
            "mongodb://{user}:{SECRET}@127.0.0.1:{}/?directConnection=true&authSource=admin",
            s.port
        )
    };
    let anon = s.client().await.expect("a client");
    anon.database("admin")
        .run_command(doc! {"createUser": "root", "pwd": SECRET, "roles": ["root"]})
        .await
        .expect("the first user");
    let root = mongodb::Client::with_uri_str(uri("root")).await.unwrap();
    root.database("admin")
        .run_command(doc! {"createUser": "dev", "pwd": SECRET, "roles": [{"role": "readWrite", "db": "app"}]})
        .await
        .expect("a second user");
    let dev = mongodb::Client::with_uri_str(uri("dev")).await.unwrap();
    let app = dev.database("app");
    // Another client of dev's, whose logged-in connection stays idle.
    let dev_idle = mongodb::Client::with_uri_str(uri("dev")).await.unwrap();
    dev_idle
        .database("app")
        .run_command(doc! {"ping": 1})
        .await
        .unwrap();
    app.collection::<Document>("t")
        .insert_many((0..5).map(|i| doc! {"_id": i}))
        .await
        .unwrap();
    // One open cursor each, and a transaction of dev's left open.
    let open_cursor = |db: mongodb::Database| async move {
        let r = db
            .run_command(doc! {"find": "t", "batchSize": 1})
            .await
            .unwrap();
        r.get_document("cursor").unwrap().get_i64("id").unwrap()
    };
    let dev_cursor = open_cursor(app.clone()).await;
    let root_cursor = open_cursor(root.database("app")).await;
    let mut session = dev.start_session().await.unwrap();
    session.start_transaction().await.unwrap();
    app.collection::<Document>("t")
        .insert_one(doc! {"_id": 100})
        .session(&mut session)
        .await
        .unwrap();

    let list = |client: mongodb::Client, spec: Document| async move {
        let r = client
            .database("admin")
            .run_command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": spec}], "cursor": {"batchSize": 10_000}})
            .await
            .expect("a listing");
        r.get_document("cursor")
            .unwrap()
            .get_array("firstBatch")
            .unwrap()
            .iter()
            .filter_map(|d| d.as_document().cloned())
            .collect::<Vec<_>>()
    };
    let everything = doc! {"idleConnections": true, "idleCursors": true};
    let user_of = |d: &Document| {
        d.get_array("effectiveUsers")
            .ok()
            .and_then(|u| u.first())
            .and_then(|u| u.as_document())
            .and_then(|u| u.get_str("user").ok())
            .map(str::to_owned)
    };
    let cursor_ids = |listed: &[Document]| {
        let mut ids: Vec<i64> = of_type(listed, "idleCursor")
            .iter()
            .map(|d| {
                d.get_document("cursor")
                    .unwrap()
                    .get_i64("cursorId")
                    .unwrap()
            })
            .collect();
        ids.sort();
        ids
    };

    let mine = list(dev.clone(), everything.clone()).await;
    assert_eq!(cursor_ids(&mine), vec![dev_cursor], "{mine:?}");
    assert_eq!(of_type(&mine, "idleSession").len(), 1, "{mine:?}");
    let ops = of_type(&mine, "op");
    assert!(
        ops.iter().any(|d| !d.get_bool("active").unwrap()),
        "dev's idle connections: {mine:?}"
    );
    for d in ops.iter().chain(of_type(&mine, "idleSession").iter()) {
        assert_eq!(user_of(d).as_deref(), Some("dev"), "{d}");
    }
    let e = dev
        .database("admin")
        .run_command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"allUsers": true, "idleCursors": true}}], "cursor": {}})
        .await
        .expect_err("everyone's idle things");
    assert_eq!(driver_code(&e), Some(13));
    // A listing that reads a collection of admin's needs read on it.
    let e = dev
        .database("admin")
        .run_command(doc! {"aggregate": 1, "pipeline": [{"$currentOp": {}}, {"$lookup": {"from": "c", "pipeline": [], "as": "x"}}], "cursor": {}})
        .await
        .expect_err("a lookup in admin");
    assert_eq!(driver_code(&e), Some(13));

    let mut all_users = everything.clone();
    all_users.insert("allUsers", true);
    let all = list(root.clone(), all_users).await;
    let mut both = vec![dev_cursor, root_cursor];
    both.sort();
    assert_eq!(cursor_ids(&all), both, "{all:?}");
    assert_eq!(of_type(&all, "idleSession").len(), 1, "{all:?}");
    let idle_users: std::collections::HashSet<Option<String>> = of_type(&all, "op")
        .iter()
        .filter(|d| !d.get_bool("active").unwrap())
        .map(|d| user_of(d))
        .collect();
    assert!(idle_users.contains(&Some("dev".into())), "{all:?}");
    // Root's own listing without allUsers: its cursor, not dev's session.
    let roots = list(root.clone(), everything).await;
    assert_eq!(cursor_ids(&roots), vec![root_cursor], "{roots:?}");
    assert!(of_type(&roots, "idleSession").is_empty(), "{roots:?}");
    // Logins went through SCRAM on every connection listed: nothing of
    // the password (nor of its proofs) is in any listing.
    for listed in [&mine, &all, &roots] {
        let text = format!("{listed:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("payload"),
            "{text}"
        );
    }
    session.abort_transaction().await.unwrap();
}
