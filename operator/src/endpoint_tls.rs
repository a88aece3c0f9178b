//! A branch endpoint's serving certificate (`spec.endpoint.tls`): issued by
//! the operator's CA (`certs`, the same issuing and renewal rule as the
//! webhook's) for the endpoint Service's DNS names, kept in the
//! `kubernetes.io/tls` Secret `<branch>-argon-tls` (`tls.crt`, `tls.key`,
//! `ca.crt`) owned by the ArgonBranch, and renewed at the branch's reconcile
//! once less than a third of its lifetime is left, its names change or the
//! CA changes. The endpoint pod mounts the Secret; the kubelet swaps the
//! files in place and the sidecar re-reads them, so no restart.
//!
//! Nothing here logs or reports key material: messages name the Secret.

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

/// The names an endpoint's certificate holds: the Service as a client
/// reaches it from its own namespace, from another, and fully qualified.
pub fn dns_names(branch: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let svc = endpoint::object_name(branch);
    let mut names = vec![
        svc.clone(),
        format!("{svc}.{namespace}"),
        format!("{svc}.{namespace}.svc"),
        format!("{svc}.{namespace}.svc.cluster.local"),
    ];
    names.extend(extra.iter().cloned());
    names
}

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
/// operator's CA; returns it. An `Error::Tls` is a reason to show in the
/// branch's status (no CA configured, a CA that cannot sign, a Secret of
/// that name that is not the branch's), any other error is the API's.
pub async fn ensure(
    client: &Client,
    config: Option<&EndpointTlsConfig>,
    branch: &ArgonBranch,
) -> Result<ServingPair> {
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
    let existing = secrets.get_opt(&secret_name).await?;
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
    Ok(pair)
}

/// Deletes `branch`'s TLS Secret when it is the branch's (TLS turned off).
pub async fn remove(client: &Client, branch: &ArgonBranch) -> Result<()> {
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &branch.namespace().unwrap_or_default());
    let name = endpoint::tls_secret_name(&branch.name_any());
    let Some(existing) = secrets.get_opt(&name).await? else {
        return Ok(());
    };
    if owned_by(&existing, branch) {
        match secrets.delete(&name, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn owned_by(secret: &Secret, branch: &ArgonBranch) -> bool {
    secret
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == branch.metadata.uid.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_service_every_way_a_client_does() {
        assert_eq!(
            dns_names("feature", "dev", &[]),
            [
                "abr-feature",
                "abr-feature.dev",
                "abr-feature.dev.svc",
                "abr-feature.dev.svc.cluster.local"
            ]
        );
    }
}
