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

/// One binding operator's names and the scope outside it.
struct Names<'a> {
    names: &'a [String],
    outer: Option<&'a Names<'a>>,
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

    /// Whether an enclosing operator binds `name`.
    pub fn binds(&self, name: &str) -> bool {
        let mut cur = self.names;
        while let Some(n) = cur {
            if n.names.iter().any(|b| b == name) {
                return true;
            }
            cur = n.outer;
        }
        false
    }

    /// Runs `f` with `names` bound (one level deeper).
    pub fn with_names<R>(&self, names: &[String], f: impl FnOnce(Scope<'_>) -> R) -> R {
        let frame = Names {
            names,
            outer: self.names,
        };
        f(Scope {
            depth: self.depth + 1,
            names: Some(&frame),
        })
    }
}

/// The values of the variables bound around an expression being evaluated.
#[derive(Clone, Copy, Default)]
pub struct Locals<'a>(Option<&'a Frame<'a>>);

struct Frame<'a> {
    name: &'a str,
    value: &'a Bson,
    outer: Locals<'a>,
}

impl Locals<'static> {
    /// No variables: an expression evaluated outside any binding operator.
    pub const NONE: Locals<'static> = Locals(None);
}

impl<'a> Locals<'a> {
    /// The innermost value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&'a Bson> {
        let mut cur = self.0;
        while let Some(f) = cur {
            if f.name == name {
                return Some(f.value);
            }
            cur = f.outer.0;
        }
        None
    }

    /// Runs `f` with `name` bound to `value`.
    pub fn with<R>(self, name: &str, value: &Bson, f: impl FnOnce(Locals<'_>) -> R) -> R {
        let frame = Frame {
            name,
            value,
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
    if !scope.binds(name) {
        return Ok(None);
    }
    if let Some(path) = path {
        limits::check_path(path)?;
    }
    Ok(Some(Expr::Var {
        name: name.to_owned(),
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
