//! Writes: insert, update, delete, findAndModify.
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

use super::options::{self, check_collation, check_hint};
use super::{Ctx, collection_name, commit_write, opt_bool, opt_doc};
use crate::deadline::Deadline;
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::update::upsert_document;
use crate::query::vars::Vars;
use crate::query::{Filter, Projection, SortSpec, UpdateSpec};

/// How a document comes to be written: each has MongoDB's own size error.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    /// An insert's document: its size was checked as sent
    /// (`limits::check_insert_size`, before an `_id` was added).
    Insert,
    /// An update's result: 17419 above 16 MiB.
    Update,
    /// An upsert's new document: 17420 above 16 MiB.
    Upsert,
}

/// Writes `doc` through the transaction: storage limits here (the
/// server's), index rules in the WAL (`argon_wal::unique`, the one place).
fn put(t: &mut Transaction, ns: &Namespace, doc: &Document, how: Put) -> Result<()> {
    let raw = argon_wal::rawdoc::encode(doc).map_err(|e| CommandError::bad_value(e.to_string()))?;
    match how {
        Put::Insert => {}
        Put::Update => crate::limits::check_update_size(raw.as_bytes().len())?,
        Put::Upsert => crate::limits::check_upsert_size(raw.as_bytes().len())?,
    }
    crate::limits::check_storage_depth(doc)?;
    t.put_encoded(ns, doc, raw, how != Put::Update)
        .map_err(crate::wal_error::from_wal)
}

fn ensure_collection(t: &mut Transaction, ns: &Namespace) -> Result<()> {
    t.ensure_collection(ns).map_err(crate::wal_error::from_wal)
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

/// A write command's statements: an array of 1 to 100,000 (`maxWriteBatchSize`).
fn statements<'a>(cmd: &'a Document, key: &str) -> Result<&'a Vec<Bson>> {
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
    commit_write(ctx, &target, move |t| {
        let mut errors = Vec::new();
        let mut n = 0i64;
        ensure_collection(t, &ns)?;
        for (i, d) in docs.iter().enumerate() {
            let outcome = d
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|d| put(t, &ns, d, Put::Insert));
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
        Ok(write_reply(n, errors))
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
    /// Which one document an update of one updates (MongoDB 8.0).
    sort: Option<SortSpec>,
    hint: Option<Bson>,
}

/// A pipeline update's `u` with the command's variables bound; an
/// operator update or a replacement as sent (its values are literals).
fn bind_update(u: &Bson, vars: &Vars) -> Result<Bson> {
    match u {
        Bson::Array(stages) => Ok(Bson::Array(vars.bind_pipeline(stages)?)),
        other => Ok(other.clone()),
    }
}

fn parse_update_stmt(s: &Bson, vars: &Vars) -> Result<UpdateStmt> {
    let Bson::Document(s) = s else {
        return Err(CommandError::type_mismatch(
            "each update statement must be an object",
        ));
    };
    options::UPDATE_STATEMENT.check(s, None)?;
    check_collation(s)?;
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
    let stmt = UpdateStmt {
        filter: Filter::parse(&q)?,
        q,
        u: UpdateSpec::parse_with(&bind_update(u, vars)?, s.get("arrayFilters"))?,
        upsert: opt_bool(s, "upsert", false)?,
        multi: opt_bool(s, "multi", false)?,
        sort: opt_doc(s, "sort")?
            .filter(|d| !d.is_empty())
            .map(SortSpec::parse)
            .transpose()?,
        hint: s.get("hint").cloned(),
    };
    if stmt.multi && stmt.u.is_replacement() {
        return Err(CommandError::failed_to_parse(
            "multi update is not supported for replacement-style update",
        ));
    }
    if stmt.multi && stmt.sort.is_some() {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            "Cannot specify sort with multi=true",
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
    t: &mut Transaction,
    ns: &Namespace,
    s: &UpdateStmt,
    deadline: Deadline,
) -> Result<Updated> {
    check_hint(s.hint.as_ref(), t.state().collection(ns))?;
    // The matches' ids, then one document at a time: an update of many
    // large documents holds one parsed document, not all of them.
    let targets = match &s.sort {
        Some(sort) => super::read::first_in_order(t.state(), ns, &s.filter, sort, deadline)?
            .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
            .into_iter()
            .collect(),
        None => {
            super::read::matching_ids(t.state(), ns, &s.filter, (!s.multi).then_some(1), deadline)?
        }
    };
    let mut out = Updated {
        matched: targets.len() as i64,
        modified: 0,
        upserted: None,
    };
    for id in targets {
        let Some(old) = t
            .state()
            .collection(ns)
            .and_then(|c| c.get(&id))
            .map(argon_wal::rawdoc::parse)
        else {
            continue;
        };
        let new = s.u.apply_matched(&old, false, Some(&s.filter))?;
        if new != old {
            put(t, ns, &new, Put::Update)?;
            out.modified += 1;
        }
    }
    if out.matched == 0 && s.upsert {
        let doc = upsert_document(&s.q, &s.u)?;
        validate_id(&doc)?;
        ensure_collection(t, ns)?;
        out.upserted = doc.get("_id").cloned();
        put(t, ns, &doc, Put::Upsert)?;
    }
    Ok(out)
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
    commit_write(ctx, &target, move |t| {
        let (mut n, mut modified) = (0i64, 0i64);
        let mut upserted = Vec::new();
        let mut errors = Vec::new();
        for (i, s) in stmts.iter().enumerate() {
            let r = s
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|s| apply_update(t, &ns, s, deadline));
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
        Ok(out)
    })
    .await
}

// ---- delete -----------------------------------------------------------------------

struct DeleteStmt {
    filter: Filter,
    just_one: bool,
    hint: Option<Bson>,
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
                check_collation(s)?;
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
                    filter: Filter::parse(&vars.bind_filter(q)?)?,
                    just_one: limit == 1,
                    hint: s.get("hint").cloned(),
                })
            })
            .collect(),
    );
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let deadline = ctx.deadline()?;
    commit_write(ctx, &target, move |t| {
        let mut n = 0i64;
        let mut errors = Vec::new();
        for (i, s) in stmts.iter().enumerate() {
            let found = s.as_ref().map_err(Clone::clone).and_then(|s| {
                check_hint(s.hint.as_ref(), t.state().collection(&ns))?;
                super::read::matching_ids(
                    t.state(),
                    &ns,
                    &s.filter,
                    s.just_one.then_some(1),
                    deadline,
                )
            });
            match found {
                Ok(ids) => {
                    for id in ids {
                        t.delete(&ns, id).map_err(crate::wal_error::from_wal)?;
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
        Ok(write_reply(n, errors))
    })
    .await
}

// ---- findAndModify ------------------------------------------------------------------

pub async fn find_and_modify(ctx: &Ctx<'_>) -> Result<Document> {
    let name = ctx.cmd.keys().next().cloned().unwrap_or_default();
    let coll = collection_name(ctx.cmd, &name)?;
    options::FIND_AND_MODIFY.check(ctx.cmd, Some(name.as_str()))?;
    check_collation(ctx.cmd)?;
    let target = ctx.target()?;
    target.writable()?;
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let hint = ctx.cmd.get("hint").cloned();
    let q = vars.bind_filter(&opt_doc(ctx.cmd, "query")?.cloned().unwrap_or_default())?;
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
        check_hint(hint.as_ref(), t.state().collection(&ns))?;
        let found: Option<Document> = match &sort {
            Some(s) => super::read::first_in_order(t.state(), &ns, &filter, s, deadline)?,
            None => super::read::matching_limit(t.state(), &ns, &filter, Some(1), deadline)?
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

// ---- bulkWrite (client-level, MongoDB 8.0) ----------------------------------------

/// One operation of a client-level `bulkWrite`, parsed, with the index of
/// its namespace in `nsInfo`. A statement that does not parse fails alone,
/// as a write error at its index (as in `update` and `delete`).
enum BulkOp {
    Insert(usize, Result<Document>),
    Update(usize, Result<UpdateStmt>),
    Delete(usize, Result<DeleteStmt>),
}

/// The `nsInfo` index an operation names (`{insert: 0, ...}`).
fn bulk_ns_index(op: &Document, key: &str, namespaces: usize) -> Result<usize> {
    match op.get(key).and_then(crate::query::compare::as_i64) {
        Some(i) if i >= 0 && (i as usize) < namespaces => Ok(i as usize),
        _ => Err(CommandError::bad_value(format!(
            "BSON field 'bulkWrite.ops.{key}' must name an index of 'nsInfo' (0 to {})",
            namespaces.saturating_sub(1)
        ))),
    }
}

fn parse_bulk_op(op: &Bson, namespaces: usize, vars: &Vars) -> Result<BulkOp> {
    let Bson::Document(op) = op else {
        return Err(CommandError::type_mismatch(
            "BSON field 'bulkWrite.ops' items must be objects",
        ));
    };
    let kind = op.keys().next().map(String::as_str).unwrap_or_default();
    match kind {
        "insert" => {
            options::BULK_INSERT.check(op, None)?;
            let ns = bulk_ns_index(op, "insert", namespaces)?;
            let doc = match op.get("document") {
                Some(Bson::Document(d)) => crate::limits::check_insert_size(d)
                    .and_then(|()| validate_id(d))
                    .map(|()| with_id_first(d)),
                _ => Err(CommandError::failed_to_parse(
                    "BSON field 'bulkWrite.ops.document' is missing but a required field",
                )),
            };
            Ok(BulkOp::Insert(ns, doc))
        }
        "update" => {
            options::BULK_UPDATE.check(op, None)?;
            let ns = bulk_ns_index(op, "update", namespaces)?;
            // The same statement as `update`'s, under its bulkWrite names.
            let mut stmt = Document::new();
            for (from, to) in [
                ("filter", "q"),
                ("updateMods", "u"),
                ("upsert", "upsert"),
                ("multi", "multi"),
                ("arrayFilters", "arrayFilters"),
                ("hint", "hint"),
                ("collation", "collation"),
                ("sort", "sort"),
            ] {
                if let Some(v) = op.get(from) {
                    stmt.insert(to, v.clone());
                }
            }
            Ok(BulkOp::Update(
                ns,
                parse_update_stmt(&Bson::Document(stmt), vars),
            ))
        }
        "delete" => {
            options::BULK_DELETE.check(op, None)?;
            let ns = bulk_ns_index(op, "delete", namespaces)?;
            let stmt = (|| {
                check_collation(op)?;
                let q = opt_doc(op, "filter")?.ok_or_else(|| {
                    CommandError::failed_to_parse(
                        "BSON field 'bulkWrite.ops.filter' is missing but a required field",
                    )
                })?;
                Ok(DeleteStmt {
                    filter: Filter::parse(&vars.bind_filter(q)?)?,
                    just_one: !opt_bool(op, "multi", false)?,
                    hint: op.get("hint").cloned(),
                })
            })();
            Ok(BulkOp::Delete(ns, stmt))
        }
        other => Err(CommandError::failed_to_parse(format!(
            "Unrecognized bulkWrite operation '{other}': expected insert, update or delete"
        ))),
    }
}

/// `nsInfo`: each entry's `db.coll`, as a write target and namespace.
fn bulk_namespaces(ctx: &Ctx<'_>) -> Result<Vec<(crate::target::Target, Namespace)>> {
    let entries = match ctx.cmd.get("nsInfo") {
        Some(Bson::Array(entries)) => entries,
        Some(other) => {
            return Err(CommandError::type_mismatch(format!(
                "BSON field 'bulkWrite.nsInfo' is the wrong type '{}', expected type 'array'",
                crate::query::expr::type_name(other)
            )));
        }
        None => {
            return Err(CommandError::failed_to_parse(
                "BSON field 'bulkWrite.nsInfo' is missing but a required field",
            ));
        }
    };
    crate::limits::check_write_batch(entries.len())?;
    entries
        .iter()
        .map(|entry| {
            let Bson::Document(entry) = entry else {
                return Err(CommandError::type_mismatch(
                    "BSON field 'bulkWrite.nsInfo' items must be objects",
                ));
            };
            options::BULK_NS_INFO.check(entry, None)?;
            let ns = match entry.get("ns") {
                Some(Bson::String(s)) => s,
                _ => {
                    return Err(CommandError::failed_to_parse(
                        "BSON field 'bulkWrite.nsInfo.ns' is missing but a required field",
                    ));
                }
            };
            let Some((db, coll)) = ns.split_once('.') else {
                return Err(CommandError::new(
                    ErrorCode::InvalidNamespace,
                    format!("Invalid namespace specified '{ns}'"),
                ));
            };
            let coll = collection_name(&doc! {"bulkWrite": coll}, "bulkWrite")?;
            let target = ctx.svc.target(db)?;
            if let Some(txn) = ctx.txn {
                super::check_transaction_target(txn, &target)?;
            }
            target.writable()?;
            let ns = Namespace::new(target.db.as_str(), coll.as_str());
            Ok((target, ns))
        })
        .collect()
}

/// A failed operation as bulkWrite reports it: `{ok: 0, idx, code, ...}`.
fn bulk_error(e: &CommandError, idx: usize) -> Document {
    let mut out = doc! {"ok": 0.0, "idx": idx as i32};
    for (k, v) in e.to_write_error(idx) {
        if k != "index" {
            out.insert(k, v);
        }
    }
    out
}

/// The client-level `bulkWrite` (MongoDB 8.0): inserts, updates and
/// deletes over several namespaces of one branch, in one commit, with a
/// result per operation (or only the errors, `errorsOnly`) in a cursor
/// reply that holds them all (`id: 0`).
pub async fn bulk_write(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("bulkWrite")?;
    options::BULK_WRITE.check(ctx.cmd, Some("bulkWrite"))?;
    let ordered = opt_bool(ctx.cmd, "ordered", true)?;
    let errors_only = opt_bool(ctx.cmd, "errorsOnly", false)?;
    if let Some(cursor) = opt_doc(ctx.cmd, "cursor")? {
        options::BULK_CURSOR.check(cursor, None)?;
    }
    let vars = Vars::parse(ctx.cmd.get("let"))?;
    let targets = bulk_namespaces(ctx)?;
    // One commit, so one branch: namespaces on other branches are refused
    // rather than written in separate, non-atomic commits.
    let Some((target, _)) = targets.first() else {
        return Err(CommandError::bad_value(
            "bulkWrite needs at least one nsInfo entry",
        ));
    };
    let target = target.clone();
    if let Some((other, _)) = targets.iter().find(|(t, _)| t.branch != target.branch) {
        return Err(CommandError::new(
            ErrorCode::CommandNotSupported,
            format!(
                "a bulkWrite over several branches is not supported by Argon ({:?} and {:?})",
                target.raw, other.raw
            ),
        ));
    }
    let namespaces: Vec<Namespace> = targets.into_iter().map(|(_, ns)| ns).collect();
    let ops: Arc<Vec<BulkOp>> = Arc::new(
        statements(ctx.cmd, "ops")?
            .iter()
            .map(|op| parse_bulk_op(op, namespaces.len(), &vars))
            .collect::<Result<_>>()?,
    );
    let deadline = ctx.deadline()?;
    // In a transaction a failed operation fails the command, so the
    // statement rolls back whole and the transaction aborts (as a failed
    // `update` does there), never committing half of a bulk.
    let in_transaction = ctx.txn.is_some();
    commit_write(ctx, &target, move |t| {
        let mut results = Vec::new();
        let (mut errors, mut inserted, mut matched, mut modified, mut upserted, mut deleted) =
            (0i64, 0i64, 0i64, 0i64, 0i64, 0i64);
        for (idx, op) in ops.iter().enumerate() {
            let outcome: Result<Document> = match op {
                BulkOp::Insert(ns, doc) => {
                    let ns = &namespaces[*ns];
                    doc.as_ref()
                        .map_err(Clone::clone)
                        .and_then(|d| {
                            ensure_collection(t, ns)?;
                            put(t, ns, d, Put::Insert)
                        })
                        .map(|()| {
                            inserted += 1;
                            doc! {"ok": 1.0, "idx": idx as i32, "n": 1}
                        })
                }
                BulkOp::Update(ns, stmt) => stmt
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|s| apply_update(t, &namespaces[*ns], s, deadline))
                    .map(|u| {
                        matched += u.matched;
                        modified += u.modified;
                        let mut r = doc! {
                            "ok": 1.0,
                            "idx": idx as i32,
                            "n": super::count_value(u.matched + i64::from(u.upserted.is_some())),
                            "nModified": super::count_value(u.modified),
                        };
                        if let Some(id) = u.upserted {
                            upserted += 1;
                            r.insert("upserted", doc! {"_id": id});
                        }
                        r
                    }),
                BulkOp::Delete(ns, stmt) => {
                    let ns = &namespaces[*ns];
                    stmt.as_ref().map_err(Clone::clone).and_then(|s| {
                        check_hint(s.hint.as_ref(), t.state().collection(ns))?;
                        let ids = super::read::matching_ids(
                            t.state(),
                            ns,
                            &s.filter,
                            s.just_one.then_some(1),
                            deadline,
                        )?;
                        let n = ids.len() as i64;
                        for id in ids {
                            t.delete(ns, id).map_err(crate::wal_error::from_wal)?;
                        }
                        deleted += n;
                        Ok(doc! {"ok": 1.0, "idx": idx as i32, "n": super::count_value(n)})
                    })
                }
            };
            match outcome {
                Ok(r) => {
                    if !errors_only {
                        results.push(r);
                    }
                }
                Err(e) if in_transaction => return Err(e),
                Err(e) => {
                    errors += 1;
                    results.push(bulk_error(&e, idx));
                    if ordered {
                        break;
                    }
                }
            }
        }
        Ok(doc! {
            "cursor": {"id": 0i64, "firstBatch": results, "ns": "admin.$cmd.bulkWrite"},
            "nErrors": super::count_value(errors),
            "nInserted": super::count_value(inserted),
            "nMatched": super::count_value(matched),
            "nModified": super::count_value(modified),
            "nUpserted": super::count_value(upserted),
            "nDeleted": super::count_value(deleted),
        })
    })
    .await
}

// ---- aggregate's $out and $merge ----------------------------------------------------

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
        check_merge_index(state.collection(&out_ns), &m.on)?;
    }
    let deadline = ctx.deadline()?;
    let shown = format!("{}.{coll}", source.raw);
    commit_write(ctx, &target, move |t| {
        let snapshot = t.state().clone();
        let mut scan =
            crate::cursor::PipelineScan::new(snapshot, &src_db, &coll, pipeline.clone(), budget);
        if let OutputStage::Merge(m) = &stage
            && m.on != ["_id"]
        {
            check_merge_index(t.state().collection(&out_ns), &m.on)?;
        }
        if let OutputStage::Out { .. } = &stage {
            // The target's documents go; its indexes and options stay.
            let ids: Vec<Bson> = match t.state().collection(&out_ns) {
                Some(c) => c
                    .iter()
                    .map(|raw| {
                        argon_wal::rawdoc::parse(raw)
                            .get("_id")
                            .cloned()
                            .unwrap_or(Bson::Null)
                    })
                    .collect(),
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
        t.state()
            .collection(ns)
            .and_then(|c| c.get(key.get("_id").unwrap_or(&Bson::Null)))
            .map(argon_wal::rawdoc::parse)
    } else {
        let filter = Filter::parse(&key)?;
        super::read::matching_limit(t.state(), ns, &filter, Some(1), deadline)?
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
