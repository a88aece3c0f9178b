//! Argon's credentials, shared by the two sides that handle them:
//!
//! - `scram`: the SCRAM-SHA-1 / SCRAM-SHA-256 server conversation and the
//!   salted keys a password becomes (the sidecar authenticates with it; the
//!   operator derives keys from a Secret's password with it);
//! - `stored`: the user document as the project's catalog log keeps it
//!   (mongod's `system.users` shape), written by the sidecar's `createUser`
//!   and by the operator, read by every sidecar.
//!
//! A separate crate so the operator gets these two without the wire server;
//! what a role allows stays in the sidecar (`auth::roles`), which reads the
//! grants written here.

pub mod scram;
pub mod stored;
