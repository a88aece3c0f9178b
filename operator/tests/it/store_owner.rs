//! An embedded store in a cluster: its owner pod's objects against a real
//! apiserver (no kubelet: the stored objects are checked), and the
//! operator's remote store against a real `argon-sidecar serve` process on
//! an embedded store, through the `ProjectStore` trait the controllers use.

use crate::support::*;
use argon_operator::crd::{ArgonBranch, ArgonProject, DeletionPolicy, EmbeddedStoreSpec};
use argon_operator::project_store::ProjectStore;
use argon_operator::project_store::remote::RemoteStore;
use argon_operator::store_owner;
use argon_testkit::free_port;
use argon_testkit::process::ServerProcess;
use argon_wal::{ReadPoint, Seq, WalError};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The sidecar binary cargo built beside the operator's (the operator's
/// tests cannot name another package's binary; `cargo test --workspace`
/// builds it).
fn sidecar_binary() -> anyhow::Result<PathBuf> {
    let bin = Path::new(env!("CARGO_BIN_EXE_argon-operator"))
        .with_file_name(format!("argon-sidecar{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        bin.exists(),
        "no {}: run cargo build -p argon-sidecar (or cargo test --workspace) first",
        bin.display()
    );
    Ok(bin)
}

/// `argon-sidecar serve --data <tmp>` on 127.0.0.1, as the owner pod runs it.
struct Owner {
    _process: ServerProcess,
    port: u16,
    _dir: tempfile::TempDir,
}

/// An owner's key, as `store_owner::key_secret` makes them (64 characters).
const KEY: &str = "b3duZXJLZXlPZlRoZVNob3BQcm9qZWN0SW5UaGVDbHVzdGVyRm9yVGhlVGVzdHM0";

impl Owner {
    /// The owner as its pod runs it: with `--key-file` holding [`KEY`].
    async fn start() -> anyhow::Result<Owner> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, format!("{KEY}\n"))?;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o400))?;
        let args: Vec<String> = [
            "serve".to_string(),
            "--data".into(),
            dir.path().join("data").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--key-file".into(),
            key_file.display().to_string(),
        ]
        .into();
        let mut process =
            ServerProcess::start("store-owner", &sidecar_binary()?, &args, dir.path())?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            process.ensure_running()?;
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the owner did not listen:\n{}",
                process.log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Owner {
            _process: process,
            port,
            _dir: dir,
        })
    }

    fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=5000",
            self.port
        )
    }
}

#[tokio::test]
async fn the_remote_store_speaks_the_owners_admin_commands() -> anyhow::Result<()> {
    let owner = Owner::start().await?;
    let remote = RemoteStore::connect(&owner.uri(), "shop-argon-store", Some(KEY)).await?;
    let store: &dyn ProjectStore = &remote;
    assert!(store.wal().is_none(), "no WAL through an owner");

    let branches = store.list_branches().await?;
    assert_eq!(
        branches.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["main"]
    );
    // A commit on main, through the owner's default connection.
    let client = mongodb::Client::with_uri_str(owner.uri()).await?;
    client
        .database("shop")
        .collection::<bson::Document>("orders")
        .insert_one(bson::doc! {"_id": 1, "qty": 5})
        .await?;
    let main = store.log_info("main").await?;
    assert_eq!(main.commits, 1);
    assert_eq!(main.last.map(|c| c.seq), Some(Seq(1)));

    let dev = store.create_branch("dev", "main", ReadPoint::Head).await?;
    assert_eq!(dev.name.as_str(), "dev");
    assert_eq!(dev.parent.as_ref().map(|p| p.as_str()), Some("main"));
    assert_eq!(dev.fork_seq, Some(Seq(1)));
    assert_eq!(store.branch("dev").await?, dev);
    let old = store
        .create_branch("old", "main", ReadPoint::Seq(Seq(0)))
        .await?;
    assert_eq!(old.fork_seq, Some(Seq(0)));

    // The WAL's errors, as the controllers match them.
    match store.create_branch("dev", "main", ReadPoint::Head).await {
        Err(WalError::BranchExists { name }) => assert_eq!(name, "dev"),
        other => panic!("expected BranchExists, got {other:?}"),
    }
    match store.create_branch("x", "missing", ReadPoint::Head).await {
        Err(WalError::UnknownBranch { name }) => assert_eq!(name, "missing"),
        other => panic!("expected UnknownBranch, got {other:?}"),
    }
    match store.create_branch("Bad", "main", ReadPoint::Head).await {
        Err(WalError::InvalidBranchName { name, .. }) => assert_eq!(name, "Bad"),
        other => panic!("expected InvalidBranchName, got {other:?}"),
    }
    match store
        .create_branch("x", "main", ReadPoint::Seq(Seq(99)))
        .await
    {
        Err(WalError::PointBeyondHead { branch, head, .. }) => {
            assert_eq!((branch.as_str(), head), ("main", Seq(1)));
        }
        other => panic!("expected PointBeyondHead, got {other:?}"),
    }
    match store.branch("nope").await {
        Err(WalError::UnknownBranch { name }) => assert_eq!(name, "nope"),
        other => panic!("expected UnknownBranch, got {other:?}"),
    }
    match store.log_info("nope").await {
        Err(WalError::UnknownBranch { name }) => assert_eq!(name, "nope"),
        other => panic!("expected UnknownBranch, got {other:?}"),
    }

    // Protected: no delete, no reset; a preview still works.
    store.set_protected("dev", true).await?;
    let e = client
        .database("admin")
        .run_command(bson::doc! {"argonListBranches": 1})
        .await
        .expect_err("admin commands need the key");
    assert!(e.to_string().contains("requires authentication"), "{e}");
    let mut options = mongodb::options::ClientOptions::parse(owner.uri()).await?;
    options.credential = Some(
        mongodb::options::Credential::builder()
            .username("__system".to_string())
            .password(KEY.to_string())
            .source("local".to_string())
            .build(),
    );
    let protected = mongodb::Client::with_options(options)?
        .database("admin")
        .run_command(bson::doc! {"argonListBranches": 1})
        .await?;
    assert!(
        format!("{protected}").contains("\"protected\": true"),
        "{protected}"
    );
    match store.delete_branch("dev", false).await {
        Err(WalError::Protected { name, .. }) => assert_eq!(name, "dev"),
        other => panic!("expected Protected, got {other:?}"),
    }
    match store
        .reset_branch("dev", ReadPoint::Seq(Seq(0)), false, None)
        .await
    {
        Err(WalError::Protected { name, .. }) => assert_eq!(name, "dev"),
        other => panic!("expected Protected, got {other:?}"),
    }
    let preview = store
        .reset_branch("main", ReadPoint::Seq(Seq(0)), true, None)
        .await?;
    assert!(!preview.applied);
    assert_eq!((preview.old_head.seq, preview.target), (Seq(1), Seq(0)));
    assert_eq!((preview.added, preview.removed, preview.changed), (0, 1, 0));
    assert_eq!(preview.collections, [("shop.orders".to_string(), 0, 1, 0)]);
    assert_eq!(store.log_info("main").await?.commits, 1, "nothing reset");

    // Children first; main is the root.
    store.set_protected("dev", false).await?;
    store.create_branch("dev2", "dev", ReadPoint::Head).await?;
    match store.delete_branch("dev", false).await {
        Err(WalError::HasChildren { name, children }) => {
            assert_eq!((name.as_str(), children.as_str()), ("dev", "dev2"));
        }
        other => panic!("expected HasChildren, got {other:?}"),
    }
    store.delete_branch("dev2", false).await?;
    store.delete_branch("dev", false).await?;
    assert!(store.branch("dev").await?.deleted, "listed as deleted");
    assert!(matches!(
        store.delete_branch("main", false).await,
        Err(WalError::Protected { .. })
    ));
    // A reset with a backup, applied.
    let reset = store
        .reset_branch("old", ReadPoint::Seq(Seq(0)), false, Some("old-backup"))
        .await?;
    assert!(reset.applied && !reset.already_applied);

    // Exactly once across the wire: a retried request (a lost reply, an
    // operator restarted before it wrote the status) resets nothing more,
    // and what was written after the first one stays.
    let once = store
        .reset_branch_once("main", ReadPoint::Seq(Seq(0)), Some("main-backup"), "req-1")
        .await?;
    assert!(once.applied && !once.already_applied);
    assert_eq!((once.old_head.seq, once.target), (Seq(1), Seq(0)));
    client
        .database("shop")
        .collection::<bson::Document>("orders")
        .insert_one(bson::doc! {"_id": 2, "qty": 1})
        .await?;
    let head = store.log_info("main").await?.last.map(|c| c.seq);
    let retried = store
        .reset_branch_once("main", ReadPoint::Seq(Seq(0)), Some("main-backup"), "req-1")
        .await?;
    assert!(retried.applied && retried.already_applied, "{retried:?}");
    assert_eq!(store.log_info("main").await?.last.map(|c| c.seq), head);
    let count = client
        .database("shop")
        .collection::<bson::Document>("orders")
        .count_documents(bson::doc! {})
        .await?;
    assert_eq!(count, 1, "the write after the first reset is still there");
    assert_eq!(
        store
            .branch("old-backup")
            .await?
            .parent
            .map(|p| p.to_string()),
        Some("old".to_string())
    );
    drop(owner);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_owner_is_an_error_naming_the_command() -> anyhow::Result<()> {
    let port = free_port()?; // nothing listens there
    let uri =
        format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=300");
    let remote = RemoteStore::connect(&uri, "gone-argon-store", Some(KEY)).await?;
    match remote.list_branches().await {
        Err(e @ WalError::Mongo { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("argonListBranches") && text.contains("gone-argon-store"),
                "{text}"
            );
        }
        other => panic!("expected a transport error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_remote_store_without_the_owners_key_is_unauthorized() -> anyhow::Result<()> {
    let owner = Owner::start().await?;
    let wrong = "d3Jvbmcta2V5LW9mLWFub3RoZXItcHJvamVjdA==";
    for key in [Some(wrong), None] {
        let remote = RemoteStore::connect(&owner.uri(), "shop-argon-store", key).await?;
        for result in [
            remote.list_branches().await.map(drop),
            remote
                .create_branch("dev", "main", ReadPoint::Head)
                .await
                .map(drop),
            remote.delete_branch("main", true).await,
        ] {
            match result {
                Err(e @ WalError::Unauthorized { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("shop-argon-store"), "{text}");
                    assert!(!text.contains(wrong) && !text.contains(KEY), "{text}");
                }
                other => panic!("{key:?}: expected Unauthorized, got {other:?}"),
            }
        }
    }
    // Nothing was changed by them.
    let remote = RemoteStore::connect(&owner.uri(), "shop-argon-store", Some(KEY)).await?;
    let names: Vec<String> = remote
        .list_branches()
        .await?
        .into_iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, ["main"]);
    Ok(())
}

/// A project on an embedded store: claim `wal` (with a sub-path).
fn embedded_project(name: &str) -> ArgonProject {
    let mut project = ProjectFixture::test(name).build();
    project.spec.store.mongodb = None;
    project.spec.store.embedded = Some(EmbeddedStoreSpec {
        claim_name: "wal".into(),
        sub_path: Some("shop".into()),
    });
    project
}

#[tokio::test]
async fn an_embedded_project_gets_one_owner_of_its_claim() -> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let ns = namespace(&client, "owner").await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    let mut config = test_config("owner-test");
    config.store_copy_namespace = Some("argon-system".into());
    let operator = RunningOperator::start(client.clone(), config);
    let project = projects
        .create(&PostParams::default(), &embedded_project("shop"))
        .await?;
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await?;

    // Until the owner has an available replica: a condition, no crash loop.
    let waiting = wait_for(
        &projects,
        "shop",
        "StoreReachable False OwnerNotReady",
        |p| {
            project_condition(p, "StoreReachable")
                .is_some_and(|c| c.status == "False" && c.reason == "OwnerNotReady")
        },
    )
    .await?;
    let message = &project_condition(&waiting, "StoreReachable")
        .unwrap()
        .message;
    assert!(message.contains("shop-argon-store"), "{message}");

    let owner = deployments.get("shop-argon-store").await?;
    let spec = owner.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );
    let refs = owner.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].name.as_str()),
        ("ArgonProject", "shop")
    );
    assert_eq!(Some(refs[0].uid.as_str()), project.metadata.uid.as_deref());
    assert_eq!(refs[0].controller, Some(true));
    let pod = spec.template.spec.unwrap();
    let claims: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
        .collect();
    assert_eq!(claims, ["wal"]);
    let container = &pod.containers[0];
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "argon-data")
        .expect("the claim is mounted");
    assert_eq!(mount.sub_path.as_deref(), Some("shop"));
    let env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    assert!(
        env.contains(&("ARGON_DATA".into(), "/var/lib/argon".into())),
        "{env:?}"
    );
    assert!(
        env.contains(&("ARGON_BRANCH".into(), "main".into())),
        "{env:?}"
    );
    assert!(env.iter().all(|(k, _)| k != "ARGON_STORE"), "{env:?}");
    let security = container.security_context.clone().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());

    // The key: a Secret of its own, owned by the project, mounted 0400
    // read-only and named by ARGON_KEY_FILE.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let key_secret = secrets.get("shop-argon-store-key").await?;
    assert_eq!(
        key_secret
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()[0]
            .uid,
        refs[0].uid
    );
    let key = key_secret.data.clone().unwrap_or_default()["key"].0.clone();
    assert_eq!(key.len(), 64, "base64 of 48 bytes");
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&key)
            .map(|b| b.len())
            .ok(),
        Some(48)
    );
    let key_volume = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref())
        .expect("the key Secret is a volume");
    assert_eq!(
        key_volume.secret_name.as_deref(),
        Some("shop-argon-store-key")
    );
    assert_eq!(key_volume.default_mode, Some(0o400));
    let key_mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "argon-store-key")
        .expect("the key is mounted");
    assert_eq!(key_mount.read_only, Some(true));
    assert!(
        env.contains(&(
            "ARGON_KEY_FILE".into(),
            format!("{}/key", key_mount.mount_path)
        )),
        "{env:?}"
    );
    assert_eq!(
        pod.security_context.as_ref().and_then(|c| c.fs_group),
        Some(65532),
        "kubelet gives the key file the pod's group"
    );

    let service = services.get("shop-argon-store").await?;
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        service_spec.selector,
        Some(store_owner::selector("shop")),
        "the Service selects the owner pod"
    );
    assert_eq!(
        service.metadata.owner_references.unwrap_or_default()[0].uid,
        refs[0].uid
    );

    // Unauthenticated, the owner is reachable only from the project's
    // namespace and the operator's, on the MongoDB port.
    let policy = policies.get("shop-argon-store").await?;
    assert_eq!(
        policy.metadata.owner_references.unwrap_or_default()[0].uid,
        refs[0].uid
    );
    let policy = policy.spec.unwrap();
    assert_eq!(
        policy.pod_selector.and_then(|s| s.match_labels),
        Some(store_owner::selector("shop"))
    );
    assert_eq!(policy.policy_types, Some(vec!["Ingress".to_string()]));
    let ingress = policy.ingress.unwrap_or_default();
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    let from: Vec<_> = ingress
        .iter()
        .flat_map(|rule| rule.from.clone().unwrap_or_default())
        .collect();
    assert_eq!(from[0].namespace_selector, None, "this namespace's pods");
    assert_eq!(
        from[1]
            .namespace_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(std::collections::BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            "argon-system".to_string()
        )])),
        "the operator's namespace"
    );
    for rule in &ingress {
        let ports: Vec<_> = rule
            .ports
            .iter()
            .flatten()
            .map(|p| p.port.clone())
            .collect();
        assert_eq!(
            ports,
            [Some(IntOrString::Int(
                argon_operator::endpoint::MONGODB_PORT
            ))]
        );
    }

    // The branch waits for the store; no endpoint of its own mounts the claim.
    wait_for(&branches, "feature", "StoreReachable False", |b| {
        condition(b, "StoreReachable").is_some_and(|c| c.status == "False")
    })
    .await?;
    for d in deployments.list(&Default::default()).await? {
        let name = d.name_any();
        let claims = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.volumes)
            .unwrap_or_default()
            .into_iter()
            .filter(|v| v.persistent_volume_claim.is_some())
            .count();
        assert!(
            claims == 0 || name == "shop-argon-store",
            "{name} mounts the claim"
        );
    }

    // An owner reported available that does not answer (no such Service
    // address here): a condition, the operator still up.
    let status = DeploymentStatus {
        replicas: Some(1),
        ready_replicas: Some(1),
        available_replicas: Some(1),
        ..DeploymentStatus::default()
    };
    deployments
        .patch_status(
            "shop-argon-store",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": status})),
        )
        .await?;
    let unreachable = wait_for(
        &projects,
        "shop",
        "StoreReachable False StoreUnreachable",
        |p| {
            project_condition(p, "StoreReachable")
                .is_some_and(|c| c.status == "False" && c.reason == "StoreUnreachable")
        },
    )
    .await?;
    let message = &project_condition(&unreachable, "StoreReachable")
        .unwrap()
        .message;
    assert!(
        message.contains("argonLogInfo") && message.contains("shop-argon-store"),
        "{message}"
    );
    // Reconciled again and again since: the key was never rewritten.
    let again = secrets.get("shop-argon-store-key").await?;
    assert_eq!(
        again.metadata.resource_version,
        key_secret.metadata.resource_version
    );
    assert_eq!(again.data.unwrap_or_default()["key"].0, key);
    assert!(!message.contains(std::str::from_utf8(&key)?), "{message}");
    operator.stop().await?;
    Ok(())
}

/// A peer that speaks the wire protocol well enough for the driver's
/// handshake, then answers every command `{ok: 1}` with fields of the wrong
/// type: an owner of another version, or a broken one. Not a stand-in for
/// the sidecar (the test above runs the real one); the only way to get
/// replies a correct sidecar never sends.
async fn wrong_shape_peer() -> anyhow::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                loop {
                    let mut header = [0u8; 16];
                    if socket.read_exact(&mut header).await.is_err() {
                        return;
                    }
                    let word = |i: usize| {
                        i32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]])
                    };
                    let (len, request_id, op) = (word(0), word(4), word(12));
                    let Some(size) = usize::try_from(len)
                        .ok()
                        .filter(|n| (16..=48_000_000).contains(n))
                    else {
                        return;
                    };
                    let mut body = vec![0u8; size - 16];
                    if socket.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let command = match op {
                        // OP_MSG: flags, then a kind-0 section.
                        2013 => body
                            .get(5..)
                            .and_then(|d| bson::Document::from_reader(d).ok()),
                        // OP_QUERY: flags, collection name, skip, return, query.
                        2004 => body
                            .get(4..)
                            .and_then(|rest| rest.iter().position(|b| *b == 0))
                            .and_then(|end| body.get(4 + end + 9..))
                            .and_then(|d| bson::Document::from_reader(d).ok()),
                        _ => None,
                    };
                    let Some(command) = command else { return };
                    let first = command.keys().next().cloned().unwrap_or_default();
                    let reply = if ["hello", "isMaster", "ismaster"].contains(&first.as_str()) {
                        bson::doc! {
                            "ismaster": true, "isWritablePrimary": true, "helloOk": true,
                            "maxWireVersion": 21, "minWireVersion": 0,
                            "maxBsonObjectSize": 16 * 1024 * 1024,
                            "maxMessageSizeBytes": 48_000_000, "maxWriteBatchSize": 100_000,
                            "ok": 1.0,
                        }
                    } else {
                        bson::doc! {"ok": 1.0, "branches": "none", "branch": 7, "oldHead": [1]}
                    };
                    let mut doc = Vec::new();
                    if reply.to_writer(&mut doc).is_err() {
                        return;
                    }
                    let mut out = Vec::new();
                    let (op_out, prefix): (i32, Vec<u8>) = if op == 2013 {
                        (2013, vec![0, 0, 0, 0, 0])
                    } else {
                        let mut p = vec![0u8; 4 + 8 + 4];
                        p.extend(1i32.to_le_bytes());
                        (1, p)
                    };
                    let total = 16 + prefix.len() + doc.len();
                    out.extend((total as i32).to_le_bytes());
                    out.extend(1i32.to_le_bytes());
                    out.extend(request_id.to_le_bytes());
                    out.extend(op_out.to_le_bytes());
                    out.extend(prefix);
                    out.extend(doc);
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

#[tokio::test]
async fn a_reply_of_the_wrong_shape_is_an_error_naming_the_command() -> anyhow::Result<()> {
    let port = wrong_shape_peer().await?;
    let uri =
        format!("mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=5000");
    let remote = RemoteStore::connect(&uri, "odd-argon-store", None).await?;
    let store: &dyn ProjectStore = &remote;
    let calls: Vec<(&str, Result<(), WalError>)> = vec![
        ("argonListBranches", store.list_branches().await.map(drop)),
        ("argonListBranches", store.branch("main").await.map(drop)),
        (
            "argonCreateBranch",
            store
                .create_branch("dev", "main", ReadPoint::Head)
                .await
                .map(drop),
        ),
        ("argonLogInfo", store.log_info("main").await.map(drop)),
        (
            "argonResetBranch",
            store
                .reset_branch("main", ReadPoint::Seq(Seq(0)), true, None)
                .await
                .map(drop),
        ),
    ];
    for (command, result) in calls {
        match result {
            Err(e @ WalError::Malformed { .. }) => {
                let text = e.to_string();
                assert!(text.contains(command), "{command}: {text}");
            }
            other => panic!("{command}: expected a malformed reply, got {other:?}"),
        }
    }
    // Commands whose replies the operator does not read succeed.
    store.set_protected("main", false).await?;
    store.delete_branch("dev", false).await?;
    Ok(())
}

/// A namespace's deletion takes the owner of an embedded store with
/// everything else. Finalizers that need the store then finish without it
/// rather than hold the namespace forever (with `deletionPolicy: Delete`
/// the project waits for its branches and they for the store). While the
/// project lives, a branch waits for an owner that is only not ready.
#[tokio::test]
async fn finalizers_finish_without_the_store_once_its_owner_is_gone_with_the_project()
-> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let ns = namespace(&client, "owner-gone").await?;
    let projects: Api<ArgonProject> = Api::namespaced(client.clone(), &ns);
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let operator = RunningOperator::start(client.clone(), test_config("owner-gone"));
    let mut project = embedded_project("shop");
    project.spec.deletion_policy = DeletionPolicy::Delete;
    projects.create(&PostParams::default(), &project).await?;
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("feature", "shop").build(),
        )
        .await?;
    // No kubelet here: the owner is written and never becomes available.
    wait_for(&deployments, "shop-argon-store", "the owner", |_| true).await?;
    wait_for(&branches, "feature", "its finalizer", |b| {
        !b.finalizers().is_empty()
    })
    .await?;

    branches.delete("feature", &DeleteParams::default()).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = branches.get_opt("feature").await?;
    assert!(
        waiting.is_some(),
        "a branch of a live project waits for its owner"
    );

    // What the namespace controller does: everything deleted at once.
    projects.delete("shop", &DeleteParams::default()).await?;
    deployments
        .delete("shop-argon-store", &DeleteParams::default())
        .await?;
    wait_gone(&branches, "feature").await?;
    wait_gone(&projects, "shop").await?;
    operator.stop().await?;
    Ok(())
}

/// `spec.users` through an owner: the same `users::sync` the controller
/// runs, over the remote store, against a real owner process. The user
/// logs in to the owner with its Secret's password; an unchanged pass
/// writes nothing (the stored keys are compared, not rewritten); a changed
/// password is written and the old one stops; a user gone from the spec is
/// dropped; and no password crosses into the owner's log.
#[tokio::test]
async fn spec_users_reach_an_embedded_store_through_its_owner() -> anyhow::Result<()> {
    use crate::users::{password_secret, role, user};
    use argon_operator::crd::RoleName;
    use argon_operator::stores::Stores;
    use argon_operator::users;

    let (_kube, client) = kube_with_crds().await?;
    let ns = namespace(&client, "owner-users").await?;
    password_secret(&client, &ns, "ann-pw", "ann-first-Pa55word").await?;
    let owner = Owner::start().await?;
    let remote = RemoteStore::connect(&owner.uri(), "shop-argon-store", Some(KEY)).await?;
    let stores = Stores::new(
        client.clone(),
        "owner-users-test".into(),
        None,
        None,
        Vec::new(),
    );
    let mut project = embedded_project("shop");
    project.metadata.namespace = Some(ns.clone());
    project.spec.users = vec![user(
        "ann",
        "ann-pw",
        vec![role(RoleName::ReadWrite, Some("app"))],
    )];

    let login = |password: &'static str| {
        let uri = format!(
            "mongodb://ann:{password}@127.0.0.1:{}/?authSource=admin&directConnection=true&serverSelectionTimeoutMS=3000",
            owner.port
        );
        async move { crate::users::login_and_write(&uri).await }
    };

    let out = users::sync(&project, &stores, &remote).await?;
    assert_eq!(out.written, ["ann@admin"], "{out:?}");
    assert_eq!(out.in_sync, 1, "{out:?}");
    login("ann-first-Pa55word").await?;
    assert!(login("not-the-password").await.is_err());

    // Unchanged: compared with the stored keys, nothing written.
    let out = users::sync(&project, &stores, &remote).await?;
    assert!(out.written.is_empty(), "{out:?}");
    assert_eq!(out.in_sync, 1, "{out:?}");

    // A new password in the Secret.
    password_secret(&client, &ns, "ann-pw", "ann-second-Pa55word").await?;
    let out = users::sync(&project, &stores, &remote).await?;
    assert_eq!(out.written, ["ann@admin"], "{out:?}");
    login("ann-second-Pa55word").await?;
    assert!(login("ann-first-Pa55word").await.is_err());

    // Gone from the spec: dropped.
    project.spec.users.clear();
    let out = users::sync(&project, &stores, &remote).await?;
    assert_eq!(out.dropped, ["ann@admin"], "{out:?}");
    assert!(login("ann-second-Pa55word").await.is_err());
    assert!(
        remote.users().await?.is_empty(),
        "no user left in the store"
    );
    Ok(())
}
