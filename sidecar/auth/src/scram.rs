//! SCRAM (RFC 5802) with SHA-1 and SHA-256 (RFC 7677), the server side, as
//! MongoDB drivers speak it.
//!
//! Two MongoDB twists: SCRAM-SHA-1 hashes not the password but MongoDB's
//! digest of it, `hex(md5("<user>:mongo:<password>"))`; SCRAM-SHA-256 takes
//! the SASLprep'd password (RFC 4013). Channel binding is not offered (the
//! GS2 header must be `n,,`).
//!
//! What the server keeps is a [`Credential`]: salt, iterations, StoredKey
//! and ServerKey; a password is never stored. A client proves it knows the
//! password when `H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey`,
//! compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha1::Digest;
use subtle::ConstantTimeEq;

/// A SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    ScramSha1,
    ScramSha256,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("the SCRAM message is malformed: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the nonce does not continue this conversation")]
    WrongNonce,
    #[error("the client proof is wrong")]
    WrongProof,
    #[error("the password cannot be prepared: {0}")]
    Password(&'static str),
    #[error("iteration count {0} is outside the accepted range")]
    Iterations(u32),
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha1, Mechanism::ScramSha256];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// mongod's defaults (`scramIterationCount`, `scramSHA256IterationCount`).
    pub fn default_iterations(self) -> u32 {
        match self {
            Mechanism::ScramSha1 => 10_000,
            Mechanism::ScramSha256 => 15_000,
        }
    }

    /// Salt length mongod uses (hash length minus 4).
    fn salt_len(self) -> usize {
        match self {
            Mechanism::ScramSha1 => 16,
            Mechanism::ScramSha256 => 28,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => sha1::Sha1::digest(data).to_vec(),
            Mechanism::ScramSha256 => sha2::Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha1 => {
                let mut m = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Mechanism::ScramSha256 => {
                let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
                    .expect("HMAC takes a key of any length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// `Hi(password, salt, i)`: PBKDF2 with HMAC, one block.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash(b"").len()];
        let r = match self {
            Mechanism::ScramSha1 => {
                pbkdf2::pbkdf2::<hmac::Hmac<sha1::Sha1>>(password, salt, iterations, &mut out)
            }
            Mechanism::ScramSha256 => {
                pbkdf2::pbkdf2::<hmac::Hmac<sha2::Sha256>>(password, salt, iterations, &mut out)
            }
        };
        r.expect("HMAC takes a key of any length");
        out
    }

    /// What this mechanism hashes for `user`'s `password` (see the module doc).
    pub fn prepare_password(self, user: &str, password: &str) -> Result<String, ScramError> {
        match self {
            Mechanism::ScramSha1 => {
                let digest = md5::Md5::digest(format!("{user}:mongo:{password}").as_bytes());
                Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
            }
            Mechanism::ScramSha256 => stringprep::saslprep(password)
                .map(|p| p.into_owned())
                .map_err(|_| ScramError::Password("SASLprep refuses it")),
        }
    }
}

/// What the server keeps of a password for one mechanism.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    /// Keys stay out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential {{ iterations: {}, .. }}", self.iterations)
    }
}

impl Credential {
    /// Derives the salted keys from an already prepared password
    /// ([`Mechanism::prepare_password`]).
    pub fn derive(
        mech: Mechanism,
        prepared: &str,
        salt: Vec<u8>,
        iterations: u32,
    ) -> Result<Credential, ScramError> {
        check_iterations(iterations)?;
        let salted = mech.hi(prepared.as_bytes(), &salt, iterations);
        let client_key = mech.hmac(&salted, b"Client Key");
        Ok(Credential {
            iterations,
            salt,
            stored_key: mech.hash(&client_key),
            server_key: mech.hmac(&salted, b"Server Key"),
        })
    }

    /// A new credential for `user`'s `password` with a random salt and the
    /// mechanism's default iteration count.
    pub fn new(mech: Mechanism, user: &str, password: &str) -> Result<Credential, ScramError> {
        let prepared = mech.prepare_password(user, password)?;
        Credential::derive(
            mech,
            &prepared,
            random_bytes(mech.salt_len()),
            mech.default_iterations(),
        )
    }

    /// A plausible credential for a user that does not exist, so a
    /// conversation about one looks like any other until the proof fails
    /// (no user enumeration). Its salt is derived from the name and a
    /// per-process secret, so asking twice gives the same salt.
    pub fn decoy(mech: Mechanism, db: &str, user: &str) -> Credential {
        static SECRET: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| random_bytes(32));
        let mut salt = Mechanism::ScramSha256.hmac(&SECRET, format!("{db}\0{user}").as_bytes());
        salt.truncate(mech.salt_len());
        let key = random_bytes(mech.hash(b"").len());
        Credential {
            iterations: mech.default_iterations(),
            salt,
            stored_key: key.clone(),
            server_key: key,
        }
    }

    /// Whether `password` is the one this credential was derived from:
    /// derived again with the stored salt and iteration count, keys compared
    /// in constant time. How the operator tells a changed Secret from an
    /// unchanged one without ever storing the password.
    pub fn matches_password(&self, mech: Mechanism, user: &str, password: &str) -> bool {
        let Ok(prepared) = mech.prepare_password(user, password) else {
            return false;
        };
        let Ok(again) = Credential::derive(mech, &prepared, self.salt.clone(), self.iterations)
        else {
            return false;
        };
        bool::from(again.stored_key.ct_eq(&self.stored_key))
            & bool::from(again.server_key.ct_eq(&self.server_key))
    }

    /// Checks a stored credential's shape (keys of the hash's length).
    pub fn validate(&self, mech: Mechanism) -> Result<(), ScramError> {
        check_iterations(self.iterations)?;
        let n = mech.hash(b"").len();
        if self.stored_key.len() != n || self.server_key.len() != n || self.salt.is_empty() {
            return Err(ScramError::Malformed("stored credential of the wrong size"));
        }
        Ok(())
    }
}

/// Iteration counts a stored credential may have: RFC 7677's minimum, and a
/// ceiling so one login cannot occupy a core for long (the sidecar's
/// `limits` table lists these).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 1_000_000;

fn check_iterations(i: u32) -> Result<(), ScramError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&i) {
        Ok(())
    } else {
        Err(ScramError::Iterations(i))
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

/// The client's first message, `n,,n=<user>,r=<nonce>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    pub user: String,
    pub nonce: String,
    /// Without the GS2 header: part of the AuthMessage.
    pub bare: String,
}

pub fn parse_client_first(payload: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(payload).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let bare = match text.strip_prefix("n,") {
        Some(rest) => {
            // An authzid (`a=...`) is ignored by MongoDB; skip it.
            let (_authzid, bare) = rest
                .split_once(',')
                .ok_or(ScramError::Malformed("no GS2 header"))?;
            bare
        }
        None if text.starts_with("y,") || text.starts_with("p=") => {
            return Err(ScramError::ChannelBinding);
        }
        None => return Err(ScramError::Malformed("no GS2 header")),
    };
    let mut parts = bare.split(',');
    let user = parts
        .next()
        .and_then(|p| p.strip_prefix("n="))
        .ok_or(ScramError::Malformed("no user name"))?;
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or(ScramError::Malformed("no nonce"))?;
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(ScramError::Malformed("bad nonce"));
    }
    if bare.starts_with("m=") {
        return Err(ScramError::Malformed("mandatory extension"));
    }
    Ok(ClientFirst {
        user: unescape_name(user)?,
        nonce: nonce.to_owned(),
        bare: bare.to_owned(),
    })
}

/// `=2C` is `,` and `=3D` is `=` in a SCRAM user name; any other `=` is an error.
fn unescape_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest
            .get(i..i + 3)
            .ok_or(ScramError::Malformed("bad escape"))?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return Err(ScramError::Malformed("bad escape")),
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    Ok(out)
}

/// A server-side conversation after the server's first message.
pub struct ServerConversation {
    mech: Mechanism,
    credential: Credential,
    /// `false` for a decoy: the proof can never be right.
    known: bool,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl std::fmt::Debug for ServerConversation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerConversation({})", self.mech.name())
    }
}

impl ServerConversation {
    /// Answers `first` with `r=<nonce>,s=<salt>,i=<iterations>`.
    /// `credential` is `None` for an unknown user (a decoy is used).
    pub fn start(
        mech: Mechanism,
        db: &str,
        first: &ClientFirst,
        credential: Option<Credential>,
    ) -> (ServerConversation, Vec<u8>) {
        let known = credential.is_some();
        let credential = credential.unwrap_or_else(|| Credential::decoy(mech, db, &first.user));
        Self::start_with_nonce(
            mech,
            first,
            credential,
            known,
            &B64.encode(random_bytes(24)),
        )
    }

    fn start_with_nonce(
        mech: Mechanism,
        first: &ClientFirst,
        credential: Credential,
        known: bool,
        server_nonce: &str,
    ) -> (ServerConversation, Vec<u8>) {
        let nonce = format!("{}{server_nonce}", first.nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let payload = server_first.clone().into_bytes();
        (
            ServerConversation {
                mech,
                credential,
                known,
                client_first_bare: first.bare.clone(),
                server_first,
                nonce,
            },
            payload,
        )
    }

    /// Checks `c=biws,r=<nonce>,p=<proof>` and answers `v=<signature>`.
    pub fn finish(&self, payload: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(payload).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut parts = without_proof.split(',');
        let binding = parts
            .next()
            .and_then(|p| p.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        // "biws" is base64("n,,"); "eSws" is "y,,": neither binds a channel.
        if binding != "biws" && binding != "eSws" {
            return Err(ScramError::ChannelBinding);
        }
        let nonce = parts
            .next()
            .and_then(|p| p.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if !bool::from(nonce.as_bytes().ct_eq(self.nonce.as_bytes())) {
            return Err(ScramError::WrongNonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let m = self.mech;
        let signature = m.hmac(&self.credential.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::WrongProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let matches = m.hash(&client_key).ct_eq(&self.credential.stored_key);
        if !bool::from(matches) || !self.known {
            return Err(ScramError::WrongProof);
        }
        let server_signature = m.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

/// The client side of the proof step, for tests and tools: given the
/// prepared password, the client's first message (bare) and the server's
/// first message, the client-final message and the server signature the
/// client must then receive. `None` when `server_first` is malformed.
pub fn client_final(
    mech: Mechanism,
    prepared: &str,
    client_first_bare: &str,
    server_first: &str,
) -> Option<(String, String)> {
    let mut fields = server_first.split(',');
    let nonce = fields.next()?.strip_prefix("r=")?;
    let salt = B64.decode(fields.next()?.strip_prefix("s=")?).ok()?;
    let iterations: u32 = fields.next()?.strip_prefix("i=")?.parse().ok()?;
    check_iterations(iterations).ok()?;
    let salted = mech.hi(prepared.as_bytes(), &salt, iterations);
    let client_key = mech.hmac(&salted, b"Client Key");
    let stored = mech.hash(&client_key);
    let without_proof = format!("c=biws,r={nonce}");
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let sig = mech.hmac(&stored, auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
    let server_sig = mech.hmac(&mech.hmac(&salted, b"Server Key"), auth.as_bytes());
    Some((
        format!("{without_proof},p={}", B64.encode(proof)),
        format!("v={}", B64.encode(server_sig)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 §5 (SCRAM-SHA-1, password "pencil", used as is) and
    /// RFC 7677 §3 (SCRAM-SHA-256).
    #[test]
    fn rfc_test_vectors() {
        let cases = [
            (
                Mechanism::ScramSha1,
                "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                "3rfcNHYJY1ZVvWVs7j",
                "QSXCR+Q6sek8bf92",
                4096,
                "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
            ),
            (
                Mechanism::ScramSha256,
                "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                "W22ZaJ0SNY7soEsUEjb6gQ==",
                4096,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            ),
        ];
        for (mech, first, snonce, salt, iters, final_msg, server_final) in cases {
            let first = parse_client_first(first.as_bytes()).unwrap();
            assert_eq!(first.user, "user");
            let cred =
                Credential::derive(mech, "pencil", B64.decode(salt).unwrap(), iters).unwrap();
            let (conv, sf) = ServerConversation::start_with_nonce(mech, &first, cred, true, snonce);
            assert!(String::from_utf8(sf).unwrap().starts_with("r="));
            let reply = conv.finish(final_msg.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(reply).unwrap(), server_final);
        }
    }

    #[test]
    fn mongodb_password_preparation() {
        // The driver auth spec's example: user "user", password "pencil".
        let p = Mechanism::ScramSha1
            .prepare_password("user", "pencil")
            .unwrap();
        assert_eq!(p, "1c33006ec1ffd90f9cadcbcc0e118200");
        // SASLprep maps a non-ASCII space to a space and refuses controls.
        let p = Mechanism::ScramSha256
            .prepare_password("u", "I\u{00AD}X")
            .unwrap();
        assert_eq!(p, "IX");
        assert!(
            Mechanism::ScramSha256
                .prepare_password("u", "a\u{0007}")
                .is_err()
        );
    }

    fn conversation(known: bool) -> (ServerConversation, String, String) {
        let first = parse_client_first(b"n,,n=ann,r=clientnonce").unwrap();
        let prepared = Mechanism::ScramSha256
            .prepare_password("ann", "secret")
            .unwrap();
        let cred =
            Credential::derive(Mechanism::ScramSha256, &prepared, vec![1; 28], 4096).unwrap();
        let cred = known.then_some(cred);
        let (conv, sf) = ServerConversation::start(Mechanism::ScramSha256, "admin", &first, cred);
        let sf = String::from_utf8(sf).unwrap();
        let (cf, v) = client_final(Mechanism::ScramSha256, &prepared, &first.bare, &sf).unwrap();
        (conv, cf, v)
    }

    #[test]
    fn right_and_wrong_proofs() {
        let (conv, cf, v) = conversation(true);
        assert_eq!(conv.finish(cf.as_bytes()).unwrap(), v.into_bytes());
        // A replayed client-final against a new conversation has a stale nonce.
        let (other, _, _) = conversation(true);
        assert_eq!(other.finish(cf.as_bytes()), Err(ScramError::WrongNonce));
        // An unknown user's conversation never succeeds.
        let (decoy, cf, _) = conversation(false);
        assert_eq!(decoy.finish(cf.as_bytes()), Err(ScramError::WrongProof));
        let (conv, cf, _) = conversation(true);
        let tampered = cf.replace(",p=", ",p=AAAA");
        assert!(conv.finish(tampered.as_bytes()).is_err());
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            &b""[..],
            b"n,,",
            b"n,,n=,r=x",
            b"n,,r=x",
            b"p=tls-unique,,n=a,r=b",
            b"n,,n=a=ZZ,r=b",
            b"n,,n=a,r=",
            b"\xff\xfe",
            b"x,,n=a,r=b",
        ] {
            assert!(parse_client_first(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_client_first(b"n,,n=a=2Cb=3D,r=x").unwrap().user,
            "a,b="
        );
        let (conv, _, _) = conversation(true);
        for bad in [
            &b""[..],
            b"c=biws",
            b"c=biws,r=x,p=!!",
            b"c=xyz,r=x,p=AA==",
            b"\xff",
        ] {
            assert!(conv.finish(bad).is_err());
        }
        assert!(Credential::derive(Mechanism::ScramSha1, "p", vec![1], u32::MAX).is_err());
        assert!(Credential::derive(Mechanism::ScramSha1, "p", vec![1], 0).is_err());
    }
}
