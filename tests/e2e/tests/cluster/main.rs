//! End-to-end scenarios with real pods on the single-node cluster of
//! `tests/cluster`: brought up once per run (or reused), the images built
//! from this build and imported, the chart installed from its defaults
//! (support.rs). Each scenario runs in a namespace of its own.
//!
//! These need a machine that can run containers (root, cgroups, overlayfs,
//! iptables); elsewhere every scenario fails saying why.

mod app_secret;
mod chart;
mod embedded;
mod endpoint;
mod faults;
mod gitops;
mod helm;
mod inject;
mod policy;
mod restart;
mod support;
