//! Projections (`find`'s `projection`, aggregation's `$project`): inclusion
//! or exclusion of (dotted) fields, the `_id` rule (included unless excluded),
//! and computed fields from expressions.

use bson::{Bson, Document};

use super::expr::Expr;
use super::filter::Filter;
use super::find_meta::{FindMeta, FindMetadata};
use super::path;
use crate::error::{CommandError, ErrorCode, Result};
use crate::limits::{self, Budget};

#[derive(Debug, Clone)]
enum Node {
    Include,
    Exclude,
    Computed(Expr),
    Children(Vec<(String, Node)>),
    /// find's `{$slice: n}` / `{$slice: [skip, limit]}` on the array there.
    Slice {
        skip: Option<i32>,
        limit: i32,
    },
    /// find's `{field: {$elemMatch: q}}` (top-level only): the first element
    /// the filter (`{field: {$elemMatch: q}}`) matches, or the field left out.
    ElemMatch(Filter),
    /// find's `"path.$": 1`: the first element of the array at the path that
    /// the query's conditions on it match.
    Positional(Filter),
    /// find's `{$meta: "indexKey"}`, `"sortKey"`, `"geoNearDistance"`...:
    /// read through the [`FindMetadata`] the find binds (`query::find_meta`).
    Meta(FindMeta),
}

/// Where a projection is parsed: find (and findAndModify's `fields`) allows
/// `$slice`/`$elemMatch`/positional `$` as projection operators; aggregation
/// (`$project`) does not, and there `$slice` is the expression.
#[derive(Debug, Clone, Copy)]
pub enum Policy<'a> {
    /// `query` is the command's filter, the one a positional `$` refers to.
    Find {
        query: Option<&'a Document>,
    },
    Aggregate,
}

#[derive(Debug, Clone)]
pub struct Projection {
    inclusion: bool,
    nodes: Vec<(String, Node)>,
    /// find's `returnKey`: the document's index key instead of it.
    return_key: bool,
    /// What find-only `$meta`s read (none bound: they are left out).
    metadata: Option<std::sync::Arc<FindMetadata>>,
}

/// What the parse has seen so far (MongoDB's projection_parser ParseContext).
struct Ctx<'a> {
    policy: Policy<'a>,
    inclusion: Option<bool>,
    id_specified: bool,
    id_included: bool,
    id_excluded: bool,
    has_positional: bool,
    has_elem_match: bool,
    has_find_slice: bool,
    has_meta: bool,
}

impl Projection {
    /// An aggregation (`$project`) projection.
    pub fn parse(spec: &Document) -> Result<Projection> {
        Projection::parse_with(spec, Policy::Aggregate)
    }

    /// A find projection: `query` is the command's filter.
    pub fn parse_find(spec: &Document, query: &Document) -> Result<Projection> {
        Projection::parse_with(spec, Policy::Find { query: Some(query) })
    }

    /// MongoDB 8.0's projection rules: inclusion and exclusion do not mix
    /// (31253/31254, 31252/31310 for expressions), paths may not collide
    /// (31249/31250), `_id` is included unless excluded.
    pub fn parse_with(spec: &Document, policy: Policy<'_>) -> Result<Projection> {
        let mut ctx = Ctx {
            policy,
            inclusion: None,
            id_specified: false,
            id_included: false,
            id_excluded: false,
            has_positional: false,
            has_elem_match: false,
            has_find_slice: false,
            has_meta: false,
        };
        let mut nodes: Vec<(String, Node)> = Vec::new();
        for (k, v) in spec {
            ctx.id_specified |= k == "_id" || k.starts_with("_id.");
            parse_element(&mut ctx, &mut nodes, None, k, v)?;
        }
        let find = matches!(ctx.policy, Policy::Find { .. });
        // MongoDB's computeProjectionType for projections with no plain
        // inclusion or exclusion of a field other than _id.
        let inclusion = match ctx.inclusion {
            Some(i) => i,
            None if ctx.has_find_slice => ctx.id_included,
            None if ctx.has_elem_match => true,
            None if ctx.has_meta => !find || (!ctx.id_excluded && ctx.id_included),
            None => ctx.id_included,
        };
        if inclusion && !ctx.id_specified {
            nodes.insert(0, ("_id".to_owned(), Node::Include));
        }
        if !inclusion && ctx.id_included {
            nodes.retain(|(k, n)| !(k == "_id" && matches!(n, Node::Include)));
        }
        Ok(Projection {
            inclusion,
            nodes,
            return_key: false,
            metadata: None,
        })
    }

    /// find's `returnKey: true`: each result is the index key the plan
    /// reached the document under (`{}` for a collection scan), whatever
    /// the projection (MongoDB's `ReturnKeyStage` keeps only `sortKey`
    /// metas of it, which the find handler refuses beside `returnKey`).
    pub fn return_key() -> Projection {
        Projection {
            inclusion: true,
            nodes: Vec::new(),
            return_key: true,
            metadata: None,
        }
    }

    /// The projection reading `metadata` for its find-only `$meta`s and
    /// `returnKey`, fixed once the find's plan is chosen.
    pub fn with_metadata(mut self, metadata: FindMetadata) -> Projection {
        self.metadata = Some(std::sync::Arc::new(metadata));
        self
    }

    /// Projects `doc`. Computed fields follow aggregation's path rules
    /// (a numeric component is a field of each array element, never an
    /// index); the document built is held to [`limits::MAX_DOCUMENT_SIZE`]
    /// and [`limits::MAX_BSON_DEPTH`], and an expression that fails is an
    /// error.
    pub fn try_apply(&self, doc: &Document) -> Result<Document> {
        if self.return_key {
            let key = self.metadata.as_ref().and_then(|m| m.index_key(doc));
            return Ok(key.unwrap_or_default());
        }
        let mut out = if self.inclusion {
            include(doc, &self.nodes)
        } else {
            exclude(doc, &self.nodes)
        };
        apply_find_operators(&mut out, &self.nodes, "")?;
        // An exclusion projection's only computed fields are `$meta`s.
        if self.has_computed() {
            let mut budget = Budget::document("$project");
            budget.charge(limits::document_size(&out))?;
            let metadata = self.metadata.as_deref();
            add_computed(&mut out, &self.nodes, doc, "", metadata, &mut budget)?;
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

    /// The find-only `$meta`s it reads.
    pub fn find_metas(&self) -> Vec<FindMeta> {
        fn collect(nodes: &[(String, Node)], out: &mut Vec<FindMeta>) {
            for (_, n) in nodes {
                match n {
                    Node::Meta(m) => out.push(*m),
                    Node::Children(c) => collect(c, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        collect(&self.nodes, &mut out);
        out
    }

    /// Whether it reads the plan's index key (`returnKey`,
    /// `{$meta: "indexKey"}`).
    pub fn reads_index_key(&self) -> bool {
        self.return_key || self.find_metas().contains(&FindMeta::IndexKey)
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
                Node::Computed(_) | Node::Meta(_) => return true,
                Node::Children(c) => stack.push(c),
                _ => {}
            }
        }
    }
    false
}

/// `{_id: 1}`-style literal inclusion or exclusion values.
fn is_flag(v: &Bson) -> bool {
    matches!(v, Bson::Boolean(_)) || super::compare::is_number(v)
}

fn flag_true(v: &Bson) -> bool {
    match v {
        Bson::Boolean(b) => *b,
        v => super::compare::as_f64(v).unwrap_or(0.0) != 0.0,
    }
}

/// Where the first positional `$` component of `path` starts and ends.
fn first_positional(path: &str) -> Option<(usize, usize)> {
    if let Some(i) = path.find(".$.") {
        return Some((i, i + 3));
    }
    if path.ends_with(".$") {
        return Some((path.len() - 2, path.len()));
    }
    (path == "$").then_some((0, path.len()))
}

fn parse_element(
    ctx: &mut Ctx<'_>,
    nodes: &mut Vec<(String, Node)>,
    parent: Option<&str>,
    key: &str,
    value: &Bson,
) -> Result<()> {
    if key.is_empty() || key.starts_with('$') {
        return Err(CommandError::bad_value(format!(
            "projection field name '{key}' is not allowed"
        )));
    }
    let full = match parent {
        Some(p) => format!("{p}.{key}"),
        None => key.to_owned(),
    };
    limits::check_projection_path(&full)?;
    let positional = first_positional(key);
    let find_query = match ctx.policy {
        Policy::Find { query } => Some(query),
        Policy::Aggregate => None,
    };
    if positional.is_some() && find_query.is_none() {
        return Err(CommandError::new(
            ErrorCode::Location31324,
            "Cannot use positional projection in aggregation projection",
        ));
    }
    let top_level_id = key == "_id" && parent.is_none();
    match value {
        Bson::Document(sub) => {
            if positional.is_some() {
                return Err(CommandError::new(
                    ErrorCode::Location31271,
                    "positional projection cannot be used with an expression or sub object",
                ));
            }
            let op = sub.keys().next().filter(|k| k.starts_with('$'));
            match (op, sub.len()) {
                (Some(op), 1) => parse_operator(ctx, nodes, parent, &full, op, sub),
                _ => {
                    for (k, v) in sub {
                        parse_element(ctx, nodes, Some(&full), k, v)?;
                    }
                    if sub.is_empty() {
                        // `{a: {}}` is an error in MongoDB as an empty projection.
                        return Err(CommandError::new(
                            ErrorCode::Location51270,
                            "An empty sub-projection is not a valid value. Found empty object at path",
                        ));
                    }
                    Ok(())
                }
            }
        }
        v if is_flag(v) && flag_true(v) => {
            if let Some((begin, end)) = positional {
                if ctx.has_positional {
                    return Err(CommandError::new(
                        ErrorCode::Location31276,
                        "Cannot specify more than one positional projection per query.",
                    ));
                }
                if ctx.has_elem_match {
                    return Err(CommandError::new(
                        ErrorCode::Location31256,
                        "Cannot specify positional operator and $elemMatch.",
                    ));
                }
                let Some(Some(query)) = find_query else {
                    return Err(CommandError::new(
                        ErrorCode::Location51050,
                        "Projections with a positional operator require a matcher",
                    ));
                };
                let match_field = full.split('.').next().unwrap_or(&full);
                if !query_mentions(query, match_field) {
                    return Err(CommandError::new(
                        ErrorCode::Location31277,
                        format!("Positional projection '{key}' does not match the query document."),
                    ));
                }
                if key.ends_with(".$.") {
                    return Err(CommandError::new(
                        ErrorCode::Location31270,
                        "Path cannot end with '.$.'",
                    ));
                }
                let rest = &key[end..];
                if first_positional(rest).is_some() || rest == "$" {
                    return Err(CommandError::new(
                        ErrorCode::Location31287,
                        format!("Cannot use positional operator twice: {key}"),
                    ));
                }
                let path = match parent {
                    Some(p) => format!("{p}.{}", &key[..begin]),
                    None => key[..begin].to_owned(),
                };
                insert_node(nodes, &path, Node::Positional(Filter::parse(query)?))?;
                ctx.has_positional = true;
            } else {
                insert_node(nodes, &full, Node::Include)?;
                if top_level_id {
                    ctx.id_included = true;
                }
            }
            if !top_level_id {
                if ctx.inclusion == Some(false) {
                    return Err(CommandError::new(
                        ErrorCode::Location31253,
                        format!("Cannot do inclusion on field {key} in exclusion projection"),
                    ));
                }
                ctx.inclusion = Some(true);
            }
            Ok(())
        }
        v if is_flag(v) => {
            insert_node(nodes, &full, Node::Exclude)?;
            if top_level_id {
                ctx.id_excluded = true;
            } else {
                if ctx.inclusion == Some(true) {
                    return Err(CommandError::new(
                        ErrorCode::Location31254,
                        format!("Cannot do exclusion on field {key} in inclusion projection"),
                    ));
                }
                ctx.inclusion = Some(false);
            }
            Ok(())
        }
        other => {
            if positional.is_some() {
                return Err(CommandError::new(
                    ErrorCode::Location31308,
                    "positional projection cannot be used with a literal",
                ));
            }
            insert_node(nodes, &full, Node::Computed(Expr::parse(other)?))?;
            if ctx.inclusion == Some(false) {
                return Err(CommandError::new(
                    ErrorCode::Location31310,
                    format!("Cannot use an expression {key}: {other} in an exclusion projection"),
                ));
            }
            ctx.inclusion = Some(true);
            Ok(())
        }
    }
}

/// `{path: {$op: arg}}`: a find-only projection operator, `$meta`, or an
/// aggregation expression.
fn parse_operator(
    ctx: &mut Ctx<'_>,
    nodes: &mut Vec<(String, Node)>,
    parent: Option<&str>,
    full: &str,
    op: &str,
    sub: &Document,
) -> Result<()> {
    let find = matches!(ctx.policy, Policy::Find { .. });
    let arg = sub.get(op).unwrap_or(&Bson::Null);
    match op {
        "$slice" if find => {
            if let Some(node) = find_slice(arg)? {
                insert_node(nodes, full, node)?;
                ctx.has_find_slice = true;
                return Ok(());
            }
        }
        "$elemMatch" if find => {
            let Bson::Document(_) = arg else {
                return Err(CommandError::new(
                    ErrorCode::Location31274,
                    format!(
                        "elemMatch: Invalid argument, object required, but got {}",
                        super::expr::type_name(arg)
                    ),
                ));
            };
            if ctx.has_positional {
                return Err(CommandError::new(
                    ErrorCode::Location31255,
                    "Cannot specify positional operator and $elemMatch.",
                ));
            }
            if parent.is_some() || full.contains('.') {
                return Err(CommandError::new(
                    ErrorCode::Location31275,
                    "Cannot use $elemMatch projection on a nested field.",
                ));
            }
            let mut q = Document::new();
            q.insert(full, sub.clone());
            insert_node(nodes, full, Node::ElemMatch(Filter::parse(&q)?))?;
            ctx.has_elem_match = true;
            return Ok(());
        }
        "$elemMatch" => {
            return Err(CommandError::new(
                ErrorCode::InvalidPipelineOperator,
                "Cannot use $elemMatch in this context",
            ));
        }
        "$meta" if find && FindMeta::parse(arg).is_some() => {
            if let (Some(meta), Policy::Find { query }) = (FindMeta::parse(arg), ctx.policy) {
                meta.check_available(query)?;
                insert_node(nodes, full, Node::Meta(meta))?;
                ctx.has_meta = true;
            }
            return Ok(());
        }
        "$meta" => {
            // textScore is computed (through the command's `$text`, see
            // `query::text`); in find it may sit in an exclusion projection.
            let e = Expr::parse(&Bson::Document(sub.clone()))?;
            insert_node(nodes, full, Node::Computed(e))?;
            ctx.has_meta = true;
            return Ok(());
        }
        _ => {}
    }
    if ctx.inclusion == Some(false) {
        return Err(CommandError::new(
            ErrorCode::Location31252,
            "Cannot use expression other than $meta in exclusion projection",
        ));
    }
    insert_node(
        nodes,
        full,
        Node::Computed(Expr::parse(&Bson::Document(sub.clone()))?),
    )?;
    ctx.inclusion = Some(true);
    Ok(())
}

/// find's `$slice` argument: a number, or `[skip, limit]` with a positive
/// limit. `None` for any other form, which is then the `$slice`
/// expression (as mongod tries both). Counts are 32-bit as in mongod;
/// larger values saturate rather than wrap.
fn find_slice(arg: &Bson) -> Result<Option<Node>> {
    let int = |v: &Bson| -> Option<i32> {
        if !super::compare::is_number(v) {
            return None;
        }
        let f = super::compare::as_f64(v)?;
        Some(if f.is_nan() {
            0
        } else {
            f.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
    };
    if let Some(limit) = int(arg) {
        return Ok(Some(Node::Slice { skip: None, limit }));
    }
    let Bson::Array(items) = arg else {
        return Err(CommandError::new(
            ErrorCode::Location31273,
            "$slice only supports numbers and [skip, limit] arrays",
        ));
    };
    if items.len() != 2 {
        // Could be the expression form, e.g. {$slice: ["$a", 1, 2]}.
        return if items.iter().all(|i| int(i).is_some()) {
            Err(CommandError::new(
                ErrorCode::Location31272,
                "$slice array argument should be of form [skip, limit]",
            ))
        } else {
            Ok(None)
        };
    }
    let (Some(skip), Some(limit)) = (int(&items[0]), int(&items[1])) else {
        // ["$arr", 2] is the expression $slice.
        return Ok(None);
    };
    if limit <= 0 {
        return Err(CommandError::new(
            ErrorCode::Location31259,
            format!("$slice limit must be positive, got {limit}"),
        ));
    }
    Ok(Some(Node::Slice {
        skip: Some(skip),
        limit,
    }))
}

/// Whether the query has a condition on `field` or below it (through
/// `$and`/`$or`/`$nor`), as a positional projection needs.
fn query_mentions(query: &Document, field: &str) -> bool {
    let mut stack: Vec<&Document> = vec![query];
    while let Some(d) = stack.pop() {
        for (k, v) in d {
            if k.starts_with('$') {
                if let Bson::Array(items) = v {
                    stack.extend(items.iter().filter_map(Bson::as_document));
                }
            } else if k.split('.').next() == Some(field) {
                return true;
            }
        }
    }
    false
}

fn insert_node(nodes: &mut Vec<(String, Node)>, full: &str, node: Node) -> Result<()> {
    let mut level = nodes;
    let mut parts = full.split('.').peekable();
    while let Some(head) = parts.next() {
        let pos = level.iter().position(|(k, _)| k == head);
        if parts.peek().is_none() {
            if pos.is_some() {
                return Err(CommandError::new(
                    ErrorCode::Location31250,
                    format!("Path collision at {full}"),
                ));
            }
            level.push((head.to_owned(), node));
            return Ok(());
        }
        let i = match pos {
            Some(i) => i,
            None => {
                level.push((head.to_owned(), Node::Children(Vec::new())));
                level.len() - 1
            }
        };
        match &mut level[i].1 {
            Node::Children(children) => level = children,
            _ => {
                let tail = full.split_once('.').map(|(_, t)| t).unwrap_or("");
                return Err(CommandError::new(
                    ErrorCode::Location31249,
                    format!("Path collision at {full} remaining portion {tail}"),
                ));
            }
        }
    }
    Ok(())
}

fn include(doc: &Document, nodes: &[(String, Node)]) -> Document {
    let mut out = Document::new();
    for (k, v) in doc {
        match nodes.iter().find(|(n, _)| n == k).map(|(_, n)| n) {
            Some(Node::Include | Node::Slice { .. } | Node::ElemMatch(_) | Node::Positional(_)) => {
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
    metadata: Option<&FindMetadata>,
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
            Node::Meta(meta) => {
                if let Some(v) = metadata.and_then(|m| m.value(*meta, root)) {
                    path::set_field(out, &full, v, budget)?;
                }
            }
            Node::Children(children) => add_computed(out, children, root, &full, metadata, budget)?,
            _ => {}
        }
    }
    Ok(())
}

/// find's `$slice`, `$elemMatch` and positional `$` on the projected
/// document (they apply to what the inclusion or exclusion kept).
fn apply_find_operators(out: &mut Document, nodes: &[(String, Node)], prefix: &str) -> Result<()> {
    for (k, node) in nodes {
        match node {
            Node::Slice { skip, limit } => {
                if let Some(Bson::Array(items)) = out.get_mut(k) {
                    slice(items, *skip, *limit);
                }
            }
            Node::ElemMatch(filter) => {
                let found = match out.get(k) {
                    Some(Bson::Array(items)) => first_matching(items, k, filter)?,
                    _ => None,
                };
                match found {
                    Some(e) => {
                        out.insert(k.clone(), Bson::Array(vec![e]));
                    }
                    None => {
                        out.remove(k);
                    }
                }
            }
            Node::Positional(query) => {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                if let Some(Bson::Array(items)) = out.get_mut(k) {
                    let value = Bson::Array(std::mem::take(items));
                    let i = super::positional::matched_position(&full, Some(&value), Some(query))
                        .map_err(|_| {
                            CommandError::new(
                                ErrorCode::Location51246,
                                "positional operator '.$' couldn't find a matching element in the array",
                            )
                        })?;
                    let Bson::Array(mut all) = value else {
                        continue;
                    };
                    *items = vec![all.swap_remove(i)];
                }
            }
            Node::Children(children) if subtree_has_find_operators(children) => {
                let full = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match out.get_mut(k) {
                    Some(Bson::Document(d)) => apply_find_operators(d, children, &full)?,
                    Some(Bson::Array(items)) => {
                        for e in items {
                            if let Bson::Document(d) = e {
                                apply_find_operators(d, children, &full)?;
                            }
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn subtree_has_find_operators(nodes: &[(String, Node)]) -> bool {
    nodes.iter().any(|(_, n)| match n {
        Node::Slice { .. } | Node::ElemMatch(_) | Node::Positional(_) => true,
        Node::Children(c) => subtree_has_find_operators(c),
        _ => false,
    })
}

/// find's `$slice` over `items`: `limit` first (or, negative, last)
/// elements, or `limit` elements from `skip` (negative: from the end).
fn slice(items: &mut Vec<Bson>, skip: Option<i32>, limit: i32) {
    let len = items.len();
    let (start, count) = match skip {
        None if limit >= 0 => (0, limit.unsigned_abs() as usize),
        None => {
            let n = limit.unsigned_abs() as usize;
            (len.saturating_sub(n), n)
        }
        Some(s) if s >= 0 => (s.unsigned_abs() as usize, limit.unsigned_abs() as usize),
        Some(s) => (
            len.saturating_sub(s.unsigned_abs() as usize),
            limit.unsigned_abs() as usize,
        ),
    };
    let start = start.min(len);
    let end = start.saturating_add(count).min(len);
    items.truncate(end);
    items.drain(..start);
}

/// The first element of the array at top-level `field` that `filter`
/// (`{field: {$elemMatch: …}}`) matches alone.
fn first_matching(items: &[Bson], field: &str, filter: &Filter) -> Result<Option<Bson>> {
    for e in items {
        let mut one = Document::new();
        one.insert(field, Bson::Array(vec![e.clone()]));
        if filter.try_matches(&one)? {
            return Ok(Some(e.clone()));
        }
    }
    Ok(None)
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

#[cfg(test)]
mod find_operator_tests {
    use super::*;
    use bson::doc;

    fn find(spec: Document, query: Document, d: Document) -> Result<Document> {
        Projection::parse_find(&spec, &query)?.try_apply(&d)
    }

    fn code(spec: Document, query: Document) -> i32 {
        Projection::parse_find(&spec, &query)
            .map(|_| 0)
            .unwrap_or_else(|e| e.code.code())
    }

    /// MongoDB's manual: `$slice` (projection) examples.
    #[test]
    fn slice_forms() {
        let d = doc! {"_id": 1, "title": "t", "comments": [1, 2, 3, 4, 5, 6]};
        let cases: Vec<(Document, Document)> = vec![
            (
                doc! {"comments": {"$slice": 3}},
                doc! {"_id": 1, "title": "t", "comments": [1, 2, 3]},
            ),
            (
                doc! {"comments": {"$slice": -2}},
                doc! {"_id": 1, "title": "t", "comments": [5, 6]},
            ),
            (
                doc! {"comments": {"$slice": [1, 2]}},
                doc! {"_id": 1, "title": "t", "comments": [2, 3]},
            ),
            (
                doc! {"comments": {"$slice": [-5, 4]}},
                doc! {"_id": 1, "title": "t", "comments": [2, 3, 4, 5]},
            ),
            (
                doc! {"comments": {"$slice": [-20, 2]}},
                doc! {"_id": 1, "title": "t", "comments": [1, 2]},
            ),
            (
                doc! {"comments": {"$slice": [20, 2]}},
                doc! {"_id": 1, "title": "t", "comments": []},
            ),
            // {_id: 1} with a find $slice makes it an inclusion.
            (
                doc! {"_id": 1, "comments": {"$slice": 1}},
                doc! {"_id": 1, "comments": [1]},
            ),
            (
                doc! {"title": 1, "comments": {"$slice": 1}},
                doc! {"_id": 1, "title": "t", "comments": [1]},
            ),
            (
                doc! {"title": 0, "comments": {"$slice": -1}},
                doc! {"_id": 1, "comments": [6]},
            ),
            // Huge counts saturate: everything, never an overflow.
            (doc! {"comments": {"$slice": i64::MAX}}, d.clone()),
            (doc! {"comments": {"$slice": i64::MIN}}, d.clone()),
            (
                doc! {"comments": {"$slice": [i64::MIN, i64::MAX]}},
                d.clone(),
            ),
            (
                doc! {"comments": {"$slice": [i64::MAX, 1]}},
                doc! {"_id": 1, "title": "t", "comments": []},
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(
                find(spec.clone(), doc! {}, d.clone()).unwrap(),
                want,
                "{spec}"
            );
        }
        // Nested: a.b sliced in each element of a.
        let nested = doc! {"_id": 1, "a": [{"b": [1, 2, 3]}, {"b": [4, 5]}]};
        assert_eq!(
            find(doc! {"a.b": {"$slice": 1}}, doc! {}, nested).unwrap(),
            doc! {"_id": 1, "a": [{"b": [1]}, {"b": [4]}]}
        );
        for (spec, want) in [
            (doc! {"a": {"$slice": [1, 0]}}, 31259),
            (doc! {"a": {"$slice": [1, -2]}}, 31259),
            (doc! {"a": {"$slice": [1, 2, 3]}}, 31272),
            (doc! {"a": {"$slice": "x"}}, 31273),
        ] {
            assert_eq!(code(spec.clone(), doc! {}), want, "{spec}");
        }
    }

    /// MongoDB's manual: `$elemMatch` (projection), the schools example.
    #[test]
    fn elem_match() {
        let spec = doc! {"students": {"$elemMatch": {"school": 102}}};
        let schools = [
            (
                doc! {"_id": 1, "zipcode": "63109", "students": [
                {"name": "john", "school": 102, "age": 10},
                {"name": "jess", "school": 102, "age": 11},
                {"name": "jeff", "school": 108, "age": 15}]},
                doc! {"_id": 1, "students": [{"name": "john", "school": 102, "age": 10}]},
            ),
            (
                doc! {"_id": 3, "zipcode": "63109", "students": [
                {"name": "ajax", "school": 100, "age": 7}]},
                doc! {"_id": 3},
            ),
            (
                doc! {"_id": 5, "zipcode": "63109", "students": "not an array"},
                doc! {"_id": 5},
            ),
        ];
        for (d, want) in schools {
            assert_eq!(find(spec.clone(), doc! {}, d).unwrap(), want);
        }
        let d = doc! {"_id": 1, "zipcode": "1", "s": [{"school": 102, "age": 10}, {"school": 102, "age": 12}]};
        assert_eq!(
            find(
                doc! {"_id": 0, "zipcode": 1, "s": {"$elemMatch": {"school": 102, "age": {"$gt": 10}}}},
                doc! {},
                d
            )
            .unwrap(),
            doc! {"zipcode": "1", "s": [{"school": 102, "age": 12}]}
        );
        for (spec, want) in [
            (doc! {"a": {"$elemMatch": 1}}, 31274),
            (doc! {"a.b": {"$elemMatch": {"x": 1}}}, 31275),
            (doc! {"a": {"b": {"$elemMatch": {"x": 1}}}}, 31275),
            (doc! {"a": {"$elemMatch": {"$bogus": 1}}}, 2),
        ] {
            assert_ne!(code(spec.clone(), doc! {}), 0, "{spec}");
            if want != 2 {
                assert_eq!(code(spec.clone(), doc! {}), want, "{spec}");
            }
        }
        // Not in aggregation.
        let e = Projection::parse(&doc! {"a": {"$elemMatch": {"x": 1}}}).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidPipelineOperator);
    }

    /// MongoDB's manual: positional `$` (projection), the grades example.
    #[test]
    fn positional() {
        let q = doc! {"semester": 1, "grades": {"$gte": 85}};
        let spec = doc! {"grades.$": 1};
        for (d, want) in [
            (
                doc! {"_id": 1, "semester": 1, "grades": [70, 87, 90]},
                doc! {"_id": 1, "grades": [87]},
            ),
            (
                doc! {"_id": 2, "semester": 1, "grades": [90, 88, 92]},
                doc! {"_id": 2, "grades": [90]},
            ),
            (
                doc! {"_id": 3, "semester": 1, "grades": [85, 100, 90]},
                doc! {"_id": 3, "grades": [85]},
            ),
        ] {
            assert_eq!(find(spec.clone(), q.clone(), d).unwrap(), want);
        }
        let d = doc! {"_id": 7, "grades": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 90}]};
        assert_eq!(
            find(doc! {"grades.$": 1}, doc! {"grades.mean": {"$gt": 80}}, d).unwrap(),
            doc! {"_id": 7, "grades": [{"grade": 85, "mean": 90}]}
        );
        let q = doc! {"a": 1};
        for (spec, query, want) in [
            (doc! {"b.$": 1}, q.clone(), 31277),
            (doc! {"a.$": 1, "b.$": 1}, doc! {"a": 1, "b": 1}, 31276),
            (doc! {"a.$.$": 1}, q.clone(), 31287),
            (doc! {"a.$": {"$slice": 1}}, q.clone(), 31271),
            (doc! {"a.$": "x"}, q.clone(), 31308),
            (
                doc! {"a.$": 1, "b": {"$elemMatch": {"x": 1}}},
                q.clone(),
                31255,
            ),
            (
                doc! {"b": {"$elemMatch": {"x": 1}}, "a.$": 1},
                q.clone(),
                31256,
            ),
        ] {
            assert_eq!(code(spec.clone(), query), want, "{spec}");
        }
        let e = Projection::parse(&doc! {"a.$": 1}).unwrap_err();
        assert_eq!(e.code.code(), 31324);
        // A document whose array has no element the query matches alone.
        let e = find(
            doc! {"a.$": 1},
            doc! {"a": {"$size": 2}},
            doc! {"a": [1, 2]},
        )
        .unwrap_err();
        assert_eq!(e.code.code(), 51246);
    }

    /// Inclusion/exclusion mixing and path collisions, as mongod 8.0 codes them.
    #[test]
    fn mixing_and_collisions() {
        for (spec, want) in [
            (doc! {"a": 1, "b": 0}, 31254),
            (doc! {"a": 0, "b": 1}, 31253),
            (doc! {"a": 0, "b": "$x"}, 31310),
            (doc! {"a": 0, "b": {"$add": [1, 2]}}, 31252),
            (doc! {"a": 1, "a.b": 1}, 31249),
            (doc! {"a.b": 1, "a": 1}, 31250),
            (doc! {"a": {"b": 1}, "a.b": 1}, 31250),
            (doc! {"a": {}}, 51270),
            // Parses; its value needs the command's `$text` (query::text).
            (doc! {"a": {"$meta": "textScore"}}, 0),
            (doc! {"a": 0, "s": {"$meta": "textScore"}}, 0),
            // Read through the plan (`query::find_meta`); the geo ones
            // need a `$near` query (40218).
            (doc! {"a": {"$meta": "indexKey"}}, 0),
            (doc! {"a": 0, "k": {"$meta": "indexKey"}}, 0),
            (doc! {"a": {"$meta": "geoNearDistance"}}, 40218),
            (doc! {"a": {"$meta": "geoNearPoint"}}, 40218),
            (doc! {"a": {"$meta": "recordId"}}, 115),
            (doc! {"a": {"$meta": "nope"}}, 17308),
            (doc! {"a": {"$meta": 1}}, 17307),
            (doc! {"_id": 1, "a": 0}, 0),
            (doc! {"_id": 0, "a": 1}, 0),
            (doc! {"a": 1, "b": {"$slice": 1}}, 0),
            (doc! {"a": 0, "b": {"$slice": 1}}, 0),
        ] {
            assert_eq!(code(spec.clone(), doc! {}), want, "{spec}");
        }
        // Sub-objects nested past 100 path components: refused, not recursed.
        let mut deep = doc! {"x": 1};
        for _ in 0..150 {
            deep = doc! {"a": deep};
        }
        assert_eq!(code(deep, doc! {}), 5729100);
        let d = doc! {"_id": 1, "a": 1, "b": {"c": 1, "d": 2}};
        assert_eq!(
            find(doc! {"_id": 1, "a": 0}, doc! {}, d.clone()).unwrap(),
            doc! {"_id": 1, "b": {"c": 1, "d": 2}}
        );
        assert_eq!(
            find(doc! {"b": {"c": 1}}, doc! {}, d.clone()).unwrap(),
            doc! {"_id": 1, "b": {"c": 1}}
        );
        assert_eq!(
            find(doc! {"x": {"$add": ["$a", 1]}, "_id": 0}, doc! {}, d).unwrap(),
            doc! {"x": 2}
        );
    }
}
