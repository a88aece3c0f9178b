//! An operator installed with `secretNamespaces` runs on exactly the RBAC
//! the chart then gives it: the chart rendered with `secretNamespaces={shop}`
//! is applied to a real apiserver (RBAC authorizer) and the operator's
//! client impersonates its ServiceAccount. In `shop` it reads the store's
//! and the users' Secrets, a driver logs in with the password, and a
//! password change is followed (the Secret watch is per namespace); in a
//! namespace it was not given, the project says the store Secret is out of
//! reach and nothing else breaks. (`rbac.rs` compares the same RBAC with
//! the documented lists; this shows the operator works within it.)

use crate::support::*;
use crate::users::{AuthSidecar, login_and_write, password_secret, role, user};
use argon_operator::config::EndpointTlsConfig;
use argon_operator::crd::{ArgonProject, RoleName};
use argon_testkit::{FerretDb, assets, wait_until};
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use std::process::Command;

const OPERATOR_NAMESPACE: &str = "argon-narrow";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:argon-narrow:narrow-operator";
const PASSWORD: &str = "narrow-Pa55word";
const NEW_PASSWORD: &str = "narrow-Pa55word-2";

/// The chart as `helm template` renders it for a narrowed installation.
fn narrowed_chart() -> anyhow::Result<String> {
    let chart = assets::workspace_root().join("charts/argon");
    let output = Command::new(assets::helm()?)
        .args(["template", "narrow"])
        .arg(&chart)
        .args([
            "--namespace",
            OPERATOR_NAMESPACE,
            "--set",
            "secretNamespaces={shop}",
        ])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// A client that acts as the operator's ServiceAccount.
async fn as_operator(server: &argon_testkit::KubeApiServer) -> anyhow::Result<Client> {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig_path())?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    config.auth_info.impersonate = Some(SERVICE_ACCOUNT.into());
    Ok(Client::try_from(config)?)
}

#[tokio::test]
async fn a_narrowed_operator_works_in_its_namespaces_and_reads_no_other_secrets()
-> anyhow::Result<()> {
    let (server, admin) = kube_with_crds().await?;
    for ns in [OPERATOR_NAMESPACE, "shop", "other"] {
        server.kubectl(&["create", "namespace", ns])?;
    }
    let dir = tempfile::tempdir()?;
    let rendered = dir.path().join("narrow.yaml");
    std::fs::write(&rendered, narrowed_chart()?)?;
    server.kubectl(&["apply", "-f", &rendered.to_string_lossy()])?;
    // The premise: this identity may not read Secrets outside `shop`.
    assert!(
        server
            .kubectl(&[
                "auth",
                "can-i",
                "list",
                "secrets",
                "--as",
                SERVICE_ACCOUNT,
                "-n",
                "other"
            ])
            .is_err()
    );

    let mongo = FerretDb::start().await?;
    let mut config = test_config("narrow");
    config.secret_namespaces = vec!["shop".into()];
    // Only the Secret watch may wake a project here (no periodic pass).
    config.head_refresh = std::time::Duration::from_secs(3600);
    config.endpoint_tls = Some(EndpointTlsConfig::new(OPERATOR_NAMESPACE, "narrow-ca"));
    let operator = RunningOperator::start(as_operator(&server).await?, config);

    // In `shop`: the store Secret and a user's password Secret are read.
    store_secret(&admin, "shop", "shop-store", mongo.uri()).await?;
    password_secret(&admin, "shop", "ann-pw", PASSWORD).await?;
    let mut project = ProjectFixture::test("shop").build();
    project.spec.users = vec![user(
        "ann",
        "ann-pw",
        vec![role(RoleName::ReadWrite, Some("app"))],
    )];
    let shop: Api<ArgonProject> = Api::namespaced(admin.clone(), "shop");
    shop.create(&PostParams::default(), &project).await?;
    wait_for(&shop, "shop", "users in sync in a listed namespace", |p| {
        project_condition(p, "UsersReady").is_some_and(|c| c.status == "True")
            && project_condition(p, "StoreReachable").is_some_and(|c| c.status == "True")
    })
    .await?;
    let sidecar = AuthSidecar::start(&mongo, "shop").await?;
    login_and_write(&sidecar.uri("ann", PASSWORD)).await?;
    // A password change is followed: the operator watches Secrets in the
    // namespaces it was given (a cluster-wide watch would be forbidden).
    password_secret(&admin, "shop", "ann-pw", NEW_PASSWORD).await?;
    wait_until("the new password works", WAIT, || async {
        Ok(login_and_write(&sidecar.uri("ann", NEW_PASSWORD))
            .await
            .is_ok())
    })
    .await?;

    // In `other`: the same kind of project, its Secret out of the
    // operator's reach. The project says so; `shop` is untouched.
    store_secret(&admin, "other", "stock-store", mongo.uri()).await?;
    let other: Api<ArgonProject> = Api::namespaced(admin.clone(), "other");
    other
        .create(
            &PostParams::default(),
            &ProjectFixture::test("stock").build(),
        )
        .await?;
    let refused = wait_for(&other, "stock", "the store Secret out of reach", |p| {
        project_condition(p, "StoreReachable").is_some_and(|c| c.status == "False")
    })
    .await?;
    let message = project_condition(&refused, "StoreReachable")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("stock-store") && !message.contains(mongo.uri()),
        "{message}"
    );
    let still = shop.get("shop").await?;
    assert_eq!(
        project_condition(&still, "UsersReady").map(|c| c.status.as_str()),
        Some("True")
    );
    login_and_write(&sidecar.uri("ann", NEW_PASSWORD)).await?;
    operator.stop().await?;
    Ok(())
}
