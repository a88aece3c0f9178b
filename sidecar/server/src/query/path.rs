//! Dotted paths: reading them as MongoDB's query language does (through
//! arrays) and writing them as update operators do.

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

/// What a dotted path reaches in a document.
#[derive(Debug, Default)]
pub struct Resolved<'a> {
    /// Every value the path reaches. Arrays met in the middle of the path are
    /// traversed element by element; a value at the end is not expanded here.
    pub values: Vec<&'a Bson>,
    /// Some branch of the traversal found no value (so `{path: null}` matches).
    pub missing: bool,
}

/// Resolves `path` in `doc` for matching.
pub fn resolve<'a>(doc: &'a Document, path: &str) -> Resolved<'a> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Resolved::default();
    walk_doc(doc, &parts, &mut out);
    out
}

fn walk_doc<'a>(doc: &'a Document, parts: &[&str], out: &mut Resolved<'a>) {
    match doc.get(parts[0]) {
        Some(v) => walk(v, &parts[1..], out),
        None => out.missing = true,
    }
}

fn walk<'a>(v: &'a Bson, parts: &[&str], out: &mut Resolved<'a>) {
    if parts.is_empty() {
        out.values.push(v);
        return;
    }
    match v {
        Bson::Document(d) => walk_doc(d, parts, out),
        Bson::Array(items) => {
            // A numeric component indexes the array; every component also
            // reaches into the array's embedded documents.
            if let Ok(i) = parts[0].parse::<usize>() {
                match items.get(i) {
                    Some(e) => walk(e, &parts[1..], out),
                    None => out.missing = true,
                }
            }
            let mut any_doc = false;
            for e in items {
                if let Bson::Document(d) = e {
                    any_doc = true;
                    walk_doc(d, parts, out);
                }
            }
            if !any_doc {
                out.missing = true;
            }
        }
        _ => out.missing = true,
    }
}

/// The single value at `path`, without array traversal except numeric
/// indexes (as update operators and expressions read paths).
pub fn get<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get(p)?,
            Bson::Array(a) => a.get(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Field values reached by `path` for expressions: like `get`, but a
/// non-numeric component over an array maps over its documents (as `$a.b`
/// does in aggregation).
pub fn get_expr(doc: &Document, path: &str) -> Option<Bson> {
    fn step(v: &Bson, parts: &[&str]) -> Option<Bson> {
        if parts.is_empty() {
            return Some(v.clone());
        }
        match v {
            Bson::Document(d) => step(d.get(parts[0])?, &parts[1..]),
            Bson::Array(a) => Some(Bson::Array(
                a.iter()
                    .filter(|e| matches!(e, Bson::Document(_) | Bson::Array(_)))
                    .filter_map(|e| step(e, parts))
                    .collect(),
            )),
            _ => None,
        }
    }
    let parts: Vec<&str> = path.split('.').collect();
    step(doc.get(parts[0])?, &parts[1..])
}

fn not_viable(field: &str, at: &Bson) -> CommandError {
    CommandError::new(
        ErrorCode::PathNotViable,
        format!("Cannot create field '{field}' in element {{{}}}", short(at)),
    )
}

/// `v` as text for an error message, cut after 80 bytes (at a character
/// boundary).
fn short(v: &Bson) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 80;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// The value at `path` through embedded documents only (as aggregation's
/// field paths name it for `$unwind`): an array on the way is not indexed.
pub fn get_field<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get(p)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Takes the value at `path` (as [`get_field`] finds it) out of `doc`,
/// leaving null in its place, so the field keeps its position.
pub fn take_field(doc: &mut Document, path: &str) -> Option<Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get_mut(parts.next()?)?;
    for p in parts {
        cur = match cur {
            Bson::Document(d) => d.get_mut(p)?,
            _ => return None,
        };
    }
    Some(std::mem::replace(cur, Bson::Null))
}

/// Sets `path` to `value` as aggregation does (`$addFields`/`$set`,
/// computed fields of `$project`, `$unwind`, `$lookup`'s `as`): every
/// component names a field, a number too; nothing indexes or pads an array.
/// Over an array, the rest of the path applies to each element: a document
/// gets the field, a nested array is entered the same way, any other value
/// is replaced by a new document holding the field. A missing or scalar
/// value on the way is replaced by a new document. Every copy of `value`
/// placed is charged to `budget`, so a large value copied into a long array
/// fails instead of filling memory.
pub fn set_field(doc: &mut Document, path: &str, value: Bson, budget: &mut Budget) -> Result<()> {
    limits::check_path(path)?;
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CommandError::new(
            ErrorCode::Location15998,
            format!("FieldPath field names may not be empty strings: '{path}'"),
        ));
    }
    let size = limits::bson_size(&value);
    field_in_doc(doc, &parts, &value, size, budget)
}

fn field_in_doc(
    doc: &mut Document,
    parts: &[&str],
    value: &Bson,
    size: usize,
    budget: &mut Budget,
) -> Result<()> {
    let Some((head, rest)) = parts.split_first() else {
        return Ok(());
    };
    if rest.is_empty() {
        budget.charge(size)?;
        doc.insert(*head, value.clone());
        return Ok(());
    }
    match doc.get_mut(*head) {
        Some(Bson::Document(d)) => field_in_doc(d, rest, value, size, budget),
        Some(Bson::Array(items)) => field_in_array(items, rest, value, size, budget),
        _ => {
            let mut d = Document::new();
            field_in_doc(&mut d, rest, value, size, budget)?;
            doc.insert(*head, d);
            Ok(())
        }
    }
}

fn field_in_array(
    items: &mut [Bson],
    parts: &[&str],
    value: &Bson,
    size: usize,
    budget: &mut Budget,
) -> Result<()> {
    for e in items.iter_mut() {
        match e {
            Bson::Document(d) => field_in_doc(d, parts, value, size, budget)?,
            Bson::Array(inner) => field_in_array(inner, parts, value, size, budget)?,
            other => {
                let mut d = Document::new();
                field_in_doc(&mut d, parts, value, size, budget)?;
                *other = Bson::Document(d);
            }
        }
    }
    Ok(())
}

/// Sets `path` to `value`, creating embedded documents on the way; numeric
/// components index arrays (padding with nulls, at most
/// [`limits::MAX_ARRAY_BACKFILL`] of them), as update operators do.
pub fn set(doc: &mut Document, path: &str, value: Bson) -> Result<()> {
    set_padding(doc, path, value).map(|_| ())
}

/// [`set`], returning how many bytes of BSON the nulls it padded an array
/// with take (0 when it padded none), so an update can hold the document
/// it builds to the size limit.
pub fn set_padding(doc: &mut Document, path: &str, value: Bson) -> Result<usize> {
    limits::check_path(path)?;
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CommandError::new(
            ErrorCode::EmptyFieldName,
            format!("The update path '{path}' contains an empty field name, which is not allowed."),
        ));
    }
    let mut padded = 0;
    set_in_doc(doc, &parts, value, &mut padded)?;
    Ok(padded)
}

fn set_in_doc(doc: &mut Document, parts: &[&str], value: Bson, padded: &mut usize) -> Result<()> {
    if parts.len() == 1 {
        doc.insert(parts[0], value);
        return Ok(());
    }
    if !doc.contains_key(parts[0]) {
        doc.insert(parts[0], Document::new());
    }
    match doc.get_mut(parts[0]) {
        Some(child) => set_in_value(child, parts[0], &parts[1..], value, padded),
        None => Ok(()),
    }
}

fn set_in_value(
    v: &mut Bson,
    name: &str,
    parts: &[&str],
    value: Bson,
    padded: &mut usize,
) -> Result<()> {
    match v {
        Bson::Document(d) => set_in_doc(d, parts, value, padded),
        Bson::Array(a) => {
            let Ok(i) = parts[0].parse::<usize>() else {
                return Err(not_viable(parts[0], &Bson::Array(a.clone())));
            };
            if a.len() <= i {
                limits::check_backfill(a.len(), i)?;
                // Each null: type byte, index digits, NUL.
                let digits = i.checked_ilog10().unwrap_or(0) as usize + 1;
                *padded = padded.saturating_add((i - a.len()) * (2 + digits));
                a.resize(i + 1, Bson::Null);
            }
            if parts.len() == 1 {
                a[i] = value;
                Ok(())
            } else {
                if matches!(a[i], Bson::Null) {
                    a[i] = Bson::Document(Document::new());
                }
                set_in_value(&mut a[i], parts[0], &parts[1..], value, padded)
            }
        }
        other => Err(not_viable(
            parts[0],
            &Bson::Document(bson::doc! { name: other.clone() }),
        )),
    }
}

/// Removes `path` as aggregation does (`$unset`, a missing `$addFields`
/// value): over an array, the rest of the path is removed from each
/// element that is a document (or nested array); a number names a field.
pub fn unset_field(doc: &mut Document, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    unset_field_in_doc(doc, &parts);
}

fn unset_field_in_doc(doc: &mut Document, parts: &[&str]) {
    let Some((head, rest)) = parts.split_first() else {
        return;
    };
    if rest.is_empty() {
        doc.remove(*head);
        return;
    }
    match doc.get_mut(*head) {
        Some(Bson::Document(d)) => unset_field_in_doc(d, rest),
        Some(Bson::Array(items)) => unset_field_in_array(items, rest),
        _ => {}
    }
}

fn unset_field_in_array(items: &mut [Bson], parts: &[&str]) {
    for e in items {
        match e {
            Bson::Document(d) => unset_field_in_doc(d, parts),
            Bson::Array(inner) => unset_field_in_array(inner, parts),
            _ => {}
        }
    }
}

/// Removes `path` (an array element becomes null, as the `$unset` update
/// operator does).
/// Returns whether something was there.
pub fn unset(doc: &mut Document, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    unset_in_doc(doc, &parts)
}

fn unset_in_doc(doc: &mut Document, parts: &[&str]) -> bool {
    if parts.len() == 1 {
        return doc.remove(parts[0]).is_some();
    }
    match doc.get_mut(parts[0]) {
        Some(Bson::Document(d)) => unset_in_doc(d, &parts[1..]),
        Some(Bson::Array(a)) => unset_in_array(a, &parts[1..]),
        _ => false,
    }
}

fn unset_in_array(a: &mut [Bson], parts: &[&str]) -> bool {
    let Ok(i) = parts[0].parse::<usize>() else {
        return false;
    };
    let Some(e) = a.get_mut(i) else {
        return false;
    };
    if parts.len() == 1 {
        *e = Bson::Null;
        return true;
    }
    match e {
        Bson::Document(d) => unset_in_doc(d, &parts[1..]),
        Bson::Array(inner) => unset_in_array(inner, &parts[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{bson, doc};

    /// Found by `tests/query_fuzz.rs`: the message for a path that cannot
    /// be created cut the element's text after 80 bytes, inside a
    /// multi-byte character, and panicked.
    #[test]
    fn not_viable_message_cuts_at_a_character() {
        for pad in ["", "x"] {
            let text = format!("{pad}{}", "ǅ".repeat(100));
            let mut d = doc! {"a": [&text]};
            let e = set(&mut d, "a.x", bson!(1)).unwrap_err();
            assert_eq!(e.code, ErrorCode::PathNotViable);
            assert!(e.message.ends_with("...}"), "{}", e.message);
            let mut d = doc! {"a": {"b": &text}};
            assert!(set(&mut d, "a.b.c", bson!(1)).is_err());
        }
    }

    #[test]
    fn resolve_through_arrays() {
        let d = doc! {"a": [{"b": 1}, {"b": [2, 3]}, {"c": 1}, 7]};
        let r = resolve(&d, "a.b");
        assert_eq!(r.values, vec![&bson!(1), &bson!([2, 3])]);
        assert!(r.missing);
        let r = resolve(&d, "a.0.b");
        assert_eq!(r.values, vec![&bson!(1)]);
    }

    #[test]
    fn set_creates_and_indexes() {
        let mut d = doc! {"a": {"x": 1}, "arr": [1]};
        set(&mut d, "a.b.c", bson!(5)).unwrap();
        set(&mut d, "arr.2", bson!(9)).unwrap();
        assert_eq!(d, doc! {"a": {"x": 1, "b": {"c": 5}}, "arr": [1, null, 9]});
        let e = set(&mut d, "a.x.y", bson!(1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::PathNotViable);
    }

    #[test]
    fn update_backfill_is_capped() {
        let mut d = doc! {"a": [1]};
        let e = set(&mut d, "a.400000000", bson!(1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::CannotBackfillArray);
        assert_eq!(e.message, "can't backfill more than 1500000 elements");
        assert_eq!(d, doc! {"a": [1]});
        let long = vec!["a"; 201].join(".");
        assert_eq!(
            set(&mut d, &long, bson!(1)).unwrap_err().code,
            ErrorCode::Overflow
        );
    }

    #[test]
    fn aggregation_paths_name_fields_of_each_element() {
        let mut budget = Budget::document("$addFields");
        let mut d = doc! {"a": [1, {"b": 2}, [3, {"c": 4}]], "s": 5};
        set_field(&mut d, "a.400000000", bson!(1), &mut budget).unwrap();
        assert_eq!(
            d,
            doc! {"a": [{"400000000": 1}, {"b": 2, "400000000": 1}, [{"400000000": 1}, {"c": 4, "400000000": 1}]], "s": 5}
        );
        set_field(&mut d, "s.t", bson!("x"), &mut budget).unwrap();
        set_field(&mut d, "n.m", bson!(true), &mut budget).unwrap();
        assert_eq!(d.get_document("s").unwrap(), &doc! {"t": "x"});
        assert_eq!(d.get_document("n").unwrap(), &doc! {"m": true});
        let mut empty = doc! {"a": []};
        set_field(&mut empty, "a.0", bson!(1), &mut budget).unwrap();
        assert_eq!(empty, doc! {"a": []});
        // A large value copied into every element of a long array stops.
        let mut many = doc! {"a": (0..100).map(Bson::Int32).collect::<Vec<_>>()};
        let big = Bson::String("x".repeat(1 << 20));
        let e = set_field(&mut many, "a.x", big, &mut Budget::document("$addFields")).unwrap_err();
        assert_eq!(e.code, ErrorCode::BSONObjectTooLarge);
    }

    #[test]
    fn aggregation_unset_names_fields() {
        let mut d = doc! {"a": [{"0": 1, "b": 2}, 5, [{"0": 3}]], "c": {"0": 1}};
        unset_field(&mut d, "a.0");
        unset_field(&mut d, "c.0");
        assert_eq!(d, doc! {"a": [{"b": 2}, 5, [{}]], "c": {}});
    }

    #[test]
    fn unset_fields_and_elements() {
        let mut d = doc! {"a": {"b": 1, "c": 2}, "arr": [1, 2]};
        assert!(unset(&mut d, "a.b"));
        assert!(unset(&mut d, "arr.0"));
        assert!(!unset(&mut d, "zz.y"));
        assert_eq!(d, doc! {"a": {"c": 2}, "arr": [null, 2]});
    }
}
