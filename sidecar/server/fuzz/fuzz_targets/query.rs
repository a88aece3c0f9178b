//! Structure-aware: the bytes are choices for `tests/querygen`'s generator,
//! which builds documents, filters, updates, projections, sorts, pipelines
//! and expressions (deep, huge, extreme), applies them, and fails when a
//! result breaks a limit. Runs on a thread with the server's stack size.
#![no_main]

#[path = "../../tests/querygen/mod.rs"]
mod querygen;

use argon_sidecar::limits::with_worker_stack;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    with_worker_stack(move || {
        let case = querygen::generate(&data);
        if let Err(e) = querygen::check(&case) {
            panic!("{e}");
        }
    });
});
