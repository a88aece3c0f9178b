//! Variables that operators bind inside an expression (`$let`'s `vars`,
//! `$map`'s and `$filter`'s `as`, `$reduce`'s `$$value` and `$$this`).
//!
//! A command's own `let` variables never get here: they are constants,
//! substituted before parsing (`query::vars`). These are different: they
//! take a new value for every element or every evaluation, so they are
//! resolved in two steps. Parsing knows the names in scope ([`Scope`]) and
//! refuses an undefined one (17276) as mongod does, before any document is
//! read; evaluation looks the value up in a chain of frames on the stack
//! ([`Locals`]), innermost first, so an inner binding shadows an outer one.

use std::collections::HashMap;

use bson::{Bson, doc};

use super::Expr;
use crate::error::Result;
use crate::limits;

/// Where an expression is parsed: how deeply nested it is (held to
/// [`limits::check_expression_depth`]) and the variables bound around it.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    depth: usize,
    names: Option<&'a Names<'a>>,
}

/// One binding operator's names (with their positions, so a reference
/// resolves in constant time however many `$let` binds) and the scope
/// outside it.
struct Names<'a> {
    index: HashMap<&'a str, usize>,
    outer: Option<&'a Names<'a>>,
}

/// Where a variable's value will be at evaluation: `up` frames out from
/// the innermost, at `index` in that frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    up: usize,
    index: usize,
}

impl Scope<'static> {
    /// The scope of an expression `depth` levels down with no variables
    /// bound around it.
    pub fn top(depth: usize) -> Scope<'static> {
        Scope { depth, names: None }
    }
}

impl<'a> Scope<'a> {
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The scope of a sub-expression: one level deeper.
    pub fn nested(&self) -> Scope<'a> {
        Scope {
            depth: self.depth + 1,
            names: self.names,
        }
    }

    /// Where the innermost binding of `name` is, if an enclosing operator
    /// binds it.
    pub fn resolve(&self, name: &str) -> Option<Slot> {
        let mut cur = self.names;
        let mut up = 0;
        while let Some(n) = cur {
            if let Some(&index) = n.index.get(name) {
                return Some(Slot { up, index });
            }
            cur = n.outer;
            up += 1;
        }
        None
    }

    /// Runs `f` with `names` bound (one level deeper); at evaluation the
    /// values come in the same order ([`Locals::with`]). A name given twice
    /// is the later one, as a later field of a document wins.
    pub fn with_names<R>(&self, names: &[String], f: impl FnOnce(Scope<'_>) -> R) -> R {
        let frame = Names {
            index: names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect(),
            outer: self.names,
        };
        f(Scope {
            depth: self.depth + 1,
            names: Some(&frame),
        })
    }
}

/// The values of the variables bound around an expression being evaluated:
/// one frame per binding operator, innermost first.
#[derive(Clone, Copy, Default)]
pub struct Locals<'a>(Option<&'a Frame<'a>>);

struct Frame<'a> {
    values: &'a [Bson],
    outer: Locals<'a>,
}

impl Locals<'static> {
    /// No variables: an expression evaluated outside any binding operator.
    pub const NONE: Locals<'static> = Locals(None);
}

impl<'a> Locals<'a> {
    /// The value in `slot`; `None` only if parsing and evaluation disagree
    /// about the frames, which is a bug the caller reports.
    pub fn get(&self, slot: Slot) -> Option<&'a Bson> {
        let value = self.frame(slot.up).and_then(|f| f.values.get(slot.index));
        // Parsing resolved `slot` against the binders that push these frames,
        // so a miss is a bug in one of the two, never bad input: tests panic
        // here; a release build answers the caller's 17276, not a panic.
        debug_assert!(
            value.is_some(),
            "no variable at {slot:?}: parsing and evaluation disagree about the frames"
        );
        value
    }

    /// The frame `up` frames out from the innermost.
    fn frame(&self, up: usize) -> Option<&'a Frame<'a>> {
        let mut cur = self.0?;
        for _ in 0..up {
            cur = cur.outer.0?;
        }
        Some(cur)
    }

    /// Runs `f` with one frame of `values` bound, in the order of the
    /// names [`Scope::with_names`] bound.
    pub fn with<R>(self, values: &[Bson], f: impl FnOnce(Locals<'_>) -> R) -> R {
        let frame = Frame {
            values,
            outer: self,
        };
        f(Locals(Some(&frame)))
    }
}

/// `"$$name"` or `"$$name.a.b"` (`rest` is what follows `$$`) when an
/// enclosing operator binds `name`; `None` otherwise (the caller reports
/// an undefined variable).
pub(super) fn parse_var(rest: &str, scope: Scope) -> Result<Option<Expr>> {
    let (name, path) = match rest.split_once('.') {
        Some((name, path)) => (name, Some(path)),
        None => (rest, None),
    };
    let Some(slot) = scope.resolve(name) else {
        return Ok(None);
    };
    if let Some(path) = path {
        limits::check_path(path)?;
    }
    Ok(Some(Expr::Var {
        name: name.to_owned(),
        slot,
        path: path.map(str::to_owned),
    }))
}

/// The value at `path` inside a variable's value, as a field path reads
/// a document (through arrays, as `"$a.b"` does).
pub(super) fn get_path(value: &Bson, path: &str) -> Option<Bson> {
    match value {
        Bson::Document(d) => super::get_expr(d, path),
        Bson::Array(_) => {
            let wrapped = doc! { "v": value.clone() };
            super::get_expr(&wrapped, &format!("v.{path}"))
        }
        _ => None,
    }
}

/// A field path (`"$a.b"`) or `"$$CURRENT…"` where an enclosing `$let` or
/// `$map` rebinds `CURRENT` (the one system variable a user may set): the
/// path is read from that value, not from the document. `None` when
/// `CURRENT` is not rebound or `s` is neither.
pub(super) fn rebound_current(s: &str, scope: Scope) -> Result<Option<Expr>> {
    let Some(slot) = scope.resolve("CURRENT") else {
        return Ok(None);
    };
    let path = if s == "$$CURRENT" {
        None
    } else if let Some(p) = s.strip_prefix("$$CURRENT.") {
        Some(p)
    } else if s.len() > 1 && s.starts_with('$') && !s.starts_with("$$") {
        Some(&s[1..])
    } else {
        return Ok(None);
    };
    if let Some(path) = path {
        limits::check_path(path)?;
    }
    Ok(Some(Expr::Var {
        name: "CURRENT".to_owned(),
        slot,
        path: path.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "parsing and evaluation disagree about the frames")]
    fn a_slot_without_its_frame_is_a_bug_tests_catch() {
        Locals::NONE.get(Slot { up: 0, index: 0 });
    }

    #[test]
    fn a_slot_reads_its_frame() {
        let (outer, inner) = ([Bson::Int32(1)], [Bson::Int32(2), Bson::Int32(3)]);
        Locals::NONE.with(&outer, |l| {
            l.with(&inner, |l| {
                assert_eq!(l.get(Slot { up: 0, index: 1 }), Some(&Bson::Int32(3)));
                assert_eq!(l.get(Slot { up: 1, index: 0 }), Some(&Bson::Int32(1)));
            })
        });
    }
}
