//! The client-level `bulkWrite` (MongoDB 8.0): inserts, updates and
//! deletes over several namespaces of one branch, in one commit (or in
//! parts past the commit limit, as `batch` cuts any write command), built
//! on the statements of `write`.

use std::sync::Arc;

use argon_wal::Namespace;
use bson::{Bson, Document, doc};

use super::batch::{Progress, Statement, commit_batch, logged_count, logged_documents};
use super::options;
use super::write::{
    DeleteStmt, Put, UpdateStmt, ensure_collection, parse_update_stmt, put, run_delete_statement,
    run_update_statement, statements, validate_id, with_id_first,
};
use super::{Ctx, collection_name, opt_bool, opt_doc};
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
                let collation = options::collation(op)?;
                let q = opt_doc(op, "filter")?.ok_or_else(|| {
                    CommandError::failed_to_parse(
                        "BSON field 'bulkWrite.ops.filter' is missing but a required field",
                    )
                })?;
                Ok(DeleteStmt {
                    filter: Filter::parse_query(&vars.bind_filter(q)?)?,
                    just_one: !opt_bool(op, "multi", false)?,
                    hint: op.get("hint").cloned(),
                    collation,
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
/// deletes over several namespaces of one branch, in one commit (see
/// `batch` for one too large for that), with a
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
    let start = BulkProgress::new(ops.len(), errors_only);
    commit_batch(ctx, &target, start, move |t, b, parts| {
        while !b.done() {
            if !b.statement.is_split() && parts.full_before_statement(t) {
                return Ok(());
            }
            let op = &ops[b.next];
            if in_transaction {
                let (BulkOp::Insert(i, _) | BulkOp::Update(i, _) | BulkOp::Delete(i, _)) = op;
                let remove = matches!(op, BulkOp::Delete(..));
                crate::capped::refuse_in_transaction(t.state(), &namespaces[*i], remove)?;
            }
            let outcome = match op {
                BulkOp::Insert(ns, doc) => {
                    let ns = &namespaces[*ns];
                    doc.as_ref().map_err(Clone::clone).and_then(|d| {
                        ensure_collection(t, ns)?;
                        put(t, ns, d, Put::Insert)?;
                        b.statement.n = 1;
                        Ok(())
                    })
                }
                BulkOp::Update(ns, stmt) => stmt.as_ref().map_err(Clone::clone).and_then(|s| {
                    let ns = &namespaces[*ns];
                    run_update_statement(t, ns, s, &mut b.statement, parts, deadline)
                }),
                BulkOp::Delete(ns, stmt) => stmt.as_ref().map_err(Clone::clone).and_then(|s| {
                    let ns = &namespaces[*ns];
                    run_delete_statement(t, ns, s, &mut b.statement, parts, deadline)
                }),
            };
            match outcome {
                Err(e) if in_transaction => return Err(e),
                Err(e) => b.fail_op(&e, ordered),
                Ok(()) if b.statement.is_split() => return Ok(()),
                Ok(()) => b.complete_op(op),
            }
        }
        Ok(())
    })
    .await
}

/// How far a `bulkWrite` got: a result per operation (errors only, with
/// `errorsOnly`) and the counts.
#[derive(Clone, Debug)]
struct BulkProgress {
    total: usize,
    next: usize,
    statement: Statement,
    errors_only: bool,
    results: Vec<Document>,
    errors: i64,
    inserted: i64,
    matched: i64,
    modified: i64,
    upserted: i64,
    deleted: i64,
}

impl BulkProgress {
    fn new(total: usize, errors_only: bool) -> BulkProgress {
        BulkProgress {
            total,
            next: 0,
            statement: Statement::default(),
            errors_only,
            results: Vec::new(),
            errors: 0,
            inserted: 0,
            matched: 0,
            modified: 0,
            upserted: 0,
            deleted: 0,
        }
    }

    /// Operation `next` completed: its result and counts.
    fn complete_op(&mut self, op: &BulkOp) {
        let s = std::mem::take(&mut self.statement);
        let idx = self.next as i32;
        let result = match op {
            BulkOp::Insert(..) => {
                self.inserted += 1;
                doc! {"ok": 1.0, "idx": idx, "n": 1}
            }
            BulkOp::Update(..) => {
                self.matched += s.n;
                self.modified += s.modified;
                let mut r = doc! {
                    "ok": 1.0,
                    "idx": idx,
                    "n": super::count_value(s.n + i64::from(s.upserted.is_some())),
                    "nModified": super::count_value(s.modified),
                };
                if let Some(id) = s.upserted {
                    self.upserted += 1;
                    r.insert("upserted", doc! {"_id": id});
                }
                r
            }
            BulkOp::Delete(..) => {
                self.deleted += s.n;
                doc! {"ok": 1.0, "idx": idx, "n": super::count_value(s.n)}
            }
        };
        if !self.errors_only {
            self.results.push(result);
        }
        self.next += 1;
    }

    /// Operation `next` failed with `e`: an ordered bulk stops there.
    fn fail_op(&mut self, e: &CommandError, ordered: bool) {
        self.errors += 1;
        self.results.push(bulk_error(e, self.next));
        self.statement = Statement::default();
        self.next = if ordered { self.total } else { self.next + 1 };
    }
}

impl Progress for BulkProgress {
    fn total(&self) -> usize {
        self.total
    }

    fn next(&self) -> usize {
        self.next
    }

    fn reply(&self) -> Document {
        doc! {
            "cursor": {"id": 0i64, "firstBatch": self.results.clone(), "ns": "admin.$cmd.bulkWrite"},
            "nErrors": super::count_value(self.errors),
            "nInserted": super::count_value(self.inserted),
            "nMatched": super::count_value(self.matched),
            "nModified": super::count_value(self.modified),
            "nUpserted": super::count_value(self.upserted),
            "nDeleted": super::count_value(self.deleted),
        }
    }

    fn resumed(&self, reply: &Document, next: usize) -> Option<BulkProgress> {
        let cursor = reply.get_document("cursor").ok()?;
        Some(BulkProgress {
            total: self.total,
            next,
            statement: Statement::default(),
            errors_only: self.errors_only,
            results: logged_documents(cursor, "firstBatch")?,
            errors: logged_count(reply, "nErrors")?,
            inserted: logged_count(reply, "nInserted")?,
            matched: logged_count(reply, "nMatched")?,
            modified: logged_count(reply, "nModified")?,
            upserted: logged_count(reply, "nUpserted")?,
            deleted: logged_count(reply, "nDeleted")?,
        })
    }

    fn stop_with(&mut self, e: &CommandError) {
        self.fail_op(e, true);
    }
}
