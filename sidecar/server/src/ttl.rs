//! TTL indexes: an index with `expireAfterSeconds` makes documents whose
//! indexed date (the earliest, for an array of dates) is more than that
//! many seconds old expire, as MongoDB's TTL monitor does.
//!
//! [`monitor`] wakes every `--ttl-monitor-sleep-secs` (MongoDB's
//! `ttlMonitorSleepSecs`, 60 by default) and, on every live branch this
//! server serves that has a TTL index (a branch forked after the index was
//! created has it too), deletes the expired documents in ordinary commits:
//! the log keeps them, so a read at an earlier point still sees them, and a
//! fork taken before sees them until its own pass. The decision is made
//! again inside the commit's resolve, on the head it commits on, so a
//! document updated meanwhile (a fresh date) is kept, and two sidecars of
//! one branch never delete twice.
//!
//! Not done: the pass scans each TTL collection (no index-ordered scan
//! yet), so it costs O(documents) per pass and collection.

use std::sync::Arc;
use std::time::Duration;

use argon_wal::{BranchState, DocOp, Namespace, ReadPoint};
use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};
use crate::query::Filter;
use crate::query::path::resolve;
use crate::service::Service;

/// MongoDB's `ttlMonitorSleepSecs` default.
pub const DEFAULT_SLEEP_SECS: u64 = 60;

/// Deletes in one commit, so a large expiry is a few bounded commits.
const MAX_DELETES_PER_COMMIT: usize = 10_000;

/// The seconds of `expireAfterSeconds`, checked as MongoDB checks them.
pub fn seconds(v: &Bson) -> Result<i64> {
    let n = match v {
        Bson::Int32(n) => i64::from(*n),
        Bson::Int64(n) => *n,
        Bson::Double(f) if f.is_finite() && f.fract() == 0.0 => *f as i64,
        Bson::Double(_) | Bson::Decimal128(_) => -1,
        other => {
            return Err(CommandError::new(
                ErrorCode::CannotCreateIndex,
                format!(
                    "TTL index 'expireAfterSeconds' option must be numeric, but received a type of '{}'",
                    crate::query::expr::type_name(other)
                ),
            ));
        }
    };
    if !(0..=i64::from(i32::MAX)).contains(&n) {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            format!(
                "TTL index 'expireAfterSeconds' option must be within an acceptable range, try a non-negative number less than 2147483648: {v}"
            ),
        ));
    }
    Ok(n)
}

/// A TTL index of `createIndexes` (or one `collMod` makes TTL): one
/// ascending/descending field, not `_id`, with a valid number of seconds.
pub fn check_index(key: &Document, expire: &Bson) -> Result<()> {
    seconds(expire)?;
    if key.len() != 1 {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            "TTL indexes are single-field indexes, compound indexes do not support TTL",
        ));
    }
    if key.contains_key("_id") {
        return Err(CommandError::new(
            ErrorCode::InvalidIndexSpecificationOption,
            "The field 'expireAfterSeconds' is not valid for an _id index specification.",
        ));
    }
    if key.values().any(|v| matches!(v, Bson::String(_))) {
        return Err(CommandError::new(
            ErrorCode::CannotCreateIndex,
            "TTL indexes are not supported for special index types",
        ));
    }
    Ok(())
}

/// One TTL rule of a collection.
struct Rule {
    field: String,
    seconds: i64,
    partial: Option<Filter>,
}

fn rules_of(c: &argon_wal::CollectionState) -> Vec<Rule> {
    c.indexes()
        .iter()
        .filter_map(|spec| {
            let seconds = seconds(spec.get("expireAfterSeconds")?).ok()?;
            let key = spec.get_document("key").ok()?;
            let (field, _) = key.iter().next().filter(|_| key.len() == 1)?;
            let partial = match spec.get_document("partialFilterExpression") {
                Ok(f) => Some(Filter::parse(f).ok()?),
                Err(_) => None,
            };
            Some(Rule {
                field: field.clone(),
                seconds,
                partial,
            })
        })
        .collect()
}

/// Whether `doc` has expired under `rule` at `now_ms`: its earliest date
/// at the field, plus the seconds, is in the past.
fn expired(rule: &Rule, doc: &Document, now_ms: i64) -> bool {
    if rule.partial.as_ref().is_some_and(|f| !f.matches(doc)) {
        return false;
    }
    let resolved = resolve(doc, &rule.field);
    let earliest = resolved
        .values
        .iter()
        .flat_map(|v| match v {
            Bson::Array(items) => items.iter().collect::<Vec<_>>(),
            v => vec![*v],
        })
        .filter_map(|v| match v {
            Bson::DateTime(d) => Some(d.timestamp_millis()),
            _ => None,
        })
        .min();
    earliest.is_some_and(|at| at.saturating_add(rule.seconds.saturating_mul(1000)) < now_ms)
}

/// The deletes of every document expired at `now_ms` in `state` (at most
/// `limit`).
pub fn expired_deletes(
    state: &BranchState,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<DocOp>, CommandError> {
    let mut ops = Vec::new();
    for db in state.databases()? {
        for coll in state.collections(&db)? {
            let ns = Namespace::new(db.as_str(), coll.as_str());
            let Some(c) = state.collection(&ns)? else {
                continue;
            };
            let rules = rules_of(&c);
            if rules.is_empty() {
                continue;
            }
            for raw in c.iter() {
                let doc = raw?.to_document();
                if rules.iter().any(|r| expired(r, &doc, now_ms)) {
                    ops.push(DocOp::Delete {
                        ns: ns.clone(),
                        id: doc.get("_id").cloned().unwrap_or(Bson::Null),
                    });
                    if ops.len() >= limit {
                        return Ok(ops);
                    }
                }
            }
        }
    }
    Ok(ops)
}

fn has_ttl(state: &BranchState) -> Result<bool, CommandError> {
    for db in state.databases()? {
        for c in state.collections(&db)? {
            if let Some(c) = state.collection(&Namespace::new(db.as_str(), c.as_str()))?
                && c.indexes()
                    .iter()
                    .any(|i| i.contains_key("expireAfterSeconds"))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn now_ms() -> i64 {
    bson::DateTime::now().timestamp_millis()
}

/// One pass over every branch: the documents deleted.
pub async fn pass(svc: &Service) -> Result<usize> {
    let mut deleted = 0;
    let branches = svc
        .wal
        .list_branches()
        .await
        .map_err(crate::wal_error::from_wal)?;
    for b in branches.into_iter().filter(|b| !b.deleted) {
        let name = b.name.as_str().to_owned();
        if svc.confined_to_branch() && name != svc.default_branch {
            continue;
        }
        let state = svc
            .wal
            .read(&name, ReadPoint::Head)
            .await
            .map_err(crate::wal_error::from_wal)?;
        if !has_ttl(&state)? {
            continue;
        }
        loop {
            let now = now_ms();
            let (n, _) = svc
                .wal
                .write(&name, move |state: &BranchState| {
                    let ops = expired_deletes(state, now, MAX_DELETES_PER_COMMIT)?;
                    let n = ops.len();
                    Ok::<_, CommandError>((ops, n))
                })
                .await
                .map_err(crate::wal_error::from_write)?;
            deleted += n;
            if n > 0 {
                svc.metrics.commits.inc();
            }
            if n < MAX_DELETES_PER_COMMIT {
                break;
            }
        }
    }
    Ok(deleted)
}

/// The TTL monitor: a pass every `sleep`, for as long as the server runs.
pub async fn monitor(svc: Arc<Service>, sleep: Duration) {
    let mut tick = tokio::time::interval(sleep);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pass(&svc).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "TTL monitor deleted expired documents"),
            // Another sidecar writes the branch, or the store is away: the
            // next pass tries again.
            Err(e) => {
                tracing::debug!(error = %e.message, code = e.code.code(), "TTL pass did not finish")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn seconds_and_specs_are_checked() {
        assert_eq!(seconds(&Bson::Int32(0)).unwrap(), 0);
        assert_eq!(seconds(&Bson::Double(60.0)).unwrap(), 60);
        assert_eq!(
            seconds(&Bson::Int64(i64::from(i32::MAX))).unwrap(),
            2147483647
        );
        for bad in [
            Bson::Int32(-1),
            Bson::Int64(1 << 31),
            Bson::Int64(i64::MIN),
            Bson::Double(f64::NAN),
            Bson::Double(1e300),
            Bson::Double(0.5),
            Bson::String("60".into()),
            Bson::Null,
        ] {
            assert_eq!(
                seconds(&bad).unwrap_err().code,
                ErrorCode::CannotCreateIndex,
                "{bad}"
            );
        }
        assert!(check_index(&doc! {"at": 1}, &Bson::Int32(5)).is_ok());
        assert!(check_index(&doc! {"a": 1, "b": 1}, &Bson::Int32(5)).is_err());
        assert!(check_index(&doc! {"_id": 1}, &Bson::Int32(5)).is_err());
        assert!(check_index(&doc! {"a": "hashed"}, &Bson::Int32(5)).is_err());
    }

    #[test]
    fn the_earliest_date_decides() {
        let rule = Rule {
            field: "at".into(),
            seconds: 10,
            partial: None,
        };
        let t = |ms: i64| Bson::DateTime(bson::DateTime::from_millis(ms));
        let now = 100_000;
        assert!(expired(&rule, &doc! {"at": t(89_000)}, now));
        assert!(!expired(&rule, &doc! {"at": t(90_000)}, now));
        assert!(expired(&rule, &doc! {"at": [t(200_000), t(1)]}, now));
        assert!(!expired(&rule, &doc! {"at": "not a date"}, now));
        assert!(!expired(&rule, &doc! {}, now));
        assert!(!expired(&rule, &doc! {"at": t(i64::MAX)}, now));
        assert!(expired(&rule, &doc! {"at": t(i64::MIN)}, now));
        let partial = Rule {
            partial: Some(Filter::parse(&doc! {"kind": "session"}).unwrap()),
            ..rule
        };
        assert!(!expired(&partial, &doc! {"at": t(1), "kind": "user"}, now));
        assert!(expired(
            &partial,
            &doc! {"at": t(1), "kind": "session"},
            now
        ));
    }
}
