//! The mongodb store against a real FerretDB (v1.24, SQLite backend).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use argon_testkit::FerretDb;
use argon_wal::{EmbeddedStore, LogStore, MongoStore, ReadPoint, Seq, Wal, WalError, WalOptions};
use common::model::*;
use common::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRng, TestRunner};
use std::sync::Arc;

async fn mongo(server: &FerretDb, project: &str, options: WalOptions) -> Wal {
    let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_wal")
        .await
        .unwrap();
    Wal::open(store, project, options).await.unwrap()
}

#[tokio::test]
async fn mongodb_store_against_ferretdb() {
    let server = FerretDb::start().await.unwrap();
    let options = WalOptions {
        snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(3),
        ..WalOptions::default()
    };
    let wal = mongo(&server, "p1", options.clone()).await;
    for i in 0..7 {
        commit(&wal, "main", vec![put("a", i, i), put("b", i, -i)]).await;
    }
    wal.create_branch("dev", "main", ReadPoint::Seq(Seq(4)))
        .await
        .unwrap();
    commit(&wal, "dev", vec![del("a", 0)]).await;
    let info = wal.log_info("main").await.unwrap();
    assert_eq!((info.commits, info.last.unwrap().seq), (7, Seq(7)));
    assert!(info.bytes > 0);
    assert_eq!(wal.snapshot_now("main").await.unwrap(), Seq(7));
    let out = wal
        .reset_branch("main", ReadPoint::Seq(Seq(2)), false, Some("old-main"))
        .await
        .unwrap();
    assert_eq!(out.preview.removed(), 10);

    // A second, independent handle sees the same branches and states
    // (reading through the stored snapshots and the log).
    let other = mongo(&server, "p1", options).await;
    for (branch, seq) in [("main", 2), ("dev", 1), ("old-main", 0)] {
        for s in 0..=seq {
            let a = wal.read(branch, ReadPoint::Seq(Seq(s))).await.unwrap();
            let b = other.read(branch, ReadPoint::Seq(Seq(s))).await.unwrap();
            assert_eq!(flat(&a), flat(&b), "{branch}@{s}");
        }
    }
    assert_eq!(
        flat(&other.read("old-main", ReadPoint::Head).await.unwrap())["a"].len(),
        7
    );
    // A branch created through one handle is refused a second time through the other.
    let e = other
        .create_branch("dev", "main", ReadPoint::Head)
        .await
        .unwrap_err();
    assert!(matches!(e, WalError::BranchExists { .. }), "{e}");
}

/// A handle with a materialized store catches it up from the mongodb log,
/// including the commits, forks and resets another process made.
#[tokio::test]
async fn materialized_views_follow_another_writer_of_the_store() {
    use argon_wal::materialized::{Materialized, MaterializedOptions};
    let server = FerretDb::start().await.unwrap();
    let writer = mongo(&server, "mat", WalOptions::default()).await;
    let kv = tempfile::tempdir().unwrap();
    let store =
        Arc::new(Materialized::open(kv.path(), MaterializedOptions::with_budget(8 << 20)).unwrap());
    let reader = mongo(
        &server,
        "mat",
        WalOptions {
            materialized: Some(Arc::clone(&store)),
            ..WalOptions::default()
        },
    )
    .await;
    let mut model = fresh_model();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &[7; 32]),
    );
    for round in 0..30 {
        let a = action().new_tree(&mut runner).unwrap().current();
        step(&writer, &mut model, &a).await;
        if round % 10 == 9 {
            check_materialized(&reader, &model).await;
        }
    }
    check_materialized(&reader, &model).await;
    // Views are refused without a store.
    assert!(
        writer
            .materialized_view("main", ReadPoint::Head)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn two_independent_handles_on_one_branch() {
    let server = FerretDb::start().await.unwrap();
    let a = mongo(&server, "race", WalOptions::default()).await;
    let b = mongo(&server, "race", WalOptions::default()).await;
    two_handles(a, b).await;
}

#[tokio::test]
async fn embedded_and_mongodb_stores_give_identical_states() {
    let server = FerretDb::start().await.unwrap();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = proptest::collection::vec(action(), 10..30);
    for case in 0..4 {
        let actions = strategy.new_tree(&mut runner).unwrap().current();
        let options = WalOptions {
            snapshot_policy: argon_wal::SnapshotPolicy::EveryCommits(4),
            ..WalOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn LogStore> = EmbeddedStore::open(dir.path()).unwrap();
        let emb = Wal::open(store, "same", options.clone()).await.unwrap();
        let mon = mongo(&server, &format!("same-{case}"), options).await;
        let (mut m1, mut m2) = (fresh_model(), fresh_model());
        for a in &actions {
            step(&emb, &mut m1, a).await;
            step(&mon, &mut m2, a).await;
        }
        check(&emb, &m1).await;
        check(&mon, &m2).await;
        for name in m1.branches.keys() {
            let head = emb.read(name, ReadPoint::Head).await.unwrap().seq();
            for s in 0..=head.0 {
                let x = emb.read(name, ReadPoint::Seq(Seq(s))).await.unwrap();
                let y = mon.read(name, ReadPoint::Seq(Seq(s))).await.unwrap();
                assert_eq!(x, y, "case {case}: {name}@{s}");
            }
        }
    }
}
