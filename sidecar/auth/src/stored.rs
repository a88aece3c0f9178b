//! The stored user: `{user, db, roles, credentials: {"SCRAM-SHA-256":
//! {iterationCount, salt, storedKey, serverKey}, ...}, customData?}` with
//! base64 keys, never a password. Whoever writes a user through these
//! functions (the sidecar's `createUser`, the operator from a Secret) makes a
//! user every sidecar of the project accepts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bson::{Bson, Document, doc};

use crate::scram::{Credential, Mechanism};

/// Who a connection is authenticated as: a user of a database.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId {
    pub db: String,
    pub name: String,
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.db)
    }
}

/// Roles that are not about one database: they cover all of them (`root`
/// and `clusterMonitor` live on `admin` in MongoDB; `branchAdmin` is about
/// branches).
pub fn role_spans_databases(role: &str) -> bool {
    matches!(role, "root" | "clusterMonitor" | "branchAdmin")
}

/// One stored grant: `{role, db, allDatabases?, branch?}`. `db: None` is
/// every database; `branch: None` every branch. The sidecar's
/// `Grant::from_stored` reads this form.
pub fn grant_doc(role: &str, db: Option<&str>, branch: Option<&str>) -> Document {
    let db = if role_spans_databases(role) { None } else { db };
    let mut d = doc! {
        "role": role,
        "db": db.unwrap_or("admin"),
    };
    if db.is_none() && !matches!(role, "root" | "clusterMonitor") {
        d.insert("allDatabases", true);
    }
    match branch {
        Some(b) => {
            d.insert("branch", b);
        }
        None if role == "branchAdmin" => {
            d.insert("branch", "*");
        }
        None => {}
    }
    d
}

/// The `credentials` sub-document.
pub fn credentials_doc(credentials: &[(Mechanism, Credential)]) -> Document {
    let mut d = Document::new();
    for (m, c) in credentials {
        d.insert(
            m.name(),
            doc! {
                "iterationCount": c.iterations as i64,
                "salt": B64.encode(&c.salt),
                "storedKey": B64.encode(&c.stored_key),
                "serverKey": B64.encode(&c.server_key),
            },
        );
    }
    d
}

/// Reads the `credentials` of a stored user. A broken credential (a wrong
/// key size, an iteration count out of range, bad base64) is dropped rather
/// than trusted; the user stays, without it.
pub fn credentials_from_doc(user: &Document) -> Vec<(Mechanism, Credential)> {
    let Ok(all) = user.get_document("credentials") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (mech_name, c) in all {
        let (Some(mech), Some(c)) = (Mechanism::from_name(mech_name), c.as_document()) else {
            continue;
        };
        let key = |k: &str| c.get_str(k).ok().and_then(|s| B64.decode(s).ok());
        let cred = || {
            let iterations = match c.get("iterationCount")? {
                Bson::Int32(i) => i64::from(*i),
                Bson::Int64(i) => *i,
                Bson::Double(f) if f.fract() == 0.0 && f.abs() < 1e15 => *f as i64,
                _ => return None,
            };
            Some(Credential {
                iterations: u32::try_from(iterations).ok()?,
                salt: key("salt")?,
                stored_key: key("storedKey")?,
                server_key: key("serverKey")?,
            })
        };
        if let Some(cred) = cred().filter(|c| c.validate(mech).is_ok()) {
            out.push((mech, cred));
        }
    }
    out
}

/// A whole stored user document.
pub fn user_doc(
    id: &UserId,
    roles: Vec<Document>,
    credentials: &[(Mechanism, Credential)],
    custom_data: Option<&Document>,
) -> Document {
    let mut d = doc! {
        "user": id.name.as_str(),
        "db": id.db.as_str(),
        "roles": roles.into_iter().map(Bson::Document).collect::<Vec<_>>(),
        "credentials": credentials_doc(credentials),
    };
    if let Some(c) = custom_data {
        d.insert("customData", c.clone());
    }
    d
}

/// The stored roles, as written (`grant_doc`'s form).
pub fn roles_of(user: &Document) -> Vec<Document> {
    user.get_array("roles")
        .map(|a| a.iter().filter_map(|r| r.as_document().cloned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> UserId {
        UserId {
            db: "admin".into(),
            name: "ann".into(),
        }
    }

    #[test]
    fn a_user_round_trips_without_its_password() {
        let creds: Vec<_> = Mechanism::ALL
            .map(|m| (m, Credential::new(m, "ann", "s3cret-pw").unwrap()))
            .to_vec();
        let d = user_doc(
            &ann(),
            vec![grant_doc("readWrite", Some("app"), Some("preview-*"))],
            &creds,
            Some(&doc! {"managedBy": "argon-operator"}),
        );
        assert!(!format!("{d}").contains("s3cret-pw"));
        assert_eq!(credentials_from_doc(&d), creds);
        assert_eq!(
            roles_of(&d),
            vec![doc! {"role": "readWrite", "db": "app", "branch": "preview-*"}]
        );
        for (m, c) in &creds {
            assert!(c.matches_password(*m, "ann", "s3cret-pw"));
            assert!(!c.matches_password(*m, "ann", "s3cret-pW"));
            // SCRAM-SHA-1 hashes the user name in; SHA-256 does not.
            assert_eq!(
                c.matches_password(*m, "bob", "s3cret-pw"),
                *m == Mechanism::ScramSha256
            );
        }
    }

    #[test]
    fn grants_of_roles_spanning_databases_drop_their_db() {
        assert_eq!(
            grant_doc("root", Some("app"), None),
            doc! {"role": "root", "db": "admin"}
        );
        assert_eq!(
            grant_doc("branchAdmin", None, None),
            doc! {"role": "branchAdmin", "db": "admin", "allDatabases": true, "branch": "*"}
        );
        assert_eq!(
            grant_doc("read", None, Some("main")),
            doc! {"role": "read", "db": "admin", "allDatabases": true, "branch": "main"}
        );
    }

    #[test]
    fn hostile_credentials_are_dropped() {
        let creds = vec![(
            Mechanism::ScramSha256,
            Credential::new(Mechanism::ScramSha256, "ann", "pw").unwrap(),
        )];
        for (key, value) in [
            ("iterationCount", Bson::Int64(1 << 40)),
            ("iterationCount", Bson::Int64(-1)),
            ("iterationCount", Bson::Int64(1)),
            ("iterationCount", Bson::String("15000".into())),
            ("storedKey", Bson::String("AAAA".into())),
            ("salt", Bson::String("!!".into())),
        ] {
            let mut d = user_doc(&ann(), Vec::new(), &creds, None);
            d.get_document_mut("credentials")
                .unwrap()
                .get_document_mut("SCRAM-SHA-256")
                .unwrap()
                .insert(key, value.clone());
            assert!(credentials_from_doc(&d).is_empty(), "{key}: {value}");
        }
        assert!(credentials_from_doc(&doc! {"credentials": 1}).is_empty());
    }
}
