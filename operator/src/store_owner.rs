//! The owner of an embedded store in a cluster: the one pod that mounts the
//! project's PersistentVolumeClaim and opens the store (segment files take
//! no second writer). A Deployment of one replica with strategy `Recreate`,
//! so a rollout stops the old pod before the new one opens the files, and a
//! ClusterIP Service; both owned by the ArgonProject. It runs the sidecar
//! as an endpoint does, serving `main` by default and every branch as
//! `db~branch`; the operator speaks its admin commands (`project_store::
//! remote`), and endpoints of the project's branches are Services selecting
//! this pod (`endpoint::service`).
//!
//! Not an operator run with `--embedded-root`: that one opens the files
//! itself, beside them, outside the cluster, and no owner may run too.

use crate::crd::ArgonProject;
use crate::endpoint::{
    self, DATA_DIR, LABEL_COMPONENT, LABEL_MANAGED_BY, LABEL_NAME, LABEL_PROJECT, MONGODB_PORT,
};
use crate::error::{Error, Result};
use crate::image_policy::ImagePolicy;
use crate::sidecar_cache::{self, CacheDefaults};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    EnvVar, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Secret,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// `app.kubernetes.io/component` of the owner's pods.
pub const COMPONENT: &str = "store-owner";
const DATA_VOLUME: &str = "argon-data";

/// The name of a project's owner Deployment and Service: a DNS-1035 label.
pub fn object_name(project: &str) -> String {
    let clean: String = project
        .chars()
        .map(|c| if c == '.' || c == '_' { '-' } else { c })
        .collect();
    let name = format!("{clean}-argon-store");
    if name.len() <= 63 && clean == project {
        return name;
    }
    // Sanitized or too long: a hash of the real name keeps it unique.
    let keep: String = clean.chars().take(40).collect();
    format!(
        "{}-{:08x}-argon-store",
        keep.trim_end_matches('-'),
        endpoint::fnv1a(project.as_bytes())
    )
}

/// How the operator reaches the owner from inside the cluster. No
/// credentials in it: the operator proves the owner's key
/// ([`key_secret`]) through the driver's credential (`RemoteStore`).
pub fn uri(project: &str, namespace: &str) -> String {
    format!(
        "mongodb://{}.{namespace}.svc:{MONGODB_PORT}/?directConnection=true&serverSelectionTimeoutMS=5000",
        object_name(project)
    )
}

/// The Secret holding the owner's key file: `<owner>-key`.
pub fn key_secret_name(project: &str) -> String {
    format!("{}-key", object_name(project))
}

/// The key of the Secret's data holding the key.
pub const KEY_SECRET_KEY: &str = "key";
const KEY_VOLUME: &str = "argon-store-key";
const KEY_DIR: &str = "/etc/argon/store-key";
/// Random bytes of a new key (64 base64 characters).
const KEY_BYTES: usize = 48;

/// A new owner key: base64 of random bytes from the OS.
fn new_key() -> Result<String> {
    use base64::Engine;
    use rand::TryRngCore;
    let mut bytes = [0u8; KEY_BYTES];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| Error::Config(format!("the OS random source failed: {e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The owner's key Secret with a new random key; `None` for a project on
/// a mongodb store. Created once (`controller::project`), owned by the
/// project, never rewritten: a new key would lock the operator out of a
/// running owner until it restarts.
pub fn key_secret(project: &ArgonProject) -> Result<Option<Secret>> {
    if project.spec.store.embedded.is_none() {
        return Ok(None);
    }
    let mut metadata = owned_meta(project)?;
    metadata.name = Some(key_secret_name(&project.name_any()));
    Ok(Some(Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            KEY_SECRET_KEY.to_string(),
            ByteString(new_key()?.into_bytes()),
        )])),
        ..Secret::default()
    }))
}

/// The labels selecting a project's owner pod (its Deployment, its Service,
/// and the Services of its branches' endpoints).
pub fn selector(project: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_COMPONENT.to_string(), COMPONENT.to_string()),
    ])
}

fn labels(project: &str) -> BTreeMap<String, String> {
    let mut labels = selector(project);
    labels.insert(LABEL_NAME.to_string(), "argon-store".to_string());
    labels.insert(LABEL_MANAGED_BY.to_string(), "argon-operator".to_string());
    labels
}

pub(crate) fn owned_meta(project: &ArgonProject) -> Result<ObjectMeta> {
    let owner = project
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("ArgonProject", "metadata.uid"))?;
    Ok(ObjectMeta {
        name: Some(object_name(&project.name_any())),
        namespace: project.namespace(),
        labels: Some(labels(&project.name_any())),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// The owner's Deployment; `None` for a project on a mongodb store.
pub fn deployment(
    project: &ArgonProject,
    images: &ImagePolicy,
    cache: &CacheDefaults,
) -> Result<Option<Deployment>> {
    let Some(embedded) = &project.spec.store.embedded else {
        return Ok(None);
    };
    let name = project.name_any();
    let mut container = endpoint::sidecar_container(
        project,
        images,
        "main",
        &format!("0.0.0.0:{MONGODB_PORT}"),
        false,
    )?;
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: DATA_VOLUME.into(),
            mount_path: DATA_DIR.into(),
            sub_path: embedded.sub_path.clone(),
            ..VolumeMount::default()
        });
    let mut volumes = vec![Volume {
        name: DATA_VOLUME.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: embedded.claim_name.clone(),
            read_only: Some(false),
        }),
        ..Volume::default()
    }];
    // The key file, readable by the pod's user and group only: kubelet
    // gives the file the pod's fsGroup (0440), which the sidecar accepts
    // (`auth::key_file`); nothing else in the pod mounts it.
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: KEY_VOLUME.into(),
            mount_path: KEY_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    container.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: "ARGON_KEY_FILE".into(),
        value: Some(format!("{KEY_DIR}/{KEY_SECRET_KEY}")),
        ..EnvVar::default()
    });
    volumes.push(Volume {
        name: KEY_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(key_secret_name(&name)),
            default_mode: Some(0o400),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    if let Some(cache) = sidecar_cache::for_project(project, cache)? {
        cache.add_to(&mut container);
        volumes.push(cache.volume());
    }
    Ok(Some(Deployment {
        metadata: owned_meta(project)?,
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Never two pods on the files, even during a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(selector(&name)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    // fsGroup: the key file must be readable by the
                    // sidecar's user, and kubelet owns it by root.
                    security_context: Some(endpoint::restricted_pod(true)),
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }))
}

/// The owner's ClusterIP Service; `None` for a project on a mongodb store.
pub fn service(project: &ArgonProject) -> Result<Option<Service>> {
    if project.spec.store.embedded.is_none() {
        return Ok(None);
    }
    Ok(Some(Service {
        metadata: owned_meta(project)?,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector(&project.name_any())),
            ports: Some(vec![ServicePort {
                name: Some("mongodb".into()),
                port: MONGODB_PORT,
                target_port: Some(IntOrString::String("mongodb".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_names_are_dns_labels_and_unique() {
        assert_eq!(object_name("shop"), "shop-argon-store");
        let dotted = object_name("shop.v2");
        assert!(
            dotted.ends_with("-argon-store") && !dotted.contains('.'),
            "{dotted}"
        );
        assert_ne!(object_name("shop.v2"), object_name("shop-v2"));
        let long = object_name(&"a".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert_eq!(
            uri("shop", "dev"),
            "mongodb://shop-argon-store.dev.svc:27017/?directConnection=true&serverSelectionTimeoutMS=5000"
        );
    }
}
