//! What a branch endpoint exposes, against a real apiserver: a NetworkPolicy
//! per endpoint (owned by the branch, selecting exactly its pods, admitting
//! the namespace and, when configured, labelled clients), written before the
//! endpoint and refusing the endpoint when it cannot be written; and service
//! types other than ClusterIP refused unless the installation allows them.
//! Whether a CNI enforces the policy is the cluster's part
//! (tests/e2e/tests/cluster/policy.rs).

use crate::support::*;
use argon_operator::crd::{ArgonBranch, ServiceType};
use argon_operator::endpoint::{MONGODB_PORT, PEER_PORT};
use argon_testkit::{FerretDb, wait_until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;

fn ports(rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule) -> Vec<i32> {
    rule.ports
        .iter()
        .flatten()
        .filter_map(|p| match &p.port {
            Some(IntOrString::Int(n)) => Some(*n),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn endpoints_are_guarded_and_not_exposed_beyond_what_the_installation_allows()
-> anyhow::Result<()> {
    let (_server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "exposure").await?;
    create_project(&client, &ns, "app", &mongo).await?;
    let operator = RunningOperator::start(client.clone(), test_config("exposure-op"));
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);

    // A ClusterIP endpoint: its policy is written, owned by the branch.
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("one", "app").build(),
        )
        .await?;
    let one = wait_for(&branches, "one", "NetworkPolicy written", |b| {
        has_condition(b, "NetworkPolicy", "True", "Written")
    })
    .await?;
    let policy = policies.get("abr-one").await?;
    let owner = &policy.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(owner.uid.as_str())),
        ("ArgonBranch", one.metadata.uid.as_deref())
    );
    // It selects exactly the endpoint's pods: its selector is a subset of
    // the pod template's labels and names this branch.
    let deployment = deployments.get("abr-one").await?;
    let pod_labels = deployment
        .spec
        .and_then(|s| s.template.metadata)
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let spec = policy.spec.clone().unwrap_or_default();
    let selector = spec
        .pod_selector
        .and_then(|s| s.match_labels)
        .unwrap_or_default();
    assert_eq!(
        selector.get("argon.dev/branch").map(String::as_str),
        Some("one")
    );
    for (k, v) in &selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "selector {k}={v} not on the pods"
        );
    }
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    let rules = spec.ingress.unwrap_or_default();
    assert_eq!(rules.len(), 1, "namespace only by default: {rules:?}");
    let peer = &rules[0].from.as_ref().expect("from")[0];
    assert!(
        peer.namespace_selector.is_none() && peer.ip_block.is_none() && peer.pod_selector.is_some(),
        "the namespace's pods only: {peer:?}"
    );
    assert_eq!(ports(&rules[0]), vec![MONGODB_PORT, PEER_PORT]);

    // A LoadBalancer is refused: no Deployment, no Service, a warning.
    let mut lb = BranchFixture::test("lb", "app").build();
    lb.spec.endpoint.service_type = ServiceType::LoadBalancer;
    branches.create(&PostParams::default(), &lb).await?;
    let refused = wait_for(&branches, "lb", "service type refused", |b| {
        has_condition(b, "EndpointReady", "False", "ServiceTypeNotAllowed")
    })
    .await?;
    assert_eq!(phase(&refused), Some("Ready"), "the branch itself is fine");
    assert!(
        refused
            .status
            .as_ref()
            .and_then(|s| s.endpoint.as_ref())
            .is_none()
    );
    assert!(deployments.get_opt("abr-lb").await?.is_none());
    assert!(services.get_opt("abr-lb").await?.is_none());
    wait_until("a ServiceTypeNotAllowed event", WAIT, || async {
        let notes = event_notes(&client, &ns, "lb", "ServiceTypeNotAllowed").await?;
        Ok(notes.iter().any(|n| n.contains("LoadBalancer")))
    })
    .await?;

    // A running endpoint switched to NodePort is taken down.
    branches
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"endpoint": {"serviceType": "NodePort"}}})),
        )
        .await?;
    wait_for(&branches, "one", "NodePort refused", |b| {
        has_condition(b, "EndpointReady", "False", "ServiceTypeNotAllowed")
    })
    .await?;
    wait_gone(&deployments, "abr-one").await?;
    wait_gone(&services, "abr-one").await?;
    operator.stop().await?;

    // An installation that allows LoadBalancer and labelled clients.
    let mut config = test_config("exposure-op2");
    config.exposure.allowed_service_types = vec![ServiceType::LoadBalancer];
    config.exposure.client_label = Some(("argon.dev/client".into(), "true".into()));
    let operator = RunningOperator::start(client.clone(), config);
    wait_until("the LoadBalancer Service", WAIT, || async {
        Ok(services
            .get_opt("abr-lb")
            .await?
            .and_then(|s| s.spec)
            .and_then(|s| s.type_)
            .as_deref()
            == Some("LoadBalancer"))
    })
    .await?;
    let rules = wait_for(&policies, "abr-lb", "two ingress rules", |p| {
        p.spec
            .as_ref()
            .and_then(|s| s.ingress.as_ref())
            .is_some_and(|r| r.len() == 2)
    })
    .await?
    .spec
    .and_then(|s| s.ingress)
    .unwrap_or_default();
    let labelled = &rules[1].from.as_ref().expect("from")[0];
    assert_eq!(
        ports(&rules[1]),
        vec![MONGODB_PORT],
        "no peer port from outside"
    );
    assert!(
        labelled.namespace_selector.is_some(),
        "any namespace: {labelled:?}"
    );
    assert_eq!(
        labelled
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(BTreeMap::from([(
            "argon.dev/client".to_string(),
            "true".to_string()
        )]))
    );
    // NodePort is still not allowed.
    wait_for(&branches, "one", "NodePort still refused", |b| {
        has_condition(b, "EndpointReady", "False", "ServiceTypeNotAllowed")
    })
    .await?;

    // Deleting the branch removes its policy.
    branches.delete("lb", &DeleteParams::default()).await?;
    wait_gone(&branches, "lb").await?;
    wait_gone(&policies, "abr-lb").await?;
    operator.stop().await?;
    Ok(())
}

/// A namespace where an admission policy forbids NetworkPolicies: the
/// endpoint is not applied without one; the condition and an event say why;
/// once policies may be written, the endpoint follows.
#[tokio::test]
async fn no_endpoint_runs_without_its_network_policy() -> anyhow::Result<()> {
    let (server, client) = kube_with_crds().await?;
    let mongo = FerretDb::start().await?;
    let ns = namespace(&client, "noguard").await?;
    create_project(&client, &ns, "app", &mongo).await?;
    let dir = tempfile::tempdir()?;
    let policy = dir.path().join("deny.yaml");
    std::fs::write(
        &policy,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-network-policies}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["networking.k8s.io"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["networkpolicies"]
  validations:
  - expression: "false"
    message: "NetworkPolicies are the platform team's here"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-network-policies}
spec:
  policyName: no-network-policies
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: noguard}
"#,
    )?;
    server.kubectl(&["apply", "-f", &policy.to_string_lossy()])?;
    // The apiserver loads admission policies asynchronously: probe.
    let probe = dir.path().join("probe.yaml");
    std::fs::write(
        &probe,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: probe, namespace: noguard}\nspec: {podSelector: {}}\n",
    )?;
    wait_until("the admission policy denies", WAIT, || async {
        Ok(
            match server.kubectl(&["apply", "--dry-run=server", "-f", &probe.to_string_lossy()]) {
                Ok(_) => false,
                Err(e) => format!("{e:#}").contains("platform team"),
            },
        )
    })
    .await?;

    let operator = RunningOperator::start(client.clone(), test_config("noguard-op"));
    let branches: Api<ArgonBranch> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    branches
        .create(
            &PostParams::default(),
            &BranchFixture::test("one", "app").build(),
        )
        .await?;
    let b = wait_for(&branches, "one", "the policy is refused", |b| {
        has_condition(b, "EndpointReady", "False", "NetworkPolicyNotWritten")
    })
    .await?;
    let message = &condition(&b, "NetworkPolicy")
        .expect("NetworkPolicy condition")
        .message;
    assert!(message.contains("platform team"), "{message}");
    assert!(deployments.get_opt("abr-one").await?.is_none());
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    assert!(services.get_opt("abr-one").await?.is_none());
    wait_until("a NetworkPolicyNotWritten event", WAIT, || async {
        Ok(!event_notes(&client, &ns, "one", "NetworkPolicyNotWritten")
            .await?
            .is_empty())
    })
    .await?;

    server.kubectl(&[
        "delete",
        "validatingadmissionpolicybinding",
        "no-network-policies",
    ])?;
    wait_for(&branches, "one", "the policy is written", |b| {
        has_condition(b, "NetworkPolicy", "True", "Written")
    })
    .await?;
    wait_until("the endpoint's Deployment", WAIT, || async {
        Ok(deployments.get_opt("abr-one").await?.is_some())
    })
    .await?;
    operator.stop().await?;
    Ok(())
}

/// Bad exposure (and leader election) settings stop the binary at start with a usage error naming
/// the flag, before it touches a cluster (never a silent default).
#[test]
fn bad_exposure_and_election_flags_are_usage_errors() {
    for (env, value, named) in [
        (
            "ARGON_ENDPOINT_ALLOWED_SERVICE_TYPES",
            "LoadBalancer,ExternalName",
            "--endpoint-allowed-service-types",
        ),
        (
            "ARGON_ENDPOINT_CLIENT_LABEL",
            "argon.dev/client",
            "--endpoint-client-label",
        ),
        // A renew deadline as long as the lease: two leaders could overlap.
        (
            "ARGON_LEADER_RENEW_DEADLINE_SECONDS",
            "15",
            "--leader-renew-deadline-seconds",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_argon-operator"))
            .arg("run")
            .env_clear()
            .env(env, value)
            .env("ARGON_LEADER_ELECTION_NAMESPACE", "argon-system")
            // Nowhere to connect: a config that passed would fail later, differently.
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .expect("running argon-operator");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env}={value} was accepted");
        assert!(
            stderr.contains(named)
                && stderr.contains(value.split(',').next_back().unwrap_or(value)),
            "{env}={value}: {stderr}"
        );
    }
}
