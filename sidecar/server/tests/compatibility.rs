//! `docs/compatibility.md` is what the server answers today: fails when the
//! committed file differs (regenerate it with the command it names).

use crate::compat;

#[tokio::test(flavor = "multi_thread")]
async fn the_compatibility_table_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(compat::PATH);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let now = compat::render().await;
    assert!(
        committed == now,
        "docs/compatibility.md is stale: run `cargo run -p argon-sidecar --example compatibility` and commit it"
    );
    // The table is exact: each vendored name has one row, and the
    // supported rows include what this branch built.
    for row in [
        "| command | `create` | partly: ",
        "| stage | `$group` | supported |",
        "| stage | `$lookup` | supported |",
        "| expression | `$reduce` | supported |",
        "| query | `$where` | refused (6108304) |",
        "| command | `mapReduce` | refused (31246) |",
        "| expression | `$function` | refused (31264) |",
        "| expression | `$accumulator` | refused (31264) |",
    ] {
        assert!(now.contains(row), "{row}");
    }
}
