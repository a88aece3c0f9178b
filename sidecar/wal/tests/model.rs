//! Property test: random writes over a random tree of branches, with forks
//! at past points, resets and deletes, give exactly what a reference model
//! of plain `BTreeMap`s gives, at every point of every branch. Snapshots are
//! taken every few commits, so reads mix snapshot + replay with full replay.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns unwrap too

mod common;

use argon_wal::WalOptions;
use common::model::*;
use common::*;
use proptest::prelude::*;

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
}
