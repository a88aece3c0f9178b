//! Endpoint certificates from cert-manager (`spec.endpoint.certManager`):
//! the operator applies a `cert-manager.io/v1` `Certificate` named after
//! the TLS Secret, owned by the branch, for the Service's names; cert-manager
//! issues the Secret and renews it on its own schedule. The operator only
//! reads what cert-manager wrote: the endpoint waits until the Certificate
//! is `Ready` for its current spec and the Secret holds a pair and `ca.crt`.
//!
//! cert-manager's API is not a dependency: it is reached as a dynamic
//! resource, so an installation without it reports "not installed" on the
//! branches that ask for it and costs nothing elsewhere.

use super::{Issuance, delete_secret, dns_names, owned_by};
use crate::certs;
use crate::config::EndpointTlsConfig;
use crate::crd::{ArgonBranch, EndpointCertManager, FIELD_MANAGER};
use crate::endpoint;
use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

const GROUP: &str = "cert-manager.io";
/// cert-manager marks each Secret it writes with the Certificate it is for.
const CERTIFICATE_NAME: &str = "cert-manager.io/certificate-name";

fn certificates(client: &Client, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, "v1", "Certificate");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "certificates");
    Api::namespaced_with(client.clone(), namespace, &resource)
}

/// Whether `secret` is the one cert-manager writes for the Certificate
/// `certificate` (the operator names both after the TLS Secret).
pub(super) fn issued_for(secret: &Secret, certificate: &str) -> bool {
    secret
        .annotations()
        .get(CERTIFICATE_NAME)
        .map(String::as_str)
        == Some(certificate)
}

/// The Certificate the operator asks cert-manager for.
fn certificate(
    branch: &ArgonBranch,
    issuer: &EndpointCertManager,
    names: &[String],
) -> Result<Value> {
    let owner = branch
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("ArgonBranch", "metadata.uid"))?;
    let name = branch.name_any();
    let secret_name = endpoint::tls_secret_name(&name);
    let labels = endpoint::labels(&branch.spec.project, &name);
    let issuer_ref = &issuer.issuer_ref;
    // cert-manager takes addresses apart from DNS names.
    let (addresses, dns): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    let mut spec = json!({
        "secretName": secret_name,
        // The Secret carries the endpoint's labels, so it is found (and
        // listed) like the operator's own.
        "secretTemplate": {"labels": labels},
        "dnsNames": dns,
        "issuerRef": {
            "name": issuer_ref.name,
            "kind": issuer_ref.kind.as_deref().unwrap_or("Issuer"),
            "group": issuer_ref.group.as_deref().unwrap_or(GROUP),
        },
        // The same key the operator's CA would give: a fresh one per
        // issuance (a renewal never reuses a key).
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["server auth", "digital signature"],
    });
    if !addresses.is_empty() {
        spec["ipAddresses"] = json!(addresses);
    }
    Ok(json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Certificate",
        "metadata": {
            "name": secret_name,
            "namespace": branch.namespace(),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }))
}

/// Asks cert-manager for `branch`'s certificate and reports whether the
/// Secret holds it.
pub(super) async fn ensure(
    client: &Client,
    config: Option<&EndpointTlsConfig>,
    branch: &ArgonBranch,
    issuer: &EndpointCertManager,
) -> Result<Issuance> {
    let name = branch.name_any();
    let namespace = branch.namespace().unwrap_or_default();
    let secret_name = endpoint::tls_secret_name(&name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let existing = secrets.get_opt(&secret_name).await?;
    if let Some(s) = &existing
        && !owned_by(s, branch)
        && !issued_for(s, &secret_name)
    {
        // cert-manager would take over any Secret of that name: never ask.
        return Err(Error::Tls(format!(
            "Secret {secret_name} exists and is neither this ArgonBranch's nor cert-manager's for it"
        )));
    }
    let api = certificates(client, &namespace);
    match api.get_opt(&secret_name).await {
        Ok(Some(c))
            if !c
                .owner_references()
                .iter()
                .any(|o| Some(&o.uid) == branch.metadata.uid.as_ref()) =>
        {
            return Err(Error::Tls(format!(
                "cert-manager Certificate {secret_name} exists and is not owned by this ArgonBranch"
            )));
        }
        Ok(_) => {}
        Err(e) => return Err(api_refusal(e)),
    }
    let extra = config.map(|c| c.extra_names.as_slice()).unwrap_or_default();
    let names = dns_names(&name, &namespace, extra);
    let applied = api
        .patch(
            &secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&certificate(branch, issuer, &names)?),
        )
        .await
        .map_err(api_refusal)?;
    let issuer_ref = &issuer.issuer_ref;
    let issuer_name = format!(
        "{} {}",
        issuer_ref.kind.as_deref().unwrap_or("Issuer"),
        issuer_ref.name
    );
    if let Err(why) = ready(&applied) {
        return Ok(Issuance::Pending(format!(
            "waiting for cert-manager to issue Certificate {secret_name} ({issuer_name}): {why}"
        )));
    }
    // Ready for this spec: the Secret cert-manager wrote holds the pair.
    let Some(secret) = secrets.get_opt(&secret_name).await? else {
        return Ok(Issuance::Pending(format!(
            "cert-manager reports Certificate {secret_name} ready but Secret {secret_name} is not there yet"
        )));
    };
    let value = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .filter(|v| !v.trim().is_empty())
    };
    if value(certs::TLS_CRT).is_none() || value(certs::TLS_KEY).is_none() {
        return Ok(Issuance::Pending(format!(
            "Secret {secret_name} has no tls.crt/tls.key yet"
        )));
    }
    let Some(ca_bundle) = value(certs::CA_CRT) else {
        return Err(Error::Tls(format!(
            "{issuer_name} issued Secret {secret_name} without ca.crt: endpoints need it \
             (clients and the endpoint's peers verify against it); use a CA or self-signed \
             issuer, or one that sets ca.crt"
        )));
    };
    Ok(Issuance::Issued {
        ca_bundle,
        message: format!(
            "Secret {secret_name} holds a certificate from cert-manager ({issuer_name})"
        ),
    })
}

/// `Ok` when the Certificate's `Ready` condition is `True` for its current
/// generation (an older `True` describes the previous spec's certificate),
/// else cert-manager's own reason.
fn ready(certificate: &DynamicObject) -> std::result::Result<(), String> {
    let generation = certificate.metadata.generation.unwrap_or(0);
    let condition = certificate.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    let Some(c) = condition else {
        return Err("not looked at by cert-manager yet".into());
    };
    let observed = c["observedGeneration"].as_i64().unwrap_or(0);
    if c["status"] == "True" && observed >= generation {
        return Ok(());
    }
    let message = c["message"].as_str().unwrap_or("no message");
    // cert-manager's messages name issuers and Secrets, never key material;
    // bounded so a status stays small whatever it says.
    Err(message.chars().take(512).collect())
}

/// The branch-facing reason for an API refusal of Certificates.
fn api_refusal(e: kube::Error) -> Error {
    match e {
        kube::Error::Api(s) if s.code == 404 => Error::Tls(
            "cert-manager is not installed in this cluster (no certificates.cert-manager.io \
             API): install it, or drop spec.endpoint.certManager to use the operator's CA"
                .into(),
        ),
        kube::Error::Api(s) if s.code == 403 => Error::Tls(
            "the operator may not write cert-manager Certificates: install the chart with \
             endpoints.certManager=true"
                .into(),
        ),
        e => e.into(),
    }
}

/// Deletes the Certificate of `branch` (when it is the operator's) and the
/// Secret cert-manager wrote for it: certManager was dropped from the spec
/// or TLS turned off.
pub(super) async fn release(client: &Client, branch: &ArgonBranch) -> Result<()> {
    let namespace = branch.namespace().unwrap_or_default();
    let name = branch.name_any();
    delete_certificate(client, &namespace, &name).await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    delete_secret(&secrets, &endpoint::tls_secret_name(&name)).await
}

/// Deletes the Certificate named for `branch`'s endpoint when an
/// ArgonBranch of that name owns it (never a user's of the same name). Not
/// installed (404) or not permitted (403) means the operator never made one.
pub(super) async fn delete_certificate(
    client: &Client,
    namespace: &str,
    branch: &str,
) -> Result<()> {
    let api = certificates(client, namespace);
    let name = endpoint::tls_secret_name(branch);
    let existing = match api.get_opt(&name).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => None,
        Err(e) => return Err(e.into()),
    };
    let Some(existing) = existing else {
        return Ok(());
    };
    let ours = existing
        .owner_references()
        .iter()
        .any(|o| o.kind == "ArgonBranch" && o.name == branch);
    if !ours {
        return Ok(());
    }
    match api.delete(&name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
