//! An aggregate's cursor: the pipeline's operators over the branch
//! snapshot, run a batch at a time. The cursor keeps the snapshot (an
//! immutable `BranchState`, cheap to hold), the position of its input scan
//! and whatever its blocking stages hold (at most one budget each, the rest
//! in their spill files), so the first batch costs only what it takes to
//! produce it and each `getMore` continues where the last batch stopped,
//! within what is left of the command's `maxTimeMS`.

use std::collections::VecDeque;

use argon_wal::{BranchState, IdKey, Namespace};
use bson::{Bson, Document};

use super::MAX_BATCH_BYTES;
use crate::deadline::Deadline;
use crate::error::{CommandError, Result};
use crate::query::aggregate::{Cx, Lookup, Op, Pipeline};
use crate::query::find_meta::FindMetadata;
use crate::query::meta::{self, MetaName, Metadata};
use crate::query::plan::{Access, Plan};
use crate::query::{Filter, SortSpec};
use crate::spill::StageBudget;

/// A scan reads ahead at most this many matching documents (or
/// [`READ_AHEAD_BYTES`]) each time it resumes, so resuming (a seek in the
/// snapshot) is paid once per chunk, not per document.
const READ_AHEAD_DOCS: usize = 64;
const READ_AHEAD_BYTES: usize = 1 << 20;

/// The documents of one collection of a snapshot that match a filter, in
/// plan order (`query::plan`: `_id` lookups, an index scan or the
/// collection in `_id` order), as a pipeline's input; the plan resumes
/// where it stopped.
pub struct SnapshotInput {
    state: BranchState,
    ns: Namespace,
    filter: Filter,
    access: Access,
    ahead: VecDeque<Document>,
    /// A filter that failed on a document: reported once the documents
    /// before it have been passed on, as a scan one at a time would.
    failed: Option<CommandError>,
    done: bool,
    /// The metadata attached to each document (`query::meta`), when the
    /// pipeline reads it: the `$text` score, the plan's index key.
    attach_text_score: bool,
    index_key: Option<FindMetadata>,
}

impl SnapshotInput {
    pub fn new(
        state: BranchState,
        ns: Namespace,
        filter: Filter,
        sort: Option<&SortSpec>,
        hint: Option<&Bson>,
    ) -> SnapshotInput {
        // A plan that cannot be made (a refused hint) fails the first read.
        let (plan, failed) = match state
            .collection(&ns)
            .map_err(CommandError::from)
            .and_then(|c| crate::query::plan::choose(c.as_ref(), &filter, sort, hint))
        {
            Ok(p) => (p, None),
            Err(e) => (Plan::Collscan, Some(e)),
        };
        let done = failed.is_some();
        SnapshotInput {
            state,
            ns,
            access: Access::new(plan),
            ahead: VecDeque::new(),
            failed,
            done,
            attach_text_score: false,
            index_key: None,
            filter,
        }
    }

    /// Attaches to each document the metadata `pipeline` reads.
    fn attaching(mut self, pipeline: &Pipeline) -> SnapshotInput {
        self.attach_text_score =
            self.filter.text_query().is_some() && pipeline.reads(MetaName::TextScore);
        if pipeline.reads(MetaName::IndexKey) {
            self.index_key = Some(FindMetadata::of(&self.access.plan, &self.filter));
        }
        self
    }

    fn metadata_of(&self, d: &Document) -> Result<Metadata> {
        let text_score = if self.attach_text_score {
            Some(crate::query::text::score(d)?)
        } else {
            None
        };
        Ok(Metadata {
            text_score,
            index_key: self.index_key.as_ref().and_then(|m| m.index_key(d)),
            ..Metadata::default()
        })
    }

    /// Whether the input comes in the order of the sort it was planned for.
    pub fn provides_sort(&self) -> bool {
        self.access.plan.provides_sort()
    }

    fn read_ahead(&mut self, cx: &mut Cx<'_>) -> Result<()> {
        let SnapshotInput {
            state,
            ns,
            filter,
            access,
            ahead,
            failed,
            done,
            ..
        } = self;
        let Some(coll) = state.collection(ns)? else {
            *done = true;
            return Ok(());
        };
        // The filter runs before any metadata is attached: what it reads
        // of it (`$expr` with `$meta`) is missing, never the metadata of
        // the document passed on before.
        meta::set(Metadata::default());
        let mut bytes = 0usize;
        let exhausted = access.run(&coll, Deadline::NONE, |raw| {
            if ahead.len() >= READ_AHEAD_DOCS || bytes >= READ_AHEAD_BYTES || failed.is_some() {
                return Ok(false);
            }
            cx.tick()?;
            let d = argon_wal::rawdoc::parse(raw);
            let keep = if filter.is_empty() {
                Ok(true)
            } else {
                filter.try_matches(&d)
            };
            match keep {
                Ok(true) => {
                    bytes += raw.as_bytes().len();
                    ahead.push_back(d);
                }
                Ok(false) => {}
                Err(e) => *failed = Some(e),
            }
            Ok(true)
        })?;
        *done = exhausted;
        Ok(())
    }
}

impl Op for SnapshotInput {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        loop {
            if let Some(d) = self.ahead.pop_front() {
                meta::set(self.metadata_of(&d)?);
                return Ok(Some(d));
            }
            if let Some(e) = self.failed.take() {
                self.done = true;
                return Err(e);
            }
            if self.done {
                return Ok(None);
            }
            self.read_ahead(cx)?;
        }
    }
}

/// The other collections of the snapshot, for `$lookup`.
pub struct SnapshotLookup {
    state: BranchState,
    db: String,
}

impl SnapshotLookup {
    pub fn new(state: BranchState, db: String) -> SnapshotLookup {
        SnapshotLookup { state, db }
    }

    fn coll(&self, name: &str) -> Result<Option<argon_wal::CollectionState>> {
        Ok(self
            .state
            .collection(&Namespace::new(self.db.as_str(), name))?)
    }
}

impl Lookup for SnapshotLookup {
    fn scan_after(
        &self,
        from: &str,
        after: Option<&[u8]>,
        f: &mut dyn FnMut(&[u8], Document) -> Result<bool>,
    ) -> Result<()> {
        let Some(coll) = self.coll(from)? else {
            return Ok(());
        };
        for item in coll.iter_after(after) {
            let (key, raw) = item?;
            if !f(key.as_bytes(), raw.to_document())? {
                break;
            }
        }
        Ok(())
    }

    fn fetch(&self, from: &str, key: &[u8]) -> Result<Option<Document>> {
        Ok(match self.coll(from)? {
            Some(c) => c.get_by_key_bytes(key)?.map(|d| d.to_document()),
            None => None,
        })
    }

    fn by_id(&self, from: &str, id: &Bson) -> Result<Option<(Vec<u8>, Document)>> {
        let Some(c) = self.coll(from)? else {
            return Ok(None);
        };
        // A document is stored under the key of its `_id`.
        Ok(c.get(id)?
            .map(|raw| (IdKey::from_bson(id).as_bytes().to_vec(), raw.to_document())))
    }
}

/// A running pipeline as a cursor's source.
pub struct PipelineScan {
    op: Box<dyn Op>,
    lookup: SnapshotLookup,
    /// A document pulled that did not fit the last batch's bytes.
    held: Option<Document>,
    done: bool,
}

impl PipelineScan {
    /// `pipeline` over collection `coll` of `db` in `state`; its leading
    /// `$match` becomes the scan's filter (a point lookup when it pins
    /// `_id`), and its blocking stages hold at most `budget` each.
    pub fn new(
        state: BranchState,
        db: &str,
        coll: &str,
        pipeline: Pipeline,
        budget: StageBudget,
    ) -> PipelineScan {
        PipelineScan::hinted(state, db, coll, pipeline, budget, None)
    }

    /// [`PipelineScan::new`] whose input scan follows `hint` (validated).
    pub fn hinted(
        state: BranchState,
        db: &str,
        coll: &str,
        mut pipeline: Pipeline,
        budget: StageBudget,
        hint: Option<&Bson>,
    ) -> PipelineScan {
        let filter = pipeline
            .take_leading_match()
            .unwrap_or(Filter::And(Vec::new()));
        // A `$sort` right after the `$match` that an index gives is dropped:
        // the input already comes in its order.
        let sort = pipeline.leading_sort().cloned();
        let input = SnapshotInput::new(
            state.clone(),
            Namespace::new(db, coll),
            filter,
            sort.as_ref(),
            hint,
        )
        .attaching(&pipeline);
        if input.provides_sort() {
            pipeline.drop_leading_sort();
        }
        PipelineScan {
            op: pipeline.stream(Box::new(input), budget),
            lookup: SnapshotLookup::new(state, db.to_owned()),
            held: None,
            done: false,
        }
    }

    /// Up to `n` documents (within the batch byte limit). A batch that
    /// comes out full leaves the cursor open; the next one may be empty.
    pub(crate) fn next_batch(&mut self, n: usize, deadline: Deadline) -> Result<Vec<Bson>> {
        // A getMore after the time is spent fails at once, as in MongoDB.
        deadline.check()?;
        let _metadata = meta::enter();
        let mut cx = Cx::new(&self.lookup, deadline);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < n {
            let doc = match self.held.take() {
                Some(d) => d,
                None => match self.op.next(&mut cx)? {
                    Some(d) => d,
                    None => {
                        self.done = true;
                        break;
                    }
                },
            };
            let size = crate::limits::document_size(&doc);
            if !out.is_empty() && bytes + size > MAX_BATCH_BYTES {
                self.held = Some(doc);
                break;
            }
            bytes += size;
            out.push(Bson::Document(doc));
        }
        Ok(out)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done && self.held.is_none()
    }
}
