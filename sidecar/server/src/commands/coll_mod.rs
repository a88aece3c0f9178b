//! `collMod`: changes a collection's validation options (`validator`,
//! `validationLevel`, `validationAction`, checked by `crate::validation`),
//! a capped collection's `cappedSize`/`cappedMax` (`crate::capped`)
//! and an index's `hidden` flag and TTL `expireAfterSeconds` (`crate::ttl`),
//! in one commit; so a branch forked before
//! it keeps the old rules and time travel shows them in `listCollections`.
//! Every other option MongoDB has is refused by name (`options::COLL_MOD`).

use argon_wal::{DocOp, Namespace};
use bson::{Bson, Document};

use super::options::{COLL_MOD, COLL_MOD_INDEX};
use super::{Ctx, collection_name, commit};
use crate::error::{CommandError, ErrorCode, Result};
use crate::service::operation_time;

/// Which index `collMod.index` names, and what it changes.
struct IndexChange {
    by_name: Option<String>,
    by_key: Option<Document>,
    hidden: Option<bool>,
    expire: Option<Bson>,
}

fn index_change(v: &Bson) -> Result<IndexChange> {
    let Bson::Document(d) = v else {
        return Err(CommandError::type_mismatch(
            "BSON field 'collMod.index' is the wrong type, expected type 'object'",
        ));
    };
    COLL_MOD_INDEX.check(d, None)?;
    let by_name = match d.get("name") {
        None => None,
        Some(Bson::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "BSON field 'collMod.index.name' is the wrong type, expected type 'string'",
            ));
        }
    };
    let by_key = match d.get("keyPattern") {
        None => None,
        Some(Bson::Document(k)) => Some(k.clone()),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "BSON field 'collMod.index.keyPattern' is the wrong type, expected type 'object'",
            ));
        }
    };
    if by_name.is_some() == by_key.is_some() {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            "Must specify either index name or key pattern.",
        ));
    }
    let hidden = match d.get("hidden") {
        None => None,
        Some(Bson::Boolean(b)) => Some(*b),
        Some(_) => {
            return Err(CommandError::type_mismatch(
                "BSON field 'collMod.index.hidden' is the wrong type, expected type 'bool'",
            ));
        }
    };
    let expire = d.get("expireAfterSeconds").cloned();
    if let Some(e) = &expire {
        crate::ttl::seconds(e)?;
    }
    if hidden.is_none() && expire.is_none() {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            "no expireAfterSeconds or hidden field",
        ));
    }
    Ok(IndexChange {
        by_name,
        by_key,
        hidden,
        expire,
    })
}

pub async fn coll_mod(ctx: &Ctx<'_>) -> Result<Document> {
    let coll = collection_name(ctx.cmd, "collMod")?;
    COLL_MOD.check(ctx.cmd, Some("collMod"))?;
    // Checked before the commit, so a bad option fails on any state.
    crate::validation::apply_options(ctx.cmd, "collMod", &mut Document::new())?;
    let limits = crate::capped::coll_mod_limits(ctx.cmd)?;
    let index = ctx.cmd.get("index").map(index_change).transpose()?;
    let target = ctx.target()?;
    let ns = Namespace::new(target.db.as_str(), coll.as_str());
    let cmd = ctx.cmd.clone();
    let (reply, info) = commit(ctx, &target, move |state| {
        let Some(c) = state.collection(&ns)? else {
            return Err(CommandError::new(
                ErrorCode::NamespaceNotFound,
                format!("ns does not exist: {ns}"),
            ));
        };
        super::view::refuse_view(state, &ns)?;
        let mut ops = Vec::new();
        let mut options = c.options().clone();
        let validation = crate::validation::apply_options(&cmd, "collMod", &mut options)?;
        if let Some(l) = limits {
            crate::capped::set_limits(&mut options, c.is_capped(), l)?;
        }
        if validation || limits.is_some() {
            ops.push(DocOp::SetCollectionOptions {
                ns: ns.clone(),
                options,
            });
        }
        let mut reply = Document::new();
        if let Some(change) = &index {
            let found = c
                .indexes()
                .iter()
                .find(|i| match (&change.by_name, &change.by_key) {
                    (Some(n), _) => i.get_str("name").ok() == Some(n.as_str()),
                    (_, Some(k)) => i.get_document("key").ok() == Some(k),
                    _ => false,
                });
            let Some(spec) = found else {
                return Err(CommandError::new(
                    ErrorCode::IndexNotFound,
                    format!(
                        "cannot find index {} for ns {ns}",
                        change
                            .by_name
                            .clone()
                            .or_else(|| change.by_key.as_ref().map(|k| k.to_string()))
                            .unwrap_or_default()
                    ),
                ));
            };
            let mut new_spec = spec.clone();
            if let Some(hidden) = change.hidden {
                if spec.get_str("name").ok() == Some("_id_") {
                    return Err(CommandError::bad_value("can't hide _id index"));
                }
                let was = spec.get_bool("hidden").unwrap_or(false);
                if was != hidden {
                    if hidden {
                        new_spec.insert("hidden", true);
                    } else {
                        new_spec.remove("hidden");
                    }
                    reply.insert("hidden_old", was);
                    reply.insert("hidden_new", hidden);
                }
            }
            if let Some(expire) = &change.expire {
                // A plain single-field index may become a TTL one (5.1+).
                let key = spec.get_document("key").cloned().unwrap_or_default();
                crate::ttl::check_index(&key, expire)?;
                if c.is_capped() {
                    return Err(CommandError::new(
                        ErrorCode::CannotCreateIndex,
                        "Cannot create TTL index on a capped collection",
                    ));
                }
                if let Some(old) = spec.get("expireAfterSeconds") {
                    reply.insert("expireAfterSeconds_old", old.clone());
                }
                reply.insert("expireAfterSeconds_new", expire.clone());
                new_spec.insert("expireAfterSeconds", expire.clone());
            }
            if &new_spec != spec {
                ops.push(DocOp::CreateIndex {
                    ns: ns.clone(),
                    spec: new_spec,
                });
            }
        }
        Ok((ops, reply))
    })
    .await?;
    let mut out = reply;
    out.insert("operationTime", operation_time(info.time));
    Ok(out)
}
