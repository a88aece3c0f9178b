//! `ArgonProject.spec.users` in the project's log: each user's password is
//! read from its Secret, turned into SCRAM salted keys (`argon_auth`) and
//! written as the same record a sidecar's `createUser` writes, so every
//! sidecar of the project accepts it: with `Wal::put_user` when the
//! operator holds the store, through the owner's `argonPutUser` when an
//! owner pod does (`project_store`); only the derived keys travel.
//!
//! What must stay true:
//! - the password is never stored, logged, or put in status or events: a
//!   stored user is compared with the Secret by deriving the keys again with
//!   the stored salt and iteration count (`Credential::matches_password`);
//! - the operator drops only users it wrote (`customData.managedBy`), and
//!   never overwrites a user someone made with `createUser`;
//! - a missing Secret or key leaves the stored user as it is (nobody is
//!   locked out by a typo) and is reported by name, never by value.

use crate::crd::{ArgonProject, RoleSpec, SecretKeyRef, UserSpec};
use crate::error::{Error, Result};
use crate::project_store::ProjectStore;
use crate::stores::Stores;
use argon_auth::scram::{Credential, Mechanism};
use argon_auth::stored::{self, UserId};
use argon_wal::UserPrecondition;
use bson::{Document, doc};
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};

/// `customData.managedBy` of the users the operator writes.
pub const MANAGED_BY: &str = "argon-operator";

/// What one pass changed and what it could not do.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Users of the spec now in the store as the spec says.
    pub in_sync: usize,
    /// Users written (created, or their password or roles changed).
    pub written: Vec<String>,
    /// Users the operator wrote before and dropped (gone from the spec).
    pub dropped: Vec<String>,
    /// Why a user of the spec is not in sync: names and reasons, no values.
    pub problems: Vec<Problem>,
}

#[derive(Debug)]
pub struct Problem {
    /// A condition reason: `SecretNotReady`, `UserConflict` or `InvalidPassword`.
    pub reason: &'static str,
    pub message: String,
}

/// The stored grants a user of the spec gets (`argon_auth::stored`'s form).
pub fn grants(user: &UserSpec) -> Vec<Document> {
    user.roles
        .iter()
        .map(|r: &RoleSpec| {
            // A bare role is on the user's own database, as in createUser.
            let db = match (&r.db, &r.branch) {
                (None, None) => Some(user.db.as_str()),
                (db, _) => db.as_deref(),
            };
            stored::grant_doc(r.role.as_str(), db, r.branch.as_deref())
        })
        .collect()
}

fn is_managed(user: &Document) -> bool {
    user.get_document("customData")
        .ok()
        .and_then(|c| c.get_str("managedBy").ok())
        == Some(MANAGED_BY)
}

/// Whether the stored user has a credential of every mechanism and each
/// is derived from `password` (PBKDF2, so on a blocking thread).
async fn password_matches(user: &Document, name: &str, password: &str) -> bool {
    let credentials = stored::credentials_from_doc(user);
    let (name, password) = (name.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        Mechanism::ALL.iter().all(|m| {
            credentials
                .iter()
                .any(|(cm, c)| cm == m && c.matches_password(*m, &name, &password))
        })
    })
    .await
    .unwrap_or(false)
}

async fn derive(name: &str, password: &str) -> Option<Vec<(Mechanism, Credential)>> {
    let (name, password) = (name.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || {
        Mechanism::ALL
            .iter()
            .map(|m| Credential::new(*m, &name, &password).map(|c| (*m, c)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()
    })
    .await
    .ok()
    .flatten()
}

/// Brings the project's users in line with `spec.users`.
pub async fn sync(
    project: &ArgonProject,
    stores: &Stores,
    store: &dyn ProjectStore,
) -> Result<Outcome> {
    let namespace = project.namespace().unwrap_or_default();
    let existing: BTreeMap<(String, String), Document> = store.users().await?.into_iter().collect();
    let mut out = Outcome::default();
    let mut wanted = BTreeSet::new();
    for u in &project.spec.users {
        let id = UserId {
            db: u.db.clone(),
            name: u.name.clone(),
        };
        wanted.insert((id.db.clone(), id.name.clone()));
        let secret = SecretKeyRef {
            name: u.password_secret_ref.name.clone(),
            key: u.password_secret_ref.key.clone(),
        };
        let password = match stores.secret_value(&namespace, &secret).await {
            Ok(p) => p,
            Err(e @ Error::Secret { .. }) => {
                out.problems.push(Problem {
                    reason: "SecretNotReady",
                    message: format!("user {id}: passwordSecretRef: {e}"),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        if password.is_empty() {
            out.problems.push(Problem {
                reason: "InvalidPassword",
                message: format!(
                    "user {id}: key {:?} of Secret {:?} is empty",
                    secret.key, secret.name
                ),
            });
            continue;
        }
        let roles = grants(u);
        let precondition = match existing.get(&(id.db.clone(), id.name.clone())) {
            None => UserPrecondition::Absent,
            Some(existing) if !is_managed(existing) => {
                out.problems.push(Problem {
                    reason: "UserConflict",
                    message: format!(
                        "user {id} exists and was not written by the operator (createUser?): drop it or choose another name"
                    ),
                });
                continue;
            }
            Some(existing) => {
                if stored::roles_of(existing) == roles
                    && password_matches(existing, &id.name, &password).await
                {
                    out.in_sync += 1;
                    continue;
                }
                UserPrecondition::Present
            }
        };
        let Some(credentials) = derive(&id.name, &password).await else {
            out.problems.push(Problem {
                reason: "InvalidPassword",
                message: format!(
                    "user {id}: the password in key {:?} of Secret {:?} cannot be used for SCRAM (SASLprep refuses it)",
                    secret.key, secret.name
                ),
            });
            continue;
        };
        let marker = doc! { "managedBy": MANAGED_BY };
        let user = stored::user_doc(&id, roles, &credentials, Some(&marker));
        if store.put_user(&id.db, &id.name, user, precondition).await? {
            out.in_sync += 1;
            out.written.push(id.to_string());
        } else {
            // Someone else wrote or dropped it between our read and the
            // append: the next pass sees their change.
            out.problems.push(Problem {
                reason: "UserConflict",
                message: format!("user {id} changed while the operator wrote it; retrying"),
            });
        }
    }
    for ((db, name), d) in &existing {
        if is_managed(d) && !wanted.contains(&(db.clone(), name.clone())) {
            store.drop_user(db, name).await?;
            out.dropped.push(format!("{name}@{db}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{PasswordSecretRef, RoleName};

    fn user(roles: Vec<RoleSpec>) -> UserSpec {
        UserSpec {
            name: "ann".into(),
            db: "app".into(),
            password_secret_ref: PasswordSecretRef {
                name: "s".into(),
                key: "password".into(),
            },
            roles,
        }
    }

    fn role(role: RoleName, db: Option<&str>, branch: Option<&str>) -> RoleSpec {
        RoleSpec {
            role,
            db: db.map(String::from),
            branch: branch.map(String::from),
        }
    }

    #[test]
    fn grants_follow_create_users_rules() {
        let u = user(vec![
            role(RoleName::ReadWrite, None, None),
            role(RoleName::Read, Some("other"), None),
            role(RoleName::ReadWrite, None, Some("preview-*")),
            role(RoleName::BranchAdmin, Some("ignored"), Some("preview-*")),
        ]);
        assert_eq!(
            grants(&u),
            vec![
                doc! {"role": "readWrite", "db": "app"},
                doc! {"role": "read", "db": "other"},
                doc! {"role": "readWrite", "db": "admin", "allDatabases": true, "branch": "preview-*"},
                doc! {"role": "branchAdmin", "db": "admin", "allDatabases": true, "branch": "preview-*"},
            ]
        );
    }

    #[test]
    fn only_marked_users_are_managed() {
        assert!(is_managed(&doc! {"customData": {"managedBy": MANAGED_BY}}));
        assert!(!is_managed(&doc! {"customData": {"managedBy": "someone"}}));
        assert!(!is_managed(&doc! {"user": "x"}));
    }
}
