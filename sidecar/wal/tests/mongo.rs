//! The mongodb store against a real FerretDB (v1.24, SQLite backend).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

use crate::common;

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

/// Two handles (two operators, or an operator and a sidecar) each append
/// a burst of catalog changes to one project at once: their groups collide
/// on catalog seqs, so part of a group is accepted and the rest is built
/// again on what the other wrote. Every name ends up created exactly once
/// with a distinct id, the names both asked for are refused to one of them.
#[tokio::test]
async fn two_handles_appending_catalog_bursts_at_once() {
    let server = FerretDb::start().await.unwrap();
    let a = mongo(&server, "burst", WalOptions::default()).await;
    let b = mongo(&server, "burst", WalOptions::default()).await;
    let names = |own: &str| -> Vec<String> {
        (0..30)
            .map(|i| format!("{own}{i}"))
            .chain((0..10).map(|i| format!("shared{i}")))
            .collect()
    };
    let (na, nb) = (names("a"), names("b"));
    let (ra, rb) = tokio::join!(burst(&a, &na), burst(&b, &nb));
    let mut created = std::collections::BTreeMap::new();
    for (name, result) in na.iter().zip(ra).chain(nb.iter().zip(rb)) {
        match result {
            Ok(info) => assert!(
                created.insert(name.clone(), info.id).is_none(),
                "{name} created twice"
            ),
            Err(WalError::BranchExists { .. }) if name.starts_with("shared") => {}
            Err(e) => panic!("{name}: {e}"),
        }
    }
    assert_eq!(created.len(), 70);
    let ids: std::collections::BTreeSet<_> = created.values().collect();
    assert_eq!(ids.len(), 70, "ids are distinct");
    let third = mongo(&server, "burst", WalOptions::default()).await;
    let listed = third.list_branches().await.unwrap();
    assert_eq!(listed.len(), 71, "main and the 70");
    for info in listed.iter().filter(|i| i.name.as_str() != "main") {
        assert_eq!(created.get(info.name.as_str()), Some(&info.id));
    }
}

/// Creates every branch of `names` from main's head at once.
async fn burst(wal: &Wal, names: &[String]) -> Vec<Result<argon_wal::BranchInfo, WalError>> {
    futures::future::join_all(
        names
            .iter()
            .map(|n| wal.create_branch(n, "main", ReadPoint::Head)),
    )
    .await
}

/// The store's side of a grouped catalog append: records of consecutive
/// seqs go in one ordered insert, and a seq another process took stops
/// it there, answering how many were accepted before it (the engine
/// builds the rest again); a taken first seq is a conflict.
#[tokio::test]
async fn a_catalog_group_stops_at_a_taken_seq() {
    use argon_wal::record::{CatalogEvent, CatalogRecord};
    let server = FerretDb::start().await.unwrap();
    let store: Arc<dyn LogStore> = MongoStore::connect(server.uri(), "argon_wal")
        .await
        .unwrap();
    let record = |seq: u64, branch: &str| CatalogRecord {
        seq: Seq(seq),
        time: argon_wal::CommitTime(seq as i64),
        event: CatalogEvent::Access(argon_wal::AccessEvent::Protect {
            branch: argon_wal::BranchName::parse(branch).unwrap(),
            protected: true,
        }),
    };
    // Another process took seq 3.
    assert_eq!(
        store
            .append_catalog("group", &[record(3, "theirs")])
            .await
            .unwrap(),
        1
    );
    let ours: Vec<CatalogRecord> = (1..=5).map(|s| record(s, "ours")).collect();
    assert_eq!(store.append_catalog("group", &ours).await.unwrap(), 2);
    match store.append_catalog("group", &ours[2..]).await {
        Err(WalError::CatalogConflict { seq, .. }) => assert_eq!(seq, Seq(3)),
        other => panic!("{other:?}"),
    }
    let stored = store.read_catalog("group", Seq(0)).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|r| r.seq.0).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(stored[2], record(3, "theirs"));
    assert_eq!(
        store.append_catalog("group", &ours[3..]).await.unwrap(),
        2,
        "4 and 5 follow"
    );
}
