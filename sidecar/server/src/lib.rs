//! `argon-sidecar`: Argon's data plane.
//!
//! This crate owns the MongoDB wire-protocol server: authentication and
//! authorization (`auth`), framing and message
//! parsing (`wire`), the command handlers and their MongoDB error codes
//! (`commands`, `error`, `error_labels`), the query engine that filters, updates, projects,
//! sorts and aggregates documents (`query`), branch addressing in database
//! names (`target`), cursors (`cursor`), retryable-write memory (`retry`),
//! every limit a request is held to (`limits`), the accept loop (`server`),
//! TLS with certificate reloading (`tls`), configuration (`config`), the
//! metrics endpoint (`metrics`), and the choice of one writer per branch
//! among sidecars sharing a store, with write forwarding to it (`writer`).
//!
//! Durability, branches and materialized state belong to the `argon-wal`
//! crate: every write here is resolved inside `Wal::write` and acknowledged
//! only after it returns; every read is a `BranchState` from `Wal::read`.

pub mod auth;
pub mod capped;
pub mod commands;
pub mod config;
pub mod current_op;
pub mod cursor;
pub mod deadline;
pub mod error;
pub mod error_labels;
pub mod limits;
pub mod metrics;
pub mod query;
pub mod retry;
pub mod server;
pub mod service;
pub mod session;
pub mod spill;
pub mod target;
pub mod tls;
pub mod ttl;
pub mod validation;
pub mod wal_error;
pub mod wire;
pub mod writer;

pub use server::run;
pub use service::Service;
