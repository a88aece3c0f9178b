//! Dotted paths: reading them as MongoDB's query language does (through
//! arrays) and writing them as update operators do.

use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

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

fn short(v: &Bson) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}...", &s[..80])
    } else {
        s
    }
}

/// Sets `path` to `value`, creating embedded documents on the way; numeric
/// components index arrays (padding with nulls).
pub fn set(doc: &mut Document, path: &str, value: Bson) -> Result<()> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(CommandError::new(
            ErrorCode::EmptyFieldName,
            format!("The update path '{path}' contains an empty field name, which is not allowed."),
        ));
    }
    set_in_doc(doc, &parts, value)
}

fn set_in_doc(doc: &mut Document, parts: &[&str], value: Bson) -> Result<()> {
    if parts.len() == 1 {
        doc.insert(parts[0], value);
        return Ok(());
    }
    if !doc.contains_key(parts[0]) {
        doc.insert(parts[0], Document::new());
    }
    match doc.get_mut(parts[0]) {
        Some(child) => set_in_value(child, parts[0], &parts[1..], value),
        None => Ok(()),
    }
}

fn set_in_value(v: &mut Bson, name: &str, parts: &[&str], value: Bson) -> Result<()> {
    match v {
        Bson::Document(d) => set_in_doc(d, parts, value),
        Bson::Array(a) => {
            let Ok(i) = parts[0].parse::<usize>() else {
                return Err(not_viable(parts[0], &Bson::Array(a.clone())));
            };
            if a.len() <= i {
                a.resize(i + 1, Bson::Null);
            }
            if parts.len() == 1 {
                a[i] = value;
                Ok(())
            } else {
                if matches!(a[i], Bson::Null) {
                    a[i] = Bson::Document(Document::new());
                }
                set_in_value(&mut a[i], parts[0], &parts[1..], value)
            }
        }
        other => Err(not_viable(
            parts[0],
            &Bson::Document(bson::doc! { name: other.clone() }),
        )),
    }
}

/// Removes `path` (an array element becomes null, as `$unset` does).
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
    fn unset_fields_and_elements() {
        let mut d = doc! {"a": {"b": 1, "c": 2}, "arr": [1, 2]};
        assert!(unset(&mut d, "a.b"));
        assert!(unset(&mut d, "arr.0"));
        assert!(!unset(&mut d, "zz.y"));
        assert_eq!(d, doc! {"a": {"c": 2}, "arr": [null, 2]});
    }
}
