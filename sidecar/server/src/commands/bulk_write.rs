//! The client-level `bulkWrite` (MongoDB 8.0): inserts, updates and
//! deletes over several namespaces of one branch, in one commit, built on
//! the statements of `write`.

use std::sync::Arc;

use argon_wal::Namespace;
use bson::{Bson, Document, doc};

use super::options::{self, check_collation, check_hint};
use super::write::{
    DeleteStmt, Put, UpdateStmt, apply_update, ensure_collection, parse_update_stmt, put,
    statements, validate_id, with_id_first,
};
use super::{Ctx, collection_name, commit_write, opt_bool, opt_doc};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::Filter;
use crate::query::vars::Vars;

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
                ("constants", "c"),
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
