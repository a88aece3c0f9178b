//! Catalog work never reads documents (issue 17 item 7): a handle that does
//! not serve a branch (the operator's case) creates branches from it and
//! deletes branches reading only positions — no snapshot, no page of
//! commits beyond the one last commit checked for a seal — so it costs
//! the same for an empty parent and a large one. Observed through a
//! decorator that counts what the real embedded store is asked.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_wal::{ReadPoint, Seq, Wal, WalOptions};
use common::counting::Counting;
use common::*;

/// Snapshots at known points, so reads that would use one are counted.
fn options() -> WalOptions {
    WalOptions {
        snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(50),
        ..WalOptions::default()
    }
}

/// A handle on `dir` whose main holds 200 commits of two documents each.
async fn filled_main(dir: &std::path::Path, options: &WalOptions) -> Wal {
    let writer = embedded(dir, options.clone()).await;
    for i in 0..200 {
        commit(&writer, "main", vec![put("a", i, i), put("b", i, -i)]).await;
    }
    writer
}

#[tokio::test]
async fn creating_and_deleting_branches_reads_no_documents() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    {
        // A writer fills main (and a branch of it) with 200 commits.
        let writer = filled_main(dir.path(), &options).await;
        writer
            .create_branch("feature", "main", ReadPoint::Seq(Seq(120)))
            .await
            .unwrap();
        commit(&writer, "feature", vec![del("a", 3)]).await;
    }
    let store = embedded_store(dir.path()).await;
    let counting = Counting::new(store);
    let wal = Wal::open(counting.clone(), "proj", options).await.unwrap();

    // Forks at the head, at a past seq and at a past time; of a fork too.
    let at_head = wal
        .create_branch("dev", "main", ReadPoint::Head)
        .await
        .unwrap();
    assert_eq!(at_head.fork_seq, Some(Seq(200)));
    wal.create_branch("old", "main", ReadPoint::Seq(Seq(7)))
        .await
        .unwrap();
    let t = wal.branch("old").await.unwrap().head_time;
    wal.create_branch("then", "main", ReadPoint::Time(t))
        .await
        .unwrap();
    wal.create_branch("sub", "feature", ReadPoint::Head)
        .await
        .unwrap();
    // Deletes of a branch with commits and of one without.
    wal.delete_branch("feature", true).await.unwrap();
    wal.delete_branch("dev", false).await.unwrap();
    let (pages, commits, snapshots) = counting.reads();
    assert_eq!(
        (pages, snapshots),
        (0, 0),
        "no page of commits and no snapshot read"
    );
    assert!(
        commits <= 6,
        "one last commit per branch looked at: {commits}"
    );

    // What they made reads right (this loads documents, as a read must).
    let sub = wal.read("sub", ReadPoint::Head).await.unwrap();
    let a = &flat(&sub)["a"];
    assert_eq!((a.len(), a.contains_key(&3)), (119, false));
    let then = wal.read("then", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&then)["a"].len(), 7);
    assert!(wal.branch("feature").await.unwrap().deleted);
    assert!(wal.branch("dev").await.unwrap().deleted);
    // Writes to main after the fork at its head stay out of the fork.
    commit(&wal, "main", vec![put("a", 999, 1)]).await;
    let old = wal.read("old", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&old)["a"].len(), 7);
}

/// A reset reads what changed since its target, not the branch (issue 17
/// item 7): its preview is made from the log's commits after the target
/// (with their pre-images), so a handle that does not serve the branch
/// loads neither the head nor the target, whatever the branch holds. The
/// preview equals the one two states give, and the reset lands as before.
#[tokio::test]
async fn resetting_a_branch_reads_only_the_commits_after_its_target() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    {
        // 200 commits of data, then 10 that insert, update and delete.
        let writer = filled_main(dir.path(), &options).await;
        for i in 0..10 {
            commit(
                &writer,
                "main",
                vec![put("a", 1000 + i, 0), put("a", i, -1), del("b", i)],
            )
            .await;
        }
        // Written back unchanged: not a change.
        commit(&writer, "main", vec![put("a", 50, 50)]).await;
    }
    let store = embedded_store(dir.path()).await;
    let counting = Counting::new(store.clone());
    let wal = Wal::open(counting.clone(), "proj", options.clone())
        .await
        .unwrap();
    let states = Wal::open(store, "proj", options).await.unwrap();
    let expected = states
        .diff("main", ReadPoint::Head, ReadPoint::Seq(Seq(200)))
        .await
        .unwrap();
    assert_eq!(
        (expected.added(), expected.removed(), expected.changed()),
        (10, 10, 10)
    );

    let dry = wal
        .reset_branch("main", ReadPoint::Seq(Seq(200)), true, None)
        .await
        .unwrap();
    assert_eq!(dry.preview, expected);
    let applied = wal
        .reset_branch("main", ReadPoint::Seq(Seq(200)), false, Some("before"))
        .await
        .unwrap();
    assert!(applied.applied);
    assert_eq!(applied.preview, expected);
    let (pages, _, snapshots) = counting.reads();
    assert_eq!(
        (pages, snapshots),
        (0, 0),
        "no page of commits for replay and no snapshot read"
    );
    assert_eq!(
        counting.commits_with_pre_images(),
        2 * 11,
        "the 11 commits after the target, once per reset"
    );

    // The reset is what it was: main at the target, the old head kept.
    let main = wal.read("main", ReadPoint::Head).await.unwrap();
    let target = states.read("main", ReadPoint::Seq(Seq(200))).await.unwrap();
    assert_eq!(flat(&main), flat(&target));
    let before = wal.read("before", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&before)["a"].get(&1000), Some(&0));
}

/// A burst of branches forked from the head of one parent (the operator
/// creating many at once, through a handle that does not serve the
/// parent) asks the store for the parent's head a few times, not once per
/// branch, and not at all for each new branch's own head (its fork point):
/// every branch still forks at the head as it was during its creation.
#[tokio::test]
async fn a_burst_of_forks_shares_the_parents_head() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    drop(filled_main(dir.path(), &options).await);
    let store = embedded_store(dir.path()).await;
    let counting = Counting::with_head_latency(store.clone(), std::time::Duration::from_millis(20));
    let wal = Wal::open(counting.clone(), "proj", options.clone())
        .await
        .unwrap();
    let before = counting.head_lookups();
    let names: Vec<String> = (0..64).map(|i| format!("f{i}")).collect();
    let created = futures::future::join_all(
        names
            .iter()
            .map(|n| wal.create_branch(n, "main", ReadPoint::Head)),
    )
    .await;
    let lookups = counting.head_lookups() - before;
    assert!(lookups < 16, "64 forks looked up a head {lookups} times");
    for info in created {
        let info = info.unwrap();
        // Its own seqs start at 0: its head is its fork point.
        assert_eq!((info.fork_seq, info.head_seq), (Some(Seq(200)), Seq::ZERO));
    }
    // A fork made after main moves on forks at the new head: the shared
    // read is never one made before the call began.
    // (Another handle on the same store, as another process would be.)
    let writer = Wal::open(store, "proj", options).await.unwrap();
    commit(&writer, "main", vec![put("a", 500, 1)]).await;
    let late = wal
        .create_branch("late", "main", ReadPoint::Head)
        .await
        .unwrap();
    assert_eq!(late.fork_seq, Some(Seq(201)));
    let read = wal.read("late", ReadPoint::Head).await.unwrap();
    assert_eq!(flat(&read)["a"].get(&500), Some(&1));
}

/// A burst of catalog changes shares store round trips (the operator
/// creating many branches at once): 64 creations, 8 of one name and 16
/// protections queued together take a few appends, not 88, and each
/// answer is the one it would get alone: every name created once, the
/// other creations of the same name refused, the branch ids distinct,
/// and all of it in the store for a handle opened afterwards.
#[tokio::test]
async fn a_burst_of_catalog_changes_shares_store_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let options = options();
    let store = embedded_store(dir.path()).await;
    let counting = Counting::new(store);
    let wal = Wal::open(counting.clone(), "proj", options.clone())
        .await
        .unwrap();
    let before = counting.catalog_appends();
    let names: Vec<String> = (0..64)
        .map(|i| format!("b{i}"))
        .chain((0..8).map(|_| "twin".to_string()))
        .collect();
    let creations = futures::future::join_all(
        names
            .iter()
            .map(|n| wal.create_branch(n, "main", ReadPoint::Head)),
    );
    let protect = &names[..16];
    let protections = futures::future::join_all(protect.iter().map(|n| wal.set_protected(n, true)));
    let (created, protected) = tokio::join!(creations, protections);
    let appends = counting.catalog_appends() - before;
    assert!(
        appends < 20,
        "88 catalog changes took {appends} store appends"
    );
    let mut ids = std::collections::BTreeSet::new();
    let mut twins = (0, 0);
    for (name, result) in names.iter().zip(created) {
        match result {
            Ok(info) => {
                assert!(ids.insert(info.id), "{name}: id {} given twice", info.id);
                if name == "twin" {
                    twins.0 += 1;
                }
            }
            Err(argon_wal::WalError::BranchExists { .. }) if name == "twin" => twins.1 += 1,
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert_eq!((ids.len(), twins), (65, (1, 7)));
    // Protection is of a name: queued before the branch's creation or
    // after, it is written.
    for r in &protected {
        assert!(r.is_ok(), "{r:?}");
    }
    drop((wal, counting));
    let again = embedded(dir.path(), options).await;
    let listed = again.list_branches().await.unwrap();
    assert_eq!(listed.len(), 66, "main, 64 and the twin");
    let access = again.access().await.unwrap();
    let still = (0..16)
        .filter(|i| access.is_protected(&argon_wal::BranchName::parse(&format!("b{i}")).unwrap()))
        .count();
    assert_eq!(still, 16);
}
