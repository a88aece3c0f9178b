//! Branch addressing over the wire: which branch, and which point of it, a
//! database name refers to.
//!
//! - `db` is `db` on the server's default branch, at head;
//! - `db~feature` is `db` on branch `feature`, at head;
//! - `db~feature@42` is `db` on `feature` as of its seq 42, read-only.
//!
//! Commit times map to MongoDB cluster times (BSON Timestamps) as
//! `Timestamp { time: ms / 1000, increment: ms % 1000 }`, and back as
//! `time * 1000 + min(increment, 999)`. The mapping is monotonic both ways,
//! so `operationTime` values can be handed back as `atClusterTime`, and a
//! Timestamp made from a wall-clock second reads the state as of the start
//! of that second.

use argon_wal::{CommitTime, Seq};
use bson::{Bson, Timestamp};

use crate::error::{CommandError, ErrorCode, Result};

/// A database addressed by a client, resolved to a branch and a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The database inside the branch.
    pub db: String,
    pub branch: String,
    /// `Some` for the read-only past-point form `db~branch@seq`.
    pub at: Option<Seq>,
    /// The database name exactly as the client sent it.
    pub raw: String,
    /// The server runs `--read-only` (a read-only branch endpoint): every
    /// branch is read-only through it.
    pub server_read_only: bool,
}

impl Target {
    pub fn parse(raw: &str, default_branch: &str) -> Result<Target> {
        let (db, rest) = match raw.split_once('~') {
            Some((db, rest)) => (db, Some(rest)),
            None => (raw, None),
        };
        validate_db_name(db, raw)?;
        let (branch, at) = match rest {
            None => (default_branch.to_owned(), None),
            Some(rest) => {
                let (branch, at) = match rest.split_once('@') {
                    Some((b, seq)) => {
                        let seq: u64 = seq.parse().map_err(|_| {
                            CommandError::new(
                                ErrorCode::InvalidNamespace,
                                format!("database name {raw:?}: the point after '@' must be a commit seq (a whole number), got {seq:?}"),
                            )
                        })?;
                        (b, Some(Seq(seq)))
                    }
                    None => (rest, None),
                };
                if branch.is_empty() {
                    return Err(CommandError::new(
                        ErrorCode::InvalidNamespace,
                        format!("database name {raw:?} names no branch after '~'"),
                    ));
                }
                (branch.to_owned(), at)
            }
        };
        Ok(Target {
            db: db.to_owned(),
            branch,
            at,
            raw: raw.to_owned(),
            server_read_only: false,
        })
    }

    /// Refuses a write to a read-only past point, or to anything on a
    /// read-only server.
    pub fn writable(&self) -> Result<()> {
        if self.server_read_only {
            return Err(read_only_server(&format!(
                "write to database {:?}",
                self.raw
            )));
        }
        match self.at {
            None => Ok(()),
            Some(seq) => Err(CommandError::new(
                ErrorCode::IllegalOperation,
                format!(
                    "database {:?} is branch {:?} as of seq {seq}, which is read-only; write to {:?} instead",
                    self.raw,
                    self.branch,
                    format!("{}~{}", self.db, self.branch)
                ),
            )),
        }
    }
}

/// The refusal a `--read-only` server gives to `what` (mongod answers a
/// write in read-only mode with IllegalOperation too).
pub fn read_only_server(what: &str) -> CommandError {
    CommandError::new(
        ErrorCode::IllegalOperation,
        format!(
            "cannot {what}: this server is read-only (started with --read-only / ARGON_READ_ONLY=true)"
        ),
    )
}

fn validate_db_name(db: &str, raw: &str) -> Result<()> {
    if db.is_empty() {
        return Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            format!("database name {raw:?} is empty"),
        ));
    }
    if db.len() > 63 {
        return Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            format!("database name {raw:?} is longer than 63 characters"),
        ));
    }
    if let Some(c) = db
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0'))
    {
        return Err(CommandError::new(
            ErrorCode::InvalidNamespace,
            format!("database name {raw:?} contains an invalid character {c:?}"),
        ));
    }
    Ok(())
}

/// A commit time as a cluster time.
pub fn cluster_time(t: CommitTime) -> Timestamp {
    let ms = t.0.max(0);
    Timestamp {
        time: (ms / 1000) as u32,
        increment: (ms % 1000) as u32,
    }
}

/// A cluster time (or a date, or milliseconds) as a commit time.
pub fn commit_time(v: &Bson) -> Result<CommitTime> {
    match v {
        Bson::Timestamp(ts) => Ok(CommitTime(
            ts.time as i64 * 1000 + ts.increment.min(999) as i64,
        )),
        Bson::DateTime(d) => Ok(CommitTime(d.timestamp_millis())),
        Bson::Int64(ms) => Ok(CommitTime(*ms)),
        Bson::Int32(ms) => Ok(CommitTime(*ms as i64)),
        other => Err(CommandError::type_mismatch(format!(
            "a point in time must be a Timestamp, a Date or milliseconds since the epoch, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addressing_forms() {
        let t = Target::parse("app", "main").unwrap();
        assert_eq!(
            (t.db.as_str(), t.branch.as_str(), t.at),
            ("app", "main", None)
        );
        let t = Target::parse("app~dev", "main").unwrap();
        assert_eq!(
            (t.db.as_str(), t.branch.as_str(), t.at),
            ("app", "dev", None)
        );
        let t = Target::parse("app~dev@7", "main").unwrap();
        assert_eq!(t.at, Some(Seq(7)));
        assert!(t.writable().is_err());
        for bad in ["", "a.b", "app~", "app~dev@x", "a$b"] {
            assert!(Target::parse(bad, "main").is_err(), "{bad}");
        }
    }

    #[test]
    fn time_mapping_round_trips() {
        for ms in [0i64, 999, 1000, 1_700_000_000_123] {
            let ts = cluster_time(CommitTime(ms));
            assert_eq!(commit_time(&Bson::Timestamp(ts)).unwrap(), CommitTime(ms));
        }
        assert!(cluster_time(CommitTime(1999)) > cluster_time(CommitTime(1001)));
    }
}
