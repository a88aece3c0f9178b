//! Databases, collections and indexes: listDatabases, listCollections,
//! create, drop, dropDatabase, renameCollection, createIndexes, listIndexes,
//! dropIndexes, collStats, dbStats.

use argon_wal::{DocOp, Namespace};
use bson::{Bson, Document, doc};

use super::options::INDEX_SPEC;
use super::{Ctx, collection_name, commit, cursor_reply, opt_bool, opt_doc};
use crate::error::{CommandError, ErrorCode, Result};
use crate::query::Filter;
use crate::service::operation_time;

fn id_index() -> Document {
    doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"}
}

pub async fn list_databases(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("listDatabases")?;
    let target = ctx.svc.target(&ctx.svc.default_branch_db())?;
    let state = ctx.read_state(&target).await?;
    let filter = opt_doc(ctx.cmd, "filter")?.map(Filter::parse).transpose()?;
    let name_only = opt_bool(ctx.cmd, "nameOnly", false)?;
    let mut dbs = Vec::new();
    for db in state.databases()? {
        let readable = crate::auth::roles::Privilege::Read {
            branch: target.branch.clone(),
            db: Some(db.clone()),
        };
        if !crate::auth::authorize::may(ctx.svc, ctx.conn, &readable) {
            continue;
        }
        let docs = documents_in(&state, &db, &state.collections(&db)?)?;
        let entry =
            doc! {"name": db.clone(), "sizeOnDisk": (docs as i64) * 1024, "empty": docs == 0};
        if filter.as_ref().is_some_and(|f| !f.matches(&entry)) {
            continue;
        }
        dbs.push(if name_only {
            doc! {"name": db}
        } else {
            entry
        });
    }
    let total: i64 = dbs
        .iter()
        .filter_map(|d| d.get_i64("sizeOnDisk").ok())
        .sum();
    let mut out = doc! {"databases": dbs};
    if !name_only {
        out.insert("totalSize", total);
        out.insert("totalSizeMb", total / (1024 * 1024));
    }
    Ok(out)
}

pub async fn list_collections(ctx: &Ctx<'_>) -> Result<Document> {
    let target = ctx.target()?;
    let state = ctx.read_state(&target).await?;
    let filter = opt_doc(ctx.cmd, "filter")?.map(Filter::parse).transpose()?;
    let name_only = opt_bool(ctx.cmd, "nameOnly", false)?;
    let mut out = Vec::new();
    for name in state.collections(&target.db)? {
        let ns = Namespace::new(target.db.as_str(), name.as_str());
        let Some(coll) = state.collection(&ns)? else {
            continue;
        };
        let is_view = super::view::is_view(Some(&coll));
        let kind = if is_view { "view" } else { "collection" };
        let mut full = doc! {
            "name": name.clone(),
            "type": kind,
            "options": coll.options().clone(),
            "info": {"readOnly": is_view || target.at.is_some()},
        };
        if !is_view {
            full.insert("idIndex", id_index());
        }
        if filter.as_ref().is_some_and(|f| !f.matches(&full)) {
            continue;
        }
        out.push(if name_only {
            doc! {"name": name, "type": kind}
        } else {
            full
        });
    }
    let batch_size = super::read::batch_size(ctx.cmd.get_document("cursor").ok())?;
    let ns = format!("{}.$cmd.listCollections", target.raw);
    let (batch, id) = ctx
        .svc
        .cursors
        .open(ctx.cursor_info(&ns), out, batch_size, false);
    Ok(cursor_reply(&ns, batch, id, true))
}

pub async fn create(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "create")?;
    let target = ctx.target()?;
    if ctx.cmd.contains_key("viewOn") {
        return create_view(ctx, target, coll).await;
    }
    // Every option is either kept and honoured or refused by name: a
    // `capped` or `validator` stored and not enforced would be a silent lie.
    super::options::CREATE.check(ctx.cmd, Some("create"))?;
    // The collection's default collation, stored resolved (every option
    // filled in, as listCollections shows it); the simple one is no default.
    let collation = super::options::collation(ctx.cmd)?;
    let mut options = Document::new();
    if let Some(spec) = collation.as_ref().and_then(|c| c.spec()) {
        options.insert("collation", spec.clone());
    }
    crate::validation::apply_options(ctx.cmd, "create", &mut options)?;
    crate::capped::apply_options(ctx.cmd, &mut options)?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let (_, info) = commit(ctx, &target, move |state| {
        if state.collection(&ns)?.is_some() {
            return Err(CommandError::new(
                ErrorCode::NamespaceExists,
                format!("Collection {ns} already exists."),
            ));
        }
        Ok((
            vec![DocOp::CreateCollection {
                ns: ns.clone(),
                options: options.clone(),
            }],
            (),
        ))
    })
    .await?;
    Ok(doc! {"operationTime": operation_time(info.time)})
}

/// `create` with `viewOn`: the view is a catalog entry like a collection
/// (see `view`), so it is created in one commit and seen by branches and
/// time travel.
async fn create_view(
    ctx: &Ctx<'_>,
    target: crate::target::Target,
    name: String,
) -> Result<Document> {
    let options = super::view::options(ctx.cmd)?;
    let ns = Namespace::new(target.db.as_str(), name.as_str());
    let db = target.db.clone();
    let (_, info) = commit(ctx, &target, move |state| {
        if state.collection(&ns)?.is_some() {
            return Err(CommandError::new(
                ErrorCode::NamespaceExists,
                format!("Namespace {ns} already exists."),
            ));
        }
        super::view::check_cycle(
            state,
            &db,
            &name,
            options.get_str("viewOn").unwrap_or_default(),
        )?;
        Ok((
            vec![DocOp::CreateCollection {
                ns: ns.clone(),
                options: options.clone(),
            }],
            (),
        ))
    })
    .await?;
    Ok(doc! {"operationTime": operation_time(info.time)})
}

pub async fn drop(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "drop")?;
    let target = ctx.target()?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let shown = format!("{}.{}", target.raw, coll);
    let (n_indexes, info) = commit(ctx, &target, move |state| {
        Ok(match state.collection(&ns)? {
            None => (Vec::new(), None),
            Some(c) => (
                vec![DocOp::DropCollection { ns: ns.clone() }],
                Some(c.indexes().len() as i32),
            ),
        })
    })
    .await?;
    let mut out = doc! {"ns": shown};
    if let Some(n) = n_indexes {
        out.insert("nIndexesWas", n);
    }
    out.insert("operationTime", operation_time(info.time));
    Ok(out)
}

pub async fn drop_database(ctx: &Ctx<'_>) -> Result<Document> {
    let target = ctx.target()?;
    let db = target.db.clone();
    let (_, info) = commit(ctx, &target, move |state| {
        if state.collections(&db)?.is_empty() {
            return Ok((Vec::new(), ()));
        }
        Ok((vec![DocOp::DropDatabase { db: db.clone() }], ()))
    })
    .await?;
    Ok(doc! {"dropped": target.raw.clone(), "operationTime": operation_time(info.time)})
}

fn split_ns<'a>(field: &str, v: Option<&'a Bson>) -> Result<(&'a str, &'a str)> {
    let Some(Bson::String(s)) = v else {
        return Err(CommandError::type_mismatch(format!(
            "'{field}' must be a namespace string \"db.collection\""
        )));
    };
    s.split_once('.')
        .filter(|(d, c)| !d.is_empty() && !c.is_empty())
        .ok_or_else(|| {
            CommandError::new(
                ErrorCode::InvalidNamespace,
                format!("Invalid namespace specified '{s}'"),
            )
        })
}

pub async fn rename_collection(ctx: &Ctx<'_>) -> Result<Document> {
    ctx.require_admin("renameCollection")?;
    let (from_db, from_coll) = split_ns("renameCollection", ctx.cmd.get("renameCollection"))?;
    let (to_db, to_coll) = split_ns("to", ctx.cmd.get("to"))?;
    let drop_target = opt_bool(ctx.cmd, "dropTarget", false)?;
    let from_t = ctx.svc.target(from_db)?;
    let to_t = ctx.svc.target(to_db)?;
    if from_t.branch != to_t.branch || to_t.at.is_some() {
        return Err(CommandError::new(
            ErrorCode::IllegalOperation,
            format!(
                "renameCollection must stay on one branch: {from_db:?} is on {:?}, {to_db:?} on {:?}",
                from_t.branch, to_t.branch
            ),
        ));
    }
    let from = Namespace::new(from_t.db.as_str(), from_coll);
    let to = Namespace::new(to_t.db.as_str(), to_coll);
    let (_, info) = commit(ctx, &from_t, move |state| {
        if state.collection(&from)?.is_none() {
            return Err(CommandError::new(
                ErrorCode::NamespaceNotFound,
                format!("Source collection {from} does not exist"),
            ));
        }
        if from == to {
            return Err(CommandError::new(
                ErrorCode::IllegalOperation,
                "Can't rename a collection to itself",
            ));
        }
        let mut ops = Vec::new();
        if state.collection(&to)?.is_some() {
            if !drop_target {
                return Err(CommandError::new(
                    ErrorCode::NamespaceExists,
                    format!("target namespace exists: {to}"),
                ));
            }
            ops.push(DocOp::DropCollection { ns: to.clone() });
        }
        ops.push(DocOp::RenameCollection {
            from: from.clone(),
            to: to.clone(),
        });
        Ok((ops, ()))
    })
    .await?;
    Ok(doc! {"operationTime": operation_time(info.time)})
}

/// The default name of an index: `a_1_b_-1`.
fn index_name(key: &Document) -> String {
    key.iter()
        .map(|(k, v)| {
            let v = match v {
                Bson::String(s) => s.clone(),
                v => crate::query::compare::as_i64(v)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| v.to_string()),
            };
            format!("{k}_{v}")
        })
        .collect::<Vec<_>>()
        .join("_")
}

fn validate_index(spec: &Bson) -> Result<Document> {
    let Bson::Document(spec) = spec else {
        return Err(CommandError::type_mismatch(
            "each index specification must be an object",
        ));
    };
    let collation = super::options::collation(spec)?;
    let key = match spec.get("key") {
        Some(Bson::Document(k)) if !k.is_empty() => k.clone(),
        Some(Bson::Document(_)) => {
            return Err(CommandError::new(
                ErrorCode::CannotCreateIndex,
                "Index keys cannot be empty.",
            ));
        }
        _ => {
            return Err(CommandError::failed_to_parse(
                "The 'key' field is a required property of an index specification",
            ));
        }
    };
    if crate::query::text::index::is_text_key(&key) {
        return validate_text_index(spec, &key, collation.as_ref());
    }
    for (field, v) in &key {
        if field == "$**" || field.ends_with(".$**") {
            return Err(CommandError::new(
                ErrorCode::CommandNotSupported,
                format!("wildcard indexes ({field}) are not supported by Argon"),
            ));
        }
        if let Bson::String(kind) = v
            && kind == "geoHaystack"
        {
            // Removed in MongoDB 5.0; its answer since.
            return Err(CommandError::new(
                ErrorCode::CannotCreateIndex,
                format!("Unknown index plugin '{kind}'"),
            ));
        }
        let valid = matches!(v, Bson::String(s) if s == "hashed" || s == "2d" || s == "2dsphere")
            || crate::query::compare::as_f64(v).is_some_and(|n| n != 0.0);
        if field.is_empty() || !valid {
            return Err(CommandError::new(
                ErrorCode::CannotCreateIndex,
                format!(
                    "Values in the index key pattern can only be positive/negative numbers or known index types; found {field}: {v}"
                ),
            ));
        }
    }
    let name = match spec.get("name") {
        Some(Bson::String(n)) if !n.is_empty() => n.clone(),
        None => index_name(&key),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "The 'name' field of an index specification must be a non-empty string",
            ));
        }
    };
    if let Some(seconds) = spec.get("expireAfterSeconds") {
        crate::ttl::check_index(&key, seconds)?;
    }
    let geo = crate::query::geo::index::is_geo_key(&key);
    let geo_options = if geo {
        crate::query::geo::index::check_spec(spec, &key)?
    } else {
        Document::new()
    };
    let mut out = doc! {"v": 2, "key": key, "name": name};
    for (k, v) in spec {
        match k.as_str() {
            "key" | "name" | "v" | "ns" | "collation" => {}
            option if geo && crate::query::geo::index::OPTION_FIELDS.contains(&option) => {}
            "unique" | "partialFilterExpression" | "expireAfterSeconds" if geo => {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!("index option '{k}' on a geo index is not supported by Argon"),
                ));
            }
            known if INDEX_SPEC.known.contains(&known) => {
                out.insert(k.clone(), v.clone());
            }
            unsupported if INDEX_SPEC.unsupported.contains(&unsupported) => {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!("index option '{k}' is not supported by Argon"),
                ));
            }
            _ => {
                return Err(CommandError::new(
                    ErrorCode::InvalidIndexSpecificationOption,
                    format!(
                        "The field '{k}' is not valid for an index specification. Specification: {spec}"
                    ),
                ));
            }
        }
    }
    out.extend(geo_options);
    // Stored resolved; an explicit simple collation is stored as none, and
    // a spec that names none takes the collection's default when created.
    match &collation {
        Some(c) => {
            if let Some(resolved) = c.spec() {
                out.insert("collation", resolved.clone());
            }
        }
        None => {
            out.insert(INHERITS_COLLATION, true);
        }
    }
    Ok(out)
}

/// A text index spec (`query::text::index::fix_spec` checks and normalizes
/// it): stored as MongoDB shows it, `{v, key: {..., _fts: "text", _ftsx: 1,
/// ...}, name, weights, default_language, language_override,
/// textIndexVersion}`. A text index takes no collation (MongoDB's 67) and
/// does not inherit the collection's; `unique`, `partialFilterExpression`
/// and TTL on it are refused by name.
fn validate_text_index(
    spec: &Document,
    key: &Document,
    collation: Option<&crate::query::collation::Collation>,
) -> Result<Document> {
    if let Some(c) = collation
        && let Some(resolved) = c.spec()
    {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            format!("Index type 'text' does not support collation: {resolved}"),
        ));
    }
    let (fixed_key, options) = crate::query::text::index::fix_spec(spec)?;
    let name = match spec.get("name") {
        Some(Bson::String(n)) if !n.is_empty() => n.clone(),
        None => index_name(key),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "The 'name' field of an index specification must be a non-empty string",
            ));
        }
    };
    let mut out = doc! {"v": 2, "key": fixed_key, "name": name};
    for (k, v) in spec {
        match k.as_str() {
            "key" | "name" | "v" | "ns" | "collation" => {}
            text if crate::query::text::index::OPTION_FIELDS.contains(&text) => {}
            "background" | "hidden" | "sparse" => {
                out.insert(k.clone(), v.clone());
            }
            "unique" | "partialFilterExpression" | "expireAfterSeconds" => {
                return Err(CommandError::new(
                    ErrorCode::CommandNotSupported,
                    format!("index option '{k}' on a text index is not supported by Argon"),
                ));
            }
            _ => {
                return Err(CommandError::new(
                    ErrorCode::InvalidIndexSpecificationOption,
                    format!(
                        "The field '{k}' is not valid for an index specification. Specification: {spec}"
                    ),
                ));
            }
        }
    }
    out.extend(options);
    Ok(out)
}

/// MongoDB's rules for a new text index: one per collection (67), and
/// every document already there indexable (its language fields: 17261,
/// 17262, as MongoDB's index build fails).
fn check_text_index(
    coll: Option<&argon_wal::CollectionState>,
    existing: &[Document],
    text: &crate::query::text::TextIndex,
) -> Result<()> {
    if let Some(other) = crate::query::text::TextIndex::of_collection(existing) {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            format!(
                "only one text index per collection allowed, found existing text index \"{}\"",
                other.name
            ),
        ));
    }
    if let Some(c) = coll {
        for raw in c.iter() {
            text.check_document(&raw?.to_document())?;
        }
    }
    Ok(())
}

/// Marks an index spec that named no collation until its collection's
/// default is known (inside the commit); never stored.
const INHERITS_COLLATION: &str = "$inheritsCollation";

pub async fn create_indexes(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "createIndexes")?;
    let target = ctx.target()?;
    let specs = match ctx.cmd.get("indexes") {
        Some(Bson::Array(a)) if !a.is_empty() => {
            a.iter().map(validate_index).collect::<Result<Vec<_>>>()?
        }
        _ => {
            return Err(CommandError::failed_to_parse(
                "createIndexes needs a non-empty 'indexes' array",
            ));
        }
    };
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let ((before, after, created_coll), info) = commit(ctx, &target, move |state| {
        super::view::refuse_view(state, &ns)?;
        let existing: Vec<Document> = state.collection(&ns)?.map(|c| c.indexes().to_vec()).unwrap_or_else(|| vec![id_index()]);
        let mut ops = Vec::new();
        let created_coll = state.collection(&ns)?.is_none();
        if created_coll {
            ops.push(DocOp::CreateCollection { ns: ns.clone(), options: Document::new() });
        }
        let mut after = existing.len();
        let current = state.collection(&ns)?;
        let default = crate::query::collation::default_of(current.as_ref().map(|c| c.options()))?;
        for spec in &specs {
            let mut spec = spec.clone();
            if spec.remove(INHERITS_COLLATION).is_some()
                && let Some(d) = default.spec()
            {
                spec.insert("collation", d.clone());
            }
            let spec = &spec;
            let name = spec.get_str("name").unwrap_or_default();
            let key = spec.get_document("key").ok();
            if let Some(same) = existing.iter().find(|i| i.get_str("name").ok() == Some(name)) {
                if same.get_document("key").ok() == key
                    && same.get_bool("unique").unwrap_or(false) == spec.get_bool("unique").unwrap_or(false)
                    && same.get("collation") == spec.get("collation")
                    && same.get("expireAfterSeconds") == spec.get("expireAfterSeconds")
                    && crate::query::text::index::OPTION_FIELDS.iter().all(|f| same.get(f) == spec.get(f))
                    && crate::query::geo::index::OPTION_FIELDS.iter().all(|f| same.get(f) == spec.get(f))
                {
                    continue;
                }
                // As mongod: the same key under the same name with other
                // options is 85 (apps that change a TTL match on it); another
                // key under the same name is 86.
                return Err(if same.get_document("key").ok() == key {
                    CommandError::new(
                        ErrorCode::IndexOptionsConflict,
                        format!("An equivalent index already exists with the same name but different options. Requested index: {spec}, existing index: {same}"),
                    )
                } else {
                    CommandError::new(
                        ErrorCode::IndexKeySpecsConflict,
                        format!("An existing index has the same name as the requested index. When index names are not specified, they are auto generated and can cause conflicts. Please refer to our documentation. Requested index: {spec}, existing index: {same}"),
                    )
                });
            }
            // One key pattern may be indexed once per collation.
            if let Some(other) = existing
                .iter()
                .find(|i| i.get_document("key").ok() == key && i.get("collation") == spec.get("collation"))
            {
                return Err(CommandError::new(
                    ErrorCode::IndexOptionsConflict,
                    format!("Index already exists with a different name: {}", other.get_str("name").unwrap_or_default()),
                ));
            }
            if let Some(text) = crate::query::text::TextIndex::from_spec(spec) {
                check_text_index(state.collection(&ns)?.as_ref(), &existing, &text)?;
            }
            if let Some(c) = state.collection(&ns)?
                && key.is_some_and(crate::query::geo::index::is_geo_key)
            {
                // As MongoDB's index build: every document there must be
                // a location the new geo index can take.
                for raw in c.iter() {
                    crate::query::geo::index::check_document(std::slice::from_ref(spec), &raw?.to_document())?;
                }
            }
            if spec.contains_key("expireAfterSeconds") && state.collection(&ns)?.is_some_and(|c| c.is_capped()) {
                return Err(CommandError::new(ErrorCode::CannotCreateIndex, "Cannot create TTL index on a capped collection"));
            }
            if let Some(c) = state.collection(&ns)? {
                argon_wal::unique::check_new_index(&c, &ns, spec, &crate::query::PartialIndexFilter)
                    .map_err(crate::wal_error::from_wal)?;
            }
            ops.push(DocOp::CreateIndex { ns: ns.clone(), spec: spec.clone() });
            after += 1;
        }
        Ok((ops, (existing.len() as i32, after as i32, created_coll)))
    })
    .await?;
    let mut out = doc! {
        "numIndexesBefore": before,
        "numIndexesAfter": after,
        "createdCollectionAutomatically": created_coll,
    };
    if before == after {
        out.insert("note", "all indexes already exist");
    }
    out.insert("operationTime", operation_time(info.time));
    Ok(out)
}

pub async fn list_indexes(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "listIndexes")?;
    let target = ctx.target()?;
    let state = ctx.read_state(&target).await?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let Some(c) = state.collection(&ns)? else {
        return Err(CommandError::new(
            ErrorCode::NamespaceNotFound,
            format!("ns does not exist: {}.{coll}", target.raw),
        ));
    };
    super::view::refuse_view(&state, &ns)?;
    let indexes: Vec<Document> = c
        .indexes()
        .iter()
        .map(|i| {
            let mut i = i.clone();
            if !i.contains_key("v") {
                let mut with = doc! {"v": 2};
                with.extend(i);
                i = with;
            }
            i
        })
        .collect();
    let batch_size = super::read::batch_size(ctx.cmd.get_document("cursor").ok())?;
    let shown = format!("{}.{coll}", target.raw);
    let (batch, id) = ctx
        .svc
        .cursors
        .open(ctx.cursor_info(&shown), indexes, batch_size, false);
    Ok(cursor_reply(&shown, batch, id, true))
}

pub async fn drop_indexes(ctx: &Ctx<'_>) -> Result<Document> {
    let name = ctx.cmd.keys().next().cloned().unwrap_or_default();
    let coll = collection_name(ctx.cmd, &name)?;
    let target = ctx.target()?;
    let which = ctx
        .cmd
        .get("index")
        .cloned()
        .ok_or_else(|| CommandError::failed_to_parse("dropIndexes needs an 'index' field"))?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let (was, info) = commit(ctx, &target, move |state| {
        let Some(c) = state.collection(&ns)? else {
            return Err(CommandError::new(
                ErrorCode::NamespaceNotFound,
                format!("ns not found {ns}"),
            ));
        };
        super::view::refuse_view(state, &ns)?;
        let indexes = c.indexes();
        let find_by = |pred: &dyn Fn(&Document) -> bool, what: String| -> Result<String> {
            let i = indexes.iter().find(|i| pred(i)).ok_or_else(|| {
                CommandError::new(
                    ErrorCode::IndexNotFound,
                    format!("index not found with {what}"),
                )
            })?;
            Ok(i.get_str("name").unwrap_or_default().to_owned())
        };
        let names: Vec<String> = match &which {
            Bson::String(s) if s == "*" => indexes
                .iter()
                .filter_map(|i| i.get_str("name").ok())
                .filter(|n| *n != "_id_")
                .map(str::to_owned)
                .collect(),
            Bson::String(s) => vec![find_by(
                &|i| i.get_str("name").ok() == Some(s.as_str()),
                format!("name '{s}'"),
            )?],
            Bson::Array(a) => a
                .iter()
                .map(|n| match n {
                    Bson::String(s) => find_by(
                        &|i| i.get_str("name").ok() == Some(s.as_str()),
                        format!("name '{s}'"),
                    ),
                    _ => Err(CommandError::type_mismatch("index names must be strings")),
                })
                .collect::<Result<_>>()?,
            Bson::Document(k) => vec![find_by(
                &|i| i.get_document("key").ok() == Some(k),
                format!("key pattern {k}"),
            )?],
            _ => {
                return Err(CommandError::type_mismatch(
                    "'index' must be a name, an array of names, '*' or a key pattern",
                ));
            }
        };
        if names.iter().any(|n| n == "_id_") {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "cannot drop _id index",
            ));
        }
        let ops = names
            .into_iter()
            .map(|name| DocOp::DropIndex {
                ns: ns.clone(),
                name,
            })
            .collect();
        Ok((ops, indexes.len() as i32))
    })
    .await?;
    Ok(doc! {"nIndexesWas": was, "operationTime": operation_time(info.time)})
}

pub async fn coll_stats(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "collStats")?;
    let target = ctx.target()?;
    let state = ctx.read_state(&target).await?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let c = state.collection(&ns)?;
    let count = match &c {
        Some(c) => c.len()? as i64,
        None => 0,
    };
    let nindexes = c.as_ref().map(|c| c.indexes().len()).unwrap_or(0) as i32;
    let mut out = doc! {"ns": format!("{}.{coll}", target.raw), "count": count, "size": count * 1024, "storageSize": count * 1024, "nindexes": nindexes, "totalIndexSize": 0, "indexSizes": {}};
    // A capped collection's own figures, as MongoDB's collStats has them.
    match c.filter(|c| c.is_capped()) {
        Some(c) => {
            let bytes = i64::try_from(c.capped_bytes().unwrap_or(0)).unwrap_or(i64::MAX);
            out.insert("size", bytes);
            out.insert("capped", true);
            out.insert("maxSize", c.options().get_i64("size").unwrap_or(0));
            if let Ok(max) = c.options().get_i64("max") {
                out.insert("max", max);
            }
        }
        None => {
            out.insert("capped", false);
        }
    }
    Ok(out)
}

/// The number of documents in collections `colls` of `db`.
fn documents_in(state: &argon_wal::BranchState, db: &str, colls: &[String]) -> Result<u64> {
    let mut n = 0;
    for c in colls {
        if let Some(c) = state.collection(&Namespace::new(db, c.as_str()))? {
            n += c.len()?;
        }
    }
    Ok(n)
}

pub async fn db_stats(ctx: &Ctx<'_>) -> Result<Document> {
    let target = ctx.target()?;
    let state = ctx.read_state(&target).await?;
    let colls = state.collections(&target.db)?;
    let objects = documents_in(&state, &target.db, &colls)?;
    Ok(
        doc! {"db": target.raw.clone(), "collections": colls.len() as i32, "views": 0, "objects": objects as i64, "dataSize": objects as i64 * 1024, "storageSize": objects as i64 * 1024, "indexes": colls.len() as i32, "indexSize": 0},
    )
}
