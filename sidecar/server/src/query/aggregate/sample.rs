//! `$sample: {size: n}`: `n` documents of the input chosen uniformly at
//! random (all of them when the input has fewer), in random order.
//!
//! As MongoDB does when it cannot sample from storage directly: each
//! document gets a random key and the first `n` by that key are kept,
//! through the same top-k `$sort` (`ops::sort`) as everything else, so
//! a large sample spills past the stage budget or fails with 292 like a
//! sort. The key, a double in [0, 1), is each document's
//! `{$meta: "randVal"}` (`query::meta`), as mongod's `$sample` attaches it.

use bson::{Bson, Document, doc};
use rand::Rng;

use super::super::meta;
use super::super::sort::SortSpec;
use super::{Cx, Op, ops};
use crate::error::Result;
use crate::spill::StageBudget;

const KEY: &str = "r";
const DOC: &str = "d";

/// The order of the random keys (parsed with the stage).
pub(super) fn key_order() -> Result<SortSpec> {
    SortSpec::parse(&doc! {KEY: 1})
}

pub(super) fn op(
    input: Box<dyn Op>,
    size: usize,
    order: SortSpec,
    budget: StageBudget,
) -> Box<dyn Op> {
    if size == 0 {
        return Box::new(Empty);
    }
    let keyed = Box::new(Keyed { input });
    Box::new(Unkeyed {
        input: ops::sort(keyed, order, Some(size), budget, false),
    })
}

struct Empty;

impl Op for Empty {
    fn next(&mut self, _: &mut Cx<'_>) -> Result<Option<Document>> {
        Ok(None)
    }
}

/// `{r: random, d: document}` for each input document.
struct Keyed {
    input: Box<dyn Op>,
}

impl Op for Keyed {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        Ok(self.input.next(cx)?.map(|d| {
            let key: f64 = rand::rng().random();
            meta::update(|m| m.rand_val = Some(key));
            doc! {KEY: key, DOC: d}
        }))
    }
}

/// The documents back out of their keyed wrappers.
struct Unkeyed {
    input: Box<dyn Op>,
}

impl Op for Unkeyed {
    fn next(&mut self, cx: &mut Cx<'_>) -> Result<Option<Document>> {
        while let Some(mut wrapped) = self.input.next(cx)? {
            if let Some(Bson::Document(d)) = wrapped.remove(DOC) {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}
