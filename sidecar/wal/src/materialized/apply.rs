//! A commit applied: one KV batch holding every version it makes (`d`, `i`,
//! `s`, `c`, `x`), the counters it drew numbers from, and the applied marker.
//!
//! The fold is `state.rs`'s, op by op, over the view before the commit plus
//! the commit's own earlier ops (an overlay: a commit may write a document
//! twice, create a collection and fill it, or build an index over
//! documents it just wrote). Every version is keyed at the commit's seq, so
//! a later op of the same commit replacing an earlier one's key simply
//! replaces it in the overlay: the batch holds each key once.

use super::Kv;
use super::catalog::{CollectionEntry, Counters, IndexEntry};
use super::index;
use super::keys::{self, ABSENT, PRESENT};
use super::scan::{self, Merge};
use super::shape::{self, Counts};
use super::view::View;
use crate::error::{Result, WalError};
use crate::idkey::IdKey;
use crate::indexkey::KeyPattern;
use crate::record::{Commit, DocOp};
use crate::types::{BranchId, Namespace, Seq};
use bson::{Document, RawDocument, RawDocumentBuf};
use std::collections::BTreeMap;

struct Batch<'a> {
    kv: &'a Kv,
    /// The view before this commit (level 0: this incarnation at `seq - 1`).
    view: &'a View,
    project: u32,
    inc: BranchId,
    seq: Seq,
    counters: Counters,
    /// Full key → value, every key at `seq`.
    writes: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Collections this commit changed: `None` dropped.
    colls: BTreeMap<Namespace, Option<CollectionEntry>>,
    /// What this commit changed in each `(collection, index)`'s shape.
    shapes: BTreeMap<(u32, u32), Counts>,
}

/// Writes `commit`'s batch; the bytes of its keys and values, `None` when
/// the store held it already.
pub(super) fn apply(
    kv: &Kv,
    counters: &mut Counters,
    view: &View,
    commit: &Commit,
) -> Result<Option<u64>> {
    let head = view.head();
    let before = commit
        .seq
        .0
        .checked_sub(1)
        .ok_or_else(|| WalError::InvalidOp("a commit at seq 0".into()))?;
    if head.inc != commit.branch || head.bound != Seq(before) {
        return Err(WalError::InvalidOp(format!(
            "commit {}@{} applied on a view of {}@{}",
            commit.branch.0, commit.seq.0, head.inc.0, head.bound.0
        )));
    }
    let marker = keys::applied(view.project, commit.branch);
    if let Some(v) = kv.get(&marker)? {
        let seq = v
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| kv.malformed("applied marker".into()))?;
        if seq >= commit.seq.0 {
            return Ok(None);
        }
        if seq != before {
            return Err(WalError::InvalidOp(format!(
                "commit {}@{} after a gap: the store holds up to {seq}",
                commit.branch.0, commit.seq.0
            )));
        }
    }
    let mut b = Batch {
        kv,
        view,
        project: view.project,
        inc: commit.branch,
        seq: commit.seq,
        counters: *counters,
        writes: BTreeMap::new(),
        colls: BTreeMap::new(),
        shapes: BTreeMap::new(),
    };
    for op in &commit.ops {
        b.op(&op.op)?;
    }
    b.write_shapes()?;
    let mut mark = commit.seq.0.to_be_bytes().to_vec();
    mark.extend_from_slice(&commit.time.0.to_be_bytes());
    b.writes.insert(marker, mark);
    b.write_catalog()?;
    if b.counters != *counters {
        b.writes.insert(keys::next(), b.counters.encode());
    }
    if let Some((k, _)) = b.writes.iter().find(|(k, _)| k.len() > keys::MAX_KEY) {
        return Err(WalError::InvalidOp(format!(
            "commit {}@{} makes a key of {} bytes; the materialized store takes at most {}",
            commit.branch.0,
            commit.seq.0,
            k.len(),
            keys::MAX_KEY
        )));
    }
    // The own-key filter learns the documents before readers can see them
    // (`filter`'s invariant): from the `x` keys, this batch's record of
    // every `d` key it writes.
    let changes = keys::level(keys::CHANGES, view.project, commit.branch);
    let at = changes.len() + 8;
    kv.filters.note(
        kv,
        view.project,
        commit.branch,
        b.writes
            .range(changes.clone()..)
            .take_while(|(k, _)| k.starts_with(&changes))
            .filter_map(|(k, _)| {
                let coll = u32::from_be_bytes(k.get(at..at + 4)?.try_into().ok()?);
                Some((coll, k[at + 4..].to_vec()))
            }),
    )?;
    let mut batch = kv.db.batch();
    let mut bytes = 0u64;
    for (k, v) in std::mem::take(&mut b.writes) {
        bytes = bytes.saturating_add((k.len() + v.len()) as u64);
        batch.insert(&kv.ks, k, v);
    }
    // Not synced: the log is the durable copy (module doc).
    batch.commit().map_err(|e| kv.error("apply", e))?;
    *counters = b.counters;
    Ok(Some(bytes))
}

impl Batch<'_> {
    fn coll(&self, ns: &Namespace) -> Result<Option<CollectionEntry>> {
        match self.colls.get(ns) {
            Some(e) => Ok(e.clone()),
            None => super::read_entry(self.kv, self.view, ns),
        }
    }

    fn new_coll(&mut self, options: Document) -> Result<CollectionEntry> {
        Ok(CollectionEntry::new(
            Counters::take(&mut self.counters.collection)?,
            options,
        ))
    }

    fn doc_key(&self, coll: u32, id: &[u8]) -> Vec<u8> {
        keys::versioned(&keys::docs(self.project, self.inc, coll), id, self.seq)
    }

    /// The document `id` of collection `coll` before this op.
    fn doc(&self, coll: u32, id: &[u8]) -> Result<Option<RawDocumentBuf>> {
        if let Some(v) = self.writes.get(&self.doc_key(coll, id)) {
            return Ok(match v.first() {
                Some(&PRESENT) => Some(raw(self.kv, &v[1..])?),
                _ => None,
            });
        }
        let p = self.project;
        match scan::point(
            self.kv,
            self.view,
            |l| keys::docs(p, l.inc, coll),
            Some(coll),
            id,
        )? {
            Some(v) => Ok(Some(super::doc_from_value(self.kv, v)?.as_raw().to_owned())),
            None => Ok(None),
        }
    }

    fn op(&mut self, op: &DocOp) -> Result<()> {
        match op {
            DocOp::Put { ns, id, doc } => {
                let entry = match self.coll(ns)? {
                    Some(e) => e,
                    None => {
                        let e = self.new_coll(Document::new())?;
                        self.colls.insert(ns.clone(), Some(e.clone()));
                        e
                    }
                };
                self.write_doc(&entry, &IdKey::from_bson(id), Some(doc))
            }
            DocOp::Delete { ns, id } => match self.coll(ns)? {
                Some(entry) => self.write_doc(&entry, &IdKey::from_bson(id), None),
                None => Ok(()),
            },
            DocOp::CreateCollection { ns, options } => {
                if self.coll(ns)?.is_none() {
                    let e = self.new_coll(options.clone())?;
                    self.colls.insert(ns.clone(), Some(e));
                }
                Ok(())
            }
            DocOp::DropCollection { ns } => {
                if self.coll(ns)?.is_some() {
                    self.colls.insert(ns.clone(), None);
                }
                Ok(())
            }
            DocOp::DropDatabase { db } => {
                let mut doomed: Vec<Namespace> = super::list_entries(self.kv, self.view)?
                    .into_iter()
                    .map(|(ns, _)| ns)
                    .filter(|ns| &ns.db == db)
                    .collect();
                doomed.extend(self.colls.keys().filter(|ns| &ns.db == db).cloned());
                for ns in doomed {
                    if self.coll(&ns)?.is_some() {
                        self.colls.insert(ns, None);
                    }
                }
                Ok(())
            }
            DocOp::CreateIndex { ns, spec } => self.create_index(ns, spec),
            DocOp::DropIndex { ns, name } => {
                if name != "_id_"
                    && let Some(mut e) = self.coll(ns)?
                {
                    e.indexes.retain(|i| i.name() != name);
                    self.colls.insert(ns.clone(), Some(e));
                }
                Ok(())
            }
            DocOp::SetCollectionOptions { ns, options } => {
                if let Some(mut e) = self.coll(ns)? {
                    e.options = options.clone();
                    self.colls.insert(ns.clone(), Some(e));
                }
                Ok(())
            }
            DocOp::RenameCollection { from, to } => {
                if from != to
                    && let Some(e) = self.coll(from)?
                {
                    self.colls.insert(to.clone(), Some(e));
                    self.colls.insert(from.clone(), None);
                }
                Ok(())
            }
        }
    }

    /// A put (`Some`) or delete of `id`: its version, its index entries
    /// (from the document it replaces), and its change key.
    fn write_doc(
        &mut self,
        entry: &CollectionEntry,
        id: &IdKey,
        new: Option<&RawDocument>,
    ) -> Result<()> {
        let maintained: Vec<(u32, KeyPattern)> = entry
            .indexes
            .iter()
            .filter_map(|i| Some((i.number?, KeyPattern::parse(&i.spec)?)))
            .collect();
        let old = if maintained.is_empty() {
            None
        } else {
            self.doc(entry.number, id.as_bytes())?
        };
        // A delete of a missing document writes a tombstone all the same:
        // cheaper than reading to find out, and harmless.
        for (number, pattern) in &maintained {
            let (before, old_shape) = index::keys_and_shape(pattern, old.as_deref());
            let (after, new_shape) = index::keys_and_shape(pattern, new);
            let counts = self.shapes.entry((entry.number, *number)).or_default();
            counts.count(old_shape, before.len(), -1);
            counts.count(new_shape, after.len(), 1);
            for (k, tag) in index::entry_changes(&before, &after) {
                self.index_entry(entry.number, *number, &k, id.as_bytes(), tag);
            }
        }
        let value = match new {
            Some(d) => [&[PRESENT][..], d.as_bytes()].concat(),
            None => vec![ABSENT],
        };
        self.writes
            .insert(self.doc_key(entry.number, id.as_bytes()), value);
        self.writes.insert(
            keys::change(
                self.project,
                self.inc,
                self.seq,
                entry.number,
                id.as_bytes(),
            ),
            Vec::new(),
        );
        Ok(())
    }

    fn index_entry(
        &mut self,
        coll: u32,
        number: u32,
        key: &crate::indexkey::IndexKey,
        id: &[u8],
        tag: u8,
    ) {
        let p = keys::index(self.project, self.inc, coll, number);
        let item = index::item(key, id);
        let value = match tag {
            PRESENT => index::present_value(&item),
            _ => vec![tag],
        };
        self.writes
            .insert(keys::versioned(&p, &item, self.seq), value);
    }

    /// `state.rs`'s `CreateIndex`: creates the collection if absent,
    /// replaces a same-named spec (never `_id_`), and keeps the entries
    /// only when the key pattern is unchanged; otherwise new entries are
    /// built over the documents the view (and this commit) hold.
    fn create_index(&mut self, ns: &Namespace, spec: &Document) -> Result<()> {
        let mut e = match self.coll(ns)? {
            Some(e) => e,
            None => self.new_coll(Document::new())?,
        };
        let name = spec.get_str("name").unwrap_or_default().to_string();
        let pattern = KeyPattern::parse(spec);
        let existing = e.indexes.iter().position(|i| i.name() == name);
        let keep = match existing {
            Some(_) if name == "_id_" => {
                self.colls.insert(ns.clone(), Some(e));
                return Ok(());
            }
            Some(i) => {
                let old = &e.indexes[i];
                old.number
                    .filter(|_| pattern.is_some() && KeyPattern::parse(&old.spec) == pattern)
            }
            None => None,
        };
        let number = match (keep, &pattern) {
            (Some(n), _) => Some(n),
            (None, Some(pattern)) => {
                let n = Counters::take(&mut self.counters.index)?;
                self.build(&e, n, pattern)?;
                Some(n)
            }
            (None, None) => None,
        };
        let entry = IndexEntry {
            spec: spec.clone(),
            number,
        };
        match existing {
            Some(i) => e.indexes[i] = entry,
            None => e.indexes.push(entry),
        }
        self.colls.insert(ns.clone(), Some(e));
        Ok(())
    }

    /// Entries of a new index `number` for every document of `entry`.
    fn build(&mut self, entry: &CollectionEntry, number: u32, pattern: &KeyPattern) -> Result<()> {
        let (p, coll) = (self.project, entry.number);
        // This commit's own versions of the collection's documents first.
        let own = keys::docs(p, self.inc, coll);
        let mut mine: BTreeMap<Vec<u8>, Option<RawDocumentBuf>> = BTreeMap::new();
        for (k, v) in self.writes.range(own.clone()..) {
            if !k.starts_with(&own) {
                break;
            }
            let stored = k[own.len()..k.len() - keys::SEQ_LEN].to_vec();
            let doc = match v.first() {
                Some(&PRESENT) => Some(raw(self.kv, &v[1..])?),
                _ => None,
            };
            mine.insert(stored, doc);
        }
        // Keyed by stored item (what both sides hold), entries by whole id.
        let mut docs: Vec<(Vec<u8>, RawDocumentBuf)> = Vec::new();
        for r in Merge::new(
            self.kv,
            self.view,
            |l| keys::docs(p, l.inc, coll),
            scan::all,
        ) {
            let (stored, v) = r?;
            if !mine.contains_key(&stored) {
                docs.push((
                    stored,
                    super::doc_from_value(self.kv, v)?.as_raw().to_owned(),
                ));
            }
        }
        docs.extend(mine.into_iter().filter_map(|(id, d)| Some((id, d?))));
        let mut counts = Counts::default();
        for (stored, d) in docs {
            let id = super::whole_id(&stored, &d);
            let (keys, shape) = index::keys_and_shape(pattern, Some(&d));
            counts.count(shape, keys.len(), 1);
            for k in keys {
                self.index_entry(coll, number, &k, id.as_bytes(), PRESENT);
            }
        }
        let sums = self.shapes.entry((coll, number)).or_default();
        *sums = sums.plus(counts);
        Ok(())
    }

    /// This incarnation's shape sums after the commit, for every index
    /// whose shape it changed (`shape`'s module doc).
    fn write_shapes(&mut self) -> Result<()> {
        let own = self.view.head();
        for ((coll, number), delta) in std::mem::take(&mut self.shapes) {
            if delta.is_zero() {
                continue;
            }
            let sums = shape::own(self.kv, self.project, own, coll, number)?.plus(delta);
            self.writes.insert(
                shape::key(self.project, self.inc, coll, number, self.seq),
                sums.encode(),
            );
        }
        Ok(())
    }

    fn write_catalog(&mut self) -> Result<()> {
        let prefix = keys::catalog(self.project, self.inc);
        for (ns, e) in std::mem::take(&mut self.colls) {
            let value = match e {
                Some(e) => e.encode()?,
                None => vec![ABSENT],
            };
            self.writes.insert(
                keys::versioned(&prefix, &keys::namespace(&ns), self.seq),
                value,
            );
        }
        Ok(())
    }
}

fn raw(kv: &Kv, bytes: &[u8]) -> Result<RawDocumentBuf> {
    RawDocumentBuf::from_bytes(bytes.to_vec()).map_err(|e| kv.malformed(format!("document: {e}")))
}
