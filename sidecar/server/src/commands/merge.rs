//! Aggregate's `$out` and `$merge`: the pipeline's output written to a
//! collection of the branch it reads, in one commit, through the
//! statements of `write`.

use argon_wal::{Namespace, Transaction};
use bson::{Bson, Document, doc};

use super::options;
use super::write::{Put, ensure_collection, put, with_id_first};
use super::{Ctx, collection_name, commit_write};
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::vars::Vars;
use crate::query::{Filter, UpdateSpec};

/// Where `$out` / `$merge` write, and how.
pub(crate) enum OutputStage {
    /// `$out`: the target's documents become the pipeline's output.
    Out { db: Option<String>, coll: String },
    /// `$merge`: each output document merged into the target by `on`.
    Merge(Box<MergeSpec>),
}

pub(crate) struct MergeSpec {
    db: Option<String>,
    coll: String,
    on: Vec<String>,
    when_matched: WhenMatched,
    when_not_matched: WhenNotMatched,
    /// `let` for a `whenMatched` pipeline: evaluated against each output
    /// document (default `{new: "$$ROOT"}`).
    let_spec: Option<Document>,
}

enum WhenMatched {
    Merge,
    Replace,
    KeepExisting,
    Fail,
    Pipeline(Vec<Bson>),
}

#[derive(Clone, Copy, PartialEq)]
enum WhenNotMatched {
    Insert,
    Discard,
    Fail,
}

/// `coll` or `{db, coll}`: the target of `$out` or `$merge.into`.
fn output_target(stage: &str, v: &Bson) -> Result<(Option<String>, String)> {
    let (db, coll) = match v {
        Bson::String(c) => (None, c.clone()),
        Bson::Document(d) => {
            let fields = options::Fields {
                what: if stage == "$out" {
                    "$out"
                } else {
                    "$merge.into"
                },
                known: &["db", "coll"],
                unsupported: &["timeseries"],
                generic: false,
            };
            fields.check(d, None)?;
            let db = match d.get("db") {
                Some(Bson::String(s)) => Some(s.clone()),
                None => None,
                Some(_) => {
                    return Err(CommandError::type_mismatch(format!(
                        "{stage}: 'db' must be a string"
                    )));
                }
            };
            match d.get("coll") {
                Some(Bson::String(c)) => (db, c.clone()),
                _ => {
                    return Err(CommandError::failed_to_parse(format!(
                        "{stage}: 'coll' is required and must be a string"
                    )));
                }
            }
        }
        _ => {
            return Err(CommandError::new(
                ErrorCode::Location16990,
                format!(
                    "{stage} only supports a string or object argument, not {}",
                    crate::query::expr::type_name(v)
                ),
            ));
        }
    };
    let coll = collection_name(&doc! {"target": coll}, "target")?;
    Ok((db, coll))
}

/// Takes a final `$out` or `$merge` off `stages`; one anywhere else is an
/// error (40601), as in MongoDB.
pub(crate) fn take_output_stage(stages: &mut Vec<Bson>) -> Result<Option<OutputStage>> {
    let is_output = |s: &Bson| matches!(s, Bson::Document(d) if d.len() == 1 && d.keys().any(|k| k == "$out" || k == "$merge"));
    if let Some(i) = stages.iter().position(is_output)
        && i + 1 != stages.len()
    {
        return Err(CommandError::new(
            ErrorCode::Location40601,
            "$out and $merge can only be the final stage in the pipeline",
        ));
    }
    let Some(Bson::Document(last)) = stages.last().filter(|s| is_output(s)).cloned() else {
        return Ok(None);
    };
    stages.pop();
    let Some((name, arg)) = last.into_iter().next() else {
        return Ok(None);
    };
    if name == "$out" {
        let (db, coll) = output_target("$out", &arg)?;
        return Ok(Some(OutputStage::Out { db, coll }));
    }
    let spec = match arg {
        Bson::String(_) => doc! {"into": arg},
        Bson::Document(d) => d,
        other => {
            return Err(CommandError::type_mismatch(format!(
                "$merge requires a string or object argument, not {}",
                crate::query::expr::type_name(&other)
            )));
        }
    };
    options::Fields {
        what: "$merge",
        known: &["into", "on", "let", "whenMatched", "whenNotMatched"],
        unsupported: &["targetCollectionVersion"],
        generic: false,
    }
    .check(&spec, None)?;
    let (db, coll) = output_target(
        "$merge",
        spec.get("into").ok_or_else(|| {
            CommandError::failed_to_parse(
                "BSON field '$merge.into' is missing but a required field",
            )
        })?,
    )?;
    let on = match spec.get("on") {
        None => vec!["_id".to_string()],
        Some(Bson::String(f)) => vec![f.clone()],
        Some(Bson::Array(fs)) if !fs.is_empty() => fs
            .iter()
            .map(|f| match f {
                Bson::String(s) => Ok(s.clone()),
                _ => Err(CommandError::type_mismatch(
                    "$merge 'on' must be a string or an array of strings",
                )),
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "$merge 'on' must be a string or a non-empty array of strings",
            ));
        }
    };
    for f in &on {
        crate::limits::check_path(f)?;
    }
    let when_matched = match spec.get("whenMatched") {
        None => WhenMatched::Merge,
        Some(Bson::String(s)) => match s.as_str() {
            "merge" => WhenMatched::Merge,
            "replace" => WhenMatched::Replace,
            "keepExisting" => WhenMatched::KeepExisting,
            "fail" => WhenMatched::Fail,
            other => {
                return Err(CommandError::bad_value(format!(
                    "Enumeration value '{other}' for field '$merge.whenMatched' is not a valid value."
                )));
            }
        },
        Some(Bson::Array(p)) => WhenMatched::Pipeline(p.clone()),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "$merge 'whenMatched' must be a string or a pipeline",
            ));
        }
    };
    let when_not_matched = match spec.get("whenNotMatched") {
        None => WhenNotMatched::Insert,
        Some(Bson::String(s)) => match s.as_str() {
            "insert" => WhenNotMatched::Insert,
            "discard" => WhenNotMatched::Discard,
            "fail" => WhenNotMatched::Fail,
            other => {
                return Err(CommandError::bad_value(format!(
                    "Enumeration value '{other}' for field '$merge.whenNotMatched' is not a valid value."
                )));
            }
        },
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "$merge 'whenNotMatched' must be a string",
            ));
        }
    };
    let let_spec = match spec.get("let") {
        None | Some(Bson::Null) => None,
        Some(Bson::Document(d)) if !matches!(when_matched, WhenMatched::Pipeline(_)) => {
            let _ = d;
            return Err(CommandError::new(
                ErrorCode::Location51199,
                "Cannot use 'let' variables with 'whenMatched: merge' mode, 'let' requires a pipeline",
            ));
        }
        Some(Bson::Document(d)) => Some(d.clone()),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "$merge 'let' must be an object",
            ));
        }
    };
    if let WhenMatched::Pipeline(stages) = &when_matched {
        // Parsed now (its variables bound to null), so a bad pipeline fails
        // before anything is written.
        let mut placeholders = Document::new();
        match &let_spec {
            None => {
                placeholders.insert("new", Bson::Null);
            }
            Some(spec) => {
                for name in spec.keys() {
                    placeholders.insert(name.clone(), Bson::Null);
                }
            }
        }
        let vars = Vars::from_values(placeholders)?;
        UpdateSpec::parse(&Bson::Array(vars.bind_pipeline(stages)?))?;
    }
    Ok(Some(OutputStage::Merge(Box::new(MergeSpec {
        db,
        coll,
        on,
        when_matched,
        when_not_matched,
        let_spec,
    }))))
}

impl OutputStage {
    fn target(&self) -> (&Option<String>, &str) {
        match self {
            OutputStage::Out { db, coll } => (db, coll),
            OutputStage::Merge(m) => (&m.db, &m.coll),
        }
    }
}

/// Runs `pipeline` over `coll` and writes its output by `stage`, in one
/// commit: the source is read from the state the commit is resolved on,
/// and nothing is written if any document fails. The reply is an empty
/// cursor, as MongoDB's.
pub(crate) async fn aggregate_into(
    ctx: &Ctx<'_>,
    source: crate::target::Target,
    coll: String,
    pipeline: crate::query::aggregate::Pipeline,
    stage: OutputStage,
    budget: crate::spill::StageBudget,
    collation: Option<crate::query::collation::Collation>,
) -> Result<Document> {
    if ctx.txn.is_some() {
        return Err(CommandError::new(
            ErrorCode::OperationNotSupportedInTransaction,
            "$out and $merge cannot be used in a transaction",
        ));
    }
    let (db, out_coll) = stage.target();
    let target = match db {
        Some(db) => ctx.svc.target(db)?,
        None => source.clone(),
    };
    target.writable()?;
    if target.branch != source.branch || source.at.is_some() {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            format!(
                "$out and $merge write to the branch they read ({:?}), at its head",
                source.raw
            ),
        ));
    }
    let out_ns = Namespace::new(target.db.as_str(), out_coll);
    let src_db = source.db.clone();
    if let OutputStage::Merge(m) = &stage
        && m.on != ["_id"]
    {
        // `on` must be backed by a unique index, checked on the head now
        // and again inside the commit.
        let state = ctx.read_state(&target).await?;
        check_merge_index(state.collection(&out_ns)?.as_ref(), &m.on)?;
    }
    let deadline = ctx.deadline()?;
    let shown = format!("{}.{coll}", source.raw);
    commit_write(ctx, &target, move |t| {
        let snapshot = t.state().clone();
        super::view::refuse_view(&snapshot, &out_ns)?;
        if super::view::is_view(
            snapshot
                .collection(&Namespace::new(src_db.as_str(), coll.as_str()))?
                .as_ref(),
        ) {
            return Err(CommandError::not_implemented("$out and $merge from a view"));
        }
        // The pipeline and `$merge`'s `on` match under the aggregate's
        // collation, or the source collection's default.
        let _collation = crate::query::collation::for_collection(
            collation.as_ref(),
            snapshot
                .collection(&Namespace::new(src_db.as_str(), coll.as_str()))?
                .as_ref(),
        )?
        .enter();
        let _text = match pipeline.leading_filter() {
            Some(f) => crate::query::text::bind(
                f,
                snapshot
                    .collection(&Namespace::new(src_db.as_str(), coll.as_str()))?
                    .as_ref(),
            )?,
            None => crate::query::text::Binding::none(),
        }
        .enter();
        let mut pipeline = pipeline.clone();
        pipeline.bind_geo_near(
            snapshot
                .collection(&Namespace::new(src_db.as_str(), coll.as_str()))?
                .as_ref(),
            &shown,
        )?;
        let mut scan = crate::cursor::PipelineScan::new(snapshot, &src_db, &coll, pipeline, budget);
        if let OutputStage::Merge(m) = &stage
            && m.on != ["_id"]
        {
            check_merge_index(t.state().collection(&out_ns)?.as_ref(), &m.on)?;
        }
        if let OutputStage::Out { .. } = &stage {
            // The target's documents go; its indexes and options stay.
            let ids: Vec<Bson> = match t.state().collection(&out_ns)? {
                Some(c) => c
                    .iter()
                    .map(|raw| Ok(argon_wal::rawdoc::id_of(&raw?).unwrap_or(Bson::Null)))
                    .collect::<Result<_>>()?,
                None => Vec::new(),
            };
            for id in ids {
                t.delete(&out_ns, id).map_err(crate::wal_error::from_wal)?;
            }
        }
        ensure_collection(t, &out_ns)?;
        loop {
            let batch = scan.next_batch(1000, deadline)?;
            if batch.is_empty() && scan.is_done() {
                break;
            }
            for d in batch {
                let Bson::Document(d) = d else { continue };
                match &stage {
                    OutputStage::Out { .. } => {
                        put(t, &out_ns, &with_id_first(&d), Put::Insert)?;
                    }
                    OutputStage::Merge(m) => merge_one(t, &out_ns, m, d, deadline)?,
                }
            }
            if scan.is_done() {
                break;
            }
        }
        Ok(doc! {"cursor": {"id": 0i64, "ns": shown.clone(), "firstBatch": []}})
    })
    .await
}

/// `on` fields other than `_id` need a unique index on exactly them.
fn check_merge_index(coll: Option<&argon_wal::CollectionState>, on: &[String]) -> Result<()> {
    let found = coll.is_some_and(|c| {
        c.indexes().iter().any(|i| {
            i.get_bool("unique").unwrap_or(false)
                && i.get_document("key")
                    .is_ok_and(|k| k.len() == on.len() && on.iter().all(|f| k.contains_key(f)))
        })
    });
    if found {
        Ok(())
    } else {
        Err(CommandError::new(
            ErrorCode::Location51183,
            "Cannot find index to verify that join fields will be unique",
        ))
    }
}

/// One output document of `$merge`, matched by `on` and written by its modes.
fn merge_one(
    t: &mut Transaction,
    ns: &Namespace,
    m: &MergeSpec,
    mut d: Document,
    deadline: Deadline,
) -> Result<()> {
    if m.on == ["_id"] && !d.contains_key("_id") {
        d = with_id_first(&d);
    }
    let mut key = Document::new();
    for f in &m.on {
        match crate::query::path::get(&d, f) {
            None | Some(Bson::Null) | Some(Bson::Undefined) | Some(Bson::Array(_)) => {
                return Err(CommandError::new(
                    ErrorCode::Location51132,
                    format!(
                        "$merge write error: 'on' field '{f}' cannot be missing, null, undefined or an array"
                    ),
                ));
            }
            Some(v) => {
                key.insert(f.clone(), v.clone());
            }
        }
    }
    let existing = if m.on == ["_id"] {
        match t.state().collection(ns)? {
            Some(c) => c.get_document(key.get("_id").unwrap_or(&Bson::Null))?,
            None => None,
        }
    } else {
        let filter = Filter::parse(&key)?;
        super::read::matching_limit(t.state(), ns, &filter, None, Some(1), deadline)?
            .into_iter()
            .next()
    };
    let Some(old) = existing else {
        return match m.when_not_matched {
            WhenNotMatched::Insert => put(t, ns, &with_id_first(&d), Put::Insert),
            WhenNotMatched::Discard => Ok(()),
            WhenNotMatched::Fail => Err(CommandError::new(
                ErrorCode::MergeStageNoMatchingDocument,
                "$merge could not find a matching document in the target collection for at least one document in the source collection",
            )),
        };
    };
    let id = old.get("_id").cloned().unwrap_or(Bson::Null);
    let new = match &m.when_matched {
        WhenMatched::KeepExisting => return Ok(()),
        WhenMatched::Fail => {
            return Err(CommandError::new(
                ErrorCode::DuplicateKey,
                format!(
                    "$merge with whenMatched: fail found an existing document with the same values of 'on': {key}"
                ),
            ));
        }
        WhenMatched::Merge => {
            let mut new = old.clone();
            for (k, v) in d {
                new.insert(k, v);
            }
            new
        }
        WhenMatched::Replace => {
            if d.get("_id")
                .is_some_and(|v| !crate::query::compare::equal(v, &id))
            {
                return Err(CommandError::new(
                    ErrorCode::ImmutableField,
                    "$merge failed to update the matching document, did you attempt to modify the _id or the shard key?",
                ));
            }
            let mut new = doc! {"_id": id.clone()};
            for (k, v) in d {
                if k != "_id" {
                    new.insert(k, v);
                }
            }
            new
        }
        WhenMatched::Pipeline(stages) => {
            // `$$new` (or the `let` variables) hold the output document.
            let mut values = Document::new();
            match &m.let_spec {
                None => {
                    values.insert("new", d.clone());
                }
                Some(spec) => {
                    for (name, e) in spec {
                        let v = crate::query::expr::Expr::parse(e)?
                            .eval(&d)?
                            .unwrap_or(Bson::Null);
                        values.insert(name.clone(), v);
                    }
                }
            }
            let vars = Vars::from_values(values)?;
            let u = UpdateSpec::parse(&Bson::Array(vars.bind_pipeline(stages)?))?;
            u.apply(&old, false)?
        }
    };
    if new != old {
        put(t, ns, &new, Put::Update)?;
    }
    Ok(())
}
