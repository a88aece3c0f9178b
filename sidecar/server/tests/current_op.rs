//! `currentOp`, `$currentOp` and `killOp` against the real binary: a
//! command in flight is listed (from another connection) with its
//! credentials never shown, a filter and the aggregation stage see the
//! same, a killed scan fails with `Interrupted` (11601) while the server
//! keeps serving, and hostile arguments get MongoDB's codes. A command is
//! held in flight by the `failCommand` fail point's `blockConnection`
//! (`--enable-test-commands`), so nothing depends on timing.

mod common;

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
            "$all: true",
            doc! {"currentOp": 1, "$all": true, "$db": "admin"},
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
            "$currentOp idleConnections",
            doc! {"aggregate": 1, "pipeline": [{"$currentOp": {"idleConnections": true}}], "cursor": {}, "$db": "admin"},
            115,
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
