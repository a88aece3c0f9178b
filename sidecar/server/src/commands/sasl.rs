//! SASL authentication: `saslStart`, `saslContinue`, `logout`, and the
//! speculative `saslStart` a driver puts in `hello`.
//!
//! ```text
//! {saslStart: 1, mechanism: "SCRAM-SHA-256", payload: <client-first>, options: {skipEmptyExchange: true}}
//!   -> {conversationId: 1, done: false, payload: <server-first>}
//! {saslContinue: 1, conversationId: 1, payload: <client-final>}
//!   -> {conversationId: 1, done: true, payload: <server-final>}   (done: false without skipEmptyExchange,
//!                                                                   then one empty exchange)
//! ```
//! The database the command runs on is the user's (`authSource`). Every
//! failure about credentials is the same `AuthenticationFailed` (18)
//! "Authentication failed.", whether the user exists or not; the reason is
//! logged (never a payload).

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};

use super::Ctx;
use crate::auth::scram::{self, Mechanism, ServerConversation};
use crate::auth::users::UserId;
use crate::auth::{CONVERSATION_ID, Conversation, Step};
use crate::error::{CommandError, ErrorCode, Result};

fn payload_of(cmd: &Document) -> Result<Vec<u8>> {
    let bytes = match cmd.get("payload") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        Some(Bson::String(s)) => s.clone().into_bytes(),
        None => Vec::new(),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "payload must be BinData (or a string)",
            ));
        }
    };
    if bytes.len() > crate::limits::MAX_SASL_PAYLOAD {
        return Err(failed(&format!(
            "a payload of {} bytes (the limit is {})",
            bytes.len(),
            crate::limits::MAX_SASL_PAYLOAD
        )));
    }
    Ok(bytes)
}

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes,
    })
}

/// The one answer to a failed authentication; `why` goes to the log only.
fn failed(why: &str) -> CommandError {
    tracing::info!(reason = why, "authentication failed");
    CommandError::new(ErrorCode::AuthenticationFailed, "Authentication failed.")
}

/// Starts a conversation for `(db, mechanism, payload)`; the reply is
/// saslStart's (and speculativeAuthenticate's).
async fn start(ctx: &Ctx<'_>, db: &str, start: &Document) -> Result<Document> {
    let mech_name = start
        .get_str("mechanism")
        .map_err(|_| CommandError::bad_value("saslStart needs a string field \"mechanism\""))?;
    let Some(mechanism) = Mechanism::from_name(mech_name) else {
        return Err(CommandError::new(
            ErrorCode::MechanismUnavailable,
            format!(
                "Received authentication for mechanism {mech_name} which is unknown or not enabled (this server has SCRAM-SHA-1 and SCRAM-SHA-256)"
            ),
        ));
    };
    let payload = payload_of(start)?;
    let skip_empty_exchange = start
        .get_document("options")
        .ok()
        .and_then(|o| o.get_bool("skipEmptyExchange").ok())
        .unwrap_or(false);
    ctx.conn.auth().conversation = None;
    let first = scram::parse_client_first(&payload).map_err(|e| failed(&e.to_string()))?;
    let user = UserId {
        db: db.to_owned(),
        name: first.user.clone(),
    };
    // Caught up with the log on every login, known user or not: a user
    // created through another sidecar is found, and a refresh only on a miss
    // would make an unknown user's first step slower than a known one's.
    ctx.svc.users.refresh(&ctx.svc.wal).await?;
    let credential = ctx
        .svc
        .users
        .get(&user)
        .and_then(|u| u.credential(mechanism).cloned());
    // A missing user or mechanism gets a decoy conversation that fails at
    // the proof, so neither can be told from a wrong password.
    let (conversation, server_first) = ServerConversation::start(mechanism, db, &first, credential);
    ctx.conn.auth().conversation = Some(Conversation {
        user,
        mechanism,
        skip_empty_exchange,
        step: Step::AwaitingProof(Box::new(conversation)),
    });
    Ok(doc! {
        "conversationId": CONVERSATION_ID,
        "done": false,
        "payload": binary(server_first),
    })
}

pub async fn sasl_start(ctx: &Ctx<'_>) -> Result<Document> {
    start(ctx, ctx.db, ctx.cmd).await
}

pub async fn sasl_continue(ctx: &Ctx<'_>) -> Result<Document> {
    let id = ctx.cmd.get("conversationId").and_then(|v| match v {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    });
    if id != Some(i64::from(CONVERSATION_ID)) {
        ctx.conn.auth().conversation = None;
        return Err(CommandError::new(
            ErrorCode::ProtocolError,
            "No SASL session state found: saslContinue names no conversation in progress",
        ));
    }
    let payload = payload_of(ctx.cmd)?;
    let mut auth = ctx.conn.auth();
    let Some(conversation) = auth.conversation.take() else {
        return Err(CommandError::new(
            ErrorCode::ProtocolError,
            "No SASL session state found: start with saslStart",
        ));
    };
    match conversation.step {
        Step::AwaitingProof(server) => {
            if conversation.user.db != ctx.db {
                return Err(failed("saslContinue on another database than saslStart"));
            }
            let server_final = server.finish(&payload).map_err(|e| {
                failed(&format!(
                    "{} for {}: {e}",
                    conversation.mechanism.name(),
                    conversation.user
                ))
            })?;
            tracing::info!(user = %conversation.user, mechanism = conversation.mechanism.name(), conn = ctx.conn.id, "authenticated");
            auth.user = Some(conversation.user.clone());
            let done = conversation.skip_empty_exchange;
            if !done {
                auth.conversation = Some(Conversation {
                    step: Step::AwaitingEmpty,
                    ..conversation
                });
            }
            Ok(
                doc! {"conversationId": CONVERSATION_ID, "done": done, "payload": binary(server_final)},
            )
        }
        Step::AwaitingEmpty => Ok(
            doc! {"conversationId": CONVERSATION_ID, "done": true, "payload": binary(Vec::new())},
        ),
    }
}

pub async fn logout(ctx: &Ctx<'_>) -> Result<Document> {
    let mut auth = ctx.conn.auth();
    auth.user = None;
    auth.conversation = None;
    Ok(Document::new())
}

/// `hello`'s `speculativeAuthenticate`: a `saslStart` carried in the
/// handshake. A failure is not an error of `hello`: the field is left out
/// and the driver authenticates the usual way (and gets the error then).
pub async fn speculative(ctx: &Ctx<'_>) -> Option<Document> {
    let spec = ctx.cmd.get_document("speculativeAuthenticate").ok()?;
    if !spec.contains_key("saslStart") {
        return None;
    }
    let db = spec.get_str("db").unwrap_or(ctx.db);
    start(ctx, db, spec).await.ok()
}

/// `hello`'s `saslSupportedMechs: "<db>.<user>"`: the user's mechanisms.
/// An unknown user gets the mechanisms `createUser` gives by default (mongod
/// leaves the field out), so the handshake does not tell who exists.
pub async fn supported_mechanisms(ctx: &Ctx<'_>) -> Option<Vec<Bson>> {
    let name = ctx.cmd.get_str("saslSupportedMechs").ok()?;
    let (db, user) = name.split_once('.')?;
    let id = UserId {
        db: db.to_owned(),
        name: user.to_owned(),
    };
    // Refreshed whether the user is known or not (see `start`).
    ctx.svc.users.refresh(&ctx.svc.wal).await.ok()?;
    Some(match ctx.svc.users.get(&id) {
        Some(u) => u.mechanisms(),
        None => Mechanism::ALL
            .iter()
            .map(|m| Bson::String(m.name().to_owned()))
            .collect(),
    })
}
