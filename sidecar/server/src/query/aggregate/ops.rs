//! The streaming stages, one document in and at most a few out at a time
//! (`$unwind` keeps the document it is unwinding), and `$sort`, which
//! reads its whole input into a `spill::ExternalSorter` on its first pull.
//! A stage that passes a document on leaves its metadata as it was
//! (`query::meta`); `$unwind` and `$sort`, which hold documents, keep each
//! one's metadata with it.

use std::collections::VecDeque;

use bson::{Bson, Document, doc};

use super::super::expr::Expr;
use super::super::filter::Filter;
use super::super::meta::{self, Metadata};
use super::super::path;
use super::super::projection::Projection;
use super::super::sort::SortSpec;
use super::stage::Stage;
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};
use crate::spill::{ExternalSorter, KEY_FIELD, Sorted, StageBudget};

/// Documents already in memory as a pipeline's input.
pub(super) struct Docs(VecDeque<Document>);

impl Docs {
    pub(super) fn new(docs: Vec<Document>) -> Docs {
        Docs(docs.into())
    }
}

impl Op for Docs {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        cx.tick()?;
        meta::set(Metadata::default());
        Ok(self.0.pop_front())
    }
}

/// The documents of `input` with no metadata: what a stage that makes new
/// documents gives (`$group`, `$count`, `$facet`...), and the input of a
/// `$lookup` or `$unionWith` sub-pipeline (see `Pipeline::stream`).
pub(super) struct Bare(pub(super) Box<dyn Op>);

impl Op for Bare {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let d = self.0.next(cx)?;
        meta::set(Metadata::default());
        Ok(d)
    }
}

/// `doc` with `field` set by aggregation's path rules, held to the
/// document limits (`stage` names the stage in errors).
pub(super) fn with_field(
    mut doc: Document,
    field: &str,
    v: Bson,
    stage: &'static str,
) -> Result<Document> {
    let mut budget = Budget::document(stage);
    budget.charge(limits::document_size(&doc))?;
    path::set_field(&mut doc, field, v, &mut budget)?;
    // A long path (`as: "a.a. … .a"`, 200 components) puts the value that
    // deep: the nesting is held to the limit as `$addFields` holds it.
    limits::check_built_document(&doc, stage)?;
    Ok(doc)
}

/// The operator of a streaming stage (anything but `$sort`, `$group` and
/// `$lookup`, which `Pipeline::stream` builds itself).
pub(super) fn streaming(input: Box<dyn Op>, stage: Stage) -> Box<dyn Op> {
    match stage {
        Stage::Match(filter) => Box::new(Match { input, filter }),
        Stage::Skip(n) => Box::new(Skip { input, left: n }),
        Stage::Limit(n) => Box::new(Limit { input, left: n }),
        Stage::Count(name) => Box::new(Count {
            input,
            name,
            done: false,
        }),
        Stage::Unwind {
            path,
            index_field,
            preserve,
        } => Box::new(Unwind {
            input,
            path,
            index_field,
            preserve,
            current: None,
        }),
        Stage::Project(p) => Box::new(Map {
            input,
            map: MapKind::Project(p),
        }),
        Stage::AddFields(fields) => Box::new(Map {
            input,
            map: MapKind::AddFields(fields),
        }),
        Stage::Unset(fields) => Box::new(Map {
            input,
            map: MapKind::Unset(fields),
        }),
        Stage::ReplaceRoot(e) => Box::new(Map {
            input,
            map: MapKind::ReplaceRoot(e),
        }),
        Stage::Sort(_)
        | Stage::Group(_)
        | Stage::Lookup { .. }
        | Stage::SubLookup(_)
        | Stage::Facet(_)
        | Stage::UnionWith { .. }
        | Stage::Sample { .. }
        | Stage::Bucket(_)
        | Stage::BucketAuto(_)
        | Stage::Redact(_)
        | Stage::GraphLookup(_)
        | Stage::SetWindowFields(_)
        | Stage::Densify(_)
        | Stage::GeoNear(_) => {
            unreachable!("Pipeline::stream builds the blocking stages and $lookup")
        }
    }
}

struct Match {
    input: Box<dyn Op>,
    filter: Filter,
}

impl Op for Match {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        while let Some(d) = self.input.next(cx)? {
            cx.tick()?;
            if self.filter.try_matches(&d)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}

struct Skip {
    input: Box<dyn Op>,
    left: usize,
}

impl Op for Skip {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        while self.left > 0 {
            self.left -= 1;
            if self.input.next(cx)?.is_none() {
                self.left = 0;
                return Ok(None);
            }
        }
        self.input.next(cx)
    }
}

/// Stops pulling once it has passed on its `n` documents: nothing under it
/// reads further.
struct Limit {
    input: Box<dyn Op>,
    left: usize,
}

impl Op for Limit {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.left == 0 {
            return Ok(None);
        }
        let d = self.input.next(cx)?;
        self.left = if d.is_some() { self.left - 1 } else { 0 };
        Ok(d)
    }
}

struct Count {
    input: Box<dyn Op>,
    name: String,
    done: bool,
}

impl Op for Count {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let mut n = 0i64;
        while self.input.next(cx)?.is_some() {
            n += 1;
        }
        if n == 0 {
            return Ok(None);
        }
        let n = i32::try_from(n).map(Bson::Int32).unwrap_or(Bson::Int64(n));
        Ok(Some(doc! { self.name.clone(): n }))
    }
}

/// Stages that make one document of one.
enum MapKind {
    Project(Projection),
    AddFields(Vec<(String, Expr)>),
    Unset(Vec<String>),
    ReplaceRoot(Expr),
}

struct Map {
    input: Box<dyn Op>,
    map: MapKind,
}

impl Op for Map {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        let Some(d) = self.input.next(cx)? else {
            return Ok(None);
        };
        self.map.apply(d).map(Some)
    }
}

impl MapKind {
    fn apply(&self, mut d: Document) -> Result<Document> {
        Ok(match self {
            MapKind::Project(p) => p.try_apply(&d)?,
            MapKind::AddFields(fields) => {
                let root = d.clone();
                let mut budget = Budget::document("$addFields");
                budget.charge(limits::document_size(&d))?;
                for (k, e) in fields {
                    match e.eval(&root)? {
                        Some(v) => path::set_field(&mut d, k, v, &mut budget)?,
                        None => path::unset_field(&mut d, k),
                    }
                }
                limits::check_built_document(&d, "$addFields")?;
                d
            }
            MapKind::Unset(fields) => {
                for f in fields {
                    path::unset_field(&mut d, f);
                }
                d
            }
            MapKind::ReplaceRoot(e) => match e.eval(&d)? {
                Some(Bson::Document(new_root)) => {
                    limits::check_built_document(&new_root, "$replaceRoot")?;
                    new_root
                }
                other => {
                    return Err(CommandError::new(
                        ErrorCode::Location40228,
                        format!(
                            "'newRoot' expression must evaluate to an object, but resulting value was: {}",
                            other
                                .map(|v| v.to_string())
                                .unwrap_or_else(|| "MISSING".into())
                        ),
                    ));
                }
            },
        })
    }
}

/// `$unwind`: one output document per element, made as it is asked for,
/// so an array of any length costs one copy of its document at a time.
struct Unwind {
    input: Box<dyn Op>,
    path: String,
    index_field: Option<String>,
    preserve: bool,
    /// The document being unwound (without its array), its elements left,
    /// the index of the next one and its metadata (the input may have
    /// moved on to another document's when asked for more).
    current: Option<(Document, std::vec::IntoIter<Bson>, i64, Metadata)>,
}

impl Op for Unwind {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        loop {
            if let Some((d, items, i, m)) = &mut self.current {
                if let Some(item) = items.next() {
                    cx.tick()?;
                    meta::set(m.clone());
                    let index = *i;
                    *i += 1;
                    let mut e = with_field(d.clone(), &self.path, item, "$unwind")?;
                    if let Some(f) = &self.index_field {
                        e = with_field(e, f, Bson::Int64(index), "$unwind")?;
                    }
                    return Ok(Some(e));
                }
                self.current = None;
            }
            let Some(mut d) = self.input.next(cx)? else {
                return Ok(None);
            };
            match path::get_field(&d, &self.path) {
                Some(Bson::Array(items)) if !items.is_empty() => {
                    // The array moves out of the document (a null holds its
                    // place): each output sets one element in a copy of
                    // the rest.
                    if let Some(Bson::Array(items)) = path::take_field(&mut d, &self.path) {
                        self.current = Some((d, items.into_iter(), 0, meta::take()));
                    }
                }
                Some(Bson::Array(_)) | Some(Bson::Null) | None => {
                    if self.preserve {
                        return self.passed_on(d, Bson::Null).map(Some);
                    }
                }
                Some(_) => return self.passed_on(d, Bson::Null).map(Some),
            }
        }
    }
}

impl Unwind {
    /// A document passed on whole (a scalar at the path, or a preserved
    /// null, missing or empty array), with a null index.
    fn passed_on(&self, d: Document, index: Bson) -> Result<Document> {
        match &self.index_field {
            Some(f) => with_field(d, f, index, "$unwind"),
            None => Ok(d),
        }
    }
}

/// `$sort`: on its first pull, the whole input into an external sorter
/// (only the best `top` when a `$limit` follows); then the sorted result
/// one document at a time, with its metadata and (`sets_sort_key`, a
/// `$sort` stage rather than a stage sorting for itself) the values it
/// was sorted by as its `sortKey`.
pub(super) fn sort(
    input: Box<dyn Op>,
    spec: SortSpec,
    top: Option<usize>,
    budget: StageBudget,
    sets_sort_key: bool,
) -> Box<dyn Op> {
    Box::new(Sort {
        input,
        spec,
        top,
        budget,
        sets_sort_key,
        sorted: None,
    })
}

struct Sort {
    input: Box<dyn Op>,
    spec: SortSpec,
    top: Option<usize>,
    budget: StageBudget,
    sets_sort_key: bool,
    sorted: Option<Sorted>,
}

/// Where a held document and its metadata sit in the sorter's wrapper
/// (beside its key, [`KEY_FIELD`]).
const HELD_DOC: &str = "d";
const HELD_META: &str = "m";

impl Op for Sort {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if self.sorted.is_none() {
            let mut sorter =
                ExternalSorter::keyed(self.spec.clone(), self.budget).with_limit(self.top);
            while let Some(d) = self.input.next(cx)? {
                cx.tick()?;
                // The key reads the document's metadata (a text score)
                // while it is current.
                let key = self.spec.key(&d);
                let mut held = doc! {KEY_FIELD: key, HELD_DOC: d};
                let m = meta::take();
                if !m.is_empty() {
                    held.insert(HELD_META, m.to_document());
                }
                sorter.push(&held)?;
            }
            self.sorted = Some(sorter.finish()?);
        }
        let Some(sorted) = self.sorted.as_mut() else {
            return Ok(None);
        };
        let Some(mut held) = sorted.next_doc()? else {
            return Ok(None);
        };
        let (Some(Bson::Document(d)), Some(Bson::Array(key))) =
            (held.remove(HELD_DOC), held.remove(KEY_FIELD))
        else {
            return Err(crate::spill::damaged());
        };
        let mut m = match held.get(HELD_META) {
            Some(Bson::Document(m)) => Metadata::from_document(m)?,
            Some(_) => return Err(crate::spill::damaged()),
            None => Metadata::default(),
        };
        if self.sets_sort_key {
            m.sort_key = Some(key);
        }
        meta::set(m);
        Ok(Some(d))
    }
}
