//! `$group` (and `$sortByCount`, which parses to `$group` + `$sort`): a
//! hash table of groups, within the stage's blocking budget, spilling to
//! disk past it as MongoDB 6.0+ does.
//!
//! **In memory.** Each group is found by the canonical key of its `_id`
//! value ([`group_key`]: the `IdKey` of the value, Decimal128 taken as the
//! double nearest to it, so two keys are equal exactly when `$eq` finds the
//! values equal). Its accumulators' state ([`AccState`]) is charged to the
//! budget as it grows: the key (twice: the table and the spill order),
//! the `_id`, the state's fixed size, `$push` and `$addToSet` values (and
//! the set's keys), the `$min`/`$max`/`$first`/`$last` value, each value
//! as its BSON size plus its parsed slot. Groups come out in the order
//! their first document came in.
//!
//! **Spilling.** When the table passes the budget (and `allowDiskUse` is
//! not false: then 292), its groups are written as one run, sorted by
//! key, each as a *partial group* `{k: <key bytes>, _id, a: [<state>…]}`,
//! and the table starts empty. At the end the last table is spilled too
//! and the runs are merged by key (`spill::Runs`, tiered, at most a few
//! dozen files open): equal keys from several runs fold into one group,
//! earlier run first. Every accumulator can be merged that way: `$sum` and
//! `$avg` keep a sum, a count of numbers and whether all were integers;
//! `$min`/`$max` keep the best value; `$first` keeps the earlier run's and
//! `$last` the later run's (runs hold the input in order); `$push`
//! concatenates and `$addToSet` unions, each still held to the 16 MiB
//! value limit; `$count` adds; `$stdDevPop`/`$stdDevSamp` combine their
//! counts, means and squared deviations (Chan et al.); `$mergeObjects`
//! merges the later object over the earlier; `$percentile`/`$median`
//! concatenate their numbers; a pick (`$firstN` … `$bottom`, see `multi`)
//! offers the later run's kept entries to the earlier's, arrival order
//! carried on. Spilled groups come out in key order (a
//! `$group`'s order is unspecified in MongoDB too). Merging holds one
//! partial group per open run. A sum of doubles that spilled may differ in
//! its last bits from one that did not (the additions group differently).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use argon_wal::IdKey;
use bson::{Bson, Document, doc};

use super::super::compare::{as_f64, compare, is_number};
use super::super::expr::summation::Summation;
use super::super::expr::type_name;
use super::multi::{Deviation, Picked, room_for_number};
use super::stage::{Acc, Group};
use super::{Cx, Op};
use crate::error::Result;
use crate::error::{CommandError, ErrorCode};
use crate::limits::{self, Budget};
use crate::spill::{self, Blocking, Merge, Order, RunWriter, Runs, StageBudget};

/// Bytes charged per group beyond its key and state (hash table slot,
/// vectors).
const GROUP_OVERHEAD: usize = 96;

/// Bytes charged per `$addToSet` member beyond its value and key.
const MEMBER_OVERHEAD: usize = 48;

/// The canonical key of a group (and of an `$addToSet` member): equal for
/// values `$eq` finds equal (numbers across types by value, null and
/// undefined, strings and symbols). `IdKey` already is, except for
/// Decimal128, which it keys by its bytes: here it is keyed as the double
/// nearest to it, as `compare` compares it. Under a collation, strings
/// are keyed by their collation keys (`"a"` and `"A"` are one group at
/// strength 2), and the group keeps the first value it saw as its `_id`.
pub(super) fn group_key(v: &Bson) -> IdKey {
    if !crate::query::collation::active_is_simple() && crate::query::collation::has_string(v) {
        return plain_group_key(&crate::query::collation::comparison_key(v));
    }
    plain_group_key(v)
}

fn plain_group_key(v: &Bson) -> IdKey {
    fn has_decimal(v: &Bson) -> bool {
        match v {
            Bson::Decimal128(_) => true,
            Bson::Array(a) => a.iter().any(has_decimal),
            Bson::Document(d) => d.iter().any(|(_, v)| has_decimal(v)),
            _ => false,
        }
    }
    fn canonical(v: &Bson) -> Bson {
        match v {
            Bson::Decimal128(_) => Bson::Double(as_f64(v).unwrap_or(f64::NAN)),
            Bson::Array(a) => Bson::Array(a.iter().map(canonical).collect()),
            Bson::Document(d) => {
                Bson::Document(d.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
            }
            v => v.clone(),
        }
    }
    if has_decimal(v) {
        IdKey::from_bson(&canonical(v))
    } else {
        IdKey::from_bson(v)
    }
}

/// What a parsed value is charged: its BSON bytes and its own slot (a
/// parsed `Bson` is larger than its encoding; nested values are counted
/// by their encoding, which is what dominates a large one).
fn parsed_size(v: &Bson) -> usize {
    std::mem::size_of::<Bson>() + limits::bson_size(v)
}

pub(super) fn op(input: Box<dyn Op>, group: Group, budget: StageBudget) -> Box<dyn Op> {
    let id = group.id.clone();
    op_keyed(
        input,
        group,
        Box::new(move |d| Ok(id.eval(d)?.unwrap_or(Bson::Null))),
        budget,
    )
}

/// What puts a document in its group: the value of the group's `_id`.
pub(super) type KeyOf = Box<dyn Fn(&Document) -> Result<Bson> + Send>;

/// A `$group` whose `_id` comes from `key` rather than an expression
/// (`$bucket`: the boundary a document falls under, by binary search).
pub(super) fn op_keyed(
    input: Box<dyn Op>,
    group: Group,
    key: KeyOf,
    budget: StageBudget,
) -> Box<dyn Op> {
    Box::new(GroupOp {
        input,
        group,
        key,
        budget,
        out: None,
    })
}

struct GroupOp {
    input: Box<dyn Op>,
    group: Group,
    key: KeyOf,
    budget: StageBudget,
    /// Set on the first pull, once the whole input is grouped.
    out: Option<Output>,
}

enum Output {
    Memory(std::vec::IntoIter<Entry>),
    Merged(Merge<PartialOrder>),
}

impl Op for GroupOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.out.is_none() {
            self.out = Some(self.consume(cx)?);
        }
        let accs = &self.group.accumulators;
        let entry = match &mut self.out {
            Some(Output::Memory(entries)) => entries.next(),
            Some(Output::Merged(merge)) => match merge.next_doc()? {
                Some(d) => Some(Entry::decode(accs.iter().map(|(_, acc, _)| acc), d)?.1),
                None => None,
            },
            None => None,
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let mut d = doc! {"_id": entry.id};
        for ((name, acc, _), st) in accs.iter().zip(entry.states) {
            d.insert(name.clone(), st.finish(acc));
        }
        limits::check_built_document(&d, "$group")?;
        // A group is a new document: no metadata (`query::meta`).
        super::super::meta::set(super::super::meta::Metadata::default());
        Ok(Some(d))
    }
}

impl GroupOp {
    /// Groups the whole input: in memory, or spilled runs merged.
    fn consume(&mut self, cx: &mut Cx<'_>) -> Result<Output> {
        let order = PartialOrder {
            accs: self
                .group
                .accumulators
                .iter()
                .map(|(_, a, _)| a.clone())
                .collect(),
        };
        let mut table = Table::default();
        let mut runs = Runs::default();
        while let Some(d) = self.input.next(cx)? {
            cx.tick()?;
            table.add(&self.group, (self.key)(&d)?, &d)?;
            if self.budget.must_spill(table.bytes, Blocking::Group)? {
                runs.push(&order, table.spill()?, None)?;
            }
        }
        if runs.is_empty() {
            return Ok(Output::Memory(table.entries.into_iter()));
        }
        if !table.entries.is_empty() {
            runs.push(&order, table.spill()?, None)?;
        }
        Ok(Output::Merged(runs.merge(order, None)?))
    }
}

/// Groups in memory, in the order they were first seen.
#[derive(Default)]
struct Table {
    index: HashMap<IdKey, usize>,
    keys: Vec<IdKey>,
    entries: Vec<Entry>,
    /// What the table is charged: every group's key, state and overhead.
    bytes: usize,
}

struct Entry {
    /// The `_id` as first seen.
    id: Bson,
    states: Vec<AccState>,
}

impl Table {
    fn add(&mut self, g: &Group, id: Bson, d: &Document) -> Result<()> {
        let key = group_key(&id);
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                let states = g
                    .accumulators
                    .iter()
                    .map(|(_, acc, _)| AccState::new(acc, &id))
                    .collect::<Result<Vec<_>>>()?;
                self.bytes = self.bytes.saturating_add(
                    GROUP_OVERHEAD
                        + 2 * key.as_bytes().len()
                        + parsed_size(&id)
                        + g.accumulators.len() * std::mem::size_of::<AccState>()
                        + states.iter().map(|s| s.mem).sum::<usize>(),
                );
                self.index.insert(key.clone(), self.entries.len());
                self.keys.push(key);
                self.entries.push(Entry { id, states });
                self.entries.len() - 1
            }
        };
        for ((_, acc, e), st) in g.accumulators.iter().zip(self.entries[i].states.iter_mut()) {
            let before = st.mem;
            st.add(acc, e.eval(d)?)?;
            self.bytes = self.bytes.saturating_sub(before).saturating_add(st.mem);
        }
        Ok(())
    }

    /// Writes the groups as one run in key order and empties the table.
    fn spill(&mut self) -> Result<spill::RunFile> {
        let table = std::mem::take(self);
        let mut groups: Vec<(IdKey, Entry)> = table.keys.into_iter().zip(table.entries).collect();
        drop(table.index);
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut w = RunWriter::new()?;
        for (key, entry) in groups {
            w.push(&entry.encode(key.as_bytes()))?;
        }
        w.finish()
    }
}

impl Entry {
    fn encode(self, key: &[u8]) -> Document {
        doc! {
            "k": Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: key.to_vec(),
            }),
            "_id": self.id,
            "a": self.states.into_iter().map(|s| Bson::Document(s.encode())).collect::<Vec<_>>(),
        }
    }

    /// A partial group back from a run (with its key bytes).
    fn decode<'a>(
        accs: impl Iterator<Item = &'a Acc>,
        mut d: Document,
    ) -> Result<(Vec<u8>, Entry)> {
        let key = match d.remove("k") {
            Some(Bson::Binary(b)) => b.bytes,
            _ => return Err(spill::damaged()),
        };
        let id = d.remove("_id").ok_or_else(spill::damaged)?;
        let accs: Vec<&Acc> = accs.collect();
        let states = match d.remove("a") {
            Some(Bson::Array(states)) if states.len() == accs.len() => states,
            _ => return Err(spill::damaged()),
        };
        let states = accs
            .into_iter()
            .zip(states)
            .map(|(acc, s)| match s {
                Bson::Document(s) => AccState::decode(acc, s),
                _ => Err(spill::damaged()),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((key, Entry { id, states }))
    }
}

/// The order of spilled partial groups: by key bytes; equal keys fold.
#[derive(Clone)]
struct PartialOrder {
    accs: Arc<[Acc]>,
}

fn key_bytes(d: &Document) -> &[u8] {
    match d.get("k") {
        Some(Bson::Binary(b)) => &b.bytes,
        _ => &[],
    }
}

impl Order for PartialOrder {
    type Key = Vec<u8>;

    fn key(&self, d: &Document) -> Vec<u8> {
        key_bytes(d).to_vec()
    }

    fn cmp(&self, a: &Vec<u8>, b: &Vec<u8>) -> std::cmp::Ordering {
        a.cmp(b)
    }

    fn folds(&self) -> bool {
        true
    }

    fn fold(&self, into: &mut Document, later: Document) -> Result<()> {
        let (key, mut a) = Entry::decode(self.accs.iter(), std::mem::take(into))?;
        let (_, b) = Entry::decode(self.accs.iter(), later)?;
        for ((acc, st), other) in self.accs.iter().zip(a.states.iter_mut()).zip(b.states) {
            st.merge(acc, other)?;
        }
        *into = a.encode(&key);
        Ok(())
    }
}

/// One accumulator fed values already evaluated (`$setWindowFields`,
/// `$bucketAuto`).
pub(super) struct Accumulator {
    acc: Acc,
    state: AccState,
}

impl Accumulator {
    /// `n` of a `$firstN`… is evaluated against nothing (no group key),
    /// as mongod does for window functions.
    pub(super) fn new(acc: &Acc) -> Result<Accumulator> {
        Ok(Accumulator {
            acc: acc.clone(),
            state: AccState::new(acc, &Bson::Null)?,
        })
    }

    pub(super) fn add(&mut self, v: Option<Bson>) -> Result<()> {
        self.state.add(&self.acc, v)
    }

    pub(super) fn finish(self) -> Bson {
        self.state.finish(&self.acc)
    }

    /// The result so far; more values may follow.
    pub(super) fn peek(&self) -> Bson {
        self.state.peek(&self.acc)
    }
}

/// One accumulator's running state for one group. `mem` is what it is
/// charged beyond its fixed size.
#[derive(Default)]
struct AccState {
    values: Vec<Bson>,
    /// BSON bytes `values` holds ($push, $addToSet) or the merged object
    /// ($mergeObjects), held to [`limits::MAX_BUILT_VALUE_SIZE`].
    values_size: usize,
    /// `$addToSet`'s members, by [`group_key`].
    members: HashSet<IdKey>,
    count: i64,
    /// `$sum`/`$avg`.
    summation: Summation,
    best: Option<Bson>,
    /// `$stdDevPop`/`$stdDevSamp`.
    deviation: Deviation,
    /// `$percentile`/`$median`: the numbers seen (NaN skipped, as mongod).
    nums: Vec<f64>,
    /// `$firstN` … `$bottom`.
    picked: Option<Box<Picked>>,
    mem: usize,
}

impl AccState {
    /// A new group's state; `id` is the group's `_id` (a `$firstN`'s `n`
    /// is evaluated against its fields, as mongod does).
    fn new(acc: &Acc, id: &Bson) -> Result<AccState> {
        let mut st = AccState::default();
        if let Acc::Pick(pick) = acc {
            let n = match id {
                Bson::Document(d) => pick.n.eval(d)?,
                _ => pick.n.eval(&Document::new())?,
            };
            st.picked = Some(Box::new(Picked::start(n.as_ref())?));
        }
        Ok(st)
    }

    fn add(&mut self, acc: &Acc, v: Option<Bson>) -> Result<()> {
        self.count += 1;
        match acc {
            Acc::Sum | Acc::Avg => {
                if let Some(v) = &v {
                    self.summation.add(v);
                }
            }
            Acc::Min | Acc::Max => {
                if let Some(v) = v.filter(|v| !matches!(v, Bson::Null | Bson::Undefined)) {
                    self.offer_best(acc, v);
                }
            }
            Acc::First => {
                if self.count == 1 {
                    self.set_best(v.unwrap_or(Bson::Null));
                }
            }
            Acc::Last => self.set_best(v.unwrap_or(Bson::Null)),
            Acc::Push => {
                if let Some(v) = v {
                    self.push("$push", v)?;
                }
            }
            Acc::AddToSet => {
                if let Some(v) = v {
                    self.add_member(v)?;
                }
            }
            Acc::Count => {}
            Acc::StdDevPop | Acc::StdDevSamp => {
                if let Some(v) = v {
                    self.deviation.add(&v);
                }
            }
            Acc::MergeObjects => match v {
                None | Some(Bson::Null) | Some(Bson::Undefined) => {}
                Some(Bson::Document(d)) => self.merge_object(d)?,
                Some(other) => {
                    return Err(CommandError::new(
                        ErrorCode::Location40400,
                        format!(
                            "$mergeObjects requires object inputs, but input {other} is of type {}",
                            type_name(&other)
                        ),
                    ));
                }
            },
            Acc::Quantile(_) => {
                if let Some(x) = v.filter(is_number).as_ref().and_then(as_f64) {
                    self.add_number(x)?;
                }
            }
            Acc::Pick(pick) => {
                // `AccState::new` starts it with the group's `n`.
                let Some(picked) = self.picked.as_mut() else {
                    return Err(CommandError::new(
                        ErrorCode::InternalError,
                        format!("{} state was not started", pick.name),
                    ));
                };
                let before = picked.mem;
                picked.add(pick, v)?;
                self.mem = self.mem.saturating_sub(before).saturating_add(picked.mem);
            }
        }
        Ok(())
    }

    /// `$percentile`'s numbers, at most `multi::MAX_QUANTILE_VALUES`.
    fn add_number(&mut self, x: f64) -> Result<()> {
        if x.is_nan() {
            return Ok(());
        }
        room_for_number(self.nums.len())?;
        self.nums.push(x);
        self.mem = self.mem.saturating_add(8);
        Ok(())
    }

    /// `$mergeObjects`: `d`'s fields over the merged object's (a field
    /// already there keeps its place), the size tracked as it changes.
    fn merge_object(&mut self, d: Document) -> Result<()> {
        let mut merged = match self.best.take() {
            Some(Bson::Document(m)) => m,
            _ => Document::new(),
        };
        let budget = Budget::value("$mergeObjects");
        let mut size = self.values_size;
        for (k, v) in d {
            let field = 2 + k.len() + limits::bson_size(&v);
            if let Some(old) = merged.get(&k) {
                size = size.saturating_sub(2 + k.len() + limits::bson_size(old));
            }
            size = size.saturating_add(field);
            budget.reserve(size)?;
            merged.insert(k, v);
        }
        let before = self.values_size;
        self.values_size = size;
        self.mem = self
            .mem
            .saturating_sub(before)
            .saturating_add(size + std::mem::size_of::<Bson>());
        self.best = Some(Bson::Document(merged));
        Ok(())
    }

    /// `$min`/`$max`: keeps `v` if it is better than the best so far.
    fn offer_best(&mut self, acc: &Acc, v: Bson) {
        let better = match &self.best {
            None => true,
            Some(b) => {
                let o = compare(&v, b);
                if matches!(acc, Acc::Min) {
                    o.is_lt()
                } else {
                    o.is_gt()
                }
            }
        };
        if better {
            self.set_best(v);
        }
    }

    fn set_best(&mut self, v: Bson) {
        let old = self.best.as_ref().map_or(0, parsed_size);
        self.mem = self.mem.saturating_sub(old).saturating_add(parsed_size(&v));
        self.best = Some(v);
    }

    fn push(&mut self, what: &'static str, v: Bson) -> Result<()> {
        let mut budget = Budget::value(what);
        budget.charge(self.values_size)?;
        let element = 8 + limits::bson_size(&v);
        budget.charge(element)?;
        self.values_size += element;
        self.mem = self.mem.saturating_add(parsed_size(&v));
        self.values.push(v);
        Ok(())
    }

    /// `$addToSet`: a hash set of the members' keys, never a scan of the
    /// values.
    fn add_member(&mut self, v: Bson) -> Result<()> {
        let key = group_key(&v);
        if self.members.contains(&key) {
            return Ok(());
        }
        let key_size = key.as_bytes().len() + MEMBER_OVERHEAD;
        self.push("$addToSet", v)?;
        self.members.insert(key);
        self.mem = self.mem.saturating_add(key_size);
        Ok(())
    }

    /// Folds in `other`, the state of the same group over later input.
    fn merge(&mut self, acc: &Acc, other: AccState) -> Result<()> {
        if other.count == 0 {
            return Ok(());
        }
        if self.count == 0 {
            *self = other;
            return Ok(());
        }
        match acc {
            Acc::Sum | Acc::Avg => {
                self.summation.merge(&other.summation);
            }
            Acc::Min | Acc::Max => {
                if let Some(v) = other.best {
                    self.offer_best(acc, v);
                }
            }
            Acc::First => {}
            Acc::Last => {
                if let Some(v) = other.best {
                    self.set_best(v);
                }
            }
            Acc::Push => {
                for v in other.values {
                    self.push("$push", v)?;
                }
            }
            Acc::AddToSet => {
                for v in other.values {
                    self.add_member(v)?;
                }
            }
            Acc::Count => {}
            Acc::StdDevPop | Acc::StdDevSamp => self.deviation.merge(other.deviation),
            Acc::MergeObjects => {
                if let Some(Bson::Document(d)) = other.best {
                    self.merge_object(d)?;
                }
            }
            Acc::Quantile(_) => {
                for x in other.nums {
                    self.add_number(x)?;
                }
            }
            Acc::Pick(pick) => {
                if let (Some(mine), Some(theirs)) = (self.picked.as_mut(), other.picked) {
                    let before = mine.mem;
                    mine.merge(pick, *theirs)?;
                    self.mem = self.mem.saturating_sub(before).saturating_add(mine.mem);
                }
            }
        }
        self.count += other.count;
        Ok(())
    }

    fn encode(self) -> Document {
        let mut d = doc! {
            "c": self.count,
            "s": self.summation.encode(),
            "v": self.values,
            "m": [self.deviation.mean, self.deviation.m2, self.deviation.count],
        };
        if let Some(b) = self.best {
            d.insert("b", b);
        }
        if !self.nums.is_empty() {
            d.insert("q", self.nums);
        }
        if let Some(p) = &self.picked {
            d.insert("p", p.encode());
        }
        d
    }

    fn decode(acc: &Acc, mut d: Document) -> Result<AccState> {
        let moments = d.get_array("m").map_err(|_| spill::damaged())?;
        let moment = |i: usize| match moments.get(i) {
            Some(Bson::Double(x)) => Ok(*x),
            _ => Err(spill::damaged()),
        };
        let deviation = Deviation {
            mean: moment(0)?,
            m2: moment(1)?,
            count: match moments.get(2) {
                Some(Bson::Int64(n)) => *n,
                _ => return Err(spill::damaged()),
            },
        };
        let mut st = AccState {
            count: d.get_i64("c").map_err(|_| spill::damaged())?,
            summation: d
                .get_document("s")
                .ok()
                .and_then(Summation::decode)
                .ok_or_else(spill::damaged)?,
            deviation,
            ..AccState::default()
        };
        if let Some(b) = d.remove("b") {
            if let (Acc::MergeObjects, Bson::Document(m)) = (acc, &b) {
                st.values_size = limits::document_size(m);
                st.mem = st.values_size;
            }
            st.set_best(b);
        }
        let Some(Bson::Array(values)) = d.remove("v") else {
            return Err(spill::damaged());
        };
        for v in values {
            match acc {
                Acc::AddToSet => st.add_member(v)?,
                _ => st.push("$push", v)?,
            }
        }
        if let Some(Bson::Array(nums)) = d.remove("q") {
            for x in nums {
                match x {
                    Bson::Double(x) => st.add_number(x)?,
                    _ => return Err(spill::damaged()),
                }
            }
        }
        if let (Acc::Pick(pick), Some(p)) = (acc, d.remove("p")) {
            let picked = Picked::decode(pick, p)?;
            st.mem = st.mem.saturating_add(picked.mem);
            st.picked = Some(Box::new(picked));
        }
        Ok(st)
    }

    fn finish(self, acc: &Acc) -> Bson {
        match acc {
            Acc::Push | Acc::AddToSet => Bson::Array(self.values),
            Acc::Quantile(q) => {
                let mut nums = self.nums;
                q.answer(&mut nums)
            }
            _ => self.peek(acc),
        }
    }

    /// The result so far, the state kept (a running window).
    fn peek(&self, acc: &Acc) -> Bson {
        match acc {
            Acc::Min | Acc::Max | Acc::First | Acc::Last => self.best.clone().unwrap_or(Bson::Null),
            Acc::Push | Acc::AddToSet => Bson::Array(self.values.clone()),
            Acc::Sum | Acc::Avg | Acc::Count => self.number(acc),
            Acc::StdDevPop | Acc::StdDevSamp => {
                self.deviation.result(matches!(acc, Acc::StdDevSamp))
            }
            Acc::MergeObjects => self
                .best
                .clone()
                .unwrap_or_else(|| Bson::Document(Document::new())),
            Acc::Quantile(q) => {
                let mut nums = self.nums.clone();
                q.answer(&mut nums)
            }
            Acc::Pick(pick) => match &self.picked {
                Some(p) => p.finish(pick),
                None if pick.single => Bson::Null,
                None => Bson::Array(Vec::new()),
            },
        }
    }

    /// `$sum`, `$avg` and `$count` (an empty `$sum`, as over an empty
    /// window, is 0).
    fn number(&self, acc: &Acc) -> Bson {
        match acc {
            Acc::Sum if self.count == 0 => Bson::Int32(0),
            Acc::Sum => self.summation.sum(),
            Acc::Avg => self.summation.average(),
            _ => i32::try_from(self.count)
                .map(Bson::Int32)
                .unwrap_or(Bson::Int64(self.count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    #[test]
    fn group_keys_are_equal_exactly_when_values_are() {
        let same = [
            (bson!(1), bson!(1.0)),
            (bson!(1), bson!(1i64)),
            (bson!(0.0), bson!(-0.0)),
            (Bson::Null, Bson::Undefined),
            (bson!("a"), Bson::Symbol("a".into())),
            (Bson::Decimal128("1".parse().unwrap()), bson!(1)),
            (bson!({"a": [1, 2.5]}), bson!({"a": [1i64, 2.5]})),
            (
                bson!({"a": Bson::Decimal128("2.5".parse().unwrap())}),
                bson!({"a": 2.5}),
            ),
        ];
        for (a, b) in same {
            assert!(compare(&a, &b).is_eq(), "{a} {b}");
            assert_eq!(group_key(&a), group_key(&b), "{a} {b}");
        }
        let different = [
            (bson!(1), bson!("1")),
            (bson!(1), bson!(1.5)),
            (bson!({"a": 1}), bson!({"b": 1})),
            (bson!([1]), bson!(1)),
        ];
        for (a, b) in different {
            assert!(!compare(&a, &b).is_eq(), "{a} {b}");
            assert_ne!(group_key(&a), group_key(&b), "{a} {b}");
        }
    }

    /// Each accumulator's state over a split input, merged, is the state
    /// over the whole input.
    #[test]
    fn states_merge_as_if_never_split() {
        let values: Vec<Option<Bson>> = vec![
            Some(bson!(3)),
            None,
            Some(bson!(1.5)),
            Some(Bson::Null),
            Some(bson!("x")),
            Some(bson!(3)),
            Some(bson!(7i64)),
            Some(bson!(3.0)),
        ];
        let docs: Vec<Document> = values
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Some(v) => doc! {"i": i as i32, "a": v.clone(), "o": {"i": i as i32}},
                None => doc! {"i": i as i32},
            })
            .collect();
        let specs = [
            bson!({"$sum": "$a"}),
            bson!({"$avg": "$a"}),
            bson!({"$min": "$a"}),
            bson!({"$max": "$a"}),
            bson!({"$first": "$a"}),
            bson!({"$last": "$a"}),
            bson!({"$push": "$a"}),
            bson!({"$addToSet": "$a"}),
            bson!({"$count": {}}),
            bson!({"$stdDevPop": "$a"}),
            bson!({"$stdDevSamp": "$a"}),
            bson!({"$mergeObjects": "$o"}),
            bson!({"$firstN": {"n": 3, "input": "$a"}}),
            bson!({"$lastN": {"n": 3, "input": "$a"}}),
            bson!({"$minN": {"n": 3, "input": "$a"}}),
            bson!({"$maxN": {"n": 3, "input": "$a"}}),
            bson!({"$topN": {"n": 3, "sortBy": {"a": 1}, "output": "$i"}}),
            bson!({"$bottomN": {"n": 3, "sortBy": {"a": 1}, "output": "$i"}}),
            bson!({"$top": {"sortBy": {"a": -1}, "output": "$i"}}),
            bson!({"$bottom": {"sortBy": {"a": -1}, "output": "$i"}}),
            bson!({"$percentile": {"input": "$a", "p": [0.2, 0.7], "method": "approximate"}}),
            bson!({"$median": {"input": "$a", "method": "approximate"}}),
        ];
        for spec in specs {
            let Bson::Document(spec) = spec else {
                unreachable!()
            };
            let (name, arg) = spec.iter().next().unwrap();
            let (acc, input) = super::super::stage::accumulator(name, arg).unwrap();
            let acc = &acc;
            let vals: Vec<Option<Bson>> = docs.iter().map(|d| input.eval(d).unwrap()).collect();
            let mut whole = AccState::new(acc, &Bson::Null).unwrap();
            for v in &vals {
                whole.add(acc, v.clone()).unwrap();
            }
            let whole = whole.finish(acc);
            for split in 0..=vals.len() {
                let mut a = AccState::new(acc, &Bson::Null).unwrap();
                let mut b = AccState::new(acc, &Bson::Null).unwrap();
                for v in &vals[..split] {
                    a.add(acc, v.clone()).unwrap();
                }
                for v in &vals[split..] {
                    b.add(acc, v.clone()).unwrap();
                }
                // Through the spill encoding, as a merge sees them.
                let mut a = AccState::decode(acc, a.encode()).unwrap();
                let b = AccState::decode(acc, b.encode()).unwrap();
                a.merge(acc, b).unwrap();
                let merged = a.finish(acc);
                if let (Bson::Double(x), Bson::Double(y)) = (&merged, &whole) {
                    // Partial deviations combine in another order.
                    assert!((x - y).abs() < 1e-12, "{name} split at {split}");
                    continue;
                }
                assert_eq!(merged, whole, "{name} split at {split}");
            }
        }
    }
}
