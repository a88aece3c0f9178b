//! Writes `docs/compatibility.md` from what the server answers (see
//! `tests/compat/mod.rs`): `cargo run -p argon-sidecar --example compatibility`.

#[path = "../tests/compat/mod.rs"]
mod compat;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(compat::PATH);
    std::fs::write(&path, compat::render().await)?;
    println!("wrote {}", path.display());
    Ok(())
}
