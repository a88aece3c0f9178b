//! The WAL's integration tests: one test binary, one module per subject
//! (`cargo test -p argon-wal --test integration -- mongo::` runs one). One
//! binary rather than one per file, as links dominate a warm build. Tests
//! that arm this process's failpoints live apart in `faults.rs` (its own
//! binary): failpoints are process-wide, and the harness runs the tests of
//! every module here side by side.

mod common;

mod access;
mod catalog_work;
mod corrupt;
mod crash;
mod engine;
mod large;
mod materialized;
mod model;
mod mongo;
mod retry;
mod snapshot_store;
mod unique;
