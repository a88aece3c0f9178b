//! The NetworkPolicy of a branch endpoint: who may open a connection to its
//! pods. Authentication and TLS decide what a client may do; this decides
//! who reaches the port at all, so a compromised pod elsewhere in the
//! cluster cannot even try passwords.
//!
//! Admitted (ingress to the endpoint's pods, nothing else):
//! - pods of the branch's own namespace (where its project, its apps and the
//!   connection Secret live), on the MongoDB port and on the peer port
//!   (sidecars of one branch forward writes to its writer there);
//! - with `client_label` (the chart's `endpoints.networkPolicy.clientLabel`),
//!   pods carrying that label in any namespace, on the MongoDB port only.
//!
//! Traffic from the pod's own node (the kubelet's probes on the metrics
//! port) is always allowed by Kubernetes' NetworkPolicy semantics; the
//! metrics port is not opened to other pods (a Prometheus elsewhere needs a
//! policy of its own, which adds to this one). Policies are additive: this
//! one cannot be narrowed by another, so a cluster whose own policies decide
//! turns it off (`endpoints.networkPolicy.enabled: false`).

use crate::config::EndpointExposure;
use crate::crd::{ArgonBranch, ArgonProject};
use crate::endpoint::{MONGODB_PORT, PEER_PORT, owned_meta, selector};
use crate::error::Result;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

/// The policy for `branch`'s endpoint (same name as its Deployment and
/// Service, owned by the ArgonBranch).
pub fn network_policy(branch: &ArgonBranch, exposure: &EndpointExposure) -> Result<NetworkPolicy> {
    let mut ingress = vec![NetworkPolicyIngressRule {
        // A pod selector without a namespace selector: this namespace's pods.
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp(MONGODB_PORT), tcp(PEER_PORT)]),
    }];
    if let Some((key, value)) = &exposure.client_label {
        ingress.push(NetworkPolicyIngressRule {
            // Both selectors in one peer: labelled pods in any namespace.
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(key.clone(), value.clone())])),
                    match_expressions: None,
                }),
                ip_block: None,
            }]),
            ports: Some(vec![tcp(MONGODB_PORT)]),
        });
    }
    Ok(NetworkPolicy {
        metadata: owned_meta(branch)?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector(&branch.spec.project, &branch.name_any())),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}

/// The policy for an embedded store's owner pod (`store_owner`; same name,
/// owned by the ArgonProject). The owner serves every branch of the project
/// and runs without authentication (see docs/architecture.md, "Embedded
/// stores in a cluster"), so who reaches it is all that guards it: pods of
/// the project's namespace (its apps, and the Services of its branches'
/// endpoints, which select the owner) and pods of the operator's own
/// namespace (`operator_namespace`: the operator speaks its admin commands),
/// on the MongoDB port; nothing else.
pub fn owner(project: &ArgonProject, operator_namespace: Option<&str>) -> Result<NetworkPolicy> {
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![tcp(MONGODB_PORT)]),
    }];
    if let Some(ns) = operator_namespace {
        ingress.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "kubernetes.io/metadata.name".to_string(),
                        ns.to_string(),
                    )])),
                    match_expressions: None,
                }),
                pod_selector: Some(LabelSelector::default()),
                ip_block: None,
            }]),
            ports: Some(vec![tcp(MONGODB_PORT)]),
        });
    }
    Ok(NetworkPolicy {
        metadata: crate::store_owner::owned_meta(project)?,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(crate::store_owner::selector(&project.name_any())),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(ingress),
            egress: None,
        }),
    })
}

/// Parses the chart's `clientLabel` (`key=value`); empty: none.
pub fn parse_client_label(s: &str) -> std::result::Result<Option<(String, String)>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !k.contains(char::is_whitespace) => {
            Ok(Some((k.trim().to_string(), v.trim().to_string())))
        }
        _ => Err(format!(
            "client label {s:?} is not key=value (e.g. argon.dev/client=true)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ArgonBranchSpec, EndpointSpec};

    fn branch() -> ArgonBranch {
        let mut b = ArgonBranch::new(
            "feature",
            ArgonBranchSpec {
                project: "shop".into(),
                parent: "main".into(),
                from: None,
                read_only: false,
                endpoint: EndpointSpec::default(),
                expire_after: None,
                reset: None,
                protected: false,
            },
        );
        b.metadata.uid = Some("u".into());
        b.metadata.namespace = Some("dev".into());
        b
    }

    #[test]
    fn the_namespace_and_labelled_clients_only() {
        let np = network_policy(&branch(), &EndpointExposure::default()).unwrap();
        let spec = np.spec.unwrap();
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1, "{rules:?}");
        let peer = &rules[0].from.as_ref().unwrap()[0];
        assert!(peer.namespace_selector.is_none() && peer.ip_block.is_none());
        assert_eq!(peer.pod_selector, Some(LabelSelector::default()));
        assert_eq!(np.metadata.owner_references.unwrap()[0].kind, "ArgonBranch");

        let exposure = EndpointExposure {
            client_label: parse_client_label("argon.dev/client=true").unwrap(),
            ..EndpointExposure::default()
        };
        let rules = network_policy(&branch(), &exposure)
            .unwrap()
            .spec
            .unwrap()
            .ingress
            .unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[1].ports, Some(vec![tcp(MONGODB_PORT)]));
        let peer = &rules[1].from.as_ref().unwrap()[0];
        assert_eq!(peer.namespace_selector, Some(LabelSelector::default()));
        assert_eq!(
            peer.pod_selector.as_ref().unwrap().match_labels,
            Some(BTreeMap::from([(
                "argon.dev/client".to_string(),
                "true".to_string()
            )]))
        );
        for bad in ["novalue", "=x", "a b=c"] {
            assert!(parse_client_label(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_client_label(" ").unwrap(), None);
    }
}
