//! The structure-aware generator of `tests/querygen` (shared with the
//! cargo-fuzz target `query`) run as a normal test: a bounded number of
//! cases in the regular test run, as many as `ARGON_FUZZ_CASES` says for a
//! long run (`ARGON_FUZZ_CASES=200000 cargo test -p argon-sidecar --release
//! --test integration -- query_fuzz::`). Each case is generated from proptest's random bytes,
//! so a failure shrinks to a small input and is printed with its case.

use crate::querygen;

use argon_sidecar::limits::with_worker_stack;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("ARGON_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128)
}

#[test]
fn generated_queries_never_panic_or_break_limits() {
    let cases = cases();
    with_worker_stack(move || {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        });
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..4096), |data| {
                let case = querygen::generate(&data);
                if let Err(e) = querygen::check(&case) {
                    return Err(TestCaseError::fail(format!("{e}\n{case:?}")));
                }
                Ok(())
            })
            .unwrap();
    });
}

/// What the generator found, kept as fixed cases.
#[test]
fn regressions() {
    use bson::{Bson, doc};
    with_worker_stack(|| {
        // Integers near 2^53 and 2^63 against doubles: the comparison went
        // through f64, was no order, and sorting panicked.
        let near: Vec<Bson> = [
            Bson::Int64(1 << 53),
            Bson::Int64((1 << 53) + 1),
            Bson::Double(9007199254740992.0),
            Bson::Int64(i64::MAX),
            Bson::Int64(i64::MAX - 1),
            Bson::Double(9.223372036854776e18),
        ]
        .into_iter()
        .cycle()
        .take(64)
        .enumerate()
        .map(|(i, v)| if i % 7 == 3 { Bson::Int32(0) } else { v })
        .collect();
        let docs: Vec<_> = near
            .iter()
            .enumerate()
            .map(|(i, v)| doc! {"_id": i as i32, "n": v.clone()})
            .collect();
        let case = querygen::Case {
            docs: docs.clone(),
            filter: doc! {},
            update: Bson::Document(doc! {"$push": {"arr": {"$each": near.clone(), "$sort": 1}}}),
            projection: doc! {},
            sort: doc! {"n": 1},
            pipeline: vec![
                Bson::Document(doc! {"$sort": {"n": -1}}),
                Bson::Document(doc! {"$group": {"_id": null, "m": {"$max": "$n"}}}),
            ],
            expr: Bson::Document(doc! {"$max": [near]}),
        };
        querygen::check(&case).unwrap();
    });
}
