//! A branch endpoint's connection Secret (`<branch>-argon-app`) and the
//! WAL's protected flag, against a real apiserver and FerretDB: the Secret
//! carries the user of `spec.endpoint.user`, is owned by the ArgonBranch,
//! and a real driver logs in with its contents to the real server on the
//! project's store; `spec.protected` is the WAL's flag both ways.

use crate::support::*;
use crate::users::AuthSidecar;
use argon_operator::crd::{ArgonBranch, ArgonProject, PasswordSecretRef, UserSpec};
use argon_testkit::{FerretDb, wait_until};
use argon_wal::{BranchName, MongoStore, Wal, WalOptions};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

const PASSWORD: &str = "p@ss:w/rd%-app";

fn key(secret: &Secret, k: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(k))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

#[tokio::test]
async fn the_connection_secret_logs_a_driver_in_and_protected_reaches_the_wal() {
    let (_kube, client) = kube_with_crds().await.unwrap();
    let mongo = FerretDb::start().await.unwrap();
    let ns = namespace(&client, "conn").await.unwrap();
    store_secret(&client, &ns, "shop-store", mongo.uri())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("app-pw".into()),
                    ..Default::default()
                },
                string_data: Some(BTreeMap::from([("password".into(), PASSWORD.into())])),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let mut project = ProjectFixture::test("shop").build();
    project.spec.users = vec![UserSpec {
        name: "app".into(),
        db: "admin".into(),
        password_secret_ref: PasswordSecretRef {
            name: "app-pw".into(),
            key: "password".into(),
        },
        roles: vec![argon_operator::crd::RoleSpec {
            role: argon_operator::crd::RoleName::ReadWrite,
            db: None,
            branch: Some("feature".into()),
        }],
    }];
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    projects
        .create(&PostParams::default(), &project)
        .await
        .unwrap();
    let mut branch = BranchFixture::test("feature", "shop").protected().build();
    branch.spec.endpoint.user = Some("app".into());
    // Authentication is this test's subject; TLS is endpoint_tls.rs's.
    branch.spec.endpoint.tls = false;
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(&PostParams::default(), &branch)
        .await
        .unwrap();
    let operator = RunningOperator::start(client.clone(), test_config("conn-test"));

    let b = wait_for(&branches, "feature", "the connection Secret written", |b| {
        condition(b, "ConnectionSecret").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap();
    // The Secret is the branch's, the stored user the project's: two
    // reconcilers, so the login waits for both.
    wait_for(&projects, "shop", "users in sync", |p| {
        project_condition(p, "UsersReady").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap();
    let secret = secrets.get("feature-argon-app").await.unwrap();
    let owner = &secret.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("ArgonBranch", b.uid().unwrap().as_str())
    );
    assert_eq!(
        key(&secret, "host").unwrap(),
        format!("abr-feature.{ns}.svc")
    );
    assert_eq!(key(&secret, "port").unwrap(), "27017");
    assert_eq!(key(&secret, "username").unwrap(), "app");
    assert_eq!(key(&secret, "password").unwrap(), PASSWORD);
    assert_eq!(key(&secret, "authSource").unwrap(), "admin");
    let uri = key(&secret, "uri").unwrap();
    // The Service's name resolves only inside a cluster (the e2e scenario
    // connects with the uri as it is, from a pod): here only the address is
    // swapped for the sidecar's; credentials, their encoding and every
    // option are the Secret's.
    let sidecar = AuthSidecar::start(&mongo, "shop").await.unwrap();
    let address = format!("abr-feature.{ns}.svc:27017");
    assert!(uri.contains(&format!("@{address}/")), "{uri}");
    let local = uri.replace(&address, &format!("127.0.0.1:{}", sidecar.port));
    login_and_write_on(&local, "app~feature").await.unwrap();
    // The user is scoped to feature: main is refused.
    assert!(login_and_write_on(&local, "app").await.is_err());
    // Nothing of the password in the branch's status.
    assert!(!serde_json::to_string(&b).unwrap().contains(PASSWORD));

    // spec.protected is the WAL's flag, both ways.
    let store = MongoStore::connect(mongo.uri(), "argon_shop")
        .await
        .unwrap();
    let wal = Wal::open(store, "shop", WalOptions::default())
        .await
        .unwrap();
    let feature = BranchName::parse("feature").unwrap();
    assert!(wal.access().await.unwrap().is_protected(&feature));
    branches
        .patch(
            "feature",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"protected": false}})),
        )
        .await
        .unwrap();
    wait_until("the WAL's flag cleared", WAIT, || async {
        Ok(!wal.access().await?.is_protected(&feature))
    })
    .await
    .unwrap();

    // An unknown user: the Secret keeps the address only and says why.
    branches
        .patch(
            "feature",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"endpoint": {"user": "nobody"}}})),
        )
        .await
        .unwrap();
    wait_for(&branches, "feature", "UnknownUser", |b| {
        condition(b, "ConnectionSecret")
            .is_some_and(|c| c.status == "False" && c.reason == "UnknownUser")
    })
    .await
    .unwrap();
    let secret = secrets.get("feature-argon-app").await.unwrap();
    assert_eq!(key(&secret, "password"), None);
    assert_eq!(
        key(&secret, "uri").unwrap(),
        format!("mongodb://abr-feature.{ns}.svc:27017/?loadBalanced=true")
    );
    operator.stop().await.unwrap();
}

/// Logs in with `uri` and writes to database `db` (`app~feature` is database
/// `app` of branch `feature`).
async fn login_and_write_on(uri: &str, db: &str) -> anyhow::Result<()> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client
        .database(db)
        .collection::<bson::Document>("c")
        .insert_one(bson::doc! {"at": 1})
        .await?;
    Ok(())
}
