//! The sidecar's integration tests against real servers and drivers: one
//! test binary, one module per subject (`cargo test -p argon-sidecar --test
//! integration -- hostile::` runs one subject). One binary rather than one per
//! file: each links the whole sidecar and its drivers, and forty links were
//! most of a warm build. Nothing here may change process-wide state that
//! another module's test could see (environment, WAL failpoints armed in this
//! process): the harness runs tests of every module side by side.

mod common;
mod compat;
mod querygen;

mod accumulators;
mod aggregate_stages;
mod auth;
mod capped_limits;
mod cli;
mod clients;
mod collation;
mod collection_rules;
mod command_options;
mod compatibility;
mod conformance;
mod crash;
mod current_op;
mod cursor_bounds;
mod cursors;
mod driver;
mod expressions;
mod fail_point;
mod geo;
mod geo_index;
mod hostile;
mod key_file;
mod large_writes;
mod linearizability;
mod load_balanced;
mod metadata;
mod multi_writer;
mod protocol;
mod query_fuzz;
mod query_plans;
mod read_only;
mod retryable_writes;
mod shared_store;
mod store_outage;
mod text_search;
mod time_travel;
mod tls;
mod transaction_clients;
mod transactions;
mod views;
mod write_parts;
