//! Roles and what they allow: a user holds [`Grant`]s, a command needs a
//! [`Privilege`], and [`Grant::allows`] is the one rule between them.
//!
//! A grant is MongoDB's `{role, db}` with Argon's branch scope added:
//! `{role: "readWrite", db: "app", branch: "preview-*"}`. Without `branch`
//! a grant covers every branch (MongoDB's built-in roles keep their
//! meaning); without `db` (Argon's branch roles) it covers every database of
//! the matching branches. `root` allows everything.

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// The roles this server knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads (find, aggregate, list collections and indexes, stats).
    Read,
    /// `read` plus writes, collection and index changes.
    ReadWrite,
    /// Database administration: indexes, collections, `dropDatabase`, stats.
    DbAdmin,
    /// Manages users of its database (of every database on `admin`).
    UserAdmin,
    /// Creates, resets and deletes branches matching its pattern.
    BranchAdmin,
    /// Server status and options (MongoDB's `clusterMonitor`).
    ClusterMonitor,
    /// Everything.
    Root,
}

impl Role {
    const ALL: [Role; 7] = [
        Role::Read,
        Role::ReadWrite,
        Role::DbAdmin,
        Role::UserAdmin,
        Role::BranchAdmin,
        Role::ClusterMonitor,
        Role::Root,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::ReadWrite => "readWrite",
            Role::DbAdmin => "dbAdmin",
            Role::UserAdmin => "userAdmin",
            Role::BranchAdmin => "branchAdmin",
            Role::ClusterMonitor => "clusterMonitor",
            Role::Root => "root",
        }
    }

    fn from_name(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A branch name pattern: `*` matches any run of characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchPattern(String);

impl BranchPattern {
    pub fn any() -> BranchPattern {
        BranchPattern("*".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, branch: &str) -> bool {
        glob(self.0.as_bytes(), branch.as_bytes())
    }
}

/// `*`-only glob matching, iterative (no recursion a pattern could deepen).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One role a user holds, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    /// `None`: every database (Argon's branch roles, `root`).
    pub db: Option<String>,
    pub branches: BranchPattern,
}

/// What a command needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// Nothing: the handshake and authentication itself.
    None,
    /// Any authenticated user (sessions, `whatsmyuri`).
    Authenticated,
    /// Read `db` of `branch` (`db: None`: every database of the branch).
    Read {
        branch: String,
        db: Option<String>,
    },
    Write {
        branch: String,
        db: String,
    },
    DbAdmin {
        branch: String,
        db: String,
    },
    /// Manage the users of `db`.
    UserAdmin {
        db: String,
    },
    /// Create, reset or delete `branch`.
    BranchAdmin {
        branch: String,
    },
    /// Server status, options, logs.
    Monitor,
    /// Only `root`: protecting branches, and any command without a rule.
    Root,
}

impl Privilege {
    /// How a refusal names what was asked.
    pub fn describe(&self) -> String {
        match self {
            Privilege::None | Privilege::Authenticated => "authentication".into(),
            Privilege::Read { branch, db } => match db {
                Some(db) => format!("read on database {db:?} of branch {branch:?}"),
                None => format!("read on every database of branch {branch:?}"),
            },
            Privilege::Write { branch, db } => {
                format!("readWrite on database {db:?} of branch {branch:?}")
            }
            Privilege::DbAdmin { branch, db } => {
                format!("dbAdmin on database {db:?} of branch {branch:?}")
            }
            Privilege::UserAdmin { db } => format!("userAdmin on database {db:?}"),
            Privilege::BranchAdmin { branch } => format!("branchAdmin on branch {branch:?}"),
            Privilege::Monitor => "clusterMonitor".into(),
            Privilege::Root => "root".into(),
        }
    }
}

impl Grant {
    /// Whether this grant gives `p` (the one rule; see the module doc).
    pub fn allows(&self, p: &Privilege) -> bool {
        if self.role == Role::Root {
            return true;
        }
        let on = |branch: &str, db: Option<&str>| {
            self.branches.matches(branch)
                && match (&self.db, db) {
                    (None, _) => true,
                    (Some(mine), Some(db)) => mine == db,
                    (Some(_), None) => false,
                }
        };
        match p {
            Privilege::None | Privilege::Authenticated => true,
            Privilege::Read { branch, db } => {
                matches!(self.role, Role::Read | Role::ReadWrite) && on(branch, db.as_deref())
            }
            Privilege::Write { branch, db } => self.role == Role::ReadWrite && on(branch, Some(db)),
            Privilege::DbAdmin { branch, db } => self.role == Role::DbAdmin && on(branch, Some(db)),
            // userAdmin on `admin` manages every database's users, as
            // mongod's userAdminAnyDatabase does.
            Privilege::UserAdmin { db } => {
                self.role == Role::UserAdmin
                    && match self.db.as_deref() {
                        None | Some("admin") => true,
                        Some(mine) => mine == db,
                    }
            }
            Privilege::BranchAdmin { branch } => {
                self.role == Role::BranchAdmin && self.branches.matches(branch)
            }
            Privilege::Monitor => self.role == Role::ClusterMonitor,
            Privilege::Root => false,
        }
    }

    /// Parses a role as `createUser` and `grantRolesToUser` take it: a name
    /// (on the command's database) or `{role, db?, branch?}`.
    pub fn parse(v: &Bson, command_db: &str) -> Result<Grant> {
        let (name, db, branch) = match v {
            Bson::String(name) => (name.as_str(), Some(command_db.to_owned()), None),
            Bson::Document(d) => {
                for key in d.keys() {
                    if !matches!(key.as_str(), "role" | "db" | "branch") {
                        return Err(CommandError::bad_value(format!(
                            "a role is {{role, db, branch}}; unknown field {key:?}"
                        )));
                    }
                }
                let name = d.get_str("role").map_err(|_| {
                    CommandError::bad_value("a role document needs a string field \"role\"")
                })?;
                let db = match d.get("db") {
                    None => None,
                    Some(Bson::String(db)) => Some(db.clone()),
                    Some(_) => return Err(CommandError::bad_value("a role's db must be a string")),
                };
                let branch = match d.get("branch") {
                    None => None,
                    Some(Bson::String(b)) if !b.is_empty() && b.len() <= 256 => {
                        Some(BranchPattern(b.clone()))
                    }
                    Some(_) => {
                        return Err(CommandError::bad_value(
                            "a role's branch must be a branch name or pattern such as \"preview-*\"",
                        ));
                    }
                };
                if db.is_none() && branch.is_none() {
                    return Err(CommandError::bad_value(
                        "a role document needs \"db\" (MongoDB's roles) or \"branch\" (Argon's branch roles)",
                    ));
                }
                (name, db, branch)
            }
            _ => {
                return Err(CommandError::bad_value(
                    "a role is a name or a document {role, db, branch}",
                ));
            }
        };
        let role = Role::from_name(name).ok_or_else(|| {
            CommandError::new(
                ErrorCode::RoleNotFound,
                format!(
                    "Could not find role: {name}; this server has {}",
                    Role::ALL.map(Role::name).join(", ")
                ),
            )
        })?;
        // Roles that are not about one database cover all of them; `root`
        // and `clusterMonitor` are on `admin` in MongoDB.
        let db = match role {
            Role::BranchAdmin | Role::Root | Role::ClusterMonitor => None,
            _ => db,
        };
        Ok(Grant {
            role,
            db,
            branches: branch.unwrap_or_else(BranchPattern::any),
        })
    }

    /// The grant as replies and the stored user show it.
    pub fn to_doc(&self) -> Document {
        let branch = (self.branches != BranchPattern::any()).then(|| self.branches.as_str());
        argon_auth::stored::grant_doc(self.role.name(), self.db.as_deref(), branch)
    }

    /// Reads a stored grant back (`to_doc`'s form).
    pub fn from_stored(d: &Document) -> Option<Grant> {
        let role = Role::from_name(d.get_str("role").ok()?)?;
        let all = d.get_bool("allDatabases").unwrap_or(false)
            || matches!(role, Role::Root | Role::ClusterMonitor | Role::BranchAdmin);
        let db = if all {
            None
        } else {
            Some(d.get_str("db").ok()?.to_owned())
        };
        Some(Grant {
            role,
            db,
            branches: d
                .get_str("branch")
                .map(|b| BranchPattern(b.to_owned()))
                .unwrap_or_else(|_| BranchPattern::any()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn grant(v: Bson) -> Grant {
        Grant::parse(&v, "app").unwrap()
    }

    #[test]
    fn patterns() {
        let p = BranchPattern("preview-*".into());
        assert!(p.matches("preview-1") && p.matches("preview-"));
        assert!(!p.matches("main") && !p.matches("xpreview-1"));
        assert!(BranchPattern::any().matches("anything"));
        assert!(BranchPattern("a*b*c".into()).matches("aXbYbc"));
        assert!(!BranchPattern("a*b*c".into()).matches("aXbYb"));
        assert!(BranchPattern("main".into()).matches("main"));
    }

    #[test]
    fn branch_scoped_read_write() {
        let g = grant(Bson::Document(
            doc! {"role": "readWrite", "branch": "preview-*"},
        ));
        let write = |branch: &str| Privilege::Write {
            branch: branch.into(),
            db: "app".into(),
        };
        assert!(g.allows(&write("preview-1")));
        assert!(!g.allows(&write("main")));
        assert!(!g.allows(&Privilege::Read {
            branch: "main".into(),
            db: Some("app".into())
        }));
        assert!(!g.allows(&Privilege::BranchAdmin {
            branch: "preview-1".into()
        }));
        assert!(!g.allows(&Privilege::Root));
        assert_eq!(Grant::from_stored(&g.to_doc()), Some(g));
    }

    #[test]
    fn mongodb_roles_keep_their_meaning() {
        let g = grant(Bson::String("read".into()));
        assert_eq!(g.db.as_deref(), Some("app"));
        assert!(g.allows(&Privilege::Read {
            branch: "any".into(),
            db: Some("app".into())
        }));
        assert!(!g.allows(&Privilege::Read {
            branch: "any".into(),
            db: Some("other".into())
        }));
        assert!(!g.allows(&Privilege::Read {
            branch: "any".into(),
            db: None
        }));
        let root = grant(Bson::Document(doc! {"role": "root", "db": "admin"}));
        assert!(root.allows(&Privilege::Root));
        assert_eq!(Grant::from_stored(&root.to_doc()), Some(root));
        let ua = grant(Bson::Document(doc! {"role": "userAdmin", "db": "admin"}));
        assert!(ua.allows(&Privilege::UserAdmin { db: "app".into() }));
        let ba = grant(Bson::Document(
            doc! {"role": "branchAdmin", "branch": "preview-*"},
        ));
        assert!(ba.allows(&Privilege::BranchAdmin {
            branch: "preview-2".into()
        }));
        assert!(!ba.allows(&Privilege::BranchAdmin {
            branch: "main".into()
        }));
        assert_eq!(Grant::from_stored(&ba.to_doc()), Some(ba));
    }

    #[test]
    fn bad_roles() {
        let e = Grant::parse(&Bson::String("god".into()), "app").unwrap_err();
        assert_eq!(e.code, ErrorCode::RoleNotFound);
        for bad in [
            Bson::Int32(1),
            Bson::Document(doc! {"role": "read"}),
            Bson::Document(doc! {"role": "read", "db": "a", "x": 1}),
            Bson::Document(doc! {"role": "read", "branch": ""}),
        ] {
            assert!(Grant::parse(&bad, "app").is_err(), "{bad}");
        }
    }
}
