//! Running a plan: the candidate documents it reaches, resumable at a
//! position (a cursor's next batch continues where the last one stopped,
//! on the same state), with the counts explain reports. The filter is the
//! caller's to apply: every candidate must still be checked (see `plan`).

use std::collections::HashSet;

use argon_wal::{CollectionState, IdKey, IndexPosition, ScanDirection};
use bson::RawDocument;

use super::Plan;
use crate::deadline::Deadline;
use crate::error::Result;

/// Where a plan's run stands.
#[derive(Clone, Debug, Default)]
enum Position {
    #[default]
    Start,
    /// After this `_id` key (collection scan; before it, backward).
    Coll(Vec<u8>),
    /// Past this natural position of a capped collection.
    Natural(u64),
    /// After this index entry.
    Index(IndexPosition),
    /// Before the `_id` at this index of the plan's list.
    Ids(usize),
}

/// A plan being run, with what it has examined so far.
#[derive(Clone, Debug)]
pub struct Access {
    pub plan: Plan,
    position: Position,
    /// `_id`s already returned by a multikey index scan.
    seen: HashSet<IdKey>,
    pub keys_examined: u64,
    pub docs_examined: u64,
}

impl Access {
    pub fn new(plan: Plan) -> Access {
        Access {
            plan,
            position: Position::Start,
            seen: HashSet::new(),
            keys_examined: 0,
            docs_examined: 0,
        }
    }

    /// Calls `f` with each candidate after the position, in plan order,
    /// until `f` returns `false` (that document is not consumed: the next
    /// run gives it again) or the candidates end (`Ok(true)`). Checks
    /// `deadline` every 256 entries.
    pub fn run(
        &mut self,
        coll: &CollectionState,
        deadline: Deadline,
        mut f: impl FnMut(&RawDocument) -> Result<bool>,
    ) -> Result<bool> {
        let Access {
            plan,
            position,
            seen,
            keys_examined,
            docs_examined,
        } = self;
        let mut n = 0u32;
        let mut tick = || {
            n = n.wrapping_add(1);
            if n.is_multiple_of(256) {
                deadline.check()
            } else {
                Ok(())
            }
        };
        match plan {
            Plan::Collscan => {
                let after = match position {
                    Position::Coll(k) => Some(k.clone()),
                    _ => None,
                };
                for item in coll.iter_after(after.as_deref()) {
                    let (key, raw) = item?;
                    tick()?;
                    *docs_examined += 1;
                    if !f(&raw)? {
                        *docs_examined -= 1;
                        return Ok(false);
                    }
                    *position = Position::Coll(key.as_bytes().to_vec());
                }
            }
            Plan::IdHack { ids, .. } => {
                let from = match position {
                    Position::Ids(i) => *i,
                    _ => 0,
                };
                for (i, id) in ids.iter().enumerate().skip(from) {
                    tick()?;
                    *keys_examined += 1;
                    if let Some(raw) = coll.get(id)? {
                        *docs_examined += 1;
                        if !f(&raw)? {
                            *keys_examined -= 1;
                            *docs_examined -= 1;
                            return Ok(false);
                        }
                    }
                    *position = Position::Ids(i + 1);
                }
            }
            Plan::Natural(direction) if coll.is_capped() => {
                let past = match position {
                    Position::Natural(p) => Some(*p),
                    _ => None,
                };
                let docs: Box<dyn Iterator<Item = argon_wal::Result<(u64, argon_wal::Doc)>>> =
                    match direction {
                        ScanDirection::Forward => Box::new(coll.iter_natural_after(past)),
                        ScanDirection::Backward => Box::new(coll.iter_natural_before(past)),
                    };
                for item in docs {
                    let (at, raw) = item?;
                    tick()?;
                    *docs_examined += 1;
                    if !f(&raw)? {
                        *docs_examined -= 1;
                        return Ok(false);
                    }
                    *position = Position::Natural(at);
                }
            }
            Plan::Natural(direction) => {
                let past = match position {
                    Position::Coll(k) => Some(k.clone()),
                    _ => None,
                };
                let docs: Box<dyn Iterator<Item = argon_wal::Result<(IdKey, argon_wal::Doc)>>> =
                    match direction {
                        ScanDirection::Forward => Box::new(coll.iter_after(past.as_deref())),
                        ScanDirection::Backward => Box::new(coll.iter_before(past.as_deref())),
                    };
                for item in docs {
                    let (key, raw) = item?;
                    tick()?;
                    *docs_examined += 1;
                    if !f(&raw)? {
                        *docs_examined -= 1;
                        return Ok(false);
                    }
                    *position = Position::Coll(key.as_bytes().to_vec());
                }
            }
            Plan::KeyRange(range) => {
                let after = match position {
                    Position::Coll(k) => Some(k.clone()),
                    _ => None,
                };
                for item in coll.iter_after(after.as_deref()) {
                    let (key, raw) = item?;
                    tick()?;
                    *docs_examined += 1;
                    if range.holds(&raw.to_document())? && !f(&raw)? {
                        *docs_examined -= 1;
                        return Ok(false);
                    }
                    *position = Position::Coll(key.as_bytes().to_vec());
                }
            }
            Plan::Index(_) | Plan::Text(_) => {
                let Some(p) = plan.index_scan() else {
                    return Ok(true);
                };
                let resume = match position {
                    Position::Index(at) => Some(at.clone()),
                    _ => None,
                };
                // A min/max range whose intervals are not exact: each
                // candidate is checked against it.
                let check = p.min_max.as_ref().filter(|m| !m.exact);
                let dedup = p.multikey;
                for entry in
                    coll.index_scan(&p.name, &p.bounds.intervals, p.direction, resume.as_ref())
                {
                    let entry = entry?;
                    tick()?;
                    *keys_examined += 1;
                    if dedup && seen.contains(&entry.1) {
                        *position = Position::Index(entry);
                        continue;
                    }
                    let Some(raw) = coll.get_by_key(&entry.1)? else {
                        *position = Position::Index(entry);
                        continue;
                    };
                    *docs_examined += 1;
                    if let Some(m) = check
                        && !m.range.holds(&raw.to_document())?
                    {
                        *position = Position::Index(entry);
                        continue;
                    }
                    if !f(&raw)? {
                        *keys_examined -= 1;
                        *docs_examined -= 1;
                        return Ok(false);
                    }
                    if dedup {
                        seen.insert(entry.1.clone());
                    }
                    *position = Position::Index(entry);
                }
            }
        }
        Ok(true)
    }
}
