//! Endpoint certificates from cert-manager (`spec.endpoint.certManager`),
//! against a real apiserver, cert-manager's own controllers (built from its
//! Go module by the bootstrap) with a CA `Issuer`, FerretDB and the real wire
//! server in-process with TLS: the operator writes a `Certificate` owned by
//! the branch, cert-manager issues the Secret, the endpoint serves it and a
//! real driver verifies it against the connection Secret's `ca.crt`; a
//! renewal cert-manager makes reaches the running sidecar; dropping
//! `certManager` hands the Secret back to the operator's CA; deleting the
//! branch removes the Certificate and its Secret. Before cert-manager is
//! installed, and for a Secret name someone else holds, nothing is asked of
//! it and the branch says why.

use crate::endpoint_tls::*;
use crate::support::*;
use argon_operator::crd::{ArgonBranch, EndpointCertManager, IssuerRef};
use argon_testkit::process::ServerProcess;
use argon_testkit::tls::TestCa;
use argon_testkit::{FerretDb, KubeApiServer, assets, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::{Api, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn certificates(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "certificates"),
    )
}

fn issuers(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("cert-manager.io", "v1", "Issuer");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "issuers"),
    )
}

fn from_issuer(name: &str) -> Option<EndpointCertManager> {
    Some(EndpointCertManager {
        issuer_ref: IssuerRef {
            name: name.into(),
            kind: None,
            group: None,
        },
    })
}

/// cert-manager's CRDs applied and its controllers running against `server`.
fn install_cert_manager(server: &KubeApiServer) -> anyhow::Result<ServerProcess> {
    let crds = assets::cert_manager_crds()?;
    server.kubectl(&["apply", "--server-side", "-f", &crds.display().to_string()])?;
    for crd in [
        "certificates.cert-manager.io",
        "certificaterequests.cert-manager.io",
        "issuers.cert-manager.io",
        "clusterissuers.cert-manager.io",
    ] {
        server.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{crd}"),
        ])?;
    }
    ServerProcess::start(
        "cert-manager",
        &assets::cert_manager_controller()?,
        &[
            "--kubeconfig".to_string(),
            server.kubeconfig_path().display().to_string(),
        ],
        server.dir(),
    )
}

/// A CA `Issuer` named `name` in `ns` signing with `ca`.
async fn ca_issuer(client: &kube::Client, ns: &str, name: &str, ca: &TestCa) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-key")),
                    ..Default::default()
                },
                type_: Some("kubernetes.io/tls".into()),
                string_data: Some(BTreeMap::from([
                    ("tls.crt".into(), ca.cert_pem()),
                    ("tls.key".into(), ca.key_pem()),
                ])),
                ..Secret::default()
            },
        )
        .await?;
    let issuer: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ca": {"secretName": format!("{name}-key")}},
    }))?;
    issuers(client, ns)
        .create(&PostParams::default(), &issuer)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_serve_cert_managers_certificate_and_drivers_verify_it() {
    let kube = KubeApiServer::start().await.unwrap();
    let client = kube.client().await.unwrap();
    install_crds(&client).await.unwrap();
    let mongo = FerretDb::start().await.unwrap();
    let ns = namespace(&client, "cm").await.unwrap();
    setup(&client, &mongo, &ns).await.unwrap();
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // The CRD: certManager says who issues a TLS certificate, so it needs
    // TLS; an issuer reference must be a name and a kind.
    for (patch, says) in [
        (
            json!({"tls": false, "certManager": {"issuerRef": {"name": "ca"}}}),
            "needs spec.endpoint.tls: true",
        ),
        (
            json!({"certManager": {"issuerRef": {"name": "Not A Name"}}}),
            "issuerRef.name must be a DNS subdomain name",
        ),
        (
            json!({"certManager": {"issuerRef": {"name": "ca", "kind": "Cluster Issuer;"}}}),
            "issuerRef.kind must be a Kubernetes kind",
        ),
        (
            json!({"certManager": {"issuerRef": {"name": "ca", "group": "cert_manager!"}}}),
            "issuerRef.group must be an API group",
        ),
        (json!({"certManager": {"issuerRef": {}}}), "name"),
    ] {
        let mut raw = serde_json::to_value(BranchFixture::test("bad", "shop").build()).unwrap();
        raw["spec"]["endpoint"] = patch;
        let bad: ArgonBranch = match serde_json::from_value(raw.clone()) {
            Ok(b) => b,
            // A shape serde refuses never reaches the apiserver either.
            Err(e) => {
                assert!(e.to_string().contains(says), "{e}");
                continue;
            }
        };
        let err = branches
            .create(&PostParams::default(), &bad)
            .await
            .expect_err("refused by the CRD");
        assert!(err.to_string().contains(says), "{says}: {err}");
    }

    // Asked for before cert-manager is installed: no endpoint, and why.
    let mut early = BranchFixture::test("early", "shop").build();
    early.spec.endpoint.cert_manager = from_issuer("ca");
    branches
        .create(&PostParams::default(), &early)
        .await
        .unwrap();
    let operator = RunningOperator::start(
        client.clone(),
        tls_config(Duration::from_secs(3600), &["localhost"]),
    );
    let b = wait_for(&branches, "early", "cert-manager missing", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| c.status == "False")
    })
    .await
    .unwrap();
    let c = condition(&b, "EndpointTLS").unwrap();
    assert!(
        c.message.contains("cert-manager is not installed"),
        "{}",
        c.message
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt("abr-early").await.unwrap().is_none());

    // cert-manager arrives, with a CA Issuer: the waiting branch is issued.
    let ca = TestCa::new("cert-manager test CA").unwrap();
    let _cert_manager = install_cert_manager(&kube).unwrap();
    ca_issuer(&client, &ns, "ca", &ca).await.unwrap();
    wait_for(&branches, "early", "issued once cert-manager runs", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap();

    // A Secret of the name that is someone else's is never handed to
    // cert-manager (it would take it over): no Certificate is written.
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
    let mut taken = BranchFixture::test("taken", "shop").build();
    taken.spec.endpoint.cert_manager = from_issuer("ca");
    branches
        .create(&PostParams::default(), &taken)
        .await
        .unwrap();
    wait_for(&branches, "taken", "the taken name refused", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| {
            c.status == "False"
                && c.message
                    .contains("neither this ArgonBranch's nor cert-manager's")
        })
    })
    .await
    .unwrap();
    let certs = certificates(&client, &ns);
    assert!(certs.get_opt("taken-argon-tls").await.unwrap().is_none());
    let untouched = secrets.get("taken-argon-tls").await.unwrap();
    assert_eq!(key(&untouched, "mine").as_deref(), Some("yes"));

    // The branch under test, with an application user.
    let mut branch = BranchFixture::test("feature", "shop").build();
    branch.spec.endpoint.user = Some("app".into());
    branch.spec.endpoint.cert_manager = from_issuer("ca");
    branches
        .create(&PostParams::default(), &branch)
        .await
        .unwrap();
    let b = wait_for(&branches, "feature", "issued by cert-manager", |b| {
        condition(b, "EndpointTLS").is_some_and(|c| c.status == "True")
            && condition(b, "ConnectionSecret").is_some_and(|c| c.status == "True")
    })
    .await
    .unwrap();
    let c = condition(&b, "EndpointTLS").unwrap();
    assert!(
        c.message.contains("cert-manager (Issuer ca)"),
        "{}",
        c.message
    );

    // The Certificate the operator wrote: owned by the branch, for the
    // Service's names (and the operator's extra name), from the issuer.
    let cert = certs.get("feature-argon-tls").await.unwrap();
    assert_eq!(cert.owner_references()[0].uid, b.uid().unwrap());
    assert_eq!(cert.data["spec"]["secretName"], "feature-argon-tls");
    assert_eq!(cert.data["spec"]["issuerRef"]["name"], "ca");
    assert_eq!(cert.data["spec"]["issuerRef"]["kind"], "Issuer");
    let names: Vec<&str> = cert.data["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "abr-feature".to_string(),
            format!("abr-feature.{ns}"),
            format!("abr-feature.{ns}.svc"),
            format!("abr-feature.{ns}.svc.cluster.local"),
            "localhost".into(),
        ]
    );

    // cert-manager's Secret: the pair and the CA, labelled as the endpoint's.
    let tls = secrets.get("feature-argon-tls").await.unwrap();
    assert_eq!(
        tls.annotations()
            .get("cert-manager.io/certificate-name")
            .map(String::as_str),
        Some("feature-argon-tls")
    );
    assert_eq!(
        tls.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("argon-operator")
    );
    let ca_pem = key(&tls, "ca.crt").unwrap();
    assert_eq!(ca_pem.trim(), ca.cert_pem().trim(), "the Issuer's CA");
    let app = secrets.get("feature-argon-app").await.unwrap();
    assert_eq!(key(&app, "ca.crt").unwrap(), ca_pem);
    let uri = key(&app, "uri").unwrap();
    assert!(uri.ends_with("&tls=true"), "{uri}");
    let d = deployments.get("abr-feature").await.unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert!(
        pod.volumes
            .iter()
            .flatten()
            .filter_map(|v| v.secret.as_ref())
            .any(|s| s.secret_name.as_deref() == Some("feature-argon-tls")),
        "the endpoint mounts cert-manager's Secret"
    );

    // The sidecar serves it; a real driver verifies it against the
    // connection Secret's ca.crt; one trusting another CA is refused.
    let mut volume = SecretVolume::new();
    volume.write(&tls);
    let sidecar = TlsSidecar::start(&mongo, &volume).await.unwrap();
    let first = key(&tls, "tls.crt").unwrap();
    assert_eq!(
        served_leaf(sidecar.port, &ca_pem, "localhost")
            .await
            .unwrap(),
        leaf_der(&first)
    );
    let (_, with_ca) =
        drivers_verify_the_endpoint(&uri, &ns, "localhost", sidecar.port, &volume).await;

    // A renewal by cert-manager (what `cmctl renew` asks: the Issuing
    // condition) gives a new pair from the same CA; the volume update
    // reaches the running sidecar and clients keep connecting.
    certs
        .patch_status(
            "feature-argon-tls",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                 "observedGeneration": cert.metadata.generation},
                {"type": "Issuing", "status": "True", "reason": "ManuallyTriggered",
                 "message": "renewal asked by the test",
                 "observedGeneration": cert.metadata.generation},
            ]}})),
        )
        .await
        .unwrap();
    wait_until("cert-manager re-issued the pair", WAIT, || async {
        let s = secrets.get("feature-argon-tls").await?;
        Ok(key(&s, "tls.crt").is_some_and(|c| c != first))
    })
    .await
    .unwrap();
    let renewed = secrets.get("feature-argon-tls").await.unwrap();
    assert_ne!(key(&renewed, "tls.key"), key(&tls, "tls.key"), "a new key");
    assert_eq!(key(&renewed, "ca.crt").unwrap(), ca_pem);
    let second = key(&renewed, "tls.crt").unwrap();
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

    // certManager dropped: the Certificate goes, and the operator's CA
    // issues the Secret (its own now, no cert-manager annotation).
    branches
        .patch(
            "feature",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"endpoint": {"certManager": null}}})),
        )
        .await
        .unwrap();
    let b = wait_for(&branches, "feature", "the operator's CA again", |b| {
        condition(b, "EndpointTLS")
            .is_some_and(|c| c.status == "True" && c.message.contains("operator's CA"))
    })
    .await
    .unwrap();
    assert!(certs.get_opt("feature-argon-tls").await.unwrap().is_none());
    let own = secrets.get("feature-argon-tls").await.unwrap();
    assert!(
        !own.annotations()
            .contains_key("cert-manager.io/certificate-name")
    );
    assert_eq!(own.owner_references()[0].uid, b.uid().unwrap());
    let operator_ca = Api::<Secret>::namespaced(client.clone(), CA_NAMESPACE)
        .get(CA_SECRET)
        .await
        .unwrap();
    assert_eq!(key(&own, "ca.crt"), key(&operator_ca, "ca.crt"));
    let app = secrets.get("feature-argon-app").await.unwrap();
    assert_eq!(key(&app, "ca.crt"), key(&operator_ca, "ca.crt"));

    // Deleting a branch whose certificate is cert-manager's removes the
    // Certificate and the Secret cert-manager wrote.
    branches
        .delete("early", &DeleteParams::default())
        .await
        .unwrap();
    wait_until(
        "the early branch's Certificate and Secret removed",
        WAIT,
        || async {
            Ok(certs.get_opt("early-argon-tls").await?.is_none()
                && secrets.get_opt("early-argon-tls").await?.is_none()
                && branches.get_opt("early").await?.is_none())
        },
    )
    .await
    .unwrap();
    // Nothing of the keys in any branch's status.
    for b in branches.list(&Default::default()).await.unwrap() {
        let status = serde_json::to_string(&b.status).unwrap();
        assert!(!status.contains("PRIVATE KEY") && !status.contains("CERTIFICATE"));
    }
    operator.stop().await.unwrap();
}
