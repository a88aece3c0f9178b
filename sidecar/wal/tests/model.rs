//! Property test: random writes over a random tree of branches, with forks
//! at past points, resets and deletes, give exactly what a reference model
//! of plain `BTreeMap`s gives, at every point of every branch. Snapshots are
//! taken every few commits, so reads mix snapshot + replay with full replay.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

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
            let options = WalOptions { snapshot_every: 3, ..WalOptions::default() };
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
                snapshot_every: 3,
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
