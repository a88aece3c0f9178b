//! Argon's control plane.
//!
//! What this crate owns:
//! - the API (`crd`): `ArgonProject` and `ArgonBranch` with their schemas and
//!   CEL rules, and their generation into `crds/` (`crdgen`);
//! - the controllers (`controller`): a project becomes a WAL with its `main`
//!   branch, a branch becomes a pointer into that WAL plus an endpoint
//!   (`endpoint`: a Deployment + Service running the sidecar, the image
//!   `image_policy` allows, behind the NetworkPolicy of `network_policy`) and its
//!   connection Secret (`connection`) and, over TLS, its serving
//!   certificate from the operator's CA (`endpoint_tls`);
//! - the sidecar's cache volume and memory budget in pods (`sidecar_cache`),
//!   sizes read by one parser (`quantity`);
//! - `spec.import` (`import`): existing MongoDB databases copied into `main` once;
//! - open stores per project (`stores`) behind one trait (`project_store`),
//!   the owner pod of an embedded store in a cluster (`store_owner`), and
//!   the operator's copy of mongodb connections for deletions after a
//!   restart (`store_copy`);
//! - `spec.users` written into the project's log from Secrets (`users`);
//! - the injection webhook (`webhook`) and its own CA and serving
//!   certificate (`certs`), leader election (`leader`), metrics
//!   and health checks (`metrics`).
//!
//! The binary is thin: `main.rs` parses flags into [`Config`] and calls
//! [`run`]. Tests run the same [`Operator`] in-process against a real
//! kube-apiserver. See `DESIGN.md` beside this crate.

pub mod branch_admission;
pub mod certs;
pub mod config;
pub mod connection;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod endpoint;
pub mod endpoint_tls;
pub mod error;
pub mod image_policy;
pub mod import;
pub mod leader;
pub mod metrics;
pub mod network_policy;
pub mod operator;
pub mod project_store;
pub mod quantity;
pub mod sidecar_cache;
pub mod store_copy;
pub mod store_owner;
pub mod stores;
pub mod users;
pub mod webhook;

pub use config::Config;
pub use error::{Error, Result};
pub use operator::{Operator, run};
