//! The mutating admission webhook: it injects the sidecar, and adds the
//! finalizer to new ArgonBranches ([`branch_admission`]). A pod labelled
//! `argon.dev/inject: "true"` and annotated `argon.dev/branch: <name>` gets
//! the sidecar as a native sidecar (an init container that keeps running),
//! bound to `127.0.0.1:27017`, so the app keeps connecting to
//! `mongodb://localhost:27017` and every read and write goes to that branch.
//! A pod naming a branch that does not exist is refused with a message
//! saying so (its ReplicaSet retries). Served over TLS (the apiserver only
//! calls webhooks over HTTPS) with the certificate `certs` keeps current.

use crate::branch_admission;
use crate::certs::{self, ServingCert};
use crate::crd::{ArgonBranch, ArgonProject, LocalhostAuth};
use crate::endpoint::{self, CONTAINER_NAME, MONGODB_PORT};
use crate::error::{Error, Result};
use crate::image_policy::ImagePolicy;
use crate::sidecar_cache::{self, CacheDefaults};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, service::service_fn};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const LABEL_INJECT: &str = "argon.dev/inject";
pub const ANNOTATION_BRANCH: &str = "argon.dev/branch";
pub const ANNOTATION_INJECTED: &str = "argon.dev/injected";
/// The path the apiserver posts AdmissionReviews to.
pub const PATH: &str = "/mutate-pods";
/// Largest AdmissionReview accepted (a pod spec is far smaller).
const MAX_BODY: usize = 4 << 20;

/// What the webhook needs to answer: a client to find branches and projects,
/// the images sidecars may run and the chart's cache defaults.
pub struct Injector {
    pub client: Client,
    pub images: ImagePolicy,
    pub cache: CacheDefaults,
}

/// The TLS acceptor of the webhook: each handshake serves the certificate
/// `cert` holds at that moment (see [`crate::certs`]).
pub fn tls_acceptor(cert: Arc<ServingCert>) -> Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(Arc::new(certs::server_config(cert)?)))
}

/// Serves the webhook on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, injector: Arc<Injector>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "webhook accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let injector = injector.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(error = %e, "webhook TLS handshake failed");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let svc = service_fn(move |req| answer(req, injector.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "webhook connection ended");
            }
        });
    }
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// One AdmissionReview per request: pods to the injector, ArgonBranches to
/// [`branch_admission`] (their finalizer).
async fn answer(
    req: Request<Incoming>,
    injector: Arc<Injector>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() != Method::POST || (path != PATH && path != branch_admission::PATH) {
        return Ok(reply(StatusCode::NOT_FOUND, b"{}".to_vec()));
    }
    let body = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let msg = format!("reading the AdmissionReview: {e}");
            return Ok(review_reply(AdmissionResponse::invalid(msg)));
        }
    };
    let response = if path == PATH {
        match admission_request::<Pod>(&body) {
            Ok(request) => injector.admit(&request).await,
            Err(message) => AdmissionResponse::invalid(message),
        }
    } else {
        match admission_request::<DynamicObject>(&body) {
            Ok(request) => branch_admission::admit(&request),
            Err(message) => AdmissionResponse::invalid(message),
        }
    };
    Ok(review_reply(response))
}

/// The request of an AdmissionReview, or why it has none.
fn admission_request<T>(body: &[u8]) -> std::result::Result<AdmissionRequest<T>, String>
where
    T: kube::Resource + serde::de::DeserializeOwned,
{
    let review: AdmissionReview<T> =
        serde_json::from_slice(body).map_err(|e| format!("malformed AdmissionReview: {e}"))?;
    review
        .try_into()
        .map_err(|_| "AdmissionReview without a request".to_string())
}

fn review_reply(response: AdmissionResponse) -> Response<Full<Bytes>> {
    let review: AdmissionReview<DynamicObject> = response.into_review();
    match serde_json::to_vec(&review) {
        Ok(body) => reply(StatusCode::OK, body),
        Err(e) => {
            tracing::warn!(error = %e, "encoding an AdmissionReview");
            reply(StatusCode::INTERNAL_SERVER_ERROR, b"{}".to_vec())
        }
    }
}

impl Injector {
    /// Allows every pod; patches those that ask for injection; refuses
    /// those that name a branch that does not exist, or a branch of an
    /// embedded-store project.
    pub async fn admit(&self, request: &AdmissionRequest<Pod>) -> AdmissionResponse {
        let response = AdmissionResponse::from(request);
        let Some(pod) = &request.object else {
            return response;
        };
        let labels = pod.metadata.labels.as_ref();
        if labels.and_then(|l| l.get(LABEL_INJECT)).map(String::as_str) != Some("true") {
            return response;
        }
        let Some(branch_name) = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_BRANCH))
        else {
            return response.deny(format!(
                "pod is labelled {LABEL_INJECT}=true but has no {ANNOTATION_BRANCH} annotation naming an ArgonBranch"
            ));
        };
        let namespace = request
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let branches: Api<ArgonBranch> = Api::namespaced(self.client.clone(), &namespace);
        let branch = match branches.get_opt(branch_name).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return response.deny(format!(
                    "{ANNOTATION_BRANCH}: ArgonBranch {branch_name:?} not found in namespace {namespace}"
                ));
            }
            Err(e) => return response.deny(format!("looking up ArgonBranch {branch_name:?}: {e}")),
        };
        let projects: Api<ArgonProject> = Api::namespaced(self.client.clone(), &namespace);
        let project = match projects.get_opt(&branch.spec.project).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return response.deny(format!(
                    "ArgonBranch {branch_name:?} names ArgonProject {:?}, which is not found in namespace {namespace}",
                    branch.spec.project
                ));
            }
            Err(e) => {
                return response.deny(format!(
                    "looking up ArgonProject {:?}: {e}",
                    branch.spec.project
                ));
            }
        };
        if let Some(embedded) = &project.spec.store.embedded {
            return response.deny(embedded_refusal(&branch.spec.project, &embedded.claim_name));
        }
        let patch = match inject(pod, &branch, &project, &self.images, &self.cache) {
            Ok(patch) => patch,
            // Never run an image the installation did not choose.
            Err(e @ Error::ImageNotAllowed { .. }) => {
                return response.deny(format!(
                    "ArgonProject {:?} spec.sidecar.image: {e}",
                    branch.spec.project
                ));
            }
            Err(e) => return response.deny(format!("building the sidecar: {e}")),
        };
        if patch.0.is_empty() {
            return response;
        }
        match response.clone().with_patch(patch) {
            Ok(r) => r,
            Err(e) => response.deny(format!("building the patch: {e}")),
        }
    }
}

/// Why a pod cannot get a sidecar of an embedded-store project. An embedded
/// store has exactly one process that may open it (its segment files take
/// no second writer), and a sidecar per pod would be one more: injected
/// sidecars need a store every pod reaches, a mongodb store.
pub fn embedded_refusal(project: &str, claim: &str) -> String {
    format!(
        "ArgonProject {project:?} keeps its WAL in an embedded store (PersistentVolumeClaim {claim:?}), which only one process may open: injected sidecars need a project on a mongodb store (spec.store.mongodb); connect to a branch endpoint instead"
    )
}

fn add(path: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(path.iter().copied()),
        value,
    })
}

/// The JSON patch that injects the sidecar for `branch` into `pod`
/// (empty when the pod already has it), with its cache volume unless the
/// project or the chart (`cache`) turns it off; refused when the project
/// names an image `images` does not allow.
pub fn inject(
    pod: &Pod,
    branch: &ArgonBranch,
    project: &ArgonProject,
    images: &ImagePolicy,
    cache: &CacheDefaults,
) -> Result<Patch> {
    let branch_name = kube::ResourceExt::name_any(branch);
    let Some(spec) = &pod.spec else {
        return Ok(Patch(Vec::new()));
    };
    let has_sidecar = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.name == CONTAINER_NAME);
    if has_sidecar {
        return Ok(Patch(Vec::new()));
    }
    let mut sidecar = endpoint::sidecar_container(
        project,
        images,
        &branch_name,
        &format!("127.0.0.1:{MONGODB_PORT}"),
        branch.spec.read_only,
    )?;
    // Only its own branch, with or without authentication: `db~other`,
    // other branches' past and branch changes are refused in the pod.
    let env = sidecar.env.get_or_insert_with(Vec::new);
    env.push(endpoint::env("ARGON_CONFINE_TO_BRANCH", "true"));
    let localhost = project.spec.auth.as_ref().map(|a| a.localhost);
    if localhost == Some(LocalhostAuth::Required) {
        env.push(endpoint::env("ARGON_AUTH", "true"));
    }
    // A cache size the CRD would refuse today (an object stored before it
    // did) costs the pod its cache, not its start: the project's
    // SidecarCache condition says what is wrong.
    let cache = sidecar_cache::for_project(project, cache).unwrap_or_else(|e| {
        tracing::warn!(project = %kube::ResourceExt::name_any(project), error = %e, "injecting a sidecar without its cache");
        None
    });
    if let Some(cache) = &cache {
        cache.add_to(&mut sidecar);
    }
    // A native sidecar: started before the app's containers, kept running beside them.
    sidecar.restart_policy = Some("Always".into());
    // The kubelet starts the next container once a native sidecar has
    // *started*: without a startup probe that is as soon as its process
    // runs, before it listens. Started = ready here, so the app's first
    // connection to localhost:27017 finds the branch served.
    sidecar.startup_probe = Some(endpoint::startup_probe());
    sidecar.ports = sidecar.ports.map(|ports| {
        ports
            .into_iter()
            .filter(|p| p.name.as_deref() != Some("mongodb"))
            .collect()
    });
    let sidecar = serde_json::to_value(&sidecar).unwrap_or(Value::Null);
    let mut ops = Vec::new();
    // First among init containers, so init containers that migrate data can use it.
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) {
        ops.push(add(&["spec", "initContainers", "0"], sidecar));
    } else {
        ops.push(add(&["spec", "initContainers"], json!([sidecar])));
    }
    // No store volume: an embedded-store project is refused before this.
    let volumes: Vec<Value> = cache
        .map(|c| c.volume())
        .into_iter()
        .map(|v| serde_json::to_value(&v).unwrap_or(Value::Null))
        .collect();
    if spec.volumes.is_some() {
        for volume in volumes {
            ops.push(add(&["spec", "volumes", "-"], volume));
        }
    } else if !volumes.is_empty() {
        ops.push(add(&["spec", "volumes"], Value::Array(volumes)));
    }
    let app_env = [
        ("ARGON_BRANCH", branch_name.clone()),
        (
            "ARGON_MONGODB_URI",
            format!("mongodb://127.0.0.1:{MONGODB_PORT}/"),
        ),
    ];
    for (i, c) in spec.containers.iter().enumerate() {
        let index = i.to_string();
        let existing = c.env.as_ref();
        if existing.is_none() {
            ops.push(add(&["spec", "containers", &index, "env"], json!([])));
        }
        for (name, value) in &app_env {
            if existing.is_some_and(|e| e.iter().any(|v| v.name == *name)) {
                continue;
            }
            let var = EnvVar {
                name: (*name).into(),
                value: Some(value.clone()),
                value_from: None,
            };
            ops.push(add(
                &["spec", "containers", &index, "env", "-"],
                serde_json::to_value(var).unwrap_or(Value::Null),
            ));
        }
    }
    if pod.metadata.annotations.is_none() {
        ops.push(add(&["metadata", "annotations"], json!({})));
    }
    ops.push(add(
        &["metadata", "annotations", ANNOTATION_INJECTED],
        json!(branch_name),
    ));
    Ok(Patch(ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ArgonBranchSpec, ArgonProjectSpec, AuthSpec, EndpointSpec};
    use crate::crd::{CacheSpec, SidecarDefaults};
    use k8s_openapi::api::core::v1::{Container, PodSpec, Volume};

    fn feature() -> ArgonBranch {
        ArgonBranch::new(
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
        )
    }

    fn app_pod(volumes: Option<Vec<Volume>>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    ..Container::default()
                }],
                volumes,
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    fn patch_for(pod: &Pod, project: &ArgonProject, cache: &CacheDefaults) -> Value {
        let images = ImagePolicy::new("img", &[]);
        serde_json::to_value(inject(pod, &feature(), project, &images, cache).unwrap()).unwrap()
    }

    fn injected_sidecar(patch: &Value) -> Container {
        let sidecar = patch
            .as_array()
            .unwrap()
            .iter()
            .find(|op| op["path"] == "/spec/initContainers")
            .map(|op| op["value"][0].clone())
            .unwrap();
        serde_json::from_value(sidecar).unwrap()
    }

    fn sidecar_env(project: &ArgonProject) -> Vec<(String, Option<String>)> {
        let patch = patch_for(&app_pod(None), project, &CacheDefaults::default());
        injected_sidecar(&patch)
            .env
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect()
    }

    #[test]
    fn injected_sidecars_are_confined_and_authenticate_when_the_project_says() {
        let mut project = ArgonProject::new("shop", ArgonProjectSpec::on_mongodb("s", "argon"));
        let env = sidecar_env(&project);
        assert!(env.contains(&("ARGON_CONFINE_TO_BRANCH".into(), Some("true".into()))));
        assert!(!env.iter().any(|(n, _)| n == "ARGON_AUTH"), "{env:?}");
        project.spec.auth = Some(AuthSpec {
            localhost: LocalhostAuth::Required,
        });
        let env = sidecar_env(&project);
        assert!(env.contains(&("ARGON_CONFINE_TO_BRANCH".into(), Some("true".into()))));
        assert!(env.contains(&("ARGON_AUTH".into(), Some("true".into()))));
    }

    /// The ops of `patch` that touch `spec.volumes`.
    fn volume_ops(patch: &Value) -> Vec<Value> {
        patch
            .as_array()
            .unwrap()
            .iter()
            .filter(|op| op["path"].as_str().unwrap().starts_with("/spec/volumes"))
            .cloned()
            .collect()
    }

    #[test]
    fn injected_sidecars_get_their_cache_volume_in_pods_with_and_without_volumes() {
        let project = ArgonProject::new("shop", ArgonProjectSpec::on_mongodb("s", "argon"));
        let expected_volume = json!({"name": "argon-cache", "emptyDir": {"sizeLimit": "2Gi"}});

        let patch = patch_for(&app_pod(None), &project, &CacheDefaults::default());
        assert_eq!(
            volume_ops(&patch),
            [json!({"op": "add", "path": "/spec/volumes", "value": [expected_volume]})]
        );
        let sidecar = injected_sidecar(&patch);
        let mount = sidecar.volume_mounts.unwrap_or_default();
        assert!(
            mount
                .iter()
                .any(|m| m.name == "argon-cache" && m.mount_path == "/var/cache/argon"),
            "{mount:?}"
        );
        let env: Vec<_> = sidecar.env.unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "ARGON_CACHE_DIR"
                    && e.value.as_deref() == Some("/var/cache/argon"))
        );
        assert!(
            env.iter()
                .any(|e| e.name == "ARGON_CACHE_BYTES" && e.value.as_deref() == Some("268435456"))
        );
        let disk_bound = ((2u64 << 30) / 100 * 90).to_string();
        assert!(env.iter().any(|e| e.name == "ARGON_CACHE_DISK_BYTES"
            && e.value.as_deref() == Some(disk_bound.as_str())));

        // The app's own volumes stay; the cache is appended.
        let own = Volume {
            name: "data".into(),
            ..Volume::default()
        };
        for existing in [vec![own], vec![]] {
            let patch = patch_for(
                &app_pod(Some(existing)),
                &project,
                &CacheDefaults::default(),
            );
            assert_eq!(
                volume_ops(&patch),
                [json!({"op": "add", "path": "/spec/volumes/-", "value": expected_volume})]
            );
        }

        // The project's size wins over the chart's.
        let mut sized = project.clone();
        sized.spec.sidecar = Some(SidecarDefaults {
            cache: Some(CacheSpec {
                disk: Some("5Gi".into()),
                memory: Some("64Mi".into()),
                enabled: None,
            }),
            ..SidecarDefaults::default()
        });
        let patch = patch_for(&app_pod(None), &sized, &CacheDefaults::default());
        assert_eq!(
            volume_ops(&patch)[0]["value"][0]["emptyDir"]["sizeLimit"],
            "5Gi"
        );

        // Off: no volume, no mount, no settings.
        let chart_off = CacheDefaults {
            enabled: false,
            ..CacheDefaults::default()
        };
        for pod in [app_pod(None), app_pod(Some(vec![]))] {
            let patch = patch_for(&pod, &project, &chart_off);
            assert_eq!(volume_ops(&patch), Vec::<Value>::new());
            let sidecar = injected_sidecar(&patch);
            assert!(sidecar.volume_mounts.unwrap_or_default().is_empty());
            assert!(
                !sidecar
                    .env
                    .unwrap_or_default()
                    .iter()
                    .any(|e| e.name.starts_with("ARGON_CACHE"))
            );
        }

        // A size stored before the CRD refused it: the pod still starts, without a cache.
        sized.spec.sidecar = Some(SidecarDefaults {
            cache: Some(CacheSpec {
                disk: Some("1Ki".into()),
                ..CacheSpec::default()
            }),
            ..SidecarDefaults::default()
        });
        let patch = patch_for(&app_pod(None), &sized, &CacheDefaults::default());
        assert_eq!(volume_ops(&patch), Vec::<Value>::new());
        assert!(
            injected_sidecar(&patch)
                .volume_mounts
                .unwrap_or_default()
                .is_empty()
        );
    }
}
