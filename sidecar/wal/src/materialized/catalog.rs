//! Collections in the materialized store: a namespace's versions in the `c`
//! space name its collection number, options and indexes.
//!
//! Invariants:
//! - Collection numbers are allocated once per store and never reused: a
//!   drop is one tombstone (the documents stay for reads at earlier seqs),
//!   a drop and re-create gives a new number, so no view sees documents of
//!   a dropped collection through a new one, in its own incarnation or a
//!   child's. A rename is one version under each name (the new name gets
//!   the old number): no document moves.
//! - Index numbers likewise: an index whose key pattern changes (or is
//!   dropped and created again) gets a new number and its entries are
//!   built again, so entries of an old pattern are never read. Only
//!   indexes `KeyPattern::parse` accepts have entries (`number: Some`),
//!   the same set `CollectionState` keeps key maps for.

use super::keys::{ABSENT, PRESENT};
use crate::error::{Result, WalError};
use bson::{Bson, Document, doc};

/// One index of a collection as a catalog version holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexEntry {
    pub spec: Document,
    /// Where its entries are (`i P inc coll number`); `None`: none kept.
    pub number: Option<u32>,
}

impl IndexEntry {
    pub fn name(&self) -> &str {
        self.spec.get_str("name").unwrap_or_default()
    }
}

/// A collection as one catalog version holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct CollectionEntry {
    pub number: u32,
    pub options: Document,
    /// `_id_` first, as `CollectionState::indexes`.
    pub indexes: Vec<IndexEntry>,
}

impl CollectionEntry {
    pub(crate) fn new(number: u32, options: Document) -> CollectionEntry {
        CollectionEntry {
            number,
            options,
            indexes: vec![IndexEntry {
                spec: doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                number: None,
            }],
        }
    }

    /// The value stored: `PRESENT ‖ BSON {n, o, x: [{s, i?}]}`.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let indexes: Vec<Bson> = self
            .indexes
            .iter()
            .map(|i| {
                let mut d = doc! {"s": i.spec.clone()};
                if let Some(n) = i.number {
                    d.insert("i", i64::from(n));
                }
                Bson::Document(d)
            })
            .collect();
        let d = doc! {"n": i64::from(self.number), "o": self.options.clone(), "x": indexes};
        let mut out = vec![PRESENT];
        d.to_writer(&mut out)
            .map_err(|e| WalError::malformed("materialized catalog", e.to_string()))?;
        Ok(out)
    }

    /// A stored value: `Some` for a collection, `None` for a drop.
    pub(crate) fn decode(value: &[u8]) -> Result<Option<CollectionEntry>> {
        let bad = |r: &str| WalError::malformed("materialized catalog", r.to_string());
        match value.first() {
            Some(&ABSENT) => return Ok(None),
            Some(&PRESENT) => {}
            _ => return Err(bad("unknown value tag")),
        }
        let d = Document::from_reader(&value[1..]).map_err(|e| bad(&e.to_string()))?;
        let number = u32::try_from(d.get_i64("n").map_err(|_| bad("no number"))?)
            .map_err(|_| bad("number out of range"))?;
        let options = d.get_document("o").map_err(|_| bad("no options"))?.clone();
        let mut indexes = Vec::new();
        for i in d.get_array("x").map_err(|_| bad("no indexes"))? {
            let Bson::Document(i) = i else {
                return Err(bad("index not a document"));
            };
            let spec = i
                .get_document("s")
                .map_err(|_| bad("index without spec"))?
                .clone();
            let number = match i.get("i") {
                None => None,
                Some(Bson::Int64(n)) => {
                    Some(u32::try_from(*n).map_err(|_| bad("index number out of range"))?)
                }
                Some(_) => return Err(bad("index number not an int64")),
            };
            indexes.push(IndexEntry { spec, number });
        }
        Ok(Some(CollectionEntry {
            number,
            options,
            indexes,
        }))
    }

    pub fn index(&self, name: &str) -> Option<&IndexEntry> {
        self.indexes.iter().find(|i| i.name() == name)
    }

    pub fn specs(&self) -> Vec<Document> {
        self.indexes.iter().map(|i| i.spec.clone()).collect()
    }
}

/// The counters new numbers come from (`m next`), written in the batch that
/// uses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub project: u32,
    pub collection: u32,
    pub index: u32,
}

impl Counters {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(12);
        for n in [self.project, self.collection, self.index] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    pub(crate) fn decode(v: &[u8]) -> Result<Counters> {
        let n = |i: usize| -> Result<u32> {
            let b = v
                .get(i * 4..i * 4 + 4)
                .ok_or_else(|| WalError::malformed("materialized counters", "too short"))?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        if v.len() != 12 {
            return Err(WalError::malformed(
                "materialized counters",
                format!("{} bytes", v.len()),
            ));
        }
        Ok(Counters {
            project: n(0)?,
            collection: n(1)?,
            index: n(2)?,
        })
    }

    /// Takes the next number of `which`; running out is refused, never wrapped.
    pub(crate) fn take(which: &mut u32) -> Result<u32> {
        let n = *which;
        *which = n.checked_add(1).ok_or_else(|| {
            WalError::InvalidOp("the materialized store ran out of numbers; rebuild it".into())
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_bad_values_are_refused() {
        let mut e = CollectionEntry::new(7, doc! {"capped": false});
        e.indexes.push(IndexEntry {
            spec: doc! {"name": "a_1", "key": {"a": 1}},
            number: Some(u32::MAX),
        });
        let v = e.encode().unwrap();
        assert_eq!(CollectionEntry::decode(&v).unwrap(), Some(e));
        assert_eq!(CollectionEntry::decode(&[ABSENT]).unwrap(), None);
        for bad in [&[][..], &[9], &[PRESENT], &[PRESENT, 5, 0, 0, 0, 0]] {
            assert!(CollectionEntry::decode(bad).is_err(), "{bad:?}");
        }
        let c = Counters {
            project: 1,
            collection: 2,
            index: u32::MAX,
        };
        assert_eq!(Counters::decode(&c.encode()).unwrap(), c);
        assert!(Counters::decode(&[0; 11]).is_err());
        let mut n = u32::MAX;
        assert!(Counters::take(&mut n).is_err());
    }
}
