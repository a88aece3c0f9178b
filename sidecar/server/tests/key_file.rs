//! `serve --key-file` against the real binary and the Rust driver: the
//! internal user `__system@local` authenticates with the key and runs the
//! admin commands; without it (or with a wrong key) every admin command and
//! user management is refused with 13 / 18 while data commands stay open
//! (no `--auth`); the user is never listed or dropped; hostile key files
//! stop the server before it serves, with mongod's messages and no key
//! character in the output.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bson::{Document, doc};
use common::code;
use common::sidecar::{BIN, Sidecar};
use mongodb::options::{AuthMechanism, ClientOptions, Credential};

const KEY: &str = "c2VjcmV0S2V5Rm9yVGhlT3duZXJQb2RPZkFyZ29u";

fn key_file(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("test setup");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("test setup");
    path
}

async fn system_client(s: &Sidecar, key: &str, mechanism: AuthMechanism) -> mongodb::Client {
    let mut options = ClientOptions::parse(s.uri()).await.expect("test setup");
    options.credential = Some(
        Credential::builder()
            .username("__system".to_string())
            .password(key.to_string())
            .source("local".to_string())
            .mechanism(mechanism)
            .build(),
    );
    mongodb::Client::with_options(options).expect("test setup")
}

/// The server's code under the driver's own authentication error (the
/// driver keeps the server's reply only as its source).
fn server_code(e: &mongodb::error::Error) -> Option<i32> {
    if !matches!(*e.kind, mongodb::error::ErrorKind::Authentication { .. }) {
        return code(e);
    }
    let text = format!("{e:?}");
    let at = text.find("code: ")? + "code: ".len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Every admin command the operator runs on an owner, and user management.
fn admin_commands() -> Vec<Document> {
    vec![
        doc! {"argonListBranches": 1, "includeDeleted": true},
        doc! {"argonCreateBranch": "dev", "from": "main"},
        doc! {"argonLogInfo": "main"},
        doc! {"argonResetBranch": "main", "toSeq": 0, "dryRun": true},
        doc! {"argonResetBranch": "main", "toSeq": 0},
        doc! {"argonProtectBranch": "main", "protected": false},
        doc! {"argonDeleteBranch": "dev", "force": true},
        doc! {"createUser": "app", "pwd": "app-password", "roles": ["readWrite"]},
        doc! {"updateUser": "app", "pwd": "other-password"},
        doc! {"dropUser": "app"},
        doc! {"argonUsers": 1},
        doc! {"argonDropUser": "nobody", "db": "app"},
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_key_runs_admin_commands_and_data_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    // 0440: what kubelet makes of a Secret's 0400 file with an fsGroup.
    let key = key_file(dir.path(), "key", format!("{KEY}\n").as_bytes(), 0o440);
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start(
        "argon-sidecar-key-file",
        &["--data", &data, "--key-file", key.to_str().unwrap()],
    )
    .await
    .expect("the sidecar starts with --key-file");

    // No --auth: data commands need nothing, as the project chose.
    let anon = s.client().await.unwrap();
    anon.database("app")
        .collection::<Document>("c")
        .insert_one(doc! {"_id": 1})
        .await
        .expect("a write without credentials");
    let found = anon
        .database("app")
        .collection::<Document>("c")
        .find_one(doc! {})
        .await
        .unwrap();
    assert_eq!(found, Some(doc! {"_id": 1}));

    // Unauthenticated: 13 on every admin command, from 127.0.0.1 too (no
    // localhost exception without --auth).
    for cmd in admin_commands() {
        let e = anon
            .database("admin")
            .run_command(cmd.clone())
            .await
            .expect_err("refused without the key");
        assert_eq!(code(&e), Some(13), "{cmd}: {e}");
    }

    // A wrong key: 18 at authentication, whatever the mechanism.
    for mechanism in [AuthMechanism::ScramSha256, AuthMechanism::ScramSha1] {
        let wrong = system_client(&s, "d3JvbmdLZXk=", mechanism.clone()).await;
        let e = wrong
            .database("admin")
            .run_command(doc! {"argonListBranches": 1})
            .await
            .expect_err("a wrong key is refused");
        assert_eq!(server_code(&e), Some(18), "{mechanism:?}: {e}");
    }

    // The key, with either mechanism: every admin command runs.
    let sha1 = system_client(&s, KEY, AuthMechanism::ScramSha1).await;
    sha1.database("admin")
        .run_command(doc! {"argonListBranches": 1})
        .await
        .expect("__system with SCRAM-SHA-1");
    let system = system_client(&s, KEY, AuthMechanism::ScramSha256).await;
    let admin = system.database("admin");
    for cmd in admin_commands() {
        let name = cmd.keys().next().unwrap().to_string();
        let reply = admin.run_command(cmd.clone()).await;
        match name.as_str() {
            // main cannot be reset to before it began; refused by the WAL,
            // not by authorization.
            "argonResetBranch" => {
                if let Err(e) = reply {
                    assert_ne!(code(&e), Some(13), "{cmd}: {e}");
                    assert_ne!(code(&e), Some(18), "{cmd}: {e}");
                }
            }
            _ => {
                reply.unwrap_or_else(|e| panic!("{cmd}: {e}"));
            }
        }
    }

    // `__system` is nobody's to list, drop, shadow or create.
    admin
        .run_command(doc! {"createUser": "ops", "pwd": "ops-password", "roles": ["root"]})
        .await
        .unwrap();
    for (db, cmd) in [
        ("admin", doc! {"usersInfo": 1, "forAllDBs": true}),
        ("local", doc! {"usersInfo": 1}),
        (
            "local",
            doc! {"usersInfo": {"user": "__system", "db": "local"}},
        ),
    ] {
        let reply = system.database(db).run_command(cmd.clone()).await.unwrap();
        let users = reply.get_array("users").unwrap();
        assert!(
            users.iter().all(|u| !u
                .as_document()
                .unwrap()
                .get_str("user")
                .unwrap()
                .starts_with("__")),
            "{cmd}: {reply}"
        );
    }
    let e = system
        .database("local")
        .run_command(doc! {"dropUser": "__system"})
        .await
        .expect_err("__system is never dropped");
    assert_eq!(code(&e), Some(11), "{e}");
    let e = system
        .database("local")
        .run_command(doc! {"createUser": "__system", "pwd": "x-password", "roles": []})
        .await
        .expect_err("no user is created on local");
    assert_eq!(code(&e), Some(2), "{e}");
    // Still the key's user after all that.
    system_client(&s, KEY, AuthMechanism::ScramSha256)
        .await
        .database("admin")
        .run_command(doc! {"argonListBranches": 1})
        .await
        .expect("__system still authenticates");

    // A user whose roles allow it runs admin commands too (one rule).
    let mut options = ClientOptions::parse(s.uri()).await.unwrap();
    options.credential = Some(
        Credential::builder()
            .username("ops".to_string())
            .password("ops-password".to_string())
            .source("admin".to_string())
            .build(),
    );
    mongodb::Client::with_options(options)
        .unwrap()
        .database("admin")
        .run_command(doc! {"argonCreateBranch": "ops-branch", "from": "main"})
        .await
        .expect("a root user runs admin commands");

    assert!(!s.output().contains(KEY), "the key is in the log");
}

/// `serve --key-file <path>` on a fresh store: its exit status and output.
/// A server that serves instead of exiting is killed and fails the test.
fn refused(path: &Path) -> String {
    let dir = tempfile::tempdir().expect("test setup");
    let log = dir.path().join("log");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("wal"))
        .arg("--key-file")
        .arg(path)
        .stdout(std::fs::File::create(&log).expect("test setup"))
        .stderr(std::fs::File::create(dir.path().join("err")).expect("test setup"))
        .spawn()
        .expect("test setup");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("test setup") {
            break Some(status);
        }
        if std::time::Instant::now() >= deadline {
            child.kill().expect("test setup");
            child.wait().expect("test setup");
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("err")).unwrap_or_default()
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(2),
        "{}: {text}",
        path.display()
    );
    text
}

#[test]
fn hostile_key_files_stop_the_server_without_showing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secretish = "Zm9vYmFyYmF6cXV4";
    let cases: Vec<(PathBuf, &str)> = vec![
        (d.join("missing"), "Error reading file"),
        (key_file(d, "empty", b"", 0o400), "empty"),
        (key_file(d, "blank", b" \n\t\n", 0o600), "empty"),
        (key_file(d, "five", b"abcde", 0o400), "has length 5"),
        (
            key_file(d, "long", "A".repeat(1025).as_bytes(), 0o400),
            "has length 1025",
        ),
        (
            key_file(d, "huge", &vec![b'A'; 1 << 20], 0o400),
            "has length over 1024",
        ),
        (
            key_file(d, "bad", format!("{secretish}!").as_bytes(), 0o400),
            "invalid char in key file",
        ),
        (
            key_file(d, "nul", format!("{secretish}\0").as_bytes(), 0o400),
            "invalid char in key file",
        ),
        (
            key_file(d, "world", secretish.as_bytes(), 0o404),
            "are too open",
        ),
        (
            key_file(d, "group", secretish.as_bytes(), 0o460),
            "are too open",
        ),
        (d.to_path_buf(), "not a regular file"),
    ];
    // The directory itself is 0700 from tempdir: not a regular file.
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (path, says) in cases {
        let out = refused(&path);
        assert!(out.contains(says), "{}: {out}", path.display());
        assert!(!out.contains(secretish), "{}: {out}", path.display());
        assert!(!out.contains("panicked"), "{}: {out}", path.display());
    }
}

/// A stored user as the operator derives it (`argon_auth::stored`).
fn stored_user(db: &str, name: &str, password: &str, custom: Option<&Document>) -> Document {
    use argon_auth::scram::{Credential, Mechanism};
    let credentials: Vec<(Mechanism, Credential)> = Mechanism::ALL
        .iter()
        .map(|m| {
            (
                *m,
                Credential::new(*m, name, password).expect("a usable password"),
            )
        })
        .collect();
    let id = argon_auth::stored::UserId {
        db: db.to_string(),
        name: name.to_string(),
    };
    let roles = vec![argon_auth::stored::grant_doc(
        "readWrite",
        Some("app"),
        None,
    )];
    argon_auth::stored::user_doc(&id, roles, &credentials, custom)
}

async fn login_and_write(s: &Sidecar, user: &str, password: &str) -> mongodb::error::Result<()> {
    let mut options = ClientOptions::parse(s.uri()).await?;
    options.credential = Some(
        Credential::builder()
            .username(user.to_string())
            .password(password.to_string())
            .source("admin".to_string())
            .build(),
    );
    mongodb::Client::with_options(options)?
        .database("app")
        .collection::<Document>("c")
        .insert_one(doc! {"by": user})
        .await
        .map(|_| ())
}

/// `argonUsers` / `argonPutUser` / `argonDropUser`: how the operator writes
/// `spec.users` into an embedded store through its owner. Whole stored
/// users go in exactly as sent (the user then logs in with the password the
/// keys were derived from) or are refused; anything malformed is 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_users_are_written_whole_by_the_key_holder() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "key", format!("{KEY}\n").as_bytes(), 0o400);
    let data = dir.path().join("wal").display().to_string();
    let s = Sidecar::start(
        "argon-sidecar-stored-users",
        &["--data", &data, "--key-file", key.to_str().unwrap()],
    )
    .await
    .expect("the sidecar starts with --key-file");
    let system = system_client(&s, KEY, AuthMechanism::ScramSha256).await;
    let admin = system.database("admin");
    let put = |name: &str, stored: Document, pre: &str| {
        doc! {"argonPutUser": name, "db": "admin", "stored": stored, "precondition": pre}
    };
    let ann = stored_user(
        "admin",
        "ann",
        "ann-Pa55word",
        Some(&doc! {"managedBy": "argon-operator"}),
    );

    let reply = admin
        .run_command(put("ann", ann.clone(), "absent"))
        .await
        .unwrap();
    assert_eq!(reply.get_bool("written").ok(), Some(true), "{reply}");
    let reply = admin
        .run_command(put("ann", ann.clone(), "absent"))
        .await
        .unwrap();
    assert_eq!(
        reply.get_bool("written").ok(),
        Some(false),
        "absent no more: {reply}"
    );
    login_and_write(&s, "ann", "ann-Pa55word")
        .await
        .expect("ann logs in");
    assert!(
        login_and_write(&s, "ann", "not-her-password")
            .await
            .is_err()
    );

    // Listed as stored, credentials included, and only to the key holder.
    let reply = admin.run_command(doc! {"argonUsers": 1}).await.unwrap();
    let users = reply.get_array("users").unwrap();
    assert_eq!(users.len(), 1, "{reply}");
    let listed = users[0].as_document().unwrap();
    assert_eq!(listed.get_str("db").ok(), Some("admin"));
    assert_eq!(listed.get_str("user").ok(), Some("ann"));
    assert_eq!(listed.get_document("stored").unwrap(), &ann);

    // A new password, written over the old one.
    let again = stored_user(
        "admin",
        "ann",
        "ann-second-Pa55word",
        Some(&doc! {"managedBy": "argon-operator"}),
    );
    let reply = admin
        .run_command(put("ann", again, "present"))
        .await
        .unwrap();
    assert_eq!(reply.get_bool("written").ok(), Some(true), "{reply}");
    login_and_write(&s, "ann", "ann-second-Pa55word")
        .await
        .expect("the new password");
    assert!(login_and_write(&s, "ann", "ann-Pa55word").await.is_err());
    let reply = admin
        .run_command(put(
            "bob",
            stored_user("admin", "bob", "bob-Pa55word", None),
            "present",
        ))
        .await
        .unwrap();
    assert_eq!(
        reply.get_bool("written").ok(),
        Some(false),
        "bob is not there: {reply}"
    );

    // Hostile or malformed: 2, nothing written.
    let mut extra = ann.clone();
    extra.insert("isAdmin", true);
    let mut no_credentials = ann.clone();
    no_credentials.insert("credentials", Document::new());
    let mut bad_role = ann.clone();
    bad_role.insert("roles", vec![bson::Bson::Document(doc! {"role": 5})]);
    let huge = stored_user(
        "admin",
        "ann",
        "ann-Pa55word",
        Some(&doc! {"blob": "x".repeat(100_000)}),
    );
    let long = "n".repeat(300);
    let cases: Vec<Document> = vec![
        doc! {"argonPutUser": "ann", "db": "admin", "precondition": "absent"},
        doc! {"argonPutUser": "ann", "db": "admin", "stored": 1, "precondition": "absent"},
        put("ann", ann.clone(), "sometimes"),
        doc! {"argonPutUser": "ann", "db": "admin", "stored": ann.clone()},
        put("ann", extra, "present"),
        put("ann", no_credentials, "present"),
        put("ann", bad_role, "present"),
        put("ann", huge, "present"),
        // The stored form names another user than the command.
        put("carol", ann.clone(), "absent"),
        doc! {"argonPutUser": "ann", "db": "local", "stored": ann.clone(), "precondition": "absent"},
        doc! {"argonPutUser": "ann", "db": "a~b", "stored": ann.clone(), "precondition": "absent"},
        doc! {"argonPutUser": "ann", "db": "", "stored": ann.clone(), "precondition": "absent"},
        doc! {"argonPutUser": "", "db": "admin", "stored": ann.clone(), "precondition": "absent"},
        doc! {"argonPutUser": long.as_str(), "db": "admin", "stored": ann.clone(), "precondition": "absent"},
        doc! {"argonPutUser": 7, "db": "admin", "stored": ann.clone(), "precondition": "absent"},
        doc! {"argonPutUser": "ann", "db": "admin", "stored": ann.clone(), "precondition": "absent", "force": true},
        doc! {"argonUsers": 1, "showAll": true},
        doc! {"argonDropUser": "ann"},
        doc! {"argonDropUser": "ann", "db": 3},
    ];
    for cmd in cases {
        let e = admin.run_command(cmd.clone()).await.expect_err("malformed");
        assert_eq!(code(&e), Some(2), "{cmd}: {e}");
    }
    login_and_write(&s, "ann", "ann-second-Pa55word")
        .await
        .expect("ann unchanged");
    // Only on admin.
    let e = system
        .database("app")
        .run_command(doc! {"argonUsers": 1})
        .await
        .expect_err("admin only");
    assert_eq!(code(&e), Some(13), "{e}");

    let reply = admin
        .run_command(doc! {"argonDropUser": "ann", "db": "admin"})
        .await
        .unwrap();
    assert_eq!(reply.get_bool("dropped").ok(), Some(true), "{reply}");
    let reply = admin
        .run_command(doc! {"argonDropUser": "ann", "db": "admin"})
        .await
        .unwrap();
    assert_eq!(reply.get_bool("dropped").ok(), Some(false), "{reply}");
    assert!(
        login_and_write(&s, "ann", "ann-second-Pa55word")
            .await
            .is_err()
    );
    assert!(!s.output().contains("Pa55word"), "a password in the log");
}
