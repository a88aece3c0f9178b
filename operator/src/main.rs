//! `argon-operator`: Argon's control plane binary (controllers, webhook, CRD generation).

use clap::Parser;

/// Argon's control plane: reconciles ArgonProject and ArgonBranch resources.
#[derive(Parser, Debug)]
#[command(name = "argon-operator", version)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("argon-operator: the controllers are not built yet (see issue: the operator)");
    std::process::exit(2);
}
