//! Writes: insert, update, delete, findAndModify.
//!
//! Each command is resolved inside `Wal::write`'s closure against the
//! branch's head: the closure works on an O(1) clone of that state, applying
//! each op as it emits it so later statements of the batch see earlier ones,
//! and returns the physical ops (full post-images) plus the reply's counts.
//! The reply is sent only after the commit is durable.

use std::cmp::Ordering;
use std::sync::Arc;

use argon_wal::{BranchState, DocOp, Namespace};
use bson::{Bson, Document, doc, oid::ObjectId};

use super::{Ctx, collection_name, commit_write, opt_bool, opt_doc};
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::compare::{compare, type_rank};
use crate::query::update::upsert_document;
use crate::query::{Filter, Projection, SortSpec, UpdateSpec, path};

// ---- unique keys ---------------------------------------------------------------

/// The key `spec` (an index) gives `doc`, as `{field: value}`; `None` for a
/// sparse index when the document has none of the fields.
fn index_key(spec: &Document, doc: &Document) -> Option<Document> {
    let pattern = spec.get_document("key").ok()?;
    let sparse =
        spec.get_bool("sparse").unwrap_or(false) || spec.contains_key("partialFilterExpression");
    let mut key = Document::new();
    let mut any = false;
    for (field, _) in pattern {
        let v = path::get(doc, field).cloned();
        any |= v.is_some();
        key.insert(field.clone(), v.unwrap_or(Bson::Null));
    }
    if sparse && !any {
        return None;
    }
    if let Some(Bson::Document(pfe)) = spec.get("partialFilterExpression")
        && let Ok(f) = Filter::parse(pfe)
        && !f.matches(doc)
    {
        return None;
    }
    Some(key)
}

fn same_key(a: &Document, b: &Document) -> bool {
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((_, x), (_, y))| {
            type_rank(x) == type_rank(y) && compare(x, y) == Ordering::Equal
        })
}

fn format_key(key: &Document) -> String {
    let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{{ {} }}", parts.join(", "))
}

/// MongoDB's E11000 error, with `keyPattern` and `keyValue`.
pub(crate) fn duplicate_key(ns: &Namespace, spec: &Document, key: &Document) -> CommandError {
    let name = spec.get_str("name").unwrap_or("_id_");
    let pattern = spec
        .get_document("key")
        .cloned()
        .unwrap_or_else(|_| doc! {"_id": 1});
    CommandError::new(
        ErrorCode::DuplicateKey,
        format!(
            "E11000 duplicate key error collection: {ns} index: {name} dup key: {}",
            format_key(key)
        ),
    )
    .with_extra(doc! {"keyPattern": pattern, "keyValue": key.clone()})
}

/// Refuses `doc` if another document of `ns` has its `_id` (when `insert`)
/// or the same key in a unique index.
fn check_unique(state: &BranchState, ns: &Namespace, doc: &Document, insert: bool) -> Result<()> {
    let Some(coll) = state.collection(ns) else {
        return Ok(());
    };
    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
    if insert && coll.get(&id).is_some() {
        return Err(duplicate_key(
            ns,
            &doc! {"name": "_id_", "key": {"_id": 1}},
            &doc! {"_id": id},
        ));
    }
    for spec in coll.indexes().iter().skip(1) {
        check_keys(spec, doc)?;
        if !spec.get_bool("unique").unwrap_or(false) {
            continue;
        }
        let Some(key) = index_key(spec, doc) else {
            continue;
        };
        // The WAL keeps a key map for plain indexes: an O(log n) check.
        let name = spec.get_str("name").unwrap_or_default();
        if coll.has_key_map(name) {
            match coll.unique_conflict(name, doc) {
                Ok(Some(_)) => return Err(duplicate_key(ns, spec, &key)),
                Ok(None) => continue,
                // Parallel arrays and the like: the scan below decides.
                Err(_) => {}
            }
        }
        for other in coll.iter().map(argon_wal::rawdoc::parse) {
            let same_doc = other.get("_id").is_some_and(|o| {
                type_rank(o) == type_rank(&id) && compare(o, &id) == Ordering::Equal
            });
            if !same_doc && index_key(spec, &other).is_some_and(|k| same_key(&k, &key)) {
                return Err(duplicate_key(ns, spec, &key));
            }
        }
    }
    Ok(())
}

/// A transaction's unique-index check on the head it commits on: another
/// commit since its snapshot may hold one of its keys.
pub(crate) fn recheck_unique(head: &BranchState, ops: &[DocOp]) -> Result<()> {
    let mut st = head.clone();
    for op in ops {
        if let DocOp::Put { ns, doc, .. } = op {
            check_unique(&st, ns, &argon_wal::rawdoc::parse(doc), false)?;
        }
        st.apply(op);
    }
    Ok(())
}

/// Every index's keys, unique or not, follow the WAL's one rule
/// (`argon_wal::indexkey`): a document with parallel arrays under a compound
/// index cannot be indexed (171), as in MongoDB.
fn check_keys(spec: &Document, doc: &Document) -> Result<()> {
    match argon_wal::CollectionState::index_keys(spec, doc) {
        Err(argon_wal::IndexKeyError::ParallelArrays(a, b)) => Err(CommandError::new(
            ErrorCode::CannotIndexParallelArrays,
            format!("cannot index parallel arrays [{a}] [{b}]"),
        )),
        _ => Ok(()),
    }
}

/// Refuses a new index that an existing document cannot be indexed under.
pub(crate) fn check_indexable(
    mut docs: impl Iterator<Item = Document>,
    spec: &Document,
) -> Result<()> {
    docs.try_for_each(|d| check_keys(spec, &d))
}

/// Refuses a new unique index if existing documents already share a key.
pub(crate) fn check_unique_over(
    docs: impl Iterator<Item = Document>,
    spec: &Document,
    ns: &Namespace,
) -> Result<()> {
    let mut keys: Vec<Document> = docs.filter_map(|d| index_key(spec, &d)).collect();
    keys.sort_by(crate::query::compare::compare_documents);
    for w in keys.windows(2) {
        if same_key(&w[0], &w[1]) {
            return Err(duplicate_key(ns, spec, &w[0]));
        }
    }
    Ok(())
}

fn put(st: &mut BranchState, ops: &mut Vec<DocOp>, ns: &Namespace, doc: &Document) -> Result<()> {
    let raw = argon_wal::rawdoc::encode(doc).map_err(|e| CommandError::bad_value(e.to_string()))?;
    crate::limits::check_storage(doc, raw.as_bytes().len())?;
    let op = DocOp::Put {
        ns: ns.clone(),
        id: doc.get("_id").cloned().unwrap_or(Bson::Null),
        doc: raw,
    };
    st.apply(&op);
    ops.push(op);
    Ok(())
}

fn ensure_collection(st: &mut BranchState, ops: &mut Vec<DocOp>, ns: &Namespace) {
    if st.collection(ns).is_none() {
        let op = DocOp::CreateCollection {
            ns: ns.clone(),
            options: Document::new(),
        };
        st.apply(&op);
        ops.push(op);
    }
}

fn validate_id(doc: &Document) -> Result<()> {
    match doc.get("_id") {
        Some(Bson::Array(_)) => Err(CommandError::new(
            ErrorCode::InvalidIdField,
            "The '_id' value cannot be of type array",
        )),
        Some(Bson::RegularExpression(_)) => Err(CommandError::new(
            ErrorCode::InvalidIdField,
            "The '_id' value cannot be of type regex",
        )),
        Some(Bson::Undefined) => Err(CommandError::new(
            ErrorCode::InvalidIdField,
            "The '_id' value cannot be of type undefined",
        )),
        _ => Ok(()),
    }
}

/// A new document with `_id` first (an ObjectId if it had none).
fn with_id_first(doc: &Document) -> Document {
    let mut out = Document::new();
    out.insert(
        "_id",
        doc.get("_id")
            .cloned()
            .unwrap_or_else(|| Bson::ObjectId(ObjectId::new())),
    );
    for (k, v) in doc {
        if k != "_id" {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn statements<'a>(cmd: &'a Document, key: &str) -> Result<&'a Vec<Bson>> {
    match cmd.get(key) {
        Some(Bson::Array(a)) => Ok(a),
        Some(_) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' must be an array"
        ))),
        None => Err(CommandError::failed_to_parse(format!(
            "BSON field '{key}' is missing but a required field"
        ))),
    }
}

fn write_reply(n: i64, errors: Vec<Document>) -> Document {
    let mut out = doc! {"n": super::count_value(n)};
    if !errors.is_empty() {
        out.insert("writeErrors", errors);
    }
    out
}

// ---- insert -----------------------------------------------------------------------

pub async fn insert(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "insert")?;
    let target = ctx.target()?;
    target.writable()?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let docs: Vec<Result<Document>> = statements(ctx.cmd, "documents")?
        .iter()
        .map(|d| match d {
            Bson::Document(d) => validate_id(d).map(|_| with_id_first(d)),
            other => Err(CommandError::type_mismatch(format!(
                "BSON field 'insert.documents' items must be objects, found {}",
                crate::query::expr::type_name(other)
            ))),
        })
        .collect();
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    commit_write(ctx, &target, move |state| {
        let mut st = state.clone();
        let mut ops = Vec::with_capacity(docs.len() + 1);
        let mut errors = Vec::new();
        let mut n = 0i64;
        ensure_collection(&mut st, &mut ops, &ns);
        for (i, d) in docs.iter().enumerate() {
            let outcome = d.as_ref().map_err(Clone::clone).and_then(|d| {
                check_unique(&st, &ns, d, true)?;
                put(&mut st, &mut ops, &ns, d)?;
                Ok(())
            });
            match outcome {
                Ok(()) => n += 1,
                Err(e) => {
                    errors.push(e.to_write_error(i));
                    if ordered {
                        break;
                    }
                }
            }
        }
        Ok((ops, write_reply(n, errors)))
    })
    .await
}

// ---- update -----------------------------------------------------------------------

struct UpdateStmt {
    q: Document,
    filter: Filter,
    u: UpdateSpec,
    upsert: bool,
    multi: bool,
}

fn parse_update_stmt(s: &Bson) -> Result<UpdateStmt> {
    let Bson::Document(s) = s else {
        return Err(CommandError::type_mismatch(
            "each update statement must be an object",
        ));
    };
    let q = opt_doc(s, "q")?.cloned().ok_or_else(|| {
        CommandError::failed_to_parse(
            "BSON field 'update.updates.q' is missing but a required field",
        )
    })?;
    let u = s.get("u").ok_or_else(|| {
        CommandError::failed_to_parse(
            "BSON field 'update.updates.u' is missing but a required field",
        )
    })?;
    if s.contains_key("arrayFilters") {
        return Err(CommandError::not_implemented("arrayFilters"));
    }
    let stmt = UpdateStmt {
        filter: Filter::parse(&q)?,
        q,
        u: UpdateSpec::parse(u)?,
        upsert: opt_bool(s, "upsert", false)?,
        multi: opt_bool(s, "multi", false)?,
    };
    if stmt.multi && stmt.u.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        ));
    }
    Ok(stmt)
}

struct Updated {
    matched: i64,
    modified: i64,
    upserted: Option<Bson>,
}

fn apply_update(
    st: &mut BranchState,
    ops: &mut Vec<DocOp>,
    ns: &Namespace,
    s: &UpdateStmt,
    deadline: Deadline,
) -> Result<Updated> {
    let targets =
        super::read::matching_limit(st, ns, &s.filter, (!s.multi).then_some(1), deadline)?;
    let mut out = Updated {
        matched: targets.len() as i64,
        modified: 0,
        upserted: None,
    };
    for old in targets {
        let new = s.u.apply(&old, false)?;
        if new != old {
            check_unique(st, ns, &new, false)?;
            put(st, ops, ns, &new)?;
            out.modified += 1;
        }
    }
    if out.matched == 0 && s.upsert {
        let doc = upsert_document(&s.q, &s.u)?;
        validate_id(&doc)?;
        ensure_collection(st, ops, ns);
        check_unique(st, ns, &doc, true)?;
        out.upserted = doc.get("_id").cloned();
        put(st, ops, ns, &doc)?;
    }
    Ok(out)
}

pub async fn update(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "update")?;
    let target = ctx.target()?;
    target.writable()?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let stmts: Arc<Vec<Result<UpdateStmt>>> = Arc::new(
        statements(ctx.cmd, "updates")?
            .iter()
            .map(parse_update_stmt)
            .collect(),
    );
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let deadline = ctx.deadline()?;
    commit_write(ctx, &target, move |state| {
        let mut st = state.clone();
        let mut ops = Vec::new();
        let (mut n, mut modified) = (0i64, 0i64);
        let mut upserted = Vec::new();
        let mut errors = Vec::new();
        for (i, s) in stmts.iter().enumerate() {
            let r = s
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|s| apply_update(&mut st, &mut ops, &ns, s, deadline));
            match r {
                Ok(u) => {
                    n += u.matched;
                    modified += u.modified;
                    if let Some(id) = u.upserted {
                        n += 1;
                        upserted.push(doc! {"index": i as i32, "_id": id});
                    }
                }
                Err(e) => {
                    errors.push(e.to_write_error(i));
                    if ordered {
                        break;
                    }
                }
            }
        }
        let mut out = write_reply(n, errors);
        out.insert("nModified", super::count_value(modified));
        if !upserted.is_empty() {
            out.insert("upserted", upserted);
        }
        Ok((ops, out))
    })
    .await
}

// ---- delete -----------------------------------------------------------------------

pub async fn delete(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "delete")?;
    let target = ctx.target()?;
    target.writable()?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let stmts: Arc<Vec<Result<(Filter, bool)>>> = Arc::new(
        statements(ctx.cmd, "deletes")?
            .iter()
            .map(|s| {
                let Bson::Document(s) = s else {
                    return Err(CommandError::type_mismatch(
                        "each delete statement must be an object",
                    ));
                };
                let q = opt_doc(s, "q")?.ok_or_else(|| {
                    CommandError::failed_to_parse(
                        "BSON field 'delete.deletes.q' is missing but a required field",
                    )
                })?;
                let limit = super::opt_i64(s, "limit")?.ok_or_else(|| {
                    CommandError::failed_to_parse(
                        "BSON field 'delete.deletes.limit' is missing but a required field",
                    )
                })?;
                if limit != 0 && limit != 1 {
                    return Err(CommandError::failed_to_parse(format!(
                        "The limit field in delete objects must be 0 or 1. Got {limit}"
                    )));
                }
                Ok((Filter::parse(q)?, limit == 1))
            })
            .collect(),
    );
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let deadline = ctx.deadline()?;
    commit_write(ctx, &target, move |state| {
        let mut st = state.clone();
        let mut ops = Vec::new();
        let mut n = 0i64;
        let mut errors = Vec::new();
        for (i, s) in stmts.iter().enumerate() {
            let found = s
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|(filter, just_one)| {
                    super::read::matching_limit(&st, &ns, filter, just_one.then_some(1), deadline)
                });
            match found {
                Ok(found) => {
                    let ids = found.into_iter().filter_map(|d| d.get("_id").cloned());
                    for id in ids {
                        let op = DocOp::Delete { ns: ns.clone(), id };
                        st.apply(&op);
                        ops.push(op);
                        n += 1;
                    }
                }
                Err(e) => {
                    errors.push(e.to_write_error(i));
                    if ordered {
                        break;
                    }
                }
            }
        }
        Ok((ops, write_reply(n, errors)))
    })
    .await
}

// ---- findAndModify ------------------------------------------------------------------

pub async fn find_and_modify(ctx: &Ctx<'_>) -> Result<Document> {
    let name = ctx.cmd.keys().next().cloned().unwrap_or_default();
    let coll = collection_name(ctx.cmd, &name)?;
    let target = ctx.target()?;
    target.writable()?;
    let q = opt_doc(ctx.cmd, "query")?.cloned().unwrap_or_default();
    let filter = Filter::parse(&q)?;
    let sort = opt_doc(ctx.cmd, "sort")?.map(SortSpec::parse).transpose()?;
    let remove = opt_bool(ctx.cmd, "remove", false)?;
    let return_new = opt_bool(ctx.cmd, "new", false)?;
    let upsert = opt_bool(ctx.cmd, "upsert", false)?;
    let fields = opt_doc(ctx.cmd, "fields")?
        .filter(|f| !f.is_empty())
        .map(Projection::parse)
        .transpose()?;
    let update = match ctx.cmd.get("update") {
        Some(u) => Some(UpdateSpec::parse(u)?),
        None => None,
    };
    match (remove, &update) {
        (true, Some(_)) => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both an update and remove=true",
            ));
        }
        (false, None) => {
            return Err(CommandError::failed_to_parse(
                "Either an update or remove=true must be specified",
            ));
        }
        (true, None) if upsert => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both upsert=true and remove=true",
            ));
        }
        (true, None) if return_new => {
            return Err(CommandError::failed_to_parse(
                "Cannot specify both new=true and remove=true; 'remove' always returns the deleted document",
            ));
        }
        _ => {}
    }
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let deadline = ctx.deadline()?;
    // The reply (projection included) is built before the commit: a retry
    // is answered with it from the log.
    let reply = move |ops, value: Option<Document>, last_error: Document| -> Result<_> {
        let value = match (value, &fields) {
            (Some(v), Some(p)) => Bson::Document(p.try_apply(&v)?),
            (Some(v), None) => Bson::Document(v),
            (None, _) => Bson::Null,
        };
        Ok((ops, doc! {"lastErrorObject": last_error, "value": value}))
    };
    commit_write(ctx, &target, move |state| {
        let mut st = state.clone();
        let mut ops = Vec::new();
        let found: Option<Document> = {
            let first_only = sort.is_none().then_some(1);
            let mut m = super::read::matching_limit(&st, &ns, &filter, first_only, deadline)?;
            if let Some(s) = &sort {
                m.sort_by(|a, b| s.compare(a, b));
            }
            m.into_iter().next()
        };
        match (found, &update) {
            (Some(old), None) => {
                let op = DocOp::Delete {
                    ns: ns.clone(),
                    id: old.get("_id").cloned().unwrap_or(Bson::Null),
                };
                st.apply(&op);
                ops.push(op);
                reply(ops, Some(old), doc! {"n": 1})
            }
            (None, None) => reply(ops, None, doc! {"n": 0}),
            (Some(old), Some(u)) => {
                let new = u.apply(&old, false)?;
                if new != old {
                    check_unique(&st, &ns, &new, false)?;
                    put(&mut st, &mut ops, &ns, &new)?;
                }
                let value = if return_new { new } else { old };
                reply(ops, Some(value), doc! {"n": 1, "updatedExisting": true})
            }
            (None, Some(u)) if upsert => {
                let doc = upsert_document(&q, u)?;
                validate_id(&doc)?;
                ensure_collection(&mut st, &mut ops, &ns);
                check_unique(&st, &ns, &doc, true)?;
                let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
                put(&mut st, &mut ops, &ns, &doc)?;
                let value = if return_new { Some(doc) } else { None };
                reply(
                    ops,
                    value,
                    doc! {"n": 1, "updatedExisting": false, "upserted": id},
                )
            }
            (None, Some(_)) => reply(ops, None, doc! {"n": 0, "updatedExisting": false}),
        }
    })
    .await
}
