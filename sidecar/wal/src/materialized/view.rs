//! A read view: the levels `[(incarnation, bound), …]` a read at
//! `(branch, seq)` looks through, built from the incarnation's base chain
//! (`catalog::Base`: root, fork, reset).
//!
//! Invariant: level 0 is the viewed incarnation; each next level is the
//! incarnation the previous one's history continues from, with the newest
//! seq of it that the view may show. A fork's level ends at the fork seq; a
//! reset's at `min(bound of the level above, to)` (an own commit of the new
//! incarnation is above `to` by construction, so a view at or below `to`
//! sees only the previous incarnation's history).

use crate::catalog::Base;
use crate::error::{Result, WalError};
use crate::types::{BranchId, Seq};
use std::sync::Arc;

/// Where an incarnation's history continues below its own commits (the
/// part of `catalog::Base` a read needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewBase {
    Root,
    Fork { parent: BranchId, seq: Seq },
    Reset { previous: BranchId, to: Seq },
}

impl From<&Base> for ViewBase {
    fn from(b: &Base) -> ViewBase {
        match b {
            Base::Root => ViewBase::Root,
            Base::Fork { parent, seq, .. } => ViewBase::Fork {
                parent: *parent,
                seq: *seq,
            },
            Base::Reset { previous, to, .. } => ViewBase::Reset {
                previous: *previous,
                to: *to,
            },
        }
    }
}

/// One level: an incarnation's own versions at or below `bound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub inc: BranchId,
    pub bound: Seq,
}

/// A chain longer than this is refused: no catalog makes one (it would
/// need this many nested forks and resets), so it means a cycle.
pub const MAX_LEVELS: usize = 4096;

/// What a read at one point sees: a project's levels. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub(crate) project: u32,
    pub(crate) levels: Arc<[Level]>,
}

impl View {
    /// The view of incarnation `inc` at `seq`, following `base_of` down to
    /// the root. An unknown incarnation or a cycle is `Malformed`.
    pub fn new(
        project: u32,
        inc: BranchId,
        seq: Seq,
        base_of: impl Fn(BranchId) -> Option<ViewBase>,
    ) -> Result<View> {
        let mut levels = vec![Level { inc, bound: seq }];
        let mut cur = Level { inc, bound: seq };
        loop {
            let base = base_of(cur.inc).ok_or_else(|| {
                WalError::malformed(
                    "view",
                    format!("no base known for incarnation {}", cur.inc.0),
                )
            })?;
            cur = match base {
                ViewBase::Root => break,
                ViewBase::Fork { parent, seq } => Level {
                    inc: parent,
                    bound: seq,
                },
                ViewBase::Reset { previous, to } => Level {
                    inc: previous,
                    bound: cur.bound.min(to),
                },
            };
            if levels.len() >= MAX_LEVELS {
                return Err(WalError::malformed(
                    "view",
                    format!("the base chain of incarnation {} does not end", inc.0),
                ));
            }
            levels.push(cur);
        }
        Ok(View {
            project,
            levels: levels.into(),
        })
    }

    /// The project number this view reads.
    pub fn project(&self) -> u32 {
        self.project
    }

    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The viewed incarnation and seq (level 0).
    pub fn head(&self) -> Level {
        self.levels[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn levels_follow_forks_and_resets() {
        // 1 root; 5 forks 1@10; 9 resets 5 to 3; 13 forks 9@7.
        let bases: HashMap<u64, ViewBase> = [
            (1, ViewBase::Root),
            (
                5,
                ViewBase::Fork {
                    parent: BranchId(1),
                    seq: Seq(10),
                },
            ),
            (
                9,
                ViewBase::Reset {
                    previous: BranchId(5),
                    to: Seq(3),
                },
            ),
            (
                13,
                ViewBase::Fork {
                    parent: BranchId(9),
                    seq: Seq(7),
                },
            ),
        ]
        .into();
        let base_of = |b: BranchId| bases.get(&b.0).copied();
        let v = View::new(0, BranchId(13), Seq(2), base_of).unwrap();
        let got: Vec<(u64, u64)> = v.levels().iter().map(|l| (l.inc.0, l.bound.0)).collect();
        assert_eq!(got, vec![(13, 2), (9, 7), (5, 3), (1, 10)]);
        // A view of the reset incarnation at or below `to` reads the previous one there.
        let v = View::new(0, BranchId(9), Seq(2), base_of).unwrap();
        let got: Vec<(u64, u64)> = v.levels().iter().map(|l| (l.inc.0, l.bound.0)).collect();
        assert_eq!(got, vec![(9, 2), (5, 2), (1, 10)]);
        assert!(View::new(0, BranchId(77), Seq(0), base_of).is_err());
    }

    #[test]
    fn a_cycle_is_refused() {
        let base_of = |b: BranchId| {
            Some(ViewBase::Fork {
                parent: BranchId(b.0 ^ 1),
                seq: Seq(1),
            })
        };
        assert!(matches!(
            View::new(0, BranchId(2), Seq(1), base_of),
            Err(WalError::Malformed { .. })
        ));
    }
}
