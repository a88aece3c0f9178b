//! `configureFailPoint` and the `failCommand` fail point against the real
//! binary: refused without `--enable-test-commands` (and never set by the
//! operator or the chart), hostile configurations refused one by one with
//! MongoDB's codes while the server keeps answering and no fail point is
//! left set, and where the fail point applies as on mongod: before the
//! command runs (nothing written, a retry key not used, a transaction not
//! aborted), before authorization, the labels it gives or the server
//! computes, a closed connection, a write concern error after the write.

use crate::common;

use std::path::Path;

use argon_sidecar::wire::message::encode_op_msg;
use bson::{Bson, Document, doc};
use common::RawClient;
use common::sidecar::Sidecar;

const PASSWORD: &str = "Fail-point_test.password";

async fn start(dir: &Path, extra: &[&str]) -> Sidecar {
    let data = dir.join("wal").display().to_string();
    let mut args = vec!["--data", data.as_str()];
    args.extend_from_slice(extra);
    Sidecar::start("argon-sidecar-failpoint", &args)
        .await
        .expect("argon-sidecar starts")
}

async fn raw(s: &Sidecar) -> RawClient {
    RawClient::connect(([127, 0, 0, 1], s.port).into()).await
}

fn code(reply: &Document) -> Option<i32> {
    reply.get_i32("code").ok()
}

fn labels(reply: &Document) -> Vec<String> {
    reply
        .get_array("errorLabels")
        .map(|a| {
            a.iter()
                .filter_map(Bson::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn configure(mode: Bson, data: Document) -> Document {
    doc! {"configureFailPoint": "failCommand", "mode": mode, "data": data, "$db": "admin"}
}

fn off() -> Document {
    doc! {"configureFailPoint": "failCommand", "mode": "off", "$db": "admin"}
}

fn lsid(byte: u8) -> Document {
    doc! {"id": bson::Binary {subtype: bson::spec::BinarySubtype::Uuid, bytes: vec![byte; 16]}}
}

fn ok(reply: &Document) -> bool {
    reply.get_f64("ok").ok() == Some(1.0)
}

async fn count(c: &mut RawClient, db: &str, coll: &str) -> i32 {
    let r = c.command(doc! {"count": coll, "$db": db}).await;
    assert!(ok(&r), "{r}");
    r.get_i32("n").expect("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_without_the_switch() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let plain = start(dir.path(), &[]).await;
    let mut c = raw(&plain).await;
    let r = c
        .command(configure(
            Bson::String("alwaysOn".into()),
            doc! {"failCommands": ["ping"], "errorCode": 8},
        ))
        .await;
    assert_eq!(
        code(&r),
        Some(59),
        "an unknown command without the switch: {r}"
    );
    assert_eq!(r.get_str("codeName").ok(), Some("CommandNotFound"));
    let r = c.command(doc! {"listCommands": 1, "$db": "admin"}).await;
    assert!(
        !r.get_document("commands")
            .expect("commands")
            .contains_key("configureFailPoint"),
        "not listed without the switch"
    );
    let r = c.command(doc! {"ping": 1, "$db": "admin"}).await;
    assert!(ok(&r), "nothing was set: {r}");
    drop(plain);

    // The environment variable is the flag's other spelling.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let env = Sidecar::start_with_env(
        "argon-sidecar-failpoint-env",
        &["--data", &data],
        &[("ARGON_ENABLE_TEST_COMMANDS", "true")],
    )
    .await
    .expect("argon-sidecar starts");
    let mut c = raw(&env).await;
    let r = c.command(off()).await;
    assert!(ok(&r), "{r}");
    // Only on admin, as mongod.
    let mut on_app = off();
    on_app.insert("$db", "app");
    let r = c.command(on_app).await;
    assert_eq!(code(&r), Some(13), "{r}");
}

/// The operator and the chart never turn test commands on: an endpoint or
/// an injected sidecar with them would let any client break the others.
#[test]
fn operator_and_chart_never_enable_test_commands() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut stack = vec![
        root.join("operator"),
        root.join("charts"),
        root.join("crds"),
    ];
    let mut seen = 0;
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("a readable directory") {
                stack.push(entry.expect("a directory entry").path());
            }
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        seen += 1;
        for needle in ["ARGON_ENABLE_TEST_COMMANDS", "enable-test-commands"] {
            assert!(
                !text.contains(needle),
                "{} mentions {needle}: test commands must never be enabled by the operator or the chart",
                path.display()
            );
        }
    }
    assert!(
        seen > 10,
        "the operator and chart sources were found ({seen} files)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_configurations_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = start(dir.path(), &["--enable-test-commands"]).await;
    let mut c = raw(&s).await;
    let fails = |code| doc! {"failCommands": ["insert"], "errorCode": code};
    let many: Vec<Bson> = (0..1001).map(|i| Bson::String(format!("c{i}"))).collect();
    let mut deep = doc! {"x": 1};
    for _ in 0..90 {
        deep = doc! {"x": deep};
    }
    let cases: Vec<(&str, Document, i32)> = vec![
        (
            "no mode",
            doc! {"configureFailPoint": "failCommand", "data": fails(8), "$db": "admin"},
            20,
        ),
        ("unknown mode", configure("sometimes".into(), fails(8)), 2),
        (
            "mode of a wrong type",
            configure(Bson::Int32(1), fails(8)),
            14,
        ),
        ("empty mode", configure(doc! {}.into(), fails(8)), 2),
        (
            "two modes",
            configure(doc! {"times": 1, "skip": 1}.into(), fails(8)),
            2,
        ),
        (
            "unknown mode field",
            configure(doc! {"often": 1}.into(), fails(8)),
            2,
        ),
        (
            "negative times",
            configure(doc! {"times": -1}.into(), fails(8)),
            2,
        ),
        (
            "times past i32",
            configure(doc! {"times": 1i64 << 31}.into(), fails(8)),
            2,
        ),
        (
            "huge times",
            configure(doc! {"times": i64::MAX}.into(), fails(8)),
            2,
        ),
        (
            "times a string",
            configure(doc! {"times": "1"}.into(), fails(8)),
            14,
        ),
        (
            "fractional times",
            configure(doc! {"times": 1.5}.into(), fails(8)),
            14,
        ),
        (
            "NaN times",
            configure(doc! {"times": f64::NAN}.into(), fails(8)),
            14,
        ),
        (
            "negative skip",
            configure(doc! {"skip": -3}.into(), fails(8)),
            2,
        ),
        (
            "probability over 1",
            configure(doc! {"activationProbability": 2.0}.into(), fails(8)),
            2,
        ),
        (
            "negative probability",
            configure(doc! {"activationProbability": -0.1}.into(), fails(8)),
            2,
        ),
        (
            "NaN probability",
            configure(doc! {"activationProbability": f64::NAN}.into(), fails(8)),
            2,
        ),
        (
            "probability a string",
            configure(doc! {"activationProbability": "x"}.into(), fails(8)),
            14,
        ),
        (
            "data not a document",
            doc! {"configureFailPoint": "failCommand", "mode": "alwaysOn", "data": [1], "$db": "admin"},
            14,
        ),
        (
            "unknown data field",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "bogus": 1},
            ),
            40415,
        ),
        (
            "deep unknown data field",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "deep": deep},
            ),
            40415,
        ),
        (
            "data field known but not implemented",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "threadName": "conn1"},
            ),
            115,
        ),
        (
            "namespace filter not implemented",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "namespace": "a.b"},
            ),
            115,
        ),
        (
            "unknown command field",
            doc! {"configureFailPoint": "failCommand", "mode": "off", "extra": 1, "$db": "admin"},
            40415,
        ),
        (
            "another fail point",
            doc! {"configureFailPoint": "onPrimaryTransactionalWrite", "mode": "alwaysOn", "$db": "admin"},
            266,
        ),
        (
            "fail point name not a string",
            doc! {"configureFailPoint": 1, "mode": "off", "$db": "admin"},
            14,
        ),
        (
            "failCommands not an array",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": "insert", "errorCode": 8},
            ),
            14,
        ),
        (
            "failCommands of numbers",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": [1], "errorCode": 8},
            ),
            14,
        ),
        (
            "too many failCommands",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": many, "errorCode": 8},
            ),
            2,
        ),
        (
            "errorCode a string",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "errorCode": "8"},
            ),
            14,
        ),
        (
            "errorCode past i32",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "errorCode": 1i64 << 40},
            ),
            2,
        ),
        (
            "errorCode 0",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "errorCode": 0},
            ),
            2,
        ),
        (
            "errorLabels of numbers",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "errorCode": 8, "errorLabels": [7]},
            ),
            14,
        ),
        (
            "closeConnection not a bool",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "closeConnection": 1},
            ),
            14,
        ),
        (
            "writeConcernError without a code",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "writeConcernError": {"errmsg": "x"}},
            ),
            2,
        ),
        (
            "writeConcernError not a document",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "writeConcernError": 91},
            ),
            14,
        ),
        (
            "blockConnection without blockTimeMS",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "blockConnection": true},
            ),
            72,
        ),
        (
            "negative blockTimeMS",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "blockConnection": true, "blockTimeMS": -1},
            ),
            72,
        ),
        (
            "blockTimeMS over a day",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "blockConnection": true, "blockTimeMS": i64::MAX},
            ),
            2,
        ),
        (
            "blockTimeMS a string",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "blockConnection": true, "blockTimeMS": "10"},
            ),
            14,
        ),
        (
            "appName not a string",
            configure(
                "alwaysOn".into(),
                doc! {"failCommands": ["insert"], "errorCode": 8, "appName": 1},
            ),
            14,
        ),
    ];
    let n = cases.len() as i32;
    for (what, cmd, expected) in cases {
        let r = c.command(cmd).await;
        assert_eq!(code(&r), Some(expected), "{what}: {r}");
        // A refused configuration sets nothing: writes still work.
        let r = c
            .command(doc! {"insert": "t", "documents": [{}], "$db": "app"})
            .await;
        assert!(ok(&r) && r.get_i32("n").ok() == Some(1), "{what}: then {r}");
    }
    assert_eq!(count(&mut c, "app", "t").await, n);
    // times: 0 and skip past i32 are the edges of what is taken.
    let r = c
        .command(configure(
            doc! {"times": 0}.into(),
            doc! {"failCommands": ["insert"], "errorCode": 8},
        ))
        .await;
    assert!(ok(&r), "{r}");
    let r = c
        .command(doc! {"insert": "t", "documents": [{}], "$db": "app"})
        .await;
    assert!(ok(&r), "times: 0 never fires: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_command_applies_before_the_command_as_on_mongod() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = start(dir.path(), &["--enable-test-commands"]).await;
    let mut c = raw(&s).await;

    // times: 2 with the server's labels: a retryable write gets
    // RetryableWriteError for a retriable code; nothing is written, and the
    // retry key stays unused, so the same write then applies once.
    let r = c
        .command(configure(
            doc! {"times": 2}.into(),
            doc! {"failCommands": ["insert"], "errorCode": 91},
        ))
        .await;
    assert_eq!(r.get_i64("count").ok(), Some(0), "{r}");
    let write = doc! {"insert": "w", "documents": [{"_id": 1}], "lsid": lsid(1), "txnNumber": 1i64, "$db": "app"};
    for _ in 0..2 {
        let r = c.command(write.clone()).await;
        assert_eq!(code(&r), Some(91), "{r}");
        assert_eq!(r.get_str("codeName").ok(), Some("ShutdownInProgress"));
        assert_eq!(labels(&r), ["RetryableWriteError"], "{r}");
    }
    let r = c.command(doc! {"find": "w", "$db": "app"}).await;
    assert!(ok(&r), "another command is not failed: {r}");
    let r = c.command(write.clone()).await;
    assert!(
        ok(&r) && r.get_i32("n").ok() == Some(1),
        "the third attempt applies: {r}"
    );
    let r = c.command(write.clone()).await;
    assert!(
        ok(&r) && r.get_i32("n").ok() == Some(1),
        "a retry is answered: {r}"
    );
    assert_eq!(count(&mut c, "app", "w").await, 1);
    let r = c.command(off()).await;
    assert_eq!(r.get_i64("count").ok(), Some(2), "the hits: {r}");

    // Given labels replace the computed ones, even with none; a code
    // without a MongoDB name is `Location<code>`.
    let r = c
        .command(configure(
            "alwaysOn".into(),
            doc! {"failCommands": ["insert"], "errorCode": 91, "errorLabels": []},
        ))
        .await;
    assert!(ok(&r), "{r}");
    let mut next = write.clone();
    next.insert("txnNumber", 2i64);
    let r = c.command(next.clone()).await;
    assert_eq!(code(&r), Some(91));
    assert!(labels(&r).is_empty(), "{r}");
    c.command(configure(
        "alwaysOn".into(),
        doc! {"failCommands": ["insert"], "errorCode": 4_242_424, "errorLabels": ["Custom"]},
    ))
    .await;
    let r = c.command(next.clone()).await;
    assert_eq!(r.get_str("codeName").ok(), Some("Location4242424"), "{r}");
    assert_eq!(labels(&r), ["Custom"]);
    c.command(off()).await;

    // skip: the first goes through.
    c.command(configure(
        doc! {"skip": 1}.into(),
        doc! {"failCommands": ["findAndModify"], "errorCode": 8},
    ))
    .await;
    let fam = doc! {"findandmodify": "w", "query": {"_id": 1}, "update": {"$set": {"a": 1}}, "$db": "app"};
    assert!(ok(&c.command(fam.clone()).await));
    assert_eq!(
        code(&c.command(fam.clone()).await),
        Some(8),
        "an alias is the same command"
    );
    c.command(off()).await;

    // writeConcernError alone: the write is applied, then the error added.
    c.command(configure(doc! {"times": 1}.into(), doc! {"failCommands": ["insert"], "writeConcernError": {"code": 91, "errmsg": "Replication is being shut down"}}))
        .await;
    let r = c
        .command(doc! {"insert": "w", "documents": [{"_id": 2}], "lsid": lsid(1), "txnNumber": 3i64, "$db": "app"})
        .await;
    assert!(ok(&r), "{r}");
    assert_eq!(
        r.get_document("writeConcernError")
            .ok()
            .and_then(|w| w.get_i32("code").ok()),
        Some(91),
        "{r}"
    );
    assert_eq!(labels(&r), ["RetryableWriteError"], "{r}");
    assert_eq!(count(&mut c, "app", "w").await, 2);

    // closeConnection: no reply, the connection is gone; others go on.
    c.command(configure(
        doc! {"times": 1}.into(),
        doc! {"failCommands": ["delete"], "closeConnection": true},
    ))
    .await;
    let mut victim = raw(&s).await;
    let delete = doc! {"delete": "w", "deletes": [{"q": {}, "limit": 0}], "$db": "app"};
    victim
        .send_bytes(&encode_op_msg(2, 0, &delete, &[]))
        .await
        .expect("send");
    if let Some(r) = victim.read_reply().await {
        panic!("a reply on a connection the fail point closes: {r}");
    }
    assert_eq!(count(&mut c, "app", "w").await, 2, "the delete never ran");

    // appName: only that application's connections.
    c.command(configure(
        "alwaysOn".into(),
        doc! {"failCommands": ["count"], "errorCode": 8, "appName": "other"},
    ))
    .await;
    assert_eq!(count(&mut c, "app", "w").await, 2);
    let mut other = raw(&s).await;
    let r = other
        .command(doc! {"hello": 1, "client": {"application": {"name": "other"}, "driver": {"name": "raw", "version": "0"}}, "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    let r = other.command(doc! {"count": "w", "$db": "app"}).await;
    assert_eq!(code(&r), Some(8), "{r}");
    c.command(off()).await;

    // blockConnection without an error: the command waits, then runs.
    c.command(configure(
        doc! {"times": 1}.into(),
        doc! {"failCommands": ["insert"], "blockConnection": true, "blockTimeMS": 50},
    ))
    .await;
    let r = c
        .command(doc! {"insert": "w", "documents": [{"_id": 3}], "$db": "app"})
        .await;
    assert!(ok(&r), "{r}");
    assert_eq!(count(&mut c, "app", "w").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_leaves_its_transaction_open() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = start(dir.path(), &["--enable-test-commands"]).await;
    let mut c = raw(&s).await;
    let stmt = |body: Document, start: bool| {
        let mut d = body;
        d.insert("lsid", lsid(7));
        d.insert("txnNumber", 1i64);
        d.insert("autocommit", false);
        if start {
            d.insert("startTransaction", true);
        }
        d
    };
    let r = c
        .command(stmt(
            doc! {"insert": "t", "documents": [{"_id": 1}], "$db": "app"},
            true,
        ))
        .await;
    assert!(ok(&r), "{r}");
    c.command(configure(
        doc! {"times": 1}.into(),
        doc! {"failCommands": ["insert"], "errorCode": 10107},
    ))
    .await;
    let r = c
        .command(stmt(
            doc! {"insert": "t", "documents": [{"_id": 2}], "$db": "app"},
            false,
        ))
        .await;
    assert_eq!(code(&r), Some(10107), "{r}");
    // In a transaction a retriable code is transient.
    assert_eq!(labels(&r), ["TransientTransactionError"], "{r}");
    // The fail point stopped the statement before it reached the
    // transaction: it is still open, and commits what it did.
    let r = c
        .command(stmt(
            doc! {"insert": "t", "documents": [{"_id": 3}], "$db": "app"},
            false,
        ))
        .await;
    assert!(ok(&r), "{r}");
    let r = c
        .command(stmt(doc! {"commitTransaction": 1, "$db": "admin"}, false))
        .await;
    assert!(ok(&r), "{r}");
    assert_eq!(count(&mut c, "app", "t").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_it_needs_root_and_applies_before_authorization() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = start(dir.path(), &["--auth", "--enable-test-commands"]).await;
    let mut anon = raw(&s).await;
    let r = anon.command(off()).await;
    assert_eq!(code(&r), Some(13), "unauthenticated: {r}");
    let r = anon
        .command(doc! {"createUser": "root", "pwd": PASSWORD, "roles": ["root"], "$db": "admin"})
        .await;
    assert!(ok(&r), "{r}");
    let root = mongodb::Client::with_uri_str(format!(
        "mongodb://root:{PASSWORD}@127.0.0.1:{}/?directConnection=true&authSource=admin",
        s.port
    ))
    .await
    .expect("a driver client");
    root.database("admin")
        .run_command(doc! {"configureFailPoint": "failCommand", "mode": {"times": 1}, "data": {"failCommands": ["find"], "errorCode": 8}})
        .await
        .expect("root configures the fail point");
    // As on mongod, the fail point acts before authorization is checked.
    let r = anon.command(doc! {"find": "x", "$db": "app"}).await;
    assert_eq!(code(&r), Some(8), "{r}");
    let r = anon.command(doc! {"find": "x", "$db": "app"}).await;
    assert_eq!(code(&r), Some(13), "then the usual refusal: {r}");
}
