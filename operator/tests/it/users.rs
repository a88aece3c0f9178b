//! `ArgonProject.spec.users`: the operator writes users from Secrets into
//! the project's log, and a real driver logs in to a sidecar (the real
//! server, in-process, `--auth`) on that project's store with the Secret's
//! password. A changed password works and the old one stops; a missing
//! Secret is reported by name; users leave with the spec, except those made
//! with `createUser`; and no password appears in status, events or the
//! operator's log.

use crate::support::*;
use argon_operator::crd::{ArgonProject, PasswordSecretRef, RoleName, RoleSpec, UserSpec};
use argon_testkit::{FerretDb, free_port, wait_until};
use argon_wal::{MongoStore, Wal, WalOptions};
use bson::doc;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

const ANN_FIRST: &str = "ann-first-Pa55word";
const ANN_SECOND: &str = "ann-second-Pa55word";
const BOB_PW: &str = "bob-Pa55word-xyz";

/// A sidecar (the real wire server) on the project's store, demanding authentication.
pub struct AuthSidecar {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl AuthSidecar {
    pub async fn start(mongo: &FerretDb, project: &str) -> anyhow::Result<AuthSidecar> {
        let store =
            MongoStore::connect(mongo.uri(), &format!("argon_{}", project.replace('-', "_")))
                .await?;
        let wal = Wal::open(store, project, WalOptions::default()).await?;
        let service = argon_sidecar::service::Service::new(wal, "main", Default::default());
        service
            .set_auth_required(true)
            .await
            .map_err(|e| anyhow::anyhow!("turning authentication on: {e:?}"))?;
        let port = free_port()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(argon_sidecar::server::run(listener, service, async move {
            let _ = rx.await;
        }));
        Ok(AuthSidecar {
            port,
            stop: Some(tx),
        })
    }

    pub fn uri(&self, user: &str, password: &str) -> String {
        format!(
            "mongodb://{user}:{password}@127.0.0.1:{}/?authSource=admin&directConnection=true&serverSelectionTimeoutMS=3000",
            self.port
        )
    }
}

impl Drop for AuthSidecar {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Logs in and inserts one document; `Err` says why not.
pub async fn login_and_write(uri: &str) -> anyhow::Result<()> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client
        .database("app")
        .collection::<bson::Document>("c")
        .insert_one(doc! {"at": 1})
        .await?;
    Ok(())
}

pub(crate) async fn password_secret(
    client: &Client,
    ns: &str,
    name: &str,
    pw: &str,
) -> anyhow::Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([("password".to_string(), pw.to_string())])),
        ..Secret::default()
    };
    api.patch(
        name,
        &PatchParams::apply("argon-tests").force(),
        &Patch::Apply(&secret),
    )
    .await?;
    Ok(())
}

pub(crate) fn user(name: &str, secret: &str, roles: Vec<RoleSpec>) -> UserSpec {
    UserSpec {
        name: name.into(),
        db: "admin".into(),
        password_secret_ref: PasswordSecretRef {
            name: secret.into(),
            key: "password".into(),
        },
        roles,
    }
}

pub(crate) fn role(role: RoleName, db: Option<&str>) -> RoleSpec {
    RoleSpec {
        role,
        db: db.map(String::from),
        branch: None,
    }
}

/// Everything the operator logs while the guard lives, on this test's
/// thread (the operator runs on it, a current-thread runtime).
///
/// One global subscriber routes each event to the buffer of the thread that
/// logged it. A scoped one (`set_default`) is not enough when other tests
/// run beside this one: tracing caches each call site's interest across
/// every thread's subscriber, and a call site first reached on a thread
/// without one could stay silenced here.
#[derive(Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURING: RefCell<Option<LogBuffer>> = const { RefCell::new(None) };
}

/// Writes to the buffer of the logging thread, if it captures.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURING.with(|c| {
            if let Some(buffer) = c.borrow().as_ref() {
                buffer
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops this thread's capture when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURING.with(|c| c.borrow_mut().take());
    }
}

impl LogBuffer {
    pub fn capture(&self) -> CaptureGuard {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::{EnvFilter, Layer, filter, fmt};
            let capturing = filter::filter_fn(|_| CAPTURING.with(|c| c.borrow().is_some()));
            let subscriber = tracing_subscriber::registry().with(
                fmt::layer()
                    .with_writer(|| ThreadWriter)
                    .with_ansi(false)
                    .with_filter(EnvFilter::new("debug"))
                    .with_filter(capturing),
            );
            // Another global subscriber would make the capture below fail
            // by name ("the log capture works"), not pass in silence.
            let _ = tracing::subscriber::set_global_default(subscriber);
        });
        CAPTURING.with(|c| *c.borrow_mut() = Some(self.clone()));
        CaptureGuard
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

fn users_ready(p: &ArgonProject) -> Option<(String, String, String)> {
    project_condition(p, "UsersReady")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn users_from_secrets_log_in_follow_password_changes_and_never_leak() {
    let logs = LogBuffer::default();
    let _capture = logs.capture();
    let (_kube, client) = kube_with_crds().await.unwrap();
    let mongo = FerretDb::start().await.unwrap();
    let ns = namespace(&client, "users").await.unwrap();
    store_secret(&client, &ns, "shop-store", mongo.uri())
        .await
        .unwrap();
    password_secret(&client, &ns, "ann-pw", ANN_FIRST)
        .await
        .unwrap();
    let mut project = ProjectFixture::test("shop").build();
    project.spec.users = vec![
        user(
            "ann",
            "ann-pw",
            vec![
                role(RoleName::ReadWrite, Some("app")),
                role(RoleName::UserAdmin, None),
            ],
        ),
        // Its Secret does not exist yet.
        user("bob", "bob-pw", vec![role(RoleName::Read, Some("app"))]),
    ];
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    projects
        .create(&PostParams::default(), &project)
        .await
        .unwrap();
    let operator = RunningOperator::start(client.clone(), test_config("users-test"));

    // ann is written; bob's missing Secret is named in the condition.
    let p = wait_for(
        &projects,
        "shop",
        "ann in sync, bob's Secret missing",
        |p| {
            users_ready(p).is_some_and(|(s, r, m)| {
                s == "False"
                    && r == "SecretNotReady"
                    && m.contains("bob@admin")
                    && m.contains("bob-pw")
            }) && p.status.as_ref().and_then(|s| s.users) == Some(1)
        },
    )
    .await
    .unwrap();
    assert!(!users_ready(&p).unwrap().2.contains("ann"), "{p:?}");

    // A driver logs in with the Secret's password; a wrong one fails.
    let sidecar = AuthSidecar::start(&mongo, "shop").await.unwrap();
    login_and_write(&sidecar.uri("ann", ANN_FIRST))
        .await
        .unwrap();
    let wrong = login_and_write(&sidecar.uri("ann", "not-the-password"))
        .await
        .unwrap_err();
    assert!(
        format!("{wrong:?}").contains("Authentication failed"),
        "{wrong:?}"
    );

    // A user someone made with createUser is not the operator's: it stays
    // when the spec changes, and a spec user of that name is a conflict.
    let ann = mongodb::Client::with_uri_str(sidecar.uri("ann", ANN_FIRST))
        .await
        .unwrap();
    ann.database("admin")
        .run_command(doc! {"createUser": "carol", "pwd": "carol-pw-123", "roles": []})
        .await
        .unwrap();

    // The password changes: the new one works, the old one stops.
    password_secret(&client, &ns, "ann-pw", ANN_SECOND)
        .await
        .unwrap();
    wait_until("ann's new password works", WAIT, || async {
        Ok(login_and_write(&sidecar.uri("ann", ANN_SECOND))
            .await
            .is_ok())
    })
    .await
    .unwrap();
    assert!(
        login_and_write(&sidecar.uri("ann", ANN_FIRST))
            .await
            .is_err()
    );

    // bob's Secret appears: bob logs in (read only: a write is refused).
    password_secret(&client, &ns, "bob-pw", BOB_PW)
        .await
        .unwrap();
    wait_for(&projects, "shop", "both users in sync", |p| {
        users_ready(p).is_some_and(|(s, _, _)| s == "True")
            && p.status.as_ref().and_then(|s| s.users) == Some(2)
    })
    .await
    .unwrap();
    let bob = mongodb::Client::with_uri_str(sidecar.uri("bob", BOB_PW))
        .await
        .unwrap();
    bob.database("app")
        .collection::<bson::Document>("c")
        .find_one(doc! {})
        .await
        .unwrap();
    let refused = login_and_write(&sidecar.uri("bob", BOB_PW))
        .await
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("Unauthorized")
            || format!("{refused:?}").contains("not authorized"),
        "{refused:?}"
    );

    // bob leaves the spec and carol (made with createUser) enters it: bob
    // is dropped, carol is refused as a conflict and keeps her password.
    password_secret(&client, &ns, "carol-pw", "carol-other-pw")
        .await
        .unwrap();
    let patch = json!({"spec": {"users": [
        {"name": "ann", "passwordSecretRef": {"name": "ann-pw"}, "roles": [{"role": "readWrite", "db": "app"}, {"role": "userAdmin"}]},
        {"name": "carol", "passwordSecretRef": {"name": "carol-pw"}},
    ]}});
    projects
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_until("bob is dropped", WAIT, || async {
        Ok(mongodb::Client::with_uri_str(sidecar.uri("bob", BOB_PW))
            .await?
            .database("app")
            .run_command(doc! {"ping": 1})
            .await
            .is_err())
    })
    .await
    .unwrap();
    let p = wait_for(&projects, "shop", "carol is a conflict", |p| {
        users_ready(p).is_some_and(|(s, r, m)| {
            s == "False" && r == "UserConflict" && m.contains("carol@admin")
        })
    })
    .await
    .unwrap();
    assert_eq!(p.status.as_ref().and_then(|s| s.users), Some(1));
    let carol = mongodb::Client::with_uri_str(sidecar.uri("carol", "carol-pw-123"))
        .await
        .unwrap();
    carol
        .database("admin")
        .run_command(doc! {"connectionStatus": 1})
        .await
        .unwrap();

    // A Secret without the key: named, never shown.
    let patch = json!({"spec": {"users": [
        {"name": "ann", "passwordSecretRef": {"name": "ann-pw", "key": "nope"}, "roles": [{"role": "readWrite", "db": "app"}]},
    ]}});
    projects
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(&projects, "shop", "the missing key is named", |p| {
        users_ready(p).is_some_and(|(s, r, m)| {
            s == "False" && r == "SecretNotReady" && m.contains("\"nope\"")
        })
    })
    .await
    .unwrap();
    // The stored user stays as it was: nobody is locked out by a typo.
    login_and_write(&sidecar.uri("ann", ANN_SECOND))
        .await
        .unwrap();

    // Events are published in the background: wait for the one checked below.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    wait_until("a UserWritten event", WAIT, || async {
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("UserWritten")))
    })
    .await
    .unwrap();
    operator.stop().await.unwrap();

    // Nothing of any password in status, events or the operator's log.
    let status = serde_json::to_string(&projects.get("shop").await.unwrap()).unwrap();
    let events =
        serde_json::to_string(&events.list(&ListParams::default()).await.unwrap()).unwrap();
    let log = logs.text();
    assert!(
        log.contains("user written") && log.contains("ann@admin"),
        "the log capture holds the operator's lines: {log:.400}"
    );
    assert!(events.contains("UserWritten"), "{events}");
    for pw in [ANN_FIRST, ANN_SECOND, BOB_PW, "carol-other-pw"] {
        for (what, text) in [("status", &status), ("events", &events), ("log", &log)] {
            assert!(!text.contains(pw), "a password in the operator's {what}");
        }
    }
    drop(sidecar);
    tokio::time::sleep(Duration::from_millis(10)).await;
}
