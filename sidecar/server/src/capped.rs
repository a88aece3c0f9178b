//! Capped collections: `create` with `capped`, `size` (bytes) and `max`
//! (documents). The WAL keeps a capped collection's insertion order (its
//! natural order, `CollectionState::iter_natural`) and total size; an
//! insert that takes the collection past either limit removes the oldest
//! documents in the same commit ([`evict`], called by `write::put`), so a
//! reader never sees the collection over its limits and time travel sees
//! exactly what it held. As in MongoDB 8.0, updates may change a
//! document's size and deletes are allowed.
//!
//! Tailable cursors on them are `cursor::Tail`.
//!
//! `collMod`'s `cappedSize`/`cappedMax` change the limits in one commit
//! ([`coll_mod_limits`], [`set_limits`]); a collection over its new limits
//! loses its oldest documents at its next insert, as in MongoDB.
//!
//! Writes to a capped collection inside a multi-document transaction are
//! refused as MongoDB refuses them ([`refuse_in_transaction`]).
//!
//! Not done: `convertToCapped`, `cloneCollectionAsCapped`.

use argon_wal::{Namespace, Transaction};
use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// MongoDB's largest capped size: 1 PB.
pub const MAX_SIZE: i64 = 1 << 50;

/// `field` (as `command.field`) as a whole number of a numeric type.
fn number(field: &str, v: &Bson) -> Result<i64> {
    match v {
        Bson::Int32(n) => Ok(i64::from(*n)),
        Bson::Int64(n) => Ok(*n),
        Bson::Double(f) if f.is_finite() => Ok(f.clamp(i64::MIN as f64, i64::MAX as f64) as i64),
        other => Err(CommandError::type_mismatch(format!(
            "BSON field '{field}' is the wrong type '{}', expected types '[long, int, decimal, double]'",
            crate::query::expr::type_name(other)
        ))),
    }
}

/// A capped size in bytes: 1 byte to 1 PB (one rule for `create` and
/// `collMod`).
fn size_of(field: &str, v: &Bson) -> Result<i64> {
    let size = number(field, v)?;
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(CommandError::bad_value(format!(
            "Capped collection size must be greater than 0 and less than or equal to 1 PB, found {size}"
        )));
    }
    Ok(size)
}

/// A capped document count: below 2^31; `None` for zero or less (no
/// limit on the count, as in MongoDB).
fn max_of(field: &str, v: &Bson) -> Result<Option<i64>> {
    let max = number(field, v)?;
    if max > i64::from(i32::MAX) {
        return Err(CommandError::bad_value(format!(
            "max in a capped collection has to be < 2^31 or not set, found {max}"
        )));
    }
    Ok((max > 0).then_some(max))
}

/// New limits for a capped collection (`collMod`): each `None` when not
/// given; `max: Some(None)` lifts the count limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub size: Option<i64>,
    pub max: Option<Option<i64>>,
}

/// `collMod`'s `cappedSize` and `cappedMax`, checked (a bad value fails
/// whatever the collection); `None` when it gives neither.
pub fn coll_mod_limits(cmd: &Document) -> Result<Option<Limits>> {
    let size = cmd
        .get("cappedSize")
        .map(|v| size_of("collMod.cappedSize", v))
        .transpose()?;
    let max = cmd
        .get("cappedMax")
        .map(|v| max_of("collMod.cappedMax", v))
        .transpose()?;
    Ok((size.is_some() || max.is_some()).then_some(Limits { size, max }))
}

/// Applies checked `collMod` limits to a collection's `options`: MongoDB's
/// InvalidOptions when it is not capped. A collection over its new limits
/// loses its oldest documents at its next insert ([`evict`]), as MongoDB's.
pub fn set_limits(
    options: &mut Document,
    capped: bool,
    Limits { size, max }: Limits,
) -> Result<()> {
    if !capped {
        return Err(CommandError::new(
            ErrorCode::InvalidOptions,
            "Collection must be capped.",
        ));
    }
    if let Some(size) = size {
        options.insert("size", size);
    }
    match max {
        Some(Some(m)) => {
            options.insert("max", m);
        }
        Some(None) => {
            options.remove("max");
        }
        None => {}
    }
    Ok(())
}

/// The capped options of `create`, checked, into `options` as
/// `listCollections` shows them (`{capped: true, size, max}`).
pub fn apply_options(cmd: &Document, options: &mut Document) -> Result<()> {
    let capped = crate::commands::opt_bool(cmd, "capped", false)?;
    if !capped {
        for field in ["size", "max"] {
            if cmd.contains_key(field) {
                return Err(CommandError::new(
                    ErrorCode::InvalidOptions,
                    format!(
                        "'{field}' applies to a capped collection only: create it with 'capped: true'"
                    ),
                ));
            }
        }
        return Ok(());
    }
    let size = match cmd.get("size") {
        Some(v) => size_of("create.size", v)?,
        None => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "the 'size' field is required when 'capped' is true",
            ));
        }
    };
    options.insert("capped", true);
    options.insert("size", size);
    if let Some(max) = cmd
        .get("max")
        .map(|v| max_of("create.max", v))
        .transpose()?
    {
        options.extend(max.map(|m| ("max".to_string(), Bson::Int64(m))));
    }
    Ok(())
}

/// `(size, max)` of a capped collection's options.
fn limits(options: &Document) -> Option<(u64, Option<u64>)> {
    if !options.get_bool("capped").unwrap_or(false) {
        return None;
    }
    let size = options.get_i64("size").ok()?.max(0) as u64;
    let max = options.get_i64("max").ok().map(|m| m.max(0) as u64);
    Some((size, max))
}

/// MongoDB refuses writes to a capped collection inside a multi-document
/// transaction: its insertion order needs the collection to itself. An
/// insert, update or findAndModify is 263 (`checkIfTransactionOnCappedColl`),
/// a `delete` statement (`remove`) 20 (the delete path's own check). Reads
/// are allowed.
pub fn refuse_in_transaction(
    state: &argon_wal::BranchState,
    ns: &Namespace,
    remove: bool,
) -> Result<()> {
    if !state.collection(ns)?.is_some_and(|c| c.is_capped()) {
        return Ok(());
    }
    Err(if remove {
        CommandError::new(
            ErrorCode::IllegalOperation,
            format!("Cannot remove from a capped collection in a multi-document transaction: {ns}"),
        )
    } else {
        CommandError::new(
            ErrorCode::OperationNotSupportedInTransaction,
            format!(
                "Collection '{ns}' is a capped collection. Writes in transactions are not \
                 allowed on capped collections."
            ),
        )
    })
}

/// A document of `len` bytes may go into `ns`: never larger than the
/// capped collection itself.
pub fn check_insert(t: &Transaction, ns: &Namespace, len: usize) -> Result<()> {
    let Some((size, _)) = t.state().collection(ns)?.and_then(|c| limits(c.options())) else {
        return Ok(());
    };
    if len as u64 > size {
        return Err(CommandError::bad_value(format!(
            "object to insert exceeds cappedMaxSize: {len} > {size}"
        )));
    }
    Ok(())
}

/// After an insert into `ns`: the oldest documents out until the
/// collection is within its size and count, in the same commit.
pub fn evict(t: &mut Transaction, ns: &Namespace) -> Result<()> {
    loop {
        let victim = {
            let Some(c) = t.state().collection(ns)? else {
                return Ok(());
            };
            let Some((size, max)) = limits(c.options()) else {
                return Ok(());
            };
            let bytes = c.capped_bytes().unwrap_or(0);
            let len = c.len()?;
            let over = bytes > size || max.is_some_and(|m| len > m);
            // The newest (just inserted) document always stays.
            if !over || len <= 1 {
                return Ok(());
            }
            match c.iter_natural().next().transpose()? {
                Some(oldest) => argon_wal::rawdoc::id_of(&oldest).unwrap_or(Bson::Null),
                None => Bson::Null,
            }
        };
        t.delete(ns, victim).map_err(crate::wal_error::from_wal)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn options_are_checked() {
        let mut o = Document::new();
        apply_options(&doc! {"capped": true, "size": 4096, "max": 3}, &mut o).unwrap();
        assert_eq!(o, doc! {"capped": true, "size": 4096i64, "max": 3i64});
        let mut o = Document::new();
        apply_options(&doc! {"capped": true, "size": 10.0, "max": -1}, &mut o).unwrap();
        assert_eq!(o, doc! {"capped": true, "size": 10i64});
        let bad = |cmd: Document| apply_options(&cmd, &mut Document::new()).unwrap_err().code;
        assert_eq!(bad(doc! {"capped": true}), ErrorCode::InvalidOptions);
        assert_eq!(bad(doc! {"size": 100}), ErrorCode::InvalidOptions);
        assert_eq!(bad(doc! {"capped": true, "size": -1}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"capped": true, "size": 0}), ErrorCode::BadValue);
        assert_eq!(
            bad(doc! {"capped": true, "size": i64::MAX}),
            ErrorCode::BadValue
        );
        assert_eq!(
            bad(doc! {"capped": true, "size": f64::INFINITY}),
            ErrorCode::TypeMismatch
        );
        assert_eq!(
            bad(doc! {"capped": true, "size": "1"}),
            ErrorCode::TypeMismatch
        );
        assert_eq!(
            bad(doc! {"capped": true, "size": 100, "max": 1i64 << 40}),
            ErrorCode::BadValue
        );
        assert_eq!(
            bad(doc! {"capped": "yes", "size": 100}),
            ErrorCode::TypeMismatch
        );
    }

    #[test]
    fn coll_mod_limits_are_checked_and_set() {
        assert_eq!(coll_mod_limits(&doc! {"collMod": "c"}).unwrap(), None);
        let l = coll_mod_limits(&doc! {"cappedSize": 2048, "cappedMax": 0}).unwrap();
        assert_eq!(
            l,
            Some(Limits {
                size: Some(2048),
                max: Some(None)
            })
        );
        let mut o = doc! {"capped": true, "size": 4096i64, "max": 3i64};
        set_limits(&mut o, true, l.unwrap()).unwrap();
        assert_eq!(o, doc! {"capped": true, "size": 2048i64});
        let mut o = doc! {"capped": true, "size": 4096i64};
        let max7 = Limits {
            size: None,
            max: Some(Some(7)),
        };
        set_limits(&mut o, true, max7).unwrap();
        assert_eq!(o, doc! {"capped": true, "size": 4096i64, "max": 7i64});
        let e = set_limits(&mut Document::new(), false, max7).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidOptions);
        let bad = |cmd: Document| coll_mod_limits(&cmd).unwrap_err().code;
        assert_eq!(bad(doc! {"cappedSize": -1}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"cappedSize": 0}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"cappedSize": i64::MAX}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"cappedSize": 1e300}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"cappedSize": "big"}), ErrorCode::TypeMismatch);
        assert_eq!(bad(doc! {"cappedSize": f64::NAN}), ErrorCode::TypeMismatch);
        assert_eq!(bad(doc! {"cappedMax": 1i64 << 31}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"cappedMax": 9.3e18}), ErrorCode::BadValue);
        assert_eq!(bad(doc! {"cappedMax": true}), ErrorCode::TypeMismatch);
        assert_eq!(
            coll_mod_limits(&doc! {"cappedMax": -5}).unwrap(),
            Some(Limits {
                size: None,
                max: Some(None)
            })
        );
    }
}
