//! Users as this server stores them in the project's catalog log
//! (`argon_wal::access`), and the in-memory directory every connection
//! checks against.
//!
//! A stored user is mongod's `system.users` layout: `{user, db, roles,
//! credentials: {"SCRAM-SHA-256": {iterationCount, salt, storedKey,
//! serverKey}, ...}, customData?}` with base64 keys; never a password.
//! Whoever writes a user document in this form (this server's
//! `createUser`, or the operator through `Wal::put_user`) makes a user
//! every sidecar of the project accepts.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use argon_auth::stored;
use argon_wal::{ProjectAccess, Wal};
use bson::{Bson, Document, doc};

use super::key_file;
use super::roles::Grant;
use super::scram::{Credential, Mechanism};
use crate::error::Result;
use crate::wal_error::from_wal;

/// Who a connection is authenticated as (kept in `argon_auth::stored`).
pub use argon_auth::stored::UserId;

/// A user as stored: roles and SCRAM credentials.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredUser {
    pub id: UserId,
    pub roles: Vec<Grant>,
    pub credentials: Vec<(Mechanism, Credential)>,
    pub custom_data: Option<Document>,
}

impl StoredUser {
    pub fn credential(&self, mech: Mechanism) -> Option<&Credential> {
        self.credentials
            .iter()
            .find(|(m, _)| *m == mech)
            .map(|(_, c)| c)
    }

    pub fn mechanisms(&self) -> Vec<Bson> {
        self.credentials
            .iter()
            .map(|(m, _)| Bson::String(m.name().to_owned()))
            .collect()
    }

    pub fn to_doc(&self) -> Document {
        stored::user_doc(
            &self.id,
            self.roles.iter().map(Grant::to_doc).collect(),
            &self.credentials,
            self.custom_data.as_ref(),
        )
    }

    /// Reads a stored user; `None` when it is not in this form (a broken
    /// credential is dropped rather than trusted, see `stored`).
    pub fn from_doc(db: &str, name: &str, d: &Document) -> Option<StoredUser> {
        let roles = d
            .get_array("roles")
            .ok()?
            .iter()
            .filter_map(|r| r.as_document().and_then(Grant::from_stored))
            .collect();
        d.get_document("credentials").ok()?;
        let credentials = stored::credentials_from_doc(d);
        Some(StoredUser {
            id: UserId {
                db: db.to_owned(),
                name: name.to_owned(),
            },
            roles,
            credentials,
            custom_data: d.get_document("customData").ok().cloned(),
        })
    }

    /// The user as `usersInfo` shows it (no credentials).
    pub fn info_doc(&self) -> Document {
        let mut d = doc! {
            "_id": format!("{}.{}", self.id.db, self.id.name),
            "user": self.id.name.as_str(),
            "db": self.id.db.as_str(),
            "roles": self.roles.iter().map(|g| Bson::Document(g.to_doc())).collect::<Vec<_>>(),
            "mechanisms": self.mechanisms(),
        };
        if let Some(c) = &self.custom_data {
            d.insert("customData", c.clone());
        }
        d
    }
}

/// The project's users as of the last refresh from the catalog log.
#[derive(Default)]
pub struct Directory {
    users: RwLock<Arc<HashMap<UserId, Arc<StoredUser>>>>,
    /// The catalog's access records last loaded: unchanged (the same
    /// `Arc`), nothing is parsed again.
    loaded: std::sync::Mutex<Option<Arc<ProjectAccess>>>,
    /// `__system@local` of `--key-file`: in this process only, never among
    /// `users` (so never listed, counted, dropped or shadowed by a record).
    system: std::sync::OnceLock<Arc<StoredUser>>,
}

impl Directory {
    fn snapshot(&self) -> Arc<HashMap<UserId, Arc<StoredUser>>> {
        Arc::clone(&self.users.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn get(&self, id: &UserId) -> Option<Arc<StoredUser>> {
        if key_file::is_system(id) {
            return self.system.get().cloned();
        }
        self.snapshot().get(id).cloned()
    }

    /// Sets `__system@local` (`--key-file`), once, before serving.
    pub fn set_system_user(&self, user: StoredUser) {
        let _ = self.system.set(Arc::new(user));
    }

    /// Whether a key file gave this server its internal user.
    pub fn has_system_user(&self) -> bool {
        self.system.get().is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    /// Every user, ordered by database then name.
    pub fn all(&self) -> Vec<Arc<StoredUser>> {
        let mut v: Vec<_> = self.snapshot().values().cloned().collect();
        v.sort_by(|a, b| (&a.id.db, &a.id.name).cmp(&(&b.id.db, &b.id.name)));
        v
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Reloads from the WAL's catalog (other sidecars' changes included).
    pub async fn refresh(&self, wal: &Wal) -> Result<()> {
        let access = wal.access().await.map_err(from_wal)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.as_ref().is_some_and(|l| Arc::ptr_eq(l, &access)) {
            return Ok(());
        }
        self.load(&access);
        *loaded = Some(access);
        Ok(())
    }

    pub fn load(&self, access: &ProjectAccess) {
        let mut map = HashMap::new();
        for ((db, name), d) in access.users() {
            match StoredUser::from_doc(db, name, d) {
                // Users on `local` are mongod's internal ones, never stored.
                Some(u) if u.id.db == key_file::SYSTEM_DB => {
                    tracing::warn!(user = %name, "ignoring a stored user on database local")
                }
                Some(u) => {
                    map.insert(u.id.clone(), Arc::new(u));
                }
                None => {
                    tracing::warn!(user = %name, db = %db, "ignoring a stored user that is not in the expected form")
                }
            }
        }
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_round_trips_without_a_password() {
        let user = StoredUser {
            id: UserId {
                db: "admin".into(),
                name: "ann".into(),
            },
            roles: vec![Grant::parse(&Bson::String("root".into()), "admin").unwrap()],
            credentials: Mechanism::ALL
                .map(|m| (m, Credential::new(m, "ann", "s3cret-pw").unwrap()))
                .to_vec(),
            custom_data: Some(doc! {"team": "a"}),
        };
        let d = user.to_doc();
        assert!(!format!("{d}").contains("s3cret-pw"));
        assert_eq!(StoredUser::from_doc("admin", "ann", &d), Some(user.clone()));
        assert!(!format!("{}", user.info_doc()).contains("storedKey"));
    }

    #[test]
    fn a_hostile_stored_credential_is_dropped() {
        let user = StoredUser {
            id: UserId {
                db: "admin".into(),
                name: "ann".into(),
            },
            roles: Vec::new(),
            credentials: vec![(
                Mechanism::ScramSha256,
                Credential::new(Mechanism::ScramSha256, "ann", "pw").unwrap(),
            )],
            custom_data: None,
        };
        for (key, value) in [
            ("iterationCount", Bson::Int64(1 << 40)),
            ("iterationCount", Bson::Int64(-1)),
            ("iterationCount", Bson::Int64(1)),
            ("storedKey", Bson::String("AAAA".into())),
            ("salt", Bson::String("!!".into())),
        ] {
            let mut d = user.to_doc();
            d.get_document_mut("credentials")
                .unwrap()
                .get_document_mut("SCRAM-SHA-256")
                .unwrap()
                .insert(key, value.clone());
            let read = StoredUser::from_doc("admin", "ann", &d).unwrap();
            assert!(read.credentials.is_empty(), "{key}: {value}");
        }
    }
}
