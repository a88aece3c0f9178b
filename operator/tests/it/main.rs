//! Integration tests of the operator against a real kube-apiserver + etcd
//! (and FerretDB as the project's MongoDB store). One test binary, so the
//! crate links once; each test starts its own servers and cleans up on drop.

mod cert_manager;
mod certs;
mod chart;
mod connection;
mod crds;
mod deletion;
mod endpoint_tls;
mod events;
mod examples;
mod exposure;
mod images;
mod import;
mod leader;
mod lifecycle;
mod narrow;
mod pod_security;
mod rbac;
mod reconcile_work;
mod scale;
mod store_owner;
mod support;
mod users;
mod webhook;
