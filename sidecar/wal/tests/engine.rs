//! Engine behaviour on the embedded store: branches, time travel, reset,
//! diff, snapshots, typed errors, restart and concurrent handles.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_wal::{
    BranchState, Clock, CommitTime, EmbeddedStore, LogStore, ReadPoint, Seq, Wal, WalError,
    WalOptions, WriteError,
};
use bson::{Bson, doc};
use common::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A clock that advances 10 ms per reading, so every commit has its own time.
fn ticking() -> Clock {
    let t = Arc::new(AtomicI64::new(1_000_000));
    Clock::from_fn(move || CommitTime(t.fetch_add(10, Ordering::SeqCst)))
}

fn opts() -> WalOptions {
    WalOptions {
        clock: ticking(),
        snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(4),
        ..WalOptions::default()
    }
}

fn m(pairs: &[(&str, &[(i64, i64)])]) -> BTreeMap<String, BTreeMap<i64, i64>> {
    pairs
        .iter()
        .map(|(c, docs)| (c.to_string(), docs.iter().copied().collect()))
        .collect()
}

#[tokio::test]
async fn write_read_and_time_travel() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    let c1 = commit(&wal, "main", vec![put("a", 1, 10)]).await;
    let c2 = commit(&wal, "main", vec![put("a", 2, 20), put("b", 1, 1)]).await;
    let c3 = commit(&wal, "main", vec![del("a", 1)]).await;
    assert_eq!((c1.seq, c2.seq, c3.seq), (Seq(1), Seq(2), Seq(3)));
    assert!(c1.time < c2.time && c2.time < c3.time);

    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(3));
    assert_eq!(flat(&head), m(&[("a", &[(2, 20)]), ("b", &[(1, 1)])]));
    let at1 = wal.read("main", ReadPoint::Seq(Seq(1))).await.unwrap();
    assert_eq!(flat(&at1), m(&[("a", &[(1, 10)])]));
    // By time: the newest commit at or before it.
    let t = wal
        .read("main", ReadPoint::Time(CommitTime(c2.time.0 + 1)))
        .await
        .unwrap();
    assert_eq!(t.seq(), Seq(2));
    let before = wal
        .read("main", ReadPoint::Time(CommitTime(0)))
        .await
        .unwrap();
    assert_eq!(before.seq(), Seq(0));
    assert!(flat(&before).is_empty());

    // _id compares by value across numeric types.
    let coll = head.collection(&ns("a")).unwrap().unwrap();
    assert_eq!(
        coll.get(&Bson::Int32(2))
            .unwrap()
            .unwrap()
            .get_i64("v")
            .unwrap(),
        20
    );
    assert_eq!(
        coll.get(&Bson::Double(2.0))
            .unwrap()
            .unwrap()
            .get_i64("v")
            .unwrap(),
        20
    );
    assert_eq!(coll.indexes()[0].get_str("name").unwrap(), "_id_");

    let info = wal.log_info("main").await.unwrap();
    assert_eq!(info.commits, 3);
    assert_eq!(info.first.unwrap().seq, Seq(1));
    assert_eq!(info.last.unwrap(), c3);
    assert!(info.bytes > 0);

    let d = wal
        .diff("main", ReadPoint::Seq(Seq(1)), ReadPoint::Head)
        .await
        .unwrap();
    assert_eq!((d.added(), d.removed(), d.changed()), (2, 1, 0));
}

#[tokio::test]
async fn branches_fork_at_past_points_and_stay_independent() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    commit(&wal, "main", vec![put("a", 1, 1)]).await;
    let c2 = commit(&wal, "main", vec![put("a", 1, 2)]).await;
    commit(&wal, "main", vec![put("a", 1, 3)]).await;

    let dev = wal
        .create_branch("dev", "main", ReadPoint::Seq(Seq(1)))
        .await
        .unwrap();
    assert_eq!(dev.parent.as_ref().unwrap().as_str(), "main");
    assert_eq!(dev.fork_seq, Some(Seq(1)));
    assert_eq!(dev.head_seq, Seq(0));
    let at_time = wal
        .create_branch("at-time", "main", ReadPoint::Time(c2.time))
        .await
        .unwrap();
    assert_eq!(at_time.fork_seq, Some(Seq(2)));

    commit(&wal, "dev", vec![put("a", 2, 9)]).await;
    commit(&wal, "main", vec![put("a", 3, 3)]).await;
    let sub = wal
        .create_branch("sub", "dev", ReadPoint::Head)
        .await
        .unwrap();
    assert_eq!(
        sub.lineage
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>(),
        vec!["dev", "main"]
    );

    let dev_head = wal.read("dev", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&dev_head), m(&[("a", &[(1, 1), (2, 9)])]));
    assert_eq!(
        flat(&wal.read("at-time", ReadPoint::Head).await.unwrap()),
        m(&[("a", &[(1, 2)])])
    );
    assert_eq!(
        flat(&wal.read("main", ReadPoint::Head).await.unwrap()),
        m(&[("a", &[(1, 3), (3, 3)])])
    );
    assert_eq!(
        flat(&wal.read("sub", ReadPoint::Head).await.unwrap()),
        flat(&dev_head)
    );

    let names: Vec<String> = wal
        .list_branches()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name.to_string())
        .collect();
    assert_eq!(names, vec!["at-time", "dev", "main", "sub"]);

    // Delete: refused with children, allowed with force; the child still reads.
    let e = wal.delete_branch("dev", false).await.unwrap_err();
    assert!(matches!(e, WalError::HasChildren { .. }), "{e}");
    wal.delete_branch("dev", true).await.unwrap();
    assert!(matches!(
        wal.read("dev", ReadPoint::Head).await.unwrap_err(),
        WalError::UnknownBranch { .. }
    ));
    assert!(wal.branch("dev").await.unwrap().deleted);
    assert_eq!(
        flat(&wal.read("sub", ReadPoint::Head).await.unwrap()),
        flat(&dev_head)
    );
    assert!(matches!(
        wal.delete_branch("main", true).await.unwrap_err(),
        WalError::Protected { .. }
    ));
    // The name can be used again.
    wal.create_branch("dev", "main", ReadPoint::Head)
        .await
        .unwrap();
}

/// A clock that stands still: commit times must still strictly increase
/// along every branch's history (forks and resets included), so that a
/// commit's time names exactly that commit.
#[tokio::test]
async fn commit_times_strictly_increase_with_a_clock_that_stands_still() {
    let dir = tempfile::tempdir().unwrap();
    let frozen = WalOptions {
        clock: Clock::from_fn(|| CommitTime(5_000)),
        ..WalOptions::default()
    };
    let wal = embedded(dir.path(), frozen).await;
    let mut main = Vec::new();
    for i in 0..3 {
        main.push(commit(&wal, "main", vec![put("a", i, i)]).await);
    }
    // Forked at main's seq 1: the child's first commit is after that point.
    let dev = wal
        .create_branch("dev", "main", ReadPoint::Seq(Seq(1)))
        .await
        .unwrap();
    assert_eq!(dev.head_time, main[0].time);
    let d1 = commit(&wal, "dev", vec![put("d", 1, 1)]).await;
    assert!(d1.time > main[0].time);
    let d2 = commit(&wal, "dev", vec![put("d", 2, 2)]).await;
    assert!(d2.time > d1.time);
    // Reset: the new incarnation's commits come after the seal, which comes
    // after the old head.
    main.push(commit(&wal, "main", vec![put("a", 9, 9)]).await);
    let old_head = main[3];
    wal.reset_branch("main", ReadPoint::Seq(Seq(1)), false, None)
        .await
        .unwrap();
    let after_reset = commit(&wal, "main", vec![put("a", 7, 7)]).await;
    assert_eq!(after_reset.seq, Seq(2));
    assert!(after_reset.time > CommitTime(old_head.time.0 + 1));

    for pair in main.windows(2) {
        assert!(pair[0].time < pair[1].time, "{pair:?}");
    }
    // Every commit time names exactly its commit.
    for (branch, commits) in [("dev", vec![d1, d2]), ("main", vec![main[0], after_reset])] {
        for c in commits {
            let s = wal.read(branch, ReadPoint::Time(c.time)).await.unwrap();
            assert_eq!((s.seq(), s.time()), (c.seq, c.time), "{branch}");
            let before = wal
                .read(branch, ReadPoint::Time(CommitTime(c.time.0 - 1)))
                .await
                .unwrap();
            assert!(before.seq() < c.seq, "{branch}: {c:?}");
        }
    }
    // The fork point's time reads the fork point on the child.
    let at_fork = wal
        .read("dev", ReadPoint::Time(main[0].time))
        .await
        .unwrap();
    assert_eq!(at_fork.seq(), Seq(0));
    assert_eq!(flat(&at_fork), m(&[("a", &[(0, 0)])]));
}

#[tokio::test]
async fn reset_previews_backs_up_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    commit(&wal, "main", vec![put("a", 1, 1)]).await;
    commit(&wal, "main", vec![put("a", 2, 2)]).await;
    commit(&wal, "main", vec![put("a", 1, 5), put("b", 7, 7)]).await;
    wal.create_branch("child", "main", ReadPoint::Head)
        .await
        .unwrap();
    let child_before = flat(&wal.read("child", ReadPoint::Head).await.unwrap());

    let preview = wal
        .reset_branch("main", ReadPoint::Seq(Seq(1)), true, None)
        .await
        .unwrap();
    assert!(!preview.applied);
    let a = preview
        .preview
        .collections
        .iter()
        .find(|c| c.ns == ns("a"))
        .unwrap();
    assert_eq!(a.removed, vec![Bson::Int64(2)]);
    assert_eq!(a.changed, vec![Bson::Int64(1)]);
    assert_eq!(preview.preview.removed(), 2);
    // A dry run changes nothing.
    assert_eq!(
        wal.read("main", ReadPoint::Head).await.unwrap().seq(),
        Seq(3)
    );

    let done = wal
        .reset_branch("main", ReadPoint::Seq(Seq(1)), false, Some("main-backup"))
        .await
        .unwrap();
    assert!(done.applied);
    assert_eq!(done.preview, preview.preview);
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(head.seq(), Seq(1));
    assert_eq!(flat(&head), m(&[("a", &[(1, 1)])]));
    let backup = done.backup.unwrap();
    assert_eq!(backup.name.as_str(), "main-backup");
    assert_eq!(
        flat(&wal.read("main-backup", ReadPoint::Head).await.unwrap()),
        m(&[("a", &[(1, 5), (2, 2)]), ("b", &[(7, 7)])])
    );
    // A child forked before the reset still sees the old history.
    assert_eq!(
        flat(&wal.read("child", ReadPoint::Head).await.unwrap()),
        child_before
    );

    // New commits continue after the target; old seq numbers now mean the new history.
    let c = commit(&wal, "main", vec![put("c", 1, 1)]).await;
    assert_eq!(c.seq, Seq(2));
    assert_eq!(
        flat(&wal.read("main", ReadPoint::Seq(Seq(2))).await.unwrap()),
        m(&[("a", &[(1, 1)]), ("c", &[(1, 1)])])
    );
    let info = wal.branch("main").await.unwrap();
    assert_eq!((info.start_seq, info.head_seq), (Seq(1), Seq(2)));
    // Reset again, to before the first reset's target.
    wal.reset_branch("main", ReadPoint::Seq(Seq(0)), false, None)
        .await
        .unwrap();
    assert!(flat(&wal.read("main", ReadPoint::Head).await.unwrap()).is_empty());
}

#[tokio::test]
async fn typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    commit(&wal, "main", vec![put("a", 1, 1)]).await;

    for bad in ["", "Main", "-x", "a/b", &"x".repeat(64)] {
        let e = wal
            .create_branch(bad, "main", ReadPoint::Head)
            .await
            .unwrap_err();
        assert!(
            matches!(e, WalError::InvalidBranchName { .. }),
            "{bad:?}: {e}"
        );
    }
    let e = wal
        .create_branch("x", "nope", ReadPoint::Head)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalError::UnknownBranch { ref name } if name == "nope"),
        "{e}"
    );
    let e = wal
        .create_branch("x", "main", ReadPoint::Seq(Seq(9)))
        .await
        .unwrap_err();
    assert!(
        matches!(e, WalError::PointBeyondHead { head: Seq(1), .. }),
        "{e}"
    );
    let e = wal.read("main", ReadPoint::Seq(Seq(2))).await.unwrap_err();
    assert!(matches!(e, WalError::PointBeyondHead { .. }), "{e}");
    let e = wal
        .reset_branch("main", ReadPoint::Seq(Seq(5)), false, None)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::PointBeyondHead { .. }), "{e}");
    let e = wal
        .reset_branch("ghost", ReadPoint::Seq(Seq(0)), false, None)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::UnknownBranch { .. }), "{e}");
    wal.create_branch("x", "main", ReadPoint::Head)
        .await
        .unwrap();
    let e = wal
        .create_branch("x", "main", ReadPoint::Head)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::BranchExists { .. }), "{e}");
    let e = wal
        .read("x", ReadPoint::Time(CommitTime(5)))
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::PointBeforeBranch { .. }), "{e}");
    let e = wal
        .reset_branch("x", ReadPoint::Time(CommitTime(5)), false, None)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::PointBeforeBranch { .. }), "{e}");
    let e = wal
        .reset_branch("main", ReadPoint::Head, false, Some("x"))
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::BranchExists { .. }), "{e}");

    // A put whose document _id is not the op's id is refused, and only that write.
    let r = wal
        .write("main", |_| {
            Ok::<_, ()>((
                vec![argon_wal::DocOp::Put {
                    ns: ns("a"),
                    id: Bson::Int32(1),
                    doc: argon_wal::rawdoc::encode(&doc! {"_id": 2}).expect("encodes"),
                }],
                (),
            ))
        })
        .await;
    assert!(
        matches!(r, Err(WriteError::Wal(WalError::InvalidOp(_)))),
        "{r:?}"
    );
    // A resolver's refusal comes back as Rejected; an empty write commits nothing.
    let r = wal.write("main", |_| Err::<(Vec<_>, ()), _>("no")).await;
    assert!(matches!(r, Err(WriteError::Rejected("no"))));
    let (_, info) = wal
        .write("main", |_| Ok::<_, ()>((vec![], ())))
        .await
        .unwrap();
    assert_eq!(info.seq, Seq(1));
}

/// States at every point of a branch, read through `wal`.
async fn all_points(wal: &Wal, branch: &str) -> Vec<BranchState> {
    let head = wal.read(branch, ReadPoint::Head).await.unwrap().seq();
    let mut out = Vec::new();
    for s in 0..=head.0 {
        out.push(wal.read(branch, ReadPoint::Seq(Seq(s))).await.unwrap());
    }
    out
}

#[tokio::test]
async fn snapshot_plus_replay_equals_full_replay_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (with_snapshots, dev_with) = {
        let wal = embedded(dir.path(), opts()).await;
        for i in 0..23 {
            commit(
                &wal,
                "main",
                vec![put("a", i % 5, i), del("a", (i + 2) % 5)],
            )
            .await;
            if i == 10 {
                wal.create_branch("dev", "main", ReadPoint::Seq(Seq(7)))
                    .await
                    .unwrap();
            }
            if i > 10 {
                commit(&wal, "dev", vec![put("d", i, i)]).await;
            }
        }
        assert_eq!(wal.snapshot_now("main").await.unwrap(), Seq(23));
        // Let background snapshots land before the store closes.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        (
            all_points(&wal, "main").await,
            all_points(&wal, "dev").await,
        )
    };
    assert!(
        std::fs::read_dir(dir.path().join("snapshots/proj"))
            .unwrap()
            .count()
            >= 1,
        "snapshots were written"
    );
    // Reopen with the snapshots (fresh process state: no in-memory checkpoints).
    let reopened = embedded(dir.path(), opts()).await;
    assert_eq!(all_points(&reopened, "main").await, with_snapshots);
    assert_eq!(all_points(&reopened, "dev").await, dev_with);
    drop(reopened);
    // And without any snapshot: full replay gives the same states.
    std::fs::remove_dir_all(dir.path().join("snapshots")).unwrap();
    let replay = embedded(
        dir.path(),
        WalOptions {
            snapshot_policy: argon_wal::SnapshotPolicy::Never,
            ..opts()
        },
    )
    .await;
    let main = all_points(&replay, "main").await;
    assert_eq!(main, with_snapshots);
    for (a, b) in main.iter().zip(&with_snapshots) {
        assert_eq!((a.seq(), a.time()), (b.seq(), b.time()));
    }
    assert_eq!(all_points(&replay, "dev").await, dev_with);
}

/// `(seq, bytes)` of every snapshot of `main` in an embedded store at
/// `dir`, once the background snapshot tasks have stopped adding any.
async fn main_snapshots(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let list = || {
        let mut out = Vec::new();
        for branch in std::fs::read_dir(dir.join("snapshots/proj"))
            .into_iter()
            .flatten()
        {
            for file in std::fs::read_dir(branch.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                if path.extension().is_some_and(|e| e == "snap") {
                    let seq = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
                    out.push((seq, std::fs::metadata(&path).unwrap().len()));
                }
            }
        }
        out.sort();
        out
    };
    let mut last = list();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = list();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The default policy snapshots by bytes logged, not by commits (issue 17
/// item 5): a snapshot is due once the log has grown by the last one's
/// size. Under an insert-only load the state, and so the spacing, grows:
/// snapshots come at geometrically spaced points, each only after the log
/// grew by the size of the one before, and a process that opens the branch
/// learns that size from the snapshot it loads.
#[tokio::test]
async fn snapshots_follow_the_bytes_logged() {
    const FLOOR: u64 = 16 << 10;
    let policy = argon_wal::SnapshotPolicy::LogBytes {
        floor: FLOOR,
        percent: 100,
    };
    let options = || WalOptions {
        snapshot_policy: policy,
        ..opts()
    };
    // One ~1 KiB document per commit: each costs 1 KiB of body or a little
    // more, plus the per-commit cost.
    let pad = "x".repeat(1000);
    let insert = |i: i64| argon_wal::DocOp::Put {
        ns: ns("a"),
        id: Bson::Int64(i),
        doc: argon_wal::rawdoc::encode(&doc! {"_id": i, "pad": &pad}).unwrap(),
    };
    let min_cost = 1000 + argon_wal::PER_COMMIT_COST;
    let max_cost = 1200 + argon_wal::PER_COMMIT_COST;
    let dir = tempfile::tempdir().unwrap();
    const COMMITS: i64 = 1500;
    {
        let wal = embedded(dir.path(), options()).await;
        for i in 0..COMMITS {
            commit(&wal, "main", vec![insert(i)]).await;
        }
    }
    let snaps = main_snapshots(dir.path()).await;
    // A commit count of 1,000 would have given one; bytes give one per
    // doubling of the state from the floor (16 KiB .. 1.5 MiB).
    assert!(snaps.len() >= 4, "{snaps:?}");
    let (first_seq, _) = snaps[0];
    assert!(first_seq * max_cost >= FLOOR, "{snaps:?}");
    for pair in snaps.windows(2) {
        let ((a, size_a), (b, _)) = (pair[0], pair[1]);
        // Due only once the log grew by the size of the one before.
        assert!((b - a) * max_cost >= size_a.max(FLOOR), "{snaps:?}");
    }
    // The log after the newest snapshot is about one snapshot at most (one
    // more may have been owed while the last was being written).
    let (last_seq, last_size) = *snaps.last().unwrap();
    let tail = (COMMITS as u64 - last_seq) * min_cost;
    assert!(tail <= 2 * last_size.max(FLOOR), "{snaps:?}");
    // Snapshots written stay within the log written plus one snapshot.
    let written: u64 = snaps.iter().map(|(_, size)| size).sum();
    assert!(
        written <= COMMITS as u64 * max_cost + last_size,
        "{snaps:?}"
    );

    // Reopened, the handle learns the newest snapshot's size when it loads
    // it: far fewer bytes than that are not due (the floor alone would be).
    {
        let wal = embedded(dir.path(), options()).await;
        let more = (last_size / 4 / max_cost) as i64;
        assert!(
            more as u64 * min_cost > 2 * FLOOR,
            "the test needs a larger state"
        );
        for i in COMMITS..COMMITS + more {
            commit(&wal, "main", vec![insert(i)]).await;
        }
    }
    let after = main_snapshots(dir.path()).await;
    assert_eq!(after, snaps, "no snapshot is due yet after the reopen");
}

#[tokio::test]
async fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    let e = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(e, WalError::Locked { .. }), "{e}");
}

#[tokio::test]
async fn two_handles_on_one_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
    let a = Wal::open(store.clone(), "proj", WalOptions::default())
        .await
        .unwrap();
    let b = Wal::open(store, "proj", WalOptions::default())
        .await
        .unwrap();
    two_handles(a, b).await;
}

#[tokio::test]
async fn concurrent_writers_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), WalOptions::default()).await;
    let mut tasks = Vec::new();
    for w in 0..32 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                commit(&wal, "main", vec![put("g", w * 100 + i, i)]).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(
        head.collection(&ns("g")).unwrap().unwrap().len().unwrap(),
        320
    );
    // Packing is not guaranteed, but it must never lose or duplicate a write.
    assert!(head.seq().0 <= 320);
}

/// Writes resolve on the handle's local head without asking the store first
/// (optimistic); a write that everyone refused must still not rest on a
/// stale head: here `b` still sees `_id` 1, which `a` deleted.
#[tokio::test]
async fn a_refusal_is_never_based_on_a_stale_head() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
    let a = Wal::open(store.clone(), "proj", opts()).await.unwrap();
    let b = Wal::open(store, "proj", opts()).await.unwrap();
    commit(&a, "main", vec![put("u", 1, 1)]).await;
    commit(&b, "main", vec![put("u", 2, 2)]).await; // b's head now holds _id 1
    commit(&a, "main", vec![del("u", 1)]).await;
    let (_, info) = b
        .write("main", |state| {
            let coll = state.collection(&ns("u")).unwrap();
            if coll.is_some_and(|c| c.get(&Bson::Int64(1)).unwrap().is_some()) {
                return Err("duplicate key");
            }
            Ok((vec![put("u", 1, 3)], ()))
        })
        .await
        .unwrap();
    assert_eq!(info.seq, Seq(4));
    let head = a.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&head), m(&[("u", &[(1, 3), (2, 2)])]));
}

/// Catalog appends are optimistic too (no store round trip before the
/// append): a stale catalog may cost a conflict, never a wrong answer. `b`
/// still believes `x` is live after `a` deleted it, and knows nothing of
/// `y`, which `a` created.
#[tokio::test]
async fn a_branch_refusal_is_never_based_on_a_stale_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
    let a = Wal::open(store.clone(), "proj", opts()).await.unwrap();
    let b = Wal::open(store, "proj", opts()).await.unwrap();
    a.create_branch("x", "main", ReadPoint::Head).await.unwrap();
    b.branch("x").await.unwrap();
    a.delete_branch("x", false).await.unwrap();
    a.create_branch("y", "main", ReadPoint::Head).await.unwrap();

    // Refused on b's catalog (x is live there): checked again, then created.
    let x = b.create_branch("x", "main", ReadPoint::Head).await.unwrap();
    // Accepted on b's catalog (no y there): the append conflicts, and the
    // refreshed catalog refuses it.
    let e = b
        .create_branch("y", "main", ReadPoint::Head)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::BranchExists { .. }), "{e}");
    assert_eq!(a.branch("x").await.unwrap().id, x.id);
    let names: Vec<String> = a
        .list_branches()
        .await
        .unwrap()
        .into_iter()
        .filter(|i| !i.deleted)
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// A burst of creations through one handle (an operator applying a
/// directory of branches): each gets its own incarnation, none is lost,
/// and each reply describes the branch it created.
#[tokio::test]
async fn a_burst_of_branch_creations_gets_distinct_branches() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    commit(&wal, "main", vec![put("c", 1, 1)]).await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let wal = wal.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("b{i}");
            let info = wal
                .create_branch(&name, "main", ReadPoint::Head)
                .await
                .unwrap();
            assert_eq!(info.name.as_str(), name);
            assert_eq!(info.parent.as_ref().map(|p| p.as_str()), Some("main"));
            info.id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    let other = wal.clone();
    for i in 0..40 {
        let state = other.read(&format!("b{i}"), ReadPoint::Head).await.unwrap();
        assert_eq!(flat(&state), m(&[("c", &[(1, 1)])]));
    }
}

/// A reset retried with the same request (an operator that crashed between
/// the reset and its status update) changes nothing the second time, even
/// after writes on the new history; a new request resets again.
#[tokio::test]
async fn a_reset_request_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    commit(&wal, "main", vec![put("a", 1, 1)]).await;
    commit(&wal, "main", vec![put("a", 2, 2)]).await;
    let first = wal
        .reset_branch_once("main", ReadPoint::Seq(Seq(1)), Some("before"), "uid-1/r1")
        .await
        .unwrap();
    assert!(first.applied && !first.already_applied);
    commit(&wal, "main", vec![put("a", 3, 3)]).await;
    // A restarted handle (the operator's next process) sees the request too.
    drop(wal);
    let wal = embedded(dir.path(), opts()).await;
    let again = wal
        .reset_branch_once("main", ReadPoint::Seq(Seq(1)), Some("before"), "uid-1/r1")
        .await
        .unwrap();
    assert!(again.applied && again.already_applied);
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&head), m(&[("a", &[(1, 1), (3, 3)])]));
    let other = wal
        .reset_branch_once("main", ReadPoint::Seq(Seq(1)), None, "uid-1/r2")
        .await
        .unwrap();
    assert!(other.applied && !other.already_applied);
    let head = wal.read("main", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&head), m(&[("a", &[(1, 1)])]));
}

/// A reset's preview made from the log (issue 17 item 7) equals the diff
/// of the two states it stands for, over random histories: inserts,
/// updates (some writing a document back unchanged), deletes (some of
/// absent documents), index and collection creations, and now and then a
/// dropped collection, which the log cannot follow (the states are then
/// compared instead, with the same answer).
#[tokio::test]
async fn a_reset_preview_from_the_log_equals_the_diff_of_the_states() {
    let dir = tempfile::tempdir().unwrap();
    let wal = embedded(dir.path(), opts()).await;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    const COMMITS: u64 = 120;
    for _ in 0..COMMITS {
        let mut ops = Vec::new();
        for _ in 0..1 + next(4) {
            let coll = ["a", "b", "c"][next(3) as usize];
            let id = next(12) as i64;
            ops.push(match next(20) {
                0..=9 => put(coll, id, next(3) as i64),
                10..=15 => del(coll, id),
                16 => argon_wal::DocOp::CreateIndex {
                    ns: ns(coll),
                    spec: doc! {"name": "v_1", "key": {"v": 1}},
                },
                17 | 18 => argon_wal::DocOp::CreateCollection {
                    ns: ns(coll),
                    options: doc! {},
                },
                _ if next(4) == 0 => argon_wal::DocOp::DropCollection { ns: ns(coll) },
                _ => put(coll, id, 7),
            });
        }
        commit(&wal, "main", ops).await;
    }
    for _ in 0..60 {
        let target = Seq(next(COMMITS + 1));
        let preview = wal
            .reset_branch("main", ReadPoint::Seq(target), true, None)
            .await
            .unwrap()
            .preview;
        let head = wal.read("main", ReadPoint::Head).await.unwrap();
        let then = wal.read("main", ReadPoint::Seq(target)).await.unwrap();
        let expected = argon_wal::diff::diff(&head, &then).unwrap();
        assert_eq!(preview, expected, "reset to {target}");
    }
}
