//! Endpoint TLS from the operator's CA (`spec.endpoint.tls`), against a
//! real apiserver, FerretDB and the real wire server in-process with TLS:
//! the operator makes the CA, issues the endpoint's certificate for its
//! Service's names into `<branch>-argon-tls`, mounts it in the Deployment,
//! and the connection Secret carries `ca.crt` and `tls=true`. A real driver
//! verifies the endpoint against that `ca.crt` (a client trusting another CA
//! fails); a renewal replaces the Secret's pair, and a Secret-volume-style
//! update of the files (the kubelet's atomic symlink swap) reaches the
//! running sidecar without a restart.

use crate::support::*;
use argon_operator::config::EndpointTlsConfig;
use argon_operator::crd::{ArgonBranch, ArgonProject, PasswordSecretRef, RoleSpec, UserSpec};
use argon_testkit::tls::TestCa;
use argon_testkit::{FerretDb, free_port, wait_until};
use argon_wal::{MongoStore, Wal, WalOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PASSWORD: &str = "tls-p@ss";
pub const CA_NAMESPACE: &str = "argon-system";
pub const CA_SECRET: &str = "argon-ca";

pub fn key(secret: &Secret, k: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(k))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

pub fn tls_config(validity: Duration, extra: &[&str]) -> argon_operator::Config {
    let mut config = test_config("tls-test");
    let mut tls = EndpointTlsConfig::new(CA_NAMESPACE, CA_SECRET);
    tls.cert_validity = validity;
    tls.extra_names = extra.iter().map(|s| s.to_string()).collect();
    config.endpoint_tls = Some(tls);
    config
}

/// A directory laid out as the kubelet writes a Secret volume: the files
/// are symlinks through `..data`, and an update swaps `..data` at once.
pub struct SecretVolume {
    pub dir: tempfile::TempDir,
    generation: u32,
}

impl SecretVolume {
    pub fn new() -> SecretVolume {
        SecretVolume {
            dir: tempfile::tempdir().expect("a temporary directory"),
            generation: 0,
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes `secret`'s keys as the kubelet's AtomicWriter does.
    pub fn write(&mut self, secret: &Secret) {
        self.generation += 1;
        let root = self.dir.path();
        let version = format!("..{}", self.generation);
        std::fs::create_dir(root.join(&version)).expect("a version directory");
        for k in ["tls.crt", "tls.key", "ca.crt"] {
            let value = key(secret, k).expect("the Secret has the key");
            std::fs::write(root.join(&version).join(k), value).expect("writing a key");
            let link = root.join(k);
            if !link.exists() {
                std::os::unix::fs::symlink(Path::new("..data").join(k), &link)
                    .expect("a key's symlink");
            }
        }
        let tmp = root.join("..data_tmp");
        std::os::unix::fs::symlink(&version, &tmp).expect("the new ..data");
        std::fs::rename(&tmp, root.join("..data")).expect("swapping ..data");
    }
}

/// The wire server on the project's store, over TLS with the files of
/// `volume`, re-reading them as `argon-sidecar serve` does.
pub struct TlsSidecar {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    watch: tokio::task::JoinHandle<()>,
}

impl TlsSidecar {
    pub async fn start(mongo: &FerretDb, volume: &SecretVolume) -> anyhow::Result<TlsSidecar> {
        let store = MongoStore::connect(mongo.uri(), "argon_shop").await?;
        let wal = Wal::open(store, "shop", WalOptions::default()).await?;
        let service = argon_sidecar::service::Service::new(wal, "main", Default::default());
        service
            .set_auth_required(true)
            .await
            .map_err(|e| anyhow::anyhow!("turning authentication on: {e:?}"))?;
        let cert = argon_sidecar::tls::ServingCert::load(
            &volume.path("tls.crt"),
            &volume.path("tls.key"),
        )?;
        let acceptor = cert.acceptor()?;
        let watch = tokio::spawn(argon_sidecar::tls::watch(cert));
        let port = free_port()?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(argon_sidecar::server::run_with_tls(
            listener,
            service,
            Default::default(),
            Some(acceptor),
            async move {
                let _ = rx.await;
            },
        ));
        Ok(TlsSidecar {
            port,
            stop: Some(tx),
            watch,
        })
    }
}

impl Drop for TlsSidecar {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.watch.abort();
    }
}

/// The leaf the server at `port` presents, verified against `ca_pem` for
/// `name` (a real rustls handshake: chain, validity and name).
pub async fn served_leaf(port: u16, ca_pem: &str, name: &str) -> anyhow::Result<Vec<u8>> {
    Ok(served_cert(port, name, ca_pem).await?.as_ref().to_vec())
}

pub fn leaf_der(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("a PEM certificate")
        .as_ref()
        .to_vec()
}

/// Logs in with `uri` and writes to database `db`.
pub async fn login_and_write_on(uri: &str, db: &str) -> anyhow::Result<()> {
    let client = mongodb::Client::with_uri_str(uri).await?;
    client
        .database(db)
        .collection::<bson::Document>("c")
        .insert_one(bson::doc! {"at": 1})
        .await?;
    Ok(())
}

/// The Secret's `uri`, its address swapped for the in-process sidecar's
/// (`local_host`:`port`), with the documented `tlsCAFile` convention: a
/// real driver logs in and writes with the Secret's `ca.crt` (in
/// `volume`), and one trusting another CA is refused by its own
/// verification. Returns the swapped uri and the one with the CA.
pub async fn drivers_verify_the_endpoint(
    uri: &str,
    ns: &str,
    local_host: &str,
    port: u16,
    volume: &SecretVolume,
) -> (String, String) {
    let address = format!("abr-feature.{ns}.svc:27017");
    let local = uri.replace(&address, &format!("{local_host}:{port}"));
    let with_ca = format!(
        "{local}&tlsCAFile={}&serverSelectionTimeoutMS=5000",
        volume.path("ca.crt").display()
    );
    login_and_write_on(&with_ca, "app~feature")
        .await
        .expect("a driver trusting the Secret's CA logs in and writes");
    let other = TestCa::new("another CA").expect("a second CA");
    let other_file = volume.dir.path().join("other-ca.crt");
    std::fs::write(&other_file, other.cert_pem()).expect("writing the other CA");
    let wrong = format!(
        "{local}&tlsCAFile={}&serverSelectionTimeoutMS=3000",
        other_file.display()
    );
    let err = login_and_write_on(&wrong, "app~feature")
        .await
        .expect_err("a client trusting another CA must fail");
    assert!(
        format!("{err:#}").to_lowercase().contains("certificate"),
        "{err:#}"
    );
    (local, with_ca)
}

pub async fn setup(client: &kube::Client, mongo: &FerretDb, ns: &str) -> anyhow::Result<()> {
    namespace(client, CA_NAMESPACE).await?;
    store_secret(client, ns, "shop-store", mongo.uri()).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("app-pw".into()),
                    ..Default::default()
                },
                string_data: Some(BTreeMap::from([("password".into(), PASSWORD.into())])),
                ..Secret::default()
            },
        )
        .await?;
    let mut project = ProjectFixture::test("shop").build();
    project.spec.users = vec![UserSpec {
        name: "app".into(),
        db: "admin".into(),
        password_secret_ref: PasswordSecretRef {
            name: "app-pw".into(),
            key: "password".into(),
        },
        roles: vec![RoleSpec {
            role: argon_operator::crd::RoleName::ReadWrite,
            db: None,
            branch: Some("feature".into()),
        }],
    }];
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), ns);
    projects.create(&PostParams::default(), &project).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_serve_the_operators_certificate_and_drivers_verify_it() {
    let (_kube, client) = kube_with_crds().await.unwrap();
    let mongo = FerretDb::start().await.unwrap();
    let ns = namespace(&client, "tls").await.unwrap();
    setup(&client, &mongo, &ns).await.unwrap();
    let mut branch = BranchFixture::test("feature", "shop").build();
    branch.spec.endpoint.user = Some("app".into());
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    branches
        .create(&PostParams::default(), &branch)
        .await
        .unwrap();
    let operator = RunningOperator::start(
        client.clone(),
        tls_config(Duration::from_secs(3600), &["127.0.0.1"]),
    );

    let b = wait_for(&branches, "feature", "the certificate issued", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| c.status == "True")
            && condition(b, "ConnectionSecret").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap();
    let status = b.status.clone().unwrap_or_default();
    assert_eq!(
        status.endpoint.as_deref(),
        Some(format!("mongodb://abr-feature.{ns}.svc:27017/?loadBalanced=true&tls=true").as_str())
    );

    // The CA Secret the operator made, and the endpoint's Secret it signed.
    let ca_secrets: Api<Secret> = Api::namespaced(client.clone(), CA_NAMESPACE);
    let ca_secret = ca_secrets.get(CA_SECRET).await.unwrap();
    let ca_pem = key(&ca_secret, "ca.crt").unwrap();
    assert!(key(&ca_secret, "ca.key").is_some());
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let tls = secrets.get("feature-argon-tls").await.unwrap();
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        tls.owner_references()[0].uid,
        b.uid().unwrap(),
        "owned by the ArgonBranch"
    );
    assert_eq!(key(&tls, "ca.crt").unwrap(), ca_pem);
    let app = secrets.get("feature-argon-app").await.unwrap();
    assert_eq!(key(&app, "ca.crt").unwrap(), ca_pem);
    let uri = key(&app, "uri").unwrap();
    assert!(uri.ends_with("&tls=true"), "{uri}");

    // The Deployment mounts the Secret for the sidecar's TLS flags.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let d = deployments.get("abr-feature").await.unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let secret_volume = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref())
        .expect("a Secret volume");
    assert_eq!(
        secret_volume.secret_name.as_deref(),
        Some("feature-argon-tls")
    );
    let env: BTreeMap<String, String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    assert_eq!(env["ARGON_TLS_CERT_FILE"], "/etc/argon/tls/tls.crt");
    assert_eq!(env["ARGON_TLS_KEY_FILE"], "/etc/argon/tls/tls.key");
    let mount = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == "/etc/argon/tls")
        .expect("the TLS mount");
    assert_eq!(mount.read_only, Some(true));

    // The sidecar serves the Secret's files; a real handshake verifies the
    // certificate for every name of the Service against ca.crt.
    let mut volume = SecretVolume::new();
    volume.write(&tls);
    let sidecar = TlsSidecar::start(&mongo, &volume).await.unwrap();
    for name in [
        "abr-feature".to_string(),
        format!("abr-feature.{ns}"),
        format!("abr-feature.{ns}.svc"),
        format!("abr-feature.{ns}.svc.cluster.local"),
    ] {
        let leaf = served_leaf(sidecar.port, &ca_pem, &name).await.unwrap();
        assert_eq!(leaf, leaf_der(&key(&tls, "tls.crt").unwrap()), "{name}");
    }
    assert!(
        served_leaf(sidecar.port, &ca_pem, "abr-other.tls.svc")
            .await
            .is_err(),
        "a name the certificate does not hold"
    );

    // The driver: exactly the Secret's uri (address swapped for the
    // in-process sidecar's) plus the documented tlsCAFile convention.
    let (local, with_ca) =
        drivers_verify_the_endpoint(&uri, &ns, "127.0.0.1", sidecar.port, &volume).await;
    // A plain client gets nothing.
    let plain = local.replace("&tls=true", "") + "&serverSelectionTimeoutMS=3000";
    assert!(login_and_write_on(&plain, "app~feature").await.is_err());
    operator.stop().await.unwrap();

    // Renewal: an operator whose certificates live 30 s and name one more
    // address re-issues at once (names changed), then again with a third
    // of the lifetime left; the CA stays.
    let first = key(&tls, "tls.crt").unwrap();
    let operator = RunningOperator::start(
        client.clone(),
        tls_config(Duration::from_secs(30), &["127.0.0.1", "localhost"]),
    );
    wait_until("the pair re-issued for the new names", WAIT, || async {
        let s = secrets.get("feature-argon-tls").await?;
        Ok(key(&s, "tls.crt").is_some_and(|c| c != first))
    })
    .await
    .unwrap();
    let renewed = secrets.get("feature-argon-tls").await.unwrap();
    let second = key(&renewed, "tls.crt").unwrap();
    assert_ne!(key(&renewed, "tls.key"), key(&tls, "tls.key"));
    assert_eq!(key(&renewed, "ca.crt").unwrap(), ca_pem);

    // The volume update reaches the running sidecar (it re-reads changed
    // files every 5 s): the next handshakes present the renewed leaf.
    volume.write(&renewed);
    wait_until(
        "the sidecar serves the renewed certificate",
        WAIT,
        || async {
            Ok(served_leaf(sidecar.port, &ca_pem, "localhost").await? == leaf_der(&second))
        },
    )
    .await
    .unwrap();
    login_and_write_on(&with_ca, "app~feature").await.unwrap();

    // Twenty seconds in (a third of 30 s left) it is renewed again.
    wait_until(
        "the pair renewed with a third of its lifetime left",
        Duration::from_secs(40),
        || async {
            let s = secrets.get("feature-argon-tls").await?;
            Ok(key(&s, "tls.crt").is_some_and(|c| c != second && c != first))
        },
    )
    .await
    .unwrap();

    // Turning TLS off: a plain endpoint, and the connection Secret says so.
    branches
        .patch(
            "feature",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"endpoint": {"tls": false}}})),
        )
        .await
        .unwrap();
    wait_for(&branches, "feature", "a plain endpoint", |b| {
        condition(b, "EndpointTLS").is_none()
            && b.status
                .as_ref()
                .and_then(|s| s.endpoint.as_deref())
                .is_some_and(|e| !e.contains("tls=true"))
    })
    .await
    .unwrap();
    let app = secrets.get("feature-argon-app").await.unwrap();
    assert_eq!(key(&app, "ca.crt"), None);
    assert!(
        secrets
            .get_opt("feature-argon-tls")
            .await
            .unwrap()
            .is_none(),
        "the key pair is deleted with TLS off"
    );
    assert!(!key(&app, "uri").unwrap().contains("tls=true"));
    // Nothing of the keys in the branch's status.
    let b = branches.get("feature").await.unwrap();
    let status = serde_json::to_string(&b.status).unwrap();
    assert!(!status.contains("PRIVATE KEY") && !status.contains("CERTIFICATE"));
    operator.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_ca_a_tls_endpoint_is_not_provisioned() {
    let (_kube, client) = kube_with_crds().await.unwrap();
    let mongo = FerretDb::start().await.unwrap();
    let ns = namespace(&client, "tls-none").await.unwrap();
    setup(&client, &mongo, &ns).await.unwrap();
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);

    // A Secret of the TLS Secret's name that is not the branch's is never
    // overwritten (here with a CA, so the only refusal is the name).
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("taken-argon-tls".into()),
                    ..Default::default()
                },
                string_data: Some(BTreeMap::from([("mine".into(), "yes".into())])),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("taken", "shop").build(),
        )
        .await
        .unwrap();
    // No CA configured: no endpoint (never a plain one instead).
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await
        .unwrap();
    let mut config = test_config("tls-none");
    config.endpoint_tls = None;
    let operator = RunningOperator::start(client.clone(), config);
    let b = wait_for(&branches, "feature", "TLS not issued", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| c.status == "False")
    })
    .await
    .unwrap();
    let c = condition(&b, "EndpointTLS").unwrap();
    assert!(c.message.contains("no CA for endpoints"), "{}", c.message);
    assert_eq!(
        condition(&b, "EndpointReady").map(|c| c.reason.as_str()),
        Some("TlsNotIssued")
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt("abr-feature").await.unwrap().is_none());
    operator.stop().await.unwrap();

    // A CA Secret someone else writes (cert-manager's, say: no ca.key) is
    // never replaced by the operator's own CA.
    let ca_secrets: Api<Secret> = Api::namespaced(client.clone(), CA_NAMESPACE);
    ca_secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("foreign-ca".into()),
                    ..Default::default()
                },
                string_data: Some(BTreeMap::from([("ca.crt".into(), "not a CA".into())])),
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let mut config = tls_config(Duration::from_secs(3600), &[]);
    if let Some(tls) = config.endpoint_tls.as_mut() {
        tls.ca_secret = "foreign-ca".into();
    }
    let operator = RunningOperator::start(client.clone(), config);
    wait_for(&branches, "feature", "the foreign CA Secret refused", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| {
            c.status == "False" && c.message.contains("not the operator's to replace")
        })
    })
    .await
    .unwrap();
    operator.stop().await.unwrap();
    let foreign = ca_secrets.get("foreign-ca").await.unwrap();
    assert_eq!(key(&foreign, "ca.crt").as_deref(), Some("not a CA"));
    assert_eq!(key(&foreign, "ca.key"), None);

    // With a CA: the taken name is refused, the Secret left as it was.
    let operator =
        RunningOperator::start(client.clone(), tls_config(Duration::from_secs(3600), &[]));
    let b = wait_for(&branches, "taken", "the taken Secret refused", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| {
            c.status == "False" && c.message.contains("not owned by this ArgonBranch")
        })
    })
    .await
    .unwrap();
    assert!(b.status.unwrap().endpoint.is_none());
    let taken = secrets.get("taken-argon-tls").await.unwrap();
    assert_eq!(key(&taken, "mine").as_deref(), Some("yes"));
    assert_eq!(key(&taken, "tls.key"), None);
    wait_for(&branches, "feature", "issued once a CA exists", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap();
    operator.stop().await.unwrap();
}
