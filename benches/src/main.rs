//! Comparative benchmarks; each compares us against a peer in the same run and prints ratios.
//! Each is its own binary: `cargo run --release -p benches --bin <name>`.
use std::process::ExitCode;

/// The benchmarks and what they compare.
const BENCHES: &[(&str, &str)] = &[
    (
        "sandbox_vs_bwrap",
        "start-up of sandbox-run vs bubblewrap with comparable isolation",
    ),
    (
        "intent_reactor",
        "host-reactor's engine vs an inotifywait | while-read shell loop",
    ),
];

fn main() -> ExitCode {
    println!("benchmarks (cargo run --release -p benches --bin <name>):");
    for (name, what) in BENCHES {
        println!("  {name:<18} {what}");
    }
    ExitCode::SUCCESS
}
