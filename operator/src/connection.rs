//! The connection Secret of a branch endpoint, as CloudNativePG writes its
//! `<cluster>-app` Secret: `<branch>-argon-app` in the branch's namespace,
//! owned by the ArgonBranch (garbage collected with it), so an app mounts it
//! or takes its keys as environment variables.
//!
//! Keys: `host`, `port`, `uri` always; `username`, `password`, `authSource`
//! when `spec.endpoint.user` names a user of the project's `spec.users`
//! (then `uri` carries the credentials, percent-encoded); `ca.crt` when the
//! endpoint serves TLS (`spec.endpoint.tls`, then `uri` says `tls=true`).
//! A URI cannot carry a CA: the convention is to mount the Secret and add
//! `tlsCAFile=<mount>/ca.crt` (every driver's option), as CloudNativePG's
//! `sslrootcert`. The password is
//! copied from the user's own Secret; it goes nowhere else (not status, not
//! events, not logs).

use crate::crd::ArgonBranch;
use crate::endpoint::{self, MONGODB_PORT};
use crate::error::{Error, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The connection Secret's name for `branch`.
pub fn secret_name(branch: &str) -> String {
    format!("{branch}-argon-app")
}

/// The user the Secret carries.
pub struct Login {
    pub username: String,
    pub password: String,
    pub auth_source: String,
}

/// RFC 3986 userinfo: everything but the unreserved characters is
/// percent-encoded (a password may hold `@`, `:`, `/`, `%`).
fn encode_userinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The endpoint's Service host name inside the cluster.
pub fn host(branch: &str, namespace: &str) -> String {
    format!("{}.{namespace}.svc", endpoint::object_name(branch))
}

/// The connection string: the Service, load-balanced (see
/// `endpoint::connection_string`), with the login when there is one and
/// `tls=true` when the endpoint serves TLS.
pub fn uri(host: &str, login: Option<&Login>, tls: bool) -> String {
    let tls = if tls { "&tls=true" } else { "" };
    match login {
        Some(l) => format!(
            "mongodb://{}:{}@{host}:{MONGODB_PORT}/?loadBalanced=true&authSource={}{tls}",
            encode_userinfo(&l.username),
            encode_userinfo(&l.password),
            encode_userinfo(&l.auth_source)
        ),
        None => format!("mongodb://{host}:{MONGODB_PORT}/?loadBalanced=true{tls}"),
    }
}

/// The Secret for `branch`, owned by it; `ca_bundle` is the CA that
/// verifies a TLS endpoint (`None`: a plain endpoint).
pub fn secret(
    branch: &ArgonBranch,
    login: Option<&Login>,
    ca_bundle: Option<&str>,
) -> Result<Secret> {
    let owner: OwnerReference = branch
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("ArgonBranch", "metadata.uid"))?;
    let name = branch.name_any();
    let namespace = branch.namespace().unwrap_or_default();
    let host = host(&name, &namespace);
    let mut data = BTreeMap::from([
        ("host".to_string(), host.clone()),
        ("port".to_string(), MONGODB_PORT.to_string()),
        ("uri".to_string(), uri(&host, login, ca_bundle.is_some())),
    ]);
    if let Some(ca) = ca_bundle {
        data.insert("ca.crt".into(), ca.to_string());
    }
    if let Some(l) = login {
        data.insert("username".into(), l.username.clone());
        data.insert("password".into(), l.password.clone());
        data.insert("authSource".into(), l.auth_source.clone());
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&name)),
            namespace: Some(namespace),
            labels: Some(endpoint::labels(&branch.spec.project, &name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_uri_are_percent_encoded() {
        let login = Login {
            username: "ann".into(),
            password: "p@ss:w/rd%".into(),
            auth_source: "admin".into(),
        };
        assert_eq!(
            uri("abr-x.dev.svc", Some(&login), false),
            "mongodb://ann:p%40ss%3Aw%2Frd%25@abr-x.dev.svc:27017/?loadBalanced=true&authSource=admin"
        );
        assert_eq!(
            uri("abr-x.dev.svc", None, false),
            "mongodb://abr-x.dev.svc:27017/?loadBalanced=true"
        );
        assert_eq!(
            uri("abr-x.dev.svc", Some(&login), true),
            "mongodb://ann:p%40ss%3Aw%2Frd%25@abr-x.dev.svc:27017/?loadBalanced=true&authSource=admin&tls=true"
        );
        assert_eq!(secret_name("feature-x"), "feature-x-argon-app");
    }
}
