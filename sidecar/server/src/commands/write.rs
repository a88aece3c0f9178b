//! Writes: insert, update, delete, findAndModify (the client-level
//! `bulkWrite` is in `bulk_write`, aggregate's `$out`/`$merge` in `merge`,
//! both built on the statements here).
//!
//! Each command is resolved by a closure that reads and writes through an
//! `argon_wal::Transaction` (`commit_write`): begun by the engine on the
//! head it commits on (or the session's transaction), so later statements
//! of a batch see earlier ones, index rules are the WAL's, each op is
//! applied once, and the closure returns the reply. The reply is sent only
//! after the commit is durable.

use std::sync::Arc;

use argon_wal::{Namespace, Transaction};
use bson::{Bson, Document, doc, oid::ObjectId};

use super::batch::{Batch, Parts, Progress, Statement, commit_batch};
use super::options::{self, check_hint};
use super::{Ctx, collection_name, commit_write, opt_bool, opt_doc};
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::collation::{self, Collation};
use crate::query::update::upsert_document;
use crate::query::vars::Vars;
use crate::query::{Filter, Projection, SortSpec, UpdateSpec};

/// How a document comes to be written: each has MongoDB's own size error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Put {
    /// An insert's document: its size was checked as sent
    /// (`limits::check_insert_size`, before an `_id` was added).
    Insert,
    /// An update's result: 17419 above 16 MiB.
    Update,
    /// An upsert's new document: 17420 above 16 MiB.
    Upsert,
}

/// Writes `doc` through the transaction: the collection's validator
/// (`crate::validation`, the one place), storage limits here (the
/// server's), index rules in the WAL (`argon_wal::unique`, the one place),
/// a capped collection's limits after an insert (`crate::capped`).
pub(super) fn put(t: &mut Transaction, ns: &Namespace, doc: &Document, how: Put) -> Result<()> {
    crate::validation::check(t.state(), ns, doc)?;
    // What the collection's text index cannot index (its language fields).
    crate::query::text::check_document(t.state().collection(ns)?.as_ref(), doc)?;
    // What the collection's geo indexes cannot index (16755, 13026...).
    crate::query::geo::check_document(t.state().collection(ns)?.as_ref(), doc)?;
    let raw = argon_wal::rawdoc::encode(doc).map_err(|e| CommandError::bad_value(e.to_string()))?;
    match how {
        Put::Insert => {}
        Put::Update => crate::limits::check_update_size(raw.as_bytes().len())?,
        Put::Upsert => crate::limits::check_upsert_size(raw.as_bytes().len())?,
    }
    crate::limits::check_storage_depth(doc)?;
    let inserts = how != Put::Update;
    if inserts {
        crate::capped::check_insert(t, ns, raw.as_bytes().len())?;
    }
    t.put_encoded(ns, doc, raw, inserts)
        .map_err(crate::wal_error::from_wal)?;
    if inserts {
        // A capped collection's oldest documents go in the same commit.
        crate::capped::evict(t, ns)?;
    }
    Ok(())
}

pub(super) fn ensure_collection(t: &mut Transaction, ns: &Namespace) -> Result<()> {
    super::view::refuse_view(t.state(), ns)?;
    t.ensure_collection(ns).map_err(crate::wal_error::from_wal)
}

pub(super) fn validate_id(doc: &Document) -> Result<()> {
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
        Some(Bson::Document(id)) => check_id_field_names(id),
        _ => Ok(()),
    }
}

/// An `_id` that is a document may not hold `$`-prefixed field names, at
/// any depth (MongoDB's storage validation; other fields may since 5.0).
fn check_id_field_names(id: &Document) -> Result<()> {
    for (k, v) in id {
        if k.starts_with('$') {
            return Err(CommandError::new(
                ErrorCode::DollarPrefixedFieldName,
                format!(
                    "_id fields may not contain '$'-prefixed fields: {k} is not valid for storage."
                ),
            ));
        }
        match v {
            Bson::Document(d) => check_id_field_names(d)?,
            Bson::Array(items) => {
                for i in items {
                    if let Bson::Document(d) = i {
                        check_id_field_names(d)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A new document with `_id` first (an ObjectId if it had none).
pub(super) fn with_id_first(doc: &Document) -> Document {
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

/// A write command's statements: an array of 1 to 100,000 (`maxWriteBatchSize`).
pub(super) fn statements<'a>(cmd: &'a Document, key: &str) -> Result<&'a Vec<Bson>> {
    match cmd.get(key) {
        Some(Bson::Array(a)) => {
            crate::limits::check_write_batch(a.len())?;
            Ok(a)
        }
        Some(_) => Err(CommandError::type_mismatch(format!(
            "BSON field '{key}' must be an array"
        ))),
        None => Err(CommandError::failed_to_parse(format!(
            "BSON field '{key}' is missing but a required field"
        ))),
    }
}

// ---- insert -----------------------------------------------------------------------

pub async fn insert(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "insert")?;
    options::INSERT.check(ctx.cmd, Some("insert"))?;
    let target = ctx.target()?;
    target.writable()?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let docs: Vec<Result<Document>> = statements(ctx.cmd, "documents")?
        .iter()
        .map(|d| match d {
            // A document over 16 MiB fails alone (BadValue), as in mongod;
            // the rest of the batch goes on by its ordered/unordered rule.
            Bson::Document(d) => crate::limits::check_insert_size(d)
                .and_then(|()| validate_id(d))
                .map(|()| with_id_first(d)),
            other => Err(CommandError::type_mismatch(format!(
                "BSON field 'insert.documents' items must be objects, found {}",
                crate::query::expr::type_name(other)
            ))),
        })
        .collect();
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let start = Batch::new(docs.len(), false);
    commit_batch(ctx, &target, start, move |t, b, parts| {
        ensure_collection(t, &ns)?;
        while !b.done() {
            if parts.full_before_statement(t) {
                return Ok(());
            }
            let outcome = docs[b.next]
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|d| put(t, &ns, d, Put::Insert));
            match outcome {
                Ok(()) => {
                    b.statement.n = 1;
                    b.complete_statement();
                }
                Err(e) => b.fail_statement(&e, ordered),
            }
        }
        Ok(())
    })
    .await
}

// ---- update -----------------------------------------------------------------------

pub(super) struct UpdateStmt {
    q: Document,
    filter: Filter,
    u: UpdateSpec,
    upsert: bool,
    multi: bool,
    /// Which one document an update of one updates (MongoDB 8.0).
    sort: Option<SortSpec>,
    hint: Option<Bson>,
    /// Its own collation (`None`: the collection's default).
    collation: Option<Collation>,
}

/// A pipeline update's `u` with the command's variables bound; an
/// operator update or a replacement as sent (its values are literals).
fn bind_update(u: &Bson, vars: &Vars) -> Result<Bson> {
    match u {
        Bson::Array(stages) => Ok(Bson::Array(vars.bind_pipeline(stages)?)),
        other => Ok(other.clone()),
    }
}

pub(super) fn parse_update_stmt(s: &Bson, vars: &Vars) -> Result<UpdateStmt> {
    let Bson::Document(s) = s else {
        return Err(CommandError::type_mismatch(
            "each update statement must be an object",
        ));
    };
    options::UPDATE_STATEMENT.check(s, None)?;
    let collation = options::collation(s)?;
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
    let q = vars.bind_filter(&q)?;
    // `sort: {$natural: ±1}` is a hint, as on a find.
    let natural = options::natural_sort(opt_doc(s, "sort")?, s.get("hint"))?;
    let stmt = UpdateStmt {
        filter: Filter::parse_query(&q)?,
        q,
        u: UpdateSpec::parse_with(
            &bind_update(u, &vars.with_constants(s.get("c"))?)?,
            s.get("arrayFilters"),
        )?,
        upsert: opt_bool(s, "upsert", false)?,
        multi: opt_bool(s, "multi", false)?,
        sort: match &natural {
            Some(_) => None,
            None => opt_doc(s, "sort")?
                .filter(|d| !d.is_empty())
                .map(SortSpec::parse)
                .transpose()?,
        },
        hint: natural.or_else(|| s.get("hint").cloned()),
        collation,
    };
    if stmt.multi && stmt.u.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        ));
    }
    if stmt.multi && opt_doc(s, "sort")?.is_some_and(|d| !d.is_empty()) {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            "Cannot specify sort with multi=true",
        ));
    }
    Ok(stmt)
}

/// The `_id`s an update statement writes, in order: one document at a time
/// after this, so an update of many large documents holds one parsed
/// document, not all of them.
fn update_targets(
    t: &Transaction,
    ns: &Namespace,
    s: &UpdateStmt,
    deadline: Deadline,
) -> Result<Vec<Bson>> {
    check_hint(s.hint.as_ref(), t.state().collection(ns)?.as_ref())?;
    match &s.sort {
        Some(sort) => Ok(super::read::first_in_order(
            t.state(),
            ns,
            &s.filter,
            s.hint.as_ref(),
            sort,
            deadline,
        )?
        .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
        .into_iter()
        .collect()),
        None => super::read::matching_ids(
            t.state(),
            ns,
            &s.filter,
            s.hint.as_ref(),
            (!s.multi).then_some(1),
            deadline,
        ),
    }
}

/// Updates the document `id`: None when it is gone (or, for a target
/// matched in an earlier commit, `recheck`, no longer matches), else
/// whether it changed.
fn update_target(
    t: &mut Transaction,
    ns: &Namespace,
    s: &UpdateStmt,
    id: &Bson,
    recheck: bool,
) -> Result<Option<bool>> {
    let Some(old) = (match t.state().collection(ns)? {
        Some(c) => c.get_document(id)?,
        None => None,
    }) else {
        return Ok(None);
    };
    if recheck && !s.filter.try_matches(&old)? {
        return Ok(None);
    }
    let new = s.u.apply_matched(&old, false, Some(&s.filter))?;
    if new == old {
        return Ok(Some(false));
    }
    put(t, ns, &new, Put::Update)?;
    Ok(Some(true))
}

/// Inserts an upsert's new document; its `_id`.
fn upsert(t: &mut Transaction, ns: &Namespace, s: &UpdateStmt) -> Result<Bson> {
    let doc = upsert_document(&s.q, &s.u)?;
    validate_id(&doc)?;
    ensure_collection(t, ns)?;
    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
    put(t, ns, &doc, Put::Upsert)?;
    Ok(id)
}

/// Runs an update statement from where it stands (its remaining targets
/// when an earlier part split it), stopping before a document when `parts`
/// says the part is full (then `at.is_split()`).
pub(super) fn run_update_statement(
    t: &mut Transaction,
    ns: &Namespace,
    s: &UpdateStmt,
    at: &mut Statement,
    parts: &Parts,
    deadline: Deadline,
) -> Result<()> {
    // The filter (its recheck in a later part too), the sort, arrayFilters
    // and the update operators compare under the statement's collation,
    // or the collection's default.
    super::view::refuse_view(t.state(), ns)?;
    let _collation =
        collation::for_collection(s.collation.as_ref(), t.state().collection(ns)?.as_ref())?
            .enter();
    let _text = crate::query::text::bind(&s.filter, t.state().collection(ns)?.as_ref())?.enter();
    crate::query::geo::require_index(&s.filter, t.state().collection(ns)?.as_ref())?;
    let (targets, continued) = match at.pending.take() {
        Some(ids) => (ids, true),
        None => (update_targets(t, ns, s, deadline)?, false),
    };
    if !continued && targets.is_empty() && s.upsert {
        at.upserted = Some(upsert(t, ns, s)?);
        return Ok(());
    }
    at.write_targets(t, parts, targets, continued, |t, at, id, recheck| {
        if let Some(changed) = update_target(t, ns, s, id, recheck)? {
            at.n += 1;
            at.modified += i64::from(changed);
        }
        Ok(())
    })
}

pub async fn update(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "update")?;
    options::UPDATE.check(ctx.cmd, Some("update"))?;
    let target = ctx.target()?;
    target.writable()?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let stmts: Arc<Vec<Result<UpdateStmt>>> = Arc::new(
        statements(ctx.cmd, "updates")?
            .iter()
            .map(|s| parse_update_stmt(s, &vars))
            .collect(),
    );
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let deadline = ctx.deadline()?;
    let start = Batch::new(stmts.len(), true);
    commit_batch(ctx, &target, start, move |t, b, parts| {
        // A view takes no writes: the command fails whole, as in MongoDB.
        super::view::refuse_view(t.state(), &ns)?;
        while !b.done() {
            if !b.statement.is_split() && parts.full_before_statement(t) {
                return Ok(());
            }
            let outcome = stmts[b.next]
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|s| run_update_statement(t, &ns, s, &mut b.statement, parts, deadline));
            match outcome {
                Err(e) => b.fail_statement(&e, ordered),
                Ok(()) if b.statement.is_split() => return Ok(()),
                Ok(()) => b.complete_statement(),
            }
        }
        Ok(())
    })
    .await
}

// ---- delete -----------------------------------------------------------------------

pub(super) struct DeleteStmt {
    pub(super) filter: Filter,
    pub(super) just_one: bool,
    pub(super) hint: Option<Bson>,
    /// Its own collation (`None`: the collection's default).
    pub(super) collation: Option<Collation>,
}

pub async fn delete(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "delete")?;
    options::DELETE.check(ctx.cmd, Some("delete"))?;
    let target = ctx.target()?;
    target.writable()?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let stmts: Arc<Vec<Result<DeleteStmt>>> = Arc::new(
        statements(ctx.cmd, "deletes")?
            .iter()
            .map(|s| {
                let Bson::Document(s) = s else {
                    return Err(CommandError::type_mismatch(
                        "each delete statement must be an object",
                    ));
                };
                options::DELETE_STATEMENT.check(s, None)?;
                let collation = options::collation(s)?;
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
                Ok(DeleteStmt {
                    filter: Filter::parse_query(&vars.bind_filter(q)?)?,
                    just_one: limit == 1,
                    hint: s.get("hint").cloned(),
                    collation,
                })
            })
            .collect(),
    );
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let deadline = ctx.deadline()?;
    let start = Batch::new(stmts.len(), false);
    commit_batch(ctx, &target, start, move |t, b, parts| {
        // A view takes no writes: the command fails whole, as in MongoDB.
        super::view::refuse_view(t.state(), &ns)?;
        while !b.done() {
            if !b.statement.is_split() && parts.full_before_statement(t) {
                return Ok(());
            }
            let outcome = stmts[b.next]
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|s| run_delete_statement(t, &ns, s, &mut b.statement, parts, deadline));
            match outcome {
                Err(e) => b.fail_statement(&e, ordered),
                Ok(()) if b.statement.is_split() => return Ok(()),
                Ok(()) => b.complete_statement(),
            }
        }
        Ok(())
    })
    .await
}

/// Runs a delete statement from where it stands, as
/// [`run_update_statement`].
pub(super) fn run_delete_statement(
    t: &mut Transaction,
    ns: &Namespace,
    s: &DeleteStmt,
    at: &mut Statement,
    parts: &Parts,
    deadline: Deadline,
) -> Result<()> {
    super::view::refuse_view(t.state(), ns)?;
    let _collation =
        collation::for_collection(s.collation.as_ref(), t.state().collection(ns)?.as_ref())?
            .enter();
    let _text = crate::query::text::bind(&s.filter, t.state().collection(ns)?.as_ref())?.enter();
    crate::query::geo::require_index(&s.filter, t.state().collection(ns)?.as_ref())?;
    let (targets, continued) = match at.pending.take() {
        Some(ids) => (ids, true),
        None => {
            check_hint(s.hint.as_ref(), t.state().collection(ns)?.as_ref())?;
            let limit = s.just_one.then_some(1);
            (
                super::read::matching_ids(
                    t.state(),
                    ns,
                    &s.filter,
                    s.hint.as_ref(),
                    limit,
                    deadline,
                )?,
                false,
            )
        }
    };
    at.write_targets(t, parts, targets, continued, |t, at, id, recheck| {
        if recheck {
            let current = match t.state().collection(ns)? {
                Some(c) => c.get_document(id)?,
                None => None,
            };
            let still = match current {
                Some(d) => s.filter.try_matches(&d)?,
                None => false,
            };
            if !still {
                return Ok(());
            }
        }
        t.delete(ns, id.clone())
            .map_err(crate::wal_error::from_wal)?;
        at.n += 1;
        Ok(())
    })
}

// ---- findAndModify ------------------------------------------------------------------

pub async fn find_and_modify(ctx: &Ctx<'_>) -> Result<Document> {
    let name = ctx.cmd.keys().next().cloned().unwrap_or_default();
    let coll = collection_name(ctx.cmd, &name)?;
    options::FIND_AND_MODIFY.check(ctx.cmd, Some(name.as_str()))?;
    let own_collation = options::collation(ctx.cmd)?;
    let target = ctx.target()?;
    target.writable()?;
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    // `sort: {$natural: ±1}` is a hint, as on a find.
    let natural = options::natural_sort(opt_doc(ctx.cmd, "sort")?, ctx.cmd.get("hint"))?;
    let q = vars.bind_filter(&opt_doc(ctx.cmd, "query")?.cloned().unwrap_or_default())?;
    let filter = Filter::parse_query(&q)?;
    let sort = match &natural {
        Some(_) => None,
        None => opt_doc(ctx.cmd, "sort")?.map(SortSpec::parse).transpose()?,
    };
    let hint = natural.or_else(|| ctx.cmd.get("hint").cloned());
    let remove = opt_bool(ctx.cmd, "remove", false)?;
    let return_new = opt_bool(ctx.cmd, "new", false)?;
    let upsert = opt_bool(ctx.cmd, "upsert", false)?;
    let fields = opt_doc(ctx.cmd, "fields")?
        .filter(|f| !f.is_empty())
        .map(|f| Projection::parse_find(f, &q))
        .transpose()?;
    if fields.as_ref().is_some_and(|f| !f.find_metas().is_empty()) {
        // They read a find's plan, which this command's write path has not.
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            "{$meta: \"indexKey\"}, \"geoNearDistance\", \"geoNearPoint\" and \"sortKey\" in findAndModify's fields are not supported by Argon",
        ));
    }
    let update = match ctx.cmd.get("update") {
        Some(u) => Some(UpdateSpec::parse_with(
            &bind_update(u, &vars)?,
            ctx.cmd.get("arrayFilters"),
        )?),
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
    let reply = move |value: Option<Document>, last_error: Document| -> Result<_> {
        let value = match (value, &fields) {
            (Some(v), Some(p)) => Bson::Document(p.try_apply(&v)?),
            (Some(v), None) => Bson::Document(v),
            (None, _) => Bson::Null,
        };
        Ok(doc! {"lastErrorObject": last_error, "value": value})
    };
    commit_write(ctx, &target, move |t| {
        super::view::refuse_view(t.state(), &ns)?;
        check_hint(hint.as_ref(), t.state().collection(&ns)?.as_ref())?;
        let _collation =
            collation::for_collection(own_collation.as_ref(), t.state().collection(&ns)?.as_ref())?
                .enter();
        let _text = crate::query::text::bind(&filter, t.state().collection(&ns)?.as_ref())?.enter();
        crate::query::geo::require_index(&filter, t.state().collection(&ns)?.as_ref())?;
        let found: Option<Document> = match &sort {
            Some(s) => {
                super::read::first_in_order(t.state(), &ns, &filter, hint.as_ref(), s, deadline)?
            }
            None => super::read::matching_limit(
                t.state(),
                &ns,
                &filter,
                hint.as_ref(),
                Some(1),
                deadline,
            )?
            .into_iter()
            .next(),
        };
        match (found, &update) {
            (Some(old), None) => {
                let id = old.get("_id").cloned().unwrap_or(Bson::Null);
                t.delete(&ns, id).map_err(crate::wal_error::from_wal)?;
                reply(Some(old), doc! {"n": 1})
            }
            (None, None) => reply(None, doc! {"n": 0}),
            (Some(old), Some(u)) => {
                let new = u.apply_matched(&old, false, Some(&filter))?;
                if new != old {
                    put(t, &ns, &new, Put::Update)?;
                }
                let value = if return_new { new } else { old };
                reply(Some(value), doc! {"n": 1, "updatedExisting": true})
            }
            (None, Some(u)) if upsert => {
                let doc = upsert_document(&q, u)?;
                validate_id(&doc)?;
                ensure_collection(t, &ns)?;
                let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
                put(t, &ns, &doc, Put::Upsert)?;
                let value = if return_new { Some(doc) } else { None };
                reply(
                    value,
                    doc! {"n": 1, "updatedExisting": false, "upserted": id},
                )
            }
            (None, Some(_)) => reply(None, doc! {"n": 0, "updatedExisting": false}),
        }
    })
    .await
}
