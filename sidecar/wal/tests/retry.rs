//! Retryable writes in the log: a write with a retry key is applied at most
//! once per branch, across restarts (replay and snapshots), across handles
//! on one store, and when the original and its retry race.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_wal::retry::MAX_INLINE_REPLY;
use argon_wal::{
    EmbeddedStore, LogStore, ReadPoint, RetryKey, RetryableOutcome, Seq, StoredReply, Transaction,
    Wal, WalError, WalOptions, WriteError,
};
use bson::{Document, doc};
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn key(session: u8, n: i64) -> RetryKey {
    RetryKey {
        session: vec![session; 16],
        txn_number: n,
    }
}

/// A retryable insert of `_id` `id` that counts how often it resolves and
/// answers `{n: 1, id}` (or `{n: 0}` when the document exists: a write that
/// changes nothing).
async fn insert_once(
    wal: &Wal,
    k: RetryKey,
    id: i64,
    runs: &Arc<AtomicUsize>,
) -> Result<RetryableOutcome, WriteError<()>> {
    let runs = Arc::clone(runs);
    wal.write_retryable("main", k, move |t: &mut Transaction| {
        runs.fetch_add(1, Ordering::SeqCst);
        let exists = t
            .state()
            .collection(&ns("r"))
            .unwrap()
            .is_some_and(|c| c.get(&bson::Bson::Int64(id)).unwrap().is_some());
        if exists {
            Ok(doc! {"n": 0})
        } else {
            t.record(vec![put("r", id, id)]).map_err(|_| ())?;
            Ok(doc! {"n": 1, "id": id})
        }
    })
    .await
}

fn reply_of(o: RetryableOutcome) -> Document {
    match o {
        RetryableOutcome::Applied { reply, .. } => reply,
        RetryableOutcome::AlreadyApplied(e) => match e.reply {
            StoredReply::Inline(r) => Document::try_from(r.as_ref().as_ref()).unwrap(),
            other => panic!("reply not inline: {other:?}"),
        },
    }
}

#[tokio::test]
async fn a_retried_write_is_answered_from_the_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let first_info;
    {
        let wal = embedded(dir.path(), WalOptions::default()).await;
        let o = insert_once(&wal, key(1, 7), 1, &runs).await.unwrap();
        let RetryableOutcome::Applied { reply, info } = o else {
            panic!("first run was not applied: {o:?}");
        };
        assert_eq!(reply, doc! {"n": 1, "id": 1i64});
        first_info = info;
        // The same key again in this process: answered, not run.
        let o = insert_once(&wal, key(1, 7), 1, &runs).await.unwrap();
        let RetryableOutcome::AlreadyApplied(e) = &o else {
            panic!("retry ran again: {o:?}");
        };
        assert_eq!((e.seq, e.time), (first_info.seq, first_info.time));
        assert_eq!(reply_of(o), doc! {"n": 1, "id": 1i64});
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
    // A new process: the table comes back from replay.
    let wal = embedded(dir.path(), WalOptions::default()).await;
    // Someone deletes the document; a re-run would insert it again.
    commit(&wal, "main", vec![del("r", 1)]).await;
    let o = insert_once(&wal, key(1, 7), 1, &runs).await.unwrap();
    assert_eq!(reply_of(o), doc! {"n": 1, "id": 1i64});
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert!(
        head.collection(&ns("r"))
            .unwrap()
            .unwrap()
            .is_empty()
            .unwrap()
    );
    // An older txnNumber of the session is refused; a newer one runs.
    let e = insert_once(&wal, key(1, 6), 1, &runs).await.unwrap_err();
    assert!(
        matches!(
            e,
            WriteError::Wal(WalError::RetryTooOld {
                txn_number: 6,
                latest: 7
            })
        ),
        "{e:?}"
    );
    let o = insert_once(&wal, key(1, 8), 1, &runs).await.unwrap();
    assert!(matches!(o, RetryableOutcome::Applied { .. }));
}

/// A write that changed nothing is logged too: its retry must not run on a
/// state where it would now change something.
#[tokio::test]
async fn a_write_that_changed_nothing_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    commit(&wal, "main", vec![put("r", 5, 5)]).await;
    let o = insert_once(&wal, key(2, 1), 5, &runs).await.unwrap();
    let RetryableOutcome::Applied { reply, info } = o else {
        panic!("not applied: {o:?}");
    };
    assert_eq!(reply, doc! {"n": 0});
    assert_eq!(info.seq, Seq(2), "the no-op write took a commit");
    commit(&wal, "main", vec![del("r", 5)]).await;
    let o = insert_once(&wal, key(2, 1), 5, &runs).await.unwrap();
    assert_eq!(reply_of(o), doc! {"n": 0});
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert!(
        head.collection(&ns("r"))
            .unwrap()
            .unwrap()
            .is_empty()
            .unwrap()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// The original and its retry sent at once (a driver that timed out and
/// retried while the first attempt was still queued): one runs.
#[tokio::test]
async fn concurrent_retries_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (wal, runs) = (wal.clone(), Arc::clone(&runs));
        tasks.push(tokio::spawn(async move {
            reply_of(insert_once(&wal, key(3, 1), 9, &runs).await.unwrap())
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), doc! {"n": 1, "id": 9i64});
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// Two handles on one store (two sidecars on one log): a retry on the
/// other handle, whose head has not seen the original, is still answered:
/// its append conflicts, it catches up, and the caught-up head has the key.
#[tokio::test]
async fn a_retry_on_another_handle_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
    let a = Wal::open(store.clone(), "proj", WalOptions::default())
        .await
        .unwrap();
    let b = Wal::open(store, "proj", WalOptions::default())
        .await
        .unwrap();
    commit(&b, "main", vec![put("x", 1, 1)]).await; // b has a head now
    let runs = Arc::new(AtomicUsize::new(0));
    let first = reply_of(insert_once(&a, key(4, 3), 2, &runs).await.unwrap());
    let again = reply_of(insert_once(&b, key(4, 3), 2, &runs).await.unwrap());
    assert_eq!(first, again);
    // Resolved on b's stale head once, then answered after catching up.
    assert!(runs.load(Ordering::SeqCst) <= 2);
    let head = b.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(
        head.collection(&ns("r")).unwrap().unwrap().len().unwrap(),
        1
    );
    assert_eq!(head.seq(), Seq(2), "the retry committed nothing");
}

/// Snapshots carry the table, so a replay that starts from one still knows
/// every key; a large reply stays in the log and is read back from there;
/// a fork starts with no retry history.
#[tokio::test]
async fn snapshots_large_replies_and_forks() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(MAX_INLINE_REPLY * 2);
    {
        let wal = embedded(dir.path(), WalOptions::default()).await;
        let runs = Arc::new(AtomicUsize::new(0));
        insert_once(&wal, key(5, 1), 1, &runs).await.unwrap();
        let big2 = big.clone();
        wal.write_retryable("main", key(6, 1), move |t: &mut Transaction| {
            t.record(vec![put("r", 2, 2)]).map_err(|_| ())?;
            Ok::<_, ()>(doc! {"n": 1, "big": big2.clone()})
        })
        .await
        .unwrap();
        assert_eq!(wal.snapshot_now("main").await.unwrap(), Seq(2));
        wal.create_branch("fork", "main", ReadPoint::Head)
            .await
            .unwrap();
    }
    // Only the snapshot from here on: the commits it covers are not replayed.
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.retries().len(), 2);
    let runs = Arc::new(AtomicUsize::new(0));
    let o = insert_once(&wal, key(5, 1), 1, &runs).await.unwrap();
    assert_eq!(reply_of(o), doc! {"n": 1, "id": 1i64});
    let o = wal
        .write_retryable("main", key(6, 1), |_: &mut Transaction| {
            Ok::<_, ()>(doc! {"ran": "again"})
        })
        .await
        .unwrap();
    let RetryableOutcome::AlreadyApplied(e) = o else {
        panic!("ran again: {o:?}");
    };
    assert_eq!(e.reply, StoredReply::InLog);
    let logged = wal
        .logged_retry_reply("main", &key(6, 1), e.seq)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(logged, doc! {"n": 1, "big": big});
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let fork = wal.read("fork", ReadPoint::Head).await.unwrap();
    assert!(fork.retries().is_empty());
}

/// A write committed in parts under one key: the next part commits only
/// while the key's entry is the previous part's, so of two executions
/// continuing from one part, one commits and the other is answered with
/// the newer entry.
#[tokio::test]
async fn a_part_continues_only_from_the_entry_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let part = |id: i64| {
        move |t: &mut Transaction| {
            t.record(vec![put("r", id, id)]).map_err(|_| ())?;
            Ok::<_, ()>(doc! {"part": id})
        }
    };
    let RetryableOutcome::Applied { info: first, .. } = wal
        .write_retryable("main", key(9, 1), part(1))
        .await
        .unwrap()
    else {
        panic!("the first part did not run");
    };
    // Without the part it follows, the key is answered, not run.
    let o = wal
        .write_retryable("main", key(9, 1), part(2))
        .await
        .unwrap();
    assert_eq!(reply_of(o), doc! {"part": 1i64});
    // Following the first part, it runs; following it again, it does not.
    let o = wal
        .write_retryable_continuing("main", key(9, 1), first.seq, part(2))
        .await
        .unwrap();
    assert!(matches!(o, RetryableOutcome::Applied { .. }), "{o:?}");
    let o = wal
        .write_retryable_continuing("main", key(9, 1), first.seq, part(3))
        .await
        .unwrap();
    assert_eq!(reply_of(o), doc! {"part": 2i64});
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    let c = head.collection(&ns("r")).unwrap().unwrap();
    assert!(c.get(&bson::Bson::Int64(2)).unwrap().is_some());
    assert!(c.get(&bson::Bson::Int64(3)).unwrap().is_none());
}
