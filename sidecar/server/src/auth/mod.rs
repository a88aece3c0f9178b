//! Authentication and authorization.
//!
//! - `scram` (from `argon-auth`, shared with the operator): the
//!   SCRAM-SHA-1 / SCRAM-SHA-256 server conversation and the salted keys a
//!   password becomes;
//! - `users`: users as stored in the project's catalog log, and the
//!   directory of them every connection checks against;
//! - `roles`: roles, grants with a branch scope, and what each allows;
//! - `key_file`: `--key-file`, the key of the internal user `__system`;
//! - `authorize`: what each command needs, and [`authorize`], the one
//!   check every command passes through before its handler runs.
//!
//! A connection's own state ([`ConnAuth`]) is who it is authenticated as
//! and the SASL conversation in progress.

pub mod authorize;
pub mod key_file;
pub mod roles;
pub mod users;

pub use argon_auth::scram;

pub use authorize::authorize;

use scram::{Mechanism, ServerConversation};
use users::UserId;

/// The id of the one SASL conversation a connection may have.
pub const CONVERSATION_ID: i32 = 1;

/// A connection's authentication state.
#[derive(Debug, Default)]
pub struct ConnAuth {
    /// Set once a conversation has succeeded.
    pub user: Option<UserId>,
    pub conversation: Option<Conversation>,
}

/// A SASL conversation in progress.
#[derive(Debug)]
pub struct Conversation {
    pub user: UserId,
    pub mechanism: Mechanism,
    pub skip_empty_exchange: bool,
    pub step: Step,
}

#[derive(Debug)]
pub enum Step {
    /// The server sent its first message; the client's proof is next.
    AwaitingProof(Box<ServerConversation>),
    /// The proof was right and the server's signature sent; the client
    /// ends with an empty message (no `skipEmptyExchange`).
    AwaitingEmpty,
}
