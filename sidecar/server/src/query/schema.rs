//! `$jsonSchema`: MongoDB's dialect of JSON Schema draft 4, as a query
//! operator (find, a validator) and as the reason a validator gives when a
//! write fails (`explain`, the `schemaRulesNotSatisfied` of MongoDB 5.0+'s
//! `errInfo.details`).
//!
//! MongoDB's semantics, kept here: a keyword applies only to values of its
//! kind (`minimum` to numbers, `minLength` to strings, `properties` to
//! objects, `items` to arrays) and is satisfied by any other value; a
//! property that is missing satisfies its sub-schema (only `required`
//! demands it); `properties` never looks through arrays. Keywords MongoDB
//! does not support (`$ref`, `format`, ...) fail as MongoDB fails them
//! (`FailedToParse`), and so does an unknown keyword.

use std::cmp::Ordering;

use bson::{Bson, Document, doc};
use regex::Regex;

use super::compare::{as_f64, compare, equal, is_number};
use super::expr::type_name;
use super::filter::{TypeSel, compile_regex, type_alias, type_code};
use crate::error::{CommandError, Result};

/// A parsed schema (one level: its own keywords).
#[derive(Debug, Clone)]
pub struct Schema {
    title: Option<String>,
    description: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
enum Rule {
    /// `bsonType` (`json` false) or `type` (`json` true), as written.
    Type {
        keyword: &'static str,
        spec: Bson,
        sels: Vec<TypeSel>,
    },
    Required(Vec<String>),
    Properties(Vec<(String, Schema)>),
    /// `additionalProperties` with the names and patterns it exempts.
    AdditionalProperties {
        spec: Bson,
        allowed: Additional,
        named: Vec<String>,
        patterns: Vec<Regex>,
    },
    PatternProperties(Vec<(String, Regex, Schema)>),
    MinProperties(i64),
    MaxProperties(i64),
    Dependencies(Vec<(String, Dependency)>),
    Enum(Vec<Bson>),
    /// `minimum` / `maximum`, with `exclusiveMinimum` / `exclusiveMaximum`.
    Bound {
        keyword: &'static str,
        limit: Bson,
        exclusive: bool,
    },
    MultipleOf(Bson),
    MinLength(i64),
    MaxLength(i64),
    Pattern(String, Regex),
    Items(Schema),
    /// `items` as an array: one schema per position, then
    /// `additionalItems` for the rest.
    TupleItems(Vec<Schema>, Additional),
    MinItems(i64),
    MaxItems(i64),
    UniqueItems,
    AllOf(Vec<Schema>),
    AnyOf(Vec<Schema>),
    OneOf(Vec<Schema>),
    Not(Box<Schema>, Bson),
}

#[derive(Debug, Clone)]
enum Additional {
    Any,
    None,
    Schema(Box<Schema>),
}

#[derive(Debug, Clone)]
enum Dependency {
    Fields(Vec<String>),
    Schema(Box<Schema>),
}

/// Keywords MongoDB parses and refuses.
const NOT_SUPPORTED: &[&str] = &["$ref", "$schema", "default", "definitions", "format", "id"];

fn parse_error(message: impl Into<String>) -> CommandError {
    CommandError::failed_to_parse(message)
}

fn whole(keyword: &str, v: &Bson) -> Result<i64> {
    let n = super::compare::as_i64(v)
        .filter(|n| *n >= 0 && as_f64(v) == Some(*n as f64))
        .ok_or_else(|| {
            parse_error(format!(
                "$jsonSchema keyword '{keyword}' must be a representable as a long integer and non-negative, found {v}"
            ))
        })?;
    Ok(n)
}

fn strings(keyword: &str, v: &Bson) -> Result<Vec<String>> {
    let Bson::Array(items) = v else {
        return Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' must be an array"
        )));
    };
    if items.is_empty() {
        return Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' cannot be an empty array"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for i in items {
        let Bson::String(s) = i else {
            return Err(parse_error(format!(
                "$jsonSchema keyword '{keyword}' must contain only strings"
            )));
        };
        out.push(s.clone());
    }
    let mut sorted: Vec<&String> = out.iter().collect();
    sorted.sort();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        return Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' array cannot contain duplicate values"
        )));
    }
    Ok(out)
}

fn schema_list(keyword: &str, v: &Bson, depth: usize) -> Result<Vec<Schema>> {
    match v {
        Bson::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Bson::Document(d) => Schema::parse_at(d, depth + 1),
                _ => Err(parse_error(format!(
                    "$jsonSchema keyword '{keyword}' must be an array of objects"
                ))),
            })
            .collect(),
        _ => Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' must be a non-empty array"
        ))),
    }
}

fn sub_schema(keyword: &str, v: &Bson, depth: usize) -> Result<Schema> {
    match v {
        Bson::Document(d) => Schema::parse_at(d, depth + 1),
        _ => Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' must be an object"
        ))),
    }
}

fn additional(keyword: &str, v: &Bson, depth: usize) -> Result<Additional> {
    match v {
        Bson::Boolean(true) => Ok(Additional::Any),
        Bson::Boolean(false) => Ok(Additional::None),
        Bson::Document(d) => Ok(Additional::Schema(Box::new(Schema::parse_at(
            d,
            depth + 1,
        )?))),
        _ => Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' must be either an object or a boolean"
        ))),
    }
}

fn type_sels(keyword: &'static str, v: &Bson) -> Result<Vec<TypeSel>> {
    let one = |s: &Bson| -> Result<TypeSel> {
        let Bson::String(name) = s else {
            return Err(CommandError::type_mismatch(format!(
                "$jsonSchema keyword '{keyword}' must be a string or an array of strings"
            )));
        };
        if keyword == "type" {
            // JSON Schema's names; `integer` MongoDB refuses.
            return match name.as_str() {
                "integer" => Err(CommandError::bad_value(
                    "$jsonSchema type 'integer' is not currently supported.",
                )),
                "boolean" => Ok(TypeSel::Code(8)),
                "number" | "string" | "object" | "array" | "null" => {
                    type_alias(name).ok_or_else(|| CommandError::bad_value("unknown type"))
                }
                other => Err(CommandError::bad_value(format!(
                    "Unknown type name alias: {other}"
                ))),
            };
        }
        type_alias(name)
            .ok_or_else(|| CommandError::bad_value(format!("Unknown type name alias: {name}")))
    };
    match v {
        Bson::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Bson::Array(_) => Err(parse_error(format!(
            "$jsonSchema keyword '{keyword}' must name at least one type"
        ))),
        other => Ok(vec![one(other)?]),
    }
}

impl Schema {
    /// Parses the argument of `$jsonSchema`.
    pub fn parse(spec: &Bson) -> Result<Schema> {
        match spec {
            Bson::Document(d) => Schema::parse_at(d, 0),
            _ => Err(parse_error("$jsonSchema must be an object")),
        }
    }

    fn parse_at(d: &Document, depth: usize) -> Result<Schema> {
        // Nested schemas are a query tree like `$and`: the same bound.
        crate::limits::check_query_depth(depth, d)?;
        if d.contains_key("type") && d.contains_key("bsonType") {
            return Err(parse_error(
                "Cannot specify both $jsonSchema keywords 'type' and 'bsonType'",
            ));
        }
        let mut out = Schema {
            title: None,
            description: None,
            rules: Vec::new(),
        };
        let text = |k: &str, v: &Bson| -> Result<String> {
            match v {
                Bson::String(s) => Ok(s.clone()),
                _ => Err(CommandError::type_mismatch(format!(
                    "$jsonSchema keyword '{k}' must be of type string"
                ))),
            }
        };
        let exclusive = |k: &str| -> Result<bool> {
            match d.get(k) {
                None => Ok(false),
                Some(Bson::Boolean(b)) => Ok(*b),
                Some(_) => Err(CommandError::type_mismatch(format!(
                    "$jsonSchema keyword '{k}' must be a boolean"
                ))),
            }
        };
        // `additionalProperties` exempts what `properties` and
        // `patternProperties` name.
        let mut named: Vec<String> = Vec::new();
        let mut patterns: Vec<Regex> = Vec::new();
        for (k, v) in d {
            match k.as_str() {
                "properties" => {
                    let Bson::Document(props) = v else {
                        return Err(parse_error(
                            "$jsonSchema keyword 'properties' must be an object",
                        ));
                    };
                    let mut list = Vec::with_capacity(props.len());
                    for (name, sub) in props {
                        list.push((name.clone(), sub_schema("properties", sub, depth)?));
                        named.push(name.clone());
                    }
                    out.rules.push(Rule::Properties(list));
                }
                "patternProperties" => {
                    let Bson::Document(props) = v else {
                        return Err(parse_error(
                            "$jsonSchema keyword 'patternProperties' must be an object",
                        ));
                    };
                    let mut list = Vec::with_capacity(props.len());
                    for (pattern, sub) in props {
                        let re = compile_regex(pattern, "")?;
                        patterns.push(re.clone());
                        list.push((
                            pattern.clone(),
                            re,
                            sub_schema("patternProperties", sub, depth)?,
                        ));
                    }
                    out.rules.push(Rule::PatternProperties(list));
                }
                _ => {}
            }
        }
        for (k, v) in d {
            let rule = match k.as_str() {
                "title" => {
                    out.title = Some(text(k, v)?);
                    continue;
                }
                "description" => {
                    out.description = Some(text(k, v)?);
                    continue;
                }
                "properties" | "patternProperties" | "exclusiveMinimum" | "exclusiveMaximum" => {
                    continue;
                }
                "additionalItems" => {
                    if !matches!(d.get("items"), Some(Bson::Array(_))) {
                        // Draft 4: it only means something after a tuple.
                        additional(k, v, depth)?;
                    }
                    continue;
                }
                "bsonType" => Rule::Type {
                    keyword: "bsonType",
                    spec: v.clone(),
                    sels: type_sels("bsonType", v)?,
                },
                "type" => Rule::Type {
                    keyword: "type",
                    spec: v.clone(),
                    sels: type_sels("type", v)?,
                },
                "required" => Rule::Required(strings(k, v)?),
                "additionalProperties" => Rule::AdditionalProperties {
                    spec: v.clone(),
                    allowed: additional(k, v, depth)?,
                    named: named.clone(),
                    patterns: patterns.clone(),
                },
                "minProperties" => Rule::MinProperties(whole(k, v)?),
                "maxProperties" => Rule::MaxProperties(whole(k, v)?),
                "dependencies" => {
                    let Bson::Document(deps) = v else {
                        return Err(parse_error(
                            "$jsonSchema keyword 'dependencies' must be an object",
                        ));
                    };
                    let mut list = Vec::with_capacity(deps.len());
                    for (field, dep) in deps {
                        let dep = match dep {
                            Bson::Document(_) => {
                                Dependency::Schema(Box::new(sub_schema(k, dep, depth)?))
                            }
                            Bson::Array(_) => Dependency::Fields(strings(k, dep)?),
                            _ => {
                                return Err(parse_error(
                                    "property dependencies in $jsonSchema keyword 'dependencies' must be an object or an array of strings",
                                ));
                            }
                        };
                        list.push((field.clone(), dep));
                    }
                    Rule::Dependencies(list)
                }
                "enum" => match v {
                    Bson::Array(items) if !items.is_empty() => Rule::Enum(items.clone()),
                    _ => {
                        return Err(parse_error(
                            "$jsonSchema keyword 'enum' must be a non-empty array",
                        ));
                    }
                },
                "minimum" | "maximum" => {
                    if !is_number(v) {
                        return Err(CommandError::type_mismatch(format!(
                            "$jsonSchema keyword '{k}' must be a number"
                        )));
                    }
                    let (keyword, flag) = if k == "minimum" {
                        ("minimum", "exclusiveMinimum")
                    } else {
                        ("maximum", "exclusiveMaximum")
                    };
                    Rule::Bound {
                        keyword,
                        limit: v.clone(),
                        exclusive: exclusive(flag)?,
                    }
                }
                "multipleOf" => {
                    if !is_number(v) || as_f64(v).is_none_or(|n| n <= 0.0 || n.is_nan()) {
                        return Err(parse_error(
                            "$jsonSchema keyword 'multipleOf' must be a positive number",
                        ));
                    }
                    Rule::MultipleOf(v.clone())
                }
                "minLength" => Rule::MinLength(whole(k, v)?),
                "maxLength" => Rule::MaxLength(whole(k, v)?),
                "pattern" => {
                    let Bson::String(p) = v else {
                        return Err(CommandError::type_mismatch(
                            "$jsonSchema keyword 'pattern' must be a string",
                        ));
                    };
                    Rule::Pattern(p.clone(), compile_regex(p, "")?)
                }
                "items" => match v {
                    Bson::Document(_) => Rule::Items(sub_schema(k, v, depth)?),
                    Bson::Array(_) => {
                        let tuple = match v {
                            Bson::Array(a) if a.is_empty() => Vec::new(),
                            _ => schema_list(k, v, depth)?,
                        };
                        let rest = match d.get("additionalItems") {
                            None => Additional::Any,
                            Some(a) => additional("additionalItems", a, depth)?,
                        };
                        Rule::TupleItems(tuple, rest)
                    }
                    _ => {
                        return Err(parse_error(
                            "$jsonSchema keyword 'items' must be an array or an object",
                        ));
                    }
                },
                "minItems" => Rule::MinItems(whole(k, v)?),
                "maxItems" => Rule::MaxItems(whole(k, v)?),
                "uniqueItems" => match v {
                    Bson::Boolean(true) => Rule::UniqueItems,
                    Bson::Boolean(false) => continue,
                    _ => {
                        return Err(CommandError::type_mismatch(
                            "$jsonSchema keyword 'uniqueItems' must be a boolean",
                        ));
                    }
                },
                "allOf" => Rule::AllOf(schema_list(k, v, depth)?),
                "anyOf" => Rule::AnyOf(schema_list(k, v, depth)?),
                "oneOf" => Rule::OneOf(schema_list(k, v, depth)?),
                "not" => Rule::Not(Box::new(sub_schema(k, v, depth)?), v.clone()),
                "encrypt" | "encryptMetadata" => {
                    return Err(CommandError::new(
                        crate::error::ErrorCode::CommandNotSupported,
                        format!(
                            "$jsonSchema keyword '{k}' (client-side field level encryption) is not supported by Argon"
                        ),
                    ));
                }
                other if NOT_SUPPORTED.contains(&other) => {
                    return Err(parse_error(format!(
                        "$jsonSchema keyword '{other}' is not currently supported"
                    )));
                }
                other => {
                    return Err(parse_error(format!("Unknown $jsonSchema keyword: {other}")));
                }
            };
            out.rules.push(rule);
        }
        for (flag, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if d.contains_key(flag) && !d.contains_key(bound) {
                exclusive(flag)?;
                return Err(parse_error(format!(
                    "$jsonSchema keyword '{bound}' must be a present if {flag} is present"
                )));
            }
        }
        Ok(out)
    }

    /// Whether `v` (the whole document at the top) satisfies the schema.
    pub fn matches(&self, v: &Bson) -> bool {
        match v {
            Bson::Document(d) => self.matches_document(d),
            v => self.rules.iter().all(|r| r.holds(v)),
        }
    }

    /// Whether the document satisfies the schema.
    pub fn matches_document(&self, d: &Document) -> bool {
        self.rules.iter().all(|r| r.holds_object(d))
    }

    /// Each rule `v` does not satisfy, as MongoDB reports it.
    fn not_satisfied(&self, v: &Bson) -> Vec<Bson> {
        self.rules
            .iter()
            .filter(|r| !r.holds(v))
            .map(|r| Bson::Document(r.explain(v)))
            .collect()
    }

    /// `{operatorName: "$jsonSchema", schemaRulesNotSatisfied: [...]}` for
    /// a document that fails (with the schema's title and description).
    pub fn explain(&self, d: &Document) -> Document {
        let mut out = doc! {"operatorName": "$jsonSchema"};
        if let Some(t) = &self.title {
            out.insert("title", t.clone());
        }
        if let Some(t) = &self.description {
            out.insert("description", t.clone());
        }
        out.insert(
            "schemaRulesNotSatisfied",
            self.not_satisfied(&Bson::Document(d.clone())),
        );
        out
    }

    /// `details` of a sub-schema (a property's, an item's): its rules not
    /// satisfied.
    fn details(&self, v: &Bson) -> Vec<Bson> {
        self.not_satisfied(v)
    }
}

fn type_holds(sels: &[TypeSel], v: &Bson) -> bool {
    sels.iter().any(|s| match s {
        TypeSel::Number => is_number(v),
        TypeSel::Code(c) => type_code(v) == *c,
    })
}

fn len_of(v: &Bson) -> Option<i64> {
    match v {
        Bson::String(s) => Some(s.chars().count() as i64),
        _ => None,
    }
}

fn is_multiple(v: &Bson, of: &Bson) -> bool {
    match (as_f64(v), as_f64(of)) {
        (Some(x), Some(m)) if x.is_finite() => (x / m).fract() == 0.0,
        _ => false,
    }
}

/// The first pair of equal items, found by sorting (a hostile array of
/// many items costs n log n, not n²).
fn duplicate(items: &[Bson]) -> Option<&Bson> {
    let mut sorted: Vec<&Bson> = items.iter().collect();
    sorted.sort_by(|a, b| compare(a, b));
    sorted
        .windows(2)
        .find(|w| compare(w[0], w[1]) == Ordering::Equal)
        .map(|w| w[0])
}

impl Rule {
    fn holds(&self, v: &Bson) -> bool {
        match (self, v) {
            (_, Bson::Document(d)) => self.holds_object(d),
            (Rule::Type { sels, .. }, v) => type_holds(sels, v),
            (Rule::Enum(items), v) => items.iter().any(|i| equal(i, v)),
            (Rule::Not(s, _), v) => !s.matches(v),
            (Rule::AllOf(list), v) => list.iter().all(|s| s.matches(v)),
            (Rule::AnyOf(list), v) => list.iter().any(|s| s.matches(v)),
            (Rule::OneOf(list), v) => list.iter().filter(|s| s.matches(v)).count() == 1,
            (Rule::Bound { .. } | Rule::MultipleOf(_), v) if !is_number(v) => true,
            (
                Rule::Bound {
                    keyword,
                    limit,
                    exclusive,
                },
                v,
            ) => {
                let c = compare(v, limit);
                match (*keyword, exclusive) {
                    ("minimum", false) => c != Ordering::Less,
                    ("minimum", true) => c == Ordering::Greater,
                    (_, false) => c != Ordering::Greater,
                    (_, true) => c == Ordering::Less,
                }
            }
            (Rule::MultipleOf(m), v) => is_multiple(v, m),
            (Rule::MinLength(n), v) => len_of(v).is_none_or(|l| l >= *n),
            (Rule::MaxLength(n), v) => len_of(v).is_none_or(|l| l <= *n),
            (Rule::Pattern(_, re), Bson::String(s)) => re.is_match(s),
            (Rule::Items(s), Bson::Array(a)) => a.iter().all(|i| s.matches(i)),
            (Rule::TupleItems(tuple, rest), Bson::Array(a)) => {
                a.iter().enumerate().all(|(i, item)| match tuple.get(i) {
                    Some(s) => s.matches(item),
                    None => match rest {
                        Additional::Any => true,
                        Additional::None => false,
                        Additional::Schema(s) => s.matches(item),
                    },
                })
            }
            (Rule::MinItems(n), Bson::Array(a)) => a.len() as i64 >= *n,
            (Rule::MaxItems(n), Bson::Array(a)) => a.len() as i64 <= *n,
            (Rule::UniqueItems, Bson::Array(a)) => duplicate(a).is_none(),
            _ => true,
        }
    }

    /// `holds` for an object (a document need not be copied into a `Bson`).
    fn holds_object(&self, d: &Document) -> bool {
        match self {
            Rule::Required(names) => names.iter().all(|n| d.contains_key(n)),
            Rule::Properties(props) => props
                .iter()
                .all(|(name, s)| d.get(name).is_none_or(|v| s.matches(v))),
            Rule::PatternProperties(list) => list.iter().all(|(_, re, s)| {
                d.iter()
                    .filter(|(k, _)| re.is_match(k))
                    .all(|(_, v)| s.matches(v))
            }),
            Rule::AdditionalProperties {
                allowed,
                named,
                patterns,
                ..
            } => match allowed {
                Additional::Any => true,
                _ => d
                    .iter()
                    .filter(|(k, _)| {
                        !named.contains(k) && !patterns.iter().any(|re| re.is_match(k))
                    })
                    .all(|(_, v)| match allowed {
                        Additional::Schema(s) => s.matches(v),
                        _ => false,
                    }),
            },
            Rule::MinProperties(n) => d.len() as i64 >= *n,
            Rule::MaxProperties(n) => d.len() as i64 <= *n,
            Rule::Dependencies(deps) => deps.iter().all(|(field, dep)| {
                !d.contains_key(field)
                    || match dep {
                        Dependency::Fields(names) => names.iter().all(|n| d.contains_key(n)),
                        Dependency::Schema(s) => s.matches_document(d),
                    }
            }),
            Rule::Type { sels, .. } => sels.iter().any(|s| matches!(s, TypeSel::Code(3))),
            Rule::Enum(items) => items
                .iter()
                .any(|i| matches!(i, Bson::Document(x) if equal(&Bson::Document(x.clone()), &Bson::Document(d.clone())))),
            Rule::Not(s, _) => !s.matches_document(d),
            Rule::AllOf(list) => list.iter().all(|s| s.matches_document(d)),
            Rule::AnyOf(list) => list.iter().any(|s| s.matches_document(d)),
            Rule::OneOf(list) => list.iter().filter(|s| s.matches_document(d)).count() == 1,
            _ => true,
        }
    }

    /// Why `v` fails this rule, in MongoDB 5.0+'s words.
    fn explain(&self, v: &Bson) -> Document {
        let considered = |mut d: Document| {
            d.insert("consideredValue", v.clone());
            d
        };
        match self {
            Rule::Type { keyword, spec, .. } => doc! {
                "operatorName": *keyword,
                "specifiedAs": {*keyword: spec.clone()},
                "reason": "type did not match",
                "consideredValue": v.clone(),
                "consideredType": type_name(v),
            },
            Rule::Required(names) => {
                let d = v.as_document();
                let missing: Vec<&String> = names
                    .iter()
                    .filter(|n| d.is_some_and(|d| !d.contains_key(n)))
                    .collect();
                doc! {
                    "operatorName": "required",
                    "specifiedAs": {"required": names.clone()},
                    "missingProperties": missing.into_iter().cloned().collect::<Vec<_>>(),
                }
            }
            Rule::Properties(props) => {
                let d = v.as_document();
                let failing: Vec<Bson> = props
                    .iter()
                    .filter_map(|(name, s)| {
                        let value = d?.get(name)?;
                        if s.matches(value) {
                            return None;
                        }
                        let mut entry = doc! {"propertyName": name.clone()};
                        if let Some(t) = &s.description {
                            entry.insert("description", t.clone());
                        }
                        entry.insert("details", s.details(value));
                        Some(Bson::Document(entry))
                    })
                    .collect();
                doc! {"operatorName": "properties", "propertiesNotSatisfied": failing}
            }
            Rule::PatternProperties(list) => {
                let d = v.as_document();
                let failing: Vec<Bson> = list
                    .iter()
                    .flat_map(|(pattern, re, s)| {
                        d.into_iter()
                            .flat_map(|d| d.iter())
                            .filter(|(k, value)| re.is_match(k) && !s.matches(value))
                            .map(|(k, value)| {
                                Bson::Document(doc! {
                                    "propertyName": k.clone(),
                                    "regexMatched": pattern.clone(),
                                    "details": s.details(value),
                                })
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect();
                doc! {"operatorName": "patternProperties", "propertiesNotSatisfied": failing}
            }
            Rule::AdditionalProperties {
                spec,
                allowed,
                named,
                patterns,
            } => {
                let extra: Vec<(&String, &Bson)> = v
                    .as_document()
                    .into_iter()
                    .flat_map(|d| d.iter())
                    .filter(|(k, _)| {
                        !named.contains(k) && !patterns.iter().any(|re| re.is_match(k))
                    })
                    .collect();
                match allowed {
                    Additional::Schema(s) => doc! {
                        "operatorName": "additionalProperties",
                        "reason": "at least one additional property did not match the subschema",
                        "failingProperty": extra.iter().find(|(_, x)| !s.matches(x)).map(|(k, _)| (*k).clone()).unwrap_or_default(),
                        "details": extra.iter().find(|(_, x)| !s.matches(x)).map(|(_, x)| s.details(x)).unwrap_or_default(),
                    },
                    _ => doc! {
                        "operatorName": "additionalProperties",
                        "specifiedAs": {"additionalProperties": spec.clone()},
                        "additionalProperties": extra.iter().map(|(k, _)| (*k).clone()).collect::<Vec<_>>(),
                    },
                }
            }
            Rule::MinProperties(n) | Rule::MaxProperties(n) => {
                let keyword = if matches!(self, Rule::MinProperties(_)) {
                    "minProperties"
                } else {
                    "maxProperties"
                };
                doc! {
                    "operatorName": keyword,
                    "specifiedAs": {keyword: *n},
                    "reason": "specified number of properties was not satisfied",
                    "numberOfProperties": v.as_document().map(|d| d.len() as i64).unwrap_or(0),
                }
            }
            Rule::Dependencies(deps) => {
                let d = v.as_document();
                let failing: Vec<Bson> = deps
                    .iter()
                    .filter(|(field, dep)| {
                        d.is_some_and(|d| {
                            d.contains_key(field)
                                && match dep {
                                    Dependency::Fields(names) => {
                                        !names.iter().all(|n| d.contains_key(n))
                                    }
                                    Dependency::Schema(s) => !s.matches_document(d),
                                }
                        })
                    })
                    .map(|(field, dep)| {
                        Bson::Document(match dep {
                            Dependency::Fields(names) => doc! {
                                "conditionalProperty": field.clone(),
                                "missingProperties": names.iter().filter(|n| d.is_some_and(|d| !d.contains_key(n))).cloned().collect::<Vec<_>>(),
                            },
                            Dependency::Schema(s) => doc! {
                                "conditionalProperty": field.clone(),
                                "details": s.details(v),
                            },
                        })
                    })
                    .collect();
                doc! {"operatorName": "dependencies", "failingDependencies": failing}
            }
            Rule::Enum(items) => considered(doc! {
                "operatorName": "enum",
                "specifiedAs": {"enum": items.clone()},
                "reason": "value was not found in enum",
            }),
            Rule::Bound {
                keyword,
                limit,
                exclusive,
            } => {
                let mut spec = doc! {*keyword: limit.clone()};
                if *exclusive {
                    let flag = if *keyword == "minimum" {
                        "exclusiveMinimum"
                    } else {
                        "exclusiveMaximum"
                    };
                    spec.insert(flag, true);
                }
                considered(doc! {
                    "operatorName": *keyword,
                    "specifiedAs": spec,
                    "reason": "comparison failed",
                })
            }
            Rule::MultipleOf(m) => considered(doc! {
                "operatorName": "multipleOf",
                "specifiedAs": {"multipleOf": m.clone()},
                "reason": "considered value is not a multiple of the specified value",
            }),
            Rule::MinLength(n) | Rule::MaxLength(n) => {
                let keyword = if matches!(self, Rule::MinLength(_)) {
                    "minLength"
                } else {
                    "maxLength"
                };
                considered(doc! {
                    "operatorName": keyword,
                    "specifiedAs": {keyword: *n},
                    "reason": "specified string length was not satisfied",
                })
            }
            Rule::Pattern(p, _) => considered(doc! {
                "operatorName": "pattern",
                "specifiedAs": {"pattern": p.clone()},
                "reason": "regular expression did not match",
            }),
            Rule::Items(s) => {
                let failing = match v {
                    Bson::Array(a) => a.iter().enumerate().find(|(_, i)| !s.matches(i)),
                    _ => None,
                };
                let mut d = doc! {
                    "operatorName": "items",
                    "reason": "At least one item did not match the sub-schema",
                };
                if let Some((index, item)) = failing {
                    d.insert("itemIndex", index as i32);
                    d.insert("details", s.details(item));
                }
                d
            }
            Rule::TupleItems(tuple, rest) => {
                let a = match v {
                    Bson::Array(a) => a.as_slice(),
                    _ => &[],
                };
                let failing = a.iter().enumerate().find(|(i, item)| match tuple.get(*i) {
                    Some(s) => !s.matches(item),
                    None => match rest {
                        Additional::Any => false,
                        Additional::None => true,
                        Additional::Schema(s) => !s.matches(item),
                    },
                });
                match failing {
                    Some((i, item)) if i < tuple.len() => doc! {
                        "operatorName": "items",
                        "details": [{"index": i as i32, "details": tuple[i].details(item)}],
                    },
                    Some((i, item)) => {
                        let mut d = doc! {
                            "operatorName": "additionalItems",
                            "reason": "at least one additional item did not match the sub-schema",
                            "itemIndex": i as i32,
                        };
                        if let Additional::Schema(s) = rest {
                            d.insert("details", s.details(item));
                        }
                        d
                    }
                    None => doc! {"operatorName": "items"},
                }
            }
            Rule::MinItems(n) | Rule::MaxItems(n) => {
                let keyword = if matches!(self, Rule::MinItems(_)) {
                    "minItems"
                } else {
                    "maxItems"
                };
                considered(doc! {
                    "operatorName": keyword,
                    "specifiedAs": {keyword: *n},
                    "reason": "array did not match specified length",
                })
            }
            Rule::UniqueItems => {
                let dup = match v {
                    Bson::Array(a) => duplicate(a).cloned(),
                    _ => None,
                };
                let mut d = considered(doc! {
                    "operatorName": "uniqueItems",
                    "specifiedAs": {"uniqueItems": true},
                    "reason": "found a duplicate item",
                });
                if let Some(dup) = dup {
                    d.insert("duplicatedValue", dup);
                }
                d
            }
            Rule::AllOf(list) | Rule::AnyOf(list) => {
                let keyword = if matches!(self, Rule::AllOf(_)) {
                    "allOf"
                } else {
                    "anyOf"
                };
                let failing: Vec<Bson> = list
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| !s.matches(v))
                    .map(|(i, s)| Bson::Document(doc! {"index": i as i32, "details": s.details(v)}))
                    .collect();
                doc! {"operatorName": keyword, "schemasNotSatisfied": failing}
            }
            Rule::OneOf(list) => {
                let matching: Vec<i32> = list
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.matches(v))
                    .map(|(i, _)| i as i32)
                    .collect();
                if matching.is_empty() {
                    let failing: Vec<Bson> = list
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            Bson::Document(doc! {"index": i as i32, "details": s.details(v)})
                        })
                        .collect();
                    doc! {"operatorName": "oneOf", "schemasNotSatisfied": failing}
                } else {
                    doc! {
                        "operatorName": "oneOf",
                        "reason": "more than one subschema matched",
                        "matchingSchemaIndexes": matching,
                    }
                }
            }
            Rule::Not(_, spec) => doc! {
                "operatorName": "not",
                "specifiedAs": {"not": spec.clone()},
                "reason": "child expression matched",
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::bson;

    fn schema(d: Document) -> Schema {
        Schema::parse(&Bson::Document(d)).unwrap()
    }

    #[test]
    fn keywords_apply_to_their_kind_only() {
        let s = schema(doc! {
            "bsonType": "object",
            "required": ["name"],
            "properties": {
                "name": {"bsonType": "string", "minLength": 2, "maxLength": 5, "pattern": "^[a-z]+$"},
                "age": {"bsonType": ["int", "long"], "minimum": 0, "maximum": 150, "exclusiveMaximum": true},
                "tags": {"bsonType": "array", "items": {"bsonType": "string"}, "minItems": 1, "maxItems": 3, "uniqueItems": true},
                "kind": {"enum": ["a", "b", 3]},
                "any": {"minimum": 5},
            },
        });
        assert!(s.matches_document(&doc! {"name": "abc"}));
        assert!(s.matches_document(
            &doc! {"name": "abc", "age": 149, "tags": ["x"], "kind": 3.0, "any": "not a number"}
        ));
        assert!(!s.matches_document(&doc! {}));
        assert!(!s.matches_document(&doc! {"name": "a"}));
        assert!(!s.matches_document(&doc! {"name": "abcdef"}));
        assert!(!s.matches_document(&doc! {"name": "AB"}));
        assert!(!s.matches_document(&doc! {"name": "ab", "age": 150}));
        assert!(!s.matches_document(&doc! {"name": "ab", "age": -1}));
        assert!(!s.matches_document(&doc! {"name": "ab", "age": 1.5}));
        assert!(!s.matches_document(&doc! {"name": "ab", "tags": []}));
        assert!(!s.matches_document(&doc! {"name": "ab", "tags": ["x", "x"]}));
        assert!(!s.matches_document(&doc! {"name": "ab", "tags": ["x", 1]}));
        assert!(!s.matches_document(&doc! {"name": "ab", "kind": "c"}));
        assert!(!s.matches_document(&doc! {"name": "ab", "any": 4}));
    }

    #[test]
    fn combinators_and_additional_properties() {
        let s = schema(doc! {
            "properties": {"a": {}, "b": {}},
            "patternProperties": {"^x_": {"bsonType": "int"}},
            "additionalProperties": false,
            "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
            "oneOf": [{"required": ["a"]}, {"properties": {"a": {"bsonType": "string"}}, "required": ["a"]}],
            "not": {"required": ["forbidden"]},
        });
        assert!(s.matches_document(&doc! {"a": 1, "x_1": 2}));
        assert!(!s.matches_document(&doc! {"a": "both oneOf branches"}));
        assert!(!s.matches_document(&doc! {"a": 1, "c": 1}));
        assert!(!s.matches_document(&doc! {"a": 1, "x_1": "no"}));
        assert!(!s.matches_document(&doc! {"b": 1}));
        let d = doc! {"a": 1, "c": 1, "d": 2};
        let why = s.explain(&d);
        assert_eq!(why.get_str("operatorName").unwrap(), "$jsonSchema");
        let rules = why.get_array("schemaRulesNotSatisfied").unwrap();
        assert_eq!(
            rules[0].as_document().unwrap(),
            &doc! {"operatorName": "additionalProperties", "specifiedAs": {"additionalProperties": false}, "additionalProperties": ["c", "d"]}
        );
    }

    #[test]
    fn explanations_are_shaped_as_mongodb_reports_them() {
        // MongoDB's documented example (schema validation, "view the
        // reason a document failed"); object keywords in MongoDB's order:
        // `properties` before `required`.
        let s = schema(doc! {
            "bsonType": "object",
            "required": ["name", "year", "major", "address"],
            "properties": {
                "name": {"bsonType": "string", "description": "must be a string and is required"},
                "year": {"bsonType": "int", "minimum": 2017, "maximum": 3017},
                "gpa": {"bsonType": ["double"], "description": "must be a double if the field exists"},
            },
        });
        let d = doc! {"name": "Alice", "year": 2019i32, "major": "History", "gpa": 3i32};
        let why = s.explain(&d);
        assert_eq!(
            why,
            doc! {
                "operatorName": "$jsonSchema",
                "schemaRulesNotSatisfied": [
                    {"operatorName": "properties", "propertiesNotSatisfied": [
                        {"propertyName": "gpa", "description": "must be a double if the field exists", "details": [
                            {"operatorName": "bsonType", "specifiedAs": {"bsonType": ["double"]}, "reason": "type did not match", "consideredValue": 3, "consideredType": "int"},
                        ]},
                    ]},
                    {"operatorName": "required", "specifiedAs": {"required": ["name", "year", "major", "address"]}, "missingProperties": ["address"]},
                ],
            }
        );
    }

    #[test]
    fn malformed_schemas_fail_by_name() {
        let code = |d: Document| Schema::parse(&Bson::Document(d)).unwrap_err();
        assert_eq!(
            code(doc! {"foo": 1}).message,
            "Unknown $jsonSchema keyword: foo"
        );
        assert!(
            code(doc! {"$ref": "#"})
                .message
                .contains("not currently supported")
        );
        assert!(
            code(doc! {"format": "email"})
                .message
                .contains("not currently supported")
        );
        assert_eq!(
            code(doc! {"encrypt": {}}).code,
            crate::error::ErrorCode::CommandNotSupported
        );
        code(doc! {"type": "integer"});
        code(doc! {"bsonType": "nope"});
        code(doc! {"bsonType": "int", "type": "number"});
        code(doc! {"minimum": "1"});
        code(doc! {"minLength": -1});
        code(doc! {"minLength": 1.5});
        code(doc! {"maxItems": i64::MIN});
        code(doc! {"required": []});
        code(doc! {"required": ["a", "a"]});
        code(doc! {"required": [1]});
        code(doc! {"enum": []});
        code(doc! {"pattern": "(unclosed"});
        code(doc! {"pattern": 5});
        code(doc! {"properties": 5});
        code(doc! {"properties": {"a": 5}});
        code(doc! {"anyOf": []});
        code(doc! {"items": 5});
        code(doc! {"exclusiveMinimum": true});
        code(doc! {"multipleOf": 0});
        code(doc! {"uniqueItems": "yes"});
        assert!(Schema::parse(&Bson::Int32(1)).is_err());
    }

    #[test]
    fn hostile_schemas_are_bounded() {
        // Nesting past the query tree depth is refused, not recursed into
        // (on a server thread's stack, as requests run).
        crate::limits::with_worker_stack(|| {
            let mut deep = doc! {"bsonType": "object"};
            for _ in 0..200 {
                deep = doc! {"items": deep};
            }
            let e = Schema::parse(&Bson::Document(deep)).unwrap_err();
            assert!(e.message.contains("exceeded maximum query tree depth"));
            // The deepest allowed parses, matches and explains.
            let mut ok = doc! {"bsonType": "int"};
            let mut value = Bson::Int32(1);
            for _ in 0..99 {
                ok = doc! {"items": ok};
                value = Bson::Array(vec![value]);
            }
            let s = Schema::parse(&Bson::Document(ok)).unwrap();
            assert!(s.matches(&value));
        });
        // A huge enum and a huge array for uniqueItems stay cheap.
        let many: Vec<Bson> = (0..200_000).map(Bson::Int32).collect();
        let s =
            schema(doc! {"properties": {"a": {"enum": many.clone()}, "b": {"uniqueItems": true}}});
        assert!(s.matches_document(&doc! {"a": 199_999, "b": many.clone()}));
        let mut dup = many;
        dup.push(Bson::Int64(5));
        assert!(!s.matches_document(&doc! {"b": dup}));
        assert!(!s.matches_document(&doc! {"a": bson!(-1)}));
    }
}
