//! Property test: random writes over a random tree of branches, with forks
//! at past points, resets and deletes, give exactly what a reference model
//! of plain `BTreeMap`s gives, at every point of every branch. Snapshots are
//! taken every few commits, so reads mix snapshot + replay with full replay.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

use argon_wal::materialized::{Materialized, MaterializedOptions};
use argon_wal::{ReadPoint, WalOptions};
use common::model::*;
use common::*;
use proptest::prelude::*;
use std::sync::Arc;

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_reference_model(actions in prop::collection::vec(action(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let options = WalOptions { snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(3), ..WalOptions::default() };
            let wal = embedded(dir.path(), options.clone()).await;
            let mut model = fresh_model();
            for a in &actions {
                step(&wal, &mut model, a).await;
            }
            check(&wal, &model).await;
            drop(wal);
            // A fresh handle (no in-memory state: snapshots + replay from disk) agrees.
            let reopened = embedded(dir.path(), options).await;
            check(&reopened, &model).await;
        });
    }

    /// The materialized store, caught up from the log on demand, reads
    /// like the engine at every point: while the writes go on (a view of the
    /// branch just written), at the end (every point), after a restart of
    /// both (catch-up resumes at each incarnation's applied marker) and
    /// from an empty store (rebuilt from the log alone).
    #[test]
    fn materialized_views_match_the_model(actions in prop::collection::vec(action(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let kv = tempfile::tempdir().unwrap();
            let open_kv = |path: &std::path::Path| {
                Arc::new(Materialized::open(path, MaterializedOptions::with_budget(8 << 20)).unwrap())
            };
            let options = |m: Arc<Materialized>| WalOptions {
                snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(3),
                materialized: Some(m),
                ..WalOptions::default()
            };
            let wal = embedded(dir.path(), options(open_kv(kv.path()))).await;
            let store = wal.materialized().unwrap().clone();
            let mut model = fresh_model();
            for a in &actions {
                step(&wal, &mut model, a).await;
                if let Action::Write(..) = a {
                    let (name, hist) = model.branches.iter().max_by_key(|(_, h)| h.len()).unwrap();
                    let view = wal.materialized_view(name, ReadPoint::Head).await.unwrap();
                    prop_assert_eq!(&flat_view(&store, &view), hist.last().unwrap(), "head of {}", name);
                }
            }
            check_materialized(&wal, &model).await;
            drop((wal, store));
            let reopened = embedded(dir.path(), options(open_kv(kv.path()))).await;
            check_materialized(&reopened, &model).await;
            drop(reopened);
            let empty = tempfile::tempdir().unwrap();
            let rebuilt = embedded(dir.path(), options(open_kv(empty.path()))).await;
            check_materialized(&rebuilt, &model).await;
            Ok(())
        })?;
    }

}

/// The committer's own commits reach the store without a log read: once
/// the background apply has caught up with 60 writes over a fork, views of
/// every point of both branches read nothing from the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_commits_are_applied_without_reading_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let kv = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Materialized::open(kv.path(), MaterializedOptions::with_budget(8 << 20)).unwrap());
    let counting = common::counting::Counting::new(embedded_store(dir.path()).await);
    let options = WalOptions {
        materialized: Some(Arc::clone(&store)),
        ..WalOptions::default()
    };
    let wal = argon_wal::Wal::open(counting.clone(), "proj", options)
        .await
        .unwrap();
    for i in 0..30 {
        commit(&wal, "main", vec![put("a", i, i)]).await;
    }
    wal.create_branch("dev", "main", ReadPoint::Seq(argon_wal::Seq(20)))
        .await
        .unwrap();
    for i in 0..30 {
        commit(&wal, "dev", vec![put("b", i, i), del("a", i)]).await;
    }
    let project = wal.materialized_project().unwrap();
    let (main, dev) = (
        wal.branch("main").await.unwrap().id,
        wal.branch("dev").await.unwrap().id,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.applied(project, main).unwrap().map(|a| a.0.0) != Some(30)
        || store.applied(project, dev).unwrap().map(|a| a.0.0) != Some(30)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the appended commits were never applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = counting.reads().1;
    let mut views = Vec::new();
    for (name, head) in [("main", 30u64), ("dev", 30)] {
        for s in 0..=head {
            let at = ReadPoint::Seq(argon_wal::Seq(s));
            views.push((name, at, wal.materialized_view(name, at).await.unwrap()));
        }
    }
    assert_eq!(
        counting.reads().1,
        before,
        "views read commits from the log"
    );
    for (name, at, view) in views {
        let state = wal.read(name, at).await.unwrap();
        assert_eq!(flat_view(&store, &view), flat(&state), "{name} at {at:?}");
    }
}
