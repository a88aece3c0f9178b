//! A branch endpoint: a Deployment running `argon-sidecar serve` for one
//! branch, bound to all interfaces, and the Service in front of it. Also
//! the sidecar container the webhook injects, which is the same server bound
//! to localhost. Pure builders: the controller applies what they return.

use crate::config::EndpointExposure;
use crate::crd::{ArgonBranch, ArgonProject};
use crate::error::{Error, Result};
use crate::image_policy::ImagePolicy;
use crate::sidecar_cache::{self, CacheDefaults};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The MongoDB wire port of endpoints and sidecars.
pub const MONGODB_PORT: i32 = 27017;
/// The sidecar's `/metrics`, `/healthz`, `/readyz` port.
pub const METRICS_PORT: i32 = 9218;
/// Where a sidecar on a shared store takes writes the other sidecars of its
/// branch forward to it while it is the branch's writer.
pub const PEER_PORT: i32 = 27018;
/// Where an embedded store's volume is mounted (in its owner pod).
pub(crate) const DATA_DIR: &str = "/var/lib/argon";
/// Where an endpoint's TLS Secret (`tls.crt`, `tls.key`, `ca.crt`) is mounted.
pub const TLS_DIR: &str = "/etc/argon/tls";
const TLS_VOLUME: &str = "argon-tls";
/// Name of the sidecar container (endpoint and injected).
pub const CONTAINER_NAME: &str = "argon-sidecar";

pub const LABEL_PROJECT: &str = "argon.dev/project";
pub const LABEL_BRANCH: &str = "argon.dev/branch";
pub(crate) const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub(crate) const LABEL_NAME: &str = "app.kubernetes.io/name";
pub(crate) const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The name of a branch's Deployment and Service: a DNS-1035 label
/// (Service names must start with a letter and hold no '.').
pub fn object_name(branch: &str) -> String {
    let clean: String = branch
        .chars()
        .map(|c| if c == '.' || c == '_' { '-' } else { c })
        .collect();
    let name = format!("abr-{clean}");
    if name.len() <= 63 && name == format!("abr-{branch}") {
        return name;
    }
    // Sanitized or too long: a hash of the real name keeps it unique.
    let hash = fnv1a(branch.as_bytes());
    let keep: String = clean.chars().take(49).collect();
    format!("abr-{}-{hash:08x}", keep.trim_end_matches('-'))
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The connection string of a branch's endpoint, from inside the cluster.
///
/// `loadBalanced=true`: the Service spreads connections over the endpoint's
/// replicas, and a cursor's `getMore` or a transaction's next statement must
/// reach the pod that holds it. In load-balanced mode drivers pin both to
/// one connection (the sidecar answers `hello` with a `serviceId`), so any
/// replica count works, and scaling needs no new connection string.
pub fn connection_string(branch: &str, namespace: &str) -> String {
    format!(
        "mongodb://{}.{namespace}.svc:{MONGODB_PORT}/?loadBalanced=true",
        object_name(branch)
    )
}

/// The same over TLS (`spec.endpoint.tls`): drivers verify the server
/// against the connection Secret's `ca.crt` (`tlsCAFile`).
pub fn connection_string_with_tls(branch: &str, namespace: &str) -> String {
    format!("{}&tls=true", connection_string(branch, namespace))
}

/// The Secret holding an endpoint's serving certificate.
pub fn tls_secret_name(branch: &str) -> String {
    format!("{branch}-argon-tls")
}

/// Labels of a branch's endpoint objects (and its pods' selector).
pub fn labels(project: &str, branch: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), "argon-endpoint".to_string()),
        (LABEL_COMPONENT.to_string(), "branch-endpoint".to_string()),
        (LABEL_MANAGED_BY.to_string(), "argon-operator".to_string()),
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_BRANCH.to_string(), branch.to_string()),
    ])
}

/// The labels selecting a branch's endpoint pods (Deployment, Service, NetworkPolicy).
pub(crate) fn selector(project: &str, branch: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_PROJECT.to_string(), project.to_string()),
        (LABEL_BRANCH.to_string(), branch.to_string()),
        (LABEL_COMPONENT.to_string(), "branch-endpoint".to_string()),
    ])
}

pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The sidecar's configuration for `branch` of `project` (the `ARGON_*`
/// variables `argon-sidecar serve` reads). The store URI comes from the
/// project's Secret at run time; it never appears in a pod spec.
pub fn sidecar_env(
    project: &ArgonProject,
    branch: &str,
    listen: &str,
    read_only: bool,
) -> Vec<EnvVar> {
    let mut vars = Vec::new();
    if let Some(m) = &project.spec.store.mongodb {
        vars.push(EnvVar {
            name: "ARGON_STORE".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: m.secret_ref.name.clone(),
                    key: m.secret_ref.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
        });
        vars.push(env("ARGON_STORE_DATABASE", m.database.clone()));
        if !read_only {
            // Sidecars sharing a branch choose one writer and forward their
            // writes to it (see the sidecar's `writer` module); others dial
            // it at the pod's IP.
            vars.push(EnvVar {
                name: "ARGON_POD_IP".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: None,
                        field_path: "status.podIP".into(),
                    }),
                    ..EnvVarSource::default()
                }),
            });
            vars.push(env("ARGON_PEER_LISTEN", format!("0.0.0.0:{PEER_PORT}")));
            vars.push(env(
                "ARGON_PEER_ADVERTISE",
                format!("$(ARGON_POD_IP):{PEER_PORT}"),
            ));
        }
    } else {
        vars.push(env("ARGON_DATA", DATA_DIR));
    }
    vars.push(env("ARGON_PROJECT", project.name_any()));
    vars.push(env("ARGON_BRANCH", branch));
    vars.push(env("ARGON_LISTEN", listen));
    vars.push(env(
        "ARGON_METRICS_LISTEN",
        format!("0.0.0.0:{METRICS_PORT}"),
    ));
    if read_only {
        vars.push(env("ARGON_READ_ONLY", "true"));
    }
    vars
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("argon-metrics".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

/// An injected sidecar's startup probe: `/readyz` (listening, store
/// reachable) every second, for up to five minutes before the kubelet
/// restarts it.
pub fn startup_probe() -> Probe {
    Probe {
        failure_threshold: Some(300),
        ..http_probe("/readyz", 1)
    }
}

/// The restricted Pod Security Standard, for the sidecar container.
fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(65532),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

/// The restricted Pod Security Standard, for a sidecar's pod. With
/// `group_readable_secrets`, mounted Secret files (0440) are group-owned by
/// the sidecar's user, so a key need not be world-readable.
pub(crate) fn restricted_pod(group_readable_secrets: bool) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        fs_group: group_readable_secrets.then_some(65532),
        fs_group_change_policy: group_readable_secrets.then(|| "OnRootMismatch".to_string()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The sidecar container serving `branch` on `listen`, running the image
/// `images` allows for the project (`Error::ImageNotAllowed` otherwise).
pub fn sidecar_container(
    project: &ArgonProject,
    images: &ImagePolicy,
    branch: &str,
    listen: &str,
    read_only: bool,
) -> Result<Container> {
    let image = images.image_for(project)?;
    let defaults = project.spec.sidecar.clone().unwrap_or_default();
    Ok(Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        image_pull_policy: defaults.image_pull_policy,
        args: Some(vec!["serve".into()]),
        env: Some(sidecar_env(project, branch, listen, read_only)),
        ports: Some(vec![
            ContainerPort {
                name: Some("mongodb".into()),
                container_port: MONGODB_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("argon-metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("argon-peer".into()),
                container_port: PEER_PORT,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        resources: defaults.resources,
        security_context: Some(restricted_container()),
        ..Container::default()
    })
}

/// Name, namespace, labels and the owner reference (the ArgonBranch) of
/// every endpoint object.
pub(crate) fn owned_meta(branch: &ArgonBranch) -> Result<ObjectMeta> {
    let owner = branch
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("ArgonBranch", "metadata.uid"))?;
    Ok(ObjectMeta {
        name: Some(object_name(&branch.name_any())),
        namespace: branch.namespace(),
        labels: Some(labels(&branch.spec.project, &branch.name_any())),
        owner_references: Some(vec![owner]),
        ..ObjectMeta::default()
    })
}

/// The endpoint's Deployment, owned by the branch; with the project's
/// sidecar cache unless it is off (`cache`: the chart's defaults).
pub fn deployment(
    branch: &ArgonBranch,
    project: &ArgonProject,
    images: &ImagePolicy,
    cache: &CacheDefaults,
) -> Result<Deployment> {
    let name = branch.name_any();
    let select = selector(&branch.spec.project, &name);
    let mut container = sidecar_container(
        project,
        images,
        &name,
        &format!("0.0.0.0:{MONGODB_PORT}"),
        branch.spec.read_only,
    )?;
    if branch.spec.endpoint.auth {
        container
            .env
            .get_or_insert_with(Vec::new)
            .push(env("ARGON_AUTH", "true"));
    }
    // Never the embedded store's claim: only its owner opens it (`store_owner`).
    let mut volumes: Vec<Volume> = Vec::new();
    if let Some(cache) = sidecar_cache::for_project(project, cache)? {
        cache.add_to(&mut container);
        volumes.push(cache.volume());
    }
    if branch.spec.endpoint.tls {
        // A Secret volume: the kubelet swaps renewed files in place
        // (atomically, both at once) and the sidecar re-reads changed files,
        // so a renewal needs no restart.
        let vars = container.env.get_or_insert_with(Vec::new);
        vars.push(env("ARGON_TLS_CERT_FILE", format!("{TLS_DIR}/tls.crt")));
        vars.push(env("ARGON_TLS_KEY_FILE", format!("{TLS_DIR}/tls.key")));
        if vars.iter().any(|v| v.name == "ARGON_PEER_LISTEN") {
            // Forwarded writes go over TLS too: replicas dial each other's
            // pod addresses and check the certificate's Service name.
            vars.push(env("ARGON_PEER_TLS_CA_FILE", format!("{TLS_DIR}/ca.crt")));
            vars.push(env(
                "ARGON_PEER_TLS_NAME",
                format!(
                    "{}.{}.svc",
                    object_name(&name),
                    branch.namespace().unwrap_or_default()
                ),
            ));
        }
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: TLS_VOLUME.into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        volumes.push(Volume {
            name: TLS_VOLUME.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(tls_secret_name(&name)),
                items: Some(vec![
                    KeyToPath {
                        key: "tls.crt".into(),
                        path: "tls.crt".into(),
                        mode: None,
                    },
                    KeyToPath {
                        key: "tls.key".into(),
                        path: "tls.key".into(),
                        mode: None,
                    },
                    KeyToPath {
                        key: "ca.crt".into(),
                        path: "ca.crt".into(),
                        mode: None,
                    },
                ]),
                default_mode: Some(0o440),
                optional: Some(false),
            }),
            ..Volume::default()
        });
    }
    Ok(Deployment {
        metadata: owned_meta(branch)?,
        spec: Some(DeploymentSpec {
            replicas: Some(branch.spec.endpoint.replicas),
            selector: LabelSelector {
                match_labels: Some(select.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&branch.spec.project, &name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(restricted_pod(branch.spec.endpoint.tls)),
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// Refuses a `spec.endpoint.serviceType` the installation does not allow
/// (`ClusterIP` always is): a branch author does not decide to expose
/// data outside the cluster.
pub fn check_service_type(branch: &ArgonBranch, exposure: &EndpointExposure) -> Result<()> {
    let wanted = branch.spec.endpoint.service_type;
    if exposure.allows(wanted) {
        return Ok(());
    }
    Err(Error::ServiceTypeNotAllowed(wanted.as_str().to_string()))
}

/// The endpoint's Service, owned by the branch, of a type `exposure` allows.
/// For a project on an embedded store it selects the store's owner pod,
/// which serves every branch (`store_owner`); otherwise the branch's own
/// endpoint pods.
pub fn service(
    branch: &ArgonBranch,
    project: &ArgonProject,
    exposure: &EndpointExposure,
) -> Result<Service> {
    check_service_type(branch, exposure)?;
    let pods = if project.spec.store.embedded.is_some() {
        crate::store_owner::selector(&branch.spec.project)
    } else {
        selector(&branch.spec.project, &branch.name_any())
    };
    Ok(Service {
        metadata: owned_meta(branch)?,
        spec: Some(ServiceSpec {
            type_: Some(branch.spec.endpoint.service_type.as_str().into()),
            selector: Some(pods),
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
    })
}

/// Whether a Deployment has at least one available replica.
pub fn is_available(deployment: &Deployment) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_dns_labels_and_unique() {
        assert_eq!(object_name("feature-x"), "abr-feature-x");
        let dotted = object_name("v1.2");
        assert!(dotted.starts_with("abr-v1-2-"), "{dotted}");
        assert_ne!(object_name("v1.2"), object_name("v1-2"));
        let long = object_name(&"a".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert_eq!(
            connection_string("feature-x", "dev"),
            "mongodb://abr-feature-x.dev.svc:27017/?loadBalanced=true"
        );
    }

    use crate::crd::{ArgonBranchSpec, ArgonProjectSpec, EndpointSpec};

    /// Branch `feature` of project `shop` with an endpoint.
    fn feature(endpoint: EndpointSpec, read_only: bool) -> ArgonBranch {
        let mut branch = ArgonBranch::new(
            "feature",
            ArgonBranchSpec {
                project: "shop".into(),
                parent: "main".into(),
                from: None,
                read_only,
                endpoint,
                expire_after: None,
                reset: None,
                protected: false,
            },
        );
        branch.metadata.uid = Some("u".into());
        branch
    }

    #[test]
    fn endpoints_demand_authentication_unless_told_not_to() {
        let project = ArgonProject::new("shop", ArgonProjectSpec::on_mongodb("s", "argon"));
        let mut branch = feature(EndpointSpec::default(), false);
        let auth = |b: &ArgonBranch| {
            let d = deployment(
                b,
                &project,
                &ImagePolicy::new("img", &[]),
                &CacheDefaults::default(),
            )
            .unwrap();
            let pod = d.spec.unwrap().template.spec.unwrap();
            pod.containers[0]
                .env
                .iter()
                .flatten()
                .any(|e| e.name == "ARGON_AUTH" && e.value.as_deref() == Some("true"))
        };
        assert!(auth(&branch));
        branch.spec.endpoint.auth = false;
        assert!(!auth(&branch));
    }

    /// The cache volume, its mount and the sidecar's settings, as a pod gets them.
    fn cache_of(pod: &PodSpec) -> (Option<Volume>, Option<VolumeMount>, Vec<(String, String)>) {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == sidecar_cache::CACHE_VOLUME)
            .cloned();
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == sidecar_cache::CACHE_VOLUME)
            .cloned();
        let env = pod.containers[0]
            .env
            .iter()
            .flatten()
            .filter(|e| e.name.starts_with("ARGON_CACHE"))
            .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        (volume, mount, env)
    }

    #[test]
    fn endpoints_keep_their_cache_on_an_empty_dir_of_the_configured_size() {
        use crate::crd::{CacheSpec, SidecarDefaults};
        let pod_of = |project: &ArgonProject, chart: &CacheDefaults| {
            let branch = feature(EndpointSpec::default(), false);
            let d = deployment(&branch, project, &ImagePolicy::new("img", &[]), chart).unwrap();
            d.spec.unwrap().template.spec.unwrap()
        };
        let mut project = ArgonProject::new("shop", ArgonProjectSpec::on_mongodb("s", "argon"));
        let (volume, mount, env) = cache_of(&pod_of(&project, &CacheDefaults::default()));
        let volume = volume.expect("a cache volume");
        let empty_dir = volume.empty_dir.expect("an emptyDir");
        assert_eq!(empty_dir.size_limit.map(|q| q.0).as_deref(), Some("2Gi"));
        assert_eq!(empty_dir.medium, None, "on the node's disk, not in memory");
        let mount = mount.expect("mounted in the sidecar");
        assert_eq!(mount.mount_path, "/var/cache/argon");
        assert_ne!(mount.read_only, Some(true));
        assert_eq!(
            env,
            [
                (
                    "ARGON_CACHE_DIR".to_string(),
                    "/var/cache/argon".to_string()
                ),
                ("ARGON_CACHE_BYTES".to_string(), (256u64 << 20).to_string()),
                (
                    "ARGON_CACHE_DISK_BYTES".to_string(),
                    ((2u64 << 30) / 100 * 90).to_string()
                ),
            ]
        );

        // The project's sizes win over the chart's.
        project.spec.sidecar = Some(SidecarDefaults {
            cache: Some(CacheSpec {
                enabled: None,
                memory: Some("1Gi".into()),
                disk: Some("20Gi".into()),
            }),
            ..SidecarDefaults::default()
        });
        let (volume, _, env) = cache_of(&pod_of(&project, &CacheDefaults::default()));
        let size = volume.and_then(|v| v.empty_dir).and_then(|e| e.size_limit);
        assert_eq!(size.map(|q| q.0).as_deref(), Some("20Gi"));
        assert!(env.contains(&("ARGON_CACHE_BYTES".into(), (1u64 << 30).to_string())));

        // Off in the project, or in the chart without the project turning it on: nothing.
        let off = |enabled| SidecarDefaults {
            cache: Some(CacheSpec {
                enabled,
                ..CacheSpec::default()
            }),
            ..SidecarDefaults::default()
        };
        project.spec.sidecar = Some(off(Some(false)));
        let pod = pod_of(&project, &CacheDefaults::default());
        assert_eq!(cache_of(&pod), (None, None, vec![]));
        let chart_off = CacheDefaults {
            enabled: false,
            ..CacheDefaults::default()
        };
        project.spec.sidecar = None;
        assert_eq!(
            cache_of(&pod_of(&project, &chart_off)),
            (None, None, vec![])
        );
        project.spec.sidecar = Some(off(Some(true)));
        assert!(cache_of(&pod_of(&project, &chart_off)).0.is_some());

        // A size the CRD would refuse (an object stored before it did) gets no endpoint.
        project.spec.sidecar = Some(SidecarDefaults {
            cache: Some(CacheSpec {
                memory: Some("1Mi".into()),
                ..CacheSpec::default()
            }),
            ..SidecarDefaults::default()
        });
        let branch = feature(EndpointSpec::default(), false);
        let e = deployment(
            &branch,
            &project,
            &ImagePolicy::new("img", &[]),
            &CacheDefaults::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("spec.sidecar.cache.memory"), "{e}");
    }

    #[test]
    fn endpoints_of_an_embedded_project_select_its_owner_and_never_mount_the_claim() {
        let mut project = ArgonProject::new("shop", ArgonProjectSpec::on_mongodb("s", "argon"));
        project.spec.store.mongodb = None;
        project.spec.store.embedded = Some(crate::crd::EmbeddedStoreSpec {
            claim_name: "wal".into(),
            sub_path: None,
        });
        let branch = feature(EndpointSpec::default(), false);
        let service = service(&branch, &project, &EndpointExposure::default()).unwrap();
        assert_eq!(
            service.spec.unwrap().selector,
            Some(crate::store_owner::selector("shop"))
        );
        let d = deployment(
            &branch,
            &project,
            &ImagePolicy::new("img", &[]),
            &CacheDefaults::default(),
        )
        .unwrap();
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert!(
            pod.volumes
                .iter()
                .flatten()
                .all(|v| v.persistent_volume_claim.is_none()),
            "{:?}",
            pod.volumes
        );
    }

    /// The sidecar's own argument checks accept every endpoint the operator
    /// makes (a TLS endpoint whose peer link had no TLS settings
    /// crash-looped in real pods):
    /// the container's environment becomes `argon-sidecar serve` flags, with
    /// references resolved as the kubelet would.
    #[test]
    fn the_sidecar_accepts_every_endpoint_configuration() {
        use argon_sidecar::config::{Cli, Command};
        use clap::Parser;
        for (tls, auth, read_only) in [
            (true, true, false),
            (true, false, false),
            (false, true, false),
            (false, false, false),
            (true, true, true),
            (false, false, true),
        ] {
            let project = ArgonProject::new("shop", ArgonProjectSpec::on_mongodb("s", "argon"));
            let endpoint = EndpointSpec {
                tls,
                auth,
                ..EndpointSpec::default()
            };
            let branch = feature(endpoint, read_only);
            let d = deployment(
                &branch,
                &project,
                &ImagePolicy::new("img", &[]),
                &CacheDefaults::default(),
            )
            .unwrap();
            let pod = d.spec.unwrap().template.spec.unwrap();
            let container = &pod.containers[0];
            let mut resolved = BTreeMap::new();
            let mut argv = vec!["argon-sidecar".to_string()];
            argv.extend(container.args.clone().unwrap_or_default());
            for var in container.env.iter().flatten() {
                let value = match (&var.value, &var.value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(from)) if from.secret_key_ref.is_some() => {
                        "mongodb://store.shop.svc:27017".to_string()
                    }
                    (None, Some(from)) if from.field_ref.is_some() => "10.0.0.7".to_string(),
                    other => panic!("{}: an unresolvable value {other:?}", var.name),
                };
                // `$(VAR)` as the kubelet expands it, from earlier variables.
                let value = resolved
                    .iter()
                    .fold(value, |v, (k, x): (&String, &String)| {
                        v.replace(&format!("$({k})"), x)
                    });
                resolved.insert(var.name.clone(), value.clone());
                let flag = format!(
                    "--{}",
                    var.name
                        .strip_prefix("ARGON_")
                        .unwrap_or_else(|| panic!("{} is not a sidecar setting", var.name))
                        .to_lowercase()
                        .replace('_', "-")
                );
                if var.name == "ARGON_POD_IP" {
                    continue; // only an input of `$(ARGON_POD_IP)` above
                }
                if value == "true" {
                    argv.push(flag);
                } else {
                    argv.push(format!("{flag}={value}"));
                }
            }
            let case = format!("tls={tls} auth={auth} read_only={read_only}: {argv:?}");
            let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{case}: {e}"));
            let Command::Serve(args) = cli.command;
            args.store_choice()
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            let peer = args
                .peer_address()
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(peer.is_some(), !read_only, "{case}");
            assert_eq!(args.peer_tls_name.is_some(), tls && !read_only, "{case}");
            let cache = args
                .cache_choice()
                .unwrap_or_else(|| panic!("{case}: no cache"));
            assert_eq!(
                cache.dir,
                std::path::Path::new(sidecar_cache::CACHE_DIR),
                "{case}"
            );
            assert_eq!(cache.bytes, 256 << 20, "{case}");
        }
    }
}
