//! Positions, names and ids: newtypes so that a sequence number, a time and
//! a branch id can never be swapped for one another across the API.

use crate::error::{Result, WalError};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A per-branch commit number. A branch's own commits are numbered 1, 2, 3…
/// without holes; `Seq(0)` is "before the branch's first own commit" (for a
/// fork, the parent's state at the fork point).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    pub const ZERO: Seq = Seq(0);
    pub const MAX: Seq = Seq(i64::MAX as u64);

    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch. Strictly increasing per branch: a
/// commit's time is the later of the writer's clock and the previous commit's
/// time + 1 ms (see `Wal`'s `commit_time`), so "the state at time T" is well
/// defined even when pods' clocks differ, and a commit time names one commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommitTime(pub i64);

impl CommitTime {
    pub fn now() -> CommitTime {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        CommitTime(ms)
    }
}

impl fmt::Display for CommitTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Identity of one branch *incarnation* inside a project. A branch name maps
/// to one incarnation at a time; a reset starts a new incarnation so that
/// nothing already in the log is rewritten. Ids are derived from the catalog
/// sequence number of the record that created them (see `catalog.rs`), which
/// the store keeps unique, so two handles can never mint the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BranchId(pub u64);

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

fn validate_name(name: &str) -> std::result::Result<(), &'static str> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err("must not be empty");
    };
    if bytes.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("must start with a lowercase letter or a digit");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("may contain only a-z, 0-9, '-', '_' and '.'");
    }
    Ok(())
}

/// A validated branch name: `[a-z0-9][a-z0-9-_.]{0,62}`. Safe in file names,
/// Kubernetes object names (mostly) and MongoDB values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BranchName(String);

impl BranchName {
    pub fn parse(name: &str) -> Result<BranchName> {
        validate_name(name).map_err(|reason| WalError::InvalidBranchName {
            name: name.to_string(),
            reason,
        })?;
        Ok(BranchName(name.to_string()))
    }

    pub fn main() -> BranchName {
        BranchName("main".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated project name; same rules as a branch name (it names
/// directories in the embedded store).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(name: &str) -> Result<ProjectName> {
        validate_name(name).map_err(|reason| WalError::InvalidProjectName {
            name: name.to_string(),
            reason,
        })?;
        Ok(ProjectName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A MongoDB namespace: database and collection.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace {
    pub db: String,
    pub coll: String,
}

impl Namespace {
    pub fn new(db: impl Into<String>, coll: impl Into<String>) -> Namespace {
        Namespace {
            db: db.into(),
            coll: coll.into(),
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.db, self.coll)
    }
}

/// Where a commit landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitInfo {
    pub seq: Seq,
    pub time: CommitTime,
}

/// A point of a branch's history to read at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPoint {
    /// The latest commit, after catching up with the store.
    Head,
    Seq(Seq),
    /// The newest commit at or before this time.
    Time(CommitTime),
}

impl fmt::Display for ReadPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadPoint::Head => f.write_str("head"),
            ReadPoint::Seq(s) => write!(f, "seq {s}"),
            ReadPoint::Time(t) => write!(f, "time {t}"),
        }
    }
}

/// A point of the parent's history to fork a branch from.
pub type ForkPoint = ReadPoint;
