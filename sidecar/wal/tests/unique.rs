//! The index rules every write path calls (`argon_wal::unique`), through
//! the engine: a single write (`write_in`), ops from a caller (`write`),
//! a new index, and the parallel-array rule, on the key maps' multikey
//! semantics.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_wal::unique::{EveryDocument, check_new_index};
use argon_wal::{DocOp, Namespace, ReadPoint, Transaction, WalError, WalOptions, WriteError};
use bson::{Document, doc};
use common::*;

async fn with_index(spec: Document) -> (tempfile::TempDir, argon_wal::Wal) {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let n = ns("u");
    wal.write("main", move |_| {
        Ok::<_, ()>((
            vec![
                DocOp::CreateCollection {
                    ns: n.clone(),
                    options: doc! {},
                },
                DocOp::CreateIndex {
                    ns: n.clone(),
                    spec: spec.clone(),
                },
            ],
            (),
        ))
    })
    .await
    .unwrap();
    (dir, wal)
}

async fn insert(wal: &argon_wal::Wal, d: Document) -> Result<(), WalError> {
    let r = wal
        .write_in("main", move |t: &mut Transaction| t.insert(&ns("u"), &d))
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(WriteError::Rejected(e)) | Err(WriteError::Wal(e)) => Err(e),
    }
}

#[tokio::test]
async fn unique_keys_are_multikey_and_refused_once_applied() {
    let (_dir, wal) = with_index(doc! {"name": "t_1", "key": {"t": 1}, "unique": true}).await;
    insert(&wal, doc! {"_id": 1, "t": [1, 2]}).await.unwrap();
    // One of its array elements is already held.
    let e = insert(&wal, doc! {"_id": 2, "t": [3, 2]})
        .await
        .unwrap_err();
    let WalError::DuplicateKey(d) = &e else {
        panic!("{e:?}");
    };
    assert_eq!((d.index.as_str(), &d.key), ("t_1", &doc! {"t": 2}));
    // Numbers compare by value across types, as index keys do.
    assert!(insert(&wal, doc! {"_id": 3, "t": 1.0}).await.is_err());
    // The same _id is refused by insert, whatever the index.
    let e = insert(&wal, doc! {"_id": 1, "t": 9}).await.unwrap_err();
    assert!(
        matches!(&e, WalError::DuplicateKey(d) if d.index == "_id_"),
        "{e:?}"
    );
    // A replacement of the holder itself does not conflict with itself.
    wal.write_in("main", |t: &mut Transaction| {
        t.replace(&ns("u"), &doc! {"_id": 1, "t": [2, 5]})
    })
    .await
    .unwrap();
    // Ops given by a caller go through the same rule.
    let e = wal
        .write("main", |_| Ok::<_, ()>((vec![put("u", 7, 0)], ())))
        .await;
    assert!(e.is_ok(), "no t field: null key, first holder");
    let e = wal
        .write("main", |_| Ok::<_, ()>((vec![put("u", 8, 0)], ())))
        .await
        .unwrap_err();
    assert!(
        matches!(e, WriteError::Wal(WalError::DuplicateKey(_))),
        "a second null key: {e:?}"
    );
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(
        head.collection(&ns("u")).unwrap().unwrap().len().unwrap(),
        2
    );
}

#[tokio::test]
async fn a_refused_write_leaves_nothing() {
    let (_dir, wal) = with_index(doc! {"name": "a_1", "key": {"a": 1}, "unique": true}).await;
    insert(&wal, doc! {"_id": 1, "a": 1}).await.unwrap();
    // A resolve that writes, then fails: none of it lands.
    let r = wal
        .write_in("main", |t: &mut Transaction| {
            t.insert(&ns("u"), &doc! {"_id": 2, "a": 2})?;
            t.insert(&ns("u"), &doc! {"_id": 3, "a": 1})
        })
        .await;
    assert!(r.is_err());
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(
        head.collection(&ns("u")).unwrap().unwrap().len().unwrap(),
        1
    );
    assert_eq!(head.seq().0, 2, "nothing committed");
}

#[tokio::test]
async fn parallel_arrays_cannot_be_indexed() {
    let (_dir, wal) = with_index(doc! {"name": "ab", "key": {"a": 1, "b": 1}}).await;
    let e = insert(&wal, doc! {"_id": 1, "a": [1], "b": [2]})
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::ParallelArrays { .. }), "{e:?}");
    insert(&wal, doc! {"_id": 1, "a": [1], "b": 2})
        .await
        .unwrap();
}

#[tokio::test]
async fn a_new_unique_index_is_checked_over_existing_documents() {
    let (_dir, wal) = with_index(doc! {"name": "x_1", "key": {"x": 1}}).await;
    insert(&wal, doc! {"_id": 1, "t": [1, 2]}).await.unwrap();
    insert(&wal, doc! {"_id": 2, "t": [2, 3]}).await.unwrap();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    let coll = head.collection(&ns("u")).unwrap().unwrap();
    let n: Namespace = ns("u");
    let unique = doc! {"name": "t_1", "key": {"t": 1}, "unique": true};
    let e = check_new_index(&coll, &n, &unique, &EveryDocument).unwrap_err();
    assert!(
        matches!(&e, WalError::DuplicateKey(d) if d.key == doc! {"t": 2}),
        "{e:?}"
    );
    let plain = doc! {"name": "t_1", "key": {"t": 1}};
    check_new_index(&coll, &n, &plain, &EveryDocument).unwrap();
    let compound = doc! {"name": "tu", "key": {"t": 1, "u": 1}};
    insert(&wal, doc! {"_id": 3, "u": [1]}).await.unwrap();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    let coll = head.collection(&ns("u")).unwrap().unwrap();
    check_new_index(&coll, &n, &compound, &EveryDocument).unwrap();
}

/// An index with a `collation` compares its keys as the query engine maps
/// them (`IndexFilter::collate`); without one (`EveryDocument`) they are
/// compared as stored.
#[tokio::test]
async fn a_collated_index_compares_the_keys_the_query_engine_gives() {
    struct CaseFolding;
    impl argon_wal::IndexFilter for CaseFolding {
        fn matches(&self, _: &Document, _: &Document) -> bool {
            true
        }
        fn collate(&self, _: &Document, values: Vec<bson::Bson>) -> Vec<bson::Bson> {
            values
                .into_iter()
                .map(|v| match v {
                    bson::Bson::String(s) => bson::Bson::String(s.to_lowercase()),
                    other => other,
                })
                .collect()
        }
    }
    let (_dir, wal) = with_index(doc! {"name": "x_1", "key": {"x": 1}}).await;
    insert(&wal, doc! {"_id": 1, "s": "Ann"}).await.unwrap();
    insert(&wal, doc! {"_id": 2, "s": "ANN"}).await.unwrap();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    let coll = head.collection(&ns("u")).unwrap().unwrap();
    let n: Namespace = ns("u");
    let collated =
        doc! {"name": "s_1", "key": {"s": 1}, "unique": true, "collation": {"locale": "x"}};
    let e = check_new_index(&coll, &n, &collated, &CaseFolding).unwrap_err();
    // The duplicate is reported with the stored value, not its key.
    assert!(
        matches!(&e, WalError::DuplicateKey(d) if d.key == doc! {"s": "ANN"}),
        "{e:?}"
    );
    check_new_index(&coll, &n, &collated, &EveryDocument).unwrap();
    // A write against an existing collated index: a scan with mapped keys.
    let coll_with_index = {
        let (_d2, wal2) = with_index(collated.clone()).await;
        insert(&wal2, doc! {"_id": 1, "s": "Ann"}).await.unwrap();
        let state = wal2.read("main", ReadPoint::Head).await.unwrap();
        argon_wal::unique::check_put(&state, &n, &doc! {"_id": 2, "s": "aNN"}, true, &CaseFolding)
    };
    assert!(matches!(coll_with_index, Err(WalError::DuplicateKey(_))));
}
