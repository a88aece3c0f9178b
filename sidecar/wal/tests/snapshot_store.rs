//! Snapshots reach both stores and come back from them in pieces
//! (`SnapshotStream`), never as one buffer, and become visible only once
//! complete: against the embedded store on disk and the mongodb store on a
//! real FerretDB.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_testkit::FerretDb;
use argon_wal::snapshot::SnapshotStream;
use argon_wal::{BranchId, LogStore, MongoStore, Seq, WalError};
use bson::{Document, doc};
use futures::TryStreamExt;
use std::sync::Arc;

const BRANCH: BranchId = BranchId(7);

/// Pieces of uneven sizes (a 3-byte one, a 5 MiB one), 14 MiB in all:
/// more than three of the mongodb store's 4 MiB chunks.
fn pieces(salt: u8) -> Vec<Vec<u8>> {
    let mut out = vec![
        vec![salt; 3],
        (0..5 << 20).map(|i| (i % 251) as u8 ^ salt).collect(),
    ];
    for k in 0..9u8 {
        out.push(vec![k ^ salt; 1 << 20]);
    }
    out
}

/// A stored snapshot read back: its seq and its bytes (at most 5 MiB per
/// piece: the store's read size, or one stored chunk).
async fn latest(store: &Arc<dyn LogStore>, after: u64, upto: u64) -> Option<(Seq, Vec<u8>)> {
    let mut stream = store
        .latest_snapshot("p", BRANCH, Seq(after), Seq(upto))
        .await
        .unwrap()?;
    assert_eq!(stream.branch, BRANCH);
    let mut bytes = Vec::new();
    while let Some(piece) = stream.next_piece().await.unwrap() {
        assert!(piece.len() <= 4 << 20, "a piece of {} bytes", piece.len());
        bytes.extend_from_slice(&piece);
    }
    Some((stream.seq, bytes))
}

fn upload(seq: u64, salt: u8) -> SnapshotStream {
    SnapshotStream::from_pieces(BRANCH, Seq(seq), pieces(salt), Ok(()))
}

/// What every store must do with uploads.
async fn uploads_are_whole_or_invisible(store: &Arc<dyn LogStore>) {
    let len = store.put_snapshot("p", upload(10, 1)).await.unwrap();
    assert_eq!(len, pieces(1).concat().len() as u64);
    let (seq, bytes) = latest(store, 0, 100).await.unwrap();
    assert_eq!(seq, Seq(10));
    assert!(bytes == pieces(1).concat(), "the bytes read back differ");

    // An encoder that fails after sending most of a snapshot: the put
    // fails, and readers still get the older, complete one.
    let mut broken = pieces(2);
    broken.pop();
    let failed = SnapshotStream::from_pieces(
        BRANCH,
        Seq(20),
        broken,
        Err(WalError::Closed("encoder failed")),
    );
    let e = store.put_snapshot("p", failed).await.unwrap_err();
    assert!(matches!(e, WalError::Closed("encoder failed")), "{e}");
    assert_eq!(latest(store, 0, 100).await.unwrap().0, Seq(10));

    // The same point again (another handle's equal snapshot) is fine and
    // leaves the first in place.
    store.put_snapshot("p", upload(10, 1)).await.unwrap();
    // A newer complete one wins; the range bounds are kept.
    store.put_snapshot("p", upload(30, 3)).await.unwrap();
    let (seq, bytes) = latest(store, 0, 100).await.unwrap();
    assert_eq!(seq, Seq(30));
    assert!(bytes == pieces(3).concat());
    let (seq, bytes) = latest(store, 0, 29).await.unwrap();
    assert_eq!(seq, Seq(10));
    assert!(bytes == pieces(1).concat());
    assert!(latest(store, 10, 29).await.is_none());
}

#[tokio::test]
async fn embedded_store_streams_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::embedded_store(dir.path()).await;
    uploads_are_whole_or_invisible(&store).await;
    // The failed upload left no file behind (no `.tmp`, no seq-20 snapshot).
    let mut names = Vec::new();
    for entry in walk(dir.path()) {
        names.push(entry);
    }
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".snap")).count(),
        2,
        "{names:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test]
async fn mongodb_store_streams_snapshots() {
    let server = FerretDb::start().await.unwrap();
    let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_wal")
        .await
        .unwrap();
    uploads_are_whole_or_invisible(&store).await;

    let client = mongodb::Client::with_uri_str(server.uri()).await.unwrap();
    let chunks = client
        .database("argon_wal")
        .collection::<Document>("snapshots");
    let of = |seq: i64| {
        let chunks = chunks.clone();
        async move {
            let docs: Vec<Document> = chunks
                .find(doc! {"project": "p", "seq": seq})
                .projection(doc! {"chunk": 1, "of": 1})
                .sort(doc! {"chunk": 1})
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            docs.iter()
                .map(|d| (d.get_i64("chunk").unwrap(), d.get_i64("of").unwrap()))
                .collect::<Vec<_>>()
        }
    };
    // 14 MiB in 4 MiB chunks: four, the count on chunk 0 only.
    assert_eq!(of(10).await, vec![(0, 4), (1, 0), (2, 0), (3, 0)]);
    // The failed one left chunks but no chunk 0: never a snapshot.
    assert!(of(20).await.iter().all(|(c, _)| *c != 0));

    // Chunks written before streaming carry the count on every chunk:
    // still read.
    for (i, data) in [b"old-0".to_vec(), b"old-1".to_vec()]
        .into_iter()
        .enumerate()
    {
        chunks
            .insert_one(doc! {
                "project": "p", "branch": BRANCH.0 as i64, "seq": 40i64,
                "chunk": i as i64, "of": 2i64,
                "data": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: data },
            })
            .await
            .unwrap();
    }
    assert_eq!(
        latest(&store, 0, 40).await.unwrap(),
        (Seq(40), b"old-0old-1".to_vec())
    );
    // One written before streaming by a writer that died mid-way (chunk 0
    // first, one chunk missing) is passed over for the older complete one.
    for i in [0i64, 2] {
        chunks
            .insert_one(doc! {
                "project": "p", "branch": BRANCH.0 as i64, "seq": 50i64,
                "chunk": i, "of": 3i64,
                "data": bson::Binary { subtype: bson::spec::BinarySubtype::Generic, bytes: vec![1] },
            })
            .await
            .unwrap();
    }
    assert_eq!(latest(&store, 0, 60).await.unwrap().0, Seq(40));
}
