//! Projections (`find`'s `projection`, aggregation's `$project`): inclusion
//! or exclusion of (dotted) fields, the `_id` rule (included unless excluded),
//! and computed fields from expressions.

use bson::{Bson, Document};

use super::expr::Expr;
use super::path;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

#[derive(Debug, Clone)]
enum Node {
    Include,
    Exclude,
    Computed(Expr),
    Children(Vec<(String, Node)>),
}

#[derive(Debug, Clone)]
pub struct Projection {
    inclusion: bool,
    nodes: Vec<(String, Node)>,
}

impl Projection {
    pub fn parse(spec: &Document) -> Result<Projection> {
        let mut nodes: Vec<(String, Node)> = Vec::new();
        let mut inclusion: Option<bool> = None;
        let mut has_id_rule = false;
        for (k, v) in spec {
            if k.is_empty() || k.starts_with('$') {
                return Err(CommandError::bad_value(format!(
                    "projection field name '{k}' is not allowed"
                )));
            }
            limits::check_projection_path(k)?;
            let node = match v {
                Bson::Boolean(b) => {
                    if *b {
                        Node::Include
                    } else {
                        Node::Exclude
                    }
                }
                v if super::compare::is_number(v) => {
                    if super::compare::as_f64(v).unwrap_or(0.0) != 0.0 {
                        Node::Include
                    } else {
                        Node::Exclude
                    }
                }
                Bson::Document(d)
                    if d.keys()
                        .next()
                        .is_some_and(|k| k == "$slice" || k == "$elemMatch") =>
                {
                    return Err(CommandError::not_implemented(&format!(
                        "projection operator {}",
                        d.keys().next().map(String::as_str).unwrap_or("")
                    )));
                }
                other => Node::Computed(Expr::parse(other)?),
            };
            if k == "_id" {
                has_id_rule = true;
            } else {
                let this_inclusion = !matches!(node, Node::Exclude);
                match inclusion {
                    None => inclusion = Some(this_inclusion),
                    Some(i) if i != this_inclusion => {
                        return Err(if i {
                            CommandError::new(
                                ErrorCode::Location31254,
                                format!("Cannot do exclusion on field {k} in inclusion projection"),
                            )
                        } else {
                            CommandError::new(
                                ErrorCode::Location31253,
                                format!("Cannot do inclusion on field {k} in exclusion projection"),
                            )
                        });
                    }
                    _ => {}
                }
            }
            insert_node(&mut nodes, k, node)?;
        }
        let inclusion = match inclusion {
            Some(i) => i,
            // Only an _id rule: {_id: 0} excludes, {_id: 1} includes just _id.
            None => !matches!(nodes.first(), Some((_, Node::Exclude))),
        };
        if inclusion && !has_id_rule {
            nodes.insert(0, ("_id".to_owned(), Node::Include));
        }
        Ok(Projection { inclusion, nodes })
    }

    /// Projects `doc`. Computed fields follow aggregation's path rules
    /// (a numeric component is a field of each array element, never an
    /// index); the document built is held to [`limits::MAX_DOCUMENT_SIZE`]
    /// and [`limits::MAX_BSON_DEPTH`], and an expression that fails is an
    /// error.
    pub fn try_apply(&self, doc: &Document) -> Result<Document> {
        if !self.inclusion {
            return Ok(exclude(doc, &self.nodes));
        }
        let mut out = include(doc, &self.nodes);
        if self.has_computed() {
            let mut budget = Budget::document("$project");
            budget.charge(limits::document_size(&out))?;
            add_computed(&mut out, &self.nodes, doc, "", &mut budget)?;
            limits::check_built_document(&out, "$project")?;
        }
        Ok(out)
    }

    /// [`Projection::try_apply`] for callers that cannot fail: a computed
    /// field that fails or does not fit is left out.
    pub fn apply(&self, doc: &Document) -> Document {
        match self.try_apply(doc) {
            Ok(d) => d,
            Err(_) => {
                let mut out = include(doc, &self.nodes);
                if !self.inclusion {
                    out = exclude(doc, &self.nodes);
                }
                out
            }
        }
    }

    fn has_computed(&self) -> bool {
        subtree_has_computed(&self.nodes)
    }
}

fn subtree_has_computed(nodes: &[(String, Node)]) -> bool {
    // Iterative: the tree is at most 100 levels, but no recursion is needed.
    let mut stack: Vec<&[(String, Node)]> = vec![nodes];
    while let Some(level) = stack.pop() {
        for (_, n) in level {
            match n {
                Node::Computed(_) => return true,
                Node::Children(c) => stack.push(c),
                _ => {}
            }
        }
    }
    false
}

fn insert_node(nodes: &mut Vec<(String, Node)>, path: &str, node: Node) -> Result<()> {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    let existing = nodes.iter_mut().find(|(k, _)| k == head);
    match (rest, existing) {
        (None, None) => nodes.push((head.to_owned(), node)),
        (None, Some(_)) => {
            return Err(CommandError::new(
                ErrorCode::Location31253,
                format!("Path collision at {path}"),
            ));
        }
        (Some(r), Some((_, Node::Children(children)))) => insert_node(children, r, node)?,
        (Some(_), Some(_)) => {
            return Err(CommandError::new(
                ErrorCode::Location31253,
                format!("Path collision at {path}"),
            ));
        }
        (Some(r), None) => {
            let mut children = Vec::new();
            insert_node(&mut children, r, node)?;
            nodes.push((head.to_owned(), Node::Children(children)));
        }
    }
    Ok(())
}

fn include(doc: &Document, nodes: &[(String, Node)]) -> Document {
    let mut out = Document::new();
    for (k, v) in doc {
        match nodes.iter().find(|(n, _)| n == k).map(|(_, n)| n) {
            Some(Node::Include) => {
                out.insert(k.clone(), v.clone());
            }
            Some(Node::Children(children)) => match v {
                Bson::Document(d) => {
                    out.insert(k.clone(), include(d, children));
                }
                Bson::Array(items) => {
                    // Scalars stay (as empty documents) only where a computed
                    // field will be added to every element.
                    let computed = subtree_has_computed(children);
                    let mapped: Vec<Bson> = items
                        .iter()
                        .filter_map(|e| match e {
                            Bson::Document(d) => Some(Bson::Document(include(d, children))),
                            _ if computed => Some(Bson::Document(Document::new())),
                            _ => None,
                        })
                        .collect();
                    out.insert(k.clone(), mapped);
                }
                _ => {}
            },
            _ => {}
        }
    }
    out
}

fn add_computed(
    out: &mut Document,
    nodes: &[(String, Node)],
    root: &Document,
    prefix: &str,
    budget: &mut Budget,
) -> Result<()> {
    for (k, node) in nodes {
        let full = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match node {
            Node::Computed(e) => {
                if let Some(v) = e.eval(root)? {
                    path::set_field(out, &full, v, budget)?;
                }
            }
            Node::Children(children) => add_computed(out, children, root, &full, budget)?,
            _ => {}
        }
    }
    Ok(())
}

fn exclude(doc: &Document, nodes: &[(String, Node)]) -> Document {
    let mut out = Document::new();
    for (k, v) in doc {
        match nodes.iter().find(|(n, _)| n == k).map(|(_, n)| n) {
            Some(Node::Exclude) => {}
            Some(Node::Children(children)) => match v {
                Bson::Document(d) => {
                    out.insert(k.clone(), exclude(d, children));
                }
                Bson::Array(items) => {
                    let mapped: Vec<Bson> = items
                        .iter()
                        .map(|e| match e {
                            Bson::Document(d) => Bson::Document(exclude(d, children)),
                            other => other.clone(),
                        })
                        .collect();
                    out.insert(k.clone(), mapped);
                }
                other => {
                    out.insert(k.clone(), other.clone());
                }
            },
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn p(spec: Document, d: Document) -> Document {
        Projection::parse(&spec).unwrap().try_apply(&d).unwrap()
    }

    #[test]
    fn computed_paths_and_limits() {
        let d = doc! {"_id": 1, "a": [1, {"b": 2}], "x": 7};
        assert_eq!(
            p(doc! {"a.400000000": "$x"}, d.clone()),
            doc! {"_id": 1, "a": [{"400000000": 7}, {"400000000": 7}]}
        );
        assert_eq!(
            p(doc! {"a.b": 1}, d.clone()),
            doc! {"_id": 1, "a": [{"b": 2}]}
        );
        let mut spec = Document::new();
        for i in 0..40 {
            spec.insert(format!("f{i}"), "$$ROOT");
        }
        let big = doc! {"_id": 1, "s": "x".repeat(1 << 20)};
        let e = Projection::parse(&spec)
            .unwrap()
            .try_apply(&big)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BSONObjectTooLarge);
        let long = vec!["a"; 101].join(".");
        assert_eq!(
            Projection::parse(&doc! {long: 1}).unwrap_err().code,
            ErrorCode::Location5729100
        );
    }

    #[test]
    fn inclusion_exclusion_and_id() {
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 1, "d": 2}, "e": [{"c": 1, "x": 1}]};
        assert_eq!(p(doc! {"a": 1}, d.clone()), doc! {"_id": 1, "a": 1});
        assert_eq!(p(doc! {"a": 1, "_id": 0}, d.clone()), doc! {"a": 1});
        assert_eq!(
            p(doc! {"b.c": 1, "e.c": 1}, d.clone()),
            doc! {"_id": 1, "b": {"c": 1}, "e": [{"c": 1}]}
        );
        assert_eq!(p(doc! {"b": 0, "e": 0}, d.clone()), doc! {"_id": 1, "a": 1});
        assert_eq!(
            p(doc! {"b.d": 0}, d.clone()).get_document("b").unwrap(),
            &doc! {"c": 1}
        );
        assert_eq!(p(doc! {"_id": 0}, d.clone()).len(), 3);
        assert_eq!(p(doc! {"x": "$a"}, d), doc! {"_id": 1, "x": 1});
        assert!(Projection::parse(&doc! {"a": 1, "b": 0}).is_err());
    }
}
