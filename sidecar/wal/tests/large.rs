//! Commits larger than one store record: a commit's body above 1 MiB is
//! stored as chunk records plus the commit record that names them. A ~100 MB
//! commit round-trips on both stores; time travel, branching, reset (and
//! its preview) and a second handle read it like any other commit; the
//! loser of a seq race never leaves its chunks behind; orphan chunk sets
//! are removed by the store itself.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_testkit::FerretDb;
use argon_wal::record::{Commit, EncodedCommit, LoggedOp};
use argon_wal::{
    BranchId, BranchState, CommitTime, DocOp, LogStore, MongoStore, Namespace, ReadPoint, Seq, Wal,
    WalOptions,
};
use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

fn blobs() -> Namespace {
    Namespace::new("app", "blobs")
}

/// The `pad` of document `id` written with `tag`: a 4 KiB block that
/// depends on both, repeated (cheap to build and compare in a debug
/// build), so a chunk in the wrong place or from the wrong commit shows.
fn pattern(id: i64, tag: u8, len: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..4093u64)
        .map(|i| {
            i.wrapping_mul(131)
                .wrapping_add(id as u64 * 7 + u64::from(tag)) as u8
        })
        .collect();
    let mut out = block.repeat(len / block.len() + 1);
    out.truncate(len);
    out
}

/// Puts of documents `ids` of `size` bytes each, written with `tag`.
fn big_puts(ids: std::ops::Range<i64>, size: usize, tag: u8) -> Vec<DocOp> {
    ids.map(|id| {
        let pad = bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: pattern(id, tag, size),
        };
        DocOp::Put {
            ns: blobs(),
            id: Bson::Int64(id),
            doc: argon_wal::rawdoc::encode(&doc! {"_id": id, "tag": i32::from(tag), "pad": pad})
                .expect("encodes"),
        }
    })
    .collect()
}

/// Documents `ids` are there, each written with `tag` and whole.
fn assert_docs(state: &BranchState, ids: std::ops::Range<i64>, size: usize, tag: u8) {
    let coll = state
        .collection(&blobs())
        .unwrap()
        .expect("the blobs collection");
    for id in ids {
        let d = coll
            .get(&Bson::Int64(id))
            .expect("reads")
            .unwrap_or_else(|| panic!("document {id} is missing at seq {}", state.seq()));
        assert_eq!(d.get_i32("tag").unwrap(), i32::from(tag), "document {id}");
        assert!(
            d.get_binary("pad").unwrap().bytes == pattern(id, tag, size).as_slice(),
            "document {id} is not whole"
        );
    }
}

/// The large-commit story, on any store: a commit of `docs` × `size`
/// bytes, then one that replaces every document (logging post- and
/// pre-images), read back through a second handle, at past points by seq
/// and by time, through a branch, and reset with a preview.
async fn large_commits(wal: &Wal, other: &Wal, docs: i64, size: usize) {
    let first = common::commit(wal, "main", big_puts(0..docs, size, 1)).await;
    let log = wal.log_info("main").await.unwrap();
    assert!(
        log.bytes >= docs as u64 * size as u64,
        "log bytes {}",
        log.bytes
    );
    common::commit(wal, "main", vec![common::put("small", 1, 1)]).await;
    // The update-many shape: every document replaced, images of both logged.
    let second = common::commit(wal, "main", big_puts(0..docs, size, 2)).await;
    assert_eq!((first.seq, second.seq), (Seq(1), Seq(3)));

    // Another handle (another pod) catches up through the store.
    let head = other.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(3));
    assert_docs(&head, 0..docs, size, 2);
    // Time travel by seq and by time.
    let at_first = other.read("main", ReadPoint::Seq(Seq(1))).await.unwrap();
    assert_docs(&at_first, 0..docs, size, 1);
    let by_time = other
        .read("main", ReadPoint::Time(first.time))
        .await
        .unwrap();
    assert_eq!(by_time.seq(), Seq(1));
    assert_docs(&by_time, 0..docs, size, 1);

    // A branch from the first large commit reads through it, and writes its own.
    other
        .create_branch("before", "main", argon_wal::ForkPoint::Seq(Seq(1)))
        .await
        .unwrap();
    common::commit(other, "before", big_puts(docs..docs + 1, size, 3)).await;
    let b = wal.read("before", ReadPoint::Head).await.unwrap();
    assert_docs(&b, 0..docs, size, 1);
    assert_docs(&b, docs..docs + 1, size, 3);

    // Reset preview: from the head back to seq 1 changes every document.
    let preview = wal
        .reset_branch("main", ReadPoint::Seq(Seq(1)), true, None)
        .await
        .unwrap();
    assert!(!preview.applied);
    let diff = &preview.preview;
    assert_eq!(diff.changed(), docs as usize, "{diff:?}");
    assert_eq!(diff.removed(), 1, "the small document goes");
    let done = other
        .reset_branch("main", ReadPoint::Seq(Seq(1)), false, Some("main-backup"))
        .await
        .unwrap();
    assert!(done.applied);
    let reset = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_docs(&reset, 0..docs, size, 1);
    let backup = wal.read("main-backup", ReadPoint::Head).await.unwrap();
    assert_docs(&backup, 0..docs, size, 2);
}

/// 25 documents of 4 MiB: a ~100 MB commit, then a ~200 MB one (its
/// documents and their pre-images).
#[tokio::test]
async fn a_100_mb_commit_round_trips_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = argon_wal::EmbeddedStore::open(dir.path()).unwrap();
    let options = WalOptions::default();
    let a = Wal::open(store.clone(), "proj", options.clone())
        .await
        .unwrap();
    let b = Wal::open(store.clone(), "proj", options).await.unwrap();
    let main = a.branch("main").await.unwrap().id;
    large_commits(&a, &b, 25, 4 * MIB).await;
    // A page of the log ends once it holds 64 MiB of bodies, whatever its
    // limit (catch-up and replay hold a page whole): here, after the first
    // ~100 MB commit, with more to come.
    let page = store
        .read_commits("proj", main, Seq(0), Seq::MAX, 1000)
        .await
        .unwrap();
    assert_eq!((page.len(), page.more), (1, true));
    let rest = store
        .read_commits("proj", main, Seq(1), Seq::MAX, 1000)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![Seq(2), Seq(3)]
    );
    assert!(rest.more);
    // The last page: the reset's seal, and nothing after it.
    let last = store
        .read_commits("proj", main, Seq(3), Seq::MAX, 1000)
        .await
        .unwrap();
    assert_eq!(last.len(), 1);
    assert!(last[0].seal.is_some() && !last.more);
    drop((a, b, store));
    // After a reopen, replay from the log alone gives the same states.
    let wal = common::embedded(dir.path(), WalOptions::default()).await;
    let head = wal.read("main-backup", ReadPoint::Head).await.unwrap();
    assert_docs(&head, 0..25, 4 * MIB, 2);
}

async fn mongo_wal(server: &FerretDb, project: &str) -> (Arc<MongoStore>, Wal) {
    let store = MongoStore::connect(server.uri(), "argon_wal")
        .await
        .unwrap();
    let wal = Wal::open(store.clone(), project, WalOptions::default())
        .await
        .unwrap();
    (store, wal)
}

/// FerretDB's SQLite backend returns a large document at ~20 MB/s and
/// scans the whole collection for every query, and this story reads the
/// first commit back several times (replays from the fork point), so the
/// mongodb store's version is sized down to 16 MiB per commit (4 chunks;
/// 8 for the replacing one): the same paths in seconds. The ~100 MB commit
/// on FerretDB is `a_100_mb_commit_on_ferretdb`.
#[tokio::test]
async fn large_commits_on_the_mongodb_store() {
    let server = FerretDb::start().await.unwrap();
    let (_, a) = mongo_wal(&server, "large").await;
    let (_, b) = mongo_wal(&server, "large").await;
    large_commits(&a, &b, 4, 4 * MIB).await;
}

#[tokio::test]
async fn a_100_mb_commit_on_ferretdb() {
    let server = FerretDb::start().await.unwrap();
    let (_, a) = mongo_wal(&server, "hundred").await;
    let info = common::commit(&a, "main", big_puts(0..25, 4 * MIB, 1)).await;
    let (_, b) = mongo_wal(&server, "hundred").await;
    let head = b.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), info.seq);
    assert_docs(&head, 0..25, 4 * MIB, 1);
}

/// A commit of `ops` at `seq` of `branch`, encoded with its own writer id.
fn encoded(branch: BranchId, seq: u64, ops: Vec<DocOp>) -> EncodedCommit {
    EncodedCommit::new(Commit {
        branch,
        seq: Seq(seq),
        time: CommitTime(seq as i64),
        actor: "test".into(),
        ops: ops
            .into_iter()
            .map(|op| LoggedOp {
                op,
                pre_image: None,
            })
            .collect(),
        seal: None,
        retries: Vec::new(),
    })
    .unwrap()
}

async fn all(db: &mongodb::Database, coll: &str) -> Vec<Document> {
    db.collection::<Document>(coll)
        .find(doc! {})
        .projection(doc! {"data": 0})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

fn ids_of(docs: &[Document]) -> Vec<String> {
    let mut ids: Vec<String> = docs
        .iter()
        .map(|d| d.get_str("_id").unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn chunk_ids(e: &EncodedCommit) -> Vec<String> {
    let c = e.chunks().unwrap();
    let mut ids: Vec<String> = (0..c.count)
        .map(|n| format!("{}:{n}", c.writer.to_hex()))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_losers_chunks_never_appear() {
    let server = FerretDb::start().await.unwrap();
    let (store, _) = mongo_wal(&server, "race").await;
    let db = server.client().await.unwrap().database("argon_wal");
    // Two writers encode a commit for seq 1; the second loses the race.
    let winner = encoded(BranchId(1), 1, big_puts(0..2, 3 * MIB, 1));
    let loser = encoded(BranchId(1), 1, big_puts(0..2, 3 * MIB, 2));
    assert_ne!(chunk_ids(&winner), chunk_ids(&loser));
    store.append_commit("race", &winner).await.unwrap();
    let lost = store.append_commit("race", &loser).await.unwrap_err();
    assert!(
        matches!(lost, argon_wal::WalError::Conflict { .. }),
        "{lost}"
    );
    assert_eq!(ids_of(&all(&db, "chunks").await), chunk_ids(&winner));
    assert!(all(&db, "chunk_sets").await.is_empty());
    let read = store
        .read_commits("race", BranchId(1), Seq(0), Seq(1), 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    let mut state = BranchState::empty(CommitTime(0));
    state.apply_commit(&read[0]);
    assert_docs(&state, 0..2, 3 * MIB, 1);

    // Two engines racing large writes on one branch: every chunk left is
    // named by a commit.
    let (_, a) = mongo_wal(&server, "race2").await;
    let (_, b) = mongo_wal(&server, "race2").await;
    let write = |wal: Wal, from: i64| async move {
        for i in 0..3 {
            common::commit(&wal, "main", big_puts(from + i..from + i + 1, 2 * MIB, 4)).await;
        }
    };
    tokio::join!(write(a.clone(), 0), write(b.clone(), 100));
    let head = a.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(6));
    assert_docs(&head, 0..3, 2 * MIB, 4);
    assert_docs(&head, 100..103, 2 * MIB, 4);
    let chunks: Vec<Document> = db
        .collection::<Document>("chunks")
        .find(doc! {"project": "race2"})
        .projection(doc! {"data": 0})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(chunks.len(), 6, "one chunk per commit, no loser's");
    assert!(all(&db, "chunk_sets").await.is_empty());
}

#[tokio::test]
async fn orphan_chunk_sets_are_removed_by_the_store() {
    let server = FerretDb::start().await.unwrap();
    let (store, first) = mongo_wal(&server, "orphans").await;
    let main = first.branch("main").await.unwrap().id;
    let db = server.client().await.unwrap().database("argon_wal");
    let sets = db.collection::<Document>("chunk_sets");
    let chunks = db.collection::<bson::RawDocumentBuf>("chunks");
    // What a writer leaves when it dies after its chunks, before (or just
    // after) its commit record.
    let leave = |e: &EncodedCommit| {
        let (sets, chunks) = (sets.clone(), chunks.clone());
        let c = e.chunks().unwrap().clone();
        let docs: Vec<bson::RawDocumentBuf> = (0..c.count)
            .map(|n| {
                e.chunk_record("orphans", n, Some(&format!("{}:{n}", c.writer.to_hex())))
                    .unwrap()
            })
            .collect();
        let set = doc! {"_id": c.writer, "project": "orphans", "branch": main.0 as i64,
        "seq": e.seq.0 as i64, "count": i64::from(c.count)};
        async move {
            sets.insert_one(set).await.unwrap();
            chunks.insert_many(docs).await.unwrap();
        }
    };
    // Seq 1: committed by A; B died writing chunks for the same seq.
    let a = encoded(main, 1, big_puts(0..1, 3 * MIB, 1));
    store.append_commit("orphans", &a).await.unwrap();
    let b = encoded(main, 1, big_puts(0..1, 3 * MIB, 2));
    leave(&b).await;
    // Seq 2: C's commit landed, but C died before removing its entry.
    let c = encoded(main, 2, big_puts(1..2, 3 * MIB, 1));
    leave(&c).await;
    db.collection::<bson::RawDocumentBuf>("commits")
        .insert_one(c.record("orphans").unwrap())
        .await
        .unwrap();
    // Seq 3: D is writing (or died) and nobody holds seq 3 yet.
    let d = encoded(main, 3, big_puts(2..3, 3 * MIB, 1));
    leave(&d).await;

    // Opening a store removes what can never be committed, keeps D (it may
    // be in flight) and C's chunks (its commit names them).
    let (reopened, wal) = mongo_wal(&server, "orphans").await;
    let mut want = [chunk_ids(&a), chunk_ids(&c), chunk_ids(&d)].concat();
    want.sort();
    assert_eq!(ids_of(&all(&db, "chunks").await), want);
    let left: Vec<_> = all(&db, "chunk_sets")
        .await
        .iter()
        .map(|s| s.get_object_id("_id").unwrap())
        .collect();
    assert_eq!(left, vec![d.chunks().unwrap().writer]);
    // C died before publishing its commit: readers see it once a writer's
    // catch-up has read past the published head and published it (here,
    // directly), and then whole.
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(1));
    reopened
        .publish_head("orphans", main, Seq(2))
        .await
        .unwrap();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(2));
    assert_docs(&head, 0..2, 3 * MIB, 1);

    // Once D is older than the bound (here: any age), it goes too.
    let report = reopened.remove_orphans(Duration::ZERO).await.unwrap();
    assert_eq!((report.removed, report.kept), (1, 0));
    let mut want = [chunk_ids(&a), chunk_ids(&c)].concat();
    want.sort();
    assert_eq!(ids_of(&all(&db, "chunks").await), want);
    assert!(all(&db, "chunk_sets").await.is_empty());
    assert_eq!(
        wal.read("main", ReadPoint::Head).await.unwrap().seq(),
        Seq(2)
    );
}
