//! `$redact`: an expression evaluated at each level of a document decides
//! whether that level is kept whole (`$$KEEP`), left out (`$$PRUNE`), or
//! kept with each embedded document, and each document in an array (and
//! in arrays of arrays), decided again in turn (`$$DESCEND`).
//!
//! The three variables exist only inside `$redact`, so they are bound as
//! `let` variables are (see `query::vars`): each `"$$KEEP"`, `"$$PRUNE"`
//! and `"$$DESCEND"` in the expression becomes a `{$literal: …}` of a
//! value no document can hold (a binary of a user subtype carrying a
//! random per-process nonce) before the expression is parsed, and the
//! value the expression returns is matched against those three.
//!
//! A level's expression sees that level as `$$CURRENT` (and as the
//! document its field paths read). `$$ROOT` would have to stay the
//! top-level document at every level, which the expression engine cannot
//! express here: an expression naming `$$ROOT` is refused by name (115)
//! rather than answered wrongly.

use std::sync::OnceLock;

use bson::{Bson, Document, spec::BinarySubtype};

use super::super::expr::Expr;
use super::{Cx, Op};
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits;

/// A parsed `$redact`.
#[derive(Debug, Clone)]
pub(super) struct Redact {
    expr: Expr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Keep,
    Prune,
    Descend,
}

const DECISIONS: [(&str, Decision); 3] = [
    ("$$KEEP", Decision::Keep),
    ("$$PRUNE", Decision::Prune),
    ("$$DESCEND", Decision::Descend),
];

/// The value `"$$KEEP"`/`"$$PRUNE"`/`"$$DESCEND"` stand for.
fn marker(d: Decision) -> Bson {
    static NONCE: OnceLock<[u8; 16]> = OnceLock::new();
    let nonce = NONCE.get_or_init(rand::random);
    let mut bytes = nonce.to_vec();
    bytes.push(d as u8);
    Bson::Binary(bson::Binary {
        subtype: BinarySubtype::UserDefined(0xA7),
        bytes,
    })
}

fn decision_of(v: &Bson) -> Option<Decision> {
    DECISIONS.iter().map(|(_, d)| *d).find(|d| marker(*d) == *v)
}

/// The expression with the three variables bound (never inside a
/// `$literal`), or 115 for `$$ROOT`.
fn bind(v: &Bson) -> Result<Bson> {
    Ok(match v {
        Bson::String(s) => {
            if let Some((_, d)) = DECISIONS.iter().find(|(name, _)| s == name) {
                bson::bson!({"$literal": marker(*d)})
            } else if s == "$$ROOT" || s.starts_with("$$ROOT.") {
                return Err(CommandError::not_implemented("$$ROOT inside $redact"));
            } else {
                v.clone()
            }
        }
        Bson::Document(d) if d.len() == 1 && d.contains_key("$literal") => v.clone(),
        Bson::Document(d) => Bson::Document(
            d.iter()
                .map(|(k, v)| Ok((k.clone(), bind(v)?)))
                .collect::<Result<Document>>()?,
        ),
        Bson::Array(a) => Bson::Array(a.iter().map(bind).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

impl Redact {
    pub(super) fn parse(arg: &Bson) -> Result<Redact> {
        Ok(Redact {
            expr: Expr::parse(&bind(arg)?)?,
        })
    }

    pub(super) fn stream(self, input: Box<dyn Op>) -> Box<dyn Op> {
        Box::new(RedactOp {
            input,
            redact: self,
        })
    }

    fn decide(&self, level: &Document) -> Result<Decision> {
        let v = self.expr.eval(level)?.unwrap_or(Bson::Null);
        decision_of(&v).ok_or_else(|| {
            CommandError::new(
                ErrorCode::Location17053,
                format!(
                    "$redact's expression should not return anything aside from the variables $$KEEP, $$DESCEND, and $$PRUNE, but returned {v}"
                ),
            )
        })
    }

    /// `doc` redacted, or `None` when it is pruned; `depth` levels below
    /// the top.
    fn apply(&self, doc: Document, depth: usize, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        if depth > limits::MAX_BSON_DEPTH {
            return Err(CommandError::new(
                ErrorCode::Overflow,
                format!(
                    "$redact reached a document nested deeper than {} levels",
                    limits::MAX_BSON_DEPTH
                ),
            ));
        }
        cx.tick()?;
        match self.decide(&doc)? {
            Decision::Keep => Ok(Some(doc)),
            Decision::Prune => Ok(None),
            Decision::Descend => {
                let mut out = Document::new();
                for (k, v) in doc {
                    if let Some(v) = self.value(v, depth + 1, cx)? {
                        out.insert(k, v);
                    }
                }
                Ok(Some(out))
            }
        }
    }

    /// A field's value or an array element under a descended level:
    /// documents are decided again, arrays element by element.
    fn value(&self, v: Bson, depth: usize, cx: &mut Cx<'_>) -> Result<Option<Bson>> {
        Ok(match v {
            Bson::Document(d) => self.apply(d, depth, cx)?.map(Bson::Document),
            Bson::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(item) = self.value(item, depth + 1, cx)? {
                        out.push(item);
                    }
                }
                Some(Bson::Array(out))
            }
            other => Some(other),
        })
    }
}

struct RedactOp {
    input: Box<dyn Op>,
    redact: Redact,
}

impl Op for RedactOp {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        while let Some(d) = self.input.next(cx)? {
            if let Some(d) = self.redact.apply(d, 0, cx)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}
