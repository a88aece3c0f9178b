//! Running the operator: the metrics and webhook servers (every replica),
//! leader election, and the two controllers (the leader only), until the
//! shutdown future resolves.

use crate::certs::{self, CertManager, ServingCert};
use crate::config::{Config, WebhookTls};
use crate::controller::{Caches, Context, branch, error_policy, project};
use crate::crd::{ArgonBranch, ArgonProject, FIELD_MANAGER};
use crate::crdgen;
use crate::error::{Error, Result};
use crate::leader::{Attempt, LeaderElector};
use crate::metrics::{self, Metrics};
use crate::webhook::{self, Injector};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, controller, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use std::future::Future;
use std::sync::Arc;
use tokio::time::Instant;

type Signal = Shared<BoxFuture<'static, ()>>;

/// The operator: build it, keep its metrics handle if you want to look, run it.
pub struct Operator {
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    serving: Arc<ServingCert>,
    /// True while this replica leads (or runs without election): the
    /// certificate manager writes only then.
    leading: tokio::sync::watch::Sender<bool>,
}

/// How long in-flight reconciles may run after a shutdown before the
/// controllers are dropped (well inside Kubernetes' default 30 s grace).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long applied CRDs may take to become Established at start.
const CRDS_ESTABLISHED: std::time::Duration = std::time::Duration::from_secs(60);

/// The projects to reconcile when a Secret changes: those whose
/// `spec.users` take a password from it. A metadata-only watch: the
/// operator learns that a Secret changed and at which resourceVersion
/// (`versions`, which `Stores::secret_value` checks its copies against),
/// never the data of a Secret it does not read.
fn password_secret_changes(
    secrets: Api<PartialObjectMeta<Secret>>,
    versions: reflector::store::Writer<PartialObjectMeta<Secret>>,
    projects: Store<ArgonProject>,
) -> impl futures::Stream<Item = ObjectRef<ArgonProject>> + Send + 'static {
    watcher(secrets, watcher::Config::default())
        .default_backoff()
        // Only the name and resourceVersion are kept: a Secret's
        // annotations can hold its data (kubectl's last-applied-configuration).
        .modify(|secret| {
            let meta = &mut secret.metadata;
            meta.annotations = None;
            meta.labels = None;
            meta.managed_fields = None;
            meta.owner_references = None;
            meta.finalizers = None;
        })
        .reflect(versions)
        .touched_objects()
        .filter_map(|s| futures::future::ready(s.ok()))
        .flat_map(move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            let wake: Vec<ObjectRef<ArgonProject>> = projects
                .state()
                .iter()
                .filter(|p| {
                    p.namespace() == namespace
                        && p.spec
                            .users
                            .iter()
                            .any(|u| u.password_secret_ref.name == name)
                })
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect();
            futures::stream::iter(wake)
        })
}

/// Runs the operator until `shutdown` resolves (see [`Operator::run`]).
pub async fn run(
    client: Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    Operator::new(client, config).run(shutdown).await
}

impl Operator {
    pub fn new(client: Client, config: Config) -> Operator {
        Operator {
            client,
            config,
            metrics: Arc::new(Metrics::default()),
            serving: ServingCert::new(),
            leading: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The certificate the webhook serves now (swapped on renewal).
    pub fn serving_cert(&self) -> Arc<ServingCert> {
        self.serving.clone()
    }

    fn set_leader(&self, leading: bool) {
        self.metrics.set_leader(leading);
        self.leading.send_replace(leading);
    }

    /// Serves metrics and the webhook, then (after winning the Lease, when
    /// election is on) runs the controllers. Returns `Ok` after a graceful
    /// shutdown, `Err(LostLease)` if leadership is lost (the process should
    /// exit and restart, as client-go's controllers do).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let shutdown: Signal = shutdown.boxed().shared();
        let mut servers = tokio::task::JoinSet::new();
        if let Some(addr) = self.config.metrics_listen {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            servers.spawn(metrics::serve(listener, self.metrics.clone()));
        }
        if let Some(wh) = &self.config.webhook {
            match &wh.tls {
                WebhookTls::Pem { cert_pem, key_pem } => {
                    self.serving.set_pem(cert_pem, key_pem)?;
                }
                WebhookTls::Files {
                    cert,
                    key,
                    check_every,
                } => {
                    // Unreadable at start: a usage error, not a silent
                    // webhook without a certificate.
                    certs::load_files(&self.serving, cert, key)?;
                    servers.spawn(certs::reload_files(
                        self.serving.clone(),
                        cert.clone(),
                        key.clone(),
                        *check_every,
                    ));
                }
                WebhookTls::Secret(secret) => {
                    // Ready once a certificate is served: the Service only
                    // sends the apiserver to replicas that can answer.
                    self.metrics.require_webhook_cert(self.serving.clone());
                    let manager =
                        CertManager::new(self.client.clone(), secret.clone(), self.serving.clone());
                    servers.spawn(manager.run(self.leading.subscribe()));
                }
            }
            let acceptor = webhook::tls_acceptor(self.serving.clone())?;
            let listener = tokio::net::TcpListener::bind(wh.listen).await?;
            let injector = Arc::new(Injector {
                client: self.client.clone(),
                images: self.config.image_policy(),
                cache: self.config.cache.clone(),
            });
            servers.spawn(webhook::serve(listener, acceptor, injector));
        }
        self.client.apiserver_version().await?;
        if self.config.apply_crds {
            // Every replica, before it is Ready: a rolling update's new pods
            // bring the CRDs to this build's shape before `helm upgrade
            // --wait` returns. Same bytes from every replica of a version, so
            // replicas never fight; an older replica started later would
            // apply its older shape (as `kubectl apply -f` of old CRDs would).
            crdgen::install(&self.client, FIELD_MANAGER, CRDS_ESTABLISHED)
                .await
                .map_err(|e| {
                    Error::Crds(format!(
                        "{e:#} (the operator updates CRDs that exist; it may not create \
                         them: install crds/ first, e.g. `kubectl apply --server-side -f crds/`)"
                    ))
                })?;
            tracing::info!(field_manager = FIELD_MANAGER, "applied the CRDs");
        }
        self.metrics.set_ready(true);

        let result = match self.config.leader.clone() {
            None => {
                self.set_leader(true);
                self.controllers(shutdown).await;
                Ok(())
            }
            Some(leader) => self.run_elected(leader, shutdown).await,
        };
        self.set_leader(false);
        servers.abort_all();
        result
    }

    async fn run_elected(
        &self,
        leader: crate::config::LeaderConfig,
        shutdown: Signal,
    ) -> Result<()> {
        leader.validate().map_err(Error::Config)?;
        let elector = LeaderElector::new(
            self.client.clone(),
            leader.clone(),
            self.config.identity.clone(),
        );
        // Standby: try until the Lease is ours.
        let mut renewed_at = loop {
            let sent = Instant::now();
            match elector.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => break sent,
                Ok(Attempt::Standby | Attempt::Conflict) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::select! {
                _ = shutdown.clone() => return Ok(()),
                _ = tokio::time::sleep(leader.renew_every) => {}
            }
        };
        tracing::info!(identity = %self.config.identity, "became leader");
        self.set_leader(true);
        // Lead: renew until the controllers stop (after a shutdown, so the
        // Lease stays ours while they drain); returns only when a renewal
        // did not succeed within the renew deadline of the last one, as
        // measured from when that one was sent (see `leader`).
        let renew = async {
            loop {
                let deadline = renewed_at + leader.renew_deadline;
                tokio::time::sleep_until((Instant::now() + leader.renew_every).min(deadline)).await;
                if Instant::now() >= deadline {
                    return;
                }
                let sent = Instant::now();
                match tokio::time::timeout_at(deadline, elector.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Leading)) => renewed_at = sent,
                    // Another instance holds it: it judged us gone.
                    Ok(Ok(Attempt::Standby)) => return,
                    Ok(Ok(Attempt::Conflict)) => {
                        tracing::warn!("renewing the leader lease: conflict; retrying");
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, "renewing the leader lease"),
                    Err(_) => return,
                }
            }
        };
        tokio::select! {
            () = renew => {
                // Step down at once: dropping the controllers cancels every
                // reconcile in flight (no graceful drain, which could outlast
                // the margin before another replica may lead).
                self.set_leader(false);
                tracing::error!(deadline = ?leader.renew_deadline, "could not renew the leader lease in time; stopped reconciling");
                return Err(Error::LostLease(leader.lease_name));
            }
            () = self.controllers(shutdown) => {}
        }
        if let Err(e) = elector.release().await {
            tracing::warn!(error = %e, "releasing the leader lease");
        }
        Ok(())
    }

    /// Both controllers, until `stop` resolves.
    async fn controllers(&self, stop: Signal) {
        let client = self.client.clone();
        let (projects, branches, deployments): (
            Api<ArgonProject>,
            Api<ArgonBranch>,
            Api<PartialObjectMeta<Deployment>>,
        ) = match &self.config.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        };
        let metrics = self.metrics.clone();
        let project_controller = Controller::new(projects, watcher::Config::default());
        // The endpoints' Deployments wake their branch and are cached
        // (metadata only) so a reconcile knows what exists without asking.
        let (deployment_cache, deployment_writer) = reflector::store();
        let endpoint_changes = watcher(
            deployments,
            watcher::Config::default().labels("app.kubernetes.io/managed-by=argon-operator"),
        )
        .default_backoff()
        .reflect(deployment_writer)
        .touched_objects();
        // A branch is reconciled when what it asks for changes, not when
        // its status does: the operator's own status write would otherwise
        // wake every branch a second time for nothing (a burst of 200 new
        // branches did twice the work).
        let (branch_cache, branch_writer) = reflector::store();
        let branch_changes = watcher(branches.clone(), watcher::Config::default())
            .default_backoff()
            .reflect(branch_writer)
            .applied_objects()
            .predicate_filter(branch::what_reconcile_reads, Default::default());
        // RBAC may grant Secrets in some namespaces only: watch each of them.
        let secret_apis: Vec<Api<PartialObjectMeta<Secret>>> = match (
            &self.config.namespace,
            self.config.secret_namespaces.as_slice(),
        ) {
            (Some(ns), _) => vec![Api::namespaced(client.clone(), ns)],
            (None, []) => vec![Api::all(client.clone())],
            (None, namespaces) => namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect(),
        };
        let mut secret_versions = Vec::new();
        let password_changes = futures::stream::select_all(secret_apis.into_iter().map(|api| {
            let (versions, writer) = reflector::store();
            secret_versions.push(versions);
            password_secret_changes(api, writer, project_controller.store()).boxed()
        }));
        let ctx = Arc::new(Context::new(
            client.clone(),
            self.config.clone(),
            self.metrics.clone(),
            Caches {
                projects: project_controller.store(),
                deployments: deployment_cache,
                secret_versions,
            },
        ));
        let project_controller = project_controller
            .reconcile_on(password_changes)
            .with_config(controller::Config::default().concurrency(self.config.concurrency))
            .graceful_shutdown_on(stop.clone())
            .run(
                project::reconcile,
                move |p, e, _| error_policy(project::CONTROLLER, p.as_ref(), e, &metrics),
                ctx.clone(),
            )
            .for_each(|_| futures::future::ready(()));
        let metrics = self.metrics.clone();
        let branch_controller = Controller::for_stream(branch_changes, branch_cache)
            .owns_stream(endpoint_changes)
            // A child being deleted wakes its parent: a deletion blocked by
            // children proceeds as soon as they are gone. Only then: the
            // parent's reconcile reads nothing else of its children, and
            // waking it on every child's status write made a burst of 200
            // new branches reconcile `main` hundreds of times.
            .watches(
                branches,
                watcher::Config::default(),
                |child: ArgonBranch| {
                    child.metadata.deletion_timestamp.as_ref()?;
                    let namespace = child.namespace()?;
                    Some(ObjectRef::<ArgonBranch>::new(&child.spec.parent).within(&namespace))
                },
            )
            .with_config(controller::Config::default().concurrency(self.config.concurrency))
            .graceful_shutdown_on(stop.clone())
            .run(
                branch::reconcile,
                move |b, e, _| error_policy(branch::CONTROLLER, b.as_ref(), e, &metrics),
                ctx,
            )
            .for_each(|_| futures::future::ready(()));
        // Graceful, but bounded: kube-runtime holds a controller's runner
        // until its reflector store is ready, so a stop that arrives before
        // the first list completes would wait forever. After the grace
        // period the controllers are dropped, which cancels any reconcile
        // still running (reconciles are idempotent; the next leader redoes it).
        let both = async {
            tokio::join!(project_controller, branch_controller);
        };
        tokio::select! {
            () = both => {}
            () = async {
                stop.await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop gracefully in time; stopping them");
            }
        }
    }
}
