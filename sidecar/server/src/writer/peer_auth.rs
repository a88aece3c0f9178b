//! Sidecars authenticate each other on the peer link before anything is
//! forwarded or fed, with a key both hold (as mongod members do with their
//! keyFile): `argonPeerAuth`, a challenge and response in two round trips
//! in which each side proves it holds the key (HMAC-SHA-256 over both
//! sides' nonces, labelled by role, so neither proof can be replayed as the
//! other or on another connection). The key never crosses the wire.
//!
//! The key is `--peer-key-file` when given, else derived from the store's
//! connection string (credentials included) and the project: every sidecar
//! of a project holds that string already, and whoever holds it can write
//! the store directly, so the link asks for exactly the privilege the store
//! does, and needs no secret of its own. The link is authenticated, not
//! encrypted (which is why `--peer-listen` is still refused with TLS).
//!
//! Until a connection of the peer listener has proved the key, it runs the
//! handshake commands and `argonPeerAuth`, nothing else (`commands::answer`).

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document, doc};
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::error::{CommandError, ErrorCode, Result};

pub const COMMAND: &str = "argonPeerAuth";
/// Bytes of each side's nonce.
pub const NONCE_LEN: usize = 24;
/// The least a key file may hold (after trimming whitespace).
const MIN_KEY_FILE_LEN: usize = 16;
/// The most a key file may hold (mongod allows 1,024 characters).
const MAX_KEY_FILE_LEN: usize = 1024;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The link key (32 bytes), never printed.
#[derive(Clone)]
pub struct PeerKey([u8; 32]);

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(…)")
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        // Length-prefixed, so no two different part lists hash alike.
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.finalize().into_bytes().into()
}

impl PeerKey {
    /// The key of `project`'s link from a shared secret (a key file's
    /// contents, or the store's connection string).
    pub fn derive(secret: &[u8], project: &str) -> PeerKey {
        PeerKey(hmac(secret, &[b"argon peer link v1", project.as_bytes()]))
    }

    /// The key from `--peer-key-file` (16 to 1,024 bytes, surrounding
    /// whitespace ignored, as a Secret's value may end in a newline).
    pub fn from_file(
        path: &std::path::Path,
        project: &str,
    ) -> std::result::Result<PeerKey, String> {
        let bytes = std::fs::read(path)
            .map_err(|e| format!("cannot read --peer-key-file {}: {e}", path.display()))?;
        let secret = bytes.trim_ascii();
        if !(MIN_KEY_FILE_LEN..=MAX_KEY_FILE_LEN).contains(&secret.len()) {
            return Err(format!(
                "--peer-key-file {} holds {} bytes; a key is {MIN_KEY_FILE_LEN} to {MAX_KEY_FILE_LEN}",
                path.display(),
                secret.len()
            ));
        }
        Ok(PeerKey::derive(secret, project))
    }

    /// What `role` proves for this pair of nonces.
    fn proof(&self, role: &str, client: &[u8], server: &[u8]) -> [u8; 32] {
        hmac(&self.0, &[role.as_bytes(), client, server])
    }
}

/// How far a peer-listener connection got with `argonPeerAuth`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PeerAuth {
    #[default]
    None,
    /// Step 1 answered: both nonces, waiting for the forwarder's proof.
    Challenged {
        client: Vec<u8>,
        server: Vec<u8>,
    },
    Verified,
}

impl PeerAuth {
    pub fn is_verified(&self) -> bool {
        matches!(self, PeerAuth::Verified)
    }
}

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

fn bytes_of<'a>(cmd: &'a Document, key: &str, len: usize) -> Result<&'a [u8]> {
    match cmd.get(key) {
        Some(Bson::Binary(b)) if b.bytes.len() == len => Ok(&b.bytes),
        Some(Bson::Binary(b)) => Err(CommandError::bad_value(format!(
            "{COMMAND}.{key} must be {len} bytes, not {}",
            b.bytes.len()
        ))),
        Some(_) => Err(CommandError::type_mismatch(format!(
            "{COMMAND}.{key} must be binary data"
        ))),
        None => Err(CommandError::failed_to_parse(format!(
            "{COMMAND} step needs '{key}'"
        ))),
    }
}

fn failed() -> CommandError {
    CommandError::new(
        ErrorCode::AuthenticationFailed,
        "peer authentication failed: this sidecar and the one dialing it do not hold the same peer key",
    )
}

/// The peer listener's side: `{argonPeerAuth: 1, nonce}` is answered with
/// this side's nonce and proof; `{argonPeerAuth: 2, proof}` verifies the
/// forwarder's. Any failure resets the connection's state.
pub fn answer(key: &PeerKey, state: &mut PeerAuth, cmd: &Document) -> Result<Document> {
    let step = match cmd.get(COMMAND) {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => {
            return Err(CommandError::type_mismatch(format!(
                "{COMMAND} must be the step number, 1 or 2"
            )));
        }
    };
    let current = std::mem::take(state);
    match (step, current) {
        (1, _) => {
            let client = bytes_of(cmd, "nonce", NONCE_LEN)?.to_vec();
            let server = crate::auth::scram::random_bytes(NONCE_LEN);
            let proof = key.proof("writer", &client, &server);
            let reply = doc! {"nonce": binary(&server), "proof": binary(&proof)};
            *state = PeerAuth::Challenged { client, server };
            Ok(reply)
        }
        (2, PeerAuth::Challenged { client, server }) => {
            let proof = bytes_of(cmd, "proof", 32)?;
            let want = key.proof("forwarder", &client, &server);
            if bool::from(proof.ct_eq(&want)) {
                *state = PeerAuth::Verified;
                Ok(Document::new())
            } else {
                Err(failed())
            }
        }
        (2, _) => Err(CommandError::failed_to_parse(format!(
            "{COMMAND} step 2 comes after step 1 on the same connection"
        ))),
        (other, _) => Err(CommandError::bad_value(format!(
            "{COMMAND} has steps 1 and 2, not {other}"
        ))),
    }
}

/// The forwarder's side: [`Forwarder::start`] gives step 1, the writer's
/// reply gives step 2 ([`Forwarder::respond`]), and the reply to that ends
/// it ([`Forwarder::finish`]). No I/O here: the caller sends.
pub struct Forwarder {
    client: Vec<u8>,
}

impl Forwarder {
    pub fn start() -> (Forwarder, Document) {
        let client = crate::auth::scram::random_bytes(NONCE_LEN);
        let first = doc! {COMMAND: 1, "nonce": binary(&client), "$db": "admin"};
        (Forwarder { client }, first)
    }

    /// Step 2, once the writer proved the key in its reply to step 1.
    pub fn respond(
        &self,
        key: &PeerKey,
        reply: &Document,
    ) -> std::result::Result<Document, String> {
        check_ok(reply)?;
        let server = bytes_of(reply, "nonce", NONCE_LEN).map_err(|e| e.message)?;
        let proof = bytes_of(reply, "proof", 32).map_err(|e| e.message)?;
        // The writer proves the key first: a sidecar that does not hold it
        // learns nothing from this side's proof.
        if !bool::from(proof.ct_eq(&key.proof("writer", &self.client, server))) {
            return Err("the branch writer does not hold this sidecar's peer key".into());
        }
        let proof = key.proof("forwarder", &self.client, server);
        Ok(doc! {COMMAND: 2, "proof": binary(&proof), "$db": "admin"})
    }

    pub fn finish(reply: &Document) -> std::result::Result<(), String> {
        check_ok(reply)
    }
}

fn check_ok(reply: &Document) -> std::result::Result<(), String> {
    let ok = match reply.get("ok") {
        Some(Bson::Double(v)) => *v == 1.0,
        Some(Bson::Int32(v)) => *v == 1,
        Some(Bson::Int64(v)) => *v == 1,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "peer authentication refused: {}",
            reply.get_str("errmsg").unwrap_or("no message")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(mut d: Document) -> Document {
        d.insert("ok", 1.0);
        d
    }

    /// The whole exchange, the writer holding `writer_key`.
    fn exchange(
        forwarder_key: &PeerKey,
        writer_key: &PeerKey,
    ) -> (std::result::Result<(), String>, PeerAuth) {
        let mut state = PeerAuth::None;
        let (me, first) = Forwarder::start();
        let outcome = (|| {
            let reply = answer(writer_key, &mut state, &first)
                .map(ok)
                .map_err(|e| e.message)?;
            let second = me.respond(forwarder_key, &reply)?;
            let reply = match answer(writer_key, &mut state, &second) {
                Ok(r) => ok(r),
                Err(e) => e.to_document(),
            };
            Forwarder::finish(&reply)
        })();
        (outcome, state)
    }

    #[test]
    fn both_sides_prove_the_key_and_a_wrong_key_fails_either_way() {
        let key = PeerKey::derive(b"mongodb://u:p@store/", "shop");
        let (outcome, state) = exchange(&key, &key);
        outcome.unwrap();
        assert!(state.is_verified());
        // Another project's key (or another store's) is another key.
        let other = PeerKey::derive(b"mongodb://u:p@store/", "other");
        let (outcome, state) = exchange(&other, &key);
        let e = outcome.unwrap_err();
        assert!(e.contains("does not hold"), "{e}");
        assert!(!state.is_verified());
    }

    #[test]
    fn a_forged_or_replayed_proof_and_malformed_steps_are_refused() {
        let key = PeerKey::derive(b"secret-secret-secret", "p");
        let mut state = PeerAuth::None;
        // Step 2 first.
        let e = answer(
            &key,
            &mut state,
            &doc! {COMMAND: 2, "proof": binary(&[0; 32])},
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::FailedToParse);
        // Wrong nonce length, wrong type, unknown step.
        for bad in [
            doc! {COMMAND: 1, "nonce": binary(&[1; 8])},
            doc! {COMMAND: 1, "nonce": "x"},
            doc! {COMMAND: 1},
            doc! {COMMAND: 3},
            doc! {COMMAND: "1"},
        ] {
            assert!(answer(&key, &mut state, &bad).is_err(), "{bad}");
            assert_eq!(state, PeerAuth::None);
        }
        let challenge = answer(
            &key,
            &mut state,
            &doc! {COMMAND: 1, "nonce": binary(&[7; NONCE_LEN])},
        )
        .unwrap();
        // The writer's own proof sent back as the forwarder's: refused.
        let mirrored = challenge.get("proof").unwrap().clone();
        let e = answer(&key, &mut state, &doc! {COMMAND: 2, "proof": mirrored}).unwrap_err();
        assert_eq!(e.code, ErrorCode::AuthenticationFailed);
        assert_eq!(state, PeerAuth::None, "a failure resets the state");
    }

    #[test]
    fn key_files_are_bounded_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tiny\n").unwrap();
        assert!(PeerKey::from_file(&short, "p").is_err());
        let long = dir.path().join("long");
        std::fs::write(&long, "k".repeat(2000)).unwrap();
        assert!(PeerKey::from_file(&long, "p").is_err());
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        let key = PeerKey::from_file(&good, "p").unwrap();
        assert_eq!(format!("{key:?}"), "PeerKey(…)");
        assert!(PeerKey::from_file(&dir.path().join("absent"), "p").is_err());
    }
}
