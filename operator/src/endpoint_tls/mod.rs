//! A branch endpoint's serving certificate (`spec.endpoint.tls`), kept in
//! the `kubernetes.io/tls` Secret `<branch>-argon-tls` (`tls.crt`,
//! `tls.key`, `ca.crt`) for the endpoint Service's DNS names. Two issuers:
//! the operator's own CA (`operator_ca`, the default: issued and renewed at
//! the branch's reconcile) or a cert-manager issuer the branch names
//! (`cert_manager`: the operator writes a `Certificate`, cert-manager issues
//! and renews the Secret). Either way the endpoint pod mounts the Secret,
//! the kubelet swaps the files in place and the sidecar re-reads them, so a
//! renewal needs no restart; and an endpoint starts only once its
//! certificate is issued, never plain instead.
//!
//! Nothing here logs or reports key material: messages name the Secret.

mod cert_manager;
mod operator_ca;

use crate::config::EndpointTlsConfig;
use crate::crd::ArgonBranch;
use crate::endpoint;
use crate::error::Result;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::{Api, Client, ResourceExt};

pub use operator_ca::secret;

/// Where an endpoint's certificate stands.
#[derive(Debug)]
pub enum Issuance {
    /// The Secret holds a current certificate; clients verify it against
    /// `ca_bundle`. `message` says who issued it (for the condition).
    Issued { ca_bundle: String, message: String },
    /// Asked for and not issued yet (cert-manager works asynchronously):
    /// no endpoint until it is, and the branch is looked at again soon.
    Pending(String),
}

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

/// Makes sure `branch`'s TLS Secret holds a current certificate from the
/// issuer its spec names. An `Error::Tls` is a reason to show in the
/// branch's status (no CA configured, cert-manager missing or refusing, a
/// Secret of that name that is someone else's), any other error is the API's.
pub async fn ensure(
    client: &Client,
    config: Option<&EndpointTlsConfig>,
    branch: &ArgonBranch,
) -> Result<Issuance> {
    match &branch.spec.endpoint.cert_manager {
        Some(issuer) => cert_manager::ensure(client, config, branch, issuer).await,
        None => operator_ca::ensure(client, config, branch).await,
    }
}

/// Deletes `branch`'s certificate (TLS turned off): its cert-manager
/// `Certificate` if any, and the Secret when it is the branch's or
/// cert-manager's for it (never someone else's of the same name).
pub async fn remove(client: &Client, branch: &ArgonBranch) -> Result<()> {
    let secrets: Api<Secret> =
        Api::namespaced(client.clone(), &branch.namespace().unwrap_or_default());
    let name = endpoint::tls_secret_name(&branch.name_any());
    let Some(existing) = secrets.get_opt(&name).await? else {
        return Ok(());
    };
    if cert_manager::issued_for(&existing, &name) {
        cert_manager::release(client, branch).await?;
    } else if owned_by(&existing, branch) {
        delete_secret(&secrets, &name).await?;
    }
    Ok(())
}

/// Deletes the cert-manager `Certificate` an endpoint may have (before its
/// Secret, so cert-manager does not write the Secret again). Called with
/// the endpoint's other objects; an installation without cert-manager, or
/// whose operator may not touch Certificates, never made one.
pub async fn remove_certificate(client: &Client, namespace: &str, branch: &str) -> Result<()> {
    cert_manager::delete_certificate(client, namespace, branch).await
}

fn owned_by(secret: &Secret, branch: &ArgonBranch) -> bool {
    secret
        .owner_references()
        .iter()
        .any(|o| Some(&o.uid) == branch.metadata.uid.as_ref())
}

async fn delete_secret(secrets: &Api<Secret>, name: &str) -> Result<()> {
    match secrets.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
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
