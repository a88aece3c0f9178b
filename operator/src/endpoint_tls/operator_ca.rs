//! Endpoint certificates from the operator's CA (`certs`, the same issuing
//! and renewal rule as the webhook's), renewed at the branch's reconcile
//! once less than a third of the lifetime is left, the names change or the
//! CA changes.

use super::{Issuance, cert_manager, dns_names, owned_by};
use crate::certs::{self, ServingPair};
use crate::config::EndpointTlsConfig;
use crate::crd::{ArgonBranch, FIELD_MANAGER};
use crate::endpoint;
use crate::error::{Error, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The Secret holding `pair` for `branch`, owned by it.
pub fn secret(branch: &ArgonBranch, pair: &ServingPair) -> Result<Secret> {
    let owner = branch
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("ArgonBranch", "metadata.uid"))?;
    let name = branch.name_any();
    let data = [
        (certs::TLS_CRT, &pair.cert),
        (certs::TLS_KEY, &pair.key),
        (certs::CA_CRT, &pair.ca_bundle),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.clone().into_bytes())))
    .collect::<BTreeMap<_, _>>();
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(endpoint::tls_secret_name(&name)),
            namespace: branch.namespace(),
            labels: Some(endpoint::labels(&branch.spec.project, &name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    })
}

/// Makes sure `branch`'s TLS Secret holds a current pair from the
/// operator's CA. An `Error::Tls` is a reason to show in the branch's
/// status (no CA configured, a CA that cannot sign, a Secret of that name
/// that is not the branch's), any other error is the API's.
pub(super) async fn ensure(
    client: &Client,
    config: Option<&EndpointTlsConfig>,
    branch: &ArgonBranch,
) -> Result<Issuance> {
    let Some(config) = config else {
        return Err(Error::Tls(
            "the operator has no CA for endpoints (--endpoint-ca-secret); \
             set spec.endpoint.tls: false or configure the operator"
                .into(),
        ));
    };
    let name = branch.name_any();
    let namespace = branch.namespace().unwrap_or_default();
    let ca_secrets: Api<Secret> = Api::namespaced(client.clone(), &config.ca_namespace);
    let ca = certs::ensure_ca(&ca_secrets, &config.ca_secret, config.ca_validity).await?;
    let secret_name = endpoint::tls_secret_name(&name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut existing = secrets.get_opt(&secret_name).await?;
    if existing
        .as_ref()
        .is_some_and(|s| cert_manager::issued_for(s, &secret_name))
    {
        // cert-manager's for this branch (certManager just dropped from the
        // spec): its Certificate and Secret give way to the operator's own.
        cert_manager::release(client, branch).await?;
        existing = None;
    }
    if let Some(s) = &existing
        && !owned_by(s, branch)
    {
        // Someone else's Secret of that name: never overwritten.
        return Err(Error::Tls(format!(
            "Secret {secret_name} exists and is not owned by this ArgonBranch"
        )));
    }
    let current = existing.as_ref().map(ServingPair::from_secret);
    let names = dns_names(&name, &namespace, &config.extra_names);
    let (pair, renewed) = certs::serving_pair(
        &ca,
        current.as_ref(),
        &names,
        config.cert_validity,
        OffsetDateTime::now_utc(),
    )?;
    if let Some(reason) = renewed {
        tracing::info!(secret = %secret_name, %namespace, reason, "issuing an endpoint certificate");
        secrets
            .patch(
                &secret_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&secret(branch, &pair)?),
            )
            .await?;
    }
    Ok(Issuance::Issued {
        ca_bundle: pair.ca_bundle,
        message: format!("Secret {secret_name} holds a certificate from the operator's CA"),
    })
}
