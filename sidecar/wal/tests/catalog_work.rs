//! Catalog work never reads documents (issue 17 item 7): a handle that does
//! not serve a branch (the operator's case) creates branches from it and
//! deletes branches reading only positions — no snapshot, no page of
//! commits beyond the one last commit checked for a seal — so it costs
//! the same for an empty parent and a large one. Observed through a
//! decorator that counts what the real embedded store is asked.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use argon_wal::{ReadPoint, Seq, Wal, WalOptions};
use common::counting::Counting;
use common::*;

#[tokio::test]
async fn creating_and_deleting_branches_reads_no_documents() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        snapshot_every: 50,
        ..WalOptions::default()
    };
    {
        // A writer fills main (and a branch of it) with 200 commits.
        let writer = embedded(dir.path(), options.clone()).await;
        for i in 0..200 {
            commit(&writer, "main", vec![put("a", i, i), put("b", i, -i)]).await;
        }
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
