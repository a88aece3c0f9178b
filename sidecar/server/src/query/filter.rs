//! Query filters: parsed once into a [`Filter`] (so a malformed filter is an
//! error even on an empty collection, and regexes compile once), then matched
//! against documents with MongoDB's array and null semantics.

use std::cmp::Ordering;

use bson::{Bson, Document};
use regex::Regex;

use super::bits::{BitTest, Bits};
use super::compare::{as_f64, compare, equal, type_rank};
use super::expr::{Expr, truthy};
use super::path::{Resolved, resolve};
use super::text::TextQuery;
use crate::error::{CommandError, Result};

/// A parsed query filter.
#[derive(Debug, Clone)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Nor(Vec<Filter>),
    Field {
        path: String,
        pred: Pred,
    },
    Expr(Expr),
    JsonSchema(Box<super::schema::Schema>),
    /// `$text`: matched through the query bound to the collection's text
    /// index (`query::text`).
    Text(Box<TextQuery>),
}

/// Where `$text` may appear while a filter parses: MongoDB takes it in a
/// command's query (top level, `$and`, `$or`), not under `$nor`, and
/// nowhere else (validators, `$elemMatch`, `$pull`, `$lookup`...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextCtx {
    Allowed,
    UnderNor,
    No,
}

/// A predicate on the values at one path.
#[derive(Debug, Clone)]
pub enum Pred {
    Eq(Bson),
    Ne(Bson),
    Cmp(Ordering, bool, Bson),
    In(Vec<InItem>),
    Nin(Vec<InItem>),
    Exists(bool),
    Type(Vec<TypeSel>),
    Regex(Box<Regex>),
    All(Vec<Pred>),
    ElemMatch(Box<ElemMatch>),
    Size(i64),
    Mod(i64, i64),
    Not(Box<Pred>),
    And(Vec<Pred>),
    /// `$geoWithin`, `$geoIntersects`, `$near`, `$nearSphere` (`query::geo`).
    Geo(Box<super::geo::GeoPred>),
    /// `$bitsAllSet`, `$bitsAllClear`, `$bitsAnySet`, `$bitsAnyClear` (`query::bits`).
    Bits(Box<Bits>),
}

#[derive(Debug, Clone)]
pub enum InItem {
    Value(Bson),
    Regex(Box<Regex>),
}

#[derive(Debug, Clone)]
pub enum ElemMatch {
    /// `{$elemMatch: {a: 1, b: {$gt: 2}}}`: elements are documents matched by a query.
    Query(Filter),
    /// `{$elemMatch: {$gt: 1, $lt: 5}}`: elements are values matched by operators.
    Value(Vec<Pred>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TypeSel {
    Number,
    Code(i32),
}

impl Filter {
    /// Parses a filter document where `$text` is not taken (see
    /// [`Filter::parse_query`]).
    pub fn parse(doc: &Document) -> Result<Filter> {
        let f = Self::parse_at(doc, 0, TextCtx::No)?;
        super::geo::refuse_near(&f)?;
        Ok(f)
    }

    /// Parses a command's query (find, count, distinct, update, delete,
    /// findAndModify, an aggregation's first `$match`): one `$text` is
    /// taken, at the top level or under `$and`/`$or`; the handler binds it
    /// to the collection's text index (`query::text::bind`).
    pub fn parse_query(doc: &Document) -> Result<Filter> {
        let f = Self::parse_at(doc, 0, TextCtx::Allowed)?;
        if f.text_count() > 1 {
            return Err(CommandError::bad_value("Too many text expressions"));
        }
        super::geo::check_query(&f)?;
        Ok(f)
    }

    /// The `$text` query of the filter, if it has one.
    pub fn text_query(&self) -> Option<&TextQuery> {
        match self {
            Filter::Text(q) => Some(q),
            Filter::And(fs) | Filter::Or(fs) => fs.iter().find_map(Filter::text_query),
            _ => None,
        }
    }

    fn text_count(&self) -> usize {
        match self {
            Filter::Text(_) => 1,
            Filter::And(fs) | Filter::Or(fs) => fs.iter().map(Filter::text_count).sum(),
            _ => 0,
        }
    }

    /// Parses a filter nested `depth` levels in a query tree (logical
    /// operators, `$elemMatch`, `$not`), refused past
    /// [`crate::limits::MAX_QUERY_TREE_DEPTH`].
    fn parse_at(doc: &Document, depth: usize, text: TextCtx) -> Result<Filter> {
        crate::limits::check_query_depth(depth, doc)?;
        let mut parts = Vec::with_capacity(doc.len());
        for (key, value) in doc {
            if let Some(op) = key.strip_prefix('$') {
                match op {
                    "and" | "or" | "nor" => {
                        let inner = match (op, text) {
                            ("nor", TextCtx::Allowed) => TextCtx::UnderNor,
                            _ => text,
                        };
                        let list = logical_list(key, value, depth + 1, inner)?;
                        parts.push(match op {
                            "and" => Filter::And(list),
                            "or" => Filter::Or(list),
                            _ => Filter::Nor(list),
                        });
                    }
                    "expr" => parts.push(Filter::Expr(Expr::parse(value)?)),
                    "sampleRate" => parts.push(Filter::Expr(sample_rate(value)?)),
                    "comment" => {}
                    "where" => return Err(super::javascript::where_operator()),
                    "jsonSchema" => parts.push(Filter::JsonSchema(Box::new(
                        super::schema::Schema::parse(value)?,
                    ))),
                    "text" => match text {
                        TextCtx::Allowed => {
                            parts.push(Filter::Text(Box::new(TextQuery::parse(value)?)))
                        }
                        TextCtx::UnderNor => {
                            return Err(CommandError::bad_value(
                                "text expression not allowed in nor",
                            ));
                        }
                        TextCtx::No => return Err(super::text::not_allowed()),
                    },
                    _ => {
                        return Err(CommandError::bad_value(format!(
                            "unknown top level operator: {key}"
                        )));
                    }
                }
            } else {
                crate::limits::check_path(key)?;
                parts.push(Filter::Field {
                    path: key.clone(),
                    pred: parse_field_value(key, value, depth)?,
                });
            }
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap_or(Filter::And(Vec::new()))
        } else {
            Filter::And(parts)
        })
    }

    /// Whether `doc` matches; an `$expr` that fails (a value past a limit)
    /// is an error.
    pub fn try_matches(&self, doc: &Document) -> Result<bool> {
        Ok(match self {
            Filter::And(fs) => {
                for f in fs {
                    if !f.try_matches(doc)? {
                        return Ok(false);
                    }
                }
                true
            }
            Filter::Or(fs) => {
                for f in fs {
                    if f.try_matches(doc)? {
                        return Ok(true);
                    }
                }
                false
            }
            Filter::Nor(fs) => {
                for f in fs {
                    if f.try_matches(doc)? {
                        return Ok(false);
                    }
                }
                true
            }
            Filter::Field { path, pred } => pred.matches(&resolve(doc, path)),
            Filter::Expr(e) => e.eval(doc)?.map(|v| truthy(&v)).unwrap_or(false),
            Filter::JsonSchema(s) => s.matches_document(doc),
            Filter::Text(_) => super::text::matches(doc)?,
        })
    }

    /// Whether `doc` matches; an `$expr` that fails does not match.
    pub fn matches(&self, doc: &Document) -> bool {
        self.try_matches(doc).unwrap_or(false)
    }

    /// True for the empty filter `{}`.
    pub fn is_empty(&self) -> bool {
        matches!(self, Filter::And(v) if v.is_empty())
    }

    /// The `_id` value if the filter pins it with equality (`{_id: v}`), so
    /// a point lookup can replace a scan. Not under a collation that makes
    /// other strings equal to it (documents are keyed by binary value).
    pub fn id_equality(&self) -> Option<&Bson> {
        match self {
            Filter::Field {
                path,
                pred: Pred::Eq(v),
            } if path == "_id"
                && !matches!(v, Bson::Document(_) | Bson::Array(_) | Bson::Null)
                && (super::collation::active_is_simple() || !super::collation::has_string(v)) =>
            {
                Some(v)
            }
            Filter::And(fs) => fs.iter().find_map(|f| f.id_equality()),
            _ => None,
        }
    }
}

fn logical_list(key: &str, value: &Bson, depth: usize, text: TextCtx) -> Result<Vec<Filter>> {
    let Bson::Array(items) = value else {
        return Err(CommandError::bad_value(format!("{key} must be an array")));
    };
    if items.is_empty() {
        return Err(CommandError::bad_value(format!(
            "{key}/$or/$nor entries need to be full objects and {key} must be a nonempty array"
        )));
    }
    items
        .iter()
        .map(|i| match i {
            Bson::Document(d) => Filter::parse_at(d, depth, text),
            _ => Err(CommandError::bad_value(format!(
                "{key} argument's entries must be objects"
            ))),
        })
        .collect()
}

fn is_operator_doc(d: &Document) -> bool {
    d.keys().next().is_some_and(|k| k.starts_with('$'))
}

fn parse_field_value(path: &str, value: &Bson, depth: usize) -> Result<Pred> {
    match value {
        Bson::Document(d) if is_operator_doc(d) => parse_operators_at(path, d, depth),
        Bson::RegularExpression(r) => Ok(Pred::Regex(Box::new(compile_regex(
            r.pattern.as_str(),
            r.options.as_str(),
        )?))),
        other => Ok(Pred::Eq(other.clone())),
    }
}

pub fn parse_operators(d: &Document) -> Result<Pred> {
    parse_operators_at("", d, 0)
}

/// The operators of `{path: {$op: arg, ...}}` (`path` for messages).
fn parse_operators_at(path: &str, d: &Document, depth: usize) -> Result<Pred> {
    crate::limits::check_query_depth(depth, d)?;
    let mut preds = Vec::with_capacity(d.len());
    let options = d.get("$options");
    for (op, arg) in d {
        let pred = match op.as_str() {
            "$eq" => Pred::Eq(arg.clone()),
            "$ne" => Pred::Ne(arg.clone()),
            "$gt" => Pred::Cmp(Ordering::Greater, false, arg.clone()),
            "$gte" => Pred::Cmp(Ordering::Greater, true, arg.clone()),
            "$lt" => Pred::Cmp(Ordering::Less, false, arg.clone()),
            "$lte" => Pred::Cmp(Ordering::Less, true, arg.clone()),
            "$in" => Pred::In(in_list(op, arg)?),
            "$nin" => Pred::Nin(in_list(op, arg)?),
            "$exists" => Pred::Exists(truthy(arg)),
            "$type" => Pred::Type(type_list(arg)?),
            "$regex" => {
                let opts = match options {
                    Some(Bson::String(s)) => s.clone(),
                    Some(_) => return Err(CommandError::bad_value("$options has to be a string")),
                    None => String::new(),
                };
                match arg {
                    Bson::String(p) => Pred::Regex(Box::new(compile_regex(p, &opts)?)),
                    Bson::RegularExpression(r) => {
                        let all = format!("{}{}", r.options, opts);
                        Pred::Regex(Box::new(compile_regex(r.pattern.as_str(), &all)?))
                    }
                    _ => return Err(CommandError::bad_value("$regex has to be a string")),
                }
            }
            geo if super::geo::predicate::OPERATORS.contains(&geo) => {
                Pred::Geo(Box::new(super::geo::GeoPred::parse(geo, arg, d)?))
            }
            "$maxDistance" | "$minDistance" => {
                if !d.contains_key("$near") && !d.contains_key("$nearSphere") {
                    return Err(CommandError::bad_value(format!(
                        "{op} may only be used with $near or $nearSphere"
                    )));
                }
                continue;
            }
            "$options" => {
                if !d.contains_key("$regex") {
                    return Err(CommandError::bad_value("$options needs a $regex"));
                }
                continue;
            }
            "$all" => {
                let Bson::Array(items) = arg else {
                    return Err(CommandError::bad_value("$all needs an array"));
                };
                Pred::All(
                    items
                        .iter()
                        .map(|i| match i {
                            Bson::Document(e)
                                if e.keys().next().is_some_and(|k| k == "$elemMatch") =>
                            {
                                parse_operators_at(path, e, depth + 1)
                            }
                            Bson::RegularExpression(r) => Ok(Pred::Regex(Box::new(compile_regex(
                                r.pattern.as_str(),
                                r.options.as_str(),
                            )?))),
                            v => Ok(Pred::Eq(v.clone())),
                        })
                        .collect::<Result<_>>()?,
                )
            }
            "$elemMatch" => {
                let Bson::Document(inner) = arg else {
                    return Err(CommandError::bad_value("$elemMatch needs an Object"));
                };
                let value_ops = is_operator_doc(inner)
                    && !inner
                        .keys()
                        .any(|k| matches!(k.as_str(), "$and" | "$or" | "$nor" | "$expr"));
                Pred::ElemMatch(Box::new(if value_ops {
                    ElemMatch::Value(match parse_operators_at("", inner, depth + 1)? {
                        Pred::And(ps) => ps,
                        p => vec![p],
                    })
                } else {
                    ElemMatch::Query(Filter::parse_at(inner, depth + 1, TextCtx::No)?)
                }))
            }
            "$size" => match arg {
                v if super::compare::as_i64(v).is_some_and(|n| n >= 0) => {
                    Pred::Size(super::compare::as_i64(v).unwrap_or(0))
                }
                _ => {
                    return Err(CommandError::bad_value(
                        "$size needs a non-negative whole number",
                    ));
                }
            },
            "$mod" => {
                let parts = match arg {
                    Bson::Array(a) if a.len() == 2 => a,
                    _ => {
                        return Err(CommandError::bad_value(
                            "malformed mod, needs to be an array of [divisor, remainder]",
                        ));
                    }
                };
                let (Some(div), Some(rem)) = (as_f64(&parts[0]), as_f64(&parts[1])) else {
                    return Err(CommandError::bad_value(
                        "malformed mod, divisor and remainder must be numbers",
                    ));
                };
                if div as i64 == 0 {
                    return Err(CommandError::bad_value("divisor cannot be 0"));
                }
                Pred::Mod(div as i64, rem as i64)
            }
            "$not" => match arg {
                Bson::Document(inner) if is_operator_doc(inner) => {
                    Pred::Not(Box::new(parse_operators_at(path, inner, depth + 1)?))
                }
                Bson::RegularExpression(r) => Pred::Not(Box::new(Pred::Regex(Box::new(
                    compile_regex(r.pattern.as_str(), r.options.as_str())?,
                )))),
                _ => return Err(CommandError::bad_value("$not needs a regex or a document")),
            },
            "$comment" => continue,
            bits if let Some(test) = BitTest::from_name(bits) => {
                Pred::Bits(Box::new(Bits::parse(path, bits, test, arg)?))
            }
            other => {
                return Err(CommandError::bad_value(format!(
                    "unknown operator: {other}"
                )));
            }
        };
        preds.push(pred);
    }
    Ok(if preds.len() == 1 {
        preds.pop().unwrap_or(Pred::And(Vec::new()))
    } else {
        Pred::And(preds)
    })
}

/// `{$sampleRate: p}`: each document passes with probability `p`, as
/// mongod rewrites it: `{$expr: {$lt: [{$rand: {}}, p]}}`. `p` is a
/// constant number in [0, 1] (BadValue otherwise, mongod's messages).
fn sample_rate(arg: &Bson) -> Result<Expr> {
    if !super::compare::is_number(arg) {
        return Err(CommandError::bad_value(
            "argument to $sampleRate must be a numeric type",
        ));
    }
    let p = super::compare::as_f64(arg).unwrap_or(f64::NAN);
    if !(0.0..=1.0).contains(&p) {
        return Err(CommandError::bad_value(
            "numeric argument to $sampleRate must be in [0, 1]",
        ));
    }
    Expr::parse(&bson::bson!({"$lt": [{"$rand": {}}, p]}))
}

fn in_list(op: &str, arg: &Bson) -> Result<Vec<InItem>> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value(format!("{op} needs an array")));
    };
    items
        .iter()
        .map(|i| match i {
            Bson::RegularExpression(r) => Ok(InItem::Regex(Box::new(compile_regex(
                r.pattern.as_str(),
                r.options.as_str(),
            )?))),
            Bson::Document(d) if is_operator_doc(d) => {
                Err(CommandError::bad_value(format!("cannot nest $ under {op}")))
            }
            v => Ok(InItem::Value(v.clone())),
        })
        .collect()
}

fn type_list(arg: &Bson) -> Result<Vec<TypeSel>> {
    let one = |v: &Bson| -> Result<TypeSel> {
        match v {
            Bson::String(s) => type_alias(s)
                .ok_or_else(|| CommandError::bad_value(format!("Unknown type name alias: {s}"))),
            v => match super::compare::as_i64(v) {
                Some(n) if type_code_known(n as i32) => Ok(TypeSel::Code(n as i32)),
                _ => Err(CommandError::bad_value(format!(
                    "Invalid numerical type code: {v}"
                ))),
            },
        }
    };
    match arg {
        Bson::Array(items) => items.iter().map(one).collect(),
        v => Ok(vec![one(v)?]),
    }
}

fn type_code_known(n: i32) -> bool {
    matches!(n, -1 | 1..=19 | 127)
}

/// The `$type` aliases MongoDB accepts.
pub fn type_alias(s: &str) -> Option<TypeSel> {
    Some(match s {
        "number" => TypeSel::Number,
        other => TypeSel::Code(match other {
            "double" => 1,
            "string" => 2,
            "object" => 3,
            "array" => 4,
            "binData" => 5,
            "undefined" => 6,
            "objectId" => 7,
            "bool" => 8,
            "date" => 9,
            "null" => 10,
            "regex" => 11,
            "dbPointer" => 12,
            "javascript" => 13,
            "symbol" => 14,
            "javascriptWithScope" => 15,
            "int" => 16,
            "timestamp" => 17,
            "long" => 18,
            "decimal" => 19,
            "minKey" => -1,
            "maxKey" => 127,
            _ => return None,
        }),
    })
}

/// A value's BSON type code.
pub fn type_code(v: &Bson) -> i32 {
    v.element_type() as u8 as i8 as i32
}

/// Compiles a MongoDB regex (PCRE-style options i, m, s, x) for Rust's engine.
pub fn compile_regex(pattern: &str, options: &str) -> Result<Regex> {
    let mut flags = String::new();
    for c in options.chars() {
        match c {
            'i' | 'm' | 's' | 'x' => flags.push(c),
            'u' => {}
            other => {
                return Err(CommandError::bad_value(format!(
                    "invalid flag in regex options: {other}"
                )));
            }
        }
    }
    let full = if flags.is_empty() {
        pattern.to_owned()
    } else {
        format!("(?{flags}){pattern}")
    };
    Regex::new(&full)
        .map_err(|e| CommandError::bad_value(format!("Regular expression is invalid: {e}")))
}

/// `f` holds for a value the path reached, or for an element of one that is an array.
fn any_expanded(r: &Resolved<'_>, f: impl Fn(&Bson) -> bool) -> bool {
    r.values
        .iter()
        .any(|v| f(v) || matches!(v, Bson::Array(a) if a.iter().any(&f)))
}

fn eq_matches(r: &Resolved<'_>, target: &Bson) -> bool {
    if matches!(target, Bson::Null) {
        return r.missing || any_expanded(r, |v| matches!(v, Bson::Null | Bson::Undefined));
    }
    any_expanded(r, |v| equal(v, target))
}

fn regex_matches(re: &Regex, v: &Bson) -> bool {
    match v {
        Bson::String(s) | Bson::Symbol(s) => re.is_match(s),
        Bson::RegularExpression(r) => r.pattern.as_str() == re.as_str(),
        _ => false,
    }
}

fn type_matches(sel: TypeSel, v: &Bson) -> bool {
    match sel {
        TypeSel::Number => type_rank(v) == 2,
        TypeSel::Code(c) => type_code(v) == c,
    }
}

impl Pred {
    /// Whether the values a path reached satisfy this predicate.
    pub fn matches(&self, r: &Resolved<'_>) -> bool {
        match self {
            Pred::Eq(v) => eq_matches(r, v),
            Pred::Ne(v) => !eq_matches(r, v),
            Pred::Cmp(dir, or_equal, target) => {
                if matches!(target, Bson::Null) && *or_equal {
                    return eq_matches(r, target);
                }
                let bracket_free = matches!(target, Bson::MinKey | Bson::MaxKey);
                any_expanded(r, |v| {
                    if !bracket_free && type_rank(v) != type_rank(target) {
                        return false;
                    }
                    let o = compare(v, target);
                    o == *dir || (*or_equal && o == Ordering::Equal)
                })
            }
            Pred::In(items) => in_matches(r, items),
            Pred::Nin(items) => !in_matches(r, items),
            Pred::Exists(want) => r.values.is_empty() != *want,
            Pred::Type(sels) => any_expanded(r, |v| sels.iter().any(|s| type_matches(*s, v))),
            Pred::Regex(re) => any_expanded(r, |v| regex_matches(re, v)),
            Pred::All(preds) => !preds.is_empty() && preds.iter().all(|p| p.matches(r)),
            Pred::ElemMatch(em) => r.values.iter().any(|v| match v {
                Bson::Array(items) => items.iter().any(|e| match &**em {
                    ElemMatch::Query(f) => matches!(e, Bson::Document(d) if f.matches(d)),
                    ElemMatch::Value(ps) => {
                        let one = Resolved {
                            values: vec![e],
                            missing: false,
                        };
                        ps.iter().all(|p| p.matches_scalar(&one))
                    }
                }),
                _ => false,
            }),
            Pred::Size(n) => r
                .values
                .iter()
                .any(|v| matches!(v, Bson::Array(a) if a.len() as i64 == *n)),
            Pred::Mod(div, rem) => any_expanded(r, |v| {
                as_f64(v).is_some_and(|x| x.is_finite() && (x as i64).wrapping_rem(*div) == *rem)
            }),
            Pred::Not(p) => !p.matches(r),
            Pred::And(ps) => ps.iter().all(|p| p.matches(r)),
            Pred::Geo(g) => g.matches(&r.values),
            Pred::Bits(b) => any_expanded(r, |v| b.matches(v)),
        }
    }

    /// `$elemMatch` on values tests each element itself, not its elements.
    fn matches_scalar(&self, r: &Resolved<'_>) -> bool {
        match self {
            Pred::Cmp(..) | Pred::Eq(_) | Pred::Regex(_) | Pred::Mod(..) => {
                let Some(v) = r.values.first() else {
                    return false;
                };
                if matches!(v, Bson::Array(_)) {
                    return match self {
                        Pred::Eq(t) => equal(v, t),
                        _ => false,
                    };
                }
                self.matches(r)
            }
            _ => self.matches(r),
        }
    }
}

fn in_matches(r: &Resolved<'_>, items: &[InItem]) -> bool {
    items.iter().any(|i| match i {
        InItem::Value(v) => eq_matches(r, v),
        InItem::Regex(re) => any_expanded(r, |v| regex_matches(re, v)),
    })
}

/// Fields a filter pins to one value by equality (for the document an upsert
/// inserts): `{a: 1, b: {$eq: 2}, $and: [{c: 3}]}` gives a, b and c.
pub fn equality_fields(filter: &Document, out: &mut Vec<(String, Bson)>) {
    for (k, v) in filter {
        if k == "$and" {
            if let Bson::Array(items) = v {
                for i in items {
                    if let Bson::Document(d) = i {
                        equality_fields(d, out);
                    }
                }
            }
        } else if !k.starts_with('$') {
            match v {
                Bson::Document(d) if is_operator_doc(d) => {
                    if let Some(eq) = d.get("$eq") {
                        out.push((k.clone(), eq.clone()));
                    } else if let Some(Bson::Array(a)) = d.get("$in")
                        && a.len() == 1
                    {
                        out.push((k.clone(), a[0].clone()));
                    }
                }
                Bson::RegularExpression(_) => {}
                other => out.push((k.clone(), other.clone())),
            }
        }
    }
}

/// Partial-index membership (`partialFilterExpression`) and collated
/// index keys for the WAL's unique-key rule, which has no query engine of
/// its own.
pub struct PartialIndexFilter;

impl argon_wal::IndexFilter for PartialIndexFilter {
    fn matches(&self, filter: &Document, doc: &Document) -> bool {
        // A filter that does not parse (createIndexes validated it) counts
        // every document in: uniqueness only ever stricter.
        Filter::parse(filter).map_or(true, |f| f.matches(doc))
    }

    fn collate(&self, collation: &Document, values: Vec<Bson>) -> Vec<Bson> {
        // createIndexes stored the resolved collation: it parses. Were it
        // not to, binary keys make no two distinct strings equal.
        match super::collation::Collation::parse(collation) {
            Ok(c) if !c.is_simple() => values.iter().map(|v| c.key(v)).collect(),
            _ => values,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_rate_passes_about_its_share() {
        let docs: Vec<Document> = (0..4000).map(|i| doc! {"_id": i}).collect();
        let passed = |p: Bson| {
            let f = Filter::parse(&doc! {"$sampleRate": p}).unwrap();
            docs.iter().filter(|d| f.try_matches(d).unwrap()).count()
        };
        assert_eq!(passed(Bson::Double(0.0)), 0);
        assert_eq!(passed(Bson::Int32(1)), 4000);
        // Binomial(4000, 0.25): 1000 ± 27 is one standard deviation; ±200
        // is more than seven.
        let quarter = passed(Bson::Double(0.25));
        assert!((800..=1200).contains(&quarter), "{quarter}");
        for bad in [
            bson::bson!("0.5"),
            bson::bson!(-0.1),
            bson::bson!(1.5),
            bson::bson!(f64::NAN),
            bson::bson!(null),
        ] {
            let e = Filter::parse(&doc! {"$sampleRate": bad.clone()}).unwrap_err();
            assert_eq!(e.code, crate::error::ErrorCode::BadValue, "{bad}");
        }
    }
    use bson::doc;

    fn m(filter: Document, d: Document) -> bool {
        Filter::parse(&filter).unwrap().matches(&d)
    }

    #[test]
    fn equality_and_arrays() {
        assert!(m(doc! {"a": 1}, doc! {"a": 1.0}));
        assert!(m(doc! {"tags": "x"}, doc! {"tags": ["y", "x"]}));
        assert!(m(doc! {"tags": ["y", "x"]}, doc! {"tags": ["y", "x"]}));
        assert!(!m(doc! {"tags": ["x", "y"]}, doc! {"tags": ["y", "x"]}));
        assert!(m(doc! {"a.b": 2}, doc! {"a": [{"b": 1}, {"b": 2}]}));
        assert!(m(doc! {"a.1": 5}, doc! {"a": [4, 5]}));
        assert!(m(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1}}));
        assert!(!m(doc! {"a": {"b": 1}}, doc! {"a": {"b": 1, "c": 1}}));
    }

    #[test]
    fn null_matches_missing() {
        assert!(m(doc! {"a": null}, doc! {"b": 1}));
        assert!(m(doc! {"a": null}, doc! {"a": null}));
        assert!(!m(doc! {"a": null}, doc! {"a": 0}));
        assert!(!m(doc! {"a": {"$ne": null}}, doc! {"b": 1}));
        assert!(m(doc! {"a": {"$exists": false}}, doc! {"b": 1}));
        assert!(m(doc! {"a": {"$gte": null}}, doc! {}));
    }

    #[test]
    fn comparisons_are_type_bracketed() {
        assert!(m(doc! {"a": {"$gt": 1}}, doc! {"a": 2i64}));
        assert!(!m(doc! {"a": {"$gt": 1}}, doc! {"a": "z"}));
        assert!(m(doc! {"a": {"$gt": 1, "$lt": 3}}, doc! {"a": [0, 5, 2]}));
        assert!(m(doc! {"a": {"$lte": "b"}}, doc! {"a": "a"}));
        assert!(m(doc! {"a": {"$gt": bson::Bson::MinKey}}, doc! {"a": "a"}));
    }

    #[test]
    fn in_nin_ne() {
        assert!(m(doc! {"a": {"$in": [1, 2]}}, doc! {"a": [5, 2]}));
        assert!(m(doc! {"a": {"$in": [null]}}, doc! {}));
        assert!(m(doc! {"a": {"$nin": [1, 2]}}, doc! {"a": 3}));
        assert!(!m(doc! {"a": {"$ne": 2}}, doc! {"a": [1, 2]}));
        assert!(m(
            doc! {"a": {"$in": [bson::Regex { pattern: "^x".to_string().try_into().unwrap(), options: String::new().try_into().unwrap() }]}},
            doc! {"a": "xy"}
        ));
    }

    #[test]
    fn logical() {
        let d = doc! {"a": 1, "b": 2};
        assert!(m(doc! {"$or": [{"a": 2}, {"b": 2}]}, d.clone()));
        assert!(!m(doc! {"$nor": [{"a": 2}, {"b": 2}]}, d.clone()));
        assert!(m(doc! {"$and": [{"a": 1}, {"b": {"$gt": 1}}]}, d.clone()));
        assert!(m(doc! {"a": {"$not": {"$gt": 5}}}, d.clone()));
        assert!(m(doc! {"z": {"$not": {"$gt": 5}}}, d));
    }

    #[test]
    fn element_operators() {
        assert!(m(doc! {"a": {"$type": "string"}}, doc! {"a": "x"}));
        assert!(m(doc! {"a": {"$type": "number"}}, doc! {"a": 1i64}));
        assert!(m(doc! {"a": {"$type": "array"}}, doc! {"a": [1]}));
        assert!(m(doc! {"a": {"$type": 16}}, doc! {"a": [1]}));
        assert!(m(
            doc! {"a": {"$regex": "^AB", "$options": "i"}},
            doc! {"a": "abc"}
        ));
        assert!(m(doc! {"a": {"$all": [1, 2]}}, doc! {"a": [2, 3, 1]}));
        assert!(!m(doc! {"a": {"$all": [1, 4]}}, doc! {"a": [2, 3, 1]}));
        assert!(m(doc! {"a": {"$size": 2}}, doc! {"a": [2, 3]}));
        assert!(m(doc! {"a": {"$mod": [4, 1]}}, doc! {"a": 9}));
        assert!(m(doc! {"a": {"$mod": [-1, 0]}}, doc! {"a": i64::MIN}));
        assert!(m(
            doc! {"a": {"$elemMatch": {"b": 1, "c": {"$gt": 1}}}},
            doc! {"a": [{"b": 1, "c": 1}, {"b": 1, "c": 2}]}
        ));
        assert!(!m(
            doc! {"a": {"$elemMatch": {"b": 1, "c": {"$gt": 1}}}},
            doc! {"a": [{"b": 1, "c": 1}, {"b": 2, "c": 2}]}
        ));
        assert!(m(
            doc! {"a": {"$elemMatch": {"$gt": 1, "$lt": 3}}},
            doc! {"a": [0, 2, 5]}
        ));
        assert!(!m(
            doc! {"a": {"$elemMatch": {"$gt": 1, "$lt": 3}}},
            doc! {"a": [0, 5]}
        ));
    }

    #[test]
    fn bad_filters_are_errors() {
        for f in [
            doc! {"$foo": 1},
            doc! {"a": {"$foo": 1}},
            doc! {"$or": []},
            doc! {"a": {"$in": 1}},
            doc! {"a": {"$regex": "("}},
            doc! {"a": {"$size": -1}},
            doc! {"a": {"$mod": [0, 1]}},
        ] {
            assert!(Filter::parse(&f).is_err(), "{f}");
        }
    }

    #[test]
    fn query_tree_depth_is_bounded() {
        // To the depth limit: on a server thread's stack, as requests run.
        crate::limits::with_worker_stack(query_tree_depth_is_bounded_inner);
    }

    fn query_tree_depth_is_bounded_inner() {
        let mut f = doc! {"a": 1};
        for _ in 0..100 {
            f = doc! {"$and": [f]};
        }
        assert!(Filter::parse(&f).is_ok());
        f = doc! {"$or": [f]};
        let e = Filter::parse(&f).unwrap_err();
        assert_eq!(e.code, crate::error::ErrorCode::BadValue);
        assert!(
            e.message
                .starts_with("exceeded maximum query tree depth of 100")
        );
        let mut p = doc! {"$gt": 1};
        for _ in 0..101 {
            p = doc! {"$not": p};
        }
        assert!(Filter::parse(&doc! {"a": p}).is_err());
        let mut em = doc! {"b": 1};
        for _ in 0..101 {
            em = doc! {"a": {"$elemMatch": em}};
        }
        assert!(Filter::parse(&em).is_err());
    }

    #[test]
    fn expr_errors_surface_in_try_matches() {
        let f =
            Filter::parse(&doc! {"$expr": {"$gt": [{"$size": {"$range": [0, 1_000_000_000]}}, 0]}})
                .unwrap();
        assert!(f.try_matches(&doc! {}).is_err());
        assert!(!f.matches(&doc! {}));
    }

    #[test]
    fn expr_and_id_lookup() {
        assert!(m(
            doc! {"$expr": {"$gt": ["$a", "$b"]}},
            doc! {"a": 3, "b": 2}
        ));
        let f = Filter::parse(&doc! {"_id": 5, "x": 1}).unwrap();
        assert_eq!(f.id_equality(), Some(&bson::Bson::Int32(5)));
        let mut eq = Vec::new();
        equality_fields(
            &doc! {"a": 1, "b": {"$eq": 2}, "c": {"$gt": 1}, "$and": [{"d": 4}]},
            &mut eq,
        );
        assert_eq!(eq.len(), 3);
    }
}
