//! Failpoint scenarios (built only with the `failpoints` feature, which the
//! workspace test build turns on through argon-sidecar's dev-dependency):
//! each fault shows that no acknowledged write is lost, that no
//! unacknowledged half-commit appears, and that the store stops or
//! recovers as the failure model says (DESIGN.md, "Failure model").
//!
//! Failpoints are process-global, so the tests here take one lock.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use argon_testkit::FerretDb;
use argon_wal::failpoints::{self, Times};
use argon_wal::{
    DocOp, LogStore, MongoStore, ReadPoint, Seq, Wal, WalError, WalOptions, WriteError,
};
use bson::{Bson, doc};
use common::*;
use std::collections::BTreeMap;
use std::sync::Arc;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A put of a ~10 KiB document, so a batch of a few spans several pages.
fn big_put(id: i64) -> DocOp {
    DocOp::Put {
        ns: ns("a"),
        id: Bson::Int64(id),
        doc: argon_wal::rawdoc::encode(&doc! {"_id": id, "v": id, "pad": "x".repeat(10_000)})
            .unwrap(),
    }
}

async fn try_write(wal: &Wal, branch: &str, ops: Vec<DocOp>) -> Result<Seq, WalError> {
    match wal
        .write(branch, move |_| Ok::<_, ()>((ops.clone(), ())))
        .await
    {
        Ok((_, info)) => Ok(info.seq),
        Err(WriteError::Wal(e)) => Err(e),
        Err(WriteError::Rejected(())) => panic!("nothing here rejects"),
    }
}

/// `{branch: {id: v}}` of collection `a` on each branch.
async fn contents(wal: &Wal, branches: &[&str]) -> BTreeMap<String, BTreeMap<i64, i64>> {
    let mut out = BTreeMap::new();
    for b in branches {
        let head = wal.read(b, ReadPoint::Head).await.unwrap();
        let info = wal.log_info(b).await.unwrap();
        // No holes: every own commit up to the head is there.
        assert_eq!(
            info.commits + info.start_seq.0,
            head.seq().0,
            "{b}: commits up to the head"
        );
        out.insert(b.to_string(), flat(&head).remove("a").unwrap_or_default());
    }
    out
}

const BRANCHES: [&str; 4] = ["main", "b1", "b2", "b3"];

/// Acknowledged writes on four branches, then the fault during concurrent
/// writes to all four (several commits, one store batch of several
/// frames and pages), then: the store refuses appends and reports itself
/// unhealthy; after reopening, exactly the acknowledged writes are there
/// (and, when `may_survive`, unacknowledged commits whole or not at all).
async fn embedded_fault(point: &str, may_survive: bool) {
    let _serial = SERIAL.lock().await;
    failpoints::clear_all();
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    for b in &BRANCHES[1..] {
        wal.create_branch(b, "main", ReadPoint::Head).await.unwrap();
    }
    let mut acked: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for round in 0..5 {
        for (i, b) in BRANCHES.iter().enumerate() {
            let id = (i as i64) * 1000 + round;
            try_write(&wal, b, vec![big_put(id)]).await.unwrap();
            acked.entry(b.to_string()).or_default().push(id);
        }
    }
    let before = failpoints::fired(point);
    failpoints::set(point, Times::Once);
    let writes = BRANCHES.iter().enumerate().map(|(i, b)| {
        let wal = wal.clone();
        async move {
            let id = (i as i64) * 1000 + 500;
            (
                b.to_string(),
                id,
                try_write(&wal, b, vec![big_put(id)]).await,
            )
        }
    });
    let results = futures::future::join_all(writes).await;
    assert_eq!(failpoints::fired(point), before + 1, "{point} fired once");
    let mut unacked = Vec::new();
    for (b, id, r) in results {
        match r {
            Ok(_) => acked.entry(b).or_default().push(id),
            Err(_) => unacked.push((b, id)),
        }
    }
    assert!(!unacked.is_empty(), "the faulty batch failed its writers");
    // Poisoned: nothing is acknowledged any more, health says why.
    let e = try_write(&wal, "main", vec![big_put(9999)])
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::Closed(_)), "{e}");
    assert!(wal.health().await.is_err());
    // Reads still serve what was acknowledged.
    let live = contents(&wal, &BRANCHES).await;
    for (b, ids) in &acked {
        for id in ids {
            assert!(live[b].contains_key(id), "{b}/{id} readable while poisoned");
        }
    }
    drop(wal);

    let wal = embedded(dir.path(), WalOptions::default()).await;
    wal.health().await.unwrap();
    let after = contents(&wal, &BRANCHES).await;
    for (b, ids) in &acked {
        for id in ids {
            assert_eq!(after[b].get(id), Some(id), "acknowledged {b}/{id} lost");
        }
    }
    for (b, id) in &unacked {
        match after[b].get(id) {
            None => {}
            Some(v) if may_survive => assert_eq!(v, id, "{b}/{id} whole"),
            Some(_) => panic!("{point}: unacknowledged {b}/{id} came back"),
        }
    }
    // Nothing else appeared, and the reopened store appends.
    let total: usize = after.values().map(BTreeMap::len).sum();
    let acked_n: usize = acked.values().map(Vec::len).sum();
    assert!(total >= acked_n && total <= acked_n + unacked.len());
    for b in BRANCHES {
        try_write(&wal, b, vec![big_put(7777)]).await.unwrap();
    }
}

#[tokio::test]
async fn fsync_error_poisons_and_reopen_drops_the_unacknowledged_batch() {
    // fsyncgate: never retried; ACKED-UPTO makes recovery cut the batch.
    embedded_fault(failpoints::EMBEDDED_FSYNC_ERROR, false).await;
}

#[tokio::test]
async fn torn_multi_frame_batch_is_cut_by_recovery() {
    // Written with a hole in the middle, then "the process died": no
    // marker, recovery's torn-tail rule alone cuts the batch (not reported
    // as corruption: the open succeeds in Strict mode).
    embedded_fault(failpoints::EMBEDDED_TORN_WRITE, false).await;
}

#[tokio::test]
async fn crash_before_fsync_keeps_every_acknowledged_write() {
    // The batch was written whole but never fsynced nor acknowledged: after
    // the "crash" its commits may be there (whole), or not.
    embedded_fault(failpoints::EMBEDDED_BEFORE_FSYNC, true).await;
}

async fn mongo(server: &FerretDb, project: &str) -> Wal {
    let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_faults")
        .await
        .unwrap();
    Wal::open(store, project, WalOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn mongo_lost_ack_and_read_gap() {
    let _serial = SERIAL.lock().await;
    failpoints::clear_all();
    let server = FerretDb::start().await.unwrap();
    let (a, b) = (mongo(&server, "p").await, mongo(&server, "p").await);
    for i in 0..3 {
        try_write(&a, "main", vec![put("a", i, i)]).await.unwrap();
    }

    // The insert lands, its reply is lost: an error (unknown outcome) …
    failpoints::set(
        failpoints::MONGO_APPEND_AFTER_INSERT_BEFORE_ACK,
        Times::Once,
    );
    let e = try_write(&a, "main", vec![put("a", 3, 3)])
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    // … the commit is in the store, but not published (its append never
    // returned): readers elsewhere do not see it yet, as they must not see
    // what a reader after them might miss …
    let seen = b.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(seen.seq(), Seq(3));
    // … and the writer re-reads its head instead of assuming it: its
    // catch-up reads to the end of the log and publishes what it found,
    // the next commit lands on top of it, and both handles agree.
    assert_eq!(
        try_write(&a, "main", vec![put("a", 4, 4)]).await.unwrap(),
        Seq(5)
    );
    let (ha, hb) = (
        a.read("main", ReadPoint::Head).await.unwrap(),
        b.read("main", ReadPoint::Head).await.unwrap(),
    );
    assert_eq!((ha.seq(), hb.seq()), (Seq(5), Seq(5)));
    assert_eq!(flat(&ha), flat(&hb));
    assert_eq!(flat(&ha)["a"].len(), 5);

    // A read of the log with a hole (seq s then s + 2) is an error, retried,
    // never applied: a fresh handle catching up from nothing.
    let c = mongo(&server, "p").await;
    failpoints::set(failpoints::MONGO_READ_GAP, Times::Once);
    let e = c.read("main", ReadPoint::Head).await.unwrap_err();
    assert!(
        matches!(e, WalError::LogGap { .. }) && e.is_transient(),
        "{e}"
    );
    let hc = c.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(hc.seq(), Seq(5));
    assert_eq!(flat(&hc), flat(&ha));
    // The same for a writer: its catch-up fails, nothing is appended on a
    // head with a hole, and the retry commits on the true head.
    let d = mongo(&server, "p").await;
    failpoints::set(failpoints::MONGO_READ_GAP, Times::Once);
    let e = try_write(&d, "main", vec![put("a", 5, 5)])
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::LogGap { .. }), "{e}");
    assert_eq!(
        try_write(&d, "main", vec![put("a", 5, 5)]).await.unwrap(),
        Seq(6)
    );
    assert_eq!(
        flat(&a.read("main", ReadPoint::Head).await.unwrap())["a"].len(),
        6
    );
    a.health().await.unwrap();
}

// ---- the pipelined committer (engine::committer) ---------------------------

/// Polls `cond` until it holds (5 s at most).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..5000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Inserts `a.id = v` unless `id` exists (then refused).
async fn insert_unique(wal: &Wal, id: i64, v: i64) -> Result<Seq, WriteError<&'static str>> {
    wal.write("main", move |state| {
        let exists = match state.collection(&ns("a")).unwrap() {
            Some(c) => c.get(&Bson::Int64(id)).unwrap().is_some(),
            None => false,
        };
        if exists {
            return Err("duplicate key");
        }
        Ok((vec![put("a", id, v)], ()))
    })
    .await
    .map(|(_, info)| info.seq)
}

/// Copies `a.from`'s value (-1 when absent) to `a.to`, recording each value
/// it saw (one per time it was resolved).
fn copy_write(
    wal: &Wal,
    from: i64,
    to: i64,
) -> (
    Arc<std::sync::Mutex<Vec<i64>>>,
    tokio::task::JoinHandle<Seq>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (wal, log) = (wal.clone(), seen.clone());
    let task = tokio::spawn(async move {
        wal.write("main", move |state| {
            let v = match state.collection(&ns("a")).unwrap() {
                Some(c) => c
                    .get(&Bson::Int64(from))
                    .unwrap()
                    .map_or(-1, |d| d.get_i64("v").unwrap()),
                None => -1,
            };
            log.lock().unwrap().push(v);
            Ok::<_, ()>((vec![put("a", to, v)], ()))
        })
        .await
        .unwrap()
        .1
        .seq
    });
    (seen, task)
}

#[tokio::test]
async fn a_commit_resolved_on_a_failed_commit_is_resolved_again_on_the_true_head() {
    let _serial = SERIAL.lock().await;
    failpoints::clear_all();
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    assert_eq!(
        try_write(&wal, "main", vec![put("a", 0, 0)]).await.unwrap(),
        Seq(1)
    );

    // Commit N (inserting 1) is held in flight, then fails without landing.
    let fired = failpoints::fired(failpoints::COMMIT_APPEND_FAILS);
    failpoints::set(failpoints::COMMIT_APPEND_FAILS, Times::Once);
    let n = tokio::spawn({
        let wal = wal.clone();
        async move { insert_unique(&wal, 1, 1).await }
    });
    eventually("commit N in flight", || {
        failpoints::fired(failpoints::COMMIT_APPEND_FAILS) == fired + 1
    })
    .await;
    // Commit N+1 is resolved meanwhile, on N's state (it sees 1) …
    let (seen, next) = copy_write(&wal, 1, 2);
    let e = n.await.unwrap().unwrap_err();
    assert!(matches!(e, WriteError::Wal(WalError::Closed(_))), "{e:?}");
    // … and when N fails it is resolved again on the head without N, and
    // commits there (at N's seq: N never landed).
    assert_eq!(next.await.unwrap(), Seq(2));
    assert_eq!(*seen.lock().unwrap(), vec![1, -1], "values seen by N+1");
    let expect: BTreeMap<i64, i64> = [(0, 0), (2, -1)].into();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!((head.seq(), &flat(&head)["a"]), (Seq(2), &expect));

    // The log says the same: nothing acknowledged is missing, nothing
    // unacknowledged is there.
    drop(wal);
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!((head.seq(), &flat(&head)["a"]), (Seq(2), &expect));
    assert_eq!(
        try_write(&wal, "main", vec![put("a", 3, 3)]).await.unwrap(),
        Seq(3)
    );
}

#[tokio::test]
async fn a_lost_acknowledgement_between_append_and_answer_is_found_in_the_log() {
    let _serial = SERIAL.lock().await;
    failpoints::clear_all();
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    assert_eq!(
        try_write(&wal, "main", vec![put("a", 0, 0)]).await.unwrap(),
        Seq(1)
    );

    // Commit N (inserting 1) lands, then its answer is lost.
    let fired = failpoints::fired(failpoints::COMMIT_ACK_LOST);
    failpoints::set(failpoints::COMMIT_ACK_LOST, Times::Once);
    let n = tokio::spawn({
        let wal = wal.clone();
        async move { insert_unique(&wal, 1, 1).await }
    });
    eventually("commit N appended", || {
        failpoints::fired(failpoints::COMMIT_ACK_LOST) == fired + 1
    })
    .await;
    let (seen, next) = copy_write(&wal, 1, 2);
    // N's writer learns nothing certain (an error: the outcome is unknown) …
    let e = n.await.unwrap().unwrap_err();
    assert!(matches!(e, WriteError::Wal(WalError::Closed(_))), "{e:?}");
    // … N+1 is not appended on an unverified head: resolved again after a
    // catch-up, which finds N in the log, it commits after it.
    assert_eq!(next.await.unwrap(), Seq(3));
    assert_eq!(*seen.lock().unwrap(), vec![1, 1], "values seen by N+1");
    // Inserting 1 again is refused: N is there.
    assert!(matches!(
        insert_unique(&wal, 1, 9).await,
        Err(WriteError::Rejected(_))
    ));
    let expect: BTreeMap<i64, i64> = [(0, 0), (1, 1), (2, 1)].into();
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!((head.seq(), &flat(&head)["a"]), (Seq(3), &expect));
    drop(wal);
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!((head.seq(), &flat(&head)["a"]), (Seq(3), &expect));
}

#[tokio::test]
async fn another_handle_takes_the_seq_of_a_commit_in_flight() {
    let _serial = SERIAL.lock().await;
    failpoints::clear_all();
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path()).await;
    let a = Wal::open(store.clone(), "proj", WalOptions::default())
        .await
        .unwrap();
    let b = Wal::open(store, "proj", WalOptions::default())
        .await
        .unwrap();
    assert_eq!(
        try_write(&a, "main", vec![put("a", 0, 0)]).await.unwrap(),
        Seq(1)
    );
    assert_eq!(b.read("main", ReadPoint::Head).await.unwrap().seq(), Seq(1));

    // a's commit N (inserting 5 = 1) is held before its append; a's next
    // commit is resolved on it meanwhile; b inserts 5 = 2 and takes seq 2.
    let fired = failpoints::fired(failpoints::COMMIT_APPEND_HELD);
    failpoints::set(failpoints::COMMIT_APPEND_HELD, Times::Once);
    let n = tokio::spawn({
        let a = a.clone();
        async move { insert_unique(&a, 5, 1).await }
    });
    eventually("commit N in flight", || {
        failpoints::fired(failpoints::COMMIT_APPEND_HELD) == fired + 1
    })
    .await;
    let (seen, next) = copy_write(&a, 5, 6);
    assert_eq!(insert_unique(&b, 5, 2).await.unwrap(), Seq(2));
    // N conflicts; N and N+1 are resolved again on b's commit, in order:
    // N is now a duplicate, N+1 copies b's value.
    assert!(
        matches!(n.await.unwrap(), Err(WriteError::Rejected("duplicate key"))),
        "N must be refused on the true head"
    );
    assert_eq!(next.await.unwrap(), Seq(3));
    assert_eq!(*seen.lock().unwrap(), vec![1, 2], "values seen by N+1");
    let expect: BTreeMap<i64, i64> = [(0, 0), (5, 2), (6, 2)].into();
    for wal in [&a, &b] {
        let head = wal.read("main", ReadPoint::Head).await.unwrap();
        assert_eq!((head.seq(), &flat(&head)["a"]), (Seq(3), &expect));
    }
}

#[tokio::test]
async fn pipelined_commits_under_concurrent_writers_lose_nothing() {
    // Many writers, commits in flight while the next ones are resolved, an
    // fsync failure in the middle: every acknowledged write is in the log
    // after reopening, and the counter (a read-modify-write each time)
    // equals the number of acknowledged increments.
    let _serial = SERIAL.lock().await;
    failpoints::clear_all();
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let fired = failpoints::fired(failpoints::EMBEDDED_FSYNC_ERROR);
    failpoints::set(failpoints::EMBEDDED_FSYNC_ERROR, Times::Skip(5));
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let wal = wal.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..20 {
                    let id = w * 100 + i;
                    let r = wal
                        .write("main", move |state| {
                            let n = match state.collection(&ns("n")).unwrap() {
                                Some(c) => c
                                    .get(&Bson::Int64(0))
                                    .unwrap()
                                    .map_or(0, |d| d.get_i64("v").unwrap()),
                                None => 0,
                            };
                            Ok::<_, ()>((vec![put("n", 0, n + 1), put("a", id, n + 1)], ()))
                        })
                        .await;
                    if r.is_ok() {
                        acked.push(id);
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert_eq!(
        failpoints::fired(failpoints::EMBEDDED_FSYNC_ERROR),
        fired + 1
    );
    assert!(
        !acked.is_empty() && acked.len() < 640,
        "{} acked",
        acked.len()
    );
    drop(wal);
    failpoints::clear_all();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    let state = flat(&head);
    let docs = &state["a"];
    for id in &acked {
        assert!(docs.contains_key(id), "acknowledged write {id} lost");
    }
    // No commit that was not acknowledged survived (the store cut them),
    // and no write was applied on a state that missed another.
    assert_eq!(docs.len(), acked.len());
    assert_eq!(state["n"][&0], acked.len() as i64);
    let mut values: Vec<i64> = docs.values().copied().collect();
    values.sort();
    assert_eq!(values, (1..=acked.len() as i64).collect::<Vec<_>>());
}
