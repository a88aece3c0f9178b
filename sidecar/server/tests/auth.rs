//! Authentication and authorization against the real binary (`serve
//! --auth`) with real drivers: the localhost exception, SCRAM-SHA-256 and
//! SCRAM-SHA-1 from pymongo, the Node.js driver and the Rust driver,
//! branch-scoped roles, protected branches, users across a restart, and no
//! password in any output. Then hostile SASL traffic on the raw wire.

use crate::common;

use argon_sidecar::auth::scram::{self, Mechanism};
use argon_testkit::clients::{run_mongosh, run_node, run_python};
use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use common::sidecar::Sidecar;
use common::{RawClient, TestServer, code};

const PYTHON: &str = include_str!("scenarios/auth.py");
const NODE: &str = include_str!("scenarios/auth.js");
/// Only URI-safe characters, so it can go in a connection string as is.
const PASSWORD: &str = "Corr3ct-horse_battery.staple";

async fn start(data: &std::path::Path) -> Sidecar {
    let data = data.display().to_string();
    Sidecar::start("argon-sidecar-auth", &["--data", &data, "--auth"])
        .await
        .expect("the sidecar starts with --auth")
}

fn uri(s: &Sidecar, user: &str, password: &str) -> String {
    format!(
        "mongodb://{user}:{password}@127.0.0.1:{}/?directConnection=true&authSource=admin",
        s.port
    )
}

async fn client(uri: String) -> mongodb::Client {
    mongodb::Client::with_uri_str(uri)
        .await
        .expect("a driver client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_authenticate_and_roles_hold_across_a_restart() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal");
    let mut server = start(&data).await;

    // The localhost exception: the first user, then nothing more.
    let anon = server.client().await.expect("a client");
    let admin = anon.database("admin");
    admin
        .run_command(doc! {"createUser": "root", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect("the first user is created from 127.0.0.1 without credentials");
    let e = admin
        .run_command(doc! {"createUser": "again", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect_err("only the first user");
    assert_eq!(code(&e), Some(13));
    let e = anon
        .database("app")
        .run_command(doc! {"find": "things"})
        .await
        .expect_err("nothing before authentication");
    assert_eq!(code(&e), Some(13));

    // The Rust driver with both mechanisms.
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1"] {
        let c = client(format!(
            "{}&authMechanism={mech}",
            uri(&server, "root", PASSWORD)
        ))
        .await;
        c.database("app")
            .collection::<Document>("things")
            .insert_one(doc! {"rust": mech})
            .await
            .unwrap_or_else(|e| panic!("{mech}: {e}"));
    }
    let root = client(uri(&server, "root", PASSWORD)).await;
    let admin = root.database("admin");
    for user in [
        doc! {"createUser": "dev", "pwd": PASSWORD, "roles": [{"role": "readWrite", "branch": "preview-*"}]},
        doc! {"createUser": "ops", "pwd": PASSWORD, "roles": [{"role": "branchAdmin", "branch": "preview-*"}, {"role": "read", "branch": "*"}]},
    ] {
        admin.run_command(user).await.expect("createUser");
    }
    admin
        .run_command(doc! {"argonCreateBranch": "preview-1", "from": "main"})
        .await
        .expect("root creates a branch");

    let hostport = format!("127.0.0.1:{}", server.port);
    let out = tokio::task::spawn_blocking({
        let hostport = hostport.clone();
        move || run_python(PYTHON, &[&hostport, PASSWORD])
    })
    .await
    .expect("python runs")
    .unwrap_or_else(|e| panic!("pymongo: {e:#}\n{}", server_output_tail(&server)));
    assert_eq!(out.trim().lines().last(), Some("OK"), "pymongo: {out}");
    let out = tokio::task::spawn_blocking({
        let hostport = hostport.clone();
        move || {
            run_node(
                NODE,
                &[("ARGON_HOSTPORT", &hostport), ("ARGON_PASSWORD", PASSWORD)],
            )
        }
    })
    .await
    .expect("node runs")
    .unwrap_or_else(|e| panic!("node: {e:#}"));
    assert_eq!(out.trim().lines().last(), Some("OK"), "node: {out}");

    let out = tokio::task::spawn_blocking({
        let uri = uri(&server, "dev", PASSWORD);
        move || {
            run_mongosh(
                &uri,
                r#"const d = db.getSiblingDB('app~preview-1');
d.shell.insertOne({by: 'mongosh'});
if (d.shell.countDocuments({by: 'mongosh'}) !== 1) throw new Error('not written');
let code = 0;
try { db.getSiblingDB('app').shell.findOne(); } catch (e) { code = e.code; }
if (code !== 13) throw new Error('main was readable: ' + code);
print('OK');"#,
            )
        }
    })
    .await
    .expect("mongosh runs")
    .unwrap_or_else(|e| panic!("mongosh: {e:#}"));
    assert_eq!(out.trim().lines().last(), Some("OK"), "mongosh: {out}");

    // No password in anything the server printed.
    let output = server.output();
    assert!(output.contains("authenticated"), "{output}");
    assert!(!output.contains(PASSWORD), "the password is in the log");

    // Users are kept across a restart.
    drop(root);
    server.kill();
    let server = start(&data).await;
    let dev = client(uri(&server, "dev", PASSWORD)).await;
    let found = dev
        .database("app~preview-1")
        .collection::<Document>("things")
        .find_one(doc! {"_id": 1})
        .await
        .expect("dev reads preview-1 after the restart");
    assert_eq!(
        found
            .and_then(|d| d.get_str("by").ok().map(str::to_owned))
            .as_deref(),
        Some("dev")
    );
    let e = dev
        .database("app")
        .collection::<Document>("things")
        .find_one(doc! {})
        .await
        .expect_err("dev still cannot read main");
    assert_eq!(code(&e), Some(13));
    let anon = server.client().await.expect("a client");
    let e = anon
        .database("admin")
        .run_command(doc! {"createUser": "late", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect_err("the localhost exception is closed for good");
    assert_eq!(code(&e), Some(13));
    assert!(!server.output().contains(PASSWORD));
}

fn server_output_tail(s: &Sidecar) -> String {
    let out = s.output();
    let lines: Vec<&str> = out.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A store URI's password never reaches the output, even when the store
/// cannot be reached and the server exits with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_password_never_shows() {
    let out = std::process::Command::new(common::sidecar::BIN)
        .args([
            "serve",
            "--store",
            &format!("mongodb://argon:{PASSWORD}@127.0.0.1:1/?serverSelectionTimeoutMS=200"),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");
    assert_eq!(
        argon_sidecar::config::redact_argument(&format!("--store=mongodb://u:{PASSWORD}@h/")),
        "--store=mongodb://***@h/"
    );
}

// ---- hostile SASL traffic on the raw wire ---------------------------------

fn bin(bytes: impl Into<Vec<u8>>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.into(),
    })
}

fn error_code(reply: &Document) -> Option<i32> {
    (reply.get_f64("ok").ok() == Some(0.0)).then(|| reply.get_i32("code").unwrap_or(-1))
}

fn sasl_start(mech: &str, payload: Bson) -> Document {
    doc! {"saslStart": 1, "mechanism": mech, "payload": payload, "options": {"skipEmptyExchange": true}, "$db": "admin"}
}

fn sasl_continue(payload: Bson) -> Document {
    doc! {"saslContinue": 1, "conversationId": 1, "payload": payload, "$db": "admin"}
}

/// A SCRAM-SHA-256 login on `c`: the client-final it sent, and the reply.
async fn login(c: &mut RawClient, user: &str, password: &str) -> (String, Document) {
    let bare = format!("n={user},r=clientnonce0123456789");
    let reply = c
        .command(sasl_start("SCRAM-SHA-256", bin(format!("n,,{bare}"))))
        .await;
    let server_first = match reply.get("payload") {
        Some(Bson::Binary(b)) => String::from_utf8(b.bytes.clone()).expect("utf-8"),
        _ => panic!("no server-first: {reply}"),
    };
    let prepared = Mechanism::ScramSha256
        .prepare_password(user, password)
        .expect("prepared");
    let (client_final, _) =
        scram::client_final(Mechanism::ScramSha256, &prepared, &bare, &server_first)
            .expect("a well-formed server-first");
    let reply = c
        .command(sasl_continue(bin(client_final.clone().into_bytes())))
        .await;
    (client_final, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sasl_gets_errors_never_a_crash() {
    let server = TestServer::start_with_auth().await;
    let mut c = RawClient::connect(server.addr).await;
    let r = c
        .command(doc! {"createUser": "ann", "pwd": PASSWORD, "roles": ["root"], "$db": "admin"})
        .await;
    assert_eq!(error_code(&r), None, "{r}");

    let cases: Vec<(&str, Document, i32)> = vec![
        (
            "unknown mechanism",
            sasl_start("PLAIN", bin("\0ann\0pw")),
            334,
        ),
        (
            "mechanism not a string",
            doc! {"saslStart": 1, "mechanism": 5, "$db": "admin"},
            2,
        ),
        (
            "garbage payload",
            sasl_start("SCRAM-SHA-256", bin(vec![0xff, 0, 1, 2])),
            18,
        ),
        (
            "empty payload",
            sasl_start("SCRAM-SHA-256", bin(Vec::new())),
            18,
        ),
        (
            "channel binding",
            sasl_start("SCRAM-SHA-256", bin("p=tls-unique,,n=ann,r=abc")),
            18,
        ),
        (
            "bad escape",
            sasl_start("SCRAM-SHA-1", bin("n,,n=a=ZZ,r=abc")),
            18,
        ),
        (
            "payload of the wrong type",
            sasl_start("SCRAM-SHA-256", Bson::Int32(7)),
            14,
        ),
        (
            "a large payload",
            sasl_start("SCRAM-SHA-256", bin(vec![b'a'; 9000])),
            18,
        ),
        (
            "a huge payload",
            sasl_start("SCRAM-SHA-256", bin(vec![b'n'; 8 << 20])),
            18,
        ),
        (
            "continue without start",
            sasl_continue(bin("c=biws,r=x,p=AAAA")),
            17,
        ),
        (
            "wrong conversation",
            doc! {"saslContinue": 1, "conversationId": 99, "payload": bin(""), "$db": "admin"},
            17,
        ),
    ];
    for (what, cmd, want) in cases {
        let r = c.command(cmd).await;
        assert_eq!(error_code(&r), Some(want), "{what}: {r}");
    }

    // Wrong nonce and a malformed final message, each after a good start.
    for final_msg in [
        "c=biws,r=not-the-nonce,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "c=biws",
        "c=biws,r=clientnonce0123456789,p=%%%",
        "\u{0}\u{0}",
    ] {
        let r = c
            .command(sasl_start(
                "SCRAM-SHA-256",
                bin("n,,n=ann,r=clientnonce0123456789"),
            ))
            .await;
        assert_eq!(error_code(&r), None, "{r}");
        let r = c.command(sasl_continue(bin(final_msg))).await;
        assert_eq!(error_code(&r), Some(18), "{final_msg}: {r}");
    }

    // A good login, then its client-final replayed in a new conversation.
    let (client_final, r) = login(&mut c, "ann", PASSWORD).await;
    assert_eq!(error_code(&r), None, "{r}");
    assert_eq!(r.get_bool("done").ok(), Some(true), "{r}");
    let r = c.command(doc! {"find": "x", "$db": "app"}).await;
    assert_eq!(error_code(&r), None, "authenticated: {r}");
    let mut other = RawClient::connect(server.addr).await;
    let r = other
        .command(sasl_start(
            "SCRAM-SHA-256",
            bin("n,,n=ann,r=clientnonce0123456789"),
        ))
        .await;
    assert_eq!(error_code(&r), None, "{r}");
    let r = other
        .command(sasl_continue(bin(client_final.into_bytes())))
        .await;
    assert_eq!(error_code(&r), Some(18), "a replayed proof: {r}");
    let r = other.command(doc! {"find": "x", "$db": "app"}).await;
    assert_eq!(error_code(&r), Some(13), "{r}");

    // A wrong password and an unknown user look the same.
    let (_, wrong) = login(&mut other, "ann", "nope").await;
    let (_, unknown) = login(&mut other, "nobody", PASSWORD).await;
    assert_eq!(error_code(&wrong), Some(18));
    assert_eq!(wrong.get_str("errmsg").ok(), unknown.get_str("errmsg").ok());

    // A user too large to keep in every sidecar's memory.
    let r = c
        .command(doc! {"createUser": "big", "pwd": PASSWORD, "roles": [], "customData": {"x": "y".repeat(100_000)}, "$db": "admin"})
        .await;
    assert_eq!(error_code(&r), Some(2), "{r}");

    // saslSupportedMechs does not tell who exists either.
    let r = c
        .command(doc! {"createUser": "new", "pwd": PASSWORD, "roles": [], "mechanisms": ["SCRAM-SHA-256"], "$db": "admin"})
        .await;
    assert_eq!(error_code(&r), None, "{r}");
    let mechs = |r: &Document| {
        r.get_array("saslSupportedMechs")
            .cloned()
            .unwrap_or_default()
    };
    let known = c
        .command(doc! {"hello": 1, "saslSupportedMechs": "admin.new", "$db": "admin"})
        .await;
    assert_eq!(mechs(&known), vec![Bson::String("SCRAM-SHA-256".into())]);
    let unknown = other
        .command(doc! {"hello": 1, "saslSupportedMechs": "admin.nobody", "$db": "admin"})
        .await;
    let root = other
        .command(doc! {"hello": 1, "saslSupportedMechs": "admin.ann", "$db": "admin"})
        .await;
    assert_eq!(mechs(&unknown), mechs(&root));
    assert_eq!(mechs(&unknown).len(), 2);

    // The server is still serving both connections.
    for conn in [&mut c, &mut other] {
        let r = conn.command(doc! {"ping": 1, "$db": "admin"}).await;
        assert_eq!(error_code(&r), None, "{r}");
    }
    server.stop().await;
}

/// An injected sidecar confined to its branch serves nothing else, even
/// without authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confined_sidecar_serves_only_its_branch() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("wal").display().to_string();
    let server = Sidecar::start(
        "argon-sidecar-confined",
        &["--data", &data, "--confine-to-branch"],
    )
    .await
    .expect("the sidecar starts");
    let c = server.client().await.expect("a client");
    let things = |db: &str| c.database(db).collection::<Document>("things");
    things("app")
        .insert_one(doc! {"_id": 1})
        .await
        .expect("its own branch");
    things("app~main")
        .find_one(doc! {})
        .await
        .expect("its own branch by name");
    things("app~main@1")
        .find_one(doc! {})
        .await
        .expect("a past point of its own branch");
    for db in ["app~dev", "app~dev@1"] {
        let e = things(db).find_one(doc! {}).await.expect_err(db);
        assert_eq!(code(&e), Some(13), "{db}");
    }
    let e = things("app~dev")
        .insert_one(doc! {})
        .await
        .expect_err("a write to another branch");
    assert_eq!(code(&e), Some(13));
    let admin = c.database("admin");
    for cmd in [
        doc! {"argonCreateBranch": "dev", "from": "main"},
        doc! {"argonResetBranch": "main", "toSeq": 0},
        doc! {"argonDeleteBranch": "main"},
        doc! {"argonProtectBranch": "main"},
    ] {
        let e = admin.run_command(cmd.clone()).await.expect_err("refused");
        assert_eq!(code(&e), Some(13), "{cmd}");
    }
    admin
        .run_command(doc! {"argonListBranches": 1})
        .await
        .expect("listing is not a change");
}

/// Two sidecars on one FerretDB store share users, protection, and the
/// localhost exception (used once for the project, not once per sidecar).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_on_one_store_share_users() {
    let ferretdb = argon_testkit::FerretDb::start()
        .await
        .expect("FerretDB starts");
    let args = ["--store", ferretdb.uri(), "--project", "p", "--auth"];
    let (a, b) = tokio::join!(
        Sidecar::start("sidecar-a", &args),
        Sidecar::start("sidecar-b", &args)
    );
    let (a, b) = (a.expect("sidecar a starts"), b.expect("sidecar b starts"));
    a.client()
        .await
        .expect("a client")
        .database("admin")
        .run_command(doc! {"createUser": "root", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect("the first user, through a");
    let e = b
        .client()
        .await
        .expect("a client")
        .database("admin")
        .run_command(doc! {"createUser": "second", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect_err("the exception is the project's, already used");
    assert_eq!(code(&e), Some(13));
    let root_b = client(uri(&b, "root", PASSWORD)).await;
    root_b
        .database("admin")
        .run_command(doc! {"argonCreateBranch": "keep", "from": "main"})
        .await
        .expect("root, created through a, works through b");
    root_b
        .database("admin")
        .run_command(doc! {"argonProtectBranch": "keep"})
        .await
        .expect("protect through b");
    let root_a = client(uri(&a, "root", PASSWORD)).await;
    let e = root_a
        .database("admin")
        .run_command(doc! {"argonDeleteBranch": "keep"})
        .await
        .expect_err("protected through b, refused through a");
    assert_eq!(code(&e), Some(20));
}

/// A cursor id is not a capability: under `--auth` only the user who
/// opened a cursor reads more of it or kills it (mongod answers 13), and
/// an id no cursor has is still "not found" (43).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_cursors_opener_reads_or_kills_it() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = start(&dir.path().join("wal")).await;
    let anon = server.client().await.expect("a client");
    anon.database("admin")
        .run_command(doc! {"createUser": "root", "pwd": PASSWORD, "roles": ["root"]})
        .await
        .expect("the first user");
    let root = client(uri(&server, "root", PASSWORD)).await;
    for user in ["alice", "bob"] {
        root.database("admin")
            .run_command(doc! {"createUser": user, "pwd": PASSWORD, "roles": [{"role": "readWrite", "db": "app"}]})
            .await
            .expect("createUser");
    }
    let docs: Vec<Document> = (0..5).map(|i| doc! {"_id": i}).collect();
    root.database("app")
        .collection::<Document>("things")
        .insert_many(docs)
        .await
        .expect("insert");

    let alice = client(uri(&server, "alice", PASSWORD))
        .await
        .database("app");
    let bob = client(uri(&server, "bob", PASSWORD)).await.database("app");
    let opened = alice
        .run_command(doc! {"find": "things", "batchSize": 1})
        .await
        .expect("alice opens a cursor");
    let id = opened
        .get_document("cursor")
        .and_then(|c| c.get_i64("id"))
        .expect("a cursor id");
    assert_ne!(id, 0, "the cursor stays open: {opened}");

    let e = bob
        .run_command(doc! {"getMore": id, "collection": "things"})
        .await
        .expect_err("bob may not read alice's cursor");
    assert_eq!(code(&e), Some(13), "{e}");
    let e = bob
        .run_command(doc! {"killCursors": "things", "cursors": [id]})
        .await
        .expect_err("bob may not kill alice's cursor");
    assert_eq!(code(&e), Some(13), "{e}");
    let e = bob
        .run_command(doc! {"getMore": id ^ 0x5555, "collection": "things"})
        .await
        .expect_err("no such cursor");
    assert_eq!(code(&e), Some(43), "{e}");

    // Alice's cursor is whole: the next batch is the next document.
    let more = alice
        .run_command(doc! {"getMore": id, "collection": "things", "batchSize": 1})
        .await
        .expect("alice reads her cursor");
    let batch = more
        .get_document("cursor")
        .and_then(|c| c.get_array("nextBatch"))
        .expect("a batch");
    assert_eq!(batch, &vec![Bson::Document(doc! {"_id": 1})]);
    let killed = alice
        .run_command(doc! {"killCursors": "things", "cursors": [id]})
        .await
        .expect("alice kills her cursor");
    assert_eq!(
        killed.get_array("cursorsKilled").expect("killed"),
        &vec![Bson::Int64(id)]
    );
}
