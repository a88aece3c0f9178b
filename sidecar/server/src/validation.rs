//! Document validation: a collection's `validator` (query operators,
//! `$expr` and `$jsonSchema`), `validationLevel` and `validationAction`,
//! as MongoDB 8.0 enforces them.
//!
//! The rule lives here and one place calls it: `commands::write::put`,
//! which every write path goes through (insert, update and upsert incl.
//! pipeline updates, findAndModify, bulkWrite, `$out`/`$merge`). The
//! options are collection options in the branch's state (set by `create`
//! and `collMod`, committed like any catalog change), so a branch forked
//! before a `collMod` keeps the old rules and time travel shows them.
//!
//! `bypassDocumentValidation` is per command: the handler reads it
//! ([`bypass_of`]) and holds [`Bypass::enter`] while its commit closure
//! runs, on the thread that runs it (the closure is synchronous), as
//! `query::collation` scopes a collation.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::Rc;

use argon_wal::{BranchState, Namespace};
use bson::{Bson, Document, doc};

use crate::error::{CommandError, ErrorCode, Result};
use crate::query::Filter;
use crate::query::path::resolve;
use crate::query::schema::Schema;

/// Option fields of `create` and `collMod` this module owns.
pub const OPTION_FIELDS: &[&str] = &["validator", "validationLevel", "validationAction"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Strict,
    Moderate,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Error,
    Warn,
}

fn enum_value<'a>(field: &str, v: &'a Bson, allowed: &[&str]) -> Result<&'a str> {
    match v {
        Bson::String(s) if allowed.contains(&s.as_str()) => Ok(s.as_str()),
        Bson::String(s) => Err(CommandError::bad_value(format!(
            "Enumeration value '{s}' for field '{field}' is not a valid value."
        ))),
        other => Err(CommandError::type_mismatch(format!(
            "BSON field '{field}' is the wrong type '{}', expected type 'string'",
            crate::query::expr::type_name(other)
        ))),
    }
}

/// Checks a validator as `create`/`collMod` take it: a document whose
/// filter parses (`$jsonSchema` included).
pub fn check_validator(v: &Bson, command: &str) -> Result<Document> {
    let Bson::Document(d) = v else {
        return Err(CommandError::type_mismatch(format!(
            "BSON field '{command}.validator' is the wrong type '{}', expected type 'object'",
            crate::query::expr::type_name(v)
        )));
    };
    Filter::parse(d)?;
    Ok(d.clone())
}

/// The validation options `cmd` sets, checked, applied onto `options`
/// (a collection's stored options; `create` starts from none). A validator
/// without a level or action gets MongoDB's defaults, stored as
/// `listCollections` shows them.
pub fn apply_options(cmd: &Document, command: &str, options: &mut Document) -> Result<bool> {
    let mut changed = false;
    if let Some(v) = cmd.get("validator") {
        options.insert("validator", check_validator(v, command)?);
        changed = true;
    }
    if let Some(v) = cmd.get("validationLevel") {
        let level = enum_value("validationLevel", v, &["off", "strict", "moderate"])?;
        options.insert("validationLevel", level);
        changed = true;
    }
    if let Some(v) = cmd.get("validationAction") {
        let action = enum_value("validationAction", v, &["error", "warn"])?;
        options.insert("validationAction", action);
        changed = true;
    }
    if changed {
        if !options.contains_key("validator") {
            options.insert("validator", Document::new());
        }
        if !options.contains_key("validationLevel") {
            options.insert("validationLevel", "strict");
        }
        if !options.contains_key("validationAction") {
            options.insert("validationAction", "error");
        }
    }
    Ok(changed)
}

fn level_of(options: &Document) -> Level {
    match options.get_str("validationLevel") {
        Ok("off") => Level::Off,
        Ok("moderate") => Level::Moderate,
        _ => Level::Strict,
    }
}

fn action_of(options: &Document) -> Action {
    match options.get_str("validationAction") {
        Ok("warn") => Action::Warn,
        _ => Action::Error,
    }
}

thread_local! {
    /// Whether the command running on this thread bypasses validation.
    static BYPASS: Cell<bool> = const { Cell::new(false) };
    /// The last validator parsed on this thread: a batch of writes to one
    /// collection parses it once.
    static PARSED: RefCell<Option<(Document, Rc<Filter>)>> = const { RefCell::new(None) };
}

/// `bypassDocumentValidation` of a write command (false when absent).
pub fn bypass_of(cmd: &Document) -> Result<bool> {
    crate::commands::opt_bool(cmd, "bypassDocumentValidation", false)
}

/// Validation bypassed on this thread until dropped.
#[must_use = "the bypass applies only while the scope is held"]
pub struct Bypass {
    previous: bool,
    _thread_bound: PhantomData<*const ()>,
}

impl Bypass {
    pub fn enter(bypass: bool) -> Bypass {
        Bypass {
            previous: BYPASS.with(|b| b.replace(bypass)),
            _thread_bound: PhantomData,
        }
    }
}

impl Drop for Bypass {
    fn drop(&mut self) {
        BYPASS.with(|b| b.set(self.previous));
    }
}

fn parsed(validator: &Document) -> Result<Rc<Filter>> {
    if let Some(f) = PARSED.with(|p| {
        p.borrow()
            .as_ref()
            .filter(|(v, _)| v == validator)
            .map(|(_, f)| f.clone())
    }) {
        return Ok(f);
    }
    let f = Rc::new(Filter::parse(validator)?);
    PARSED.with(|p| *p.borrow_mut() = Some((validator.clone(), f.clone())));
    Ok(f)
}

/// The rule: may `new` be written into `ns` of `state` (where the
/// document it replaces, if any, still is)? Error 121 with MongoDB's
/// `errInfo` when the validator refuses it and the action is `error`;
/// logged and allowed when it is `warn`.
pub fn check(state: &BranchState, ns: &Namespace, new: &Document) -> Result<()> {
    let Some(coll) = state.collection(ns)? else {
        return Ok(());
    };
    let options = coll.options();
    let Ok(validator) = options.get_document("validator") else {
        return Ok(());
    };
    let level = level_of(options);
    if validator.is_empty() || level == Level::Off || BYPASS.with(Cell::get) {
        return Ok(());
    }
    let filter = parsed(validator)?;
    if filter.try_matches(new)? {
        return Ok(());
    }
    let id = new.get("_id").cloned().unwrap_or(Bson::Null);
    if level == Level::Moderate {
        // Moderate: an update of a document that already broke the rules
        // is not checked (inserts always are).
        let old_valid = coll.get_document(&id)?.map(|old| filter.matches(&old));
        if old_valid == Some(false) {
            return Ok(());
        }
    }
    let details = explain(validator, new);
    match action_of(options) {
        Action::Warn => {
            // The rule names only, never the values (a document may hold
            // secrets).
            tracing::warn!(namespace = %ns, rules = %rule_names(&details), "Document would fail validation");
            Ok(())
        }
        Action::Error => Err(CommandError::new(
            ErrorCode::DocumentValidationFailure,
            "Document failed validation",
        )
        .with_extra(doc! {"errInfo": {"failingDocumentId": id, "details": details}})),
    }
}

/// Every `operatorName` and `propertyName` in an explanation, in order.
fn rule_names(details: &Document) -> String {
    fn walk(v: &Bson, out: &mut Vec<String>) {
        match v {
            Bson::Document(d) => {
                for (k, v) in d {
                    if (k == "operatorName" || k == "propertyName")
                        && let Bson::String(s) = v
                    {
                        out.push(s.clone());
                    } else {
                        walk(v, out);
                    }
                }
            }
            Bson::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&Bson::Document(details.clone()), &mut out);
    out.join(",")
}

// ---- why a document failed: MongoDB 5.0+'s `errInfo.details` ---------------------

/// The `details` of a failed validation: the validator's clauses the
/// document does not satisfy (one clause: its own explanation; several:
/// an implicit `$and` with `clausesNotSatisfied`).
pub fn explain(validator: &Document, doc: &Document) -> Document {
    explain_clauses("$and", validator, doc)
}

fn clause_matches(k: &str, v: &Bson, doc: &Document) -> bool {
    Filter::parse(&doc! {k: v.clone()}).is_ok_and(|f| f.matches(doc))
}

fn explain_clauses(op: &str, clauses: &Document, doc: &Document) -> Document {
    let clauses: Vec<(&String, &Bson)> = clauses.iter().filter(|(k, _)| *k != "$comment").collect();
    if let [(k, v)] = clauses.as_slice() {
        return explain_clause(k, v, doc);
    }
    let failing: Vec<Bson> = clauses
        .iter()
        .enumerate()
        .filter(|(_, (k, v))| !clause_matches(k, v, doc))
        .map(|(i, (k, v))| {
            Bson::Document(doc! {"index": i as i32, "details": explain_clause(k, v, doc)})
        })
        .collect();
    doc! {"operatorName": op, "clausesNotSatisfied": failing}
}

fn explain_clause(k: &str, v: &Bson, doc: &Document) -> Document {
    match (k, v) {
        ("$and" | "$or" | "$nor", Bson::Array(items)) => {
            let failing: Vec<Bson> = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let item = item.as_document()?;
                    let matched = Filter::parse(item).is_ok_and(|f| f.matches(doc));
                    let details = if k == "$nor" {
                        if !matched {
                            return None;
                        }
                        doc! {"operatorName": "$nor", "specifiedAs": item.clone(), "reason": "child expression matched"}
                    } else {
                        if matched {
                            return None;
                        }
                        explain_clauses("$and", item, doc)
                    };
                    Some(Bson::Document(doc! {"index": i as i32, "details": details}))
                })
                .collect();
            doc! {"operatorName": k, "clausesNotSatisfied": failing}
        }
        ("$expr", _) => {
            let result = crate::query::expr::Expr::parse(v)
                .ok()
                .and_then(|e| e.eval(doc).ok().flatten())
                .unwrap_or(Bson::Null);
            doc! {
                "operatorName": "$expr",
                "specifiedAs": {"$expr": v.clone()},
                "reason": "expression did not match",
                "expressionResult": result,
            }
        }
        ("$jsonSchema", _) => match Schema::parse(v) {
            Ok(s) => s.explain(doc),
            Err(_) => doc! {"operatorName": "$jsonSchema"},
        },
        (path, Bson::Document(ops)) if ops.keys().next().is_some_and(|o| o.starts_with('$')) => {
            let ops: Vec<(&String, &Bson)> = ops.iter().filter(|(o, _)| *o != "$options").collect();
            if let [(op, arg)] = ops.as_slice() {
                return explain_operator(path, op, arg, doc);
            }
            let failing: Vec<Bson> = ops
                .iter()
                .enumerate()
                .filter(|(_, (op, arg))| {
                    !clause_matches(
                        path,
                        &Bson::Document(doc! {(*op).clone(): (*arg).clone()}),
                        doc,
                    )
                })
                .map(|(i, (op, arg))| {
                    Bson::Document(
                        doc! {"index": i as i32, "details": explain_operator(path, op, arg, doc)},
                    )
                })
                .collect();
            doc! {"operatorName": "$and", "clausesNotSatisfied": failing}
        }
        (path, value) => explain_operator(path, "$eq", value, doc),
    }
}

fn explain_operator(path: &str, op: &str, arg: &Bson, doc: &Document) -> Document {
    let resolved = resolve(doc, path);
    let specified = if op == "$eq" && !matches!(arg, Bson::Document(d) if d.contains_key("$eq")) {
        doc! {path: {"$eq": arg.clone()}}
    } else {
        doc! {path: {op: arg.clone()}}
    };
    let mut out = doc! {"operatorName": op, "specifiedAs": specified};
    let missing = resolved.values.is_empty();
    let reason = match op {
        "$exists" if crate::query::expr::truthy(arg) => "path does not exist",
        "$exists" => "path does exist",
        _ if missing && op != "$ne" && op != "$nin" && op != "$not" => "field was missing",
        "$eq" | "$ne" | "$gt" | "$gte" | "$lt" | "$lte" => "comparison failed",
        "$in" => "no matching value found in array",
        "$nin" => "matching value found in array",
        "$type" => "type did not match",
        "$regex" => "regular expression did not match",
        "$size" => "array length was not equal to given size",
        "$all" => "array did not contain all specified values",
        "$elemMatch" => "array did not satisfy the child predicate",
        "$mod" => "$mod did not evaluate to expected remainder",
        "$not" => "child expression matched",
        "$bitsAllSet" | "$bitsAnySet" | "$bitsAllClear" | "$bitsAnyClear" => {
            "bitwise operator failed to match"
        }
        _ => "expression did not match",
    };
    out.insert("reason", reason);
    match resolved.values.as_slice() {
        [] => {}
        [one] => {
            out.insert("consideredValue", (*one).clone());
            if op == "$type" {
                out.insert("consideredType", crate::query::expr::type_name(one));
            }
        }
        many => {
            out.insert(
                "consideredValues",
                many.iter().map(|v| (*v).clone()).collect::<Vec<_>>(),
            );
            if op == "$type" {
                out.insert(
                    "consideredTypes",
                    many.iter()
                        .map(|v| crate::query::expr::type_name(v))
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked_and_defaulted() {
        let mut o = Document::new();
        assert!(!apply_options(&doc! {"collMod": "c"}, "collMod", &mut o).unwrap());
        assert!(apply_options(&doc! {"validator": {"a": {"$gt": 1}}}, "create", &mut o).unwrap());
        assert_eq!(
            o,
            doc! {"validator": {"a": {"$gt": 1}}, "validationLevel": "strict", "validationAction": "error"}
        );
        apply_options(&doc! {"validationLevel": "moderate"}, "collMod", &mut o).unwrap();
        assert_eq!(o.get_str("validationLevel").unwrap(), "moderate");
        let bad = |cmd: Document| apply_options(&cmd, "create", &mut Document::new()).unwrap_err();
        assert_eq!(
            bad(doc! {"validationLevel": "lax"}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            bad(doc! {"validationAction": 1}).code,
            ErrorCode::TypeMismatch
        );
        assert_eq!(bad(doc! {"validator": 5}).code, ErrorCode::TypeMismatch);
        assert_eq!(
            bad(doc! {"validator": {"$foo": 1}}).code,
            ErrorCode::BadValue
        );
        assert_eq!(
            bad(doc! {"validator": {"$where": "true"}}).code,
            ErrorCode::Location6108304
        );
    }

    #[test]
    fn query_validators_explain_each_clause() {
        let v = doc! {"a": {"$gte": 5}, "b": "x", "c": {"$exists": true}};
        let d = doc! {"_id": 1, "a": 3, "b": "x"};
        assert_eq!(
            explain(&v, &d),
            doc! {"operatorName": "$and", "clausesNotSatisfied": [
                {"index": 0, "details": {"operatorName": "$gte", "specifiedAs": {"a": {"$gte": 5}}, "reason": "comparison failed", "consideredValue": 3}},
                {"index": 2, "details": {"operatorName": "$exists", "specifiedAs": {"c": {"$exists": true}}, "reason": "path does not exist"}},
            ]}
        );
        // One clause is explained alone; a missing field says so.
        assert_eq!(
            explain(&doc! {"b": "y"}, &doc! {}),
            doc! {"operatorName": "$eq", "specifiedAs": {"b": {"$eq": "y"}}, "reason": "field was missing"}
        );
        let or = explain(&doc! {"$or": [{"a": 1}, {"b": {"$type": "int"}}]}, &d);
        assert_eq!(or.get_str("operatorName").unwrap(), "$or");
        assert_eq!(or.get_array("clausesNotSatisfied").unwrap().len(), 2);
        let expr = explain(&doc! {"$expr": {"$gt": ["$a", 4]}}, &d);
        assert!(!expr.get_bool("expressionResult").unwrap());
    }
}
