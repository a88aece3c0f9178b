//! Read-only views (`create` with `viewOn` and `pipeline`).
//!
//! A view is kept in branch state as a collection with no documents whose
//! options are `{viewOn, pipeline[, collation]}`: it is created, dropped,
//! forked and read at a past point like a collection, through the same
//! catalog ops, so branches and time travel see views as they were.
//!
//! A read of a view runs its pipeline over the collection it stands on
//! (through views on views, at most [`MAX_DEPTH`] deep), followed by what
//! the read asks: `find`'s filter, sort, skip, limit and projection become
//! `$match`, `$sort`, `$skip`, `$limit` and `$project`, as MongoDB rewrites
//! them. Writes to a view fail with `CommandNotSupportedOnView` (166).

use argon_wal::{BranchState, CollectionState, Namespace};
use bson::{Bson, Document, doc};

use crate::error::{CommandError, ErrorCode, Result};
use crate::query::collation::Collation;

/// MongoDB's `maxViewDepth`: views stacked on views.
pub(crate) const MAX_DEPTH: usize = 20;

/// The options `create` takes beside `viewOn` (the view's own); any other
/// collection option is refused, as MongoDB refuses it on a view.
const VIEW_OPTIONS: &[&str] = &["viewOn", "pipeline", "collation"];

/// Whether a collection entry of the state is a view.
pub(crate) fn is_view(coll: Option<&CollectionState>) -> bool {
    coll.is_some_and(|c| c.options().contains_key("viewOn"))
}

/// Refuses an operation that needs a collection (a write, an index
/// command) when `ns` names a view.
pub(crate) fn refuse_view(state: &BranchState, ns: &Namespace) -> Result<()> {
    if is_view(state.collection(ns)?.as_ref()) {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupportedOnView,
            format!("Namespace {ns} is a view, not a collection"),
        ));
    }
    Ok(())
}

/// A view resolved down to the collection it reads.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The collection (not a view) under the view.
    pub source: String,
    /// The stages of every view on the way, innermost first.
    pub pipeline: Vec<Bson>,
    /// The view's collation (a view's reads use it; simple when it has none).
    pub collation: Collation,
}

/// `Some` when `coll` of `db` is a view: what it reads and how.
pub(crate) fn resolve(state: &BranchState, db: &str, coll: &str) -> Result<Option<Resolved>> {
    let outer = match state.collection(&Namespace::new(db, coll))? {
        Some(c) if is_view(Some(&c)) => c.options().clone(),
        _ => return Ok(None),
    };
    let collation = crate::query::collation::default_of(Some(&outer))?;
    let mut stages: Vec<Vec<Bson>> = Vec::new();
    let mut options = outer;
    for _ in 0..=MAX_DEPTH {
        let on = options.get_str("viewOn").unwrap_or_default().to_string();
        stages.push(options.get_array("pipeline").cloned().unwrap_or_default());
        match state.collection(&Namespace::new(db, on.as_str()))? {
            Some(c) if is_view(Some(&c)) => options = c.options().clone(),
            _ => {
                return Ok(Some(Resolved {
                    source: on,
                    pipeline: stages.into_iter().rev().flatten().collect(),
                    collation,
                }));
            }
        }
    }
    Err(CommandError::new(
        ErrorCode::ViewDepthLimitExceeded,
        format!("View depth too deep or view cycle detected. Maximum depth is {MAX_DEPTH}"),
    ))
}

impl Resolved {
    /// The collation a read of the view runs under: the view's. A command
    /// naming another is refused, as MongoDB refuses it.
    pub fn collation_for(&self, own: Option<&Collation>) -> Result<Collation> {
        match own {
            Some(c) if *c != self.collation => Err(CommandError::new(
                ErrorCode::OptionNotSupportedOnView,
                "Cannot override a view's default collation",
            )),
            _ => Ok(self.collation.clone()),
        }
    }
}

/// The options of a new view from `create`'s command, validated (the
/// pipeline parses and has no `$out`/`$merge`; no other option is given).
pub(crate) fn options(cmd: &Document) -> Result<Document> {
    for k in cmd.keys().skip(1) {
        if !VIEW_OPTIONS.contains(&k.as_str()) && !super::GENERIC_FIELDS.contains(&k.as_str()) {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                format!("option not supported on a view: {k}"),
            ));
        }
    }
    let on = match cmd.get("viewOn") {
        Some(Bson::String(s)) if !s.is_empty() => s.clone(),
        Some(Bson::String(_)) => {
            return Err(CommandError::new(
                ErrorCode::InvalidNamespace,
                "invalid namespace: viewOn is empty",
            ));
        }
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'create.viewOn' is the wrong type '{}', expected type 'string'",
                crate::query::expr::type_name(other)
            )));
        }
        None => return Err(CommandError::failed_to_parse("viewOn is required")),
    };
    let pipeline = match cmd.get("pipeline") {
        None => Vec::new(),
        Some(Bson::Array(stages)) => stages.clone(),
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'create.pipeline' is the wrong type '{}', expected type 'array'",
                crate::query::expr::type_name(other)
            )));
        }
    };
    let mut checked = pipeline.clone();
    if super::merge::take_output_stage(&mut checked)?.is_some() {
        return Err(CommandError::new(
            ErrorCode::OptionNotSupportedOnView,
            "$out and $merge cannot be used in a view definition",
        ));
    }
    crate::query::aggregate::Pipeline::parse(&checked)?;
    let mut out = doc! {"viewOn": on, "pipeline": pipeline};
    if let Some(spec) = super::options::collation(cmd)?
        .as_ref()
        .and_then(Collation::spec)
    {
        out.insert("collation", spec.clone());
    }
    Ok(out)
}

/// Refuses a view that would read itself through the views it stands on.
pub(crate) fn check_cycle(state: &BranchState, db: &str, name: &str, on: &str) -> Result<()> {
    let mut next = on.to_string();
    for _ in 0..=MAX_DEPTH {
        if next == name {
            return Err(CommandError::new(
                ErrorCode::GraphContainsCycle,
                format!("View cycle detected: {db}.{name}"),
            ));
        }
        match state.collection(&Namespace::new(db, next.as_str()))? {
            Some(c) if is_view(Some(&c)) => {
                next = c
                    .options()
                    .get_str("viewOn")
                    .unwrap_or_default()
                    .to_string();
            }
            _ => return Ok(()),
        }
    }
    Err(CommandError::new(
        ErrorCode::ViewDepthLimitExceeded,
        format!("View depth too deep or view cycle detected. Maximum depth is {MAX_DEPTH}"),
    ))
}

/// Refuses `$lookup` and `$graphLookup` from a view (its `from` is resolved as a collection,
/// which would find no documents).
pub(crate) fn refuse_lookups_of_views(
    state: &BranchState,
    db: &str,
    stages: &[Bson],
) -> Result<()> {
    for stage in stages {
        for name in ["$lookup", "$graphLookup"] {
            let Some(from) = stage
                .as_document()
                .and_then(|s| s.get_document(name).ok())
                .and_then(|l| l.get_str("from").ok())
            else {
                continue;
            };
            if is_view(state.collection(&Namespace::new(db, from))?.as_ref()) {
                return Err(CommandError::not_implemented(&format!(
                    "{name} from the view {db}.{from}"
                )));
            }
        }
    }
    Ok(())
}

/// The stages a `find` on a view adds after the view's pipeline.
pub(crate) fn find_stages(
    filter: Option<Document>,
    sort: Option<&Document>,
    skip: i64,
    limit: i64,
    projection: Option<&Document>,
) -> Vec<Bson> {
    let mut out = Vec::new();
    if let Some(f) = filter.filter(|f| !f.is_empty()) {
        out.push(Bson::Document(doc! {"$match": f}));
    }
    if let Some(s) = sort.filter(|s| !s.is_empty()) {
        out.push(Bson::Document(doc! {"$sort": s.clone()}));
    }
    if skip > 0 {
        out.push(Bson::Document(doc! {"$skip": skip}));
    }
    if limit > 0 {
        out.push(Bson::Document(doc! {"$limit": limit}));
    }
    if let Some(p) = projection.filter(|p| !p.is_empty()) {
        out.push(Bson::Document(doc! {"$project": p.clone()}));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_options_are_validated() {
        let ok = options(&doc! {"create": "v", "viewOn": "c", "pipeline": [{"$match": {"a": 1}}]})
            .unwrap();
        assert_eq!(ok.get_str("viewOn").unwrap(), "c");
        let code = |cmd: Document| options(&cmd).unwrap_err().code;
        assert_eq!(
            code(doc! {"create": "v", "viewOn": 1}),
            ErrorCode::TypeMismatch
        );
        assert_eq!(
            code(doc! {"create": "v", "viewOn": ""}),
            ErrorCode::InvalidNamespace
        );
        assert_eq!(
            code(doc! {"create": "v", "viewOn": "c", "pipeline": {}}),
            ErrorCode::TypeMismatch
        );
        assert_eq!(
            code(doc! {"create": "v", "viewOn": "c", "capped": true}),
            ErrorCode::InvalidOptions
        );
        assert_eq!(
            code(doc! {"create": "v", "viewOn": "c", "pipeline": [{"$out": "x"}]}),
            ErrorCode::OptionNotSupportedOnView
        );
        // A pipeline that does not parse fails as aggregate would.
        assert!(options(&doc! {"create": "v", "viewOn": "c", "pipeline": [{"$nope": 1}]}).is_err());
    }

    #[test]
    fn find_becomes_stages() {
        let s = find_stages(
            Some(doc! {"a": 1}),
            Some(&doc! {"b": -1}),
            2,
            3,
            Some(&doc! {"a": 1}),
        );
        assert_eq!(s.len(), 5);
        assert!(find_stages(Some(doc! {}), None, 0, 0, None).is_empty());
    }
}
