//! Update documents: operator updates (`$set`, `$inc`, `$push`, ...) and
//! replacements, parsed once and applied to one document at a time; and the
//! document an upsert inserts.

use bson::{Bson, Document, doc, oid::ObjectId};

use super::aggregate::{InMemory, Pipeline};
use super::compare::{as_f64, compare, equal};
use super::filter::{Filter, equality_fields, parse_operators};
use super::path;
use super::positional::{ArrayFilters, expand, is_positional};
use super::sort::SortSpec;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;

/// A parsed update.
#[derive(Debug, Clone)]
pub enum UpdateSpec {
    /// A whole new document (the `_id` is kept).
    Replacement(Document),
    /// Operators in the order given, each with its (path, argument) pairs,
    /// and the `arrayFilters` their `$[id]` paths use.
    Operators(Vec<(UpdateOp, Vec<(String, Bson)>)>, ArrayFilters),
    /// A pipeline-style update (`u: [{$set: ...}, ...]`): the stages an
    /// update allows, run over the one document.
    Pipeline(Pipeline),
}

/// The stages MongoDB allows in a pipeline-style update.
const UPDATE_STAGES: &[&str] = &[
    "$addFields",
    "$set",
    "$project",
    "$unset",
    "$replaceRoot",
    "$replaceWith",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOp {
    Set,
    Unset,
    Inc,
    Mul,
    Min,
    Max,
    Rename,
    Push,
    AddToSet,
    Pull,
    PullAll,
    Pop,
    CurrentDate,
    SetOnInsert,
}

impl UpdateOp {
    fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "$set" => Self::Set,
            "$unset" => Self::Unset,
            "$inc" => Self::Inc,
            "$mul" => Self::Mul,
            "$min" => Self::Min,
            "$max" => Self::Max,
            "$rename" => Self::Rename,
            "$push" => Self::Push,
            "$addToSet" => Self::AddToSet,
            "$pull" => Self::Pull,
            "$pullAll" => Self::PullAll,
            "$pop" => Self::Pop,
            "$currentDate" => Self::CurrentDate,
            "$setOnInsert" => Self::SetOnInsert,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Set => "$set",
            Self::Unset => "$unset",
            Self::Inc => "$inc",
            Self::Mul => "$mul",
            Self::Min => "$min",
            Self::Max => "$max",
            Self::Rename => "$rename",
            Self::Push => "$push",
            Self::AddToSet => "$addToSet",
            Self::Pull => "$pull",
            Self::PullAll => "$pullAll",
            Self::Pop => "$pop",
            Self::CurrentDate => "$currentDate",
            Self::SetOnInsert => "$setOnInsert",
        }
    }
}

fn prefix_conflict(a: &str, b: &str) -> bool {
    a == b
        || (a.len() > b.len() && a.starts_with(b) && a.as_bytes()[b.len()] == b'.')
        || (b.len() > a.len() && b.starts_with(a) && b.as_bytes()[a.len()] == b'.')
}

impl UpdateSpec {
    /// Parses the `u` of an update statement.
    pub fn parse(update: &Bson) -> Result<UpdateSpec> {
        Self::parse_with(update, None)
    }

    /// Parses the `u` of an update statement with its `arrayFilters`.
    pub fn parse_with(update: &Bson, array_filters: Option<&Bson>) -> Result<UpdateSpec> {
        let filters = ArrayFilters::parse(array_filters)?;
        let has_filters = !matches!(array_filters, None | Some(Bson::Null));
        let doc = match update {
            Bson::Document(d) => d,
            Bson::Array(_) if has_filters => {
                return Err(CommandError::failed_to_parse(
                    "arrayFilters may not be specified for pipeline-style updates",
                ));
            }
            Bson::Array(stages) => return parse_pipeline(stages),
            _ => {
                return Err(CommandError::failed_to_parse(
                    "Update argument must be either an object or an array",
                ));
            }
        };
        let operators = doc.keys().filter(|k| k.starts_with('$')).count();
        if operators == 0 {
            if has_filters {
                return Err(CommandError::failed_to_parse(
                    "Cannot use array filters with a replacement-style update",
                ));
            }
            validate_replacement(doc)?;
            return Ok(UpdateSpec::Replacement(doc.clone()));
        }
        let mut ops = Vec::with_capacity(doc.len());
        let mut seen: Vec<String> = Vec::new();
        for (name, arg) in doc {
            let op = UpdateOp::from_name(name).ok_or_else(|| {
                CommandError::failed_to_parse(format!(
                    "Unknown modifier: {name}. Expected a valid update modifier or pipeline-style update specified as an array"
                ))
            })?;
            let Bson::Document(fields) = arg else {
                return Err(CommandError::failed_to_parse(format!(
                    "Modifiers operate on fields but we found type {} instead. For example: {{$mod: {{<field>: ...}}}} not {{{name}: {arg}}}",
                    super::expr::type_name(arg)
                )));
            };
            let mut pairs = Vec::with_capacity(fields.len());
            for (path, value) in fields {
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(CommandError::new(
                        ErrorCode::EmptyFieldName,
                        format!(
                            "An update path '{path}' contains an empty field name, which is not allowed."
                        ),
                    ));
                }
                crate::limits::check_path(path)?;
                if path.split('.').filter(|p| *p == "$").count() > 1 {
                    return Err(CommandError::bad_value(format!(
                        "Too many positional (i.e. '$') elements found in path '{path}'"
                    )));
                }
                if op == UpdateOp::Rename && is_positional(path) {
                    return Err(CommandError::bad_value(format!(
                        "The source field for $rename may not be dynamic: {path}"
                    )));
                }
                let mut targets = vec![path.clone()];
                if op == UpdateOp::Rename {
                    let Bson::String(to) = value else {
                        return Err(CommandError::bad_value(format!(
                            "The 'to' field for $rename must be a string: {path}: {value}"
                        )));
                    };
                    crate::limits::check_path(to)?;
                    if is_positional(to) {
                        return Err(CommandError::bad_value(format!(
                            "The destination field for $rename may not be dynamic: {to}"
                        )));
                    }
                    if prefix_conflict(path, to) {
                        return Err(CommandError::bad_value(format!(
                            "The source and target field for $rename must not be on the same path: {path}: \"{to}\""
                        )));
                    }
                    targets.push(to.clone());
                }
                for t in targets {
                    if let Some(other) = seen.iter().find(|s| prefix_conflict(s, &t)) {
                        return Err(CommandError::new(
                            ErrorCode::ConflictingUpdateOperators,
                            format!("Updating the path '{t}' would create a conflict at '{other}'"),
                        ));
                    }
                    seen.push(t);
                }
                check_operand(op, path, value)?;
                pairs.push((path.clone(), value.clone()));
            }
            ops.push((op, pairs));
        }
        let paths: Vec<&str> = ops
            .iter()
            .flat_map(|(_, pairs)| pairs.iter().map(|(p, _)| p.as_str()))
            .collect();
        filters.check_used(&paths)?;
        Ok(UpdateSpec::Operators(ops, filters))
    }

    /// Applies the update to `doc`. `inserting` is true when the document is
    /// being created by an upsert (`$setOnInsert` applies only then).
    pub fn apply(&self, doc: &Document, inserting: bool) -> Result<Document> {
        self.apply_matched(doc, inserting, None)
    }

    /// [`UpdateSpec::apply`] to a document `query` matched: `a.$` paths
    /// name the element of `a` the query's conditions on `a` matched.
    pub fn apply_matched(
        &self,
        doc: &Document,
        inserting: bool,
        query: Option<&Filter>,
    ) -> Result<Document> {
        let out = match self {
            UpdateSpec::Replacement(r) => {
                let mut out = Document::new();
                if let Some(id) = doc.get("_id") {
                    if let Some(new_id) = r.get("_id")
                        && !equal(id, new_id)
                    {
                        return Err(immutable_id());
                    }
                    out.insert("_id", id.clone());
                }
                for (k, v) in r {
                    if k != "_id" || !out.contains_key("_id") {
                        out.insert(k.clone(), v.clone());
                    }
                }
                return Ok(out);
            }
            UpdateSpec::Pipeline(p) => {
                let mut out = p.run(vec![doc.clone()], &InMemory(Vec::new()))?;
                match (out.pop(), out.is_empty()) {
                    // A result without `_id` keeps the document's own (as
                    // `$replaceWith: "$sub"` or `$project: {a: 1, _id: 0}`
                    // leave it out); a different one is refused below.
                    (Some(d), true) if !d.contains_key("_id") => match doc.get("_id") {
                        Some(id) => {
                            let mut with_id = doc! {"_id": id.clone()};
                            with_id.extend(d);
                            with_id
                        }
                        None => d,
                    },
                    (Some(d), true) => d,
                    _ => {
                        return Err(CommandError::new(
                            ErrorCode::InternalError,
                            "an update pipeline must give exactly one document",
                        ));
                    }
                }
            }
            UpdateSpec::Operators(ops, filters) => {
                let mut out = doc.clone();
                let mut growth = Growth::default();
                for (op, pairs) in ops {
                    for (p, arg) in pairs {
                        if is_positional(p) {
                            for concrete in expand(&out, p, query, filters)? {
                                apply_one(&mut out, *op, &concrete, arg, inserting, &mut growth)?;
                            }
                        } else {
                            apply_one(&mut out, *op, p, arg, inserting, &mut growth)?;
                        }
                    }
                }
                out
            }
        };
        match (doc.get("_id"), out.get("_id")) {
            (Some(a), Some(b))
                if !equal(a, b)
                    || crate::query::compare::type_rank(a)
                        != crate::query::compare::type_rank(b) =>
            {
                Err(immutable_id())
            }
            (Some(_), None) => Err(immutable_id()),
            _ => Ok(out),
        }
    }

    pub fn is_replacement(&self) -> bool {
        matches!(self, UpdateSpec::Replacement(_))
    }
}

/// `u: [...]`: only the stages an update allows, each one field.
fn parse_pipeline(stages: &[Bson]) -> Result<UpdateSpec> {
    for stage in stages {
        let Bson::Document(d) = stage else {
            return Err(CommandError::type_mismatch(
                "Each element of the 'pipeline' array must be an object",
            ));
        };
        if let Some(name) = d.keys().next()
            && d.len() == 1
            && !UPDATE_STAGES.contains(&name.as_str())
        {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                format!("{name} is not allowed to be used within an update"),
            ));
        }
    }
    Ok(UpdateSpec::Pipeline(Pipeline::parse(stages)?))
}

fn immutable_id() -> CommandError {
    CommandError::new(
        ErrorCode::ImmutableField,
        "Performing an update on the path '_id' would modify the immutable field '_id'",
    )
}

fn validate_replacement(doc: &Document) -> Result<()> {
    for k in doc.keys() {
        if k.starts_with('$') {
            return Err(CommandError::new(
                ErrorCode::DollarPrefixedFieldName,
                format!(
                    "The dollar ($) prefixed field '{k}' in '{k}' is not allowed in the context of an update's replacement document."
                ),
            ));
        }
    }
    Ok(())
}

fn check_operand(op: UpdateOp, path: &str, v: &Bson) -> Result<()> {
    match op {
        UpdateOp::Inc | UpdateOp::Mul if as_f64(v).is_none() => {
            Err(CommandError::type_mismatch(format!(
                "Cannot {} with non-numeric argument: {{{path}: {v}}}",
                if op == UpdateOp::Inc {
                    "increment"
                } else {
                    "multiply"
                }
            )))
        }
        UpdateOp::Pop if !matches!(as_f64(v), Some(x) if x == 1.0 || x == -1.0) => Err(
            CommandError::failed_to_parse(format!("$pop expects 1 or -1, found: {v}")),
        ),
        UpdateOp::PullAll if !matches!(v, Bson::Array(_)) => Err(CommandError::bad_value(format!(
            "$pullAll requires an array argument but was given a {}",
            super::expr::type_name(v)
        ))),
        _ => Ok(()),
    }
}

/// What an update's array padding has added to the document it builds:
/// each `"a.1500000"` may add 1,500,000 nulls, and a hundred such paths
/// would take gigabytes, so the document is held to
/// [`limits::MAX_DOCUMENT_SIZE`] as it grows, with MongoDB's error for a
/// too-large update result. (Without padding an update builds at most
/// what its own arguments hold.)
#[derive(Default)]
struct Growth {
    /// The document's size when last measured (after the first padding).
    measured: Option<usize>,
    /// Padding since then.
    padded: usize,
}

impl Growth {
    fn set(&mut self, doc: &mut Document, p: &str, v: Bson) -> Result<()> {
        let padded = path::set_padding(doc, p, v)?;
        if padded == 0 {
            return Ok(());
        }
        self.padded = self.padded.saturating_add(padded);
        let estimate = self.measured.map(|m| m.saturating_add(self.padded));
        if estimate.is_none_or(|e| e > limits::MAX_DOCUMENT_SIZE) {
            let size = limits::document_size(doc);
            if size > limits::MAX_DOCUMENT_SIZE {
                return Err(limits::update_too_large());
            }
            self.measured = Some(size);
            self.padded = 0;
        }
        Ok(())
    }
}

fn apply_one(
    doc: &mut Document,
    op: UpdateOp,
    p: &str,
    arg: &Bson,
    inserting: bool,
    growth: &mut Growth,
) -> Result<()> {
    let current = path::get(doc, p).cloned();
    match op {
        UpdateOp::Set => growth.set(doc, p, arg.clone()),
        UpdateOp::SetOnInsert => {
            if inserting {
                growth.set(doc, p, arg.clone())?;
            }
            Ok(())
        }
        UpdateOp::Unset => {
            path::unset(doc, p);
            Ok(())
        }
        UpdateOp::Inc | UpdateOp::Mul => {
            let base = match &current {
                None => {
                    let zero = if op == UpdateOp::Inc {
                        arg.clone()
                    } else {
                        multiply(&Bson::Int32(0), arg)
                    };
                    return growth.set(doc, p, zero);
                }
                Some(v) if as_f64(v).is_some() => v.clone(),
                Some(v) => {
                    let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
                    return Err(CommandError::type_mismatch(format!(
                        "Cannot apply {} to a value of non-numeric type. {{_id: {id}}} has the field '{p}' of non-numeric type {}",
                        op.name(),
                        super::expr::type_name(v)
                    )));
                }
            };
            let v = if op == UpdateOp::Inc {
                add(&base, arg)
            } else {
                multiply(&base, arg)
            };
            growth.set(doc, p, v)
        }
        UpdateOp::Min | UpdateOp::Max => {
            let replace = match &current {
                None => true,
                Some(c) => {
                    let o = compare(arg, c);
                    if op == UpdateOp::Min {
                        o.is_lt()
                    } else {
                        o.is_gt()
                    }
                }
            };
            if replace {
                growth.set(doc, p, arg.clone())?;
            }
            Ok(())
        }
        UpdateOp::Rename => {
            let Bson::String(to) = arg else { return Ok(()) };
            if let Some(v) = current {
                path::unset(doc, p);
                growth.set(doc, to, v)?;
            }
            Ok(())
        }
        UpdateOp::CurrentDate => {
            let ts =
                matches!(arg, Bson::Document(d) if d.get_str("$type").ok() == Some("timestamp"));
            let now = bson::DateTime::now();
            let v = if ts {
                let ms = now.timestamp_millis();
                Bson::Timestamp(bson::Timestamp {
                    time: (ms / 1000) as u32,
                    increment: (ms % 1000) as u32,
                })
            } else {
                Bson::DateTime(now)
            };
            growth.set(doc, p, v)
        }
        UpdateOp::Push
        | UpdateOp::AddToSet
        | UpdateOp::Pull
        | UpdateOp::PullAll
        | UpdateOp::Pop => {
            let mut arr = match current {
                None => Vec::new(),
                Some(Bson::Array(a)) => a,
                Some(other) => {
                    if matches!(op, UpdateOp::Pull | UpdateOp::PullAll | UpdateOp::Pop)
                        && current_is_missing_like(&other)
                    {
                        return Ok(());
                    }
                    return Err(CommandError::bad_value(format!(
                        "The field '{p}' must be an array but is of type {} in document {{_id: {}}}",
                        super::expr::type_name(&other),
                        doc.get("_id").cloned().unwrap_or(Bson::Null)
                    )));
                }
            };
            let existed = path::get(doc, p).is_some();
            match op {
                UpdateOp::Push => push(&mut arr, arg)?,
                UpdateOp::AddToSet => {
                    let items = match arg {
                        Bson::Document(d) if d.contains_key("$each") => match d.get("$each") {
                            Some(Bson::Array(a)) => a.clone(),
                            _ => {
                                return Err(CommandError::type_mismatch(
                                    "The argument to $each in $addToSet must be an array",
                                ));
                            }
                        },
                        v => vec![v.clone()],
                    };
                    for i in items {
                        if !arr.iter().any(|e| equal(e, &i)) {
                            arr.push(i);
                        }
                    }
                }
                UpdateOp::Pull => {
                    if !existed {
                        return Ok(());
                    }
                    let cond = PullCond::parse(arg)?;
                    arr.retain(|e| !cond.matches(e));
                }
                UpdateOp::PullAll => {
                    if !existed {
                        return Ok(());
                    }
                    if let Bson::Array(vals) = arg {
                        arr.retain(|e| !vals.iter().any(|v| equal(e, v)));
                    }
                }
                _ => {
                    if !existed {
                        return Ok(());
                    }
                    if as_f64(arg).unwrap_or(1.0) < 0.0 {
                        if !arr.is_empty() {
                            arr.remove(0);
                        }
                    } else {
                        arr.pop();
                    }
                }
            }
            growth.set(doc, p, Bson::Array(arr))
        }
    }
}

fn current_is_missing_like(v: &Bson) -> bool {
    matches!(v, Bson::Null)
}

fn push(arr: &mut Vec<Bson>, arg: &Bson) -> Result<()> {
    let Bson::Document(d) = arg else {
        arr.push(arg.clone());
        return Ok(());
    };
    if !d.contains_key("$each") {
        arr.push(arg.clone());
        return Ok(());
    }
    let Some(Bson::Array(each)) = d.get("$each") else {
        return Err(CommandError::bad_value(
            "The argument to $each in $push must be an array",
        ));
    };
    for k in d.keys() {
        if !matches!(k.as_str(), "$each" | "$slice" | "$sort" | "$position") {
            return Err(CommandError::bad_value(format!(
                "Unrecognized clause in $push: {k}"
            )));
        }
    }
    let position = match d.get("$position") {
        None => arr.len(),
        Some(v) => match super::compare::as_i64(v) {
            Some(p) if p < 0 => (arr.len() as i64 + p).max(0) as usize,
            Some(p) => (p as usize).min(arr.len()),
            None => {
                return Err(CommandError::bad_value(
                    "The value for $position must be an integer value",
                ));
            }
        },
    };
    for (i, item) in each.iter().enumerate() {
        arr.insert(position + i, item.clone());
    }
    if let Some(sort) = d.get("$sort") {
        match sort {
            Bson::Document(spec) => {
                let s = SortSpec::parse(spec)?;
                arr.sort_by(|a, b| match (a, b) {
                    (Bson::Document(x), Bson::Document(y)) => s.compare(x, y),
                    _ => compare(a, b),
                });
            }
            v => match super::compare::as_i64(v) {
                Some(1) => arr.sort_by(compare),
                Some(-1) => arr.sort_by(|a, b| compare(b, a)),
                _ => {
                    return Err(CommandError::bad_value(
                        "The $sort element value must be either 1 or -1",
                    ));
                }
            },
        }
    }
    if let Some(slice) = d.get("$slice") {
        let Some(n) = super::compare::as_i64(slice) else {
            return Err(CommandError::bad_value(
                "The value for $slice must be an integer value",
            ));
        };
        if n >= 0 {
            arr.truncate(n as usize);
        } else {
            let keep = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
            if arr.len() > keep {
                arr.drain(..arr.len() - keep);
            }
        }
    }
    Ok(())
}

/// The condition of `$pull`: a value, operators on the element, or a query
/// on embedded documents.
enum PullCond {
    Value(Bson),
    Ops(super::filter::Pred),
    Query(Filter),
}

impl PullCond {
    fn parse(arg: &Bson) -> Result<PullCond> {
        Ok(match arg {
            Bson::Document(d)
                if d.keys().next().is_some_and(|k| {
                    k.starts_with('$') && !matches!(k.as_str(), "$and" | "$or" | "$nor")
                }) =>
            {
                PullCond::Ops(parse_operators(d)?)
            }
            Bson::Document(d) => PullCond::Query(Filter::parse(d)?),
            v => PullCond::Value(v.clone()),
        })
    }

    fn matches(&self, e: &Bson) -> bool {
        match self {
            PullCond::Value(v) => equal(e, v),
            PullCond::Ops(p) => p.matches(&super::path::Resolved {
                values: vec![e],
                missing: false,
            }),
            PullCond::Query(f) => matches!(e, Bson::Document(d) if f.matches(d)),
        }
    }
}

fn add(a: &Bson, b: &Bson) -> Bson {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x
            .checked_add(*y)
            .map(Bson::Int32)
            .unwrap_or(Bson::Int64(*x as i64 + *y as i64)),
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            let (x, y) = (
                super::compare::as_i64(a).unwrap_or(0),
                super::compare::as_i64(b).unwrap_or(0),
            );
            x.checked_add(y)
                .map(Bson::Int64)
                .unwrap_or(Bson::Double(x as f64 + y as f64))
        }
        _ => Bson::Double(as_f64(a).unwrap_or(0.0) + as_f64(b).unwrap_or(0.0)),
    }
}

fn multiply(a: &Bson, b: &Bson) -> Bson {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x
            .checked_mul(*y)
            .map(Bson::Int32)
            .unwrap_or(Bson::Int64(*x as i64 * *y as i64)),
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            let (x, y) = (
                super::compare::as_i64(a).unwrap_or(0),
                super::compare::as_i64(b).unwrap_or(0),
            );
            x.checked_mul(y)
                .map(Bson::Int64)
                .unwrap_or(Bson::Double(x as f64 * y as f64))
        }
        _ => Bson::Double(as_f64(a).unwrap_or(0.0) * as_f64(b).unwrap_or(0.0)),
    }
}

/// The document an upsert inserts when nothing matched: the filter's
/// equality fields, then the update applied as an insert, then an `_id`
/// (a new ObjectId) if it still has none, placed first.
pub fn upsert_document(filter: &Document, update: &UpdateSpec) -> Result<Document> {
    // A document that grows past 16 MiB here is an upsert's: MongoDB's 17420.
    upsert_document_unchecked(filter, update).map_err(|e| match e.code {
        ErrorCode::Location17419 => CommandError::new(
            ErrorCode::Location17420,
            format!(
                "Document to upsert is larger than {}",
                limits::MAX_DOCUMENT_SIZE
            ),
        ),
        _ => e,
    })
}

fn upsert_document_unchecked(filter: &Document, update: &UpdateSpec) -> Result<Document> {
    let mut seed = Document::new();
    let mut fields = Vec::new();
    equality_fields(filter, &mut fields);
    let mut growth = Growth::default();
    for (p, v) in fields {
        if p == "_id" || !update.is_replacement() {
            growth.set(&mut seed, &p, v)?;
        }
    }
    let mut doc = match update {
        UpdateSpec::Replacement(r) => {
            let mut d = Document::new();
            if let Some(id) = seed.get("_id").filter(|_| !r.contains_key("_id")) {
                d.insert("_id", id.clone());
            }
            d.extend(r.clone());
            d
        }
        ops => {
            // The seed has no _id yet when the filter did not pin one; apply
            // the operators to it as they would apply to a new document.
            let applied = ops.apply(&seed, true);
            match applied {
                Ok(d) => d,
                Err(e) if e.code == ErrorCode::ImmutableField && !seed.contains_key("_id") => {
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
    };
    if !doc.contains_key("_id") {
        let mut with_id = Document::new();
        with_id.insert("_id", ObjectId::new());
        with_id.extend(doc);
        doc = with_id;
    } else if doc.keys().next().map(String::as_str) != Some("_id") {
        let id = doc.remove("_id").unwrap_or(Bson::Null);
        let mut with_id = Document::new();
        with_id.insert("_id", id);
        with_id.extend(doc);
        doc = with_id;
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    fn up(d: Document, u: Document) -> Result<Document> {
        UpdateSpec::parse(&Bson::Document(u))?.apply(&d, false)
    }

    #[test]
    fn set_unset_inc() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 2}};
        let r = up(
            d,
            doc! {"$set": {"b.d": 3}, "$unset": {"a": ""}, "$inc": {"n": 2, "b.c": 1}},
        )
        .unwrap();
        assert_eq!(r, doc! {"_id": 1, "b": {"c": 3, "d": 3}, "n": 2});
    }

    #[test]
    fn numeric_types_and_errors() {
        let d = doc! {"_id": 1, "i": 2147483647, "s": "x"};
        let r = up(d.clone(), doc! {"$inc": {"i": 1}}).unwrap();
        assert_eq!(r.get("i"), Some(&Bson::Int64(2147483648)));
        assert_eq!(
            up(d.clone(), doc! {"$inc": {"s": 1}}).unwrap_err().code,
            ErrorCode::TypeMismatch
        );
        assert_eq!(
            up(d.clone(), doc! {"$mul": {"i": 0.5}})
                .unwrap()
                .get_f64("i")
                .unwrap(),
            2147483647.0 * 0.5
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"_id": 2}}).unwrap_err().code,
            ErrorCode::ImmutableField
        );
        assert_eq!(
            up(d.clone(), doc! {"$set": {"a": 1}, "$inc": {"a": 1}})
                .unwrap_err()
                .code,
            ErrorCode::ConflictingUpdateOperators
        );
        assert_eq!(
            up(d, doc! {"$foo": {"a": 1}}).unwrap_err().code,
            ErrorCode::FailedToParse
        );
    }

    #[test]
    fn min_max_rename() {
        let d = doc! {"_id": 1, "a": 5, "b": 1};
        let r = up(
            d,
            doc! {"$min": {"a": 3}, "$max": {"c": 9}, "$rename": {"b": "z"}},
        )
        .unwrap();
        assert_eq!(r, doc! {"_id": 1, "a": 3, "c": 9, "z": 1});
    }

    #[test]
    fn arrays() {
        let d = doc! {"_id": 1, "a": [3, 1]};
        assert_eq!(
            up(d.clone(), doc! {"$push": {"a": 2}})
                .unwrap()
                .get_array("a")
                .unwrap(),
            &vec![bson!(3), bson!(1), bson!(2)]
        );
        let r = up(
            d.clone(),
            doc! {"$push": {"a": {"$each": [5, 4], "$sort": 1, "$slice": -3}}},
        )
        .unwrap();
        assert_eq!(
            r.get_array("a").unwrap(),
            &vec![bson!(3), bson!(4), bson!(5)]
        );
        let r = up(
            d.clone(),
            doc! {"$push": {"a": {"$each": [0], "$position": 0}}},
        )
        .unwrap();
        assert_eq!(r.get_array("a").unwrap()[0], bson!(0));
        let r = up(
            d.clone(),
            doc! {"$push": {"a": {"$each": [9], "$slice": i64::MIN}}},
        )
        .unwrap();
        assert_eq!(r.get_array("a").unwrap().len(), 3);
        let r = up(d.clone(), doc! {"$addToSet": {"a": {"$each": [1, 7]}}}).unwrap();
        assert_eq!(r.get_array("a").unwrap().len(), 3);
        let r = up(d.clone(), doc! {"$pull": {"a": {"$gte": 3}}}).unwrap();
        assert_eq!(r.get_array("a").unwrap(), &vec![bson!(1)]);
        let r = up(d.clone(), doc! {"$pullAll": {"a": [1, 3]}}).unwrap();
        assert!(r.get_array("a").unwrap().is_empty());
        let r = up(d.clone(), doc! {"$pop": {"a": -1}}).unwrap();
        assert_eq!(r.get_array("a").unwrap(), &vec![bson!(1)]);
        let r = up(
            doc! {"_id": 1, "a": [{"x": 1}, {"x": 2}]},
            doc! {"$pull": {"a": {"x": 2}}},
        )
        .unwrap();
        assert_eq!(r.get_array("a").unwrap().len(), 1);
        assert!(up(doc! {"_id": 1, "a": 1}, doc! {"$push": {"a": 1}}).is_err());
    }

    /// Found while writing the query generator's backfill cases (the
    /// `"a.400000000"` family): each path may pad up to the backfill limit,
    /// so a hundred of them over an array of arrays built ~15 GB of nulls.
    #[test]
    fn padding_many_arrays_is_held_to_the_document_size() {
        let d = doc! {"_id": 1, "arr": vec![Bson::Array(Vec::new()); 100]};
        let mut set = Document::new();
        for i in 0..100 {
            set.insert(format!("arr.{i}.1500000"), 1);
        }
        let e = up(d.clone(), doc! {"$set": set}).unwrap_err();
        assert_eq!(e.code, ErrorCode::Location17419);
        assert_eq!(
            e.message,
            "Resulting document after update is larger than 16777216"
        );
        // One padding to the limit fits in a document, as in MongoDB.
        let r = up(d.clone(), doc! {"$set": {"arr.0.1500000": 1}}).unwrap();
        assert_eq!(
            r.get_array("arr").unwrap()[0].as_array().unwrap().len(),
            1_500_001
        );
        // Two do not (2 x 1,500,000 nulls are more than 16 MiB).
        let e = up(d, doc! {"$inc": {"arr.0.1500000": 1, "arr.1.1500000": 1}}).unwrap_err();
        assert_eq!(e.code, ErrorCode::Location17419);
        // The document an upsert builds from its filter, too.
        let mut filter = doc! {"a": [1], "b": [1], "c": [1]};
        for k in ["a", "b", "c"] {
            filter.insert(format!("{k}.1500000"), 1);
        }
        let u = UpdateSpec::parse(&bson!({"$set": {"x": 1}})).unwrap();
        assert_eq!(
            upsert_document(&filter, &u).unwrap_err().code,
            ErrorCode::Location17420
        );
    }

    #[test]
    fn array_index_padding_is_capped() {
        let d = doc! {"_id": 1, "a": [1, 2]};
        let e = up(d.clone(), doc! {"$set": {"a.400000000": 1}}).unwrap_err();
        assert_eq!(e.code, ErrorCode::CannotBackfillArray);
        let r = up(d, doc! {"$set": {"a.5": 1}}).unwrap();
        assert_eq!(r.get_array("a").unwrap().len(), 6);
        let long = vec!["a"; 201].join(".");
        assert_eq!(
            UpdateSpec::parse(&bson!({"$set": {long: 1}}))
                .unwrap_err()
                .code,
            ErrorCode::Overflow
        );
    }

    #[test]
    fn pipeline_updates() {
        let d = doc! {"_id": 1, "t": {"u": {"v": 1}}, "x": 1};
        let p = |u: Bson| UpdateSpec::parse(&u).and_then(|u| u.apply(&d, false));
        assert_eq!(
            p(bson!([{"$replaceRoot": {"newRoot": "$t"}}, {"$addFields": {"foo": 1}}])).unwrap(),
            doc! {"_id": 1, "u": {"v": 1}, "foo": 1}
        );
        assert_eq!(
            p(bson!([{"$set": {"y": {"$add": ["$x", 1]}}}, {"$unset": "t"}])).unwrap(),
            doc! {"_id": 1, "x": 1, "y": 2}
        );
        assert_eq!(
            p(bson!([{"$replaceWith": {"$setField": {"field": {"$literal": "$a.b"}, "value": 2, "input": "$$ROOT"}}}]))
                .unwrap(),
            doc! {"_id": 1, "t": {"u": {"v": 1}}, "x": 1, "$a.b": 2}
        );
        assert_eq!(
            p(bson!([{"$set": {"x": "$$REMOVE"}}, {"$project": {"t": 0}}])).unwrap(),
            doc! {"_id": 1}
        );
        // Only the stages an update allows; `_id` stays immutable.
        assert_eq!(
            p(bson!([{"$match": {}}])).unwrap_err().code,
            ErrorCode::InvalidOptions
        );
        assert_eq!(
            p(bson!([{"$set": {"_id": 2}}])).unwrap_err().code,
            ErrorCode::ImmutableField
        );
        assert_eq!(p(bson!([1])).unwrap_err().code, ErrorCode::TypeMismatch);
        // An upsert seeds the new document from the filter, then runs the pipeline.
        let u = UpdateSpec::parse(&bson!([{"$set": {"b": {"$literal": "$x"}}}])).unwrap();
        let up = upsert_document(&doc! {"_id": 7, "a": 1}, &u).unwrap();
        assert_eq!(up, doc! {"_id": 7, "a": 1, "b": "$x"});
    }

    #[test]
    fn pipeline_updates_are_bounded() {
        crate::limits::with_worker_stack(pipeline_updates_are_bounded_inner);
    }

    fn pipeline_updates_are_bounded_inner() {
        // Deep expressions and long pipelines fail with MongoDB's errors, not a crash.
        let mut deep = bson!(1);
        for _ in 0..(limits::MAX_EXPRESSION_DEPTH + 5) {
            deep = bson!({"$add": [deep]});
        }
        assert!(UpdateSpec::parse(&bson!([{"$set": {"x": deep}}])).is_err());
        let long: Vec<Bson> = (0..100_000).map(|_| bson!({"$set": {"x": 1}})).collect();
        assert!(UpdateSpec::parse(&Bson::Array(long)).is_err());
        // A value doubled past 16 MiB is refused as it is built.
        let big = "x".repeat(1 << 20);
        let d = doc! {"_id": 1, "s": big};
        let mut stages = Vec::new();
        for _ in 0..20 {
            stages.push(bson!({"$set": {"s": {"$concat": ["$s", "$s"]}}}));
        }
        let u = UpdateSpec::parse(&Bson::Array(stages)).unwrap();
        assert!(u.apply(&d, false).is_err());
    }

    #[test]
    fn replacement_keeps_id() {
        let r = up(doc! {"_id": 1, "a": 1}, doc! {"b": 2}).unwrap();
        assert_eq!(r, doc! {"_id": 1, "b": 2});
        assert!(up(doc! {"_id": 1}, doc! {"_id": 2, "b": 2}).is_err());
    }

    #[test]
    fn upserts() {
        let u = UpdateSpec::parse(&bson!({"$set": {"b": 2}, "$setOnInsert": {"c": 3}})).unwrap();
        let d = upsert_document(&doc! {"_id": 7, "a": 1, "x": {"$gt": 1}}, &u).unwrap();
        assert_eq!(d, doc! {"_id": 7, "a": 1, "b": 2, "c": 3});
        let u = UpdateSpec::parse(&bson!({"z": 1})).unwrap();
        let d = upsert_document(&doc! {"a": 1}, &u).unwrap();
        assert!(d.get_object_id("_id").is_ok());
        assert_eq!(d.get_i32("z").unwrap(), 1);
        assert!(!d.contains_key("a"));
    }
}
