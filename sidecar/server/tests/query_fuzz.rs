//! The structure-aware generator of `tests/querygen` (shared with the
//! cargo-fuzz target `query`) run as a normal test: a bounded number of
//! cases in the regular test run, as many as `ARGON_FUZZ_CASES` says for a
//! long run (`ARGON_FUZZ_CASES=200000 cargo test -p argon-sidecar --release
//! --test query_fuzz`). Each case is generated from proptest's random bytes,
//! so a failure shrinks to a small input and is printed with its case.

mod querygen;

use argon_sidecar::limits::with_worker_stack;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("ARGON_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

#[test]
fn generated_queries_never_panic_or_break_limits() {
    let cases = cases();
    with_worker_stack(move || {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2000,
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
