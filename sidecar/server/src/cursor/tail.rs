//! Tailable cursors on capped collections: a cursor that stays open at the
//! end of the collection and, on `getMore`, returns the documents inserted
//! since, in natural order. With `awaitData`, a `getMore` that finds none
//! waits for new commits up to its `maxTimeMS` (the driver's
//! `maxAwaitTimeMS`, 1 s by default) before answering an empty batch.
//!
//! The cursor keeps the natural position of the last document it returned
//! (`CollectionState::iter_natural_after`); when that document is gone
//! (the collection wrapped past it, or it was deleted) the cursor dies with
//! MongoDB's `CappedPositionLost` (136).

use std::time::Instant;

use argon_wal::{BranchState, Namespace};
use bson::Bson;

use crate::error::{CommandError, ErrorCode, Result};
use crate::query::collation::Collation;
use crate::query::{Filter, Projection};
use crate::target::Target;

pub struct Tail {
    /// The namespace the client used (`db.coll`), echoed in replies.
    pub shown: String,
    pub target: Target,
    pub ns: Namespace,
    pub filter: Filter,
    pub projection: Option<Projection>,
    /// Natural position of the last document returned.
    pub last: Option<u64>,
    pub await_data: bool,
    pub collation: Collation,
    pub last_used: Instant,
}

impl Tail {
    /// Up to `n` documents after the last one returned, from `state`.
    pub fn next_batch(&mut self, state: &BranchState, n: usize) -> Result<Vec<Bson>> {
        let _collation = self.collation.enter();
        let Some(c) = state.collection(&self.ns)? else {
            return Err(CommandError::new(
                ErrorCode::CappedPositionLost,
                format!("collection dropped between getMore calls: {}", self.shown),
            ));
        };
        if let Some(last) = self.last
            && !c.holds_natural_position(last)
        {
            return Err(CommandError::new(
                ErrorCode::CappedPositionLost,
                "CollectionScan died due to position in capped collection being deleted.",
            ));
        }
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in c.iter_natural_after(self.last) {
            if out.len() >= n || bytes >= super::MAX_BATCH_BYTES {
                break;
            }
            let (at, raw) = item?;
            let doc = raw.to_document();
            let matched = self.filter.try_matches(&doc)?;
            // Skipped documents move the position too: the next batch
            // starts after them.
            self.last = Some(at);
            if !matched {
                continue;
            }
            bytes += raw.as_bytes().len();
            out.push(Bson::Document(match &self.projection {
                Some(p) => p.try_apply(&doc)?,
                None => doc,
            }));
        }
        Ok(out)
    }
}
