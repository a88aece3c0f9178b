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
//! Not done: `convertToCapped`, `cloneCollectionAsCapped`, `collMod`'s
//! `cappedSize`/`cappedMax` (refused by name); writes to a capped
//! collection inside a multi-document transaction are not refused as
//! MongoDB refuses them.

use argon_wal::{Namespace, Transaction};
use bson::{Bson, Document};

use crate::error::{CommandError, ErrorCode, Result};

/// MongoDB's largest capped size: 1 PB.
pub const MAX_SIZE: i64 = 1 << 50;

fn number(field: &str, v: &Bson) -> Result<i64> {
    match v {
        Bson::Int32(n) => Ok(i64::from(*n)),
        Bson::Int64(n) => Ok(*n),
        Bson::Double(f) if f.is_finite() => Ok(f.clamp(i64::MIN as f64, i64::MAX as f64) as i64),
        other => Err(CommandError::type_mismatch(format!(
            "BSON field 'create.{field}' is the wrong type '{}', expected types '[long, int, decimal, double]'",
            crate::query::expr::type_name(other)
        ))),
    }
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
        Some(v) => number("size", v)?,
        None => {
            return Err(CommandError::new(
                ErrorCode::InvalidOptions,
                "the 'size' field is required when 'capped' is true",
            ));
        }
    };
    if !(1..=MAX_SIZE).contains(&size) {
        return Err(CommandError::bad_value(format!(
            "Capped collection size must be greater than 0 and less than or equal to 1 PB, found {size}"
        )));
    }
    options.insert("capped", true);
    options.insert("size", size);
    if let Some(v) = cmd.get("max") {
        let max = number("max", v)?;
        if max > i64::from(i32::MAX) {
            return Err(CommandError::bad_value(format!(
                "max in a capped collection has to be less than 2^31, found {max}"
            )));
        }
        // Zero or less: no limit on the count, as in MongoDB.
        if max > 0 {
            options.insert("max", max);
        }
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
}
