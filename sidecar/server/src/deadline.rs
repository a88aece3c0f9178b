//! `maxTimeMS`: the time a command (and the cursor it opens) may take,
//! and `killOp`: a command's deadline also fails once it was killed
//! (`Deadline::interruptible`, `current_op`).
//!
//! A command's deadline is its `maxTimeMS`, or the server's default
//! (`serve --default-max-time-ms`, mongod's `defaultMaxTimeMS`) when it
//! gives none; `0` means no limit, as in MongoDB. Scans check it every few
//! hundred documents and fail with `MaxTimeMSExpired` (50).

use std::time::{Duration, Instant};

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// MongoDB's largest `maxTimeMS` (a 32-bit signed int of milliseconds).
const MAX_TIME_MS: i64 = i32::MAX as i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>, OpId);

/// The operation a deadline belongs to (`current_op`); 0: none.
type OpId = i64;

impl Deadline {
    pub const NONE: Deadline = Deadline(None, 0);

    /// `maxTimeMS` of `cmd` (or `default` when absent), counted from now.
    pub fn of_command(cmd: &Document, default: Option<Duration>) -> Result<Deadline> {
        let ms = match cmd.get("maxTimeMS") {
            None | Some(Bson::Null) => return Ok(Deadline::after(default)),
            Some(v) => match crate::query::compare::as_i64(v) {
                Some(ms) => ms,
                None => {
                    return Err(CommandError::bad_value(
                        "maxTimeMS must be a non-negative whole number of milliseconds",
                    ));
                }
            },
        };
        if !(0..=MAX_TIME_MS).contains(&ms) {
            return Err(CommandError::bad_value(format!(
                "{ms} value for maxTimeMS is out of range [0, {MAX_TIME_MS}]"
            )));
        }
        Ok(match ms {
            0 => Deadline::NONE,
            ms => Deadline::after(Some(Duration::from_millis(ms as u64))),
        })
    }

    pub fn after(d: Option<Duration>) -> Deadline {
        Deadline(d.and_then(|d| Instant::now().checked_add(d)), 0)
    }

    /// This deadline, also failing once operation `opid` is killed.
    pub fn interruptible(self, opid: i64) -> Deadline {
        Deadline(self.0, opid)
    }

    /// Time left (`None`: no limit).
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|t| t.saturating_duration_since(Instant::now()))
    }

    pub fn check(&self) -> Result<()> {
        if crate::current_op::is_killed(self.1) {
            return Err(CommandError::new(
                ErrorCode::Interrupted,
                "operation was interrupted (killOp)",
            ));
        }
        match self.0 {
            Some(t) if Instant::now() >= t => Err(CommandError::new(
                ErrorCode::MaxTimeMSExpired,
                "operation exceeded time limit",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn parses_and_expires() {
        assert_eq!(
            Deadline::of_command(&doc! {}, None).unwrap(),
            Deadline::NONE
        );
        assert_eq!(
            Deadline::of_command(&doc! {"maxTimeMS": 0}, Some(Duration::from_secs(1))).unwrap(),
            Deadline::NONE
        );
        assert!(Deadline::of_command(&doc! {"maxTimeMS": -1}, None).is_err());
        assert!(Deadline::of_command(&doc! {"maxTimeMS": "x"}, None).is_err());
        assert!(Deadline::of_command(&doc! {"maxTimeMS": i64::MAX}, None).is_err());
        let d = Deadline::of_command(&doc! {"maxTimeMS": 1}, None).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(d.check().unwrap_err().code, ErrorCode::MaxTimeMSExpired);
        let d = Deadline::of_command(&doc! {}, Some(Duration::from_secs(60))).unwrap();
        assert!(d.check().is_ok());
        assert!(d.remaining().is_some());
    }
}
