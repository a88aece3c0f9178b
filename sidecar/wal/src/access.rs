//! Project-level access records: who may log in (users) and which branches
//! refuse a reset or delete (protection), kept in the catalog log.
//!
//! Why the catalog: it is the project-wide, totally ordered log every handle
//! (every sidecar on a shared store) already folds, so users and protection
//! are shared by all of them, survive restarts, and are not branch data:
//! resetting a branch or reading a past point never changes who may log in.
//!
//! The WAL does not interpret a user: it keeps the document the wire server
//! hands it (its SCRAM salted keys and role grants, never a password) under
//! `(db, name)`. Invariants:
//! - a user event is validated against the catalog it is appended after
//!   (through `Inner::append_catalog`'s `make`), so "create" never
//!   overwrites and "first user" is granted once across all handles;
//! - protection is checked by `Wal::refuse_protected` before a reset or a
//!   delete seals a branch.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Document, doc};

use crate::engine::Wal;
use crate::error::{Result, WalError};
use crate::record::CatalogEvent;
use crate::types::BranchName;

/// A catalog event about access (`CatalogEvent::Access`).
#[derive(Clone, Debug, PartialEq)]
pub enum AccessEvent {
    /// Creates or replaces the user `name` of database `db`.
    PutUser {
        db: String,
        name: String,
        user: Document,
    },
    DropUser {
        db: String,
        name: String,
    },
    /// Marks a branch name protected (or not).
    Protect {
        branch: BranchName,
        protected: bool,
    },
}

/// When a user may be written (checked against the current catalog).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserPrecondition {
    /// `createUser`: the user does not exist yet.
    Absent,
    /// `updateUser` and role grants: the user exists.
    Present,
    /// The localhost exception: the project has no user at all.
    NoUsers,
}

/// The users and protected branches of a project, as of the catalog.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectAccess {
    users: BTreeMap<(String, String), Document>,
    protected: BTreeSet<BranchName>,
}

impl ProjectAccess {
    pub fn user(&self, db: &str, name: &str) -> Option<&Document> {
        self.users.get(&(db.to_owned(), name.to_owned()))
    }

    /// Every user: `((db, name), document)`, ordered by db then name.
    pub fn users(&self) -> impl Iterator<Item = (&(String, String), &Document)> {
        self.users.iter()
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn is_protected(&self, branch: &BranchName) -> bool {
        self.protected.contains(branch)
    }

    pub fn protected_branches(&self) -> impl Iterator<Item = &BranchName> {
        self.protected.iter()
    }

    pub(crate) fn apply(&mut self, e: &AccessEvent) {
        match e {
            AccessEvent::PutUser { db, name, user } => {
                self.users.insert((db.clone(), name.clone()), user.clone());
            }
            AccessEvent::DropUser { db, name } => {
                self.users.remove(&(db.clone(), name.clone()));
            }
            AccessEvent::Protect { branch, protected } => {
                if *protected {
                    self.protected.insert(branch.clone());
                } else {
                    self.protected.remove(branch);
                }
            }
        }
    }

    fn allows(&self, db: &str, name: &str, pre: UserPrecondition) -> bool {
        let exists = self.user(db, name).is_some();
        match pre {
            UserPrecondition::Absent => !exists,
            UserPrecondition::Present => exists,
            UserPrecondition::NoUsers => !self.has_users(),
        }
    }
}

impl Wal {
    /// The project's users and protected branches, caught up with the store.
    pub async fn access(&self) -> Result<std::sync::Arc<ProjectAccess>> {
        Ok(self.catalog_now().await?.access)
    }

    /// Writes the user `(db, name)` if `pre` holds against the catalog at the
    /// moment of the append; `Ok(false)` (nothing written) when it does not.
    pub async fn put_user(
        &self,
        db: &str,
        name: &str,
        user: Document,
        pre: UserPrecondition,
    ) -> Result<bool> {
        let (db, name) = (db.to_owned(), name.to_owned());
        let written = self
            .append_catalog_event(move |cat| {
                Ok(cat.access.allows(&db, &name, pre).then(|| {
                    CatalogEvent::Access(AccessEvent::PutUser {
                        db: db.clone(),
                        name: name.clone(),
                        user: user.clone(),
                    })
                }))
            })
            .await?;
        Ok(written.is_some())
    }

    /// Removes the user `(db, name)`; `Ok(false)` when there was none.
    pub async fn drop_user(&self, db: &str, name: &str) -> Result<bool> {
        let (db, name) = (db.to_owned(), name.to_owned());
        let written = self
            .append_catalog_event(move |cat| {
                Ok(cat.access.user(&db, &name).is_some().then(|| {
                    CatalogEvent::Access(AccessEvent::DropUser {
                        db: db.clone(),
                        name: name.clone(),
                    })
                }))
            })
            .await?;
        Ok(written.is_some())
    }

    /// Protects (or unprotects) the branch name `branch`: while protected, a
    /// reset (other than a dry run) or a delete of it is refused, whoever asks.
    pub async fn set_protected(&self, branch: &str, protected: bool) -> Result<()> {
        let branch = BranchName::parse(branch)?;
        self.append_catalog_event(move |cat| {
            Ok((cat.access.is_protected(&branch) != protected).then(|| {
                CatalogEvent::Access(AccessEvent::Protect {
                    branch: branch.clone(),
                    protected,
                })
            }))
        })
        .await?;
        Ok(())
    }

    /// `Protected` when `name` is a protected branch (the hook reset and
    /// delete call before sealing).
    pub(crate) async fn refuse_protected(&self, name: &BranchName) -> Result<()> {
        if self.catalog_now().await?.access.is_protected(name) {
            return Err(WalError::Protected {
                name: name.to_string(),
                reason: "it is marked protected in the project (unprotect it first)",
            });
        }
        Ok(())
    }
}

// ---- encoding (inside a catalog record's `event`) -----------------------------

/// The `kind`s of access events; `record::event_from_doc` hands these here.
pub(crate) const KINDS: &[&str] = &["putUser", "dropUser", "protect"];

pub(crate) fn event_to_doc(e: &AccessEvent) -> Document {
    match e {
        AccessEvent::PutUser { db, name, user } => {
            doc! {"kind": "putUser", "db": db.as_str(), "user": name.as_str(), "doc": user.clone()}
        }
        AccessEvent::DropUser { db, name } => {
            doc! {"kind": "dropUser", "db": db.as_str(), "user": name.as_str()}
        }
        AccessEvent::Protect { branch, protected } => {
            doc! {"kind": "protect", "branch": branch.as_str(), "protected": *protected}
        }
    }
}

pub(crate) fn event_from_doc(d: &Document) -> Result<AccessEvent> {
    const W: &str = "access event";
    let str_of = |key: &str| {
        d.get_str(key)
            .map(str::to_owned)
            .map_err(|_| WalError::malformed(W, format!("missing string {key:?}")))
    };
    let kind = str_of("kind")?;
    Ok(match kind.as_str() {
        "putUser" => AccessEvent::PutUser {
            db: str_of("db")?,
            name: str_of("user")?,
            user: d
                .get_document("doc")
                .map_err(|_| WalError::malformed(W, "missing document \"doc\""))?
                .clone(),
        },
        "dropUser" => AccessEvent::DropUser {
            db: str_of("db")?,
            name: str_of("user")?,
        },
        "protect" => AccessEvent::Protect {
            branch: BranchName::parse(&str_of("branch")?)
                .map_err(|e| WalError::malformed(W, e.to_string()))?,
            protected: d
                .get_bool("protected")
                .map_err(|_| WalError::malformed(W, "missing bool \"protected\""))?,
        },
        other => return Err(WalError::malformed(W, format!("unknown kind {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_fold() {
        let events = [
            AccessEvent::PutUser {
                db: "admin".into(),
                name: "ann".into(),
                user: doc! {"roles": ["root"]},
            },
            AccessEvent::Protect {
                branch: BranchName::parse("main").unwrap(),
                protected: true,
            },
            AccessEvent::DropUser {
                db: "admin".into(),
                name: "ann".into(),
            },
        ];
        let mut access = ProjectAccess::default();
        for e in &events {
            assert_eq!(&event_from_doc(&event_to_doc(e)).unwrap(), e);
            assert!(KINDS.contains(&event_to_doc(e).get_str("kind").unwrap()));
            access.apply(e);
        }
        assert!(!access.has_users());
        assert!(access.is_protected(&BranchName::parse("main").unwrap()));
        assert!(event_from_doc(&doc! {"kind": "putUser", "db": "a"}).is_err());
    }

    #[test]
    fn preconditions() {
        let mut access = ProjectAccess::default();
        assert!(access.allows("admin", "a", UserPrecondition::NoUsers));
        assert!(!access.allows("admin", "a", UserPrecondition::Present));
        access.apply(&AccessEvent::PutUser {
            db: "admin".into(),
            name: "a".into(),
            user: Document::new(),
        });
        assert!(!access.allows("admin", "b", UserPrecondition::NoUsers));
        assert!(!access.allows("admin", "a", UserPrecondition::Absent));
        assert!(access.allows("admin", "a", UserPrecondition::Present));
    }
}
